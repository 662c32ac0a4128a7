"""The validator: accepted shapes, rejections with reasons, and no exception but Rejected."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import events, topics
from contract.errors import Rejected
from contract.events import decode_and_validate

FAR = 10 ** 14


def call(**over):
    ev = {"call_id": "c1", "ts": 1686440000000, "lat": 34.7, "lon": 113.6, "category": "theft", "priority": 2}
    ev.update(over)
    return orjson.dumps({k: v for k, v in ev.items() if v is not ...})


def test_valid_call_and_normalisation():
    ev = decode_and_validate(topics.CALLS, call(category="aliens", ts="2023-06-11T07:30:00+08:00"), FAR)
    assert ev["category"] == "other"
    assert ev["ts"] == 1686439800000


@pytest.mark.parametrize("raw,reason", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "message is not a JSON object"),
    (call(category=...), "missing field category"),
    (call(lat=91.0), "lat 91.0 out of range"),
    (call(lon=-180.5), "lon -180.5 out of range"),
    (call(priority=5), "priority 5 out of range"),
    (call(priority="1"), "priority must be an integer"),
    (call(call_id=""), "call_id must be 1..64"),
    (call(call_id="x" * 65), "call_id must be 1..64"),
    (call(call_id="a\nb"), "call_id contains control characters"),
    (call(ts="2023-06-11T07:30:00"), "ts string has no UTC offset"),
    (call(ts=1), "ts before 2000"),
    (call(ts=FAR + 1), "ts too far in the future"),
    (call(ts=True), "ts must be"),
    (call(text="x" * 4097), "text longer than 4096"),
    (None, "empty message value"),
])
def test_rejections_have_reasons(raw, reason):
    with pytest.raises(Rejected) as exc:
        decode_and_validate(topics.CALLS, raw, FAR)
    assert exc.value.reason.startswith(reason)


def test_nan_and_infinity_are_rejected():
    for bad in (b"NaN", b"Infinity", b"1e999"):
        raw = b'{"call_id":"c","ts":1686440000000,"lat":' + bad + b',"lon":1,"category":"theft","priority":1}'
        with pytest.raises(Rejected):
            decode_and_validate(topics.CALLS, raw, FAR)
    with pytest.raises(Rejected, match="lat"):
        events.validate_call({"call_id": "c", "ts": 1686440000000, "lat": math.nan, "lon": 1,
                                "category": "theft", "priority": 1}, FAR)


@pytest.mark.parametrize("field", ["status", "kind", "force", "category", "type"])
@pytest.mark.parametrize("value", [[1], {"a": 1}, 3, None])
def test_unhashable_or_wrong_typed_enums_are_rejected_not_crashing(field, value):
    topic = {"status": topics.GPS, "kind": topics.GPS, "force": topics.GPS, "category": topics.CALLS,
             "type": topics.ALERTS}[field]
    base = {topics.GPS: {"unit_id": "u", "ts": 1686440000000, "lat": 1.0, "lon": 2.0},
            topics.CALLS: {"call_id": "c", "ts": 1686440000000, "lat": 1.0, "lon": 2.0, "priority": 1,
                             "category": "theft"},
            topics.ALERTS: {"alert_id": "a", "camera_id": "c", "ts": 1686440000000, "lat": 1.0, "lon": 2.0,
                              "confidence": 0.5, "type": "fight"}}[topic]
    raw = json.dumps({**base, field: value}).encode()
    if value is None and field in ("status", "kind", "force"):
        assert decode_and_validate(topic, raw, FAR)[field] in ("available", "car", "police")  # null = default
    else:
        with pytest.raises(Rejected):
            decode_and_validate(topic, raw, FAR)


def test_gps_and_alert_defaults():
    g = decode_and_validate(topics.GPS, b'{"unit_id":"u","ts":1686440000000,"lat":1,"lon":2}', FAR)
    assert (g["status"], g["kind"], g["force"]) == ("available", "car", "police")
    a = decode_and_validate(topics.ALERTS, b'{"alert_id":"a","camera_id":"c","ts":1686440000000,'
                                             b'"lat":1,"lon":2,"type":"ufo","confidence":1}', FAR)
    assert (a["type"], a["severity"]) == ("other", 3)
    with pytest.raises(Rejected, match="confidence"):
        decode_and_validate(topics.ALERTS, b'{"alert_id":"a","camera_id":"c","ts":1686440000000,'
                                             b'"lat":1,"lon":2,"type":"fight","confidence":1.5}', FAR)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(topics.INPUT_TOPICS),
       st.dictionaries(st.sampled_from(["call_id", "unit_id", "alert_id", "camera_id", "ts", "lat", "lon",
                                        "category", "priority", "type", "confidence", "status", "kind",
                                        "severity", "speed", "heading", "caller", "text", "lang"]),
                       json_values, max_size=12))
def test_any_json_object_is_accepted_or_rejected_never_crashes(topic, obj):
    try:
        ev = decode_and_validate(topic, json.dumps(obj).encode(), FAR)
    except Rejected as exc:
        assert exc.reason
    else:
        assert events.MIN_TS_MS <= ev["ts"] <= FAR
        assert -90 <= ev["lat"] <= 90 and -180 <= ev["lon"] <= 180


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(raw):
    try:
        decode_and_validate(topics.GPS, raw, FAR)
    except Rejected:
        pass


def test_deadletter_record_encodes_non_utf8_as_base64():
    rec = orjson.loads(events.deadletter_record("calls.110", 0, 5, "invalid JSON", b"\xff\xfe"))
    assert rec == {"topic": "calls.110", "partition": 0, "offset": 5, "reason": "invalid JSON",
                   "raw": "//4=", "raw_encoding": "base64"}
    big = orjson.loads(events.deadletter_record("calls.110", 0, 5, "x", b"a" * 100_000))
    assert len(big["raw"]) == 64 * 1024


@pytest.mark.parametrize("force,want", [("police", "police"), ("auxiliary", "auxiliary"), ("volunteer", "volunteer"),
                                        ("security", "security"), ("militia", "police"), ("Auxiliary", "police"),
                                        ("", "police"), ("辅警", "police")])
def test_force_is_kept_when_known_and_police_otherwise(force, want):
    """CONTRACT §1 v3: `force` police (default), auxiliary, volunteer, security; unknown -> police. The
    fast path (floats, no extras) and the checked path (int coordinates) agree."""
    for lat in ("1.5", "1"):
        raw = f'{{"unit_id":"u","ts":1686440000000,"lat":{lat},"lon":2.5,"force":{json.dumps(force)}}}'.encode()
        assert decode_and_validate(topics.GPS, raw, FAR)["force"] == want
    assert events.validate_gps({"unit_id": "u", "ts": 1686440000000, "lat": 1.5, "lon": 2.5, "force": force},
                               FAR)["force"] == want
