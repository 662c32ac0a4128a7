"""The default scenario, `demo` (connectors/scenario/venue.py), and the demo zones file. Pure, no Kafka."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
from collections import Counter
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from shapely.geometry import Point, box, shape

from connectors.scenario import scenario_events, venue
from connectors.scenario.venue import VenueScenario as Scenario
from connectors.scenario.venue import write_demo_zones
from contract import errors, events, topics
from contract.settings import DEMO_ZONES

START = 1_700_000_000_000  # 2023-11-14T22:13:20Z
FAR_FUTURE = 2**62


def first(n, **kw):
    kw.setdefault("start_ms", START)
    return list(itertools.islice(scenario_events(**kw), n))


def test_same_seed_same_events():
    a = first(1000, seed=11)
    b = first(1000, seed=11)
    assert a == b and len(a) == 1000
    assert first(1000, seed=12) != a
    # ids carry the start, so two runs started at different times do not collide as duplicates
    later = first(1000, seed=11, start_ms=START + 3_600_000)

    def ids(evs):
        return {e.get("call_id") or e.get("alert_id") for t, e in evs if t != topics.GPS}

    assert not ids(a) & ids(later)


@pytest.fixture(scope="module")
def simulated_hour():
    """One simulated hour with the default parameters: (Scenario, its events)."""
    sc = Scenario(seed=5, start_ms=START, duration_s=3600)
    return sc, list(sc.events())


@pytest.fixture(scope="module")
def hour(simulated_hour):
    return simulated_hour[1]


def test_events_satisfy_the_contract(hour):
    counts = Counter(t for t, _ in hour)
    assert set(counts) == {topics.CALLS, topics.GPS, topics.ALERTS}
    # 300 units every 5-10 s, ~60 alerts and ~6 calls a minute
    assert 100_000 < counts[topics.GPS] < 250_000
    assert 2_500 < counts[topics.ALERTS] < 5_000
    assert 200 < counts[topics.CALLS] < 600
    for topic, ev in hour:
        norm = events.VALIDATORS[topic](ev, FAR_FUTURE)
        assert norm["ts"] == ev["ts"]
        if topic == topics.CALLS:
            assert ev["category"] in events.CATEGORIES  # never the "unknown -> other" fallback
        if topic == topics.ALERTS:
            assert ev["type"] in events.ALERT_TYPES
    # the encoded value round-trips through the pipeline's decoder
    topic, ev = hour[-1]
    assert events.decode_and_validate(topic, orjson.dumps(ev), FAR_FUTURE)["ts"] == ev["ts"]


def test_ts_non_decreasing_and_within_duration(hour):
    ts = [e["ts"] for _, e in hour]
    assert all(a <= b for a, b in pairwise(ts))
    assert ts[0] >= START and ts[-1] <= START + 3_600_000


def test_unit_mix_and_status(hour):
    kinds = {}
    statuses = Counter()
    for t, e in hour:
        if t == topics.GPS:
            kinds[e["unit_id"]] = e["kind"]
            statuses[e["status"]] += 1
    assert len(kinds) == 300
    assert set(Counter(kinds.values())) == {"foot", "car", "motorcycle", "swat"}
    assert statuses["available"] > statuses["busy"] > statuses["off_duty"] > 0


def test_alert_mix(hour):
    types = Counter(e["type"] for t, e in hour if t == topics.ALERTS)
    assert types.most_common(1)[0][0] == "crowd_density"
    assert types["face_watchlist"] > 0 and types["fence_intrusion"] > 0
    assert types["fence_intrusion"] < types["crowd_density"] / 20


def _load_zones(path=DEMO_ZONES):
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return doc, {f["id"]: shape(f["geometry"]) for f in doc["features"]}


def test_demo_zones_file_is_generated_and_valid(tmp_path):
    # the committed file is exactly what the generator writes
    fresh = write_demo_zones(tmp_path / "zones.geojson")
    assert fresh.read_bytes() == DEMO_ZONES.read_bytes()
    doc, geoms = _load_zones()
    assert doc["type"] == "FeatureCollection"
    ids = [f["id"] for f in doc["features"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, str) and i for i in ids)
    assert {"venue-core", "venue-inner", "venue-outer", "grid-r1c1"} <= set(ids)
    for f in doc["features"]:
        p = f["properties"]
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        assert isinstance(p["name"], str) and " / " in p["name"]  # Chinese / English
        assert p["kind"] in ("venue", "grid")
        assert (p.get("ring") in ("core", "inner", "outer")) == (p["kind"] == "venue")
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        for lon, lat in ring:  # GeoJSON order: lon, lat (Zhengzhou is ~113.5 E, ~34.7 N)
            assert 113.4 < lon < 113.7 and 34.6 < lat < 34.9
        assert geoms[f["id"]].is_valid
        assert geoms[f["id"]].exterior.is_ccw  # RFC 7946 winding


def test_venue_rings_nest():
    _, g = _load_zones()
    core, inner, outer = g["venue-core"], g["venue-inner"], g["venue-outer"]
    assert core.within(inner) and inner.within(outer)
    assert core.area < inner.area < outer.area
    stadium = Point(venue.VENUE_LON, venue.VENUE_LAT)
    assert core.contains(stadium) and inner.contains(stadium) and outer.contains(stadium)
    grid = [v for k, v in g.items() if k.startswith("grid-")]
    assert len(grid) == venue.GRID_N ** 2
    # the grid tiles a square around the venue, squares of about 1 km
    for sq in grid:
        minx, miny, maxx, maxy = sq.bounds
        assert abs((maxy - miny) * 110_950 - 1000) < 5
        assert abs((maxx - minx) * 111_320 * math.cos(math.radians(venue.VENUE_LAT)) - 1000) < 5
    assert sum(1 for sq in grid if sq.contains(stadium)) <= 1
    assert outer.within(box(*_union_bounds(grid)))


def _union_bounds(geoms):
    b = [g.bounds for g in geoms]
    return min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)


def test_some_events_fall_outside_every_zone(hour):
    _, g = _load_zones()
    zones = list(g.values())
    outside = Counter()
    total = Counter()
    for t, e in hour[::5]:
        total[t] += 1
        p = Point(e["lon"], e["lat"])
        if not any(z.contains(p) for z in zones):
            outside[t] += 1
    frac = sum(outside.values()) / sum(total.values())
    assert 0.003 < frac < 0.03
    assert outside[topics.GPS] > 0 and outside[topics.ALERTS] > 0


def _dist_m(a, b):
    dy = (a["lat"] - b["lat"]) * 110_950
    dx = (a["lon"] - b["lon"]) * 111_320 * math.cos(math.radians(a["lat"]))
    return math.hypot(dx, dy)


def test_dispatched_units_turn_busy_and_arrive(simulated_hour):
    sc, evs = simulated_hour
    assert evs == list(scenario_events(seed=5, start_ms=START, duration_s=3600))
    gps = [e for t, e in evs if t == topics.GPS]
    calls = {e["call_id"]: e for t, e in evs if t == topics.CALLS}
    assert len(sc.dispatches) == len(calls)  # someone is always available in the default scenario
    by_unit: dict[str, list] = {}
    for e in gps:
        by_unit.setdefault(e["unit_id"], []).append(e)
    for call_id, unit_id, tc, arrival in sc.dispatches[:40]:
        call = calls[call_id]
        fixes = [f for f in by_unit[unit_id] if arrival <= f["ts"] <= arrival + 60_000]
        if not fixes:  # past the end of the simulation
            continue
        assert fixes[0]["status"] == "busy"
        assert _dist_m(fixes[0], call) < 100
        assert 45_000 <= arrival - tc < 30 * 60_000

    # the 1-3-5 statistics as the pipeline will compute them (first fix of any unit within 100 m)
    gts = [e["ts"] for e in gps]
    lats = [e["lat"] for e in gps]
    lons = [e["lon"] for e in gps]
    resp = []
    for call in calls.values():
        i = bisect.bisect_left(gts, call["ts"])
        clat, clon, horizon = call["lat"], call["lon"], call["ts"] + 900_000
        r = None
        while i < len(gps) and gts[i] <= horizon:
            if abs(lats[i] - clat) < 0.001 and abs(lons[i] - clon) < 0.0012 and _dist_m(gps[i], call) <= 100:
                r = (gts[i] - call["ts"]) / 1000
                break
            i += 1
        resp.append(r)
    n = len(resp)

    def within(s):
        return sum(1 for r in resp if r is not None and r <= s) / n

    # realistic: a minority at once (an officer nearby), most within 5 min, a tail beyond
    assert 0.05 < within(60) < 0.45
    assert 0.35 < within(180) < 0.8
    assert 0.75 < within(300) < 0.98


def test_bad_rate_injects_malformed_messages_only():
    clean = first(3000, seed=3)
    noisy = first(3200, seed=3, bad_rate=0.05)
    good, bad = [], []
    for topic, ev in noisy:
        try:
            if isinstance(ev, bytes):
                events.decode_and_validate(topic, ev, FAR_FUTURE)
            else:
                events.VALIDATORS[topic](ev, FAR_FUTURE)
            good.append((topic, ev))
        except errors.Rejected:
            bad.append((topic, ev))
    assert 80 < len(bad) < 250
    assert any(isinstance(ev, bytes) for _, ev in bad)
    assert good[:2800] == clean[:2800]  # the valid stream is unchanged




def _fingerprint(evs) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for topic, ev in evs:
        h.update(topic.encode())
        h.update(ev if isinstance(ev, bytes) else orjson.dumps(ev))
        n += 1
    return n, h.hexdigest()


def test_the_demo_scenario_is_unchanged():
    """`--scenario demo` must keep producing exactly the events it produced before the scenario was
    split from the command line and extended (count and SHA-256 of the events, taken from
    `connectors/simulate.py` at commit 39c0882, before the scenario engine and the health reports
    existed): benchmarks, chaos runs and recorded demos rely on it."""
    assert _fingerprint(scenario_events(3, start_ms=START, duration_s=1200, bad_rate=0.01)) == (
        52285, "4a773fa6fe603192fe363def2343e239392642986459dc4e6ff3baec72cf98b2")
    assert _fingerprint(scenario_events(3, scenario="demo", health=False, start_ms=START, duration_s=1200,
                                        bad_rate=0.01))[1] == (
        "4a773fa6fe603192fe363def2343e239392642986459dc4e6ff3baec72cf98b2")
    assert _fingerprint(scenario_events(11, units=120, cameras=60, calls_per_min=4.0, alerts_per_min=30.0,
                                        start_ms=1_714_550_400_000, duration_s=600)) == (
        10426, "4850754acf445d384863781df56eba969ff19768b13209fe9980ba640d534a01")


def test_the_default_hour_is_unchanged(hour):
    assert _fingerprint(hour) == (151188, "11b3cbe8b94985de5245dedfa13a38f8fdf2381f479eb502e4c13d7d1fc3d3cf")
