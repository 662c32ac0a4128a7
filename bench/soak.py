"""`make soak DURATION=1800`: a city-scale live load for DURATION seconds; reports the worker's
memory (RSS), e2e latency p50/p99 and the input topics' consumer lag per window over time.

The load is the bundled simulator at the scale of a district on an event day: 5,200 patrol units
pinging every 5-10 s, 6,000 cameras raising 1,200 alerts/min, 10 calls/min (about 750 events/s
of event time), played `--speed` times faster than real time (default 5: ~3,700 events/s). It
runs on the `make up` stack (ZONEWATCH_KAFKA / ZONEWATCH_REDIS) with a topic prefix and app id
of its own, and deletes its topics at the end.

    python -m bench.soak --duration 1800 [--window 300] [--units 5200] [--split] ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import free_port  # noqa: E402
from contract import metrics  # noqa: E402
from contract.kafka_settings import ensure_topics  # noqa: E402
from contract.settings import Settings  # noqa: E402
from deploy.procs import Child  # noqa: E402
from gateway import promtext  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_quantiles(rows, prev_rows) -> dict[str, tuple[float, float]]:
    """{stage: (p50 ms, p99 ms)} of zonewatch_stage_seconds between two scrapes."""
    out = {}
    for stage in metrics.STAGES:
        d = (promtext.Histogram.from_rows(rows, metrics.STAGE, {"stage": stage})
             - promtext.Histogram.from_rows(prev_rows, metrics.STAGE, {"stage": stage}))
        if d.count:
            out[stage] = ((d.quantile(0.5) or 0) * 1000, (d.quantile(0.99) or 0) * 1000)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", 1800)))
    ap.add_argument("--window", type=float, default=float(os.environ.get("WINDOW", 600)),
                    help="report window, seconds (default 600: p99 per 10 minutes)")
    ap.add_argument("--speed", type=float, default=float(os.environ.get("SPEED", 5)),
                    help="simulated seconds per second (default 5: five times a district's load, "
                         "ten hours of event time in two hours)")
    ap.add_argument("--sample", type=float, default=10.0, help="sampling period, seconds")
    ap.add_argument("--units", type=int, default=5200)
    ap.add_argument("--cameras", type=int, default=6000)
    ap.add_argument("--alerts-per-min", type=float, default=1200.0)
    ap.add_argument("--calls-per-min", type=float, default=10.0)
    ap.add_argument("--redis-db", type=int, default=10)
    ap.add_argument("--split", action="store_true",
                    help="the worker as two processes, `--role ingest` and `--role state` (metrics summed)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = ap.parse_args(argv)

    tag = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    redis_url = base.redis.rsplit("/", 1)[0] + f"/{args.redis_db}"
    env = dict(os.environ, ZONEWATCH_TOPIC_PREFIX=f"soak-{tag}.", ZONEWATCH_APP_ID=f"soak-{tag}",
               ZONEWATCH_REDIS=redis_url, ZONEWATCH_DATADIR=str(REPO / ".stack" / "soak" / tag))
    settings = base.with_(topic_prefix=env["ZONEWATCH_TOPIC_PREFIX"], app_id=env["ZONEWATCH_APP_ID"],
                          redis=redis_url)
    ensure_topics(settings)
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_url)
    r.flushdb()
    logs = REPO / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    workers: dict[str, tuple[Child, int]] = {}   # role -> (process, metrics port)
    for role in (("ingest", "state") if args.split else ("all",)):
        port = free_port()
        workers[role] = (Child(f"worker-{role}", [py, "-m", "zonewatch.cli", "worker", "--web-port", str(port),
                                                   "--role", role],
                               logs / f"soak-worker-{role}-{tag}.log", env=env, cwd=REPO, append=False).start(), port)
    worker = workers.get("state", workers.get("all"))[0]   # the one holding the state (its RSS)

    def scrape() -> list:
        return [row for _c, p in workers.values() for row in promtext.parse(promtext.fetch(f"http://127.0.0.1:{p}/metrics"))]

    def worker_cpu() -> dict[str, float]:
        return {f"worker-{role}" if args.split else "worker": cpu_seconds(c.pid) for role, (c, _p) in workers.items()}

    sim = None
    rows = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape()
                break
            except OSError:
                if any(c.poll() is not None for c, _p in workers.values()) or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start (log {logs}/soak-worker-{tag}.log)") from None
                time.sleep(0.5)
        sim = Child("simulator", [py, "-m", "zonewatch.cli", "simulate", "--speed", str(args.speed), "--quiet",
                                  "--units", str(args.units), "--cameras", str(args.cameras),
                                  "--alerts-per-min", str(args.alerts_per_min),
                                  "--calls-per-min", str(args.calls_per_min),
                                  "--duration", str(args.duration * args.speed)],
                    logs / f"soak-sim-{tag}.log", env=env, cwd=REPO, append=False).start()
        t0 = time.monotonic()
        win_start = t0
        rows_prom = scrape()
        h_prev = promtext.Histogram.from_rows(rows_prom, metrics.E2E_LATENCY)
        n_prev = promtext.counter_sum(rows_prom, metrics.EVENTS)
        rows_prev = rows_prom
        cpu_prev = worker_cpu() | {"simulator": cpu_seconds(sim.pid)}
        rss_start = rss_mib(worker.pid)
        rss_max = rss_start
        print(f"soak {tag}: {args.duration:.0f} s, window {args.window:.0f} s; worker pid {worker.pid}, "
              f"RSS at start {rss_start:.1f} MiB", flush=True)
        print(f"{'t (min)':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'lag msgs':>9} {'RSS MiB':>8} "
              f"{'max RSS':>8}", flush=True)
        while time.monotonic() - t0 < args.duration:
            time.sleep(args.sample)
            for c, _p in workers.values():
                if c.poll() is not None:
                    raise SystemExit(f"{c.name} exited with {c.returncode}")
            rss = rss_mib(worker.pid)
            rss_max = max(rss_max, rss)
            now = time.monotonic()
            if now - win_start >= args.window or now - t0 >= args.duration:
                rows_prom = scrape()
                h = promtext.Histogram.from_rows(rows_prom, metrics.E2E_LATENCY)
                n = promtext.counter_sum(rows_prom, metrics.EVENTS)
                d = h - h_prev
                cpu = worker_cpu() | {"simulator": cpu_seconds(sim.pid)}
                pauses = promtext.counter_sum(rows_prom, metrics.FETCH_PAUSES, by="reason")
                pauses_prev = promtext.counter_sum(rows_prev, metrics.FETCH_PAUSES, by="reason")
                row = {"t_min": round((now - t0) / 60, 1), "events_per_s": (n - n_prev) / (now - win_start),
                       "p50_ms": (d.quantile(0.5) or 0) * 1000, "p99_ms": (d.quantile(0.99) or 0) * 1000,
                       "consumer_lag": promtext.counter_sum(rows_prom, metrics.CONSUMER_LAG),
                       "rss_mib": rss, "rss_max_mib": rss_max,
                       # where the time goes, and whether the worker waits or works
                       "stages_ms": stage_quantiles(rows_prom, rows_prev),
                       "fetch_pauses": {k: v - pauses_prev.get(k, 0.0) for k, v in pauses.items()},
                       "cpu_percent": {k: 100.0 * (cpu[k] - cpu_prev[k]) / (now - win_start) for k in cpu}}
                rows.append(row)
                print(f"{row['t_min']:>8} {row['events_per_s']:>9.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                      f"{row['consumer_lag']:>9.0f} {rss:>8.1f} {rss_max:>8.1f}", flush=True)
                print("         stages p50/p99 ms: " + ", ".join(
                    f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in row["stages_ms"].items())
                      + "; fetch pauses " + ", ".join(f"{k} {v:.0f}" for k, v in row["fetch_pauses"].items())
                      + "; CPU % " + ", ".join(f"{k} {v:.0f}" for k, v in row["cpu_percent"].items()), flush=True)
                h_prev, n_prev, win_start, rows_prev, cpu_prev = h, n, now, rows_prom, cpu
        rss_end = rss_mib(worker.pid)
        result = {"tag": tag, "duration_s": args.duration, "load": vars(args) | {"out": str(args.out)},
                  "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rss_max_mib": rss_max, "windows": rows}
        args.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"RSS start {rss_start:.1f} MiB, end {rss_end:.1f} MiB, max {rss_max:.1f} MiB; results {args.out}")
        return 0
    finally:
        if sim is not None:
            sim.stop(grace=30)
        for c, _p in workers.values():
            c.stop(grace=30)
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"soak-{tag}")])
            admin.close()
        except Exception as exc:  # cleanup is best effort; say so
            print(f"cleanup: could not delete soak topics: {exc}")
        r.flushdb()


if __name__ == "__main__":
    sys.exit(main())
