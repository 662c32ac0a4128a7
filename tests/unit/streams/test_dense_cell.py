"""A dense cell: dozens of calls open around one spot, units and cameras among them, read in several
orders; IncidentState's decisions (arrivals, breaches, on-scene tiers, corroborating alerts) against a
brute-force oracle that looks at every event (the reach indexes of streams/incidents.py must not
change a decision, only how many incidents an event looks at)."""

from __future__ import annotations

import math
import random

import pytest
from h3.api import basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.response import haversine_m
from streams.incidents import IncidentState, reach_square
from streams.partitioning import FINE_RES

SPOT = (34.7466, 113.6253)
T0 = 1_700_000_000_000
MIN = 60_000
LATENESS_MS = 4 * MIN      # how far a record may be read after later ones (below the 10 min grace)


def _around(rng: random.Random, metres: float, spot: tuple[float, float] = SPOT) -> tuple[float, float]:
    """A point within ~metres of the spot (a square, 1e-5 deg ~ 1.1 m north-south)."""
    d = metres / 111_000
    d_lon = d / math.cos(math.radians(spot[0]))
    return spot[0] + rng.uniform(-d, d), spot[1] + rng.uniform(-d_lon, d_lon)


def scenario(seed: int, calls: int = 60, fixes: int = 400, alerts: int = 140,
             spot: tuple[float, float] = SPOT) -> list[tuple]:
    """Calls within ~80 m of the spot over 40 min, fixes of 12 units within ~250 m (some within 100 m
    of a call, some not; some at a call's very ts, some pairs of units at one ts), alerts within
    ~400 m; every event unique."""
    rng = random.Random(seed)
    out: list[tuple] = []
    for i in range(calls):
        ts = T0 + rng.randrange(40 * MIN)
        out.append(("call", f"c{i}", ts, *_around(rng, 80, spot)))
        if i % 6 == 0:      # a unit there as the call comes in (a fix at the call's ts)
            out.append(("fix", f"u{12 + i}", ts, *_around(rng, 60, spot)))
        elif i % 6 == 1:    # two units at one ts: the arrival goes to the id sorting first
            out.append(("fix", f"u{12 + i}", ts + 20_000, *_around(rng, 60, spot)))
            out.append(("fix", f"u{13 + i}", ts + 20_000, *_around(rng, 60, spot)))
    for i in range(fixes):
        out.append(("fix", f"u{rng.randrange(12)}", T0 - 5 * MIN + rng.randrange(110 * MIN) + i % 7,
                    *_around(rng, 250, spot)))
    for i in range(alerts):
        out.append(("alert", f"a{i}", T0 - 12 * MIN + rng.randrange(64 * MIN), *_around(rng, 400, spot)))
    return out


def feed(events: list[tuple], order_seed: int | None) -> tuple[list, dict]:
    """Read the events in ts order (order_seed None) or shuffled within LATENESS_MS, the watermark
    LATENESS_MS behind the latest ts read (never passing a ts still to come); then run the clock two
    hours on. -> (sla records, the last enriched record per call)."""
    if order_seed is None:
        keyed = sorted(events, key=lambda e: (e[2], e[1]))
        lateness = 0
    else:
        rng = random.Random(order_seed)
        keyed = [e for _k, e in sorted(((e[2] + rng.randrange(LATENESS_MS), e[1]), e) for e in events)]
        lateness = LATENESS_MS
    s = IncidentState()
    s.advance_clock(T0 - 20 * MIN)
    sla: list = []
    enriched: dict = {}

    def take() -> None:
        for kind, item in s.take_output():
            if kind == "sla":
                sla.append(item)
            elif kind == "enriched":
                enriched[item["call_id"]] = [(a["alert_id"], a["dt_s"], a["distance_m"])
                                             for a in item["corroborating_alerts"]]

    top = T0 - 20 * MIN
    for kind, ident, ts, lat, lon in keyed:
        cell = h3.latlng_to_cell(lat, lon, FINE_RES)
        if kind == "call":
            rec = {"call_id": ident, "ts": ts, "lat": lat, "lon": lon, "zones": ["Z"], "nearest_units": [],
                   "corroborating_alerts": []}
            s.on_call(ident, ts, lat, lon, cell, ["Z"], rec)
        elif kind == "fix":
            s.on_fix(ident, ts, lat, lon, cell, True, "car")
        else:
            s.on_alert(ident, ts, "crowd_density", lat, lon, cell)
        top = max(top, ts)
        s.advance_clock(top, top - lateness)
        take()
    s.advance_clock(top + 120 * MIN)
    take()
    return sla, enriched


def oracle(events: list[tuple]) -> tuple[list, dict]:
    """Every call against every fix and alert (CONTRACT §3, §4): the earliest fix within 100 m in
    [ts, ts + 60 min) (ties by unit id) arrives; no arrival within 300 s is a breach; distinct units
    within 100 m by 60/180/300 s; the 50 alerts within 300 m and 10 min closest in time (ties by id)."""
    calls = [e for e in events if e[0] == "call"]
    fixes = [e for e in events if e[0] == "fix"]
    alerts = [e for e in events if e[0] == "alert"]
    sla, enriched = [], {}
    for _k, cid, cts, clat, clon in calls:
        within = [(fts, u) for _f, u, fts, flat, flon in fixes
                  if haversine_m(clat, clon, flat, flon) <= 100.0]
        arrivals = sorted((fts, u) for fts, u in within if cts <= fts < cts + 60 * MIN)
        if arrivals:
            fts, unit = arrivals[0]
            sla.append({"type": "arrived", "call_id": cid, "zone_ids": ["Z"], "unit_id": unit,
                        "response_s": round((fts - cts) / 1000.0, 3), "ts": fts})
        if not arrivals or arrivals[0][0] - cts > 300_000:
            sla.append({"type": "breach", "call_id": cid, "zone_ids": ["Z"], "unit_id": None, "response_s": None,
                        "ts": cts + 300_000})
        counts = [len({u for fts, u in within if cts <= fts <= cts + limit}) for limit in (60_000, 180_000, 300_000)]
        sla.append({"type": "tiers", "call_id": cid, "zone_ids": ["Z"],
                    "on_scene": {"1m": counts[0], "3m": counts[1], "5m": counts[2]},
                    "met": counts[0] >= 1 and counts[1] >= 2 and counts[2] >= 3, "ts": cts + 300_000})
        near = sorted((abs(ats - cts), aid, ats, haversine_m(clat, clon, alat, alon))
                      for _a, aid, ats, alat, alon in alerts
                      if abs(ats - cts) <= 10 * MIN and haversine_m(clat, clon, alat, alon) <= 300.0)[:50]
        enriched[cid] = sorted(((aid, round((ats - cts) / 1000.0, 1), round(d, 1)) for _dt, aid, ats, d in near),
                               key=lambda a: (a[1], a[0]))
    return sla, enriched


def _canon(records: list) -> list:
    return sorted(repr(sorted(r.items())) for r in records)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 10_000)))
def test_a_dense_cell_decides_as_the_brute_force_oracle_in_any_allowed_read_order(seed, order_seed):
    events = scenario(seed)
    sla, enriched = feed(events, order_seed)
    want_sla, want_enriched = oracle(events)
    assert any(r["type"] == "arrived" for r in want_sla) and any(want_enriched.values())  # not a vacuous case
    assert _canon(sla) == _canon(want_sla)
    assert enriched == want_enriched


@pytest.mark.parametrize("spot", [(84.9992, 20.0), (-12.0, 179.9997), (0.0005, -0.0003)],
                         ids=["by-the-polar-key", "across-the-antimeridian", "across-the-equator-and-meridian"])
def test_a_dense_cell_decides_as_the_oracle_where_the_reach_grid_wraps(spot):
    # the reach squares' edge cases (streams/incidents.py reach_squares): calls filed under the
    # polar key, squares on both sides of longitude 180, negative indexes
    events = scenario(7, spot=spot)
    want_sla, want_enriched = oracle(events)
    assert any(r["type"] == "arrived" for r in want_sla)
    for order in (None, 3):
        sla, enriched = feed(events, order)
        assert _canon(sla) == _canon(want_sla) and enriched == want_enriched


def test_a_crowd_of_alerts_keeps_the_fifty_closest_in_time_per_call():
    # 80 calls at one spot and 150 alerts around it within 10 min: every call is full (50) and a
    # later alert closer in time still displaces the farthest, whatever the read order
    rng = random.Random(5)
    events = [("call", f"c{i}", T0 + rng.randrange(8 * MIN), *SPOT) for i in range(80)]
    events += [("alert", f"a{i}", T0 + rng.randrange(-2 * MIN, 10 * MIN), *_around(rng, 150)) for i in range(150)]
    want_sla, want_enriched = oracle(events)
    assert all(len(v) == 50 for v in want_enriched.values())
    for order in (None, 1, 2):
        sla, enriched = feed(events, order)
        assert _canon(sla) == _canon(want_sla) and enriched == want_enriched


def test_a_fix_meets_only_the_calls_it_can_still_decide_and_nothing_is_left_behind():
    # 300 calls at the spot within 10 s, all reached by one fix 30 s on: a later fix there meets none
    # of them once their tiers are decided (streams/incidents.py _Reach), and when they expire
    # every index is empty
    s = IncidentState()
    s.advance_clock(T0 - 1)
    cell = h3.latlng_to_cell(*SPOT, FINE_RES)
    for i in range(300):
        s.on_call(f"c{i}", T0 + i * 30, *SPOT, cell, ["Z"], {"call_id": f"c{i}", "nearest_units": []})
    here = s.near[reach_square(*SPOT)]
    assert len(here.arrival_hits(T0 + 20_000)) == 300 and len(here.tier_hits(T0 + 20_000)) == 300
    s.on_fix("u1", T0 + 30_000, *SPOT, cell, True, "car")
    assert len(here.arrival_hits(T0 + 30_000)) == 300      # a fix at the same ts may still sort first
    assert here.arrival_hits(T0 + 30_001) == [] and len(here.tier_hits(T0 + 30_001)) == 300
    assert len(here.arrival_hits(T0 + 29_999)) == 300      # an earlier fix read later still fits
    s.advance_clock(T0 + 320_000)                           # tiers decided
    assert here.arrival_hits(T0 + 300_000) == [] and here.tier_hits(T0 + 300_000) == []
    s.advance_clock(T0 + 2 * 60 * MIN)                     # settled and expired
    assert s.near == {} and s.calls_near == {} and s.incidents == {}
