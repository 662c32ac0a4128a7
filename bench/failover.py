"""`make failover`: how long the wall stays stale when a worker dies, for days of history.

For each backlog (default 0.2 M, 1 M and 5 M events of a district-like stream: walking patrol
units, fixed cameras, calls, at 740 events/s of event time on the city zone set), one fresh
deployment on the `make up` stack:

1. produce the backlog; start worker A; wait until it has counted every event and written a
   snapshot of every partition;
2. kill -9 worker A;
3. start the replacement worker B (same ZONEWATCH_INSTANCE_ID: static membership, as a
   Kubernetes StatefulSet gives it) and, at the same moment, publish one new call;
4. report the seconds from B's start until that call is on the wall (in `zw:incidents` and in
   its zone's `today.calls`), and B's own takeover figures from its log.

`--dynamic` also measures a replacement without static membership (it waits for the dead
member's session timeout, 6 s by default). Nothing is asserted: figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from contract import keys, metrics, topics
from contract.zones import load_zones
from deploy.procs import Child
from gateway import promtext

from .city import CityStream, zone_set
from .harness import REPO, STATE_DIR, Deployment, free_port, wait_until

RATE = 740.0   # district load: events per second of event time


def log(msg: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def produce(dep: Deployment, stream: CityStream, n: int, t0: int) -> int:
    """Publish n events from t0 on; returns the last ts."""
    p = AIOKafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=20,
                         max_batch_size=1 << 20, enable_idempotence=True)
    await p.start()
    last = t0
    try:
        pending = []
        for topic, key, value, ts in stream.events(n, t0):
            pending.append(await p.send(dep.settings.topic(topic), value, key=key))
            last = ts
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await p.stop()
    return last


def counted(port: int) -> float:
    try:
        rows = promtext.parse(promtext.fetch(f"http://127.0.0.1:{port}/metrics", timeout=2.0))
    except OSError:
        return -1.0
    return promtext.counter_sum(rows, metrics.EVENTS)


def start_worker(dep: Deployment, instance: str | None, name: str, port: int | None = None) -> tuple[Child, int, Path]:
    port = port or free_port()
    logf = STATE_DIR / f"failover-{dep.settings.app_id}-{name}.log"
    env = dict(dep.env)
    if instance:
        env["ZONEWATCH_INSTANCE_ID"] = instance
    child = Child(name, [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port),
                         "--log-level", "info"], logf, env=env, cwd=REPO, append=False).start()
    return child, port, logf


def one_run(stack: dict, zones: Path, bbox, n: int, *, static: bool, partitions: int, seed: int) -> dict:
    tag = f"fo{n // 1000}k-{'s' if static else 'd'}-{os.getpid()}"
    dep = Deployment(stack, zones, partitions=partitions, name=tag)
    stream = CityStream(bbox, rate=RATE, seed=seed, tag=tag)
    now = int(time.time() * 1000)
    t0 = now - int(n / RATE * 1000) - 60_000
    started = time.monotonic()
    last_ts = asyncio.run(produce(dep, stream, n, t0))
    log(f"{n:,} events produced in {time.monotonic() - started:.0f} s (event time {(last_ts - t0) / 3.6e6:.2f} h)")
    a, port_a, log_a = start_worker(dep, "fo-worker" if static else None, "a")
    try:
        started = time.monotonic()
        wait_until(lambda: counted(port_a) >= n, timeout=3600, interval=2.0, what="worker A counted the backlog")
        took_a = time.monotonic() - started
        log(f"worker A counted {n:,} events in {took_a:.0f} s ({n / took_a:,.0f} events/s)")
        time.sleep(12)  # one snapshot interval (10 s) and then some: every partition has one
        a.stop(grace=0.0, sig=signal.SIGKILL)
        log("worker A killed (-9)")
        # the new call: in the city, after the backlog
        zone = load_zones(zones)[0]
        c = zone.geometry.representative_point()
        call_id = f"failover-{tag}"
        call = {"call_id": call_id, "ts": last_ts + 1000, "lat": c.y, "lon": c.x, "category": "violent",
                "priority": 1}
        t1 = time.monotonic()
        # a static member comes back at its own address (a StatefulSet pod keeps its name and port):
        # Faust's assignor hands a static member the assignment made for it, with the URL it had,
        # and a replacement at another URL stops its group coordinator (an AssertionError)
        b, port_b, log_b = start_worker(dep, "fo-worker" if static else None, "b", port_a if static else None)
        dep.produce(topics.CALLS, [call])
        try:
            def on_wall():
                if not dep.redis.hexists(keys.INCIDENTS, call_id):
                    return False
                doc = dep.redis.get(keys.zone(zone.zone_id))
                return doc is not None and orjson.loads(doc)["clock"] >= call["ts"]
            wait_until(on_wall, timeout=600, interval=0.05, what="the new call on the wall")
            seconds = time.monotonic() - t1
            took = [float(x) for x in re.findall(r"took over in ([0-9.]+)s", log_b.read_text())]
            looked = [int(x) for x in re.findall(r"look-back (\d+)", log_b.read_text())]
            replayed = [int(x) for x in re.findall(r"replayed (\d+) batches", log_b.read_text())]
            snap = dep.redis.info("memory").get("used_memory")
            result = {"events": n, "static_membership": static, "wall_seconds": round(seconds, 2),
                      "worker_a_events_per_s": round(n / took_a), "takeover_s_per_partition": took,
                      "lookback_batches": looked, "tail_batches": replayed, "redis_used_memory": snap}
            log(f"=> the new call was on the wall {seconds:.2f} s after the replacement started "
                f"(takeover per partition {took} s)")
            return result
        finally:
            b.stop(grace=10.0)
    finally:
        a.stop(grace=0.0, sig=signal.SIGKILL)
        dep.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default="200000,1000000,5000000", help="backlog sizes, comma-separated")
    ap.add_argument("--zones", default="city", choices=("city", "demo"))
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--dynamic", action="store_true", help="also a replacement without static membership")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    stack = {"kafka": os.environ.get("ZONEWATCH_KAFKA", "127.0.0.1:9092"),
             "redis": os.environ.get("ZONEWATCH_REDIS", "redis://127.0.0.1:6379/0")}
    zones, what, bbox = zone_set(a.zones, REPO / ".stack" / "failover")
    log(f"zones: {what}; {a.partitions} partitions; Kafka {stack['kafka']}")
    results = []
    for n in [int(x) for x in a.events.split(",")]:
        results.append(one_run(stack, zones, bbox, n, static=True, partitions=a.partitions, seed=a.seed))
        if a.dynamic:
            results.append(one_run(stack, zones, bbox, n, static=False, partitions=a.partitions, seed=a.seed))
    print("\n| backlog | membership | new call on the wall after | worker A throughput | takeover per partition |")
    print("|---:|---|---:|---:|---|")
    for r in results:
        takeover = ", ".join(f"{x:.2f}" for x in r["takeover_s_per_partition"])
        print(f"| {r['events']:,} | {'static' if r['static_membership'] else 'dynamic'} | {r['wall_seconds']:.2f} s "
              f"| {r['worker_a_events_per_s']:,} ev/s | {takeover} s |")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "failover.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
