"""Zone lookup through the H3 index equals a scan of every polygon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.errors import ZonesFileError
from contract.zones import load_zones
from streams.zone_index import ZoneIndex
from tests import scenario

ZONES = load_zones(scenario.ZONES_FILE)
INDEX = ZoneIndex(ZONES, resolution=9)
COARSE = ZoneIndex(ZONES, resolution=7)  # cells much larger than the zones: all boundary cells


@settings(max_examples=3000, deadline=None)
@given(st.floats(34.69, 34.73), st.floats(113.59, 113.71))
def test_index_equals_polygon_scan(lat, lon):
    assert INDEX.lookup(lat, lon) == INDEX.lookup_exact(lat, lon)
    assert COARSE.lookup(lat, lon) == INDEX.lookup_exact(lat, lon)


GENERATED = load_zones(Path(scenario.__file__).parent / "zones_reach_test.geojson")  # polygon, route segments, a point
GEN_INDEX = ZoneIndex(GENERATED, resolution=9)


@settings(max_examples=2000, deadline=None)
@given(st.floats(34.738, 34.763), st.floats(113.638, 113.678))
def test_index_of_route_segments_and_points_equals_polygon_scan(lat, lon):
    assert GEN_INDEX.lookup(lat, lon) == GEN_INDEX.lookup_exact(lat, lon)


def test_route_segments_overlap_at_their_cut():
    # the course starts at (34.740, 113.660) heading east: 1 km on, both segments hold the cut
    cut = GENERATED[1].line["coordinates"][-1]
    assert GEN_INDEX.lookup(cut[1], cut[0]) == ("course/0", "course/1")
    assert GEN_INDEX.lookup(34.7600, 113.6550) == ("aid-1",)


@pytest.mark.parametrize("pt,zones", [
    (scenario.PA, ("A",)), (scenario.PAB, ("A", "B")), (scenario.PB, ("B",)),
    (scenario.PCORE, ("outer", "inner", "core")), (scenario.PIN, ("outer", "inner")), (scenario.PNONE, ()),
])
def test_known_points(pt, zones):
    assert INDEX.lookup(*pt) == zones


def test_innermost_ring():
    assert INDEX.innermost_ring(("outer", "inner", "core")) == "core"
    assert INDEX.innermost_ring(("A",)) is None


def test_ids_from_properties_and_id_property(tmp_path):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"adcode": 410102, "name": "中原区"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}
    p = tmp_path / "z.geojson"
    p.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ZonesFileError, match="no id"):
        load_zones(p)
    (z,) = load_zones(p, id_property="adcode")
    assert (z.zone_id, z.name, z.kind, z.ring) == ("410102", "中原区", "other", None)


def test_bad_files_are_refused_with_a_reason(tmp_path):
    p = tmp_path / "bad.geojson"
    p.write_text('{"type": "FeatureCollection", "features": '
                 '[{"id": "x", "geometry": {"type": "GeometryCollection", "geometries": []}}]}')
    with pytest.raises(ZonesFileError,
                       match=r"feature #0 \(id 'x'\): geometry type 'GeometryCollection' is not one of"):
        load_zones(p)
    p.write_text("not json")
    with pytest.raises(ZonesFileError, match="cannot read"):
        load_zones(p)
