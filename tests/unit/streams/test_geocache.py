"""The zone geometry cache (streams/geocache.py): built once, loaded after, the same answers."""

from __future__ import annotations

import numpy as np

from contract.zones import load_zones
from streams import geocache
from tests import scenario

POINTS = [scenario.PA, scenario.PAB, scenario.PB, scenario.PCORE, scenario.PIN, scenario.PNONE, scenario.PA2]


def test_built_then_loaded_gives_the_same_index_and_cells(tmp_path):
    zones = load_zones(scenario.ZONES_FILE)
    path = geocache.cache_path(tmp_path, scenario.ZONES_FILE, 9, None)
    built_index, built_cells = geocache.prepare(zones, 9, path)
    assert path.is_file()
    loaded_index, loaded_cells = geocache.prepare(zones, 9, path)
    assert loaded_index is not built_index
    for lat, lon in POINTS:
        assert loaded_index.lookup_cell(lat, lon) == built_index.lookup_cell(lat, lon)
    assert set(loaded_cells) == {z.zone_id for z in zones}
    for zid, zc in built_cells.items():
        assert np.array_equal(zc.weights, loaded_cells[zid].weights) and zc.cells == loaded_cells[zid].cells


def test_another_zones_file_or_resolution_is_another_cache(tmp_path):
    a = geocache.cache_path(tmp_path, scenario.ZONES_FILE, 9, None)
    assert a != geocache.cache_path(tmp_path, scenario.ZONES_FILE, 10, None)
    assert a != geocache.cache_path(tmp_path, scenario.ZONES_FILE, 9, "adcode")


def test_a_broken_cache_file_is_rebuilt(tmp_path):
    zones = load_zones(scenario.ZONES_FILE)
    path = geocache.cache_path(tmp_path, scenario.ZONES_FILE, 9, None)
    path.write_bytes(b"not a pickle")
    index, _cells = geocache.prepare(zones, 9, path)
    assert index.lookup_cell(*scenario.PCORE)[1] == ("outer", "inner", "core")
    assert path.read_bytes() != b"not a pickle"
