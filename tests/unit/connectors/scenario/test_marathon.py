"""`--scenario marathon` (connectors/scenario/marathon.py) and its bundled zones file. Pure, no Kafka.

The geometry is checked independently of the generator: lengths with the haversine formula on the
file's own coordinates, containment with shapely in a local metric projection.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections import Counter
from itertools import pairwise

import pytest
from shapely.geometry import LineString, Point, shape
from shapely.ops import substring

from connectors.scenario import make, marathon, scenario_events
from connectors.scenario.marathon import MARATHON_ZONES, write_marathon_zones
from contract import events, topics, zones

START = 1_717_196_400_000   # 2024-06-01T07:00:00+08:00
FAR_FUTURE = 2**62
EARTH_R = 6_371_008.8
# Lanzhou's central districts (Chengguan, Qilihe, Anning, Xigu) and their river banks
LON_RANGE, LAT_RANGE = (103.55, 104.0), (35.95, 36.2)


def haversine(a, b) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_R * math.asin(math.sqrt(h))


def vincenty(a, b) -> float:
    """Geodesic distance in metres on the WGS84 ellipsoid (Vincenty's inverse formula)."""
    A, F = 6_378_137.0, 1 / 298.257223563
    B = A * (1 - F)
    (lon1, lat1), (lon2, lat2) = a, b
    L = math.radians(lon2 - lon1)
    U1, U2 = math.atan((1 - F) * math.tan(math.radians(lat1))), math.atan((1 - F) * math.tan(math.radians(lat2)))
    sinU1, cosU1, sinU2, cosU2 = math.sin(U1), math.cos(U1), math.sin(U2), math.cos(U2)
    lam = L
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cosU2 * sin_lam, cosU1 * sinU2 - sinU1 * cosU2 * cos_lam)
        if sin_sigma == 0:
            return 0.0
        cos_sigma = sinU1 * sinU2 + cosU1 * cosU2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cosU1 * cosU2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha ** 2
        cos_2sm = cos_sigma - 2 * sinU1 * sinU2 / cos2_alpha if cos2_alpha else 0.0
        C = F / 16 * cos2_alpha * (4 + F * (4 - 3 * cos2_alpha))
        prev, lam = lam, L + (1 - C) * F * sin_alpha * (
            sigma + C * sin_sigma * (cos_2sm + C * cos_sigma * (-1 + 2 * cos_2sm ** 2)))
        if abs(lam - prev) < 1e-12:
            break
    u2 = cos2_alpha * (A ** 2 - B ** 2) / B ** 2
    k1 = (math.sqrt(1 + u2) - 1) / (math.sqrt(1 + u2) + 1)
    big_a, big_b = (1 + k1 ** 2 / 4) / (1 - k1), k1 * (1 - 3 * k1 ** 2 / 8)
    d_sigma = big_b * sin_sigma * (cos_2sm + big_b / 4 * (
        cos_sigma * (-1 + 2 * cos_2sm ** 2)
        - big_b / 6 * cos_2sm * (-3 + 4 * sin_sigma ** 2) * (-3 + 4 * cos_2sm ** 2)))
    return B * big_a * (sigma - d_sigma)


LON0, LAT0 = 103.78, 36.08   # the middle of the course
M_LON = vincenty((LON0 - 0.05, LAT0), (LON0 + 0.05, LAT0)) * 10   # metres per degree, from the geodesic
M_LAT = vincenty((LON0, LAT0 - 0.05), (LON0, LAT0 + 0.05)) * 10


def local(lon, lat):
    """Metres east/north of the middle of the course (equirectangular, scales from the geodesic), for
    shapely distances."""
    return (lon - LON0) * M_LON, (lat - LAT0) * M_LAT


@pytest.fixture(scope="module")
def fc():
    return json.loads(MARATHON_ZONES.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def feats(fc):
    return {f["id"]: f for f in fc["features"]}


@pytest.fixture(scope="module")
def course(feats):
    return LineString([local(*p) for p in feats["course"]["geometry"]["coordinates"]])


def test_the_bundled_file_is_what_the_generator_writes(tmp_path):
    assert write_marathon_zones(tmp_path / "m.geojson").read_bytes() == MARATHON_ZONES.read_bytes()


def test_the_file_follows_contract_section_2(fc):
    assert fc["type"] == "FeatureCollection"
    ids = [f["id"] for f in fc["features"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, str) and i and "/" not in i for i in ids)
    for f in fc["features"]:
        p, g = f["properties"], f["geometry"]
        assert f["type"] == "Feature" and isinstance(p["name"], str) and " / " in p["name"]  # Chinese / English
        assert p["kind"] in zones.KINDS
        assert p.get("ring") is None or p["ring"] in zones.RINGS
        if g["type"] == "LineString":
            assert p["kind"] == "route" and p["segment_m"] == 1000 and p["buffer_m"] == 50
        elif g["type"] == "Point":
            assert p["kind"] == "other" and p["radius_m"] > 0 and p["point"] in ("emergency", "barrier", "gate")
        else:
            assert g["type"] == "Polygon" and p["kind"] == "venue" and p["ring"] in zones.RINGS
            ring = g["coordinates"][0]
            assert ring[0] == ring[-1] and shape(g).is_valid and shape(g).exterior.is_ccw   # RFC 7946
        assert shape(g).is_valid and not shape(g).is_empty


def test_every_coordinate_lies_in_lanzhou(fc):
    def coords(g):
        c = g["coordinates"]
        return {"Point": [c], "LineString": c, "Polygon": c[0]}[g["type"]]

    for f in fc["features"]:
        for lon, lat in coords(f["geometry"]):
            assert LON_RANGE[0] < lon < LON_RANGE[1] and LAT_RANGE[0] < lat < LAT_RANGE[1], (f["id"], lon, lat)


def test_the_course_is_a_marathon_long(feats, course):
    pts = feats["course"]["geometry"]["coordinates"]
    sphere = sum(haversine(a, b) for a, b in pairwise(pts))
    assert abs(sphere - 42_195) <= 0.01 * 42_195
    geodesic = sum(vincenty(a, b) for a, b in pairwise(pts))
    assert abs(geodesic - 42_195) < 20   # placed on the ellipsoid; the file's 6 decimals cost centimetres
    assert abs(course.length - 42_195) < 0.001 * 42_195
    # cut as CONTRACT §2 says: 42 whole kilometres and a last segment of 195 m
    segs = [substring(course, k * 1000, min((k + 1) * 1000, course.length))
            for k in range(math.ceil(course.length / 1000))]
    assert len(segs) == 43 and all(abs(s.length - 1000) < 1e-6 for s in segs[:-1]) and 150 < segs[-1].length < 250


def test_emergency_points_barriers_and_gates(feats, course):
    role = Counter(f["properties"].get("point") for f in feats.values())
    assert role["emergency"] == 27 and role["barrier"] >= 10 and role["gate"] >= 4
    aid = sorted((f for f in feats.values() if f["properties"].get("point") == "emergency"), key=lambda f: f["id"])
    for k, f in enumerate(aid, 1):
        p = Point(local(*f["geometry"]["coordinates"]))
        assert course.distance(p) < 30                                   # at the roadside
        assert f["properties"]["km"] == k * 1.5
        # at its kilometre (not project(): an out-and-back leg passes the same spot twice)
        assert course.interpolate(k * 1500).distance(p) < 30
    for f in feats.values():
        if f["properties"].get("point") == "barrier":
            assert course.distance(Point(local(*f["geometry"]["coordinates"]))) < 5


def test_venue_rings_at_the_start_and_the_finish(feats, course):
    for area, end in (("start", 0.0), ("finish", course.length)):
        core, inner, outer = (shape(feats[f"{area}-{r}"]["geometry"]) for r in zones.RINGS)
        assert core.within(inner) and inner.within(outer) and core.area < inner.area < outer.area
        lon, lat = feats["course"]["geometry"]["coordinates"][0 if end == 0 else -1]
        assert core.contains(Point(lon, lat))
    gates = [f for f in feats.values() if f["properties"].get("point") == "gate"]
    outer = [shape(feats[f"{a}-outer"]["geometry"]) for a in ("start", "finish")]
    assert all(any(o.contains(Point(g["geometry"]["coordinates"])) for o in outer) for g in gates)


# --- the events -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def race():
    """The simulation and its events from 30 min before the gun to 5 h after it."""
    sim = make(3, scenario="marathon", start_ms=START, duration_s=5.5 * 3600)
    return sim, list(scenario_events(3, scenario="marathon", start_ms=START, duration_s=5.5 * 3600))


def first(n, **kw):
    kw.setdefault("start_ms", START)
    return list(itertools.islice(scenario_events(scenario="marathon", **kw), n))


def test_same_seed_same_events():
    a = first(3000, seed=11)
    assert a == first(3000, seed=11) and len(a) == 3000
    assert a != first(3000, seed=12)
    assert a[:50] != first(50, seed=11, start_ms=START + 60_000)


def test_events_satisfy_the_contract(race):
    _sim, evs = race
    counts = Counter(t for t, _ in evs)
    assert set(counts) == set(topics.INPUT_TOPICS)
    ts = [e["ts"] for _, e in evs]
    assert all(a <= b for a, b in pairwise(ts)) and START <= ts[0] and ts[-1] <= START + 5.5 * 3_600_000
    for topic, ev in evs:
        norm = events.VALIDATORS[topic](ev, FAR_FUTURE)
        assert norm["ts"] == ev["ts"]
        assert LON_RANGE[0] < ev["lon"] < LON_RANGE[1] and LAT_RANGE[0] < ev["lat"] < LAT_RANGE[1]
        if topic == topics.CALLS:
            assert ev["category"] in events.CATEGORIES
        elif topic == topics.ALERTS:
            assert ev["type"] in events.ALERT_TYPES
        elif topic == topics.GPS:
            assert ev["kind"] in events.UNIT_KINDS and ev["status"] in events.UNIT_STATUSES
    ids = [e["call_id"] for t, e in evs if t == topics.CALLS] + [e["alert_id"] for t, e in evs if t == topics.ALERTS]
    assert len(ids) == len(set(ids))


def test_runners_call_from_the_course_during_the_race(race, course):
    sim, evs = race
    calls = [e for t, e in evs if t == topics.CALLS]
    assert 0.8 * 5.5 * 60 * 3 < len(calls) < 1.2 * 5.5 * 60 * 3   # 3 a minute
    cats = Counter(c["category"] for c in calls)
    assert cats.most_common(1)[0][0] == "medical" and cats["medical"] > 0.35 * len(calls)
    assert len({c["lang"] for c in calls}) >= 6 and Counter(c["lang"] for c in calls)["zh"] > 0.7 * len(calls)
    gun = START + marathon.GUN_AFTER_MS
    racing = [c for c in calls if gun + 600_000 < c["ts"] < gun + 4 * 3_600_000]
    on_course = [c for c in racing if course.distance(Point(local(c["lon"], c["lat"]))) < 50]
    assert len(on_course) > 0.5 * len(racing)
    # runners' medical calls come later along the course as the race goes on
    med = sorted((c["ts"], course.project(Point(local(c["lon"], c["lat"])))) for c in on_course
                 if c["category"] == "medical")
    early = [s for t, s in med if t < gun + 3_600_000]
    assert early and max(early) < 0.6 * course.length   # nobody is past km 25 in the first hour
    # before the gun, the calls are at the start area
    before = [c for c in calls if c["ts"] < gun]
    start = Point(local(*marathon.START))
    assert before and sum(Point(local(c["lon"], c["lat"])).distance(start) < 900 for c in before) > 0.6 * len(before)


def test_officers_and_cameras_line_the_course(race, course):
    sim, evs = race
    foot = {}
    for t, e in evs[::7]:
        if t == topics.GPS and e["kind"] == "foot":
            foot.setdefault(e["unit_id"], []).append(course.distance(Point(local(e["lon"], e["lat"]))))
    near = [u for u, ds in foot.items() if sorted(ds)[len(ds) // 2] < 60]
    assert len(near) > 120   # most foot officers stand along the course most of the time
    cams = sim.cameras()
    on_course = [c for c in cams if course.distance(Point(local(c[2], c[1]))) < 50]
    assert len(on_course) > 0.6 * len(cams)
    # every camera that reports or alerts is one of them, at its position
    where = {c[0]: (c[1], c[2]) for c in cams}
    for t, e in evs:
        if t in (topics.ALERTS, topics.STATUS):
            assert (e["lat"], e["lon"]) == where[e["camera_id"]]


def test_calls_get_a_response(race):
    """As the pipeline measures it: the first fix of any unit within 100 m after the call."""
    _sim, evs = race
    gps = [e for t, e in evs if t == topics.GPS]
    gts = [e["ts"] for e in gps]
    calls = [e for t, e in evs if t == topics.CALLS and e["ts"] < START + 5 * 3_600_000]
    within5 = 0
    for c in calls:
        i = bisect.bisect_left(gts, c["ts"])
        cx, cy = local(c["lon"], c["lat"])
        while i < len(gps) and gts[i] <= c["ts"] + 300_000:
            g = gps[i]
            if abs(g["lat"] - c["lat"]) < 0.001 and math.dist(local(g["lon"], g["lat"]), (cx, cy)) <= 100:
                within5 += 1
                break
            i += 1
    assert within5 > 0.75 * len(calls)


def test_health_is_on_by_default_and_can_be_turned_off():
    on = first(20_000, seed=5)
    off = first(20_000, seed=5, health=False)
    assert any(t == topics.STATUS for t, _ in on) and not any(t == topics.STATUS for t, _ in off)
