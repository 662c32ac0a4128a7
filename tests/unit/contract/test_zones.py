"""Zones files (CONTRACT §2 v2): id property, routes, points, and refusals naming the feature.

Distances here are checked against Vincenty's inverse on WGS84, written below independently of
contract.zones (which measures on a tangent plane), and areas against a shoelace on local
ellipsoid radii.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
import shapely
from shapely.geometry import Point, shape

from contract.errors import ZonesFileError
from contract.settings import DEMO_ZONES, Settings
from contract.zones import DEFAULT_RADIUS_M, LocalPlane, load_zones, zones_geojson

TESTS = Path(__file__).resolve().parents[2]
DATAV_LIKE = TESTS / "zones_datav_like.geojson"
A, F = 6378137.0, 1 / 298.257223563
B = A * (1 - F)


def vincenty_m(lat1, lon1, lat2, lon2) -> float:
    """Geodesic distance on WGS84 (Vincenty 1975, inverse)."""
    if (lat1, lon1) == (lat2, lon2):
        return 0.0
    L = math.radians(lon2 - lon1)
    U1 = math.atan((1 - F) * math.tan(math.radians(lat1)))
    U2 = math.atan((1 - F) * math.tan(math.radians(lat2)))
    sU1, cU1, sU2, cU2 = math.sin(U1), math.cos(U1), math.sin(U2), math.cos(U2)
    lam = L
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(cU2 * sl, cU1 * sU2 - sU1 * cU2 * cl)
        cs = sU1 * sU2 + cU1 * cU2 * cl
        sigma = math.atan2(ss, cs)
        sa = cU1 * cU2 * sl / ss
        c2a = 1 - sa * sa
        c2sm = cs - 2 * sU1 * sU2 / c2a if c2a else 0.0
        C = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
        prev = lam
        lam = L + (1 - C) * F * sa * (sigma + C * ss * (c2sm + C * cs * (-1 + 2 * c2sm * c2sm)))
        if abs(lam - prev) < 1e-13:
            break
    u2 = c2a * (A * A - B * B) / (B * B)
    a_ = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    b_ = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    ds = b_ * ss * (c2sm + b_ / 4 * (cs * (-1 + 2 * c2sm * c2sm)
                                     - b_ / 6 * c2sm * (-3 + 4 * ss * ss) * (-3 + 4 * c2sm * c2sm)))
    return B * a_ * (sigma - ds)


def line_length_m(coords) -> float:
    return sum(vincenty_m(a[1], a[0], b[1], b[0]) for a, b in pairwise(coords))


def area_m2(geom) -> float:
    """Shoelace on an equirectangular map with WGS84's radii at the geometry's centre latitude."""
    lat0 = math.radians(geom.centroid.y)
    e2 = F * (2 - F)
    w = math.sqrt(1 - e2 * math.sin(lat0) ** 2)
    m, n = A * (1 - e2) / w**3, A / w
    kx, ky = math.radians(1) * n * math.cos(lat0), math.radians(1) * m
    return shapely.transform(geom, lambda c: c * [kx, ky]).area


def write(tmp_path, features, name="z.geojson") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return p


def square(x0=113.60, y0=34.70, d=0.01):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + d, y0], [x0 + d, y0 + d], [x0, y0 + d], [x0, y0]]]}


def line(*pts):
    return {"type": "LineString", "coordinates": [list(p) for p in pts]}


def feat(geometry, fid=None, **props):
    f = {"type": "Feature", "properties": props, "geometry": geometry}
    if fid is not None:
        f["id"] = fid
    return f


# -- id property (DataV district files) ----------------------------------------------------------


def test_datav_like_file_needs_and_takes_the_id_property():
    with pytest.raises(ZonesFileError, match=r"feature #0 \(no id, name '中原区'\).*ZONEWATCH_ZONE_ID_PROPERTY"):
        load_zones(DATAV_LIKE)
    zones = load_zones(DATAV_LIKE, id_property="adcode")
    assert [(z.zone_id, z.name, z.kind, z.ring) for z in zones] == [
        ("410102", "中原区", "other", None), ("410103", "二七区", "other", None),
        ("410104", "管城回族区", "other", None)]
    # 410103's two parts share an edge (as in the real exports): the zone is their union
    z = zones[1]
    assert z.geometry.is_valid and z.geometry.area == pytest.approx(0.04 * 0.06 + 0.04 * 0.04)
    assert shapely.contains_xy(z.geometry, 113.66, 34.70)  # on the shared edge, inside the union
    assert z.geojson == json.loads(DATAV_LIKE.read_text(encoding="utf-8"))["features"][1]["geometry"]
    # the hole of 410104 is not in the zone
    assert not shapely.contains_xy(zones[2].geometry, 113.71, 34.76)
    assert shapely.contains_xy(zones[2].geometry, 113.69, 34.74)


def test_id_property_setting(monkeypatch):
    monkeypatch.delenv("ZONEWATCH_ZONE_ID_PROPERTY", raising=False)
    assert Settings.from_env().zone_id_property is None
    monkeypatch.setenv("ZONEWATCH_ZONE_ID_PROPERTY", "adcode")
    s = Settings.from_env()
    assert s.zone_id_property == "adcode"
    assert [z.zone_id for z in load_zones(DATAV_LIKE, id_property=s.zone_id_property)] == ["410102", "410103", "410104"]


def test_id_precedence_and_types(tmp_path):
    p = write(tmp_path, [feat(square(), "top", id="prop", adcode=1),
                         feat(square(113.62), None, id="prop2", adcode=2),
                         feat(square(113.64), None, adcode=410102),
                         feat(square(113.66), 7)])
    assert [z.zone_id for z in load_zones(p, id_property="adcode")] == ["top", "prop2", "410102", "7"]


def test_bundled_and_test_files_still_load():
    assert len(load_zones(DEMO_ZONES)) == 39
    assert [z.zone_id for z in load_zones(TESTS / "zones_test.geojson")] == ["A", "B", "outer", "inner", "core"]
    ids = [z.zone_id for z in load_zones(TESTS / "zones_reach_test.geojson")]
    assert ids == ["L", "course/0", "course/1", "course/2", "aid-1"]


# -- refusals -----------------------------------------------------------------------------------

OK = feat(square(113.50), "ok", name="fine")
BOWTIE = {"type": "Polygon",
          "coordinates": [[[113.6, 34.7], [113.61, 34.71], [113.61, 34.7], [113.6, 34.71], [113.6, 34.7]]]}

BAD = {
    "duplicate id": ([OK, feat(square(), "ok", name="again")],
                     r"feature #1 \(id 'ok', name 'again'\): duplicate zone id 'ok' \(feature #0"),
    "duplicate generated id": (
        [feat(line((113.60, 34.70), (113.60, 34.72)), "r", name="Run"), feat(square(), "r/1", name="clash")],
        r"feature #1 \(id 'r/1', name 'clash'\): duplicate zone id 'r/1' \(feature #0"),
    "no id": ([OK, feat(square(), name="nameless")], r"feature #1 \(no id, name 'nameless'\): no id"),
    "empty id": ([OK, feat(square(), "")], r"feature #1 \(id ''\): empty id"),
    "object id": ([OK, feat(square(), {"a": 1})], r"feature #1 .*must be a string or a number"),
    "bool id": ([OK, feat(square(), True)], r"feature #1 .*must be a string or a number"),
    "fractional id": ([OK, feat(square(), 1.5)], r"feature #1 .*whole number"),
    "not a feature": ([OK, {"type": "Polygon"}], r"feature #1 .*not a GeoJSON Feature"),
    "feature not an object": ([OK, "zone"], r"feature #1 \(not an object\): not a GeoJSON Feature"),
    "properties not an object": ([OK, {"type": "Feature", "id": "x", "properties": [], "geometry": square()}],
                                 r"feature #1 \(id 'x'\): `properties` must be an object"),
    "no geometry": ([OK, feat(None, "g")], r"feature #1 \(id 'g'\): no geometry"),
    "geometry collection": ([OK, feat({"type": "GeometryCollection", "geometries": []}, "g")],
                            r"feature #1 \(id 'g'\): geometry type 'GeometryCollection'"),
    "empty polygon": ([OK, feat({"type": "Polygon", "coordinates": []}, "g")], r"feature #1 \(id 'g'\): empty Polygon"),
    "short ring": ([OK, feat({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "g")],
                   r"feature #1 \(id 'g'\): ring 0 needs at least 4 positions"),
    "open ring": ([OK, feat({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "g")],
                  r"feature #1 \(id 'g'\): ring 0 is not closed"),
    "self-intersecting": ([OK, feat(BOWTIE, "g", name="bowtie")],
                          r"feature #1 \(id 'g', name 'bowtie'\): invalid polygon: Self-intersection"),
    "self-intersecting part": ([OK, feat({"type": "MultiPolygon",
                                          "coordinates": [square()["coordinates"], BOWTIE["coordinates"]]}, "g")],
                               r"feature #1 \(id 'g'\): part 1: invalid polygon: Self-intersection"),
    "hole outside shell": ([OK, feat({"type": "Polygon",
                                      "coordinates": [square()["coordinates"][0], square(113.7)["coordinates"][0]]},
                                     "g")],
                           r"feature #1 \(id 'g'\): invalid polygon: Hole lies outside shell"),
    "empty multipolygon": ([OK, feat({"type": "MultiPolygon", "coordinates": []}, "g")],
                           r"feature #1 \(id 'g'\): empty MultiPolygon"),
    "lon out of range": ([OK, feat(square(190.0), "g")],
                         r"feature #1 \(id 'g'\): position \[190.0, 34.7\] is out of range"),
    "NaN position": ([OK, feat(line((113.6, 34.7), (math.nan, 34.7)), "g")],
                     r"feature #1 \(id 'g'\): position .* out of range"),
    "string position": ([OK, feat({"type": "Point", "coordinates": ["113.6", "34.7"]}, "g")],
                        r"feature #1 \(id 'g'\): position .* is not \[lon, lat\]"),
    "short point": ([OK, feat({"type": "Point", "coordinates": [113.6]}, "g")],
                    r"feature #1 \(id 'g'\): position \[113.6\] is not"),
    "one-position line": ([OK, feat({"type": "LineString", "coordinates": [[113.6, 34.7]]}, "g")],
                          r"feature #1 \(id 'g'\): a LineString needs at least 2 positions"),
    "zero-length line": ([OK, feat(line((113.6, 34.7), (113.6, 34.7)), "g")],
                         r"feature #1 \(id 'g'\): the line has zero length"),
    "empty multilinestring": ([OK, feat({"type": "MultiLineString", "coordinates": []}, "g")],
                              r"feature #1 \(id 'g'\): empty MultiLineString"),
    "zero-length part": ([OK, feat({"type": "MultiLineString",
                                    "coordinates": [[[113.6, 34.7], [113.6, 34.71]], [[113.7, 34.7], [113.7, 34.7]]]},
                                   "g")],
                         r"feature #1 \(id 'g'\): part 1: the line has zero length"),
    "unknown kind": ([OK, feat(square(), "g", name="Stadium", kind="stadium")],
                     r"feature #1 \(id 'g', name 'Stadium'\): unknown kind 'stadium'"),
    "empty kind": ([OK, feat(square(), "g", kind="")], r"feature #1 \(id 'g'\): unknown kind ''"),
    "unknown ring": ([OK, feat(square(), "g", ring="middle")], r"feature #1 \(id 'g'\): unknown ring 'middle'"),
    "line of another kind": ([OK, feat(line((113.6, 34.7), (113.6, 34.71)), "g", kind="venue")],
                             r"feature #1 \(id 'g'\): a LineString is a route: kind must be 'route'"),
    "negative segment_m": ([OK, feat(line((113.6, 34.7), (113.6, 34.71)), "g", segment_m=-1)],
                           r"feature #1 \(id 'g'\): properties.segment_m must be a positive number of metres, not -1"),
    "string segment_m": ([OK, feat(line((113.6, 34.7), (113.6, 34.71)), "g", segment_m="1000")],
                         r"feature #1 \(id 'g'\): properties.segment_m must be a positive number"),
    "zero buffer_m": ([OK, feat(line((113.6, 34.7), (113.6, 34.71)), "g", buffer_m=0)],
                      r"feature #1 \(id 'g'\): properties.buffer_m must be a positive number"),
    "bool radius_m": ([OK, feat({"type": "Point", "coordinates": [113.6, 34.7]}, "g", radius_m=True)],
                      r"feature #1 \(id 'g'\): properties.radius_m must be a positive number"),
    "negative radius_m": ([OK, feat({"type": "Point", "coordinates": [113.6, 34.7]}, "g", radius_m=-5)],
                          r"feature #1 \(id 'g'\): properties.radius_m must be a positive number"),
    "too many segments": ([OK, feat(line((113.6, 34.7), (113.6, 34.9)), "g", segment_m=1)],
                          r"feature #1 \(id 'g'\): 22\d{3} m at segment_m 1 gives 22\d{3} segments \(at most 10000\)"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_malformed_feature_is_refused_naming_it(tmp_path, case):
    features, pattern = BAD[case]
    p = write(tmp_path, features)
    with pytest.raises(ZonesFileError, match=pattern) as err:
        load_zones(p)
    assert str(err.value).startswith(f"{p}: feature #")


@pytest.mark.parametrize("text,pattern", [
    ("not json", "cannot read zones file"),
    ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
    ('{"type": "FeatureCollection", "features": {}}', "`features` must be a list"),
    ('{"type": "FeatureCollection", "features": []}', "no zones"),
])
def test_malformed_file_is_refused(tmp_path, text, pattern):
    p = tmp_path / "bad.geojson"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ZonesFileError, match=pattern):
        load_zones(p)


def test_kinds_and_rings_absent_or_known_are_accepted(tmp_path):
    p = write(tmp_path, [feat(square(), "a"), feat(square(113.62), "b", kind="district", ring="core"),
                         feat(line((113.6, 34.7), (113.6, 34.705)), "r", ring="inner"),
                         feat({"type": "Point", "coordinates": [113.6, 34.7]}, "p", kind="venue", ring="core")])
    assert [(z.zone_id, z.kind, z.ring) for z in load_zones(p)] == [
        ("a", "other", None), ("b", "district", "core"), ("r/0", "route", "inner"), ("p", "venue", "core")]


# -- routes -------------------------------------------------------------------------------------

# a 10.x km city course with turns (Zhengzhou, roughly a loop around a park)
COURSE = [(113.600, 34.700), (113.640, 34.700), (113.650, 34.720), (113.640, 34.740), (113.610, 34.735),
          (113.605, 34.715)]


def test_route_segments_tile_the_course(tmp_path):
    zones = load_zones(write(tmp_path, [feat(line(*COURSE), "m", name="Marathon", ring="outer")]))
    total = line_length_m(COURSE)
    n = math.ceil(total / 1000)
    assert [z.zone_id for z in zones] == [f"m/{k}" for k in range(n)]
    assert [z.segment for z in zones] == list(range(n)) and {z.route_id for z in zones} == {"m"}
    assert [z.start_m for z in zones] == [1000.0 * k for k in range(n)]
    assert all(z.kind == "route" and z.ring == "outer" for z in zones)
    # the course's own measure agrees with Vincenty to 1e-5 (well under the 1 % asked)
    assert zones[-1].end_m == pytest.approx(total, rel=1e-5)
    end_km = f"{total / 1000:.3f}".rstrip("0")
    assert [z.name for z in zones] == ([f"Marathon {k}–{k + 1} km" for k in range(n - 1)]
                                       + [f"Marathon {n - 1}–{end_km} km"])
    lengths = [line_length_m(z.line["coordinates"]) for z in zones]
    assert all(L == pytest.approx(1000.0, abs=0.1) for L in lengths[:-1])
    assert sum(lengths) == pytest.approx(total, abs=0.5)
    # in order along the course, end to end: each centre line starts where the previous ended
    assert zones[0].line["coordinates"][0] == list(COURSE[0])
    assert zones[-1].line["coordinates"][-1] == list(COURSE[-1])
    for a, b in pairwise(zones):
        assert a.line["coordinates"][-1] == b.line["coordinates"][0]
    # each zone is its centre line buffered by 50 m: vertices inside, the zone is ~100 m wide
    for z in zones:
        assert z.line["type"] == "LineString"
        assert all(shapely.contains_xy(z.geometry, x, y) for x, y in z.line["coordinates"])
        assert z.geojson["type"] == "Polygon" and shape(z.geojson).equals(z.geometry)
        run_m = z.end_m - z.start_m
        assert 0.93 * 100 * run_m <= area_m2(z.geometry) <= 100 * run_m + math.pi * 50**2 + 1


def test_route_buffer_is_metres_on_the_ground(tmp_path):
    # a straight 1 km east-west segment: area = 2·b·L + π·b²; points 45 m / 55 m off the middle
    lat = 34.70
    (z,) = load_zones(write(tmp_path, [feat(line((113.60, lat), (113.60 + 1000 / 91_560, lat)), "s",
                                            segment_m=2000, buffer_m=50)]))
    L = z.end_m
    assert L == pytest.approx(vincenty_m(lat, 113.60, lat, 113.60 + 1000 / 91_560), rel=1e-5)
    assert area_m2(z.geometry) == pytest.approx(2 * 50 * L + math.pi * 50**2, rel=0.005)
    mid = 113.60 + 500 / 91_560
    for off, inside in ((45, True), (55, False)):
        lat_off = lat + off / 110_900  # ~metres per degree of latitude here
        assert vincenty_m(lat, mid, lat_off, mid) == pytest.approx(off, rel=0.005)
        assert bool(shapely.contains_xy(z.geometry, mid, lat_off)) is inside
        assert bool(shapely.contains_xy(z.geometry, mid, 2 * lat - lat_off)) is inside


def _northward(lat0, lon0, metres) -> float:
    """The latitude `metres` north of (lat0, lon0) along the meridian, by bisection on Vincenty."""
    lo, hi = lat0, lat0 + metres / 100_000
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if vincenty_m(lat0, lon0, mid, lon0) < metres else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("length,n,last", [(3000.4, 3, "Run 2–3 km"), (3001.7, 4, "Run 3–3.002 km"),
                                           (2999.0, 3, "Run 2–2.999 km"), (400.0, 1, "Run 0–0.4 km")])
def test_last_segment_shorter_and_tiny_tail_merged(tmp_path, length, n, last):
    lat1 = _northward(34.7, 113.6, length)
    zones = load_zones(write(tmp_path, [feat(line((113.6, 34.7), (113.6, lat1)), "run", name="Run")]))
    assert len(zones) == n and zones[-1].name == last
    assert zones[-1].end_m == pytest.approx(length, abs=0.01)


def test_other_segment_lengths_are_named_in_km(tmp_path):
    lat1 = _northward(34.7, 113.6, 1200.0)
    zones = load_zones(write(tmp_path, [feat(line((113.6, 34.7), (113.6, lat1)), "r", name="Gate", segment_m=500)]))
    assert [z.name for z in zones] == ["Gate 0–0.5 km", "Gate 0.5–1 km", "Gate 1–1.2 km"]
    assert [z.zone_id for z in zones] == ["r/0", "r/1", "r/2"]


def test_multilinestring_is_one_course_through_its_parts_in_file_order(tmp_path):
    lat_a = _northward(34.7, 113.6, 700.0)
    lat_b = _northward(34.7, 113.62, 800.0)
    # part 1 northward at 113.60, part 2 northward at 113.62 (a ~1.8 km gap that is not course)
    geom = {"type": "MultiLineString",
            "coordinates": [[[113.6, 34.7], [113.6, lat_a]], [[113.62, 34.7], [113.62, lat_b]]]}
    zones = load_zones(write(tmp_path, [feat(geom, "ml", name="Two legs")]))
    assert [z.zone_id for z in zones] == ["ml/0", "ml/1"]
    assert zones[-1].end_m == pytest.approx(1500.0, abs=0.01)
    first = zones[0]
    assert first.line["type"] == "MultiLineString"  # 700 m of part 1 + 300 m of part 2
    legs = first.line["coordinates"]
    assert [round(line_length_m(leg), 1) for leg in legs] == [700.0, 300.0]
    assert legs[0][0] == [113.6, 34.7] and legs[1][0] == [113.62, 34.7]
    assert first.geometry.geom_type == "MultiPolygon"  # the gap is not buffered
    assert not shapely.contains_xy(first.geometry, 113.61, 34.702)
    assert zones[1].line["type"] == "LineString" and zones[1].line["coordinates"][-1] == [113.62, round(lat_b, 7)]


# -- points -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lat,radius", [(34.75, None), (36.06, 250.0), (-33.9, 30.0), (60.0, 1000.0)])
def test_point_is_a_circle_of_radius_metres(tmp_path, lat, radius):
    props = {"name": "Aid"} if radius is None else {"name": "Aid", "radius_m": radius}
    (z,) = load_zones(write(tmp_path, [feat({"type": "Point", "coordinates": [113.6, lat]}, "p", **props)]))
    r = DEFAULT_RADIUS_M if radius is None else radius
    assert (z.kind, z.radius_m, z.center) == ("other", r, (lat, 113.6))
    assert area_m2(z.geometry) == pytest.approx(math.pi * r * r, rel=0.01)
    ring = z.geojson["coordinates"][0]
    assert len(ring) == 65  # a 64-gon, closed
    for lon, la in ring:
        assert vincenty_m(lat, 113.6, la, lon) == pytest.approx(r, rel=1e-4, abs=0.02)
    assert shapely.contains_xy(z.geometry, 113.6, lat)


# -- what the wall is served --------------------------------------------------------------------


def test_zones_geojson_serves_generated_zones(tmp_path):
    p = write(tmp_path, [feat(square(), "sq", name="Square", kind="grid"),
                         feat(line(*COURSE[:3]), "m", name="M"),
                         feat({"type": "Point", "coordinates": [113.6, 34.7]}, "pt", radius_m=50)])
    zones = load_zones(p)
    fc = json.loads(orjson.dumps(zones_geojson(zones)))
    by_id = {f["id"]: f for f in fc["features"]}
    n = math.ceil(line_length_m(COURSE[:3]) / 1000)
    assert list(by_id) == ["sq", *(f"m/{k}" for k in range(n)), "pt"] == [z.zone_id for z in zones]
    assert by_id["sq"]["properties"] == {"name": "Square", "kind": "grid", "ring": None}
    assert by_id["sq"]["geometry"] == square()
    seg = by_id["m/1"]
    assert seg["properties"]["route_id"] == "m" and seg["properties"]["segment"] == 1
    assert (seg["properties"]["start_m"], seg["properties"]["end_m"]) == (1000.0, 2000.0)
    assert seg["properties"]["line"]["type"] == "LineString" and seg["geometry"]["type"] == "Polygon"
    assert shape(seg["geometry"]).equals(zones[2].geometry)
    assert by_id["pt"]["properties"]["radius_m"] == 50 and by_id["pt"]["properties"]["center"] == [34.7, 113.6]


# -- the tangent plane --------------------------------------------------------------------------


def test_local_plane_distances_are_geodesic_within_the_city():
    plane = LocalPlane(34.75, 113.65)
    pts = [(34.75, 113.65), (34.94, 113.65), (34.75, 113.88), (34.60, 113.45), (34.85, 113.80)]
    lat = [p[0] for p in pts]
    lon = [p[1] for p in pts]
    x, y = plane.forward(lat, lon)
    back = plane.inverse(x, y)
    assert max(abs(a - b) for a, b in zip(back[0], lat, strict=True)) < 1e-10
    assert max(abs(a - b) for a, b in zip(back[1], lon, strict=True)) < 1e-10
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            d = vincenty_m(*pts[i], *pts[j])
            assert math.hypot(x[i] - x[j], y[i] - y[j]) == pytest.approx(d, rel=2e-5)
    # and the generated polygon is what the wall draws
    g = plane.to_lonlat(Point(0, 0).buffer(100))
    assert g.contains(Point(113.65, 34.75))
