"""bench/city.py's CityStream and bench/events.py's stream_backlog."""

from __future__ import annotations

import math

import orjson

from bench.city import CityStream
from bench.events import stream_backlog
from contract import topics

BBOX = (113.0, 34.45, 114.0, 34.95)


def _ident(topic, value):
    ev = orjson.loads(value)
    if topic == topics.GPS:
        return topic, ev["unit_id"], ev["ts"]
    return topic, ev.get("alert_id") or ev["call_id"]


def _metres(a, b):
    dy = (a["lat"] - b["lat"]) * 111_320
    dx = (a["lon"] - b["lon"]) * 111_320 * math.cos(math.radians(a["lat"]))
    return math.hypot(dx, dy)


def test_events_and_make_give_the_same_stream():
    a = list(CityStream(BBOX, units=50, seed=3).events(500, 1_000_000))
    s = CityStream(BBOX, units=50, seed=3)
    b = [s.make(1_000_000 + int(i * 1000.0 / s.rate)) for i in range(500)]
    assert a == b


def test_every_event_has_its_own_identity_and_the_mix_holds():
    s = CityStream(BBOX, units=200, seed=5, mix=(0.85, 0.145, 0.005))
    evs = list(s.events(20_000, 1_700_000_000_000))
    idents = [_ident(t, v) for t, _k, v, _ts in evs]
    assert len(set(idents)) == len(idents)
    share = sum(1 for t, *_ in evs if t == topics.GPS) / len(evs)
    assert 0.83 < share < 0.87


def test_walking_units_move_tens_of_metres_and_stress_units_jump():
    def steps(stress):
        s = CityStream(BBOX, units=100, seed=9, stress=stress, rate=740.0)
        last, out = {}, []
        for t, _k, v, _ts in s.events(20_000, 1_700_000_000_000):
            if t != topics.GPS:
                continue
            ev = orjson.loads(v)
            if ev["unit_id"] in last:
                out.append(_metres(last[ev["unit_id"]], ev))
            last[ev["unit_id"]] = ev
        return sorted(out)

    walk, jump = steps(False), steps(True)
    assert walk[-1] <= 9.0 * 30 + 1            # the fastest kind, at most 30 s of movement
    assert walk[len(walk) // 2] < 300
    assert jump[len(jump) // 2] > 5_000        # anywhere in a 90 km x 55 km box


def test_stream_backlog_tallies_what_it_produced():
    s = CityStream(BBOX, units=300, seed=1)
    now = 1_800_000_000_000
    msgs, exp = stream_backlog(s.make, 5_000, now, 740.0, seed=2, dup_rate=0.02, invalid_rate=0.01)
    assert len(msgs) == 5_000 == exp.total
    assert sum(exp.by_topic.values()) == 5_000
    seen, dups, bad = set(), 0, 0
    for m in msgs:
        try:
            ev = orjson.loads(m.value)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(ev, dict) or not {"ts", "lat", "lon"} <= set(ev) or not -90 <= ev["lat"] <= 90 \
                or ev["ts"] > now + 60_000 or ev.get("confidence", 0) > 1 or len(ev.get("alert_id", "")) > 64:
            bad += 1
            continue
        key = (m.topic, m.value)
        if key in seen:
            dups += 1
        seen.add(key)
    assert (dups, bad) == (exp.duplicate, exp.rejected)
    assert exp.accepted == 5_000 - dups - bad
    assert exp.max_valid_ts < now - 119_000
