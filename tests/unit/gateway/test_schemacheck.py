"""gateway/schemacheck.py against the `jsonschema` package (the oracle, written apart): on every
published schema of the contract, the schemas' own examples and hypothesis' mutations of them (a leaf
replaced by any JSON value, a member dropped or added, an item repeated) and arbitrary JSON values get
the same verdict from both."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import schemas
from gateway.schemacheck import compile_schema

PUBLISHED = schemas.published()
ORACLES = {name: jsonschema.Draft202012Validator(s) for name, s in PUBLISHED.items()}
CHECKS = {name: compile_schema(s) for name, s in PUBLISHED.items()}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["green", "red", "open", "car", "", "1.0", "\n", "2023-06-11"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def paths(value, prefix=()):
    """Every path to a member or item of `value` (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def at(value, path):
    for p in path:
        value = value[p]
    return value


@st.composite
def mutated(draw, name: str):
    doc = copy.deepcopy(draw(st.sampled_from(PUBLISHED[name]["examples"])))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(list(paths(doc))))
        how = draw(st.sampled_from(["replace", "drop", "add", "repeat", "number"]))
        target = at(doc, where[:-1]) if where else None
        if how == "replace" and where:
            target[where[-1]] = draw(json_values)
        elif how == "number" and where:
            target[where[-1]] = draw(st.sampled_from([0, -1, 1.0, 1.5, 2**63, True, 1e300, -0.0]))
        elif how == "drop" and where and isinstance(target, dict):
            del target[where[-1]]
        elif how == "add":
            node = at(doc, where)
            if isinstance(node, dict):
                node[draw(st.text(max_size=6))] = draw(json_values)
            elif isinstance(node, list):
                node.append(draw(json_values))
        elif how == "repeat":
            node = at(doc, where)
            if isinstance(node, list) and node:
                node.append(copy.deepcopy(node[0]))
    return doc


def same_verdict(name: str, value) -> None:
    want = ORACLES[name].is_valid(value)
    got = CHECKS[name](value)
    assert (got is None) == want, (name, value, got, [e.message for e in ORACLES[name].iter_errors(value)][:3])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_examples_conform(name):
    for example in PUBLISHED[name]["examples"]:
        assert CHECKS[name](example) is None
        same_verdict(name, example)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_examples_get_the_oracles_verdict(name, data):
    same_verdict(name, data.draw(mutated(name)))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(PUBLISHED)), value=json_values)
def test_arbitrary_values_get_the_oracles_verdict(name, value):
    same_verdict(name, value)


leaf_schemas = st.one_of(
    st.booleans(),
    st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["integer", "number", "string", "null", "boolean", "object", "array",
                                 ["integer", "null"], ["string", "array"]]),
        "enum": st.lists(st.sampled_from([0, 1, 1.0, True, False, None, "a", "", [1], {"a": 1}]), min_size=1,
                         max_size=3),
        "const": st.sampled_from([0, 1.0, True, None, "a", [1, True]]),
        "minimum": st.integers(-2, 2), "exclusiveMaximum": st.integers(-2, 2),
        "minLength": st.integers(0, 2), "maxLength": st.integers(0, 2),
        "pattern": st.sampled_from(["^a", "b$", "^(?!.*\\n)[a-z]+$"]),
        "minItems": st.integers(0, 2), "maxItems": st.integers(0, 2), "uniqueItems": st.booleans(),
        "required": st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
        "minProperties": st.integers(0, 2), "maxProperties": st.integers(0, 2)}))


def _combine(inner):
    keyed = st.fixed_dictionaries({}, optional={
        "anyOf": st.lists(inner, min_size=1, max_size=3), "oneOf": st.lists(inner, min_size=1, max_size=3),
        "allOf": st.lists(inner, min_size=1, max_size=2), "not": inner, "items": inner,
        "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=2),
        "additionalProperties": inner, "propertyNames": inner})
    return keyed | st.tuples(leaf_schemas.filter(lambda x: isinstance(x, dict)), keyed).map(lambda p: {**p[0], **p[1]})


small_schemas = st.recursive(leaf_schemas, _combine, max_leaves=6)
small_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, -1, 2, 1.0, 1.5, -0.5, 3]) | st.sampled_from(["", "a", "ab", "b",
                                                                                                      "a\n", "é"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=small_schemas, values=st.lists(small_values, min_size=1, max_size=5))
def test_random_small_schemas_get_the_oracles_verdict(schema, values):
    oracle, check = jsonschema.Draft202012Validator(schema), compile_schema(schema)
    for value in values:
        assert (check(value) is None) == oracle.is_valid(value), (schema, value, check(value))


def test_hand_written_cases():
    check = compile_schema({"type": "object", "required": ["n"], "additionalProperties": False,
                            "properties": {"n": {"type": "integer", "minimum": 1},
                                           "e": {"enum": [1, "a", None]}, "u": {"uniqueItems": True}}})
    assert check({"n": 1.0}) is None                        # 1.0 is an integer in JSON Schema
    assert check({"n": True}) == "/n: not integer"          # true is not
    assert check({"n": 0}) == "/n: minimum 1"
    assert check({}) == ": 'n' is missing"
    assert check({"n": 2, "x": 1}) == ": 'x' is not allowed"
    assert check({"n": 2, "e": 1.0}) is None and check({"n": 2, "e": True}) is not None
    assert check({"n": 2, "u": [1, 1.0]}) is not None and check({"n": 2, "u": [1, True]}) is None
    assert check([]) == ": not object"
    one = compile_schema({"oneOf": [{"type": "integer"}, {"minimum": 0}]})
    assert one(-1) is None and one("x") is None and one(1) == ": matches not exactly one of oneOf"
    assert compile_schema({"not": {"const": [1]}})([1.0]) == ": matches what `not` forbids"
    assert compile_schema({"pattern": "b$"})("ab") is None            # a search, not a match


def test_keywords_it_does_not_implement_are_refused():
    for schema in ({"$ref": "#/x"}, {"patternProperties": {}}, {"prefixItems": []}, {"if": {}}, {"typo": 1}):
        with pytest.raises(ValueError, match="not implemented"):
            compile_schema({"type": "object", "properties": {"a": schema}})
