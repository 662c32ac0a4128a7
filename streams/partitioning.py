"""Which partition of the zone-events topic a record goes to: the one partitioning rule.

Zones map to partitions by geography (`zone_partitions`): sorted by their representative point,
west to east (then south to north, then id), they are cut into runs of equal size — as many as the
partitions, or fewer when the zones are too close together for runs twice the 5-minute reach wide —, so
neighbouring zones — nested rings, a district and its grid cells — share a partition and a patrol
fix, which must reach every partition with a zone its unit can reach in 5 minutes (2.1 km), goes
to one or two partitions rather than all of them. Every worker computes the same map from the
zones file. An event in no zone is counted in the partition of `crc32(its id)`. Incidents are
partitioned by geography instead: a call belongs to the partition of its H3 resolution-6 "home"
cell, and every fix (alert) goes to the home partitions within the arrival (corroboration) radius
of it, so the partition of a call sees every fix and alert that can matter to it. The same
function serves every worker and language (crc32 of UTF-8). An *available* fix also goes to every
home partition within DISPATCH_EXACT_M (2,077 m) of it, so the partition of a call holds every
available unit's position within that distance for the dispatch recommendation
(streams/routing.py says how a unit that moves away or turns busy is noticed there).
"""

from __future__ import annotations

import math
import zlib

import h3
import numpy as np
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
    width_m = (xs[-1] - xs[0]) * 111_320.0 * math.cos(math.radians(lat))
    runs = max(1, min(partitions, int(width_m // (2 * MAX_REACH_M))))
    n = len(order)
    # run r goes to partition r * partitions // runs: spread over the partitions (and workers)
    return {z.zone_id: min(i * runs // n, runs - 1) * partitions // runs for i, z in enumerate(order)}


def partition_of(key: str, partitions: int) -> int:
    """Stable key -> partition (a zone id, an event id, a home cell)."""
    return zlib.crc32(key.encode()) % partitions


class HomeCells:
    """Fine cell -> home partitions within a radius (cached: points of a city share few cells)."""

    def __init__(self, partitions: int):
        self.n = partitions
        self._cache: dict[tuple[int, float], tuple[int, ...]] = {}
        self._homes: dict[int, tuple] = {}   # home cell -> its descendants' centres (homes_near)

    def own(self, cell: int) -> int:
        """Partition of the home cell containing this fine cell (cells are H3 ints)."""
        key = (cell, 0.0)
        p = self._cache.get(key)
        if p is None:
            p = self._cache[key] = (partition_of(h3.int_to_str(h3i.cell_to_parent(cell, HOME_RES)), self.n),)
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
            parts = self._cache[key] = tuple(sorted({partition_of(h3.int_to_str(h), self.n) for h in homes}))
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
