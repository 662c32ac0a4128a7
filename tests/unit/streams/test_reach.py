"""Reach (CONTRACT §3): the fast computation equals a brute force over every cell and unit.

The oracle below loops over every sample point of the zone's cells and every unit, with the
contract's speeds and detour factor written out here; the distance is contract.response's
haversine_m, the rule's definition of "straight-line distance" (Redis GEO's formula).
"""

from __future__ import annotations

import math
from pathlib import Path

import h3
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

import streams.reach as reach_mod
from contract.response import EARTH_RADIUS_M, haversine_m
from contract.zones import load_zones
from streams.reach import GRID_DEG, MAX_CELLS, ReachMap, UnitIndex, keys_within, reach, reach_cells, zone_cells

TESTS = Path(__file__).resolve().parents[2]
SPEED = {"foot": 1.4, "car": 8.3, "motorcycle": 9.0, "swat": 8.3, "other": 6.0}  # CONTRACT §3
REACH_M = 300 * max(SPEED.values()) / 1.3  # nothing farther is reached within 5 min (2077 m)
KINDS = [*SPEED, "tank"]  # a kind outside the list moves at the `other` speed
ZONES = load_zones(TESTS / "zones_reach_test.geojson")  # L (a polygon with a hole), course/0..2, aid-1
CELLS = {z.zone_id: zone_cells(z) for z in ZONES}
SHAPES = ["L", "course/1", "aid-1"]  # a polygon, a route segment, a point circle


def brute(zc, units) -> tuple[list[bool], list[bool], list[bool]]:
    """Per cell: reached within 60 s, 180 s, 300 s (CONTRACT §3; the 1-minute tier since v3)."""
    out1, out3, out5 = [], [], []
    for i in range(len(zc)):
        lat, lon = float(zc.lat[i]), float(zc.lon[i])
        best = math.inf
        for ulat, ulon, kind in units:
            eta = haversine_m(lat, lon, ulat, ulon) * 1.3 / SPEED.get(kind, SPEED["other"])
            best = min(best, eta)
        out1.append(best <= 60)
        out3.append(best <= 180)
        out5.append(best <= 300)
    return out1, out3, out5


def share(zc, mask) -> float:
    w = zc.weights.tolist()
    return sum(x for x, m in zip(w, mask, strict=True) if m) / sum(w)


def offset(lat, lon, north_m, east_m) -> tuple[float, float]:
    return lat + north_m / 110_900, lon + east_m / (111_320 * math.cos(math.radians(lat)))


def units_around(zc):
    """Units inside the zone's box, near it (within 3 km), far (up to 60 km), of random kinds."""
    lat0, lat1 = float(zc.lat.min()), float(zc.lat.max())
    lon0, lon1 = float(zc.lon.min()), float(zc.lon.max())

    def place(where, fy, fx, kind):
        pad = {"inside": 0.0, "near": 3000.0, "far": 60_000.0}[where]
        s, w = offset(lat0, lon0, -pad, -pad)
        n, e = offset(lat1, lon1, pad, pad)
        return (s + fy * (n - s), w + fx * (e - w), kind)

    return st.builds(place, st.sampled_from(["inside", "near", "near", "far"]), st.floats(0, 1), st.floats(0, 1),
                     st.sampled_from(KINDS))


def index_of(units) -> UnitIndex:
    idx = UnitIndex()
    for i, (lat, lon, kind) in enumerate(units):
        idx.put(f"u{i}", lat, lon, kind)
    return idx


@pytest.mark.parametrize("zid", SHAPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_reach_equals_brute_force(zid, data):
    zc = CELLS[zid]
    units = data.draw(st.lists(units_around(zc), max_size=40))
    want = brute(zc, units)
    for source in (units, index_of(units)):
        got = reach_cells(zc, source)
        assert [g.tolist() for g in got] == list(want)
        shares = reach(zc, source)
        for r, w in zip(shares, want, strict=True):
            assert r == pytest.approx(share(zc, w), abs=1e-12)
            assert (r == 1.0) == all(w) and (r == 0.0) == (not any(w))
        assert 0.0 <= shares[0] <= shares[1] <= shares[2] <= 1.0


def destination(lat, lon, bearing, dist_m) -> tuple[float, float]:
    """The point dist_m from (lat, lon) on the sphere haversine_m uses."""
    d = dist_m / EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), math.degrees(l2)


@pytest.mark.parametrize("zid", SHAPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_units_on_the_threshold_are_decided_as_the_rule_says(zid, data):
    # units at (almost) exactly the 3- or 5-minute distance from a sample point: the float
    # products cannot decide these, haversine_m must
    zc = CELLS[zid]
    units = []
    for _ in range(data.draw(st.integers(1, 4))):
        c = data.draw(st.integers(0, len(zc) - 1))
        kind = data.draw(st.sampled_from(KINDS))
        limit = data.draw(st.sampled_from([60, 180, 300]))
        delta = data.draw(st.sampled_from([0.0, 1e-9, -1e-9, 1e-6, -1e-6, 1e-3, -1e-3]))
        d = limit * SPEED.get(kind, SPEED["other"]) / 1.3 + delta
        units.append((*destination(float(zc.lat[c]), float(zc.lon[c]), data.draw(st.floats(0, 2 * math.pi)), d), kind))
    want = brute(zc, units)
    got = reach_cells(zc, index_of(units))
    assert [g.tolist() for g in got] == list(want)


def test_the_threshold_band_is_exercised(monkeypatch):
    zc = CELLS["aid-1"]
    calls = []
    real = reach_mod._exact

    def spy(*a):
        calls.append(a[1])
        return real(*a)

    monkeypatch.setattr(reach_mod, "_exact", spy)
    lat, lon = float(zc.lat[0]), float(zc.lon[0])
    for limit in (60, 180):
        d = limit * SPEED["foot"] / 1.3
        for delta in (0.0, 1e-7, -1e-7):
            unit = (*destination(lat, lon, 1.0, d + delta), "foot")
            got = reach_cells(zc, [unit])
            assert [g.tolist() for g in got] == list(brute(zc, [unit]))
    assert 0 in calls  # cell 0 went through the exact decision


# -- hand-computed cases ------------------------------------------------------------------------

AID = next(z for z in ZONES if z.zone_id == "aid-1")  # a 150 m circle at (34.760, 113.655)


def test_empty_and_far_units_reach_nothing():
    zc = CELLS["aid-1"]
    assert reach(zc, []) == (0.0, 0.0, 0.0) and reach(zc, UnitIndex()) == (0.0, 0.0, 0.0)
    far = [(35.76, 113.655, "car"), (34.76, 114.655, "motorcycle")]  # ~110 km / ~90 km away
    assert reach(zc, far) == (0.0, 0.0, 0.0) and reach(zc, index_of(far)) == (0.0, 0.0, 0.0)
    assert len(index_of(far).gather(zc.keys)) == 0  # not even looked at


def test_a_car_at_the_centre_reaches_everything():
    # car: 1 min = 60 * 8.3 / 1.3 = 383 m, beyond the circle's 150 m
    assert reach(CELLS["aid-1"], [(34.760, 113.655, "car")]) == (1.0, 1.0, 1.0)


def test_a_car_1500_m_away_reaches_within_5_but_not_3_minutes():
    # car: 3 min = 180 * 8.3 / 1.3 = 1149 m, 5 min = 1916 m; the circle spans 1350..1650 m
    lat, lon = destination(34.760, 113.655, 0.0, 1500.0)
    assert reach(CELLS["aid-1"], [(lat, lon, "car")]) == (0.0, 0.0, 1.0)


def test_a_car_600_m_away_reaches_within_3_but_not_1_minute():
    # 1 min = 383 m, 3 min = 1149 m: the circle spans 450..750 m
    lat, lon = destination(34.760, 113.655, 0.0, 600.0)
    assert reach(CELLS["aid-1"], [(lat, lon, "car")]) == (0.0, 1.0, 1.0)


def test_min_eta_over_units_a_near_foot_officer_and_a_far_car_both_count():
    zc = CELLS["aid-1"]
    # foot: 1 min = 64.6 m, 3 min = 193.8 m, 5 min = 323.1 m; 100 m north of the centre reaches part
    # within 1 and 3 min
    foot = (*destination(34.760, 113.655, 0.0, 100.0), "foot")
    car = (*destination(34.760, 113.655, math.pi, 1500.0), "car")
    f1, f3, f5 = reach(zc, [foot])
    assert 0.0 < f1 < f3 and 0.3 < f3 < 1.0 and f5 == 1.0
    assert reach(zc, [car]) == (0.0, 0.0, 1.0)
    assert reach(zc, [foot, car]) == (f1, f3, 1.0)
    near_car = (*destination(34.760, 113.655, math.pi, 1100.0), "car")  # within 3 min of the south part
    _, c3, _ = reach(zc, [near_car])
    _, both3, _ = reach(zc, [foot, near_car])
    assert both3 > max(f3, c3)


def test_unknown_kind_moves_at_the_other_speed():
    # other: 5 min = 300 * 6 / 1.3 = 1385 m; foot would need to be within 323 m
    lat, lon = destination(34.760, 113.655, 0.0, 1000.0)
    assert reach(CELLS["aid-1"], [(lat, lon, "tank")]) == reach(CELLS["aid-1"], [(lat, lon, "other")]) \
        == (0.0, 0.0, 1.0)


# -- the cell sets ------------------------------------------------------------------------------


def area_m2(geom) -> float:
    lat0 = math.radians(geom.centroid.y)
    e2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)
    w = math.sqrt(1 - e2 * math.sin(lat0) ** 2)
    kx = math.radians(1) * 6378137.0 / w * math.cos(lat0)
    ky = math.radians(1) * 6378137.0 * (1 - e2) / w**3
    return shapely.transform(geom, lambda c: c * [kx, ky]).area


ALL = (ZONES + load_zones(TESTS / "zones_datav_like.geojson", id_property="adcode")
       + load_zones(TESTS / "zones_test.geojson"))


@pytest.mark.parametrize("zone", ALL, ids=[z.zone_id for z in ALL])
def test_cells_cover_the_zone_weighted_by_area(zone):
    zc = CELLS.get(zone.zone_id) or zone_cells(zone)
    assert 1 <= len(zc) <= MAX_CELLS and len(set(zc.cells)) == len(zc)
    assert all(h3.get_resolution(c) == zc.resolution for c in zc.cells)
    assert (zc.weights > 0).all()
    assert zc.total == pytest.approx(area_m2(zone.geometry), rel=0.003)
    for la, lo in zip(zc.lat.tolist(), zc.lon.tolist(), strict=True):
        assert zone.geometry.intersects(Point(lo, la))  # every sample point lies in the zone
    # the finest resolution that fits: one finer would need more than MAX_CELLS cells
    if zc.resolution < 15:
        geom = zone.geometry
        parts = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
        finer = set()
        for p in parts:
            shp = h3.LatLngPoly([(y, x) for x, y in p.exterior.coords[:-1]],
                                *[[(y, x) for x, y in r.coords[:-1]] for r in p.interiors])
            finer |= set(h3.h3shape_to_cells_experimental(shp, zc.resolution + 1, contain="overlap"))
        assert len(finer) > MAX_CELLS


def test_resolution_adapts_and_a_tiny_zone_has_one_cell_at_least(tmp_path):
    big, small = zone_cells(ZONES[0], max_cells=400), zone_cells(ZONES[0], max_cells=30)
    assert small.resolution < big.resolution and len(small) <= 30
    assert share_of_all(small) == share_of_all(big) == 1.0
    p = tmp_path / "tiny.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "t", '
                 '"properties": {"radius_m": 0.3}, "geometry": {"type": "Point", "coordinates": [113.6, 34.7]}}]}')
    (tiny,) = load_zones(p)
    zc = zone_cells(tiny)
    assert len(zc) >= 1 and reach(zc, [(34.7, 113.6, "foot")]) == (1.0, 1.0, 1.0)


def share_of_all(zc) -> float:
    return reach(zc, [(float(zc.lat[0]), float(zc.lon[0]), "car")])[2]


# -- which zones a moved unit can change --------------------------------------------------------

FAR_ZONE = load_zones(TESTS / "zones_test.geojson")  # ~5-10 km west of the reach zones
MAP_CELLS = [*CELLS.values(), *(zone_cells(z) for z in FAR_ZONE)]
RMAP = ReachMap(MAP_CELLS)
CENTRE = (34.75, 113.66)


def positions(spread_m=15_000):
    return st.builds(lambda n, e: offset(*CENTRE, n, e), st.floats(-spread_m, spread_m), st.floats(-spread_m, spread_m))


@settings(max_examples=300, deadline=None)
@given(others=st.lists(st.tuples(positions(), st.sampled_from(KINDS)), max_size=15),
       old=st.one_of(st.none(), positions()), new=st.one_of(st.none(), positions()), kind=st.sampled_from(KINDS))
def test_zones_whose_reach_changes_are_among_the_affected(others, old, new, kind):
    base = [(la, lo, k) for (la, lo), k in others]
    before = base + ([(*old, kind)] if old else [])
    after = base + ([(*new, kind)] if new else [])
    affected = set(RMAP.affected(old, new))
    for zc in MAP_CELLS:
        b = reach_cells(zc, before)
        a = reach_cells(zc, after)
        if any((x != y).any() for x, y in zip(b, a, strict=True)):
            assert zc.zone_id in affected


KEY_DIAGONAL_M = math.hypot(GRID_DEG * 110_900, GRID_DEG * 111_320 * math.cos(math.radians(34.6)))


@settings(max_examples=300, deadline=None)
@given(p=positions(20_000))
def test_near_is_every_zone_within_reach_distance_and_not_much_more(p):
    near = RMAP.near(*p)
    assert list(near) == sorted(near, key=RMAP.order.__getitem__)
    for zc in MAP_CELLS:
        dmin = min(haversine_m(*p, la, lo) for la, lo in zip(zc.lat.tolist(), zc.lon.tolist(), strict=True))
        if dmin <= REACH_M:
            assert zc.zone_id in near
        if zc.zone_id in near:
            assert dmin <= REACH_M + 1.0 + KEY_DIAGONAL_M


@pytest.mark.parametrize("zid", SHAPES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_unit_just_within_reach_distance_of_a_cell_is_near_its_zone(zid, data):
    # the sharp edge of the property above: units at 90..100 % of the largest reach distance
    zc = CELLS[zid]
    c = data.draw(st.integers(0, len(zc) - 1))
    d = data.draw(st.floats(0.9 * REACH_M, REACH_M))
    q = destination(float(zc.lat[c]), float(zc.lon[c]), data.draw(st.floats(0, 2 * math.pi)), d)
    assert haversine_m(float(zc.lat[c]), float(zc.lon[c]), *q) <= REACH_M + 1e-6
    assert zid in RMAP.near(*q)
    assert zid in RMAP.affected(q, None) and zid in RMAP.affected(offset(*q, 50_000, 0), q)


NX = round(360 / GRID_DEG)


def cell_min_distance(lat, lon, key) -> float:
    """Distance from (lat, lon) to grid cell `key` (a GRID_DEG lat/lon box), by dense sampling
    of the box's edges (an upper bound of the true minimum, within millimetres of it)."""
    south, west = (key // NX) * GRID_DEG - 90.0, (key % NX) * GRID_DEG - 180.0
    if south <= lat <= south + GRID_DEG and west <= lon <= west + GRID_DEG:
        return 0.0
    n = 1000
    ts = [i / n for i in range(n + 1)]
    edge = ([(south, west + t * GRID_DEG) for t in ts] + [(south + GRID_DEG, west + t * GRID_DEG) for t in ts]
            + [(south + t * GRID_DEG, west) for t in ts] + [(south + t * GRID_DEG, west + GRID_DEG) for t in ts])
    return min(haversine_m(lat, lon, a, b) for a, b in edge)


@settings(max_examples=40, deadline=None)
@given(p=positions(30_000), d=st.floats(100.0, 3000.0))
def test_keys_within_is_every_grid_cell_within_the_distance(p, d):
    got = keys_within(*p, d)
    span = 2 * d / 110_000 + GRID_DEG
    rows = range(math.floor((p[0] - span + 90) / GRID_DEG), math.floor((p[0] + span + 90) / GRID_DEG) + 1)
    cols = range(math.floor((p[1] - 1.5 * span + 180) / GRID_DEG), math.floor((p[1] + 1.5 * span + 180) / GRID_DEG) + 1)
    candidates = {iy * NX + ix % NX for iy in rows for ix in cols}
    assert got <= candidates
    for key in candidates:
        dmin = cell_min_distance(*p, key)
        if dmin <= d:
            assert key in got, (key, dmin)
        if key in got:
            assert dmin <= d + 2.0, (key, dmin)


@pytest.mark.parametrize("zid", SHAPES)
def test_a_zone_listens_to_every_grid_cell_within_reach_of_its_cells(zid):
    zc = CELLS[zid]
    want = set().union(*(keys_within(la, lo, REACH_M) for la, lo in zip(zc.lat.tolist(), zc.lon.tolist(), strict=True)))
    assert set(zc.keys) == want


def test_affected_merges_in_zone_order():
    a = CELLS["L"]
    p_near_l = (float(a.lat[0]), float(a.lon[0]))
    p_far = offset(*CENTRE, 0, 40_000)
    assert RMAP.affected(None, None) == ()
    assert RMAP.affected(p_far, p_far) == ()
    assert RMAP.affected(p_near_l, None) == RMAP.near(*p_near_l) == RMAP.affected(None, p_near_l)
    assert "L" in RMAP.affected(p_far, p_near_l)


def test_unit_index_put_move_discard():
    idx = UnitIndex()
    assert idx.put("u1", 34.75, 113.65, "car") is None
    assert idx.put("u1", 34.76, 113.66, "foot") == (34.75, 113.65)  # moved: the old position
    assert idx.position("u1") == (34.76, 113.66) and "u1" in idx and len(idx) == 1
    zc = CELLS["aid-1"]
    got = idx.gather(zc.keys)
    assert got.shape == (1, 6) and got[0, 5] == 1.4
    assert idx.discard("u1") == (34.76, 113.66) and idx.discard("u1") is None
    assert len(idx) == 0 and len(idx.gather(zc.keys)) == 0
