"""Geographic home cells (streams/partitioning.py `HomeMap`, issue 25): runs of equal zone area, the
hashed fallback beyond the zones' widened box, and the layout version every zone-events batch and
snapshot carries, with what a worker does when it meets another one. That every fix still reaches
the home partition of every call within the exact reach is test_dispatch.py's
`test_every_fix_within_the_exact_reach_goes_to_the_home_of_every_call_there[geographic]`; the same
results at 1/3/4/7 partitions under any read order, test_read_order.py."""

from __future__ import annotations

import logging
import math
import zlib

import h3 as h3str
import numpy as np
import shapely
from h3.api import basic_int as h3
from shapely.geometry import Polygon, box

from contract import metrics as names
from contract.settings import Settings
from contract.zones import Zone, load_zones
from streams import metrics, records, recovery
from streams.partitioning import HOME_RES, HomeMap, layout_version, zone_partitions
from streams.testing import Pipeline
from tests import scenario
from tests.unit.streams import test_read_order as read_order

M_PER_DEG = 111_320.0


def triangle(lat0: float = 34.3, lon0: float = 113.0) -> list[Zone]:
    """A 100 km wide triangle whose north-south extent grows from 0 in the west to 60 km in the
    east, cut into 20 zones of equal width: equal-width runs would hold very unequal areas."""
    k = M_PER_DEG * math.cos(math.radians(lat0 + 0.3))
    w, h = 100_000 / k, 60_000 / M_PER_DEG
    tri = Polygon([(lon0, lat0 + h / 2), (lon0 + w, lat0), (lon0 + w, lat0 + h)])
    return [Zone(f"t{i:02d}", f"t{i}", "grid", None, tri.intersection(box(lon0 + w * i / 20, lat0,
                                                                            lon0 + w * (i + 1) / 20, lat0 + h)))
            for i in range(20)]


def points_in(zones: list[Zone], n: int, seed: int) -> list[tuple[float, float]]:
    """About n points (lat, lon) uniform over the zones' union: uniform in its bounding box, those
    outside it dropped."""
    union = shapely.union_all([z.geometry for z in zones])
    x0, y0, x1, y1 = union.bounds
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(x0, x1, 2 * n), rng.uniform(y0, y1, 2 * n)
    keep = shapely.contains_xy(union, xs, ys)
    return list(zip(ys[keep].tolist(), xs[keep].tolist(), strict=True))


def test_runs_hold_equal_zone_area_so_no_partition_runs_hot():
    """Points spread evenly over the zones (the expected events) fall into each partition's homes
    in equal shares, within a home cell's worth, where the zones' width per degree of longitude
    varies from nothing to 60 km."""
    zones = triangle()
    pts = points_in(zones, 20_000, seed=3)
    for n in (4, 7):
        home_map = HomeMap(zones, n)
        assert home_map.runs == n
        shares = [0] * n
        for lat, lon in pts:
            shares[home_map.partition(h3.latlng_to_cell(lat, lon, HOME_RES))] += 1
        assert max(shares) / min(shares) < 1.2, (n, shares)
        # west to east: a run's partition never decreases with its homes' longitude
        homes = sorted({h3.latlng_to_cell(lat, lon, HOME_RES) for lat, lon in pts},
                       key=lambda c: h3.cell_to_latlng(c)[1])
        parts = [home_map.partition(c) for c in homes]
        assert parts == sorted(parts) and set(parts) == set(range(n))


def test_homes_beyond_the_widened_box_are_hashed_and_those_near_it_join_the_nearest_run():
    zones = triangle()
    home_map = HomeMap(zones, 7)
    # far away (another continent): crc32 of the H3 string, as every home was before
    for lat, lon in ((51.5, -0.12), (-33.9, 151.2), (34.3, 100.0), (40.0, 113.5)):
        home = h3.latlng_to_cell(lat, lon, HOME_RES)
        assert home_map.partition(home) == zlib.crc32(h3str.int_to_str(home).encode()) % 7, (lat, lon)
    # 5 km beyond the zones' west and east tips: the westernmost and easternmost runs
    k = M_PER_DEG * math.cos(math.radians(34.6))
    west = h3.latlng_to_cell(34.6, 113.0 - 5_000 / k, HOME_RES)
    east = h3.latlng_to_cell(34.6, 113.0 + 105_000 / k, HOME_RES)
    assert (home_map.partition(west), home_map.partition(east)) == (0, 6)


def test_no_zones_hash_every_home():
    home_map = HomeMap([], 4)
    for lat, lon in ((34.7, 113.6), (0.3, 10.0)):
        home = h3.latlng_to_cell(lat, lon, HOME_RES)
        assert home_map.partition(home) == zlib.crc32(h3str.int_to_str(home).encode()) % 4


def test_the_layout_version_changes_with_the_map_and_only_with_it():
    zones = load_zones(scenario.ZONES_FILE)
    version = layout_version(zone_partitions(zones, 4), HomeMap(zones, 4))
    shuffled = list(reversed(zones))   # the order of the file changes nothing
    assert layout_version(zone_partitions(shuffled, 4), HomeMap(shuffled, 4)) == version
    assert layout_version(zone_partitions(zones, 3), HomeMap(zones, 3)) != version
    moved = [Zone(z.zone_id, z.name, z.kind, z.ring, z.geometry) for z in zones]
    moved[0] = Zone(zones[0].zone_id, zones[0].name, zones[0].kind, zones[0].ring,
                    zones[0].geometry.buffer(0.02))   # one zone 2 km wider
    assert layout_version(zone_partitions(moved, 4), HomeMap(moved, 4)) != version
    assert layout_version(zone_partitions(zones, 4), HomeMap([], 4)) != version   # hashed homes
    assert version > 0
    # ingest and state compute the same from the same settings
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=4))
    assert pipe.router.layout == pipe.stage.layout == version


def _mismatches() -> float:
    return metrics.REGISTRY.get_sample_value(names.LAYOUT_MISMATCH) or 0.0


def _scenario_msgs():
    calls, fixes, alerts = read_order.events(1)
    return read_order.read_order(calls, fixes, alerts, 7)


def test_batches_of_one_layout_are_not_counted_arrival_batches_carry_none():
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=4, future_tolerance_ms=10 ** 13))
    before = _mismatches()
    pipe.feed(_scenario_msgs(), batch=20)
    pipe.finish()
    assert any(e["type"] == "arrived" for e in pipe.sla)   # arrival batches (layout 0) were applied
    assert _mismatches() == before and not pipe.stage.foreign_layouts


def test_batches_routed_by_another_layout_are_counted_and_logged_once(caplog):
    """An ingest with another map (here: from before the layouts, which hashed home cells and
    wrote no version) is noticed by the state stage: each batch with records counted, the layout
    logged once; its records are still applied."""
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=4, future_tolerance_ms=10 ** 13))
    pipe.router.layout = 0
    sent: list[bytes] = []
    applied = pipe.applied

    def spy(p, value):
        sent.append(value)
        applied(p, value)
    pipe.applied = spy   # type: ignore[method-assign]
    before = _mismatches()
    with caplog.at_level(logging.ERROR, logger="zonewatch.state"):
        pipe.feed(_scenario_msgs(), batch=20)
    routed = [b for b in map(records.decode, sent)
              if b.events and not all(isinstance(r, (records.Arrival, records.Tiers)) for r in b.events)]
    assert len(routed) > 10
    assert _mismatches() - before == len(routed)
    logged = [r for r in caplog.records if "partitioning layout 0" in r.getMessage()]
    assert len(logged) == 1 and pipe.stage.foreign_layouts == {0}
    assert pipe.enriched   # applied all the same


def test_a_snapshot_carries_the_layout_and_a_foreign_one_is_counted_at_restore():
    pipe = Pipeline(Settings(zones=scenario.ZONES_FILE, partitions=4, future_tolerance_ms=10 ** 13),
                    keep_log=True)
    pipe.feed(_scenario_msgs()[:200], batch=20)
    stage = pipe.stage
    snap = recovery.parse_snapshot(1, dict(stage.snapshot(1)))[0]
    assert snap is not None and snap["layout"] == stage.layout
    before = _mismatches()
    recovery.from_snapshot(stage, 1, snap, {}, first=0)
    assert _mismatches() == before
    recovery.from_snapshot(stage, 1, dict(snap, layout=stage.layout + 1), {}, first=0)
    assert _mismatches() == before + 1
    old = {k: v for k, v in snap.items() if k != "layout"}   # written before layouts were carried
    recovery.from_snapshot(stage, 1, old, {}, first=0)
    assert _mismatches() == before + 2
