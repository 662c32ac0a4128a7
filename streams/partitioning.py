"""Which partition of the zone-events topic a record goes to: the one partitioning rule.

Zones map to partitions by geography (`zone_partitions`): sorted by their representative point,
west to east (then south to north, then id), they are cut into runs of equal size — as many as the
partitions, or fewer when the zones are too close together for runs twice the 5-minute reach wide —, so
neighbouring zones — nested rings, a district and its grid cells — share a partition and a patrol
fix, which must reach every partition with a zone its unit can reach in 5 minutes (2.1 km), goes
to one or two partitions rather than all of them. Every worker computes the same map from the
zones file. An event in no zone is counted in the partition of `crc32(its id)`.

Incidents are partitioned by H3 resolution-6 "home" cells, also by geography (`HomeMap`): the
homes whose centre lies in the zones' bounding box (widened by EXTENT_MARGIN_M) are cut, west to
east by their centre's longitude, into runs of equal zone area (the expected events), as many as
the zones' runs; a home elsewhere goes to `crc32(its H3 string)` (no partition collects the
world's strays). A call belongs to the partition of its home cell, and every fix (alert) goes to
the home partitions within the arrival (corroboration) radius of it, so the partition of a call
sees every fix and alert that can matter to it; an *available* fix also goes to every home
partition within DISPATCH_EXACT_M (2,077 m) of it, so the partition of a call holds every available
unit's position within that distance for the dispatch recommendation (streams/routing.py says how
a unit that moves away or turns busy is noticed there). That holds for any home -> partition map;
the geographic one makes a 2 km disk meet one run mostly (1.2-1.4 copies of a fix instead of ~2.9
with hashed homes). The same function serves every worker and language (crc32 of UTF-8).

Both maps are a pure function of the zones file and the partition count; `layout_version` is
their fingerprint, carried by every zone-events batch and snapshot (streams/records.py), so a
worker fed by an ingest with another map notices (StateStage.foreign_layout) instead of holding
fixes where its calls do not look.
"""

from __future__ import annotations

import bisect
import math
import zlib

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i

from contract.response import (
    ARRIVAL_RADIUS_M,
    CORROBORATION_RADIUS_M,
    DETOUR_FACTOR,
    EARTH_RADIUS_M,
    UNIT_SPEED_MS,
    haversine_m,
)

#: the farthest any unit reaches in 5 minutes (streams/reach.py: MAX_REACH_M)
MAX_REACH_M = 300.0 * max(UNIT_SPEED_MS.values()) / DETOUR_FACTOR
FINE_RES = 9          # fine cells: spatial hashing of fixes, alerts and incidents
HOME_RES = 6          # home cells: partitioning of incidents (~3.7 km edge)
# Cells to search around a point for a radius, at FINE_RES (cell inradius ~174 m).
DISK_K = {ARRIVAL_RADIUS_M: 1, CORROBORATION_RADIUS_M: 2}
#: how far beyond the zones' bounding box homes still belong to the runs: a home's circumradius
#: (< 4.5 km at HOME_RES) plus the exact reach, with room, so a fix up to ~3 km outside the box
#: meets no hashed home (which would add a copy)
EXTENT_MARGIN_M = 10_000.0
#: sample points per side of the zones' bounding box that weigh the homes by zone area (a home is
#: ~36 km²: in a city 100 km across it holds ~50 samples, enough to balance runs of ~15 km)
AREA_SAMPLES = 128
#: the home map's scheme, in the layout version: 1 was crc32 of every home, 2 geographic runs
HOME_SCHEME = 2
M_PER_DEG = 111_320.0


def covering_k(cell: int, radius_m: float) -> int:
    """k such that `grid_disk(cell, k)` holds every cell with a point within radius_m of a point
    of this cell.

    In a hexagonal grid the k-disk holds the circle of radius (1.5 k + 0.5) e around the centre
    cell's centre, e being the cells' circumradius (its nearest boundary points are the notches
    between two outer cells), and a point of the cell lies within e of that centre. H3's hexagons
    are not regular: the cell's smallest centre-vertex distance stands for the spacing, its
    largest for the offset, and one more ring absorbs the change of shape across the disk
    (tests/unit/streams/test_dispatch.py checks the guarantee at several latitudes)."""
    lat, lon = h3i.cell_to_latlng(cell)
    ds = [haversine_m(lat, lon, a, b) for a, b in h3i.cell_to_boundary(cell)]
    return max(0, math.ceil(((radius_m + max(ds)) / min(ds) - 0.5) / 1.5)) + 1


def _runs(width_m: float, partitions: int) -> int:
    """Runs over an extent width_m wide: as many as the partitions while each is at least twice
    the farthest reach wide (narrower, every unit would reach several runs anyway)."""
    return max(1, min(partitions, int(width_m // (2 * MAX_REACH_M))))


def zone_partitions(zones, partitions: int) -> dict[str, int]:
    """zone id -> partition: runs of neighbouring zones, as equal in number as can be, in as many
    runs as the zones' extent allows while each run stays at least twice the farthest reach wide
    (a compact venue is one run: every unit there would reach every run anyway)."""
    zones = list(zones)
    if not zones:
        return {}
    pts = {z.zone_id: z.geometry.representative_point() for z in zones}
    order = sorted(zones, key=lambda z: (round(pts[z.zone_id].x, 9), round(pts[z.zone_id].y, 9), z.zone_id))
    xs = [pts[z.zone_id].x for z in order]
    lat = sum(pts[z.zone_id].y for z in order) / len(order)
    runs = _runs((xs[-1] - xs[0]) * M_PER_DEG * math.cos(math.radians(lat)), partitions)
    n = len(order)
    # run r goes to partition r * partitions // runs: spread over the partitions (and workers)
    return {z.zone_id: min(i * runs // n, runs - 1) * partitions // runs for i, z in enumerate(order)}


def partition_of(key: str, partitions: int) -> int:
    """Stable key -> partition (a zone id, an event id, a home cell)."""
    return zlib.crc32(key.encode()) % partitions


class HomeMap:
    """Home cell -> partition: runs of equal zone area west to east inside the zones' extent,
    crc32 of the home's H3 string outside it (module docstring).

    The zones' area in each home is counted on an AREA_SAMPLES² lattice of points over their
    bounding box (`shapely.contains_xy` on their union); the homes with area, ordered by their
    centre's longitude (then latitude, then cell), are cut where the running area crosses r/runs
    of the total, and each cut is the longitude halfway between the homes on either side of it.
    Inside the widened box a home goes to the run of its centre's longitude — the nearest run for
    a home without zones — and run r to partition r * partitions // runs, as zone runs do. No zones:
    every home is hashed (scheme 1)."""

    def __init__(self, zones, partitions: int):
        self.n = partitions
        self.cuts: tuple[float, ...] = ()   # longitudes between runs, west to east
        self.runs = 1
        self.box: tuple[float, float, float, float] | None = None   # (min lon, min lat, max lon, max lat)
        self._memo: dict[int, int] = {}
        geoms = [z.geometry for z in zones]
        if not geoms:
            return
        union = shapely.union_all(geoms)
        x0, y0, x1, y1 = union.bounds
        xs, ys = np.meshgrid(np.linspace(x0, x1, AREA_SAMPLES), np.linspace(y0, y1, AREA_SAMPLES))
        inside = shapely.contains_xy(union, xs.ravel(), ys.ravel())
        area: dict[int, int] = {}
        for lon, lat in zip(xs.ravel()[inside].tolist(), ys.ravel()[inside].tolist(), strict=True):
            h = h3i.latlng_to_cell(lat, lon, HOME_RES)
            area[h] = area.get(h, 0) + 1
        if not area:   # zones too thin for any sample: their own centre stands for them
            h = h3i.latlng_to_cell(union.centroid.y, union.centroid.x, HOME_RES)
            area[h] = 1
        homes = sorted((h3i.cell_to_latlng(h)[::-1], h, w) for h, w in area.items())   # ((lon, lat), cell, area)
        width_m = (homes[-1][0][0] - homes[0][0][0]) * M_PER_DEG * math.cos(math.radians((y0 + y1) / 2))
        self.runs = _runs(width_m, partitions)
        total = sum(w for _c, _h, w in homes)
        cuts, seen, r = [], 0, 1
        for i, (_c, _h, w) in enumerate(homes):
            # a cut before home i when the area west of it reaches r/runs of the total
            while r < self.runs and seen >= total * r / self.runs and i > 0:
                cuts.append((homes[i - 1][0][0] + homes[i][0][0]) / 2)
                r += 1
            seen += w
        self.cuts = tuple(cuts)
        self.runs = len(cuts) + 1
        dy = EXTENT_MARGIN_M / M_PER_DEG
        dx = dy / max(0.01, math.cos(math.radians(max(abs(y0), abs(y1)) + dy)))
        self.box = (x0 - dx, y0 - dy, x1 + dx, y1 + dy)

    def partition(self, home: int) -> int:
        """The partition of a home cell (an H3 int at HOME_RES), remembered (a city has a few
        hundred homes; units keep entering new fine cells, each of which asks for ~3)."""
        p = self._memo.get(home)
        if p is None:
            p = self._memo[home] = self._partition(home)
            if len(self._memo) > 100_000:   # fixes scattered over the globe: bounded
                self._memo.clear()
        return p

    def _partition(self, home: int) -> int:
        if self.box is not None:
            lat, lon = h3i.cell_to_latlng(home)
            x0, y0, x1, y1 = self.box
            if x0 <= lon <= x1 and y0 <= lat <= y1:
                return bisect.bisect_right(self.cuts, lon) * self.n // self.runs
        return partition_of(h3.int_to_str(home), self.n)

    def scheme(self) -> tuple:
        """What decides the map, exactly (float.hex: no rounding), for `layout_version`."""
        if self.box is None:
            return (1, self.n)
        return (HOME_SCHEME, self.n, self.runs, [c.hex() for c in self.cuts], [b.hex() for b in self.box])


def layout_version(zone_part: dict[str, int], home_map: HomeMap) -> int:
    """Fingerprint (a positive 31-bit int, never 0: 0 is "written before layouts were carried") of
    the zone map and the home map: two workers that route any record differently get different
    versions (but for a crc32 collision, about 1 in 2³¹)."""
    text = repr((sorted(zone_part.items()), home_map.scheme()))
    return zlib.crc32(text.encode()) % 0x7FFF_FFFF + 1


class HomeCells:
    """Fine cell -> home partitions within a radius (cached: points of a city share few cells)."""

    def __init__(self, partitions: int, home_map: HomeMap | None = None):
        self.n = partitions
        self.map = home_map if home_map is not None else HomeMap((), partitions)
        self._cache: dict[tuple[int, float], tuple[int, ...]] = {}
        self._homes: dict[int, tuple] = {}   # home cell -> its descendants' centres (homes_near)

    def own(self, cell: int) -> int:
        """Partition of the home cell containing this fine cell (cells are H3 ints)."""
        key = (cell, 0.0)
        p = self._cache.get(key)
        if p is None:
            p = self._cache[key] = (self.map.partition(h3i.cell_to_parent(cell, HOME_RES)),)
        return p[0]

    def within(self, cell: int, radius: float) -> tuple[int, ...]:
        """Partitions of the home cells with a fine cell within `radius` of a point of this cell."""
        key = (cell, radius)
        parts = self._cache.get(key)
        if parts is None:
            k = DISK_K.get(radius)
            if k is None:
                homes = self.homes_near(cell, radius)
            else:
                homes = {h3i.cell_to_parent(c, HOME_RES) for c in h3i.grid_disk(cell, k)}
            parts = self._cache[key] = tuple(sorted({self.map.partition(h) for h in homes}))
            if len(self._cache) > 500_000:
                self._cache.clear()
        return parts

    def homes_near(self, cell: int, radius: float) -> set[int]:
        """Home cells with a fine cell (a descendant) within `radius` of a point of this fine cell.

        The homes whose fine descendants' centres come within radius plus both cells'
        circumradii (the other's taken as this one's + 1 %: neighbouring cells differ far less)
        + 5 m of this cell's centre. A superset, never a miss. Candidates are the homes of the
        2-disk around this cell's home (a home two rings away is a whole home cell, > 5 km, from
        it); each is tested against its 343 descendants' centres at once (numpy, cached per
        home) unless its centre is too far for any of them: about 0.1 ms per fine cell, once
        (cached by `within`), wherever on Earth the cell lies."""
        lat, lon = h3i.cell_to_latlng(cell)
        e = max(haversine_m(lat, lon, a, b) for a, b in h3i.cell_to_boundary(cell))
        reach = radius + 2.02 * e + 5.0
        # great-circle distance <= reach  <=>  haversine term <= sin(reach / 2R)^2
        a_max = math.sin(min(reach / (2 * EARTH_RADIUS_M), math.pi / 2)) ** 2
        rlat, rlon = math.radians(lat), math.radians(lon)
        cos_lat = math.cos(rlat)
        home = h3i.cell_to_parent(cell, HOME_RES)
        out = {home}
        for h in h3i.grid_disk(home, 2):
            if h == home:
                continue
            clat, clon, span, plat, plon, pcos = self._descendants(h)
            if haversine_m(lat, lon, clat, clon) - span > reach:
                continue
            a = np.sin((plat - rlat) / 2) ** 2 + cos_lat * pcos * np.sin((plon - rlon) / 2) ** 2
            if (a <= a_max).any():
                out.add(h)
        return out

    def _descendants(self, home: int) -> tuple:
        """(centre lat, lon, farthest descendant centre from it in metres, and the descendants'
        centres in radians with their latitudes' cosines) of a home cell, cached."""
        got = self._homes.get(home)
        if got is None:
            clat, clon = h3i.cell_to_latlng(home)
            pts = [h3i.cell_to_latlng(c) for c in h3i.cell_to_children(home, FINE_RES)]
            span = max(haversine_m(clat, clon, a, b) for a, b in pts)
            arr = np.radians(np.array(pts, dtype=np.float64))
            got = self._homes[home] = (clat, clon, span, arr[:, 0], arr[:, 1], np.cos(arr[:, 0]))
        return got
