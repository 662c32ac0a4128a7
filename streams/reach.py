"""Reach (CONTRACT §3): the share of a zone's area from which an available present unit can
arrive within 60 s / 180 s / 300 s (v3 added the 1-minute tier), ETA = haversine distance ×
DETOUR_FACTOR / the kind's speed.

Pure and built for the worker's hot path:
- `zone_cells(zone)` once at start: H3 cells covering the zone at the finest resolution that
  gives at most `MAX_CELLS` cells, each weighted by the area of its intersection with the zone
  and sampled at one point (the H3 centre, or for a cell the boundary cuts, a point of the cut
  cell); plus the unit-grid keys from which a unit could reach any sample point;
- `UnitIndex`: the available present units on a coarse lat/lon grid (GRID_DEG), so `reach`
  looks only at units within MAX_REACH_M of the zone's cells, not at the world;
- `reach(zc, units)`: numpy over (cells × nearby units), exact: pairs whose float comparison
  is too close to call are decided by `contract.response.haversine_m`, the rule's own formula;
- `ReachMap`: unit-grid key -> zones whose reach a unit there can change, so a moved unit costs
  two dict lookups to find the zones to re-evaluate.
A cell counts as reached within T when the minimum over units of the ETA is ≤ T, i.e. when any
unit reaches it in time: a near foot officer and a far car both count, whichever is "nearest".
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

import h3
import numpy as np
import shapely

from contract.response import DETOUR_FACTOR, EARTH_RADIUS_M, UNIT_SPEED_MS, haversine_m
from contract.zones import LocalPlane, Zone

from .partitioning import MAX_REACH_M  # no unit of any kind reaches farther within the largest limit

LIMITS_S = (60.0, 180.0, 300.0)           # within_1m, within_3m, within_5m
REACH_NAMES = ("within_1m", "within_3m", "within_5m")
MAX_CELLS = 400                           # per zone; at least one cell whatever the zone's size
GRID_DEG = 0.02                           # unit grid: 0.02° x 0.02° (2.2 km x 1.8 km at 35° N)
_NX = round(360 / GRID_DEG)
_NY = round(180 / GRID_DEG)
#: |dot - cos(threshold angle)| below this is decided by haversine_m. Float error of the dot
#: product is ~1e-15; 1e-13 is a band of ~2 cm around a 194 m threshold, 0.2 mm around 2 km.
_EPS = 1e-13
_GEMM_ELEMS = 32_768                      # cells x units per matrix product (see reach_cells)


def _speed(kind: str) -> float:
    return UNIT_SPEED_MS.get(kind, UNIT_SPEED_MS["other"])


def _xyz(lat, lon) -> np.ndarray:
    """Unit vectors on the sphere haversine_m uses (lat/lon taken as spherical, as there)."""
    p, lam = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)])


_INV = 1.0 / GRID_DEG


def grid_key(lat: float, lon: float) -> int:
    """The unit-grid cell of a position (lat + 90 and lon + 180 are >= 0: int() floors them)."""
    iy = int((lat + 90.0) * _INV)
    if iy >= _NY:
        iy = _NY - 1
    return iy * _NX + int((lon + 180.0) * _INV) % _NX


def _grid_keys(lat, lon) -> np.ndarray:
    iy = np.minimum(np.floor((np.asarray(lat) + 90.0) / GRID_DEG).astype(np.int64), _NY - 1)
    return iy * _NX + np.floor((np.asarray(lon) + 180.0) / GRID_DEG).astype(np.int64) % _NX


def keys_within(lat: float, lon: float, dist_m: float) -> set[int]:
    """Every grid key whose cell holds a point within `dist_m` (haversine_m) of (lat, lon)."""
    return keys_near(np.array([lat]), np.array([lon]), dist_m)


def keys_near(lat: np.ndarray, lon: np.ndarray, dist_m: float) -> set[int]:
    """Every grid key whose cell holds a point within `dist_m` of any of the points.

    Candidates are the cells meeting each point's lat/lon box of half-side dist_m; a candidate
    is kept when the point of its cell nearest the point in lat/lon (clamped) is within
    dist_m + 1 m. The clamped point is not exactly the nearest on the sphere, but within ~1e-5 m
    of it at these distances, so the 1 m margin keeps the set a superset."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    d = dist_m / EARTH_RADIUS_M * (1 + 1e-9)
    dlat = math.degrees(d)
    iy0 = np.maximum(np.floor((lat - dlat + 90.0) / GRID_DEG).astype(np.int64), 0)
    iy1 = np.minimum(np.floor((lat + dlat + 90.0) / GRID_DEG).astype(np.int64), _NY - 1)
    keys: set[int] = set()
    polar = np.abs(lat) + dlat >= 89.0  # near a pole: every longitude of the rows, unfiltered
    for a, b in zip(iy0[polar].tolist(), iy1[polar].tolist(), strict=True):
        keys.update(iy * _NX + x for iy in range(a, b + 1) for x in range(_NX))
    lat, lon, iy0, iy1 = lat[~polar], lon[~polar], iy0[~polar], iy1[~polar]
    if not len(lat):
        return keys
    dlon = np.degrees(np.arcsin(np.minimum(1.0, math.sin(d) / np.cos(np.radians(lat))))) * (1 + 1e-9)
    i0 = np.floor((lon - dlon + 180.0) / GRID_DEG).astype(np.int64)
    i1 = np.floor((lon + dlon + 180.0) / GRID_DEG).astype(np.int64)
    dy = np.arange(int((iy1 - iy0).max()) + 1)[None, :, None]
    dx = np.arange(int((i1 - i0).max()) + 1)[None, None, :]
    iy, ix = np.broadcast_arrays(iy0[:, None, None] + dy, i0[:, None, None] + dx)  # ix unwrapped, as lon
    valid = (iy <= iy1[:, None, None]) & (ix <= i1[:, None, None])
    south, west = iy * GRID_DEG - 90.0, ix * GRID_DEG - 180.0
    p, lam = lat[:, None, None], lon[:, None, None]
    clat, clon = np.clip(p, south, south + GRID_DEG), np.clip(lam, west, west + GRID_DEG)
    # haversine_m's formula, vectorised
    p1, p2 = np.radians(p), np.radians(clat)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(clon - lam) / 2) ** 2
    near = valid & (2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h)) <= dist_m + 1.0)
    keys.update(np.unique(iy[near] * _NX + ix[near] % _NX).tolist())
    return keys


class ZoneCells:
    """A zone's cell approximation, built once: H3 cells, their sample points and area weights."""

    __slots__ = ("zone_id", "resolution", "cells", "lat", "lon", "xyz", "weights", "total", "keys", "_keyarr")

    def __init__(self, zone_id: str, resolution: int, cells: tuple[str, ...], lat: np.ndarray,
                 lon: np.ndarray, weights: np.ndarray):
        self.zone_id, self.resolution, self.cells = zone_id, resolution, cells
        self.lat, self.lon, self.weights = lat, lon, weights
        self.total = float(weights.sum())
        self.xyz = _xyz(lat, lon)  # (cells, 3) unit vectors
        # unit-grid cells whose units may reach a sample point
        self.keys = tuple(sorted(keys_near(lat, lon, MAX_REACH_M)))
        self._keyarr = np.array(self.keys, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.cells)


def zone_cells(zone: Zone, max_cells: int = MAX_CELLS) -> ZoneCells:
    """Cover the zone with H3 cells: the finest resolution giving at most `max_cells` cells.

    Each cell's weight is the area (m², on the zone's LocalPlane) of its intersection with the
    zone, so the weights sum to the zone's area and a share is an exact area share of the cell
    approximation. A cell wholly inside is sampled at its H3 centre; a cell the boundary cuts at
    the centroid of the cut cell (or a point on it if the centroid falls outside), so every
    sample point lies in the zone.
    """
    geom = zone.geometry
    minx, miny, maxx, maxy = geom.bounds
    plane = LocalPlane((miny + maxy) / 2, (minx + maxx) / 2)
    area = plane.to_plane(geom).area
    res = next((r for r in range(15, -1, -1) if area / h3.average_hexagon_area(r, "m^2") <= max_cells), 0)
    cells = _polyfill(geom, res)
    while len(cells) > max_cells and res > 0:
        res -= 1
        cells = _polyfill(geom, res)
    cells, inside, inter, w = _cover(geom, cells, plane)
    lat, lon = np.empty(len(cells)), np.empty(len(cells))
    for i in np.flatnonzero(inside).tolist():
        lat[i], lon[i] = h3.cell_to_latlng(cells[i])
    cut = ~inside
    pts = shapely.centroid(inter[cut])
    off = ~shapely.intersects(inter[cut], pts)
    pts[off] = shapely.point_on_surface(inter[cut][off])
    lon[cut], lat[cut] = shapely.get_x(pts), shapely.get_y(pts)
    return ZoneCells(zone.zone_id, res, tuple(cells), lat, lon, w)


def _cover(geom, cells: list[str], plane: LocalPlane):
    """(cells, wholly inside?, cell ∩ zone, weights) for every cell of positive overlap; grows
    the 'overlap' polyfill by a ring of neighbours until the pieces add up to the zone (planar
    vs great-circle cell edges could leave a sliver uncovered)."""
    found = set(cells)
    for _ in range(3):
        order = sorted(found)
        polys = _cell_polygons(order)
        inside = shapely.contains(geom, polys)
        inter = polys.copy()
        inter[~inside] = shapely.intersection(polys[~inside], geom)
        # coverage is checked where the cells partition the zone exactly: in lon/lat
        if shapely.area(inter).sum() >= geom.area * (1 - 1e-9):
            break
        found |= {n for c in order for n in h3.grid_disk(c, 1)}
    w = shapely.area(plane.to_plane(inter))
    keep = w > 0
    return [c for c, k in zip(order, keep.tolist(), strict=True) if k], inside[keep], inter[keep], w[keep]


def _cell_polygons(cells: list[str]) -> np.ndarray:
    """The cells' hexagons (pentagons, distorted cells) as planar (lon, lat) polygons."""
    bounds = [h3.cell_to_boundary(c) for c in cells]
    out = np.empty(len(cells), dtype=object)
    by_n: dict[int, list[int]] = {}
    for i, b in enumerate(bounds):
        by_n.setdefault(len(b), []).append(i)
    for idx in by_n.values():
        out[idx] = shapely.polygons(np.array([bounds[i] for i in idx])[:, :, ::-1])
    return out


def _polyfill(geom, res: int) -> list[str]:
    parts = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    out: list[str] = []
    for p in parts:
        shp = h3.LatLngPoly([(la, lo) for lo, la in p.exterior.coords[:-1]],
                            *[[(la, lo) for lo, la in r.coords[:-1]] for r in p.interiors])
        out.extend(h3.h3shape_to_cells_experimental(shp, res, contain="overlap"))
    if not out:  # a zone smaller than a cell seen from h3's side: the cell of a point in it
        pt = shapely.point_on_surface(geom)
        out.append(h3.latlng_to_cell(pt.y, pt.x, res))
    return out


class UnitIndex:
    """Available present units by unit-grid cell; the worker puts and discards them as fixes,
    status changes and staleness decide. `put`/`discard` return the previous position (or None)
    so the caller can ask `ReachMap.affected(old, new)`."""

    def __init__(self) -> None:
        self._key: dict[str, int] = {}
        self._pos: dict[str, tuple[float, float]] = {}
        self._cells: dict[int, dict[str, tuple[float, float, float]]] = {}
        self._blocks: dict[int, np.ndarray] = {}  # key -> (n, 6) [lat, lon, x, y, z, speed], cached

    def __len__(self) -> int:
        return len(self._key)

    def __contains__(self, unit_id: str) -> bool:
        return unit_id in self._key

    def position(self, unit_id: str) -> tuple[float, float] | None:
        return self._pos.get(unit_id)

    def key_of(self, unit_id: str) -> int | None:
        return self._key.get(unit_id)

    def move(self, unit_id: str, k: int, lat: float, lon: float, kind: str) -> None:
        """put() for a caller that has the grid key already; cheap when the key is unchanged."""
        if self._key.get(unit_id) == k:
            self._pos[unit_id] = (lat, lon)
            self._cells[k][unit_id] = (lat, lon, _speed(kind))
            self._blocks.pop(k, None)
            return
        self.discard(unit_id)
        self._key[unit_id] = k
        self._pos[unit_id] = (lat, lon)
        self._cells.setdefault(k, {})[unit_id] = (lat, lon, _speed(kind))
        self._blocks.pop(k, None)

    def put(self, unit_id: str, lat: float, lon: float, kind: str) -> tuple[float, float] | None:
        old = self.discard(unit_id)
        k = grid_key(lat, lon)
        self._key[unit_id] = k
        self._pos[unit_id] = (lat, lon)
        self._cells.setdefault(k, {})[unit_id] = (lat, lon, _speed(kind))
        self._blocks.pop(k, None)
        return old

    def discard(self, unit_id: str) -> tuple[float, float] | None:
        k = self._key.pop(unit_id, None)
        if k is None:
            return None
        cell = self._cells[k]
        del cell[unit_id]
        if not cell:
            del self._cells[k]
        self._blocks.pop(k, None)
        return self._pos.pop(unit_id)

    def gather(self, keys: Iterable[int]) -> np.ndarray:
        """The units in these grid cells as an (n, 6) array [lat, lon, x, y, z, speed]."""
        blocks = []
        cells, cache = self._cells, self._blocks
        for k in keys:
            b = cache.get(k)
            if b is None:
                cell = cells.get(k)
                if cell is None:
                    continue
                b = cache[k] = _block(list(cell.values()))
            blocks.append(b)
        if not blocks:
            return np.empty((0, 6))
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _block(rows: list[tuple[float, float, float]]) -> np.ndarray:
    a = np.array(rows, dtype=float).reshape(-1, 3)
    return np.column_stack([a[:, 0], a[:, 1], _xyz(a[:, 0], a[:, 1]), a[:, 2]])


def _units_near(zc: ZoneCells, units) -> np.ndarray:
    if isinstance(units, UnitIndex):
        return units.gather(zc.keys)
    rows = [(float(la), float(lo), _speed(kind)) for la, lo, kind in units]
    if not rows:
        return np.empty((0, 6))
    b = _block(rows)
    return b[np.isin(_grid_keys(b[:, 0], b[:, 1]), zc._keyarr)]


def reach_cells(zc: ZoneCells, units) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of `zc`, whether it is reached within 60 s, 180 s and 300 s (bool arrays).

    `units`: a `UnitIndex`, or an iterable of (lat, lon, kind) of the available present units
    (a kind outside UNIT_SPEED_MS moves at the `other` speed, as in contract.response.eta_s).
    """
    m = _reached(zc, units)
    return m[0], m[1], m[2]


def _reached(zc: ZoneCells, units) -> np.ndarray:
    """(3, cells) bool: row i reached within LIMITS_S[i]."""
    u = _units_near(zc, units)
    if not len(u):
        return np.zeros((len(LIMITS_S), len(zc)), bool)
    u = u[np.argsort(u[:, 5], kind="stable")]  # one column range per speed
    ut = np.ascontiguousarray(u[:, 2:5].T)
    sp = u[:, 5]
    starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])
    speeds = sp[starts]
    # best[c, g]: cos of the angle from cell c to the nearest unit of speed group g (units of
    # one speed share a threshold); row chunks keep each product small enough that OpenBLAS
    # runs it on one thread: above its threshold it spawns threads that, on a busy worker host,
    # made one product 20x slower
    rows = max(1, _GEMM_ELEMS // len(u))
    if rows >= len(zc):
        best = np.maximum.reduceat(zc.xyz @ ut, starts, axis=1)
    else:
        best = np.empty((len(zc), len(starts)))
        for r0 in range(0, len(zc), rows):
            best[r0:r0 + rows] = np.maximum.reduceat(zc.xyz[r0:r0 + rows] @ ut, starts, axis=1)
    thr = _thresholds(speeds)  # (limits, groups)
    diff = best[None, :, :] - thr[:, None, :]  # (limits, cells, groups)
    mask = (diff > _EPS).any(axis=2)
    close = diff >= -_EPS
    todo = ~mask & close.any(axis=2)
    if todo.any():
        ends = np.append(starts[1:], len(u))
        for li, c in zip(*np.nonzero(todo), strict=True):
            mask[li, c] = any(_exact(zc, int(c), u, ut, int(starts[g]), int(ends[g]), float(thr[li, g]),
                                     float(speeds[g]), LIMITS_S[li]) for g in np.flatnonzero(close[li, c]).tolist())
    return mask


_THR: dict[bytes, np.ndarray] = {}


def _thresholds(speeds: np.ndarray) -> np.ndarray:
    """cos(limit × speed / DETOUR_FACTOR / R) for both limits and each speed: the dot product
    above which a unit of that speed is within the limit (cached: there are few speed sets)."""
    key = speeds.tobytes()
    t = _THR.get(key)
    if t is None:
        t = _THR[key] = np.cos(np.array(LIMITS_S)[:, None] * speeds[None, :] / DETOUR_FACTOR / EARTH_RADIUS_M)
    return t


def _exact(zc: ZoneCells, c: int, u: np.ndarray, ut: np.ndarray, s: int, e: int, thr: float,
           sp: float, limit: float) -> bool:
    """Cell c too close to call in floats for units s..e: decide with the rule's own haversine_m."""
    la, lo = float(zc.lat[c]), float(zc.lon[c])
    for j in (np.flatnonzero(zc.xyz[c] @ ut[:, s:e] >= thr - _EPS) + s).tolist():
        if haversine_m(la, lo, float(u[j, 0]), float(u[j, 1])) * DETOUR_FACTOR / sp <= limit:
            return True
    return False


def reach(zc: ZoneCells, units) -> tuple[float, float, float]:
    """(within_1m, within_3m, within_5m): shares of the zone's area in [0, 1], unrounded floats.

    The caller publishes them rounded (CONTRACT §3 shows 2 decimals) and rate-limits them
    (rewrite on a change ≥ 0.01, at most every 10 s of stream clock per zone).
    """
    # summed like zc.total (pairwise, in cell order): all cells reached is exactly 1.0
    r1, r3, r5 = np.where(_reached(zc, units), zc.weights, 0.0).sum(axis=1).tolist()
    return r1 / zc.total, r3 / zc.total, r5 / zc.total


class ReachMap:
    """Unit-grid key -> ids of the zones whose reach a unit in that grid cell can change.

    A unit farther than MAX_REACH_M from every sample point of a zone changes none of its cells,
    so a unit moving from `old` to `new` can change only the zones of `affected(old, new)`."""

    def __init__(self, zone_cells_list: Iterable[ZoneCells]):
        by_key: dict[int, list[str]] = {}
        self.order: dict[str, int] = {}
        for i, zc in enumerate(zone_cells_list):
            self.order[zc.zone_id] = i
            for k in zc.keys:
                by_key.setdefault(k, []).append(zc.zone_id)
        self._by_key = {k: tuple(v) for k, v in by_key.items()}

    def near(self, lat: float, lon: float) -> tuple[str, ...]:
        """Zones (in the order given) whose reach a unit at (lat, lon) can change."""
        return self._by_key.get(grid_key(lat, lon), ())

    def affected(self, old: tuple[float, float] | None, new: tuple[float, float] | None) -> tuple[str, ...]:
        """Zones whose reach may change when a unit moves from `old` to `new` (either may be None:
        a unit appearing, or leaving the available present set)."""
        a = self._by_key.get(grid_key(*old), ()) if old is not None else ()
        b = self._by_key.get(grid_key(*new), ()) if new is not None else ()
        if not a or a is b:
            return b
        if not b:
            return a
        return tuple(sorted(set(a) | set(b), key=self.order.__getitem__))


def bbox_keys(bounds: tuple[float, float, float, float], dist_m: float = MAX_REACH_M) -> set[int]:
    """Every unit-grid key within `dist_m` of a (min lon, min lat, max lon, max lat) box (a
    superset: the box is widened by dist_m in degrees at its widest latitude). Cheap, so the
    worker uses it at start for routing and dirtying; exact reach still comes from zone_cells."""
    minx, miny, maxx, maxy = bounds
    dlat = math.degrees(dist_m / EARTH_RADIUS_M) * 1.01
    lat_far = min(89.0, max(abs(miny - dlat), abs(maxy + dlat)))
    dlon = min(180.0, dlat / max(math.cos(math.radians(lat_far)), 1e-6))
    iy0 = max(int(math.floor((miny - dlat + 90.0) / GRID_DEG)), 0)
    iy1 = min(int(math.floor((maxy + dlat + 90.0) / GRID_DEG)), _NY - 1)
    ix0 = int(math.floor((minx - dlon + 180.0) / GRID_DEG))
    ix1 = int(math.floor((maxx + dlon + 180.0) / GRID_DEG))
    return {iy * _NX + ix % _NX for iy in range(iy0, iy1 + 1) for ix in range(ix0, ix1 + 1)}


def reach_keys(zone, cells: ZoneCells | None = None):
    """Unit-grid keys from which a unit may reach the zone: its cells' own (exact) when built,
    else a superset from the zone's bounding box."""
    return cells.keys if cells is not None else bbox_keys(zone.geometry.bounds)


class ZoneReach:
    """The reach of one partition's zones, kept by the partition state (streams/zone_state.py).

    Units enter when a fix of theirs (routed here because it is within MAX_REACH_M of one of
    these zones, streams/routing.py) is their newest and says `available`; they leave when a
    newer fix says otherwise or moves them away, and when their fix goes stale. A zone near a
    change is marked dirty; `due()` recomputes the dirty zones, at most every `every_ms` of
    stream clock per zone unless forced (the final refresh), and keeps a value only when it
    moved by 0.01 or more (CONTRACT §3)."""

    def __init__(self, zones, every_ms: int = 10_000, cells: dict | None = None):
        self.zones = {z.zone_id: z for z in zones}
        self.every_ms = every_ms
        self.units = UnitIndex()
        self.latest: dict[str, tuple[int, float, float, str]] = {}  # unit -> (ts, lat, lon, kind) while in
        self._expiry: list[tuple[int, str]] = []   # (fix ts, unit): a heap, to drop stale units
        # zone cells (streams/geocache.py) when given: their exact reach keys; else the zones' boxes
        self.cells: dict[str, ZoneCells] = cells if cells is not None else {}  # else built on first use
        by_key: dict[int, list[str]] = {}
        for z in zones:
            for k in reach_keys(z, self.cells.get(z.zone_id)):
                by_key.setdefault(k, []).append(z.zone_id)
        self.by_key = {k: tuple(v) for k, v in by_key.items()}
        self.value: dict[str, tuple[float, ...]] = {}   # zone -> reach() shares
        self.computed_at: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.dirty_keys: set[int] = set()           # grid cells whose units changed (zones: by_key)
        self.inexact: set[str] = set()              # zones whose published value lags by < 0.01

    def fix(self, unit: str, ts: int, lat: float, lon: float, kind: str, available: bool) -> None:
        """The unit's newest fix (the caller checks it is the newest)."""
        if available:
            k = grid_key(lat, lon)
            units = self.units
            old = units.key_of(unit)
            units.move(unit, k, lat, lon, kind)
            if unit not in self.latest:
                heapq.heappush(self._expiry, (ts, unit))  # one entry per unit (see stale_before)
            self.latest[unit] = (ts, lat, lon, kind)
            self.dirty_keys.add(k)
            if old is not None and old != k:
                self.dirty_keys.add(old)
        elif unit in self.latest:
            self.leave(unit)

    def leave(self, unit: str) -> None:
        self.latest.pop(unit, None)
        k = self.units.key_of(unit)
        self.units.discard(unit)
        if k is not None:
            self.dirty_keys.add(k)

    def stale_before(self, ts: int) -> None:
        """Units whose fix is older than ts are no longer present."""
        heap = self._expiry
        while heap and heap[0][0] < ts:
            t, unit = heapq.heappop(heap)
            cur = self.latest.get(unit)
            if cur is None:
                continue
            if cur[0] <= t:
                self.leave(unit)
            else:  # a newer fix came meanwhile: check it when it is due
                heapq.heappush(heap, (cur[0], unit))

    def snapshot(self) -> dict:
        dirty = set(self.dirty) | self.inexact
        for k in self.dirty_keys:
            dirty.update(self.by_key.get(k, ()))
        return {"latest": self.latest, "value": self.value, "at": self.computed_at, "dirty": sorted(dirty)}

    def restore(self, snap: dict) -> None:
        for unit, (ts, lat, lon, kind) in snap["latest"].items():
            self.units.put(unit, lat, lon, kind)
            self.latest[unit] = (ts, lat, lon, kind)
            heapq.heappush(self._expiry, (ts, unit))
        # a snapshot of the code before within_1m holds pairs: those zones are computed again
        self.value = {z: tuple(v) for z, v in snap["value"].items()
                      if z in self.zones and len(v) == len(LIMITS_S)}
        self.computed_at = {z: t for z, t in snap["at"].items() if z in self.value}
        self.dirty = {z for z in snap["dirty"] if z in self.zones}
        self.dirty |= {z for z in snap["value"] if z in self.zones and z not in self.value}

    def due(self, clock: int, force: bool = False) -> set[str]:
        """Recompute dirty zones now allowed; the ids whose published value changed. A value that
        moved by less than 0.01 is not published, and the zone stays `inexact`: the forced pass
        (input paused) publishes every zone's exact value, whatever the history of evaluations."""
        if self.dirty_keys:
            by_key = self.by_key
            for k in self.dirty_keys:
                self.dirty.update(by_key.get(k, ()))
            self.dirty_keys.clear()
        changed = set()
        todo = self.dirty | self.inexact if force else self.dirty
        for zid in list(todo):
            if not force and clock - self.computed_at.get(zid, -10**18) < self.every_ms:
                continue
            self.dirty.discard(zid)
            self.computed_at[zid] = clock
            zc = self.cells.get(zid)
            if zc is None:
                zc = self.cells[zid] = zone_cells(self.zones[zid])
            new = reach(zc, self.units)
            old = self.value.get(zid, _NONE)
            if force or any(abs(a - b) >= 0.01 for a, b in zip(new, old, strict=True)):
                if new != old:
                    self.value[zid] = new
                    changed.add(zid)
                self.inexact.discard(zid)
            elif new != old:
                self.inexact.add(zid)
        return changed

    def doc(self, zid: str) -> dict:
        return {name: round(v, 2) for name, v in zip(REACH_NAMES, self.value.get(zid, _NONE), strict=True)}


_NONE = (0.0,) * len(LIMITS_S)   # a zone not computed yet
