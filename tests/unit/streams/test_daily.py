"""zones.daily (CONTRACT §4) over the scenario's midnight (tests/scenario.py), computed by hand.

The scenario runs from 2023-06-11 23:10 to 2023-06-12 00:22:40 local time. With the 10-minute
grace, the 11th is final once the clock passes 00:10 on the 12th. Read in the scenario's order,
in batches of 3, call c7 (23:59 on the 11th) is consumed when the clock is already 00:21:30: the
11th is final by then, so c7 is in no daily record (it is in no `today` either), but its breach
(00:04 on the 12th) is a decision of the 12th. So are its on-scene tiers (CONTRACT §3 v3, decided at
call ts + 300 s like a breach): nobody came near c1, c2, c3, c6 or c7, so every zone's tiers decided
on a day are its breaches of that day, none met; c4's tiers (00:25) are after the final clock.
"""

from __future__ import annotations

import pytest

from contract.settings import Settings
from streams.testing import Pipeline
from tests import scenario
from tests.unit.streams.test_pipeline import messages

EMPTY_HOURS = [0] * 24


def hours(**at):
    out = [0] * 24
    for h, n in at.items():
        out[int(h[1:])] = n
    return out


def rec(date, zid, final, calls, cat, prio, alerts, types, hc, ha, arrived=0, breaches=0, p=None, tiers=0):
    within = 1 if arrived else 0
    return {"date": date, "zone_id": zid, "final": final, "calls": calls, "calls_by_category": cat,
            "calls_by_priority": prio, "calls_by_lang": {"und": calls} if calls else {},
            "alerts": alerts, "alerts_by_type": types, "hourly": {"calls": hc, "alerts": ha},
            "response": {"arrived": arrived, "within_1m": 0, "within_3m": within, "within_5m": within,
                         "breaches": breaches, "p50_s": p, "p90_s": p, "tiers_met": 0, "tiers_decided": tiers}}


D11, D12 = "2023-06-11", "2023-06-12"
VENUE_CALL = ({"medical": 1}, {"1": 1})
EXPECTED = {
    f"{D11}|A": rec(D11, "A", True, 2, {"theft": 1, "violent": 1}, {"1": 1, "2": 1}, 0, {},
                    hours(h23=2), EMPTY_HOURS, breaches=2, tiers=2),                     # c1, c2; breaches 23:15, 23:55
    f"{D11}|B": rec(D11, "B", True, 1, {"violent": 1}, {"1": 1}, 0, {}, hours(h23=1), EMPTY_HOURS, breaches=1, tiers=1),
    f"{D12}|A": rec(D12, "A", False, 1, {"dispute": 1}, {"2": 1}, 1, {"crowd_density": 1},
                    hours(h0=1), hours(h0=1), breaches=2, tiers=2),             # c6; breaches c6 00:06, c7 00:04
    f"{D12}|B": rec(D12, "B", False, 2, {"dispute": 1, "fraud": 1}, {"2": 1, "3": 1}, 1, {"crowd_density": 1},
                    hours(h0=2), hours(h0=1), breaches=2, tiers=2),             # c3, c6
    f"{D12}|outer": rec(D12, "outer", False, 1, *VENUE_CALL, 2, {"crowd_density": 1, "face_watchlist": 1},
                        hours(h0=1), hours(h0=2), arrived=1, p=120),            # c4 reached by u2 after 120 s
    f"{D12}|inner": rec(D12, "inner", False, 1, *VENUE_CALL, 2, {"crowd_density": 1, "face_watchlist": 1},
                        hours(h0=1), hours(h0=2), arrived=1, p=120),
    f"{D12}|core": rec(D12, "core", False, 1, *VENUE_CALL, 1, {"face_watchlist": 1},
                       hours(h0=1), hours(h0=1), arrived=1, p=120),
}
VOLATILE = ("name", "kind", "ring", "tz", "clock", "version")
#: not in EXPECTED: `once` (each event counted in its first zone only) has its own test below
APART = VOLATILE + ("once",)


@pytest.mark.parametrize("partitions", [1, 2, 4, 7])
def test_zones_daily_across_midnight_equals_the_hand_computed_records(partitions):
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=partitions))
    pipe.feed(messages(), batch=3)
    pipe.finish()
    got = pipe.daily()
    assert {k: {f: v for f, v in d.items() if f not in APART} for k, d in got.items()} == EXPECTED
    assert all(d["tz"] == "Asia/Shanghai" and d["clock"] == scenario.FINAL_CLOCK for d in got.values())
    # taken: nothing more until something changes; the final days are gone from the state
    assert pipe.daily() == {}


def test_daily_records_survive_a_snapshot_and_versions_keep_increasing():
    s = Settings(zones=scenario.ZONES_FILE, partitions=2)
    pipe = Pipeline(s)
    msgs = messages()
    pipe.feed(msgs[:7], batch=3)
    first = pipe.daily()
    for p, h in pipe.stage.held.items():  # a new owner restores every partition from its snapshot
        snap = h.state.snapshot()
        sealed = {hour: arr.tobytes() for hour, arr in h.state.seen.sealed.items()}
        fresh = pipe.stage.new_state(p)
        fresh.restore(snap, sealed)
        h.state = fresh
    pipe.feed(msgs[7:], batch=3)
    pipe.finish()
    second = pipe.daily()
    assert {k: {f: v for f, v in d.items() if f not in APART} for k, d in second.items()} == \
        {k: v for k, v in EXPECTED.items() if k in second}
    for key, doc in second.items():
        if key in first:
            assert doc["version"] > first[key]["version"]


# Each event once (hand-computed from tests/scenario.py; the record's `once` summed over zones):
# the 11th: c1 (A) and c2 (A, B), breached at 23:15 and 23:55. The 12th: c3 (B), c4 (outer, inner,
# core), c6 (A, B); c5 is in no zone; a1 (the venue rings), a2 (outer, inner), a3 (A, B); decided on
# the 12th: c4's arrival after 120 s and the breaches of c6 (00:06), c3 (00:10) and c7 (00:04: c7
# itself came too late for the 11th, its breach is the 12th's).
ONCE = {
    D11: {"calls": 2, "calls_by_priority": {"1": 1, "2": 1}, "calls_by_category": {"theft": 1, "violent": 1},
          "alerts": 0, "alerts_by_type": {}, "hourly_calls": hours(h23=2), "hourly_alerts": EMPTY_HOURS,
          "response": {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 2}, "times": {}},
    D12: {"calls": 3, "calls_by_priority": {"1": 1, "2": 1, "3": 1},
          "calls_by_category": {"dispute": 1, "fraud": 1, "medical": 1},
          "alerts": 3, "alerts_by_type": {"crowd_density": 2, "face_watchlist": 1},
          "hourly_calls": hours(h0=3), "hourly_alerts": hours(h0=3),
          "response": {"arrived": 1, "within_1m": 0, "within_3m": 1, "within_5m": 1, "breaches": 3},
          "times": {"120": 1}},
}


def once_overall(daily: dict) -> dict:
    """The `once` figures of every record summed per date."""
    out: dict = {}
    for key, d in daily.items():
        o = d["once"]
        t = out.setdefault(key.split("|")[0], {"calls": 0, "calls_by_priority": {}, "calls_by_category": {},
                                               "alerts": 0, "alerts_by_type": {}, "hourly_calls": [0] * 24,
                                               "hourly_alerts": [0] * 24, "response": {}, "times": {}})
        t["calls"] += o["calls"]
        t["alerts"] += o["alerts"]
        for f in ("calls_by_priority", "calls_by_category", "alerts_by_type"):
            for k, n in o[f].items():
                t[f][k] = t[f].get(k, 0) + n
        for f in ("calls", "alerts"):
            t[f"hourly_{f}"] = [a + b for a, b in zip(t[f"hourly_{f}"], o["hourly"][f], strict=True)]
        for k in ("arrived", "within_1m", "within_3m", "within_5m", "breaches"):
            t["response"][k] = t["response"].get(k, 0) + o["response"][k]
        for k, n in o["response"]["times"].items():
            t["times"][k] = t["times"].get(k, 0) + n
    return out


@pytest.mark.parametrize("partitions", [1, 2, 4, 7])
@pytest.mark.parametrize("batch", [1, 3])   # with larger batches c7 is read before the 11th closes
def test_once_counts_each_call_and_alert_once_overall(partitions, batch):
    """Nested and overlapping zones (A and B overlap, core in inner in outer) count an event in each
    zone's own figures, but in `once` in one zone only, whatever the partitions and batches."""
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=partitions))
    pipe.feed(messages(), batch=batch)
    pipe.finish()
    got = pipe.daily()
    assert once_overall(got) == ONCE
    # while the zones' own figures count c2, c4, c6, a1, a2, a3 in each of their zones
    assert sum(d["calls"] for k, d in got.items() if k.startswith(D12)) == 6


def test_once_survives_a_snapshot():
    s = Settings(zones=scenario.ZONES_FILE, partitions=2)
    pipe = Pipeline(s)
    msgs = messages()
    pipe.feed(msgs[:9], batch=3)
    for p, h in pipe.stage.held.items():
        fresh = pipe.stage.new_state(p)
        fresh.restore(h.state.snapshot(), {hour: arr.tobytes() for hour, arr in h.state.seen.sealed.items()})
        h.state = fresh
    pipe.feed(msgs[9:], batch=3)
    pipe.finish()
    assert once_overall(pipe.daily()) == ONCE


def test_percentile_ranks_are_nearest_ranks():
    """Nearest rank ceil(q x n): of 71 response times the 50th percentile is the 36th and the 90th
    the 64th (of 70: the 35th and the 63rd); one time is every percentile of itself, in whole seconds."""
    from streams.zone_state import nearest_rank

    times = [float(s) for s in range(1, 72)]
    assert (nearest_rank(times, 50), nearest_rank(times, 90)) == (36, 64)
    assert (nearest_rank(times[:70], 50), nearest_rank(times[:70], 90)) == (35, 63)
    assert nearest_rank([120.5], 90) == 120 and nearest_rank([], 50) is None
