"""`ZONEWATCH_GRACE_S` (CONTRACT §3 "Incidents and the 1-3-5 minute response"): a call consumed
within the grace of stream clock after its `ts` has its response decided from the fixes consumed
before it too; a call consumed later than that only from the fixes consumed from then on. Through
the worker's real flow in-process (streams/testing.py), with the grace read from the environment,
and the call consumed exactly at the grace and 1 ms past it."""

from __future__ import annotations

import orjson
import pytest

from contract import topics
from contract.settings import Settings
from streams.testing import Msg, Pipeline
from tests import scenario

T = scenario.ms(scenario.local(12, 8, 0))     # the call's ts
CALL_AT = scenario.PA
NEAR = (scenario.PA[0] + 0.0003, scenario.PA[1])   # 33 m north of the call: within the 100 m of arrival
FAR = scenario.PNONE                                 # a unit in no zone, 100 km away: moves the clock


def msg(topic: str, ev: dict, offset: int) -> Msg:
    return Msg(topic, 0, offset, None, orjson.dumps(ev), 1)


def fix(unit: str, ts: int, where, offset: int) -> Msg:
    return msg(topics.GPS, {"unit_id": unit, "ts": ts, "lat": where[0], "lon": where[1], "status": "available",
                            "kind": "foot"}, offset)


def run(grace_s: int, consumed_after_ms: int, monkeypatch) -> Pipeline:
    """u1 is near the call 30 s before it and reaches it 60 s after it, both fixes read before the
    call; u2 far away moves the stream clock to the call's ts + consumed_after_ms; then the call is
    read, alone in its batch; then u1's next fix there (ts + grace + 20 s)."""
    monkeypatch.setenv("ZONEWATCH_GRACE_S", str(grace_s))
    monkeypatch.setenv("ZONEWATCH_ZONES", str(scenario.ZONES_FILE))
    s = Settings.from_env()
    assert s.grace_ms == grace_s * 1000
    pipe = Pipeline(s)
    pipe.feed([fix("u1", T - 30_000, NEAR, 0), fix("u1", T + 60_000, NEAR, 1),
               fix("u2", T + consumed_after_ms, FAR, 2)], batch=3)
    assert pipe.router.clock == T + consumed_after_ms
    pipe.feed([msg(topics.CALLS, {"call_id": "c1", "ts": T, "lat": CALL_AT[0], "lon": CALL_AT[1],
                                  "category": "theft", "priority": 1}, 0)])
    pipe.feed([fix("u1", T + grace_s * 1000 + 20_000, NEAR, 3)])
    pipe.finish()
    return pipe


def decisions(pipe: Pipeline) -> list[tuple]:
    return sorted((e["type"], e["unit_id"], e["response_s"]) for e in pipe.sla
                  if e["call_id"] == "c1" and e["type"] != "tiers")


@pytest.mark.parametrize("grace_s", [240, 600])
def test_a_call_consumed_at_the_grace_counts_the_fixes_read_before_it(grace_s, monkeypatch):
    pipe = run(grace_s, grace_s * 1000, monkeypatch)
    assert decisions(pipe) == [("arrived", "u1", 60.0)]
    assert pipe.documents()["A"]["response"]["within_1m"] == 1
    # and its recommendation is made from the positions at its ts (u1, 33 m away, 30 s before)
    last = [r for r in pipe.enriched if r["call_id"] == "c1"][-1]
    assert [u["unit_id"] for u in last["nearest_units"]] == ["u1"]


@pytest.mark.parametrize("grace_s", [240, 600])
def test_a_call_consumed_past_the_grace_counts_only_the_fixes_read_after_it(grace_s, monkeypatch):
    pipe = run(grace_s, grace_s * 1000 + 1, monkeypatch)
    late = grace_s + 20.0   # u1's fix read after the call, not the one 60 s after it read before
    assert decisions(pipe) == [("arrived", "u1", late)] + ([("breach", None, None)] if late > 300 else [])
    response = pipe.documents()["A"]["response"]
    assert (response["arrived"], response["within_1m"], response["p50_s"]) == (1, 0, round(late))
    # positions of its time are gone: processing-time ones only (the worker asks Redis from 0 m on)
    assert pipe.fallback == {"c1": 0.0}
    assert all(r["nearest_units"] == [] for r in pipe.enriched if r["call_id"] == "c1")
