"""Zones files (CONTRACT §2): the id, name, kind and ring rules, read once for everyone.

The worker indexes the zones (streams/zone_index.py) and the gateway serves them to the wall;
both read them through `load_zones`, so a file is accepted or refused the same way everywhere.

Besides (Multi)Polygons a file may hold routes (a LineString/MultiLineString cut into buffered
segments `{id}/{k}`) and points (a circle of `radius_m`). Lengths, buffers and radii are metres on
the ground: they are computed on `LocalPlane`, the plane tangent to the WGS84 ellipsoid at the
feature's centre, whose distances agree with geodesic ones to about (d / 6371 km)² / 2 relative
(2·10⁻⁵ % 21 km from the centre, i.e. anywhere on a 42 km city course). docs/DESIGN.md "Zones files".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiLineString, Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring
from shapely.validation import explain_validity

from .errors import ZonesFileError

KINDS = ("venue", "district", "grid", "route", "other")
RINGS = ("core", "inner", "outer")
#: innermost first: picks an event's `ring` (CONTRACT §4) and orders tables
RING_ORDER = {"core": 0, "inner": 1, "outer": 2}

DEFAULT_SEGMENT_M = 1000.0   # properties.segment_m of a route
DEFAULT_BUFFER_M = 50.0      # properties.buffer_m of a route
DEFAULT_RADIUS_M = 100.0     # properties.radius_m of a point
#: a route's remainder shorter than this joins the previous segment (a course drawn as exactly
#: 5 km measures 5000.0003 m; it must not grow a phantom "5–5 km" zone)
TAIL_MERGE_M = 1.0
#: more segments than this from one route is a typo in segment_m (42 km at 1 m = 42,195 zones)
MAX_SEGMENTS = 10_000
#: segments per quarter circle of generated arcs: a circle is a 64-gon, at most 0.12 % of the
#: radius inside the true circle (12 cm at 100 m), area 0.16 % short of πr²
QUAD_SEGS = 16
#: generated coordinates are snapped to this grid (degrees, ~1.1 cm) so the file the wall draws
#: and the polygon the worker tests are the same numbers
COORD_GRID = 1e-7

_POLYGONS = ("Polygon", "MultiPolygon")
_LINES = ("LineString", "MultiLineString")
_TYPES = _POLYGONS + _LINES + ("Point",)


@dataclass(frozen=True)
class Zone:
    zone_id: str
    name: str
    kind: str
    ring: str | None
    geometry: BaseGeometry = field(compare=False)  # (lon, lat), prepared
    #: the geometry the wall draws: the file's polygon, or the generated segment/circle polygon
    geojson: dict = field(compare=False, default_factory=dict)
    # route segments (`{route_id}/{segment}`): position along the course, metres from its start,
    # and the segment's centre line (GeoJSON LineString, or MultiLineString across a gap of a
    # MultiLineString course) for drawing the course and its km marks
    route_id: str | None = None
    segment: int | None = None
    start_m: float | None = None
    end_m: float | None = None
    line: dict | None = field(compare=False, default=None)
    # point zones: the centre (lat, lon) and the radius
    center: tuple[float, float] | None = None
    radius_m: float | None = None


class LocalPlane:
    """East/north metres on the plane tangent to the WGS84 ellipsoid at (lat0, lon0).

    A point maps to its orthogonal projection on the tangent plane (ECEF -> ENU, up dropped):
    exact ellipsoid geometry, no spherical radius. Distances at d from the origin are shortened
    by a factor cos(d/R) at most (5·10⁻⁶ at 21 km); near the origin the map is an isometry.
    """

    A = 6378137.0
    F = 1 / 298.257223563
    E2 = F * (2 - F)
    B = A * (1 - F)

    def __init__(self, lat0: float, lon0: float):
        self.lat0, self.lon0 = lat0, lon0
        p, lam = math.radians(lat0), math.radians(lon0)
        sp, cp, sl, cl = math.sin(p), math.cos(p), math.sin(lam), math.cos(lam)
        self._origin = self._ecef(np.array([lat0]), np.array([lon0]))[:, 0]
        # rows: east, north, up unit vectors in ECEF
        self._rot = np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])
        self._w = np.array([1 / self.A**2, 1 / self.A**2, 1 / self.B**2])

    @classmethod
    def _ecef(cls, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        p, lam = np.radians(lat), np.radians(lon)
        sp = np.sin(p)
        n = cls.A / np.sqrt(1 - cls.E2 * sp * sp)
        return np.stack([n * np.cos(p) * np.cos(lam), n * np.cos(p) * np.sin(lam), n * (1 - cls.E2) * sp])

    def forward(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) degrees -> (x east, y north) metres."""
        d = self._ecef(np.asarray(lat, float), np.asarray(lon, float)) - self._origin[:, None]
        enu = self._rot @ d
        return enu[0], enu[1]

    def inverse(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) metres -> (lat, lon) degrees of the ellipsoid point that projects there."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        e, n, u = self._rot
        q = self._origin[:, None] + np.outer(e, x) + np.outer(n, y)
        # q + t*u on the ellipsoid: a t² + 2 b t + c = 0, the root near 0 in a stable form
        a = float(np.sum(self._w * u * u))
        b = np.sum((self._w * u)[:, None] * q, axis=0)
        c = np.sum(self._w[:, None] * q * q, axis=0) - 1.0
        t = -c / (b + np.sqrt(b * b - a * c))
        X, Y, Z = q + np.outer(u, t)
        lat = np.degrees(np.arctan2(Z, (1 - self.E2) * np.hypot(X, Y)))
        return lat, np.degrees(np.arctan2(Y, X))

    def to_plane(self, geom: BaseGeometry) -> BaseGeometry:
        """A shapely geometry in (lon, lat) -> the same in (x, y) metres."""
        def fwd(c: np.ndarray) -> np.ndarray:
            x, y = self.forward(c[:, 1], c[:, 0])
            return np.column_stack([x, y])
        return shapely.transform(geom, fwd)

    def to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        """A shapely geometry in (x, y) metres -> the same in (lon, lat)."""
        def inv(c: np.ndarray) -> np.ndarray:
            lat, lon = self.inverse(c[:, 0], c[:, 1])
            return np.column_stack([lon, lat])
        return shapely.transform(geom, inv)


class _Bad(Exception):
    """A feature's problem; load_zones adds the file and the feature's index, id and name."""


def load_zones(path: str | Path, id_property: str | None = None) -> list[Zone]:
    """Read a zones file (CONTRACT §2): (Multi)Polygons, routes and points.

    The id is the feature's top-level `id`, else `properties.id`, else `properties[id_property]`
    (ZONEWATCH_ZONE_ID_PROPERTY, e.g. `adcode` for DataV district files). Anything the contract
    refuses raises `ZonesFileError` naming the feature (index, id, name) and the problem.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZonesFileError(f"cannot read zones file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ZonesFileError(f"{path}: not a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ZonesFileError(f"{path}: `features` must be a list")
    zones: list[Zone] = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(features):
        label = _label(feat, id_property)
        try:
            made = _feature_zones(feat, id_property)
        except _Bad as exc:
            raise ZonesFileError(f"{path}: feature #{i} ({label}): {exc}") from None
        for z in made:
            if z.zone_id in seen:
                raise ZonesFileError(f"{path}: feature #{i} ({label}): duplicate zone id {z.zone_id!r} "
                                     f"(feature #{seen[z.zone_id]} has it too)")
            seen[z.zone_id] = i
            zones.append(z)
    if not zones:
        raise ZonesFileError(f"{path}: no zones")
    return zones


def _label(feat: object, id_property: str | None) -> str:
    """How an error message names a feature: its id and name as far as they can be read."""
    if not isinstance(feat, dict):
        return "not an object"
    raw_props = feat.get("properties")
    props: dict = raw_props if isinstance(raw_props, dict) else {}
    zid = _raw_id(feat, props, id_property)
    parts = [f"id {zid!r}" if zid is not None else "no id"]
    if props.get("name") not in (None, ""):
        parts.append(f"name {props['name']!r}")
    return ", ".join(parts)


def _raw_id(feat: dict, props: dict, id_property: str | None) -> object:
    for v in (feat.get("id"), props.get("id"), props.get(id_property) if id_property else None):
        if v is not None:
            return v
    return None


def _zone_id(feat: dict, props: dict, id_property: str | None) -> str:
    zid = _raw_id(feat, props, id_property)
    if zid is None:
        hint = (f", nor properties.{id_property} (ZONEWATCH_ZONE_ID_PROPERTY)" if id_property else
                "; set ZONEWATCH_ZONE_ID_PROPERTY to the property that holds one, e.g. adcode")
        raise _Bad(f"no id (top-level `id` or properties.id{hint})")
    if isinstance(zid, bool) or not isinstance(zid, (str, int, float)):
        raise _Bad(f"id {zid!r} must be a string or a number")
    if isinstance(zid, float):
        if not zid.is_integer():
            raise _Bad(f"id {zid!r} must be a string or a whole number")
        zid = int(zid)
    zid = str(zid)
    if not zid.strip():
        raise _Bad("empty id")
    return zid


def _feature_zones(feat: object, id_property: str | None) -> list[Zone]:
    if not isinstance(feat, dict) or feat.get("type", "Feature") != "Feature":
        raise _Bad("not a GeoJSON Feature")
    props = feat.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise _Bad("`properties` must be an object")
    zid = _zone_id(feat, props, id_property)
    name = str(props["name"]) if props.get("name") not in (None, "") else zid
    gtype, geom = _geometry(feat.get("geometry"))
    kind = props.get("kind")
    if kind is not None and kind not in KINDS:
        raise _Bad(f"unknown kind {kind!r} (one of {', '.join(KINDS)}, or absent)")
    if gtype in _LINES:
        if kind not in (None, "route"):
            raise _Bad(f"a {gtype} is a route: kind must be 'route' or absent, not {kind!r}")
        kind = "route"
    ring = props.get("ring")
    if ring is not None and ring not in RINGS:
        raise _Bad(f"unknown ring {ring!r} (one of {', '.join(RINGS)}, or absent)")
    kind = kind or "other"
    if gtype in _POLYGONS:
        shapely.prepare(geom)
        return [Zone(zid, name, kind, ring, geom, feat["geometry"])]
    if gtype == "Point":
        return [_point_zone(zid, name, kind, ring, geom, _metres(props, "radius_m", DEFAULT_RADIUS_M))]
    return _route_zones(zid, name, ring, geom, _metres(props, "segment_m", DEFAULT_SEGMENT_M),
                        _metres(props, "buffer_m", DEFAULT_BUFFER_M))


def _metres(props: dict, key: str, default: float) -> float:
    v = props.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _Bad(f"properties.{key} must be a positive number of metres, not {v!r}")
    return float(v)


# -- geometry checks ----------------------------------------------------------------------------


def _geometry(g: object) -> tuple[str, BaseGeometry]:
    """The feature's geometry as shapely, after every check the contract's "invalid or empty"
    implies; refuses with the reason (and where, for self-intersections)."""
    if not isinstance(g, dict):
        raise _Bad("no geometry")
    gtype = g.get("type")
    if gtype not in _TYPES:
        raise _Bad(f"geometry type {gtype!r} is not one of {', '.join(_TYPES)}")
    coords: Any = g.get("coordinates")  # JSON, checked below
    if gtype == "Point":
        _position(coords)
        return gtype, Point(coords[0], coords[1])
    if gtype == "LineString":
        _line(coords, "")
    elif gtype == "MultiLineString":
        for j, part in enumerate(_nonempty(coords, "MultiLineString")):
            _line(part, f"part {j}: ")
    elif gtype == "Polygon":
        _polygon(coords, "")
    else:
        for j, part in enumerate(_nonempty(coords, "MultiPolygon")):
            _polygon(part, f"part {j}: ")
    try:
        geom = shape(g)
    except Exception as exc:  # defensive: the structure was checked above
        raise _Bad(f"malformed coordinates: {exc}") from None
    if gtype in _LINES:
        return gtype, geom
    parts = list(geom.geoms) if gtype == "MultiPolygon" else [geom]
    for j, p in enumerate(parts):
        if not p.is_valid:
            where = f"part {j}: " if gtype == "MultiPolygon" else ""
            raise _Bad(f"{where}invalid polygon: {explain_validity(p)} (repair it, e.g. QGIS 'Fix geometries')")
        if p.area <= 0:
            raise _Bad(f"{f'part {j}: ' if gtype == 'MultiPolygon' else ''}polygon has no area")
    if not geom.is_valid:
        # Each part is a valid polygon, only the parts touch along an edge or overlap (DataV
        # exports do this): the zone is unambiguously their union, so nothing is guessed.
        geom = shapely.union_all(parts)
    return gtype, geom


def _nonempty(coords: object, what: str) -> list:
    if not isinstance(coords, list) or not coords:
        raise _Bad(f"empty {what}")
    return coords


def _position(p: object) -> None:
    if (not isinstance(p, list) or len(p) < 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in p[:2])):
        raise _Bad(f"position {p!r} is not [lon, lat]")
    lon, lat = p[0], p[1]
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise _Bad(f"position {p!r} is out of range (lon -180..180, lat -90..90)")


def _line(coords: object, where: str) -> None:
    if not isinstance(coords, list) or len(coords) < 2:
        raise _Bad(f"{where}a LineString needs at least 2 positions")
    for p in coords:
        _position(p)
    if all(p[:2] == coords[0][:2] for p in coords):
        raise _Bad(f"{where}the line has zero length")


def _polygon(rings: object, where: str) -> None:
    if not isinstance(rings, list) or not rings:
        raise _Bad(f"{where}empty Polygon")
    for r, ring in enumerate(rings):
        if not isinstance(ring, list) or len(ring) < 4:
            raise _Bad(f"{where}ring {r} needs at least 4 positions")
        for p in ring:
            _position(p)
        if ring[0][:2] != ring[-1][:2]:
            raise _Bad(f"{where}ring {r} is not closed (first and last positions differ)")


# -- generated zones ----------------------------------------------------------------------------


def _snap(geom: BaseGeometry) -> BaseGeometry:
    """Coordinates on the COORD_GRID; polygons stay valid (shapely.set_precision)."""
    return shapely.set_precision(geom, COORD_GRID)


def _as_geojson(geom: BaseGeometry) -> dict:
    doc: dict = json.loads(shapely.to_geojson(geom))
    return doc


def _generated(zid: str, name: str, kind: str, ring: str | None, poly: BaseGeometry, **extra: Any) -> Zone:
    poly = _snap(poly)
    if poly.is_empty or not poly.is_valid or poly.area <= 0:  # defensive: buffers are valid
        raise _Bad(f"the generated polygon of zone {zid!r} is empty or invalid")
    gj = _as_geojson(poly)
    shapely.prepare(poly)
    return Zone(zid, name, kind, ring, poly, gj, **extra)


def _point_zone(zid: str, name: str, kind: str, ring: str | None, pt: Point, radius_m: float) -> Zone:
    plane = LocalPlane(pt.y, pt.x)
    circle = plane.to_lonlat(Point(0.0, 0.0).buffer(radius_m, quad_segs=QUAD_SEGS))
    return _generated(zid, name, kind, ring, circle, center=(pt.y, pt.x), radius_m=radius_m)


def km_label(m: float) -> str:
    """Metres as km for segment names: metre precision, no trailing zeros (1000 -> '1', 1500 -> '1.5')."""
    return f"{m / 1000:.3f}".rstrip("0").rstrip(".")


def _route_zones(rid: str, name: str, ring: str | None, geom: BaseGeometry, segment_m: float,
                 buffer_m: float) -> list[Zone]:
    """Cut the course into segment_m pieces from its start and buffer each by buffer_m.

    A MultiLineString is one course through its parts in file order, each part from its first
    position to its last; the gap between one part's end and the next part's start is not
    course (not measured, not buffered), so a segment may consist of pieces of two parts.
    """
    minx, miny, maxx, maxy = geom.bounds
    plane = LocalPlane((miny + maxy) / 2, (minx + maxx) / 2)
    parts = [plane.to_plane(p) for p in (geom.geoms if isinstance(geom, MultiLineString) else [geom])]
    starts, total = [], 0.0
    for p in parts:
        starts.append(total)
        total += p.length
    n = max(1, math.ceil(total / segment_m))
    if n > 1 and total - (n - 1) * segment_m < TAIL_MERGE_M:
        n -= 1
    if n > MAX_SEGMENTS:
        raise _Bad(f"{total:.0f} m at segment_m {segment_m:g} gives {n} segments (at most {MAX_SEGMENTS})")
    zones = []
    for k in range(n):
        s, e = k * segment_m, (total if k == n - 1 else (k + 1) * segment_m)
        pieces = []
        for p, c0 in zip(parts, starts, strict=True):
            a, b = max(s, c0), min(e, c0 + p.length)
            if b - a > 0:
                pieces.append(substring(p, a - c0, b - c0))
        centre = pieces[0] if len(pieces) == 1 else MultiLineString(pieces)
        poly = plane.to_lonlat(centre.buffer(buffer_m, quad_segs=QUAD_SEGS))
        line = _as_geojson(shapely.transform(plane.to_lonlat(centre), lambda c: np.round(c, 7)))
        zones.append(_generated(f"{rid}/{k}", f"{name} {km_label(s)}–{km_label(e)} km", "route", ring, poly,
                                route_id=rid, segment=k, start_m=s, end_m=e, line=line))
    return zones


def innermost_ring(rings: Iterable[str | None]) -> str | None:
    """The innermost of some rings (None when there are none)."""
    present = [r for r in rings if r]
    return min(present, key=RING_ORDER.__getitem__) if present else None


def zones_geojson(zones: list[Zone]) -> dict:
    """The zones as the wall draws them: one Feature per zone (generated segments and circles
    included) with its id at top level and the properties a wall uses — name, kind, ring, and
    for route segments `route_id`, `segment`, `start_m`, `end_m`, `line` (the centre line), for
    points `center` ([lat, lon]) and `radius_m`."""
    feats = []
    for z in zones:
        props: dict[str, Any] = {"name": z.name, "kind": z.kind, "ring": z.ring}
        if z.route_id is not None:
            props.update(route_id=z.route_id, segment=z.segment, start_m=z.start_m, end_m=z.end_m, line=z.line)
        if z.center is not None:
            props.update(center=list(z.center), radius_m=z.radius_m)
        feats.append({"type": "Feature", "id": z.zone_id, "geometry": z.geojson, "properties": props})
    return {"type": "FeatureCollection", "features": feats}
