"""Zone lookup: which zones contain a point (CONTRACT §2).

Precomputed once at start: every H3 cell (at `resolution`) that touches a zone maps to
(zones that contain the whole cell, zones whose boundary crosses the cell). A lookup is one
`latlng_to_cell` plus a dict hit; only points in boundary cells pay for an exact
point-in-polygon test, so cost per event does not grow with the number of zones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h3
import shapely
from shapely.geometry import Polygon, shape

FINE_RES = 9  # the H3 resolution incidents hash on (streams/incidents.py)
KINDS = ("venue", "district", "grid", "route", "other")
RINGS = ("core", "inner", "outer")
# innermost first: used to pick an event's `ring`
RING_ORDER = {"core": 0, "inner": 1, "outer": 2}


class ZonesFileError(ValueError):
    """The zones GeoJSON is unusable; the message names the feature and the problem."""


@dataclass(frozen=True)
class Zone:
    zone_id: str
    name: str
    kind: str
    ring: str | None
    geometry: object  # shapely geometry, prepared


def load_zones(path: str | Path, id_property: str | None = None) -> list[Zone]:
    """Read a GeoJSON FeatureCollection of (Multi)Polygons.

    The id is the feature's top-level `id`, else `properties.id`, else `properties[id_property]`
    (e.g. `adcode` for the DataV district exports). Unknown kinds become `other`.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZonesFileError(f"cannot read zones file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ZonesFileError(f"{path}: not a GeoJSON FeatureCollection")
    zones: list[Zone] = []
    seen: set[str] = set()
    for i, feat in enumerate(doc.get("features") or []):
        props = feat.get("properties") or {}
        zid = feat.get("id", props.get("id"))
        if zid is None and id_property:
            zid = props.get(id_property)
        if zid is None or str(zid) == "":
            raise ZonesFileError(f"{path}: feature #{i} has no id (top-level `id` or properties.id)")
        zid = str(zid)
        if zid in seen:
            raise ZonesFileError(f"{path}: duplicate zone id {zid!r}")
        seen.add(zid)
        geom = feat.get("geometry") or {}
        if geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise ZonesFileError(f"{path}: zone {zid!r} geometry must be Polygon or MultiPolygon")
        try:
            g = shape(geom)
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise ZonesFileError(f"{path}: zone {zid!r} has malformed coordinates: {exc}") from exc
        if not g.is_valid:
            g = g.buffer(0)  # self-touching rings in real exports; buffer(0) repairs them
        kind = props.get("kind") if props.get("kind") in KINDS else "other"
        ring = props.get("ring") if props.get("ring") in RINGS else None
        name = str(props.get("name") or zid)
        shapely.prepare(g)
        zones.append(Zone(zid, name, kind, ring, g))
    if not zones:
        raise ZonesFileError(f"{path}: no zones")
    return zones


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
        self._cells: dict[str, tuple[tuple[str, ...], tuple[Zone, ...]]] = {}
        for cell in set(inside) | set(border):
            self._cells[cell] = (
                tuple(inside.get(cell, ())),
                tuple(self.zones[zid] for zid in border.get(cell, ())),
            )
        self._order = {z.zone_id: i for i, z in enumerate(zones)}

    def __len__(self) -> int:
        return len(self.zones)

    def lookup(self, lat: float, lon: float) -> tuple[str, ...]:
        """Ids of every zone containing (lat, lon), in zones-file order."""
        return self._zones_at(h3.latlng_to_cell(lat, lon, self.resolution), lat, lon)

    def lookup_cell(self, lat: float, lon: float) -> tuple[str, tuple[str, ...]]:
        """(H3 cell at FINE_RES, zone ids): one cell computation serves zones and incidents."""
        cell = h3.latlng_to_cell(lat, lon, self.resolution)
        zones = self._zones_at(cell, lat, lon)
        if self.resolution != FINE_RES:
            cell = h3.latlng_to_cell(lat, lon, FINE_RES)
        return cell, zones

    def _zones_at(self, cell: str, lat: float, lon: float) -> tuple[str, ...]:
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

    def lookup_exact(self, lat: float, lon: float) -> tuple[str, ...]:
        """The same answer by a scan of every polygon: the reference for tests."""
        return tuple(z.zone_id for z in self.zones.values() if shapely.contains_xy(z.geometry, lon, lat))

    def innermost_ring(self, zone_ids) -> str | None:
        rings = [self.zones[z].ring for z in zone_ids if self.zones[z].ring]
        return min(rings, key=RING_ORDER.__getitem__) if rings else None


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
