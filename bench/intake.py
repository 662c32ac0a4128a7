"""Intake throughput (issue 14): records per second through `POST /ingest` into Kafka.

    .venv/bin/python -m bench.intake [--rounds 5] [--concurrency 4] [--kafka-port 19792 --redis-port 16879]

Starts (or finds running) the stack of deploy/stack.py in .stack/bench-intake, creates the topics
under a fresh prefix, starts one `zonewatch gateway` with an ingest token and POSTs bodies of
10,000 valid records: calls as NDJSON, fixes as a JSON array, alerts as NDJSON without a content
type (detected by shape). Each answer is a 200 only once Kafka (acks=all) holds every record, so
the time of a POST is the whole path: upload, parse, validation, produce, acknowledgement. First
one client at a time (`--rounds` bodies per format), then `--concurrency` clients at once. Reports
records/s (median over rounds), MB/s, the gateway's CPU (utime + stime from /proc) and the count in
Kafka (end offsets) against the count answered accepted. It asserts nothing; it stops what it
started. No worker runs: this measures the gateway's side only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson

from contract import topics
from contract.kafka_settings import ensure_topics
from contract.settings import Settings
from deploy import stack as stack_module

REPO = Path(__file__).resolve().parents[1]
TOKEN, INGEST = "bench-read-token-0123456789", "bench-ingest-token-0123456789"
N = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def bodies(round_no: int, now: int) -> dict[str, tuple[bytes, str | None]]:
    t0 = now - 60_000
    calls = [{"call_id": f"b{round_no}-c{i}", "ts": t0 + i, "lat": 34.70 + (i % 100) * 1e-4, "lon": 113.60,
              "category": "theft", "priority": 1 + i % 4, "caller": f"139{i:08d}", "lang": "zh",
              "text": "bench call"} for i in range(N)]
    # (unit_id, ts) unique over all rounds, and never in the future
    fixes = [{"unit_id": f"u{i % 500}", "ts": t0 - round_no * N - i, "lat": 34.70, "lon": 113.60 + (i % 90) * 1e-4,
              "status": "available", "kind": "car", "speed": 5.0, "heading": 90.0} for i in range(N)]
    alerts = [{"alert_id": f"b{round_no}-a{i}", "camera_id": f"cam{i % 300}", "ts": t0 + i, "lat": 34.71,
               "lon": 113.61, "type": "crowd_density", "confidence": 0.8} for i in range(N)]
    return {"calls": (b"".join(orjson.dumps(c) + b"\n" for c in calls), "application/x-ndjson"),
            "gps": (orjson.dumps(fixes), "application/json"),
            "alerts": (b"".join(orjson.dumps(a) + b"\n" for a in alerts), None)}


def post(url: str, source: str, body: bytes, ctype: str | None) -> float:
    headers = {"Authorization": f"Bearer {INGEST}"}
    if ctype:
        headers["Content-Type"] = ctype
    started = time.perf_counter()
    r = httpx.post(f"{url}/ingest/{source}", content=body, headers=headers, timeout=120)
    took = time.perf_counter() - started
    if r.status_code != 200 or r.json()["accepted"] != N:
        raise RuntimeError(f"{source}: {r.status_code} {r.text[:300]}")
    return took


def end_offsets(s: Settings) -> int:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=s.kafka)
    try:
        c.topics()   # loads the metadata: partitions_for_topic answers None before that
        tps = [TopicPartition(s.topic(t), p) for t in (topics.CALLS, topics.GPS, topics.ALERTS)
               for p in c.partitions_for_topic(s.topic(t))]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="10,000-record bodies per format, one at a time")
    ap.add_argument("--concurrency", type=int, default=4, help="clients at once in the second part")
    ap.add_argument("--kafka-port", type=int, default=int(os.environ.get("ZONEWATCH_TEST_KAFKA_PORT", 19792)))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("ZONEWATCH_TEST_REDIS_PORT", 16879)))
    args = ap.parse_args(argv)

    state = REPO / ".stack" / "bench-intake"
    was_up = stack_module.status(state)["kafka"]["running"]
    ends = stack_module.up(kafka_port=args.kafka_port, redis_port=args.redis_port, state_dir=state)
    tag = uuid.uuid4().hex[:8]
    s = Settings(kafka=ends["kafka"], redis=ends["redis"], topic_prefix=f"bi-{tag}.", app_id=f"bi-{tag}")
    ensure_topics(s, partitions=4)
    port = int(subprocess.check_output([sys.executable, "-c", "import socket; s=socket.socket(); "
                                        "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"]))
    env = dict(os.environ, ZONEWATCH_KAFKA=s.kafka, ZONEWATCH_REDIS=s.redis, ZONEWATCH_TOPIC_PREFIX=s.topic_prefix,
               ZONEWATCH_APP_ID=s.app_id, ZONEWATCH_GATEWAY_TOKENS=TOKEN, ZONEWATCH_INGEST_TOKENS=INGEST)
    log = open(state / f"gateway-{tag}.log", "w")
    gw = subprocess.Popen([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(port),
                           "--ingest-concurrency", str(max(4, args.concurrency))],
                          env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).json().get("intake") == "connected":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline or gw.poll() is not None:
                raise SystemExit("the gateway did not start (or its producer did not connect)")
            time.sleep(0.2)
        now = int(time.time() * 1000)
        post(url, "calls", *bodies(999, now)["calls"])      # warm-up: connections, metadata
        accepted = N
        rows = []
        for source in ("calls", "gps", "alerts"):
            times, size = [], 0
            c0 = cpu_s(gw.pid)
            for r in range(args.rounds):
                body, ctype = bodies(r, now)[source]
                size = len(body)
                times.append(post(url, source, body, ctype))
                accepted += N
            cpu = cpu_s(gw.pid) - c0
            med = statistics.median(times)
            fmt = {"calls": "NDJSON", "gps": "JSON array", "alerts": "NDJSON, no type"}[source]
            rows.append((f"{source} ({fmt})", 1, N / med, size / med / 1e6, med, max(times), cpu / sum(times)))
        # several clients at once: every format, concurrency bodies in flight
        jobs = [(src, *bodies(100 + i, now)[src]) for i in range(args.concurrency)
                for src in ("calls", "gps", "alerts")]
        took: list[float] = []
        failed: list[str] = []
        lock = threading.Lock()

        def client(mine):
            try:
                for src, body, ctype in mine:
                    t = post(url, src, body, ctype)
                    with lock:
                        took.append(t)
            except Exception as exc:   # a thread's exception would vanish: reported after the join
                failed.append(repr(exc))

        c0 = cpu_s(gw.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(jobs[i::args.concurrency],)) for i in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        cpu = cpu_s(gw.pid) - c0
        if failed:
            raise RuntimeError("; ".join(failed))
        accepted += len(took) * N
        rows.append((f"mixed, {args.concurrency} clients at once", args.concurrency, len(jobs) * N / wall,
                     sum(len(b) for _s, b, _c in jobs) / wall / 1e6, statistics.median(took), max(took), cpu / wall))
        in_kafka = end_offsets(s)
        print(f"\n### Intake throughput ({time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
              f"`python -m bench.intake --rounds {args.rounds} --concurrency {args.concurrency}`)\n")
        print("| bodies of 10,000 records | clients | records/s | MB/s | POST p50 | POST max | gateway CPU |")
        print("|---|---|---|---|---|---|---|")
        for name, conc, rps, mbs, p50, mx, cpu in rows:
            print(f"| {name} | {conc} | {rps:,.0f} | {mbs:.1f} | {p50:.2f} s | {mx:.2f} s | "
                  f"{cpu * 100:.0f} % of a core |")
        print(f"\nAnswered accepted: {accepted:,} records; in Kafka (end offsets of the three topics): {in_kafka:,}.")
    finally:
        gw.terminate()
        try:
            gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
            gw.wait()
        log.close()
        if not was_up:
            stack_module.down(state_dir=state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
