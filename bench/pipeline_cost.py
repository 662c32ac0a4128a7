"""CPU per input event of the worker's pure flow (streams/testing.Pipeline), in-process.

    .venv/bin/python -m bench.pipeline_cost                      # 1 and 7 partitions, 700,000 events
    .venv/bin/python -m bench.pipeline_cost --partitions 7 --events 300000
    .venv/bin/python -m bench.pipeline_cost --partitions 7 --writes   # zone writes per event

A district-like stream (bench/city.py `CityStream`: 5,000 walking units, 2,000 cameras, 740 ev/s,
85 % fixes, 0.5 % calls) over the `city` zone set, read in ts order in batches of 500, through the
same pieces as the worker (router, zone-events encoded and decoded, partition states, incidents
stage, the arrival loop) without Kafka or Redis. The first --warmup events fill the held fixes
(grace + staleness) and are not measured; the figure is process CPU time over the rest divided by
their number, and its ingest part (`Router.route` and the zone-events encoding) apart from the
rest (decoding, the partition states, the arrival loop). Also printed: zone-events records per input
fix and per call, bytes per input event, and the incidents stage's held fixes and their memory
(sys.getsizeof over its look-back structures) at the end, with the largest partition's share against
the mean (a partition that runs hot). The machine is shared: run it twice and take the smaller figure,
or alternate two checkouts and compare ratios.

`--writes` measures zone documents written per input event instead: the measured events are fed
in slices of --flush-ms of event time (at 740 ev/s the stream's event time is its wall time), and
after each slice every partition's changed documents are taken as a flush does when the clock
moved (`changed_documents(all_zones=True)`); the 10 s heartbeat's clock-only rewrites are left out
(they are the same whatever the figures do: zones / 10 s).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import zlib
from pathlib import Path

from contract import topics
from contract.settings import Settings
from contract.zones import load_zones
from streams import records, routing
from streams.testing import Msg, Pipeline

from .city import CityStream, zone_set

T0 = 1_686_441_600_000   # 2023-06-11 08:00 +08:00


def _deep_size(obj, seen: set) -> int:
    """Bytes of the containers, tuples, numbers and strings reachable from obj (shared ones once)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            size += _deep_size(k, seen) + _deep_size(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            size += _deep_size(v, seen)
    return size


def held_bytes(pipe: Pipeline) -> tuple[int, int, float]:
    """(held fixes, bytes of the structures that hold them) over every partition, and the most a
    partition holds against the mean."""
    size = 0
    per_part = []
    seen: set = set()
    for st in pipe.states.values():
        inc = st.incidents
        for attr in ("fixes", "fixes_by_unit"):
            obj = getattr(inc, attr, None)
            if obj is not None:
                size += _deep_size(obj, seen)
        per_part.append(sum(len(lst) for by_cell in inc.fixes.values() for lst in by_cell.values()))
    n = sum(per_part)
    return n, size, max(per_part) * len(per_part) / max(1, n)


class _Timed:
    """A callable that adds its process CPU time to `self.cpu`."""

    def __init__(self, fn):
        self.fn, self.cpu = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - t0


def zone_writes(pipe: Pipeline, msgs: list, flush_events: int) -> tuple[int, float, float]:
    """(zone documents written, CPU s feeding, CPU s taking the documents) over msgs, flushed
    every flush_events events (see the module doc)."""
    written = 0
    feed_cpu = flush_cpu = 0.0
    for i in range(0, len(msgs), flush_events):
        t0 = time.process_time()
        pipe.feed(msgs[i:i + flush_events], batch=flush_events)
        t1 = time.process_time()
        for st in pipe.states.values():
            written += len(st.changed_documents(all_zones=True))
        flush_cpu += time.process_time() - t1
        feed_cpu += t1 - t0
    return written, feed_cpu, flush_cpu


def run(partitions: int, events: int, warmup: int, batch: int, flush_ms: int | None = None) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix="zw-cost-"))
    zones_file, _what, bbox = zone_set("city", out_dir)
    s = Settings(zones=zones_file, partitions=partitions, future_tolerance_ms=10 ** 13)
    zones = load_zones(zones_file)
    pipe = Pipeline(s, zones=zones, reach_cells=True)
    stream = CityStream(bbox, seed=11)
    msgs = [Msg(s.topic(t), zlib.crc32(k) % 4, i, k, v, ts)
            for i, (t, k, v, ts) in enumerate(stream.events(events, T0))]
    n_fix = sum(1 for m in msgs if m.topic == s.topic(topics.GPS))
    n_call = sum(1 for m in msgs if m.topic == s.topic(topics.CALLS))
    # count zone-events records by kind (what the router makes), on a copy of the router's work
    counted = {}
    orig = records.encode_split

    def counting(evs, *a, **kw):
        for r in evs:
            counted[type(r).__name__] = counted.get(type(r).__name__, 0) + 1
        payloads = orig(evs, *a, **kw)
        counted["bytes"] = counted.get("bytes", 0) + sum(map(len, payloads))
        return payloads

    pipe.feed(msgs[:warmup], batch=batch)
    gc.collect()
    if flush_ms is not None:
        measured = msgs[warmup:]
        span_s = max(1, measured[-1].timestamp - measured[0].timestamp) / 1000
        flush_events = max(1, round(len(measured) / span_s * flush_ms / 1000))
        for st in pipe.states.values():   # the warm-up's documents are written already
            st.changed_documents(all_zones=True)
        written, feed_cpu, flush_cpu = zone_writes(pipe, measured, flush_events)
        return {"partitions": partitions, "events": len(measured), "flush_events": flush_events,
                "zone_writes": written, "writes_per_event": written / len(measured),
                "writes_per_s": written / span_s, "feed_us": feed_cpu / len(measured) * 1e6,
                "flush_us": flush_cpu / len(measured) * 1e6}
    # the router makes the zone-events messages (Router.zone_events) with its own name for it
    routing.encode_split = counting
    # the ingest's part: routing and encoding (the counting wrapper is in both runs alike)
    route, zone_events = _Timed(pipe.router.route), _Timed(pipe.router.zone_events)
    pipe.router.route, pipe.router.zone_events = route, zone_events   # type: ignore[method-assign]
    try:
        t0 = time.process_time()
        pipe.feed(msgs[warmup:], batch=batch)
        cpu = time.process_time() - t0
    finally:
        routing.encode_split = orig
    measured = msgs[warmup:]
    m_fix = sum(1 for m in measured if m.topic == s.topic(topics.GPS))
    held, size, hottest = held_bytes(pipe)
    ingest = route.cpu + zone_events.cpu
    return {"partitions": partitions, "events": len(measured), "cpu_s": cpu,
            "us_per_event": cpu / len(measured) * 1e6,
            "ingest_us": ingest / len(measured) * 1e6, "state_us": (cpu - ingest) / len(measured) * 1e6,
            "hottest": hottest,
            "incident_fix_per_fix": counted.get("IncidentFix", 0) / max(1, m_fix),
            "zone_fix_per_fix": counted.get("ZoneFix", 0) / max(1, m_fix),
            "bytes_per_event": counted.get("bytes", 0) / len(measured),
            "fixes": n_fix, "calls": n_call, "held_fixes": held, "held_bytes": size,
            "enriched": len(pipe.enriched)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, nargs="*", default=[1, 7])
    ap.add_argument("--events", type=int, default=700_000)
    ap.add_argument("--warmup", type=int, default=550_000,
                    help="events before the measurement (≥ 12.5 min of event time at 740 ev/s)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--writes", action="store_true", help="measure zone writes per event (module doc)")
    ap.add_argument("--flush-ms", type=int, default=250, help="with --writes: event time between flushes")
    a = ap.parse_args(argv)
    for p in a.partitions:
        if a.writes:
            r = run(p, a.events, a.warmup, a.batch, flush_ms=a.flush_ms)
            print(f"partitions={r['partitions']}: {r['writes_per_event']:.4f} zone writes per event "
                  f"({r['zone_writes']} over {r['events']} events, {r['writes_per_s']:.1f} per s of event time; "
                  f"a flush every {r['flush_events']} events); CPU per event: feeding {r['feed_us']:.1f} µs, "
                  f"taking the documents {r['flush_us']:.1f} µs", flush=True)
            continue
        r = run(p, a.events, a.warmup, a.batch)
        print(f"partitions={r['partitions']}: {r['us_per_event']:.1f} µs CPU per event over {r['events']} events "
              f"({r['cpu_s']:.1f} s; ingest {r['ingest_us']:.1f}, state {r['state_us']:.1f}); zone-events records "
              f"per fix: IncidentFix {r['incident_fix_per_fix']:.2f}, ZoneFix {r['zone_fix_per_fix']:.2f} "
              f"({r['bytes_per_event']:.0f} zone-events bytes per event); held "
              f"fixes {r['held_fixes']} in {r['held_bytes'] / 1e6:.1f} MB "
              f"({r['held_bytes'] / max(1, r['held_fixes']):.0f} B each; the largest partition "
              f"{r['hottest']:.2f}x the mean); enriched records {r['enriched']}", flush=True)


if __name__ == "__main__":
    main()
