"""Contract v3's figures at their edges, driven directly: on-scene tiers (IncidentState and the zones'
response), coverage (streams/coverage.py: window bounds, when a zone is rewritten, a fix outside the
polygon in a cell whose centre is inside), health.last_event_ts (no rewrite as the clock ticks, null
after 24 h) and a zone-events record written before `force`. Every expectation is by hand here."""

from __future__ import annotations

import math

import h3
import msgspec
import orjson
from h3.api import basic_int as h3i
from shapely.geometry import Point, Polygon

from contract import topics
from contract.response import EARTH_RADIUS_M
from contract.settings import Settings
from contract.zones import load_zones
from streams import records
from streams.incidents import IncidentState
from streams.partitioning import FINE_RES, partition_of, zone_partitions
from streams.testing import Msg, Pipeline
from streams.zone_state import PartitionState
from tests import scenario

LAT, LON = 34.7466, 113.6253          # the call
T0 = 1_700_000_000_000
S = 1000


def north(metres: float) -> tuple[float, float]:
    """The point `metres` north of the call on haversine_m's sphere (along a meridian: exact)."""
    return LAT + metres / (EARTH_RADIUS_M * math.pi / 180), LON


def call(state: IncidentState, cid: str, ts: int, zones=("A",)) -> None:
    rec = {"call_id": cid, "ts": ts, "lat": LAT, "lon": LON, "category": "theft", "priority": 2,
           "zones": list(zones), "ring": None, "nearest_units": [], "corroborating_alerts": []}
    state.on_call(cid, ts, LAT, LON, h3i.latlng_to_cell(LAT, LON, FINE_RES), list(zones), rec)


def fix(state: IncidentState, unit: str, ts: int, where=(LAT, LON)) -> None:
    state.on_fix(unit, ts, where[0], where[1], h3i.latlng_to_cell(*where, FINE_RES))


def tiers(state: IncidentState) -> list[dict]:
    return [ev for what, ev in state.take_output() if what == "sla" and ev["type"] == "tiers"]


# --- on-scene tiers ---------------------------------------------------------------------------------

def test_tiers_count_distinct_units_by_1_3_5_minutes_and_are_decided_at_300_s_on_the_watermark():
    s = IncidentState()
    s.advance_clock(T0)
    call(s, "c1", T0)
    fix(s, "a", T0 - 1)                       # before the call: not on scene
    fix(s, "a", T0 + 60 * S)                  # 60 s exactly: by 1 min
    fix(s, "a", T0 + 61 * S)                  # the same unit again: counted once
    fix(s, "b", T0 + 60 * S + 1)              # 60.001 s: by 3 min only
    fix(s, "c", T0 + 180 * S, north(99.9))    # 99.9 m away at 180 s: by 3 min
    fix(s, "d", T0 + 200 * S, north(100.5))   # 100.5 m: not on scene
    fix(s, "e", T0 + 300 * S)                 # 300 s exactly: by 5 min
    fix(s, "f", T0 + 300 * S + 1)             # after the window
    s.advance_clock(T0 + 300 * S + 1, wm=T0 + 300 * S - 1)
    assert tiers(s) == []                     # the watermark has not reached call ts + 300 s
    s.advance_clock(T0 + 300 * S + 1, wm=T0 + 300 * S)
    assert tiers(s) == [{"type": "tiers", "call_id": "c1", "zone_ids": ["A"],
                         "on_scene": {"1m": 1, "3m": 3, "5m": 4}, "met": True, "ts": T0 + 300 * S}]
    fix(s, "g", T0 + 100 * S)                 # a fix consumed after the decision changes nothing
    s.advance_clock(T0 + 400 * S)
    assert tiers(s) == []


def test_fixes_held_before_a_late_call_count_and_a_call_in_two_zones_meets_the_stricter_requirement():
    required = {"A": (1, 2, 3), "course/1": (1, 3, 5)}
    s = IncidentState(tier_requirement=lambda z: required.get(z, (1, 2, 3)))
    s.advance_clock(T0 + 100 * S)
    for unit, dt in (("a", 10), ("b", 90), ("c", 100)):     # consumed before their call
        fix(s, unit, T0 + dt * S)
    call(s, "c1", T0, zones=("A", "course/1"))               # 100 s late, within the grace
    fix(s, "d", T0 + 250 * S)
    s.advance_clock(T0 + 300 * S)
    (ev,) = tiers(s)
    # 1/3/4 on scene: A's 1/2/3 is met, course/1's 1/3/5 is not (5 by 5 min) -> not met in every zone
    assert ev["on_scene"] == {"1m": 1, "3m": 3, "5m": 4} and ev["met"] is False


def test_a_call_consumed_after_the_grace_counts_only_the_fixes_consumed_from_then_on():
    s = IncidentState()
    s.advance_clock(T0 + 700 * S)              # grace 600 s: a call at T0 is consumed late
    fix(s, "a", T0 + 30 * S)
    call(s, "c1", T0)
    fix(s, "b", T0 + 40 * S)                   # consumed after the call: counts
    s.advance_clock(T0 + 701 * S)
    (ev,) = tiers(s)
    assert ev["on_scene"] == {"1m": 1, "3m": 1, "5m": 1}


def test_open_tiers_survive_a_restore_after_the_arrival_settled():
    """A feed far behind (the watermark's max lag allows up to an hour): the arrival is decided and
    settled on the clock (arrival + grace) while the tiers are still open; a fix that feed delivers
    after a takeover still puts its unit on scene, as in the state that was never interrupted."""
    live = IncidentState()
    live.advance_clock(T0, wm=T0)
    call(live, "c1", T0)
    fix(live, "a", T0 + 10 * S)
    live.advance_clock(T0 + 700 * S, wm=T0 + 20 * S)   # arrival at +10 s decided; settled at +610 s
    restored = IncidentState.restore(orjson.loads(orjson.dumps(live.snapshot())))
    tiers(live)
    for st in (live, restored):
        fix(st, "b", T0 + 100 * S)
        st.advance_clock(T0 + 700 * S, wm=T0 + 300 * S)
    (got,) = tiers(restored)
    assert tiers(live) == [got] and got["on_scene"] == {"1m": 1, "3m": 2, "5m": 2}


def test_the_zones_count_tiers_against_their_own_requirement_over_60_minutes():
    zones = load_zones(scenario.ZONES_FILE)
    required = {"A": (1, 1, 1)}
    st = PartitionState(zones, tier_requirement=lambda z: required.get(z, (1, 2, 3)))
    st.advance_clock(T0 + 300 * S)
    st.apply_all([records.ZoneCall("c1", T0, ["A", "B"], True, 1, "theft", 2, "und"),
                  records.Tiers("c1", T0, ["A", "B"], (1, 1, 1))])
    st.apply(records.Tiers("c1", T0, ["A", "B"], (1, 1, 1)))   # delivered again: nothing changes
    docs = {d["zone_id"]: d["response"] for d in st.changed_documents(all_zones=True)}
    assert (docs["A"]["tiers_met"], docs["A"]["tiers_decided"]) == (1, 1)   # 1/1/1 needed
    assert (docs["B"]["tiers_met"], docs["B"]["tiers_decided"]) == (0, 1)   # 1/2/3 needed
    st.advance_clock(T0 + 3_800 * S)          # the incident expired (T0 + 60 min), the call left the windows
    st.changed_documents(all_zones=True)
    st.advance_clock(T0 + 300 * S + 3_600 * S - 1)
    assert {d["zone_id"] for d in st.changed_documents(all_zones=True)} == set()
    st.advance_clock(T0 + 300 * S + 3_600 * S)                           # 60 min after the decision
    docs = {d["zone_id"]: d["response"] for d in st.changed_documents(all_zones=True)}
    assert docs["A"]["tiers_decided"] == docs["B"]["tiers_decided"] == 0


def test_tiers_known_before_their_call_count_no_breach_until_the_call_comes():
    zones = load_zones(scenario.ZONES_FILE)
    st = PartitionState(zones)
    st.advance_clock(T0 + 400 * S)
    st.apply(records.Tiers("c1", T0, ["A"], (0, 0, 0)))
    (doc,) = [d for d in st.changed_documents(all_zones=True) if d["zone_id"] == "A"]
    assert (doc["response"]["breaches"], doc["response"]["tiers_decided"], doc["open_incidents"]) == (0, 1, 0)
    st.apply(records.ZoneCall("c1", T0, ["A"], True, 1, "theft", 2, "und"))
    st.advance_clock(T0 + 400 * S)
    (doc,) = [d for d in st.changed_documents(all_zones=True) if d["zone_id"] == "A"]
    assert (doc["response"]["breaches"], doc["response"]["tiers_decided"], doc["open_incidents"]) == (1, 1, 1)


# --- coverage ---------------------------------------------------------------------------------------

ZONES = {z.zone_id: z for z in load_zones(scenario.ZONES_FILE)}


def test_coverage_counts_a_fix_for_60_min_and_8_h_and_rewrites_the_zone_exactly_then():
    st = PartitionState(list(ZONES.values()))
    lat, lon = scenario.PA2                   # zone A only; 48 cells have their centre in A
    st.apply(records.ZoneFix("u", T0, ["A"], True, 1, "busy", "car", True, lat, lon, "volunteer"))
    st.advance_clock(T0)
    doc = {d["zone_id"]: d for d in st.changed_documents(all_zones=True)}["A"]
    assert doc["coverage"] == {"60m": round(1 / 48, 2), "8h": round(1 / 48, 2)} == {"60m": 0.02, "8h": 0.02}
    assert doc["units"]["by_force"] == {"police": 0, "auxiliary": 0, "volunteer": 1, "security": 0}

    def written_at(clock):
        """The coverage written when the clock reaches `clock` (none: unchanged); the written
        documents must be what a full recomputation gives at every step."""
        st.advance_clock(clock)
        out = [d["coverage"] for d in st.changed_documents(all_zones=True) if d["zone_id"] == "A"]
        assert st.figures(st.zones["A"]) == st.zones["A"].last_figures
        return out

    assert written_at(T0 + 119 * S) == []
    assert written_at(T0 + 120 * S + 1) != []             # the unit went stale: units change
    assert written_at(T0 + 1_800 * S + 1) != []           # ... and is no longer quiet after 30 min
    assert written_at(T0 + 3_600 * S) == []               # 60 min old: still counted
    assert st.zones["A"].last_figures["coverage"] == {"60m": 0.02, "8h": 0.02}
    assert written_at(T0 + 3_600 * S + 1) == [{"60m": 0.0, "8h": 0.02}]
    assert written_at(T0 + 8 * 3_600 * S) == []
    assert written_at(T0 + 8 * 3_600 * S + 1) == [{"60m": 0.0, "8h": 0.0}]


def _border_point(zone_id: str) -> tuple[float, float]:
    """A point outside the zone inside a res-9 cell whose centre is in it (found here with shapely)."""
    g = ZONES[zone_id].geometry
    c = g.centroid
    for cell in h3.grid_disk(h3.latlng_to_cell(c.y, c.x, 9), 25):
        clat, clon = h3.cell_to_latlng(cell)
        if not g.contains(Point(clon, clat)):
            continue
        hexagon = Polygon([(lo, la) for la, lo in h3.cell_to_boundary(cell)])
        outside = hexagon.difference(g)
        if outside.area > 0:
            p = outside.representative_point()
            if h3.latlng_to_cell(p.y, p.x, 9) == cell and not g.contains(p):
                return p.y, p.x
    raise AssertionError("no border cell")


def test_a_fix_just_outside_the_zone_in_a_cell_whose_centre_is_inside_counts_whatever_the_partitions():
    """The unit was seen in A before (a unit's first fix goes to every partition), its own partition
    (crc32 of its id: the fix is in no zone) is neither A's nor outer's, and it is busy."""
    lat, lon = _border_point("outer")
    for partitions in (1, 4, 7):
        part = zone_partitions(ZONES.values(), partitions)
        unit = next(u for u in (f"u-edge-{i}" for i in range(100))
                    if partitions == 1 or partition_of(u, partitions) not in (part["A"], part["outer"]))
        pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=partitions))
        # busy: an available fix also goes to the partitions of the zones it may reach (reach)
        fixes = [{"unit_id": unit, "ts": T0 - 60 * S, "lat": scenario.PA2[0], "lon": scenario.PA2[1],
                  "status": "busy"}, {"unit_id": unit, "ts": T0, "lat": lat, "lon": lon, "status": "busy"}]
        pipe.feed([Msg(topics.GPS, 0, i, None, orjson.dumps(f), 1) for i, f in enumerate(fixes)], batch=1)
        pipe.finish()
        docs = pipe.documents()
        assert docs["outer"]["coverage"] == {"60m": round(1 / 17, 2), "8h": round(1 / 17, 2)}, partitions
        assert docs["outer"]["units"]["present"] == 0 and docs["outer"]["health"]["last_event_ts"]["gps"] is None


# --- health.last_event_ts ---------------------------------------------------------------------------

def test_last_event_ts_rewrites_nothing_as_the_clock_ticks_and_turns_null_after_24_h():
    st = PartitionState(list(ZONES.values()))
    lat, lon = scenario.PA2
    st.apply(records.ZoneFix("u", T0, ["A"], True, 1, "busy", "car", True, lat, lon))
    st.advance_clock(T0)
    (doc,) = [d for d in st.changed_documents(all_zones=True) if d["zone_id"] == "A"]
    assert doc["health"]["last_event_ts"] == {"calls": None, "gps": T0, "alerts": None}
    # second by second until the unit goes stale (120 s): no rewrite (v2 rewrote every second)
    assert [st.advance_clock(T0 + k * S) or st.changed_documents(all_zones=True) for k in range(1, 121)] == [[]] * 120
    st.advance_clock(T0 + 24 * 3_600 * S - 1)
    st.changed_documents(all_zones=True)
    st.advance_clock(T0 + 24 * 3_600 * S)
    assert st.changed_documents(all_zones=True) == []     # 24 h old: still there
    st.advance_clock(T0 + 24 * 3_600 * S + 1)
    (doc,) = [d for d in st.changed_documents(all_zones=True) if d["zone_id"] == "A"]
    assert doc["health"]["last_event_ts"] == {"calls": None, "gps": None, "alerts": None}


# --- zone-events records written before force --------------------------------------------------------

class _FixV2(msgspec.Struct, array_like=True, tag_field="k", tag=3, frozen=True):
    """ZoneFix as streams/records.py had it before contract v3 (no force)."""
    unit_id: str
    ts: int
    zones: list[str]
    primary: bool
    kafka_ts: int
    status: str
    kind: str
    presence: bool
    lat: float
    lon: float


def test_a_zone_fix_written_before_force_decodes_as_police():
    # a Batch is an array [clock, events, gps, wall]
    old = msgspec.msgpack.encode([T0, [_FixV2("u", T0, ["A"], True, 1, "busy", "car", True, *scenario.PA2)], [], 0])
    batch = records.decode(old)
    (rec,) = batch.events
    assert type(rec) is records.ZoneFix and rec.force == "police" and rec.lat == scenario.PA2[0]


def test_an_arrival_that_loops_back_after_the_deadline_is_no_breach_of_the_day():
    """The zone's partition passes the call's deadline on its watermark before the incidents stage's
    arrival (decided at 120 s) reaches it, as a replay at full speed does: zones.daily then agrees
    with sla.events (no breach record for a call reached within 300 s); an arrival after 300 s
    leaves the breach standing."""
    st = PartitionState(list(ZONES.values()))
    st.advance_clock(T0)
    st.apply_all([records.ZoneCall("c1", T0, ["A"], True, 1, "theft", 2, "und"),
                  records.ZoneCall("c2", T0, ["A"], True, 1, "theft", 2, "und")])
    st.advance_clock(T0 + 301 * S)

    def day_of_a():
        (doc,) = [d for _date, z, d in st.daily_docs(10**12) if z == "A"]
        st.daily_taken([(_date, z, d) for _date, z, d in st.daily_docs(10**12)])
        return doc

    doc = day_of_a()
    assert (doc["response"]["breaches"], doc["once"]["response"]["breaches"]) == (2, 2)
    st.apply_all([records.Arrival("c1", T0, ["A"], 120.0, "u1"), records.Arrival("c2", T0, ["A"], 420.0, "u2")])
    doc = day_of_a()
    assert (doc["response"]["breaches"], doc["response"]["arrived"], doc["response"]["within_5m"]) == (1, 2, 1)
    assert doc["once"]["response"]["breaches"] == 1
