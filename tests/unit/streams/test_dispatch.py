"""The dispatch recommendation (`nearest_units`) as of the call's ts, issue 11 deliverable 6.

The routing guarantee it rests on (every available fix within DISPATCH_EXACT_M of a call reaches
the call's home partition), and the incidents stage's decision: when it is made, that it is final,
what it holds, what is left to the processing-time lookup, and that snapshots carry it. The
recommendation over random histories, read orders and partition counts against a brute-force
oracle is in test_read_order.py."""

from __future__ import annotations

import math
import random

import msgspec
import orjson
import pytest
from h3.api import basic_int as h3
from shapely.geometry import box

from contract.response import ARRIVAL_RADIUS_M, CORROBORATION_RADIUS_M, DISPATCH_EXACT_M, EARTH_RADIUS_M
from contract.zones import Zone
from streams import records
from streams.incidents import IncidentState
from streams.partitioning import FINE_RES, HOME_RES, HomeCells, HomeMap, covering_k

T0 = 1_700_000_000_000
LAT, LON = 34.7466, 113.6253


def dest(lat: float, lon: float, d: float, bearing: float) -> tuple[float, float]:
    """The point d metres from (lat, lon) on a bearing (radians), on the sphere of haversine_m."""
    la1, lo1, dr = math.radians(lat), math.radians(lon), d / EARTH_RADIUS_M
    la2 = math.asin(math.sin(la1) * math.cos(dr) + math.cos(la1) * math.sin(dr) * math.cos(bearing))
    lo2 = lo1 + math.atan2(math.sin(bearing) * math.sin(dr) * math.cos(la1),
                           math.cos(dr) - math.sin(la1) * math.sin(la2))
    return math.degrees(la2), (math.degrees(lo2) + 540) % 360 - 180


def cell(lat: float, lon: float) -> int:
    return h3.latlng_to_cell(lat, lon, FINE_RES)


# -- the geometry the guarantee rests on ------------------------------------------------------

CENTRES = [(0.3, 10.0), (22.5, -43.2), (34.75, 113.65), (51.5, -0.12), (59.9, 30.3), (69.6, 18.9),
           (-33.9, 151.2), (35.0, 179.99)]


def test_covering_k_holds_every_cell_within_the_radius():
    rng = random.Random(5)
    for lat0, lon0 in CENTRES:
        for radius in (DISPATCH_EXACT_M, 500.0):
            for _ in range(40):
                lat, lon = dest(lat0, lon0, rng.uniform(0, 5000), rng.uniform(0, 2 * math.pi))
                c = cell(lat, lon)
                k = covering_k(c, radius)
                for _ in range(25):
                    q = dest(lat, lon, radius * rng.random() ** 0.2, rng.uniform(0, 2 * math.pi))
                    assert h3.grid_distance(c, cell(*q)) <= k, (lat, lon, q, radius)


def zones_west_of(lat: float, lon: float) -> list[Zone]:
    """Six 5 x 10 km zones in a row from 1 km to 31 km west of (lat, lon): seven home runs, the
    widened box's edge 9 km east of the point (homes beyond it are hashed)."""
    s, n = dest(lat, lon, 5000, math.pi)[0], dest(lat, lon, 5000, 0.0)[0]
    out = []
    for i in range(6):
        e, w = dest(lat, lon, 1000 + 5000 * i, -math.pi / 2)[1], dest(lat, lon, 6000 + 5000 * i, -math.pi / 2)[1]
        out.append(Zone(f"z{i}", f"z{i}", "grid", None, box(w, s, e, n)))
    return out


@pytest.mark.parametrize("geographic", [False, True], ids=["hashed", "geographic"])
def test_every_fix_within_the_exact_reach_goes_to_the_home_of_every_call_there(geographic):
    """homes_near is the routing of available fixes: the home of any point within DISPATCH_EXACT_M
    of any point of the fix's cell must be among them (checked on home cells, not partitions,
    where a collision would hide a miss), and so must its partition — under hashed homes and
    under the geographic map (runs by longitude, hashed beyond the zones' widened box), whose
    run edges and fallback edge cross the sample. The same for the arrival and corroboration
    radii (the fixed-disk path of `within`)."""
    rng = random.Random(6)
    sizes = []
    kinds = set()   # homes in the widened box (runs) or not (hashed): the geographic sample must meet both
    for lat0, lon0 in CENTRES:
        home_map = HomeMap(zones_west_of(lat0, lon0) if geographic else [], 7)
        homes = HomeCells(7, home_map)
        runs_met = set()
        for _ in range(40):
            lat, lon = dest(lat0, lon0, rng.uniform(0, 6000), rng.uniform(0, 2 * math.pi))
            c = cell(lat, lon)
            near = homes.homes_near(c, DISPATCH_EXACT_M)
            parts = homes.within(c, DISPATCH_EXACT_M)
            sizes.append(len(near))
            for h in near:
                hl, hn = h3.cell_to_latlng(h)
                box_ = home_map.box
                in_runs = box_ is not None and box_[0] <= hn <= box_[2] and box_[1] <= hl <= box_[3]
                kinds.add(in_runs)
                if in_runs:
                    runs_met.add(home_map.partition(h))
            for _ in range(40):
                q = dest(lat, lon, DISPATCH_EXACT_M * rng.random() ** 0.2, rng.uniform(0, 2 * math.pi))
                qc = cell(*q)
                assert h3.cell_to_parent(qc, HOME_RES) in near, (lat, lon, q)
                assert homes.own(qc) in parts
            for radius in (ARRIVAL_RADIUS_M, CORROBORATION_RADIUS_M):
                for _ in range(10):
                    q = dest(lat, lon, radius * rng.random() ** 0.2, rng.uniform(0, 2 * math.pi))
                    assert homes.own(cell(*q)) in homes.within(c, radius), (lat, lon, q, radius)
        if geographic:   # seven runs, and the sample crosses an edge between two of them
            assert home_map.runs == 7 and len(runs_met) >= 2, (lat0, lon0, home_map.runs, runs_met)
    # a superset, but not a wasteful one: about 2.5 homes meet a 2 km disc in 36 km² cells
    assert 1.5 < sum(sizes) / len(sizes) < 4.0
    assert kinds == ({True, False} if geographic else {False})


def test_a_point_far_from_every_other_home_goes_to_its_own_only():
    homes = HomeCells(7)
    c = cell(LAT, LON)
    home = h3.cell_to_parent(c, HOME_RES)
    centre = h3.cell_to_center_child(home, FINE_RES)
    assert homes.homes_near(centre, 100.0) == {home}


# -- the decision in the incidents stage ---------------------------------------------------------

def call(s: IncidentState, cid: str, ts: int, where=(LAT, LON)) -> None:
    rec = {"call_id": cid, "ts": ts, "lat": where[0], "lon": where[1], "category": "theft", "priority": 2,
           "zones": [], "ring": None, "nearest_units": [], "corroborating_alerts": []}
    s.on_call(cid, ts, where[0], where[1], cell(*where), [], rec)


def fix(s: IncidentState, unit: str, ts: int, metres: float, bearing_deg: float = 0.0,
        status: str = "available", kind: str = "car") -> None:
    lat, lon = dest(LAT, LON, metres, math.radians(bearing_deg))
    s.on_fix(unit, ts, lat, lon, cell(lat, lon), status == "available", kind)


def enriched(s: IncidentState) -> list[dict]:
    return [dict(rec, nearest_units=list(rec["nearest_units"])) for what, rec in s.take_output() if what == "enriched"]


def names(rec: dict) -> list[str]:
    return [u["unit_id"] for u in rec["nearest_units"]]


def test_decided_once_the_watermark_reaches_the_call_from_the_positions_at_its_ts():
    s = IncidentState()
    s.advance_clock(T0, wm=T0 - 5_000)
    fix(s, "a", T0 - 60_000, 500)                 # at the call: 500 m N
    fix(s, "b", T0 + 5_000, 100)                  # after the call: not where anyone was at its ts
    fix(s, "moved", T0 - 90_000, 50)              # near a while before the call ...
    fix(s, "moved", T0 - 30_000, 2_500, 90)       # ... 2.5 km E at the call (beyond the exact reach)
    fix(s, "busy", T0 - 80_000, 60)               # available, then busy at the call
    fix(s, "busy", T0 - 20_000, 70, status="busy")
    fix(s, "stale", T0 - 120_001, 10)             # more than 120 s before the call
    fix(s, "edge", T0 - 120_000, 1_900, 180, kind="foot")   # exactly 120 s: still fresh
    call(s, "c1", T0)
    first = enriched(s)
    assert [r["call_id"] for r in first] == ["c1"] and first[0]["nearest_units"] == []  # not decided yet
    fix(s, "late", T0 - 1_000, 800, 270, kind="motorcycle")  # read after the call, ts before it: counts
    s.advance_clock(T0 + 10_000, wm=T0 - 1)       # the watermark short of the call's ts
    assert enriched(s) == [] and s.incidents["c1"].recommended_at is None
    s.advance_clock(T0 + 10_000, wm=T0)           # ... and at it: every fix up to the call is read
    (rec,) = enriched(s)
    assert names(rec) == ["a", "late", "edge"]
    a, late, edge = rec["nearest_units"]
    assert a == {"unit_id": "a", "kind": "car", "distance_m": 500.0, "eta_s": round(500 * 1.3 / 8.3)}
    assert late["kind"] == "motorcycle" and abs(late["distance_m"] - 800) <= 0.1
    assert edge["kind"] == "foot" and edge["eta_s"] == round(edge["distance_m"] * 1.3 / 1.4)
    assert s.incidents["c1"].recommended_at == T0 + 10_000
    assert s.take_fallback() == {}                # three found within the exact reach
    # final: a fix before the call read after the decision changes nothing, and is not re-sent
    fix(s, "later", T0 - 500, 5)
    s.advance_clock(T0 + 20_000, wm=T0 + 20_000)
    assert enriched(s) == [] and names(s.incidents["c1"].record) == ["a", "late", "edge"]


def test_fewer_than_three_within_the_exact_reach_asks_the_processing_time_lookup_beyond_it():
    s = IncidentState()
    s.advance_clock(T0 + 1, wm=T0 + 1)
    fix(s, "a", T0 - 10_000, DISPATCH_EXACT_M - 1)
    fix(s, "far", T0 - 10_000, DISPATCH_EXACT_M + 1)
    call(s, "c1", T0)                             # the watermark is past it already: decided at once
    (rec,) = enriched(s)                          # one record, with its recommendation
    assert names(rec) == ["a"]
    assert s.take_fallback() == {"c1": DISPATCH_EXACT_M} and s.take_fallback() == {}
    # the wall and the timeline wait for the farther units (the worker touches the call once Redis
    # answered): they never show the exact part first and three units a moment later
    assert [s.board_doc(inc, 0)["nearest_units"] for inc in s.take_board().values()] == [[]]  # the call
    s.touch("c1")
    assert [s.board_doc(inc, 0)["nearest_units"] for inc in s.take_board().values()] == [rec["nearest_units"]]
    timeline = s.timeline_doc(s.incidents["c1"], 0)
    # on the timeline at the call's ts (the positions it describes), not when it was decided
    assert {"ts": T0, "what": "recommended", "unit_ids": ["a"]} in timeline["events"]
    assert s.board_doc(s.incidents["c1"], 0)["nearest_units"] == rec["nearest_units"]


def test_a_call_consumed_after_the_grace_has_only_processing_time_positions():
    s = IncidentState(grace_ms=600_000)
    s.advance_clock(T0 + 600_001)
    fix(s, "a", T0 - 10_000, 100)
    call(s, "c1", T0)
    (rec,) = enriched(s)
    assert rec["nearest_units"] == [] and s.take_fallback() == {"c1": 0.0}
    assert s.incidents["c1"].recommended_at == T0 + 600_001


def test_ties_are_broken_by_unit_id_and_at_most_three_are_kept():
    s = IncidentState()
    s.advance_clock(T0, wm=T0)
    for u in ("d", "b", "c", "a"):
        fix(s, u, T0 - 1_000, 300, 45)
    call(s, "c1", T0)
    s.advance_clock(T0 + 1, wm=T0 + 1)
    assert names(enriched(s)[-1]) == ["a", "b", "c"]


def test_held_fixes_cover_the_staleness_bound_before_a_call_read_late_in_the_grace():
    s = IncidentState(grace_ms=600_000)
    s.advance_clock(T0 - 60_000)
    fix(s, "a", T0 - 110_000, 200)
    s.advance_clock(T0 + 590_000, wm=T0 - 1)      # the clock runs 9 min 50 s past the call
    call(s, "c1", T0)                             # within the grace
    s.advance_clock(T0 + 590_000, wm=T0 + 590_000)
    out = enriched(s)                             # the call's record, then the decided one
    assert [r["call_id"] for r in out] == ["c1", "c1"] and names(out[-1]) == ["a"]


def test_undecided_recommendations_survive_a_snapshot_decided_ones_are_not_decided_again():
    s = IncidentState()
    s.advance_clock(T0, wm=T0 - 1)
    fix(s, "a", T0 - 40_000, 300)
    call(s, "c1", T0)
    call(s, "c0", T0 - 30_000)
    s.advance_clock(T0, wm=T0 - 1)                # c0 decided, c1 not yet
    assert names(s.incidents["c0"].record) == ["a"] and s.incidents["c1"].recommended_at is None
    enriched(s)
    s.take_fallback()
    snap = msgspec.msgpack.decode(msgspec.msgpack.encode(s.snapshot()))
    r = IncidentState.restore(snap)
    # the look-back is rebuilt from the log (streams/recovery.py), as keep_fix does here
    lat, lon = dest(LAT, LON, 300, 0.0)
    r.keep_fix("a", T0 - 40_000, lat, lon, cell(lat, lon), True, "car")
    r.advance_clock(T0 + 1, wm=T0 + 1)
    out = enriched(r)
    assert [x["call_id"] for x in out] == ["c1"] and names(out[0]) == ["a"]
    assert names(r.incidents["c0"].record) == ["a"] and r.incidents["c0"].recommended_at == T0


class _OldIncidentFix(msgspec.Struct, array_like=True, tag_field="k", tag=7):
    """IncidentFix as zone-events records were written before it carried status and kind."""
    unit_id: str
    ts: int
    lat: float
    lon: float
    cell: int


class _OldBatch(msgspec.Struct, array_like=True):
    clock: int
    events: list[_OldIncidentFix]
    gps: list = []
    wall: int = 0


def test_zone_events_written_before_the_change_still_decode():
    c = cell(LAT, LON)
    old = msgspec.msgpack.encode(_OldBatch(T0, [_OldIncidentFix("u1", T0, LAT, LON, c)]))
    (rec,) = records.decode(old).events
    assert rec == records.IncidentFix("u1", T0, LAT, LON, c, False, "")


# -- the processing-time part (streams/dispatch.py) over a stand-in for Redis GEO -----------------

class _GeoStore:
    """nearby_available as RedisStore answers it, by brute force over a dict."""

    def __init__(self, units: dict[str, tuple[float, float, str, str, int]]):
        self.units = units   # unit -> (lat, lon, status, kind, ts)
        self.asked: list[float] = []

    async def nearby_available(self, points, radius_m, count):
        from contract.response import haversine_m
        self.asked.append(radius_m)
        found = []
        for lat, lon in points:
            hits = sorted((haversine_m(lat, lon, u[0], u[1]), k) for k, u in self.units.items())
            found.append([(k.encode(), d) for d, k in hits if d <= radius_m][:count])
        info = {k.encode(): orjson.dumps({"ts": u[4], "status": u[2], "kind": u[3], "lat": u[0], "lon": u[1]})
                for k, u in self.units.items()}
        return found, info


def _at(metres: float, bearing_deg: float = 0.0) -> tuple[float, float]:
    return dest(LAT, LON, metres, math.radians(bearing_deg))


def test_the_processing_time_part_adds_only_fresh_available_units_beyond_the_exact_reach():
    import asyncio

    from contract.settings import Settings
    from streams.dispatch import Dispatcher
    units = {"exact": (*_at(800), "available", "car", T0),          # already in the exact part
             "near": (*_at(1_500, 90), "available", "car", T0),     # inside the exact reach: not re-added
             "busy": (*_at(2_200, 180), "busy", "car", T0),
             "stale": (*_at(2_300, 270), "available", "car", T0 - 120_001),
             "far1": (*_at(2_500, 45), "available", "foot", T0 - 120_000),
             "far2": (*_at(3_000, 135), "available", "motorcycle", T0),
             "far3": (*_at(4_000, 225), "available", "car", T0)}
    store = _GeoStore(units)
    rec = {"call_id": "c1", "ts": T0, "lat": LAT, "lon": LON,
           "nearest_units": [{"unit_id": "exact", "kind": "car", "distance_m": 800.0, "eta_s": 125}]}
    late = {"call_id": "c2", "ts": T0, "lat": LAT, "lon": LON, "nearest_units": []}   # consumed after the grace
    asyncio.run(Dispatcher(Settings(), store).recommend([(rec, DISPATCH_EXACT_M), (late, 0.0)]))  # type: ignore[arg-type]
    assert [u["unit_id"] for u in rec["nearest_units"]] == ["exact", "far1", "far2"]
    assert abs(rec["nearest_units"][1]["distance_m"] - 2_500) < 0.2 and rec["nearest_units"][1]["kind"] == "foot"
    assert [u["unit_id"] for u in late["nearest_units"]] == ["exact", "near", "far1"]
