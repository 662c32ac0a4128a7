"""Breach latency (issue 22): wall time from the patrol.gps watermark passing a call's deadline to
the call's `breach` record in sla.events, with current feeds and with a GPS feed 20 s behind.

One worker on the `make up` stack (its own topic prefix, app id and Redis database; the contract's
default watermark bounds). A feeder sends, every second, a fix of each of --units units standing
~9 km from the calls (every patrol.gps partition gets some) with ts = now - lag, and a camera status
with ts = now (so the stream clock is current and the watermark `lag` behind it); calls with
ts = now - 290 s, in a zone no unit is near, are due to breach 10 s of event time later.

The watermark passes a deadline D once every patrol.gps partition has a fix with ts >= D: the
moment that happened is read off the feeder's own record of when it produced each fix (Kafka's
acknowledgement time of the first fix with ts >= D, latest over the partitions). The breach's
time is its sla.events record's Kafka timestamp (set when the worker produced it).

    python -m bench.breach_latency [--calls 60] [--lags 0,20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from bench.harness import free_port  # noqa: E402
from contract import topics  # noqa: E402
from contract.kafka_settings import ensure_topics, kafka_python_kwargs  # noqa: E402
from contract.response import BREACH_AFTER_MS  # noqa: E402
from contract.settings import Settings  # noqa: E402
from deploy.procs import Child  # noqa: E402
from gateway import promtext  # noqa: E402

CALL_AT = (36.0576, 103.8345)      # the start-core venue of the demo zones
UNITS_AT = (36.0815, 103.7345)     # the finish venue, ~9 km away: no call is ever reached
CALL_BACKDATE_MS = BREACH_AFTER_MS - 10_000   # a call's deadline lies 10 s of event time ahead


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def measure(settings: Settings, lag_s: float, calls: int, units: int, settle_s: float = 15.0) -> dict:
    """Against a running worker of `settings`: feed, call, and time every breach (seconds from the
    watermark passing its deadline to its sla.events record; negative would mean a breach before
    the feed had passed the deadline). `latencies` holds one value per measured call."""
    kw = kafka_python_kwargs(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=0, **kw)
    stop = threading.Event()
    acks: dict[int, list[tuple[int, float]]] = {}   # gps partition -> [(fix ts, acknowledged at)]
    lock = threading.Lock()
    lag_ms = int(lag_s * 1000)
    tag = settings.app_id

    def acked(ts: int):
        def cb(md):
            with lock:
                acks.setdefault(md.partition, []).append((ts, time.time()))
        return cb

    def feed() -> None:
        gps, status = settings.topic(topics.GPS), settings.topic(topics.STATUS)
        while not stop.is_set():
            now = int(time.time() * 1000)
            for i in range(units):
                fix = {"unit_id": f"u{i:03d}", "ts": now - lag_ms, "lat": UNITS_AT[0] + i * 1e-4,
                       "lon": UNITS_AT[1], "kind": "car"}
                producer.send(gps, orjson.dumps(fix), key=fix["unit_id"].encode()).add_callback(acked(now - lag_ms))
            producer.send(status, orjson.dumps({"camera_id": "cam-1", "ts": now, "lat": UNITS_AT[0],
                                                "lon": UNITS_AT[1], "online": True}), key=b"cam-1")
            producer.flush()
            stop.wait(1.0)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        time.sleep(settle_s)   # the feeds are live and the worker has its partitions
        due: dict[str, int] = {}
        for k in range(calls):
            now = int(time.time() * 1000)
            call = {"call_id": f"{tag}-c{k}", "ts": now - CALL_BACKDATE_MS, "lat": CALL_AT[0] + (k % 7) * 1e-5,
                    "lon": CALL_AT[1], "category": "theft", "priority": 2}
            producer.send(settings.topic(topics.CALLS), orjson.dumps(call), key=call["call_id"].encode())
            due[call["call_id"]] = call["ts"] + BREACH_AFTER_MS
            time.sleep(0.5)
        producer.flush()
        consumer = KafkaConsumer(settings.topic(topics.SLA), bootstrap_servers=settings.kafka,
                                 auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                 isolation_level="read_committed", **kw)
        breach_at: dict[str, float] = {}
        others: list[dict] = []
        until = time.monotonic() + 60 + lag_s * 2
        while len(breach_at) < len(due) and time.monotonic() < until:
            for recs in consumer.poll(timeout_ms=500).values():
                for r in recs:
                    ev = orjson.loads(r.value)
                    if ev["call_id"] not in due:
                        continue
                    if ev["type"] == "breach":
                        breach_at[ev["call_id"]] = r.timestamp / 1000.0
                    elif ev["type"] == "arrived":
                        others.append(ev)
        consumer.close()
    finally:
        stop.set()
        feeder.join(5)
        producer.close(5)
    with lock:
        by_partition = {p: sorted(v) for p, v in acks.items()}
    latencies = []
    for cid, d in due.items():
        if cid not in breach_at:
            continue
        # the feed runs on until every breach is read: a partition that never had a fix past the
        # deadline means the breach came before the watermark could pass it (-inf: early)
        passed = [min((at for ts, at in v if ts >= d), default=math.inf) for v in by_partition.values()]
        latencies.append(breach_at[cid] - max(passed, default=math.inf))
    return {"lag_s": lag_s, "calls": len(due), "breaches": len(breach_at), "arrivals": len(others),
            "gps_partitions": len(by_partition), "measured": len(latencies), "latencies": latencies,
            "p50_s": quantile(latencies, 0.5), "p99_s": quantile(latencies, 0.99),
            "max_s": max(latencies, default=float("nan")), "min_s": min(latencies, default=float("nan"))}


def run_once(settings: Settings, env: dict, lag_s: float, calls: int, units: int, log_dir: Path) -> dict:
    """One worker process on the stack, one feed lag."""
    tag = env["ZONEWATCH_APP_ID"]
    port = free_port()
    worker = Child("worker", [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port)],
                   log_dir / f"breach-worker-{tag}.log", env=env, cwd=REPO, append=False).start()
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                promtext.fetch(f"http://127.0.0.1:{port}/metrics")
                break
            except OSError:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start (log {log_dir}/breach-worker-{tag}.log)") from None
                time.sleep(0.5)
        return measure(settings, lag_s, calls, units)
    finally:
        worker.stop(grace=20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--units", type=int, default=24)
    ap.add_argument("--lags", default="0,20", help="GPS feed lags to run, seconds (comma-separated)")
    ap.add_argument("--redis-db", type=int, default=11)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "breach_latency.json")
    args = ap.parse_args(argv)
    base = Settings.from_env()
    log_dir = REPO / "bench" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for lag in (float(x) for x in args.lags.split(",")):
        tag = f"breach-{uuid.uuid4().hex[:8]}"
        redis_url = base.redis.rsplit("/", 1)[0] + f"/{args.redis_db}"
        env = dict(os.environ, ZONEWATCH_TOPIC_PREFIX=f"{tag}.", ZONEWATCH_APP_ID=tag, ZONEWATCH_REDIS=redis_url,
                   ZONEWATCH_DATADIR=str(REPO / ".stack" / "breach" / tag))
        settings = base.with_(topic_prefix=f"{tag}.", app_id=tag, redis=redis_url)
        ensure_topics(settings)
        try:
            row = run_once(settings, env, lag, args.calls, args.units, log_dir)
        finally:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=settings.kafka, **kafka_python_kwargs(settings))
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(tag)])
            admin.close()
        row.pop("latencies")
        rows.append(row)
        print(f"GPS {lag:>4.0f} s behind: {row['breaches']}/{row['calls']} breaches, {row['measured']} measured; "
              f"latency p50 {row['p50_s']:.3f} s, p99 {row['p99_s']:.3f} s, max {row['max_s']:.3f} s "
              f"(min {row['min_s']:.3f} s)", flush=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
