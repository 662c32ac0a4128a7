"""Stage 1 (`Router.route` and the zone-events encoding) stage by stage, in CPU µs per event.

    .venv/bin/python -m bench.ingest_stages                     # 4 partitions, 150,000 events
    .venv/bin/python -m bench.ingest_stages --events 300000 --profile

The bench's city stream (bench/pipeline_cost.py: CityStream over the `city` zones, batches of 500,
the first --warmup events routed once and not measured) through the router alone, each stage timed
on its own over the same batches, the smaller of two rounds: decode + validate (the columnar
`streams.columns.decode_topic` per topic, or on a checkout before it `decode_and_validate` per
message), cell + zones (`ZoneIndex.lookup_cells` over the batch's points, or `lookup_cell` per
point), the whole `route`, and `zone_events`; the record building is the route less the first
two. --profile adds cProfile's top functions of `route` (its overhead weighs on per-call code).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

from contract import events
from contract.errors import Rejected
from contract.settings import Settings
from contract.zones import load_zones
from streams.reach import zone_cells
from streams.routing import Router
from streams.zone_index import ZoneIndex

from .city import CityStream, zone_set
from .pipeline_cost import T0

WALL = 1_700_000_000_000


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--events", type=int, default=150_000)
    ap.add_argument("--warmup", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args(argv)
    zones_file, what, bbox = zone_set("city", Path(tempfile.mkdtemp(prefix="zw-stages-")))
    s = Settings(zones=zones_file, partitions=a.partitions, future_tolerance_ms=10 ** 13)
    zones = load_zones(zones_file)
    index = ZoneIndex(zones, s.h3_resolution)
    cells = {z.zone_id: zone_cells(z) for z in zones}
    msgs = CityStream(bbox, seed=11).messages(s, a.events, T0)
    batches = [msgs[i:i + a.batch] for i in range(0, len(msgs), a.batch)]
    warm, measured = batches[:a.warmup // a.batch], batches[a.warmup // a.batch:]
    n = sum(map(len, measured))
    router = Router(s, index, cells)
    for b in warm + measured:   # the homes' caches and the units' memory as in a running worker
        router.route(b, WALL)
    columnar = hasattr(ZoneIndex, "lookup_cells")
    max_ts = WALL + s.future_tolerance_ms
    base = router.base_topic

    def decode(b):
        if not columnar:
            out = []
            for m in b:
                try:
                    out.append(events.decode_and_validate(base[m.topic], m.value, max_ts))
                except Rejected as exc:
                    out.append(exc.reason)
            return out
        from streams.columns import decode_topic
        rows: dict[str, list[int]] = {}
        for i, m in enumerate(b):
            rows.setdefault(base[m.topic], []).append(i)
        return [decode_topic(t, [b[i].value for i in r], max_ts) for t, r in rows.items()]

    points = []
    for b in measured:
        evs = []
        for m in b:
            try:
                evs.append(events.decode_and_validate(base[m.topic], m.value, max_ts))
            except Rejected:
                pass
        points.append(np.array([(e["lat"], e["lon"]) for e in evs], dtype=np.float64))

    def lookup(p):
        if columnar:
            return index.lookup_cells(p[:, 0], p[:, 1])
        return [index.lookup_cell(lat, lon) for lat, lon in p.tolist()]

    def routed():
        enc = 0.0
        wall = WALL
        t0 = time.process_time()
        for b in measured:
            wall += 1
            prev = router.clock
            out = router.route(b, wall)[0]
            t1 = time.process_time()
            router.zone_events(out, prev, wall)
            enc += time.process_time() - t1
        return time.process_time() - t0 - enc, enc

    best: dict[str, float] = {}
    for _round in range(2):
        for name, fn, args in (("decode + validate", decode, measured), ("cell + zones", lookup, points)):
            gc.collect()
            t0 = time.process_time()
            for x in args:
                fn(x)
            best[name] = min(best.get(name, 1e9), (time.process_time() - t0) / n * 1e6)
        gc.collect()
        route_s, enc_s = routed()
        best["route (all of it)"] = min(best.get("route (all of it)", 1e9), route_s / n * 1e6)
        best["zone_events encode"] = min(best.get("zone_events encode", 1e9), enc_s / n * 1e6)
    best["records (route less the two)"] = best["route (all of it)"] - best["decode + validate"] - best["cell + zones"]
    print(f"{'columnar' if columnar else 'per-record'} router, {what}, {a.partitions} partitions, {n} events "
          f"(batches of {a.batch}); CPU µs per event, the smaller of 2 rounds:")
    for k, v in best.items():
        print(f"  {k:<30} {v:6.2f}")
    if a.profile:
        pr = cProfile.Profile()
        pr.enable()
        for b in measured:
            router.route(b, WALL)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
