"""Cost of one reach evaluation (streams/reach.py): µs per zone with N available units in a city.

    .venv/bin/python -m bench.reach_cost                     # synthetic city, 5,000 units
    .venv/bin/python -m bench.reach_cost --zones ../shared/datasets/410100_full.json --id-property adcode

The synthetic city is a 30 km x 30 km square around Zhengzhou with units uniformly spread (kinds
car 50 %, foot 35 %, motorcycle 12 %, swat 3 %, as bench/events.py) and four zone shapes: a 1 km²
patrol grid square, a 15 km x 15 km district, a 1 km route segment (buffer 50 m) and a 100 m point.
With --zones, units are spread over the bounding box of the file's zones instead and every zone of
the file is measured. Each figure is the best of --repeat runs of --n evaluations (the machine is
shared: the minimum is the cost, the rest is other processes). Also printed: the one-off
`zone_cells` build time, the cell count and how many units the grid index hands to the zone.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

from contract.zones import load_zones
from streams.reach import UnitIndex, reach, zone_cells

LAT0, LON0 = 34.75, 113.65
KINDS = ("car", "foot", "motorcycle", "swat")
KIND_W = (50, 35, 12, 3)


def _ll(x: float, y: float) -> list[float]:
    """Metres east/north of the city centre -> [lon, lat] (a flat approximation is fine here)."""
    return [LON0 + x / (111_320.0 * math.cos(math.radians(LAT0))), LAT0 + y / 110_950.0]


def _square(x0, y0, side) -> list[list[float]]:
    return [_ll(x0, y0), _ll(x0 + side, y0), _ll(x0 + side, y0 + side), _ll(x0, y0 + side), _ll(x0, y0)]


def synthetic_zones_file(path: Path) -> Path:
    feats = [
        {"type": "Feature", "id": "grid-1km2", "properties": {"kind": "grid"},
         "geometry": {"type": "Polygon", "coordinates": [_square(-500, -500, 1000)]}},
        {"type": "Feature", "id": "district-225km2", "properties": {"kind": "district"},
         "geometry": {"type": "Polygon", "coordinates": [_square(-7500, -7500, 15000)]}},
        {"type": "Feature", "id": "route", "properties": {"segment_m": 1000, "buffer_m": 50},
         "geometry": {"type": "LineString", "coordinates": [_ll(2000, 2000), _ll(2800, 2600)]}},
        {"type": "Feature", "id": "point", "properties": {"radius_m": 100},
         "geometry": {"type": "Point", "coordinates": _ll(-3000, 1000)}},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return path


def best_us(fn, n: int, repeat: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reach_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zones", type=Path, help="a zones file (default: the synthetic city)")
    ap.add_argument("--id-property", help="ZONEWATCH_ZONE_ID_PROPERTY for --zones (e.g. adcode)")
    ap.add_argument("--units", type=int, default=5000)
    ap.add_argument("--n", type=int, default=50, help="evaluations per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    rnd = random.Random(a.seed)
    if a.zones:
        zones = load_zones(a.zones, id_property=a.id_property)
        minx = min(z.geometry.bounds[0] for z in zones)
        miny = min(z.geometry.bounds[1] for z in zones)
        maxx = max(z.geometry.bounds[2] for z in zones)
        maxy = max(z.geometry.bounds[3] for z in zones)
        where = f"{a.zones} (units over its bounding box {maxx - minx:.2f}° x {maxy - miny:.2f}°)"
    else:
        with tempfile.TemporaryDirectory() as d:
            zones = load_zones(synthetic_zones_file(Path(d) / "city.geojson"))
        (minx, miny), (maxx, maxy) = _ll(-15000, -15000), _ll(15000, 15000)
        where = "synthetic city 30 km x 30 km"
    units = UnitIndex()
    for i in range(a.units):
        units.put(f"u{i}", rnd.uniform(miny, maxy), rnd.uniform(minx, maxx), rnd.choices(KINDS, KIND_W)[0])
    print(f"{where}, {a.units} available units; best of {a.repeat} x {a.n} evaluations")
    print(f"{'zone':<24} {'km²':>8} {'res':>3} {'cells':>5} {'units near':>10} {'build ms':>8} "
          f"{'reach µs':>9} {'3 min':>6} {'5 min':>6}")
    for z in zones:
        t = time.perf_counter()
        zc = zone_cells(z)
        build_ms = (time.perf_counter() - t) * 1000
        us = best_us(lambda zc=zc: reach(zc, units), a.n, a.repeat)
        r3, r5 = reach(zc, units)
        print(f"{z.zone_id:<24} {zc.total / 1e6:>8.2f} {zc.resolution:>3} {len(zc):>5} "
              f"{len(units.gather(zc.keys)):>10} {build_ms:>8.1f} {us:>9.0f} {r3:>6.2f} {r5:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
