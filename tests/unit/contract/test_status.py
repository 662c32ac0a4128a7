"""`camera.status` (CONTRACT §1): the topic, its key, and `validate_status` — accepted shapes,
rejections with reasons, and nothing but Rejected for any JSON object."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import events, topics
from contract.errors import Rejected
from contract.events import decode_and_validate, validate_status

FAR = 10 ** 14
TS = 1686440000000


def status(**over):
    ev = {"camera_id": "CAM-0001", "ts": TS, "lat": 36.06, "lon": 103.83}
    ev.update(over)
    return orjson.dumps({k: v for k, v in ev.items() if v is not ...})


def test_the_topic_is_an_input_topic_keyed_by_camera_id():
    assert topics.STATUS == "camera.status"
    assert topics.STATUS in topics.INPUT_TOPICS
    assert topics.KEY_FIELD[topics.STATUS] == "camera_id"
    assert events.VALIDATORS[topics.STATUS] is validate_status


def test_valid_report_and_defaults():
    ev = decode_and_validate(topics.STATUS, status(), FAR)
    assert ev == {"camera_id": "CAM-0001", "ts": TS, "lat": 36.06, "lon": 103.83, "online": True}
    assert decode_and_validate(topics.STATUS, status(online=None), FAR)["online"] is True   # null = default
    assert decode_and_validate(topics.STATUS, status(online=False), FAR)["online"] is False
    # RFC 3339 time, integer coordinates, unknown extra fields ignored
    ev = decode_and_validate(topics.STATUS, status(ts="2023-06-11T07:33:20+08:00", lat=36, lon=104,
                                                   vendor="hik", fps=25), FAR)
    assert ev == {"camera_id": "CAM-0001", "ts": TS, "lat": 36.0, "lon": 104.0, "online": True}


@pytest.mark.parametrize("raw,reason", [
    (b"{not json", "invalid JSON"),
    (b'"online"', "message is not a JSON object"),
    (status(camera_id=...), "missing field camera_id"),
    (status(camera_id=7), "camera_id must be a string"),
    (status(camera_id=""), "camera_id must be 1..64"),
    (status(camera_id="c" * 65), "camera_id must be 1..64"),
    (status(camera_id="a\tb"), "camera_id contains control characters"),
    (status(ts=...), "missing field ts"),
    (status(ts="2023-06-11T07:30:00"), "ts string has no UTC offset"),
    (status(ts=1), "ts before 2000"),
    (status(ts=FAR + 1), "ts too far in the future"),
    (status(lat=...), "missing field lat"),
    (status(lat=90.5), "lat 90.5 out of range"),
    (status(lon="103.8"), "lon must be a number"),
    (status(online="false"), "online must be a boolean"),
    (status(online=0), "online must be a boolean"),
    (status(online=[True]), "online must be a boolean"),
    (None, "empty message value"),
])
def test_rejections_have_reasons(raw, reason):
    with pytest.raises(Rejected) as exc:
        decode_and_validate(topics.STATUS, raw, FAR)
    assert exc.value.reason.startswith(reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["camera_id", "ts", "lat", "lon", "online", "alert_id", "type"]),
                       json_values, max_size=7))
def test_any_json_object_is_accepted_or_rejected_never_crashes(obj):
    try:
        ev = decode_and_validate(topics.STATUS, json.dumps(obj).encode(), FAR)
    except Rejected as exc:
        assert exc.reason
    else:
        assert set(ev) == {"camera_id", "ts", "lat", "lon", "online"}
        assert type(ev["online"]) is bool and events.MIN_TS_MS <= ev["ts"] <= FAR
        assert obj.get("online") in (None, True, False) and ev["online"] is (obj.get("online") is not False)
