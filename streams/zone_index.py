"""Zone lookup: which zones contain a point (CONTRACT §2; the zones file is read by contract.zones).

Precomputed once at start: every H3 cell (at `resolution`) that touches a zone maps to
(zones that contain the whole cell, zones whose boundary crosses the cell). A lookup is one
`latlng_to_cell` plus a dict hit; only points in boundary cells pay for an exact
point-in-polygon test, so cost per event does not grow with the number of zones.
"""

from __future__ import annotations

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i
from shapely.geometry import Polygon

from contract.zones import Zone, innermost_ring

from .partitioning import FINE_RES


class ZoneIndex:
    """Point -> zone ids, through an H3 cell map with exact checks on boundary cells."""

    def __init__(self, zones: list[Zone], resolution: int = 9):
        self.zones = {z.zone_id: z for z in zones}
        self.resolution = resolution
        inside: dict[str, list[str]] = {}
        border: dict[str, list[str]] = {}
        for z in zones:
            for cell in _cells_touching(z.geometry, resolution):
                cell_poly = Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(cell)])
                if z.geometry.contains(cell_poly):
                    inside.setdefault(cell, []).append(z.zone_id)
                elif z.geometry.intersects(cell_poly):
                    border.setdefault(cell, []).append(z.zone_id)
        # keyed by the cell's 64-bit integer: h3's int API is twice as fast as its str API
        self._cells: dict[int, tuple[tuple[str, ...], tuple[Zone, ...]]] = {}
        for cell in set(inside) | set(border):
            self._cells[h3.str_to_int(cell)] = (
                tuple(inside.get(cell, ())),
                tuple(self.zones[zid] for zid in border.get(cell, ())),
            )
        self._order = {z.zone_id: i for i, z in enumerate(zones)}

    def __len__(self) -> int:
        return len(self.zones)

    def lookup(self, lat: float, lon: float) -> tuple[str, ...]:
        """Ids of every zone containing (lat, lon), in zones-file order."""
        return self._zones_at(h3i.latlng_to_cell(lat, lon, self.resolution), lat, lon)

    def lookup_cell(self, lat: float, lon: float) -> tuple[int, tuple[str, ...]]:
        """(H3 cell at FINE_RES as an int, zone ids): one cell computation serves zones and incidents."""
        cell = h3i.latlng_to_cell(lat, lon, self.resolution)
        zones = self._zones_at(cell, lat, lon)
        if self.resolution != FINE_RES:
            cell = h3i.latlng_to_cell(lat, lon, FINE_RES)
        return cell, zones

    def lookup_cells(self, lat: np.ndarray, lon: np.ndarray) -> tuple[list[int], list[tuple[str, ...]]]:
        """`lookup_cell` for a batch of points: (fine cells, zone ids) per point, equal to it point
        by point. Zones once per unique cell; the points in boundary cells are tested against their
        cells' candidate zones in one vectorised `shapely.contains_xy` (the same predicate, on the
        same prepared polygons)."""
        lats, lons = lat.tolist(), lon.tolist()
        to_cell, res = h3i.latlng_to_cell, self.resolution
        cells = [to_cell(a, o, res) for a, o in zip(lats, lons, strict=True)]
        known = self._cells
        per_cell: dict[int, tuple[str, ...] | None] = {}   # None: a boundary cell, tested per point
        for c in set(cells):
            hit = known.get(c)
            per_cell[c] = () if hit is None else (None if hit[1] else hit[0])
        zones: list = [per_cell[c] for c in cells]
        border = [i for i, z in enumerate(zones) if z is None]
        if border:
            # every (point, candidate zone) pair of the boundary cells, tested in one call
            found: dict[int, list[str]] = {}
            pair_rows: list[int] = []
            pair_zones: list[Zone] = []
            for i in border:
                sure, maybe = known[cells[i]]
                found[i] = list(sure)
                pair_rows += [i] * len(maybe)
                pair_zones += maybe
            rows = np.array(pair_rows, dtype=np.intp)
            geoms = np.array([z.geometry for z in pair_zones], dtype=object)
            inside = shapely.contains_xy(geoms, lon[rows], lat[rows])
            for k in np.flatnonzero(inside).tolist():
                found[pair_rows[k]].append(pair_zones[k].zone_id)
            order = self._order.__getitem__
            for i, lst in found.items():
                if len(lst) > 1:
                    lst.sort(key=order)
                zones[i] = tuple(lst)
        if res != FINE_RES:
            cells = [h3i.latlng_to_cell(a, o, FINE_RES) for a, o in zip(lats, lons, strict=True)]
        return cells, zones

    def _zones_at(self, cell: int, lat: float, lon: float) -> tuple[str, ...]:
        hit = self._cells.get(cell)
        if hit is None:
            return ()
        sure, maybe = hit
        if not maybe:
            return sure
        found = list(sure)
        for z in maybe:
            if shapely.contains_xy(z.geometry, lon, lat):
                found.append(z.zone_id)
        if len(found) > 1:
            found.sort(key=self._order.__getitem__)
        return tuple(found)

    def zones_holding_cell(self, cell: int) -> tuple[str, ...]:
        """Zones that contain the whole of this cell (an int at the index's resolution): every point
        looked up in it is in them. () when the cell is not at the index's resolution."""
        hit = self._cells.get(cell)
        return hit[0] if hit is not None and h3i.get_resolution(cell) == self.resolution else ()

    def lookup_exact(self, lat: float, lon: float) -> tuple[str, ...]:
        """The same answer by a scan of every polygon: the reference for tests."""
        return tuple(z.zone_id for z in self.zones.values() if shapely.contains_xy(z.geometry, lon, lat))

    def innermost_ring(self, zone_ids) -> str | None:
        return innermost_ring(self.zones[z].ring for z in zone_ids)


def _cells_touching(geom, resolution: int) -> set[str]:
    """All cells whose hexagon overlaps the geometry (polyfill in 'overlap' mode, plus a margin)."""
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    cells: set[str] = set()
    for p in polys:
        shp = h3.LatLngPoly(
            [(lat, lon) for lon, lat in p.exterior.coords[:-1]],
            *[[(lat, lon) for lon, lat in r.coords[:-1]] for r in p.interiors],
        )
        cells.update(h3.h3shape_to_cells_experimental(shp, resolution, contain="overlap"))
    # 'overlap' mode is exact in h3 >= 4.2, but a ring of neighbours is cheap insurance against
    # great-circle vs planar edge differences on very long polygon edges.
    edge: set[str] = set()
    for c in cells:
        edge.update(h3.grid_disk(c, 1))
    return cells | edge
