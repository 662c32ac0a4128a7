"""Coverage (CONTRACT §3 v3): the share of a zone's H3 resolution-9 cells — those whose centre lies
in the zone — in which a fix of any unit (any status, any force) with `ts` in the last 60 minutes /
8 hours of stream clock fell: how much of the zone was actually patrolled (巡逻覆盖率).

Pure, for the partition state (streams/zone_state.py) and the router (streams/routing.py):
- `coverage_cells(zone)`: the zone's cells, once per zone geometry. A zone too small or too thin
  for any cell centre to lie in it (a point of 100 m radius, a narrow route segment) has one cell:
  the cell of a point on its surface, so its coverage is that cell's, never a division by zero.
- `ZoneCoverage`: per partition, the latest fix ts of every cell of its zones (one int64 slot per
  distinct cell, nested zones share slots). A fix costs a dict lookup and a compare; the shares
  are computed against the clock when a document is made, so they are exact whatever the order
  the fixes are read in (a maximum), and memory is bounded by the zones' cells, not the fixes.
  A zone's shares are kept until a fix brings one of its cells into a window or its oldest counted
  fix leaves one: most flushed documents then cost a dict lookup instead of ~17 µs of numpy on
  small arrays (docs/BENCHMARKS.md "Coverage's kept shares, and the plan's cost on a quiet machine");
  a zone of few cells (SMALL_ZONE_SLOTS) has them computed in Python, a few hundred ns.
A fix counts when `clock - ts <= window` (as a unit's fix counts as present when at most 120 s old).
"""

from __future__ import annotations

from array import array

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i

from contract.response import COVERAGE_RES, COVERAGE_WINDOWS_MS
from contract.zones import Zone

_NEVER = -(2**62)   # a cell without a fix: older than any window's start
_MAX_WINDOW_MS = max(w for _n, w in COVERAGE_WINDOWS_MS)
_WINDOWS = frozenset(w for _n, w in COVERAGE_WINDOWS_MS)
#: a zone of at most this many cells has its shares computed in Python: numpy costs ~10 µs a call on
#: small arrays, a Python comparison ~60 ns a cell (the marathon's 92 zones have 1-21 cells each)
SMALL_ZONE_SLOTS = 64
# zone geometry id -> (geometry, cells): zones are loaded once per process, and the router and every
# partition state (made again at each takeover) need the same cells
_CELLS: dict[int, tuple[object, np.ndarray]] = {}


def coverage_cells(zone: Zone) -> np.ndarray:
    """The zone's cells (H3 ints, sorted): every cell whose centre the zone contains, or the cell of
    a point on its surface when there is none (see the module doc)."""
    geom = zone.geometry
    hit = _CELLS.get(id(geom))
    if hit is not None and hit[0] is geom:
        return hit[1]
    parts = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    cells: set[int] = set()
    for p in parts:
        shp = h3.LatLngPoly([(la, lo) for lo, la in p.exterior.coords[:-1]],
                            *[[(la, lo) for lo, la in r.coords[:-1]] for r in p.interiors])
        cells.update(h3i.h3shape_to_cells(shp, COVERAGE_RES))   # h3's rule: the centre is inside
    if not cells:
        pt = shapely.point_on_surface(geom)
        cells.add(h3i.latlng_to_cell(pt.y, pt.x, COVERAGE_RES))
    out = np.array(sorted(cells), dtype=np.uint64).astype(np.int64)
    _CELLS[id(geom)] = (geom, out)
    return out


def cell_of(lat: float, lon: float) -> int:
    """The coverage cell of a position (an H3 int, as coverage_cells gives them)."""
    return h3i.latlng_to_cell(lat, lon, COVERAGE_RES)


class ZoneCoverage:
    """The latest fix ts per cell of one partition's zones, and each zone's shares."""

    def __init__(self, zones: list[Zone]):
        self.slot: dict[int, int] = {}                  # cell -> slot
        slot_zones: list[list[str]] = []
        self.zone_slots: dict[str, np.ndarray] = {}
        self.small_slots: dict[str, tuple[int, ...]] = {}   # the same, for zones of few cells
        for z in zones:
            slots = []
            for cell in coverage_cells(z).tolist():
                s = self.slot.get(cell)
                if s is None:
                    s = self.slot[cell] = len(slot_zones)
                    slot_zones.append([])
                slot_zones[s].append(z.zone_id)
                slots.append(s)
            self.zone_slots[z.zone_id] = np.array(slots, dtype=np.int64)
            if len(slots) <= SMALL_ZONE_SLOTS:
                self.small_slots[z.zone_id] = tuple(slots)
        self.slot_zones = [tuple(zs) for zs in slot_zones]   # slot -> zones whose share it is part of
        self.cells = np.array(list(self.slot), dtype=np.int64)   # slot -> cell (the dict's order)
        # slot -> latest fix ts: an array for the per-fix path (an item costs ~40 ns, a numpy item
        # ~1 µs) and a numpy view of the same memory for the shares
        self.latest = array("q", [_NEVER]) * len(slot_zones)
        self.view = np.frombuffer(self.latest, dtype=np.int64)
        # zone -> (shares, the clock they change at by time alone, the clock they were computed at)
        self.shares: dict[str, tuple[dict[str, float], int, int]] = {}
        # the newest clock a fix was judged at: a document asked for an earlier clock is computed
        # afresh, since a fix judged outside a window at a later clock may count at that one
        self.fix_clock = _NEVER

    def fix(self, cell: int, ts: int, clock: int) -> tuple[str, ...]:
        """A fix in `cell` at `ts` (the state's clock before its batch advances it): the zones whose
        shares this changes at `clock` (any later change by time is in `valid_until`)."""
        s = self.slot.get(cell)
        if s is None:
            return ()
        if clock > self.fix_clock:
            self.fix_clock = clock
        old = self.latest[s]
        if ts <= old:
            return ()
        self.latest[s] = ts
        for _name, window in COVERAGE_WINDOWS_MS:
            start = clock - window
            if old < start <= ts:
                zones = self.slot_zones[s]
                for z in zones:
                    self.shares.pop(z, None)
                return zones
        for z in self.slot_zones[s]:   # the shares stand; their `until` moves if `old` set it
            kept = self.shares.get(z)
            if kept is not None and kept[1] - old - 1 in _WINDOWS:
                del self.shares[z]
        return ()

    def doc(self, zone_id: str, clock: int) -> tuple[dict[str, float], int]:
        """({"60m": share, "8h": share} rounded to 2 decimals, as reach is; the clock at which a
        share next changes by time alone: when its oldest counted fix leaves the window)."""
        kept = self.shares.get(zone_id)
        if kept is not None and kept[2] <= clock < kept[1] and self.fix_clock <= clock:
            return kept[0], kept[1]
        out, until = self.compute(zone_id, clock)
        if self.fix_clock <= clock:
            self.shares[zone_id] = (out, until, clock)
        return out, until

    def compute(self, zone_id: str, clock: int) -> tuple[dict[str, float], int]:
        """`doc` from the cells' latest fixes, without the kept shares."""
        out: dict[str, float] = {}
        until = 2**62
        small = self.small_slots.get(zone_id)
        if small is not None:   # the same figures without numpy's cost per call
            latest = self.latest
            tss = [latest[s] for s in small]
            for name, window in COVERAGE_WINDOWS_MS:
                start = clock - window
                counted = [t for t in tss if t >= start]
                out[name] = round(len(counted) / len(tss), 2)
                if counted:
                    until = min(until, min(counted) + window + 1)
            return out, until
        ts = self.view[self.zone_slots[zone_id]]
        n = len(ts)
        for name, window in COVERAGE_WINDOWS_MS:
            cts = ts[ts >= clock - window]
            out[name] = round(len(cts) / n, 2)
            if len(cts):
                until = min(until, int(cts.min()) + window + 1)
        return out, until

    def snapshot(self, clock: int) -> dict:
        """The cells with a fix that still counts in the longest window (H3 ids: a changed zones
        file maps them to its own slots, or drops them)."""
        keep = np.flatnonzero(self.view >= clock - _MAX_WINDOW_MS)
        return {"cells": self.cells[keep].tobytes(), "ts": self.view[keep].tobytes()}

    def restore(self, snap: dict | None) -> None:
        if not snap:
            # a snapshot of the code before coverage: it starts empty
            # (docs/DESIGN.md "Forces, coverage and on-scene tiers")
            return
        self.shares.clear()
        cells = np.frombuffer(snap["cells"], dtype=np.int64).tolist()
        ts = np.frombuffer(snap["ts"], dtype=np.int64).tolist()
        for cell, t in zip(cells, ts, strict=True):
            s = self.slot.get(cell)
            if s is not None and t > self.latest[s]:
                self.latest[s] = t
