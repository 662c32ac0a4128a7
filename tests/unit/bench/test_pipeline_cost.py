"""bench/pipeline_cost.py's --duty ways: coverage off really leaves coverage out (and only while it
lasts), the marathon's messages carry the duty layer and the operator's commands, and the paired
ways (--paired) leave the collector and coverage as they found them."""

from __future__ import annotations

import gc

import orjson

from bench.pipeline_cost import coverage_off, duty_cost_paired, marathon_messages
from connectors.scenario import venue
from contract import topics
from contract.plan import COMMAND_KEY
from contract.settings import DATA_DIR, DEMO_ZONES, Settings
from streams.coverage import ZoneCoverage
from streams.testing import Msg, Pipeline

T0 = 1_714_550_400_000


def _fixes(s: Settings) -> list[Msg]:
    """Ten units standing in the venue's core (the zone venue-core), a fix each."""
    out = []
    for k in range(10):
        lon, lat = venue.to_lonlat(20.0 * k - 100, 30.0, 6)
        ev = {"unit_id": f"U{k}", "ts": T0 + k, "lat": lat, "lon": lon, "status": "available", "kind": "foot"}
        out.append(Msg(s.topic(topics.GPS), 0, k, ev["unit_id"].encode(), orjson.dumps(ev), ev["ts"]))
    return out


def _coverage(pipe: Pipeline) -> float:
    return pipe.documents()["venue-core"]["coverage"]["60m"]


def test_coverage_off_leaves_it_out_while_it_lasts_and_puts_it_back():
    s = Settings(zones=DEMO_ZONES, partitions=4)
    with_coverage = Pipeline(s, wall0=T0 + 1000)
    with_coverage.feed(_fixes(s))
    with_coverage.finish()
    assert _coverage(with_coverage) > 0   # the oracle: the fixes do cover part of the core

    methods = (ZoneCoverage.fix, ZoneCoverage.doc)
    pipe = Pipeline(s, wall0=T0 + 1000)
    before = [dict(r.cover_parts) for r in pipe.routers]
    assert any(before)
    with coverage_off(pipe):
        assert all(r.cover_parts == {} for r in pipe.routers)
        # neither the per-fix update nor the share is computed (their cost is what this way leaves out)
        assert ZoneCoverage.fix is not methods[0] and ZoneCoverage.doc is not methods[1]
        pipe.feed(_fixes(s))
        pipe.finish()
        assert _coverage(pipe) == 0.0
    assert [r.cover_parts for r in pipe.routers] == before
    assert (ZoneCoverage.fix, ZoneCoverage.doc) == methods
    again = Pipeline(s, wall0=T0 + 1000)
    again.feed(_fixes(s))
    again.finish()
    assert _coverage(again) == _coverage(with_coverage)


def test_the_marathon_messages_carry_the_duty_layer_and_the_commands():
    msgs, duty = marathon_messages(DATA_DIR / "plans" / "marathon.toml", minutes=3)
    assert 0 < duty < len(msgs)
    units = {orjson.loads(m.value).get("unit_id", "") for m in msgs if m.topic == topics.GPS}
    assert any(u.startswith("DUTY-") for u in units) and any(u.startswith("SWEEP-") for u in units)
    assert [m.timestamp for m in msgs] == sorted(m.timestamp for m in msgs)
    assert all(m.key == COMMAND_KEY.encode() for m in msgs if m.topic == topics.PLAN_COMMANDS)


def test_the_paired_ways_measure_every_way_and_leave_gc_and_coverage_as_they_were():
    """duty_cost_paired freezes the warm states out of the collector while it measures and patches
    coverage off slice by slice: afterwards nothing stays frozen and coverage is the real one."""
    fix, doc = ZoneCoverage.fix, ZoneCoverage.doc
    r = duty_cost_paired(partitions=2, minutes=4, warmup_minutes=2, batch=500, flush_events=185)
    assert gc.get_freeze_count() == 0
    assert (ZoneCoverage.fix, ZoneCoverage.doc) == (fix, doc)
    assert r["measured"] > 0 and len(r["ways"]) == 3 and all(us > 0 for us in r["ways"].values())
    assert abs(r["both_us"] - (r["coverage_us"] + r["plan_us"])) < 1e-6
