"""A JSON Schema (draft 2020-12) checker compiled to one Python function per schema, for the
keywords the contract's schemas use (contract/schemas.py): fast enough to check every zone update
once on the gateway's fan-out path (bench/gateway_flood.py --validation measures it), where the
`jsonschema` package (a test dependency) takes ten times as long and more.

    check = compile_schema(schema)     # ValueError for a keyword it does not implement
    check(value)                       # None when `value` conforms, else "/path: why"

`value` is what orjson.loads or json.loads returns (dict, list, str, int, float, bool, None; exact
types, no subclasses). Semantics follow the specification as `jsonschema` implements it
(tests/unit/gateway/test_schemacheck.py compares the two): `integer` admits 1.0, `true` is not 1,
`pattern` is a search, `format` is an annotation. The generated code (`source(schema)`) is built
only from the schema, which comes from the contract, never from data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]

#: keywords that assert nothing (checked for spelling only)
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples", "default", "format",
                         "deprecated", "readOnly", "writeOnly"})
ASSERTIONS = frozenset({"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                        "minLength", "maxLength", "pattern", "required", "properties", "additionalProperties",
                        "propertyNames", "minProperties", "maxProperties", "items", "minItems", "maxItems",
                        "uniqueItems", "anyOf", "oneOf", "allOf", "not"})

#: the test of each JSON type on a variable `{v}`; exact types: bool is not an int here
TYPE_TESTS = {
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "string": "type({v}) is str",
    "number": "(type({v}) is int or type({v}) is float)",
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
}
#: what a keyword applies to: its check is skipped for values of other types
APPLIES_TO = {"number": ("number", "integer"), "string": ("string",), "array": ("array",), "object": ("object",)}
NUMERIC_OPS = (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"))


def canonical(v: Any) -> Any:
    """A hashable form of a JSON value in which equal JSON values are equal (1 and 1.0 are, true
    and 1 are not): for `enum`, `const` and `uniqueItems`."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", v)
    if isinstance(v, str):
        return ("s", v)
    if v is None:
        return ("z",)
    if isinstance(v, list):
        return ("a", tuple(canonical(x) for x in v))
    return ("o", frozenset((k, canonical(x)) for k, x in v.items()))


_ABSENT = object()   # a member not in the object


def _at(path: tuple, why: str) -> str:
    """The message of a failure: the JSON pointer of the value (escaped per RFC 6901), then why."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) + ": " + why


def compile_schema(schema: Any) -> Check:
    """The checker of `schema` (a dict or a boolean schema)."""
    gen = _Generator()
    name = gen.function(schema)
    namespace = dict(gen.constants, _at=_at, _canonical=canonical, _ABSENT=_ABSENT)
    exec(compile("\n".join(gen.lines), "<schemacheck>", "exec"), namespace)   # noqa: S102  (code from the schema)
    check: Check = namespace[name]
    return check


def source(schema: Any) -> str:
    """The generated code, for reading."""
    gen = _Generator()
    gen.function(schema)
    return "\n".join(gen.lines)


def opening(out: list[str], depth: int, header: str) -> None:
    """An `if` or `for` line and a `pass` under it: the schema below may add nothing (`{}`)."""
    out += [f"{'    ' * depth}{header}", f"{'    ' * (depth + 1)}pass"]


class _Generator:
    """Writes a function per (sub)schema that returns None or a message. Within one function a
    failure returns at once; anyOf / oneOf / not call functions of their own."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any) -> str:
        key = self.name("c")
        self.constants[key] = value
        return key

    def function(self, schema: Any) -> str:
        fname = self.name("check")
        body: list[str] = []
        self.node(schema, "v0", (), body, 1)
        self.lines += [f"def {fname}(v0):", *body, "    return None", ""]
        return fname

    # one schema on the variable `v` at `path` ((kind, name) parts: "lit" a member, "var" a variable)
    def node(self, s: Any, v: str, path: tuple, out: list[str], depth: int) -> None:
        if s is True:
            return
        if s is False:
            self.fail(out, depth, path, "nothing is allowed here", "True")
            return
        if not isinstance(s, dict):
            raise ValueError(f"not a schema: {s!r}")
        unknown = set(s) - ANNOTATIONS - ASSERTIONS
        if unknown:
            raise ValueError(f"JSON Schema keywords not implemented: {sorted(unknown)}")

        types = [s["type"]] if isinstance(s.get("type"), str) else list(s.get("type", []))
        if types:
            cond = " or ".join(TYPE_TESTS[t].format(v=v) for t in types)
            self.fail(out, depth, path, f"not {'|'.join(types)}", f"not ({cond})")
        for key in ("enum", "const"):
            if key in s:
                values = s["enum"] if key == "enum" else [s["const"]]
                shown = ", ".join(repr(x) for x in values[:6])
                self.fail(out, depth, path, f"not one of {shown}", f"not {self.member(v, values)}")

        def block(kind: str, keys: tuple[str, ...]) -> tuple[list[str], int]:
            """Where the checks of `kind` go: straight on (`type` ensures the kind, or none of `keys`
            is there), or under an `if` on the kind, as a keyword ignores values of other types."""
            if not any(k in s for k in keys) or (types and all(t in APPLIES_TO[kind] for t in types)):
                return out, depth
            opening(out, depth, f"if {TYPE_TESTS[kind].format(v=v)}:")
            return out, depth + 1

        target, d = block("number", tuple(k for k, _ in NUMERIC_OPS))
        for key, op in NUMERIC_OPS:
            if key in s:
                self.fail(target, d, path, f"{key} {s[key]!r}", f"not ({v} {op} {s[key]!r})")
        target, d = block("string", ("minLength", "maxLength", "pattern"))
        if "minLength" in s:
            self.fail(target, d, path, f"shorter than {s['minLength']}", f"len({v}) < {s['minLength']}")
        if "maxLength" in s:
            self.fail(target, d, path, f"longer than {s['maxLength']}", f"len({v}) > {s['maxLength']}")
        if "pattern" in s:
            search = self.constant(re.compile(s["pattern"]).search)
            self.fail(target, d, path, "does not match its pattern", f"{search}({v}) is None")
        target, d = block("array", ("items", "minItems", "maxItems", "uniqueItems"))
        if "minItems" in s:
            self.fail(target, d, path, f"fewer than {s['minItems']} items", f"len({v}) < {s['minItems']}")
        if "maxItems" in s:
            self.fail(target, d, path, f"more than {s['maxItems']} items", f"len({v}) > {s['maxItems']}")
        if s.get("uniqueItems"):
            self.fail(target, d, path, "items are not unique", f"len({{_canonical(x) for x in {v}}}) != len({v})")
        if s.get("items", True) is not True:
            i, x = self.name("i"), self.name("v")
            opening(target, d, f"for {i}, {x} in enumerate({v}):")
            self.node(s["items"], x, (*path, ("var", i)), target, d + 1)
        self.members(s, v, path, *block("object", ("required", "properties", "additionalProperties",
                                                   "propertyNames", "minProperties", "maxProperties")))
        for part in s.get("allOf", ()):
            self.node(part, v, path, out, depth)
        if "anyOf" in s:
            calls = " or ".join(f"{self.function(p)}({v}) is None" for p in s["anyOf"])
            self.fail(out, depth, path, "matches none of anyOf", f"not ({calls})")
        if "oneOf" in s:
            calls = " + ".join(f"({self.function(p)}({v}) is None)" for p in s["oneOf"])
            self.fail(out, depth, path, "matches not exactly one of oneOf", f"({calls}) != 1")
        if "not" in s:
            self.fail(out, depth, path, "matches what `not` forbids", f"{self.function(s['not'])}({v}) is None")

    @staticmethod
    def fail(out: list[str], depth: int, path: tuple, why: str | None, cond: str, why_code: str = "") -> None:
        """`if cond: return <the message>`; `why_code` is an expression for a message made at run time."""
        pad = "    " * depth
        parts = "".join(f"{name}, " if kind == "var" else f"{name!r}, " for kind, name in path)
        out.append(f"{pad}if {cond}:")
        out.append(f"{pad}    return _at(({parts}), {why_code or repr(why)})")

    def member(self, v: str, values: list) -> str:
        """A condition: `v` equals one of `values` (JSON equality)."""
        if all(x is None or isinstance(x, str) for x in values):   # the common case, no key to build
            cond = f"(type({v}) is str and {v} in {self.constant(frozenset(x for x in values if x is not None))})"
            return f"({v} is None or {cond})" if None in values else cond
        return f"(_canonical({v}) in {self.constant(frozenset(canonical(x) for x in values))})"

    def members(self, s: dict, v: str, path: tuple, out: list[str], depth: int) -> None:
        """The object keywords."""
        pad = "    " * depth
        props: dict = s.get("properties", {})
        if s.get("required"):
            req = self.constant(frozenset(s["required"]))
            self.fail(out, depth, path, None, f"not {req} <= {v}.keys()",
                      why_code=f"repr(sorted({req} - {v}.keys())[0]) + ' is missing'")
        for key, sub in props.items():
            if sub is True:
                continue
            x = self.name("v")
            out.append(f"{pad}{x} = {v}.get({key!r}, _ABSENT)")
            opening(out, depth, f"if {x} is not _ABSENT:")
            self.node(sub, x, (*path, ("lit", key)), out, depth + 1)
        additional = s.get("additionalProperties", True)
        if additional is False:
            allowed = self.constant(frozenset(props))
            self.fail(out, depth, path, None, f"not {v}.keys() <= {allowed}",
                      why_code=f"repr(sorted({v}.keys() - {allowed})[0]) + ' is not allowed'")
        elif additional is not True:
            known = self.constant(frozenset(props))
            k, x = self.name("k"), self.name("v")
            out.append(f"{pad}for {k}, {x} in {v}.items():")
            opening(out, depth + 1, f"if {k} not in {known}:")
            self.node(additional, x, (*path, ("var", k)), out, depth + 2)
        if s.get("propertyNames", True) is not True:
            k = self.name("k")
            opening(out, depth, f"for {k} in {v}:")
            self.node(s["propertyNames"], k, (*path, ("var", k)), out, depth + 1)
        for key, op in (("minProperties", "<"), ("maxProperties", ">")):
            if key in s:
                self.fail(out, depth, path, f"{key} {s[key]}", f"len({v}) {op} {s[key]}")
