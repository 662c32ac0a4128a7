"""Zones files (CONTRACT §2): the id, name, kind and ring rules, read once for everyone.

The worker indexes the zones (streams/zone_index.py) and the gateway serves them to the wall;
both read them through `load_zones`, so a file is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import shape

from .errors import ZonesFileError

KINDS = ("venue", "district", "grid", "route", "other")
RINGS = ("core", "inner", "outer")
#: innermost first: picks an event's `ring` (CONTRACT §4) and orders tables
RING_ORDER = {"core": 0, "inner": 1, "outer": 2}


@dataclass(frozen=True)
class Zone:
    zone_id: str
    name: str
    kind: str
    ring: str | None
    geometry: object = field(compare=False)  # shapely geometry, prepared
    geojson: dict = field(compare=False, default_factory=dict)  # the geometry as the file gave it


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
        zones.append(Zone(zid, name, kind, ring, g, geom))
    if not zones:
        raise ZonesFileError(f"{path}: no zones")
    return zones


def innermost_ring(rings) -> str | None:
    """The innermost of some rings (None when there are none)."""
    rings = [r for r in rings if r]
    return min(rings, key=RING_ORDER.__getitem__) if rings else None


def zones_geojson(zones: list[Zone]) -> dict:
    """The zones as a FeatureCollection with every id at top level and only the properties a
    wall uses (name, kind, ring)."""
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "id": z.zone_id, "geometry": z.geojson,
                          "properties": {"name": z.name, "kind": z.kind, "ring": z.ring}} for z in zones]}
