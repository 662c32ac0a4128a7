"""CPU of a takeover's look-back rebuild (streams/recovery.py), in-process, without Kafka.

    .venv/bin/python -m bench.lookback_cost                          # 1,000,000 events, 4 partitions
    .venv/bin/python -m bench.lookback_cost --events 400000 --partitions 7

A district-like stream (bench/city.py: 5,000 walking units, 2,000 cameras, 740 ev/s of event time)
goes through the worker's pure flow (streams/testing.Pipeline) while each partition's zone-events
messages are kept as its log. Then, for every partition, a snapshot is taken at the end of the log
and a takeover's look-back is rebuilt from it with the real steps (recovery.from_snapshot and
rebuild_from over the log between the snapshot's look-back offset and its offset), once with the
cyclic garbage collector paused as a takeover runs it and once with it on. Printed: process CPU
seconds for all partitions (a worker taking them all rebuilds them on one core), the messages and
held fixes rebuilt. The machine is shared: run it twice and take the smaller figures.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from contract.settings import Settings
from contract.zones import load_zones
from streams import recovery
from streams.testing import Pipeline

from .city import CityStream, zone_set

T0 = 1_686_441_600_000   # 2023-06-11 08:00 +08:00


def build(partitions: int, events: int) -> Pipeline:
    """The pipeline, with each partition's zone-events log, after `events` events."""
    out_dir = Path(tempfile.mkdtemp(prefix="zw-lookback-"))
    zones_file, _what, bbox = zone_set("city", out_dir)
    s = Settings(zones=zones_file, partitions=partitions, future_tolerance_ms=10 ** 13)
    pipe = Pipeline(s, zones=load_zones(zones_file), reach_cells=True, keep_log=True)
    msgs = CityStream(bbox, seed=11).messages(s, events, T0)
    pipe.feed(msgs, batch=500)
    return pipe


def rebuild(pipe: Pipeline, paused: bool) -> tuple[float, int, int]:
    """(CPU seconds, look-back messages, held fixes) of rebuilding every partition's look-back."""
    stage, logs = pipe.stage, pipe.log
    assert logs is not None
    snaps = {p: recovery.parse_snapshot(p, dict(stage.snapshot(p)))[0] for p in logs}
    gc.collect()
    messages = fixes = 0
    t0 = time.process_time()
    if paused:
        gc.disable()
    try:
        for p, log in logs.items():
            held, start, lookback = recovery.from_snapshot(stage, p, snaps[p], {}, first=0)
            for offset in range(lookback, start):
                recovery.rebuild_from(stage, held, offset, log[offset], start, count_from=start)
            messages += start - lookback
            fixes += sum(len(lst) for by_cell in held.state.incidents.fixes.values() for lst in by_cell.values())
    finally:
        gc.enable()
    return time.process_time() - t0, messages, fixes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--events", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    t = time.monotonic()
    pipe = build(a.partitions, a.events)
    assert pipe.log is not None
    print(f"{a.events:,} events through the pure flow in {time.monotonic() - t:.0f} s; "
          f"{sum(len(v) for v in pipe.log.values()):,} zone-events messages over {a.partitions} partitions",
          flush=True)
    for paused in (True, False):
        cpu, messages, fixes = rebuild(pipe, paused)
        print(f"look-back rebuild, collector {'paused' if paused else 'on'}: {cpu:.2f} s CPU for {messages:,} "
              f"messages, {fixes:,} held fixes ({cpu / max(1, messages) * 1e3:.2f} ms a message)", flush=True)


if __name__ == "__main__":
    main()
