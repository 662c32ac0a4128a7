"""contract/schemas.py: the published schemas are the committed files, they say what the
validators accept (a property test against contract/events.py), they accept the contract's own
examples and every record the worker's real flow produces (streams/testing.py), and they reject
out-of-range values."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import msgspec
import orjson
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from contract import events, schemas, topics
from contract.errors import Rejected
from contract.settings import Settings
from streams import records, rules, zone_state
from streams.testing import Msg, Pipeline
from tests import scenario

DOCS = Path(__file__).resolve().parents[3] / "docs"


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


VALIDATORS = {n: validator(n) for n in schemas.names()}
VALIDATE = {topics.CALLS: events.validate_call, topics.GPS: events.validate_gps,
            topics.ALERTS: events.validate_alert, topics.STATUS: events.validate_status}


def errors(name: str, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATORS[name].iter_errors(instance)]


# --- published files ------------------------------------------------------------------------------


def test_committed_files_are_what_the_contract_generates():
    """docs/schemas and docs/asyncapi.yaml are `make schemas` output: regenerate after a contract change."""
    want = schemas.documents(zone_events=records.Batch)
    for rel, text in want.items():
        path = DOCS / rel
        assert path.is_file(), f"{rel} missing: run `make schemas`"
        assert path.read_text(encoding="utf-8") == text, f"{rel} is stale: run `make schemas`"
    on_disk = {f"schemas/{p.name}" for p in (DOCS / "schemas").glob("*.json")}
    assert on_disk == {r for r in want if r.startswith("schemas/")}, "stale files in docs/schemas"


def test_every_topic_and_redis_document_has_a_schema():
    assert set(topics.INPUT_TOPICS) | set(topics.OUTPUT_TOPICS) <= set(schemas.names())
    assert {"zone", "incident", "incident-timeline", "unit"} <= set(schemas.names())


@pytest.mark.parametrize("name", schemas.names())
def test_schema_is_valid_draft_2020_12_and_accepts_its_examples(name):
    s = schemas.schema(name)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(s)
    assert s["examples"]
    for ex in s["examples"]:
        assert errors(name, ex) == []


def test_input_examples_are_accepted_by_the_validators_too():
    for topic, validate in VALIDATE.items():
        for ex in schemas.schema(topic)["examples"]:
            validate(ex, math.inf)


def test_zone_events_schema_is_valid_and_names_every_field():
    s = schemas.zone_events_schema(records.Batch)
    Draft202012Validator.check_schema(s)
    call = s["$defs"]["ZoneCall"]["prefixItems"]
    assert [i["title"] for i in call] == ["tag", *(f.name for f in msgspec.structs.fields(records.ZoneCall))]


def test_asyncapi_document_is_yaml_of_the_generated_document_and_refs_every_schema():
    text = schemas.documents(zone_events=records.Batch)["asyncapi.yaml"]
    doc = yaml.safe_load(text)
    assert doc == schemas.asyncapi(True)
    assert doc["asyncapi"] == "3.0.0"
    refs = {m["payload"]["schema"]["$ref"] for m in doc["components"]["messages"].values()}
    assert refs == {f"./schemas/{t}.json" for t in (*topics.INPUT_TOPICS, *topics.OUTPUT_TOPICS, "zone-events")}
    for ref in refs:
        assert (DOCS / ref).is_file(), ref
    # every channel's message is a component, every operation points at its channel's message
    for cid, ch in doc["channels"].items():
        assert ch["messages"] == {cid: {"$ref": f"#/components/messages/{cid}"}}
        assert "key" in doc["components"]["messages"][cid]["bindings"]["kafka"]
    for op in doc["operations"].values():
        cid = op["channel"]["$ref"].rsplit("/", 1)[1]
        assert op["messages"] == [{"$ref": f"#/channels/{cid}/messages/{cid}"}]
    # the compacted topics say so, as topic_specs creates them
    assert doc["channels"]["zones_state"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_a_changed_enum_changes_the_schema(monkeypatch):
    monkeypatch.setattr(events, "UNIT_KINDS", events.UNIT_KINDS | {"horse"})
    assert "horse" in schemas.schema(topics.GPS)["properties"]["kind"]["enum"]
    rec = schemas.schema(topics.INCIDENTS)["properties"]["nearest_units"]["items"]["properties"]["kind"]
    assert "horse" in rec["enum"]


def test_daily_schema_follows_daily_fields(monkeypatch):
    daily = schemas.schema(topics.ZONES_DAILY)
    assert list(daily["properties"]) == [*topics.DAILY_FIELDS, *topics.DAILY_DUTY_FIELDS]
    assert daily["required"] == list(topics.DAILY_FIELDS)   # the duty plan's fields come with a plan only
    monkeypatch.setattr(topics, "DAILY_FIELDS", (*topics.DAILY_FIELDS, "weather"))
    with pytest.raises(AssertionError, match="weather"):
        schemas.schema(topics.ZONES_DAILY)


def test_constants_the_contract_repeats_agree_with_the_worker():
    assert schemas.LEVELS == rules.LEVELS
    assert schemas.WINDOWS == tuple(name for name, _n in zone_state.WINDOWS)


def test_openapi_components_are_the_published_schemas_without_dialect():
    comps = schemas.openapi_components()
    assert set(comps) == {"ZoneState", "Incident", "IncidentTimeline", "Unit", "Post", "Checkpoint", "Phase"}
    for comp, name in (("ZoneState", "zone"), ("Post", "post"), ("Checkpoint", "checkpoint"), ("Phase", "phase")):
        assert comps[comp] == {k: v for k, v in schemas.schema(name).items() if k != "$schema"}
    assert all("$ref" not in orjson.dumps(c).decode() for c in comps.values())  # embeddable as they are


# --- inputs: the schema says what the validator accepts --------------------------------------------

# ids: any character but surrogates (not in JSON text)
ID_CHARS = st.characters(exclude_categories=("Cs",))
PRINTABLE = st.characters(exclude_categories=("Cn", "Cs", "Cc", "Cf", "Co", "Zs", "Zl", "Zp"), include_characters=" ")
WRONG = st.sampled_from([None, True, False, 0, 1.5, [], {}, "x"])
ABSENT = object()  # the field is left out (JSON null is a value of its own)


def field(valid, edge):
    """Mostly a valid value (so whole records are often valid), sometimes an edge or a wrong one."""
    return st.integers(0, 9).flatmap(lambda i: edge if i == 0 else valid)


def ident():
    return field(st.text(PRINTABLE, min_size=1, max_size=64),
                 st.one_of(st.text(ID_CHARS, max_size=70), st.just(ABSENT), WRONG, st.integers(),
                           st.sampled_from(["a" * 64, "a" * 65, "", "a\u200bb", "a\x00", "a\u00a0", "\ue000", " ",
                                            "abc\n", "a\u0378", "\U000e0001", "\U0010fffd", "a\u2028"])))


def coord(limit):
    edge = [limit, -limit, limit + 1e-9, -limit - 1e-9, math.nextafter(limit, math.inf), 0, int(limit),
            int(limit) + 1]
    return field(st.one_of(st.floats(-limit, limit), st.integers(-int(limit), int(limit))),
                 st.one_of(st.floats(-2 * limit, 2 * limit), st.sampled_from(edge), st.integers(-400, 400), WRONG,
                           st.just(ABSENT)))


def rfc3339():
    """RFC 3339 date-times with an offset, as producers write them (real dates, 2000-01-02..9998)."""
    offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59)

    @st.composite
    def build(draw):
        dt = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(9998, 12, 30)))
        off = draw(offsets)
        frac = draw(st.sampled_from(["", ".1", ".123", ".123456", ".123456789"]))
        sep = draw(st.sampled_from(["T", "t", " "]))
        zone = "Z" if off == 0 and draw(st.booleans()) else \
            f"{'+' if off >= 0 else '-'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
        return dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + zone
    return build()


@st.composite
def any_date_text(draw):
    """YYYY-MM-DD with any day 1..31 of any month: dates that exist and dates that do not
    (leap years, centuries, 2000 and 2400 among them), at a valid time with an offset."""
    y = draw(st.one_of(st.sampled_from([2000, 2023, 2024, 2100, 2200, 2400, 2800, 2900, 9996, 9999]),
                       st.integers(2000, 9999)))
    m, d = draw(st.integers(1, 12)), draw(st.integers(1, 31))
    return f"{y:04d}-{m:02d}-{d:02d}T12:00:00+08:00"


def ts():
    return field(
        st.one_of(st.integers(events.MIN_TS_MS, 2**53), rfc3339(), any_date_text()),
        st.one_of(
            st.integers(events.MIN_TS_MS - 5, events.MIN_TS_MS + 5), st.integers(-(2**63), 2**65),
            st.floats(0, 1e16), st.sampled_from([1686440000000.0, 1686440000000.5, events.MIN_TS_MS - 1.0]),
            # not a date-time at all, or not RFC 3339 and refused by the worker as well
            st.text("abcxyz:-+ ", max_size=30),
            st.sampled_from(["2023-06-11T07:30:00", "2023-06-11", "", "2023-06-11T07:30:00z", "2023-13-01T00:00:00Z",
                             "2023-06-11T24:00:00Z", "2023-06-11T07:30:60Z", "1999-06-11T07:30:00Z",
                             "2023-06-11T07:30:00+24:00", "2023-06-11T07:30:00+08:00\n",
                             "2023-06-11T07:30:00+08:00\r\n", "\n2023-06-11T07:30:00Z"]),
            st.none(), st.booleans(), st.just([]), st.just(ABSENT)))


def one_of_names(known, open_: bool):
    edge = st.one_of(st.text(max_size=10), WRONG, st.just(ABSENT))
    return field(st.one_of(st.sampled_from(sorted(known)), st.text(max_size=10)) if open_ else
                 st.one_of(st.sampled_from(sorted(known)), st.just(ABSENT), st.none()), edge)


def nums(lo, hi, optional: bool):
    valid = st.one_of(st.floats(lo, hi), st.integers(int(lo), int(hi)))
    if optional:
        valid = st.one_of(valid, st.just(ABSENT), st.none())
    return field(valid, st.one_of(st.floats(lo - 1, hi + 1), st.integers(int(lo) - 1, int(hi) + 1),
                                  st.sampled_from([lo, hi]), WRONG, st.just(ABSENT)))


def ints(lo, hi, optional: bool):
    valid = st.one_of(st.integers(lo, hi), st.integers(lo, hi).map(float))
    if optional:
        valid = st.one_of(valid, st.just(ABSENT), st.none())
    return field(valid, st.one_of(st.integers(lo - 2, hi + 2), st.sampled_from([lo + 0.5]), WRONG,
                                  st.just(ABSENT)))


def text(max_len):
    return field(st.one_of(st.just(ABSENT), st.none(), st.text(max_size=max_len)),
                 st.one_of(st.sampled_from(["x" * max_len, "x" * (max_len + 1), "\u6c34" * (max_len + 1)]), WRONG))


def record(**fields):
    @st.composite
    def build(draw):
        out = {}
        for name, strategy in fields.items():
            v = draw(strategy)
            if v is not ABSENT:
                out[name] = v
        # as the worker sees it: JSON text read by orjson (which reads ints beyond 64 bits as floats)
        return orjson.loads(json.dumps(out))
    return build()


CALL = record(call_id=ident(), ts=ts(), lat=coord(90.0), lon=coord(180.0),
              category=one_of_names(events.CATEGORIES, True), priority=ints(1, 4, False),
              caller=text(64), lang=text(35), text=text(events.MAX_TEXT_LEN),
              extra=field(st.just(ABSENT), WRONG))
GPS = record(unit_id=ident(), ts=ts(), lat=coord(90.0), lon=coord(180.0),
             status=one_of_names(events.UNIT_STATUSES, False), kind=one_of_names(events.UNIT_KINDS, False),
             speed=field(nums(0, 100, True), st.sampled_from([1e308, events.MAX_FLOAT, -0.0, "1"])),
             heading=nums(0, 360, True))
ALERT = record(alert_id=ident(), camera_id=ident(), ts=ts(), lat=coord(90.0), lon=coord(180.0),
               type=one_of_names(events.ALERT_TYPES, True), confidence=nums(0, 1, False),
               severity=ints(1, 4, True))
STATUS = record(camera_id=ident(), ts=ts(), lat=coord(90.0), lon=coord(180.0),
                online=field(st.one_of(st.booleans(), st.none(), st.just(ABSENT)), WRONG))


def accepted(topic: str, rec: dict) -> bool:
    try:
        VALIDATE[topic](rec, math.inf)  # the schema cannot know the host clock: no upper bound here
        return True
    except Rejected:
        return False


@pytest.mark.parametrize("topic,strategy", [(topics.CALLS, CALL), (topics.GPS, GPS), (topics.ALERTS, ALERT),
                                            (topics.STATUS, STATUS)])
@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_input_schema_accepts_exactly_what_the_validator_accepts(topic, strategy, data):
    rec = data.draw(strategy)
    valid = VALIDATORS[topic].is_valid(rec)
    assert valid == accepted(topic, rec), (rec, errors(topic, rec))
    event(f"accepted={valid}")


def test_input_schemas_agree_with_the_validator_on_the_hostile_corpus():
    """tests/hostile.py's corpus (malformed and hostile records, interleaved with valid ones): every
    JSON object the schema and the validator judge alike, but for the documented corner of strings
    within a day of 2000-01-01T00:00:00Z (the pattern checks the local year)."""
    from tests import hostile

    judged, differ = 0, []
    for m in hostile.corpus():
        try:
            rec = orjson.loads(m.value)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if type(rec) is not dict:
            continue
        judged += 1
        if VALIDATORS[m.topic].is_valid(rec) != accepted(m.topic, rec):
            differ.append(rec.get("ts"))
    assert judged > 8000
    assert all(isinstance(t, str) and t[:10] in ("1999-12-31", "2000-01-01") for t in differ), differ


@pytest.mark.parametrize("text", ["2023-06-11T07:30Z", "20230611T073000+0800", "2023-06-11T07:30:00,5+08:00",
                                  "2023-06-11X07:30:00+08:00", "2023-06-11T07:30:00+08", "2023-W23-7T07:30:00Z"])
def test_the_worker_is_more_lenient_than_the_schema_with_iso_8601_forms(text):
    """Documented in the schema's $comment: other ISO 8601 forms with an offset are accepted by the
    worker but are not RFC 3339; a producer following the schema is never dead-lettered."""
    rec = {**schemas.schema(topics.CALLS)["examples"][0], "ts": text}
    assert accepted(topics.CALLS, rec)
    assert not VALIDATORS[topics.CALLS].is_valid(rec)


@pytest.mark.parametrize("topic,field,value", [
    (topics.CALLS, "lat", 90.000001), (topics.CALLS, "lon", -180.5), (topics.CALLS, "priority", 5),
    (topics.CALLS, "priority", 0), (topics.CALLS, "ts", events.MIN_TS_MS - 1), (topics.CALLS, "call_id", "x" * 65),
    (topics.CALLS, "call_id", ""), (topics.CALLS, "call_id", "a\x07b"), (topics.CALLS, "call_id", "a\u2028b"),
    (topics.CALLS, "call_id", "abc\n"), (topics.CALLS, "call_id", "a\u0378"),
    (topics.ALERTS, "camera_id", "\U000e0001"),
    (topics.CALLS, "ts", "2023-02-29T00:00:00Z"), (topics.CALLS, "ts", "2100-02-29T00:00:00Z"),
    (topics.CALLS, "ts", "2023-04-31T00:00:00Z"), (topics.CALLS, "ts", "2023-06-11T07:30:00+08:00\n"),
    (topics.CALLS, "text", "x" * 4097), (topics.CALLS, "caller", "1" * 65), (topics.CALLS, "category", 3),
    (topics.CALLS, "ts", "2023-06-11T07:30:00"), (topics.CALLS, "ts", "1999-12-31T00:00:00Z"),
    (topics.GPS, "heading", 360.5), (topics.GPS, "speed", -0.1), (topics.GPS, "status", "asleep"),
    (topics.GPS, "kind", "tank"), (topics.ALERTS, "confidence", 1.01), (topics.ALERTS, "severity", 5),
    (topics.ALERTS, "confidence", None), (topics.STATUS, "online", "yes"),
])
def test_input_schemas_reject_out_of_range_values(topic, field, value):
    rec = {**schemas.schema(topic)["examples"][0], field: value}
    assert not VALIDATORS[topic].is_valid(rec)
    assert not accepted(topic, rec)


# --- outputs: every record of the worker's real flow matches ----------------------------------------


@pytest.fixture(scope="module")
def pipeline():
    s = Settings(zones=scenario.ZONES_FILE, partitions=3, caller_secret="test-secret")
    msgs = []
    for topic, evs in ((topics.CALLS, scenario.CALLS), (topics.ALERTS, scenario.ALERTS), (topics.GPS, scenario.FIXES)):
        msgs += [(topic, orjson.dumps(ev)) for ev in evs]
    msgs += [(topics.CALLS, raw) for raw in scenario.INVALID_CALLS]
    # a camera status report in no zone: one inside a zone stops the state stage today (KeyError
    # 'status' in StateStage.pending_e2e, reported to the lead), which is not what this test is about
    msgs.append((topics.STATUS, orjson.dumps({"camera_id": "cam-x", "ts": scenario.FINAL_CLOCK - 1000,
                                              "lat": scenario.PNONE[0], "lon": scenario.PNONE[1],
                                              "online": False})))
    pipe = Pipeline(s)
    batches: list[bytes] = []
    encode = records.encode

    def spy(*args, **kw):  # every zone-events message the flow sends
        out = encode(*args, **kw)
        batches.append(out)
        return out
    records.encode = spy
    try:
        pipe.feed([Msg(s.topic(t), 0, i, None, v, 1) for i, (t, v) in enumerate(msgs)], batch=4)
        pipe.finish()
    finally:
        records.encode = encode
    pipe.batches = batches
    return pipe


def test_scenario_zone_documents_match_the_zone_schema(pipeline):
    docs = pipeline.documents()
    assert set(docs) == set(scenario.EXPECTED)
    for doc in docs.values():
        assert errors("zone", doc) == []
        assert errors(topics.ZONES_STATE, doc) == []
    # the hand-computed documents too (with a version and the final clock)
    for doc in scenario.EXPECTED.values():
        assert errors("zone", {**doc, "version": 1, "clock": scenario.FINAL_CLOCK}) == []


def test_scenario_outputs_match_their_schemas(pipeline):
    assert len(pipeline.sla) == len(scenario.EXPECTED_SLA)
    for ev in pipeline.sla:
        assert errors(topics.SLA, ev) == []
        assert schemas.record_key(topics.SLA, ev) == ev["call_id"]
    assert pipeline.enriched
    for rec in pipeline.enriched:
        rec = {**rec, "processed_at": 1_700_000_000_000}  # OutputSender adds it when it sends
        assert errors(topics.INCIDENTS, rec) == []
    entries = [h.state.incidents.board_doc(inc, p) for p, h in pipeline.stage.held.items()
               for inc in h.state.incidents.incidents.values()]
    assert {e["status"] for e in entries} >= {"arrived", "breached"}
    for e in entries:
        assert errors("incident", e) == []
    assert len(pipeline.dead) == len(scenario.INVALID_CALLS)
    for m, reason in pipeline.dead:
        rec = orjson.loads(events.deadletter_record(m.topic, m.partition, m.offset, reason,
                                                    events.redact_callers(m.value, b"test-secret")))
        assert errors(topics.DEADLETTER, rec) == []


def test_zone_events_batches_match_the_internal_schema(pipeline):
    v = Draft202012Validator(schemas.zone_events_schema(records.Batch))
    assert len(pipeline.batches) > 5
    kinds = set()
    for raw in pipeline.batches:
        value = msgspec.msgpack.decode(raw)  # as any msgpack reader sees it
        assert list(v.iter_errors(value)) == []
        kinds |= {e[0] for e in value[1]}
    assert kinds >= {1, 2, 3, 4, 5, 6, 7, 8}  # every record kind appeared


@pytest.mark.parametrize("name,mutate", [
    ("zone", lambda d: d["today"].update(calls=-1)),
    ("zone", lambda d: d.update(level="purple")),
    ("zone", lambda d: d["windows"].pop("15m")),
    ("zone", lambda d: d["health"].pop("units_quiet")),
    ("zone", lambda d: d["reach"].update(within_3m=1.2)),
    ("zone", lambda d: d["today"]["calls_by_category"].update(arson=1)),
    ("zone", lambda d: d.update(surprise=1)),
    (topics.INCIDENTS, lambda d: d.update(caller="13800000000")),
    (topics.INCIDENTS, lambda d: d.update(caller_ref="not-hex")),
    (topics.INCIDENTS, lambda d: d["nearest_units"].extend([d["nearest_units"][0]] * 3)),
    (topics.SLA, lambda d: d.update(unit_id=None)),
    (topics.ZONES_DAILY, lambda d: d["hourly"]["calls"].pop()),
    (topics.ZONES_DAILY, lambda d: d.pop("final")),
    (topics.DEADLETTER, lambda d: d.update(raw_encoding="hex")),
    (topics.DEADLETTER, lambda d: d.update(topic="orders")),
    ("incident", lambda d: d.update(status="lost")),
    ("incident-timeline", lambda d: d["events"].append({"ts": 1686440000000, "what": "teleported"})),
    ("unit", lambda d: d.update(lat=86.0)),
])
def test_output_schemas_reject_what_zonewatch_never_writes(name, mutate):
    doc = orjson.loads(orjson.dumps(schemas.schema(name)["examples"][0]))
    mutate(doc)
    assert errors(name, doc), doc


# --- the integration tests' hook (bench/harness.py) -------------------------------------------------


def test_harness_hook_raises_on_the_first_record_off_the_contract():
    from collections import namedtuple

    from bench.harness import check_record, check_schema

    Rec = namedtuple("Rec", "partition offset key value")
    good = schemas.schema(topics.SLA)["examples"][0]
    check_record(topics.SLA, Rec(0, 5, good["call_id"].encode(), orjson.dumps(good)))
    with pytest.raises(AssertionError, match=r"sla.events record \(partition 0, offset 6\) does not match "
                                             r"docs/schemas/sla.events.json at response_s"):
        check_record(topics.SLA, Rec(0, 6, good["call_id"].encode(), orjson.dumps({**good, "response_s": -1})))
    with pytest.raises(AssertionError, match="has key b'other'; the contract's key is"):
        check_record(topics.SLA, Rec(0, 7, b"other", orjson.dumps(good)))
    with pytest.raises(AssertionError, match="not JSON"):
        check_record(topics.SLA, Rec(0, 8, None, b"{"))
    with pytest.raises(AssertionError, match="tombstone"):
        check_record(topics.ZONES_STATE, Rec(0, 9, b"A", None))
    with pytest.raises(AssertionError, match=r"Redis zw:zone:A does not match docs/schemas/zone.json at level"):
        check_schema("zone", {**schemas.schema("zone")["examples"][0], "level": "purple"}, "Redis zw:zone:A")


@pytest.mark.parametrize("text", ["2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2400-02-29T23:59:59.5-05:00",
                                  "2023-12-31 23:59:59+14:00"])
def test_leap_days_and_the_last_second_of_a_year_are_accepted(text):
    rec = {**schemas.schema(topics.CALLS)["examples"][0], "ts": text}
    assert VALIDATORS[topics.CALLS].is_valid(rec) and accepted(topics.CALLS, rec)


@pytest.mark.parametrize("name,field,value", [
    (topics.INCIDENTS, "caller_ref", "5f1c0a9e2b7d4c11\n"), (topics.ZONES_DAILY, "date", "2023-06-11\n"),
    (topics.DEADLETTER, "topic", "calls.110\n"), ("zone", "today", None),
])
def test_patterns_refuse_a_final_newline(name, field, value):
    """Python's `$` (jsonschema) matches before a final newline; every pattern refuses one all the same."""
    doc = orjson.loads(orjson.dumps(schemas.schema(name)["examples"][0]))
    if value is None:
        doc["today"]["calls_by_lang"] = {"zh\n": 1}
    else:
        doc[field] = value
    assert errors(name, doc)
    if value is not None:
        doc[field] = value[:-1]
        assert errors(name, doc) == []
