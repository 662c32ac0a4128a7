"""zonewatch benchmark: worker throughput against two baselines, and latency at a fixed load.

    make bench                                   # stack + `python -m bench.run`
    .venv/bin/python -m bench.run --events 20000 # a quick run while developing

One run, one Kafka, fresh topics (prefix `bench-<uuid8>.`):

 1. backlog: N mixed events (85 % patrol fixes, 14.5 % camera alerts, 0.5 % 110 calls over the
    zones' bounding box; a city's 110 calls are ~1 per second, so even 0.5 % of 5,000 ev/s is
    25 calls/s, and the old 5 % default was 250/s — `--mix 80,15,5` still measures that), ts
    increasing within the last hour, ~0.5 % duplicates, ~0.1 % invalid) produced with aiokafka
    (acks=all, idempotent, large batches) into the three input topics;
 2. three consumers of that whole backlog, each `--repeat` times (median reported):
    A  bare aiokafka consumer, `getmany` + `orjson.loads` of every value (no group, all partitions);
    B  a trivial stateless Faust agent (subprocess, own app id, value_serializer='raw');
    W  the zonewatch worker (subprocess, own app id, Redis db `--redis-db`), sustained events/s
       from /metrics between 5 % and 95 % of N counted (start-up and rebuild excluded);
 3. latency: fresh topics and a fresh, caught-up worker; a paced producer offers `--rate`
    events/s for `--seconds` with Kafka CreateTime = send time; e2e p50/p99 from the delta of
    `zonewatch_e2e_latency_seconds` over the phase (PromQL histogram_quantile interpolation).

Prints a table, writes bench/results/latest.json (plus the worker logs) and prints a Markdown
snippet for docs/BENCHMARKS.md. It reports; it asserts nothing about timings. Every process it
starts is stopped (also on Ctrl-C); bench topics and consumer groups are deleted unless --keep;
the Redis db it used is flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import faulthandler
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from contract import keys, metrics, topics
from contract.security import redacted_url
from contract.settings import Settings
from contract.topics import ensure_topics
from deploy.procs import Child
from gateway import promtext

from . import events as gen
from .harness import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
EVENTS_METRIC = metrics.EVENTS
E2E_METRIC = metrics.E2E_LATENCY
AGE_METRIC = metrics.EVENT_AGE
POLL_S = 0.1


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def redis_url_with_db(url: str, db: int) -> str:
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, f"/{db}", u.query, u.fragment))


def crossing(samples: list[tuple[float, float]], level: float) -> float | None:
    """Time at which the sampled counter reached `level` (linear between samples)."""
    prev = None
    for t, c in samples:
        if c >= level:
            if prev is None or c == prev[1]:
                return t
            t0, c0 = prev
            return t0 + (t - t0) * (level - c0) / (c - c0)
        prev = (t, c)
    return None


def rate_between(samples, n: int, lo: float = 0.05, hi: float = 0.95) -> float | None:
    t_lo, t_hi = crossing(samples, lo * n), crossing(samples, hi * n)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return None
    return (hi - lo) * n / (t_hi - t_lo)


def median_or_none(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def scan_log(path: Path) -> dict:
    """Counts and the first distinct lines of warnings/errors in a worker log."""
    findings = {"errors": 0, "warnings": 0, "tracebacks": 0, "samples": []}
    if not path.exists():
        return findings
    seen = set()
    for line in path.read_text(errors="replace").splitlines():
        level = None
        if "Traceback (most recent call last)" in line:
            findings["tracebacks"] += 1
            level = "tb"
        elif re.search(r"\[(ERROR|CRITICAL)\]|\bERROR\b|\bCRITICAL\b", line):
            findings["errors"] += 1
            level = "error"
        elif re.search(r"\[WARNING\]|\bWARNING\b|\bWARN\b", line):
            findings["warnings"] += 1
            level = "warn"
        if level:
            key = re.sub(r"\d+", "#", line)[:160]
            if key not in seen and len(findings["samples"]) < 12:
                seen.add(key)
                findings["samples"].append(line[:400])
    return findings


class LogWatch:
    """Reads a worker log incrementally and remembers the first Faust agent crash."""

    def __init__(self, path: Path):
        self.path = path
        self.pos = 0
        self.crash: str | None = None
        self.crashes = 0

    def check(self) -> str | None:
        with contextlib.suppress(OSError):
            with self.path.open("rb") as f:
                f.seek(self.pos)
                chunk = f.read()
            # only complete lines
            cut = chunk.rfind(b"\n") + 1
            self.pos += cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                if "Crashed reason=" in line:
                    self.crashes += 1
                    self.crash = self.crash or line.strip()[:300]
        return self.crash


def start_proc(procs: list[Child], name: str, argv: list[str], *, env, log_path: Path) -> Child:
    """Start a subprocess in its own session (log written afresh) and remember it for the cleanup."""
    child = Child(name, argv, log_path, env=env, cwd=REPO, append=False).start()
    procs.append(child)
    return child


class Bench:
    def __init__(self, args):
        self.a = args
        self.tag = uuid.uuid4().hex[:8]
        self.base = Settings.from_env()
        self.kafka = self.base.kafka
        self.redis_url = redis_url_with_db(self.base.redis, args.redis_db)
        self.procs: list[Child] = []   # every subprocess the bench started, stopped at the end
        self.tmp = Path(tempfile.mkdtemp(prefix=f"zonewatch-bench-{self.tag}-"))
        self.groups: list[str] = []
        self.worker_logs: list[Path] = []
        self.redis = redis.Redis.from_url(self.redis_url)
        self.result: dict = {}
        self.input_tps: list[TopicPartition] = []

    # -- names ---------------------------------------------------------------------------------
    def settings(self, prefix: str, app_id: str) -> Settings:
        return self.base.with_(topic_prefix=prefix, app_id=app_id, partitions=self.a.partitions,
                               redis=self.redis_url)

    def worker_env(self, s: Settings) -> dict:
        env = dict(os.environ)
        env.update({
            "ZONEWATCH_KAFKA": s.kafka,
            "ZONEWATCH_REDIS": s.redis,
            "ZONEWATCH_ZONES": str(s.zones),
            "ZONEWATCH_TOPIC_PREFIX": s.topic_prefix,
            "ZONEWATCH_APP_ID": s.app_id,
            "ZONEWATCH_PARTITIONS": str(s.partitions),
            "ZONEWATCH_DATADIR": str(self.tmp / s.app_id),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> int:
        a = self.a
        started = time.time()
        t_run = time.perf_counter()
        load_start = list(os.getloadavg())
        RESULTS.mkdir(parents=True, exist_ok=True)
        gi = RESULTS / ".gitignore"
        if not gi.exists():
            gi.write_text("# bench output, not versioned\n*\n")
        self.redis.ping()
        self.redis.flushdb()

        prefix = f"bench-{self.tag}."
        s = self.settings(prefix, f"bench-{self.tag}-zw1")
        log(f"run {self.tag}: Kafka {self.kafka}, Redis {redacted_url(self.redis_url)}, prefix {prefix!r}, "
            f"{a.partitions} partitions")
        ensure_topics(s)
        input_names = [s.topic(t) for t in topics.INPUT_TOPICS]

        bbox = gen.bbox_of(s.zones)
        now_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        messages, expected = gen.backlog(a.events, bbox, now_ms, seed=a.seed, tag=self.tag,
                                         dup_rate=a.dup_rate, invalid_rate=a.invalid_rate, weights=a.weights)
        gen_s = time.perf_counter() - t0
        log(f"generated {len(messages):,} messages in {gen_s:.1f}s: {expected.accepted:,} valid, "
            f"{expected.duplicate:,} duplicates, {expected.rejected:,} invalid")
        prod = asyncio.run(self.produce_backlog(prefix, messages))
        del messages
        log(f"produced in {prod['seconds']:.1f}s ({prod['events_per_s']:,.0f} ev/s), "
            f"{prod['errors']} errors; topic end offsets sum {prod['end_offsets_sum']:,}")
        n = a.events

        runs_a, runs_b, runs_w = [], [], []
        for r in range(a.repeat):
            log(f"round {r + 1}/{a.repeat}: baseline A (aiokafka getmany + orjson)")
            runs_a.append(asyncio.run(self.baseline_a(input_names, n)))
            log(f"  A: {fmt_rate(runs_a[-1].get('events_per_s'))} ev/s")
            log(f"round {r + 1}/{a.repeat}: baseline B (trivial Faust agent)")
            runs_b.append(self.baseline_b(input_names, n, r))
            log(f"  B: {fmt_rate(runs_b[-1].get('events_per_s'))} ev/s")
            log(f"round {r + 1}/{a.repeat}: zonewatch worker")
            runs_w.append(self.worker_backlog(prefix, n, r, expected))
            log(f"  W: {fmt_rate(runs_w[-1].get('events_per_s'))} ev/s"
                + ("" if runs_w[-1]["completed"] else f"  — DID NOT COMPLETE: {runs_w[-1]['failure']}"))

        latency = None
        if a.seconds > 0 and a.rate > 0:
            log(f"latency phase: {a.rate:,} ev/s offered for {a.seconds:g}s")
            latency = self.latency_phase()
        latency_sse = None
        if a.seconds > 0 and a.rate > 0 and a.sse_clients > 0:
            log(f"latency phase with {a.sse_clients} SSE subscribers on a gateway: {a.rate:,} ev/s for {a.seconds:g}s")
            latency_sse = self.latency_phase(sse_clients=a.sse_clients)

        med_a = median_or_none(x.get("events_per_s") for x in runs_a)
        med_b = median_or_none(x.get("events_per_s") for x in runs_b)
        med_w = median_or_none(x.get("events_per_s") for x in runs_w if x["completed"])
        self.result = {
            "run_id": self.tag,
            "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "config": {"events": n, "partitions": a.partitions, "repeat": a.repeat, "rate": a.rate,
                       "seconds": a.seconds, "warmup_s": a.warmup, "redis_db": a.redis_db,
                       "kafka": self.kafka, "zones": str(s.zones), "seed": a.seed,
                       "mix": {topics.SOURCE_OF_TOPIC[t]: w for t, w in a.weights},
                       "dup_rate": a.dup_rate, "invalid_rate": a.invalid_rate},
            "backlog": {"messages": n, "expected": {"accepted": expected.accepted, "duplicate": expected.duplicate,
                                                     "rejected": expected.rejected,
                                                     "by_topic": expected.by_topic,
                                                     "duplicates_by_topic": expected.dup_by_topic,
                                                     "max_valid_ts": expected.max_valid_ts},
                        "generate_s": gen_s, "produce": prod},
            "baseline_a": {"what": "bare aiokafka consumer: getmany + orjson.loads, all partitions, no group",
                           "method": "events after the first batch / time from first batch to all N read",
                           "runs": runs_a, "median_events_per_s": med_a},
            "baseline_b": {"what": "trivial stateless Faust agent (orjson.loads + count), value_serializer=raw",
                           "method": "(N-1) / time from first to last event, measured in the agent",
                           "runs": runs_b, "median_events_per_s": med_b},
            "worker": {"what": "zonewatch worker (ingest + zone state + Redis), one process",
                       "method": "0.9 N / time between 5 % and 95 % of N counted in zonewatch_events_total "
                                 f"(polled every {POLL_S * 1000:.0f} ms)",
                       "runs": runs_w, "median_events_per_s": med_w},
            "ratios": {"worker_over_a": med_w / med_a if med_w and med_a else None,
                       "worker_over_b": med_w / med_b if med_w and med_b else None},
            "latency": latency,
            "latency_with_sse": latency_sse,
        }
        self.result["duration_s"] = time.perf_counter() - t_run
        self.result["machine"]["loadavg_start"] = load_start
        self.result["machine"]["loadavg_end"] = list(os.getloadavg())
        out = Path(a.out) if a.out else RESULTS / "latest.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(self.result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        print(render_table(self.result))
        if latency_sse:
            print(render_sse(latency, latency_sse))
        print()
        print(render_markdown(self.result))
        if latency_sse:
            print()
            print(render_sse(latency, latency_sse, markdown=True))
        log(f"results: {out}; worker logs: {', '.join(str(p) for p in self.worker_logs)}")
        return 0

    # -- backlog producer ------------------------------------------------------------------------
    async def produce_backlog(self, prefix: str, messages) -> dict:
        p = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", enable_idempotence=True,
                             linger_ms=20, max_batch_size=512 * 1024, max_request_size=8 << 20,
                             client_id=f"bench-{self.tag}-producer")
        await p.start()
        names = {t: prefix + t for t in topics.INPUT_TOPICS}
        try:
            t0 = time.perf_counter()
            futs = [await p.send(names[m.topic], m.value, key=m.key) for m in messages]
            await p.flush()
            res = await asyncio.gather(*futs, return_exceptions=True)
            secs = time.perf_counter() - t0
        finally:
            await p.stop()
        errors = [repr(x) for x in res if isinstance(x, BaseException)]
        self.input_tps = tps = await self.partitions_of(list(names.values()))
        c = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            ends = await c.end_offsets(tps)
        finally:
            await c.stop()
        return {"seconds": secs, "events_per_s": len(messages) / secs, "errors": len(errors),
                "first_errors": errors[:3], "end_offsets_sum": sum(ends.values()),
                "partitions_per_topic": {t: len([tp for tp in tps if tp.topic == t]) for t in names.values()}}

    async def partitions_of(self, names: list[str]) -> list[TopicPartition]:
        p = AIOKafkaProducer(bootstrap_servers=self.kafka, client_id=f"bench-{self.tag}-meta")
        await p.start()
        try:
            return [TopicPartition(t, q) for t in names for q in sorted(await p.partitions_for(t))]
        finally:
            await p.stop()

    # -- baseline A ------------------------------------------------------------------------------
    async def baseline_a(self, names: list[str], n: int) -> dict:
        c = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None, enable_auto_commit=False,
                             client_id=f"bench-{self.tag}-baseline-a",
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
        t_start = time.perf_counter()
        await c.start()
        try:
            tps = [tp for tp in self.input_tps if tp.topic in names]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            count = bad = 0
            samples: list[tuple[float, int]] = []
            loads = orjson.loads
            decode_error = orjson.JSONDecodeError
            last_progress = time.perf_counter()
            while count < n:
                got = await c.getmany(timeout_ms=200, max_records=5000)
                for recs in got.values():
                    for m in recs:
                        try:
                            loads(m.value)
                        except decode_error:
                            bad += 1
                    count += len(recs)
                now = time.perf_counter()
                if got:
                    samples.append((now, count))
                    last_progress = now
                elif now - last_progress > self.a.stall or now - t_start > self.a.timeout:
                    break
        finally:
            await c.stop()
        done = count >= n
        out = {"completed": done, "events_read": count, "invalid_json": bad,
               "wall_s": (samples[-1][0] if samples else time.perf_counter()) - t_start}
        if done and len(samples) > 1:
            (t0, c0), (t1, c1) = samples[0], samples[-1]
            out.update(first_to_last_s=t1 - t0, events_per_s=(c1 - c0) / (t1 - t0),
                       events_per_s_5_95=rate_between(samples, n), batches=len(samples))
        elif not done:
            out["failure"] = f"stalled at {count} of {n} events"
        return out

    # -- baseline B ------------------------------------------------------------------------------
    def baseline_b(self, names: list[str], n: int, r: int) -> dict:
        app_id = f"bench-{self.tag}-faust{r + 1}"
        self.groups.append(app_id)
        out = self.tmp / f"{app_id}.json"
        logp = RESULTS / f"faust-baseline-{app_id}.log"
        argv = [sys.executable, "-m", "bench.faust_baseline", "--kafka", self.kafka, "--topics", ",".join(names),
                "--app-id", app_id, "--expect", str(n), "--out", str(out), "--partitions", str(self.a.partitions),
                "--datadir", str(self.tmp / app_id)]
        t0 = time.perf_counter()
        p = start_proc(self.procs, "faust baseline", argv, env=dict(os.environ, PYTHONUNBUFFERED="1"), log_path=logp)
        last, last_change = None, time.perf_counter()
        res = None
        try:
            while True:
                if out.exists():
                    res = json.loads(out.read_text())
                    res["wall_s"] = time.perf_counter() - t0
                    break
                if p.poll() is not None:
                    break
                prog = self.tmp / f"{app_id}.json.progress"
                cur = prog.read_text() if prog.exists() else None
                now = time.perf_counter()
                if cur != last:
                    last, last_change = cur, now
                elif now - last_change > self.a.stall + (60 if cur is None else 0) or now - t0 > self.a.timeout:
                    break
                time.sleep(0.1)
        finally:
            p.stop(grace=30)
        if res is None:
            tail = logp.read_text(errors="replace")[-2000:] if logp.exists() else ""
            return {"completed": False, "failure": f"no result (exit {p.returncode}); progress {last}",
                    "log_tail": tail, "log": str(logp)}
        res["completed"] = True
        res["log"] = str(logp)
        return res

    # -- the worker on the backlog -----------------------------------------------------------------
    def start_worker(self, s: Settings) -> tuple[Child, int, Path, float]:
        self.groups += [s.app_id, f"{s.app_id}-ingest"]
        port = free_port()
        logp = RESULTS / f"worker-{s.app_id}.log"
        self.worker_logs.append(logp)
        t0 = time.perf_counter()
        p = start_proc(self.procs, "worker", [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port",
                                              str(port), "--loglevel", "info"], env=self.worker_env(s), log_path=logp)
        return p, port, logp, t0

    def wait_metrics(self, p: Child, port: int, timeout: float = 120.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and p.poll() is None:
            try:
                promtext.fetch(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
                return time.perf_counter()
            except OSError:
                time.sleep(0.1)
        return None

    def zones_at_clock(self, clock: int) -> tuple[int, int, int]:
        """(zones registered, zone docs present, docs whose clock == `clock`)."""
        ids = [z.decode() for z in self.redis.smembers(keys.ZONES)]
        vals = self.redis.mget([keys.zone(z) for z in ids]) if ids else []
        docs = [orjson.loads(v) for v in vals if v]
        return len(ids), len(docs), sum(1 for d in docs if d.get("clock") == clock)

    def worker_backlog(self, prefix: str, n: int, r: int, expected: gen.Expected) -> dict:
        self.redis.flushdb()
        s = self.settings(prefix, f"bench-{self.tag}-zw{r + 1}")
        p, port, logp, t0 = self.start_worker(s)
        res: dict = {"app_id": s.app_id, "log": str(logp), "completed": False}
        try:
            t_up = self.wait_metrics(p, port)
            if t_up is None:
                res["failure"] = f"/metrics never came up (exit code {p.poll()})"
                return res
            res["metrics_up_s"] = t_up - t0
            samples: list[tuple[float, float]] = []
            last_c, last_change = -1.0, time.perf_counter()
            deadline = time.perf_counter() + self.a.timeout
            watch = LogWatch(logp)
            rows = []
            by_src: list[dict] = []
            while True:
                if watch.check():
                    res["failure"] = (f"Faust agent crashed after counting {last_c:.0f} of {n}: {watch.crash}")
                    break
                if time.perf_counter() > deadline:
                    res["failure"] = f"--timeout {self.a.timeout:g}s: counted {last_c:.0f} of {n}"
                    break
                if p.poll() is not None:
                    res["failure"] = f"worker exited with code {p.returncode} after counting {last_c:.0f} of {n}"
                    break
                try:
                    rows = promtext.parse(promtext.fetch(f"http://127.0.0.1:{port}/metrics"))
                except OSError as exc:
                    res.setdefault("metrics_errors", []).append(repr(exc))
                    time.sleep(POLL_S)
                    continue
                now = time.perf_counter()
                c = promtext.counter_sum(rows, EVENTS_METRIC)
                samples.append((now, c))
                by_src.append(promtext.counter_sum(rows, EVENTS_METRIC, by="source"))
                if c != last_c:
                    last_c, last_change = c, now
                if c >= n:
                    break
                limit = self.a.stall + (120 if c == 0 else 0)
                if now - last_change > limit:
                    res["failure"] = (f"no progress for {now - last_change:.0f}s: counted {c:.0f} of {n} "
                                      f"({n - c:.0f} missing)")
                    break
                time.sleep(POLL_S)
            res["counted"] = last_c
            curve, last_t = [], -1.0
            for (t, c), src in zip(samples, by_src, strict=True):  # progress curve for the record, at most every 0.5 s
                if t - t0 - last_t >= 0.5 or c >= n:
                    last_t = t - t0
                    curve.append([round(last_t, 2), int(c)] + [int(src.get(k, 0)) for k in ("gps", "alerts", "calls")])
            res["progress"] = curve
            # Ingest drains the topics in no fixed order, so each source's own 5 %..95 % rate
            # says more about the cost per kind of event than the mixed total does.
            per_src = {}
            for t_name, total in expected.by_topic.items():
                src = topics.SOURCE_OF_TOPIC[t_name]
                series = [(t, d.get(src, 0.0)) for (t, _c), d in zip(samples, by_src, strict=True)]
                per_src[src] = rate_between(series, total) if total >= 20 else None
            res["events_per_s_by_source"] = per_src
            res["progress_columns"] = ["s since start", "counted", "gps", "alerts", "calls"]
            res["outcomes"] = outcome_table(rows)
            res["expected_outcomes"] = {"accepted": expected.accepted, "duplicate": expected.duplicate,
                                        "rejected": expected.rejected}
            res["expected_duplicates_by_source"] = {topics.SOURCE_OF_TOPIC[t]: v
                                                    for t, v in expected.dup_by_topic.items()}
            first = next(((t, c) for t, c in samples if c > 0), None)
            if first:
                res["first_event_s"] = first[0] - t0
            if last_c >= n:
                res["completed"] = True
                t_all = crossing(samples, n)
                res["start_to_all_counted_s"] = t_all - t0
                res["events_per_s"] = rate_between(samples, n)
                if first and t_all > first[0]:
                    res["events_per_s_first_to_all"] = (n - first[1]) / (t_all - first[0])
                res["t5_s"] = crossing(samples, 0.05 * n) - t0
                res["t95_s"] = crossing(samples, 0.95 * n) - t0
                # Redis writes done: every zone document carries the final clock.
                deadline = time.perf_counter() + self.a.stall
                state = (0, 0, 0)
                while time.perf_counter() < deadline:
                    state = self.zones_at_clock(expected.max_valid_ts)
                    if state[0] and state[2] == state[0]:
                        res["redis_final_clock_s"] = time.perf_counter() - t0
                        break
                    time.sleep(POLL_S)
                res["redis_zones"] = {"registered": state[0], "docs": state[1], "at_final_clock": state[2]}
                if "redis_final_clock_s" not in res:
                    res["redis_note"] = (f"after {self.a.stall:g}s only {state[2]} of {state[0]} zone docs carry "
                                         f"the final clock {expected.max_valid_ts}")
            # final snapshot (after the last flush) for e2e-in-backlog and write counts
            with contextlib.suppress(OSError):
                rows = promtext.parse(promtext.fetch(f"http://127.0.0.1:{port}/metrics"))
            h = promtext.Histogram.from_rows(rows, E2E_METRIC)
            res["backlog_e2e_queueing_s"] = hist_summary(h)
            res["event_age_s"] = {src: hist_summary(promtext.Histogram.from_rows(
                [x for x in rows if x[1].get("source") == src], AGE_METRIC)) for src in ("gps", "alerts", "calls")}
            res["zone_writes"] = promtext.counter_sum(rows, metrics.ZONE_WRITES)
            res["deadletters"] = promtext.counter_sum(rows, metrics.DEADLETTERS, by="reason")
            res["redis_write_errors"] = promtext.counter_sum(rows, metrics.REDIS_WRITE_ERRORS)
            return res
        finally:
            p.stop(grace=20)
            res["exit_code"] = p.returncode
            res["log_findings"] = scan_log(logp)

    # -- latency at a fixed offered load -----------------------------------------------------------
    def latency_phase(self, sse_clients: int = 0) -> dict:
        self.redis.flushdb()
        tag = f"lat{sse_clients}" if sse_clients else "lat"
        prefix = f"bench-{self.tag}-{tag}."
        s = self.settings(prefix, f"bench-{self.tag}-{tag}zw")
        ensure_topics(s)
        p, port, logp, t0 = self.start_worker(s)
        subscribers = None
        if sse_clients:
            subscribers = SseSubscribers(self, s, sse_clients)
        res: dict = {"app_id": s.app_id, "log": str(logp), "rate": self.a.rate, "seconds": self.a.seconds,
                     "quantile_method": "PromQL histogram_quantile: linear interpolation inside the bucket "
                                        "(first bucket from 0); delta of the histogram over the phase, "
                                        "summed over source labels; max = edges of the highest non-empty bucket"}
        try:
            if self.wait_metrics(p, port) is None:
                res["failure"] = f"/metrics never came up (exit code {p.poll()})"
                return res
            if subscribers is not None:
                subscribers.start()
                res["sse"] = {"clients": sse_clients}
            res.update(asyncio.run(self._paced(s, p, port, LogWatch(logp))))
            if subscribers is not None:
                res["sse"] = subscribers.stop()
            return res
        finally:
            if subscribers is not None:
                subscribers.stop()
            p.stop(grace=20)
            res["exit_code"] = p.returncode
            res["log_findings"] = scan_log(logp)

    async def _counted(self, port: int) -> tuple[float, list]:
        rows = promtext.parse(await asyncio.to_thread(promtext.fetch, f"http://127.0.0.1:{port}/metrics"))
        return promtext.counter_sum(rows, EVENTS_METRIC), rows

    async def _wait_counted(self, p, port: int, target: int, watch: LogWatch) -> tuple[bool, float, list, str]:
        """Wait until the worker counted `target` events: (ok, counted, rows, why not)."""
        last, last_change = -1.0, time.perf_counter()
        deadline = last_change + self.a.timeout
        while True:
            c, rows = await self._counted(port)
            now = time.perf_counter()
            if c >= target:
                return True, c, rows, ""
            if c != last:
                last, last_change = c, now
            if watch.check():
                return False, c, rows, f"Faust agent crashed: {watch.crash}"
            if p.poll() is not None:
                return False, c, rows, f"worker exited with code {p.returncode}"
            if now - last_change > self.a.stall + (120 if c == 0 else 0) or now > deadline:
                return False, c, rows, (f"--timeout {self.a.timeout:g}s" if now > deadline
                                        else f"no progress for {now - last_change:.0f}s")
            await asyncio.sleep(POLL_S)

    async def _paced(self, s: Settings, proc, port: int, watch: LogWatch) -> dict:
        a = self.a
        bbox = gen.bbox_of(s.zones)
        f = gen.EventFactory(bbox, seed=a.seed + 100, tag=f"{self.tag}L", weights=a.weights)
        names = {t: s.topic(t) for t in topics.INPUT_TOPICS}
        prod = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", enable_idempotence=True,
                                linger_ms=a.linger_ms, max_batch_size=256 * 1024,
                                client_id=f"bench-{self.tag}-paced")
        await prod.start()
        futs: list = []
        sent_total = 0

        async def paced(seconds: float) -> tuple[int, float, float, float]:
            """Send at a.rate for `seconds`; returns (sent, first send, last send, max behind)."""
            nonlocal sent_total
            total = int(round(a.rate * seconds))
            sent = 0
            behind = 0.0
            start = time.perf_counter()
            first = last = start
            while sent < total:
                now = time.perf_counter()
                due = min(total, int((now - start) * a.rate) + 1)
                behind = max(behind, (due - sent) / a.rate)
                while sent < due:
                    topic = f.pick_topic()
                    ev, key = f.make(topic, int(time.time() * 1000))
                    futs.append(await prod.send(names[topic], orjson.dumps(ev), key=key))
                    sent += 1
                last = time.perf_counter()
                await asyncio.sleep(0.002)
            sent_total += sent
            return sent, first, last, behind

        try:
            # warm-up: the first events trigger partition assignment and the (empty) rebuild
            await paced(a.warmup)
            ok, c, _, why = await self._wait_counted(proc, port, sent_total, watch)
            if not ok:
                return {"failure": f"warm-up: worker counted {c:.0f} of {sent_total} events ({why})"}
            await asyncio.sleep(1.0)  # a few idle flushes: the worker is caught up and idle
            _c0, rows0 = await self._counted(port)
            h0 = promtext.Histogram.from_rows(rows0, E2E_METRIC)

            lag_samples: list[tuple[float, float]] = []
            phase_start = time.perf_counter()

            async def sampler():
                while True:
                    await asyncio.sleep(0.25)
                    with contextlib.suppress(OSError):
                        cc, _ = await self._counted(port)
                        lag_samples.append((time.perf_counter() - phase_start, cc))

            task = asyncio.create_task(sampler())
            try:
                sent, first, last, behind = await paced(a.seconds)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await prod.flush()
            res = await asyncio.gather(*futs, return_exceptions=True)
            errors = [repr(x) for x in res if isinstance(x, BaseException)]
            t_caught = time.perf_counter()
            ok, c, rows, why = await self._wait_counted(proc, port, sent_total, watch)
            caught_up_after_s = time.perf_counter() - t_caught
            # the e2e observations land after the flush that wrote the events: wait until stable
            prev, stable_since = None, time.perf_counter()
            while time.perf_counter() - stable_since < 0.6:
                await asyncio.sleep(POLL_S)
                _c, rows = await self._counted(port)
                cnt = promtext.Histogram.from_rows(rows, E2E_METRIC).count
                if cnt != prev:
                    prev, stable_since = cnt, time.perf_counter()
            h = promtext.Histogram.from_rows(rows, E2E_METRIC) - h0
            accepted = (promtext.counter_sum([x for x in rows if x[1].get("outcome") == "accepted"], EVENTS_METRIC)
                        - promtext.counter_sum([x for x in rows0 if x[1].get("outcome") == "accepted"], EVENTS_METRIC))
            out = {"events_sent": sent, "send_errors": len(errors), "first_send_errors": errors[:3],
                   "achieved_rate": (sent - 1) / (last - first) if last > first else None,
                   "producer_max_behind_s": behind,
                   "worker_counted_all": ok, "counted_total": c, "sent_total_incl_warmup": sent_total,
                   "catch_up_after_last_send_s": caught_up_after_s,
                   "e2e": hist_summary(h), "accepted_in_phase": accepted,
                   "e2e_observations_per_accepted_event": h.count / accepted if accepted else None,
                   "outcomes_total": outcome_table(rows)}
            out["worker_events_per_s_while_sending"] = None
            during = [(t, cc) for t, cc in lag_samples if t <= last - phase_start]
            if len(during) > 1:
                (ta, ca), (tb, cb) = during[0], during[-1]
                out["worker_events_per_s_while_sending"] = (cb - ca) / (tb - ta) if tb > ta else None
            out["sent_to_caught_up_events_per_s"] = sent / (t_caught + caught_up_after_s - first)
            if lag_samples:
                # worker backlog during the phase: events offered so far minus counted
                base = _c0
                out["max_worker_lag_events"] = max(
                    0.0, max(min(sent, a.rate * t) - (cc - base) for t, cc in lag_samples))
            if not ok:
                out["failure"] = f"worker counted {c:.0f} of {sent_total} events ({why})"
            return out
        finally:
            await prod.stop()

    # -- cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for p in reversed(self.procs):
            p.stop(grace=20)
        with contextlib.suppress(Exception):
            self.redis.flushdb()
            self.redis.close()
        if not self.a.keep:
            self.delete_kafka_objects()
        else:
            log(f"--keep: topics and consumer groups bench-{self.tag}* left in Kafka")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def delete_kafka_objects(self) -> None:
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.kafka, client_id=f"bench-{self.tag}-cleanup",
                                     request_timeout_ms=30_000)
        except Exception as exc:
            log(f"cleanup: cannot reach Kafka to delete bench topics ({exc})")
            return
        try:
            mine = sorted(t for t in admin.list_topics() if t.startswith(f"bench-{self.tag}"))
            if mine:
                try:
                    admin.delete_topics(mine, timeout_ms=30_000)
                    log(f"cleanup: deleted {len(mine)} topics bench-{self.tag}*")
                except Exception as exc:
                    log(f"cleanup: deleting topics failed: {exc}")
            if self.groups:
                try:
                    admin.delete_groups(self.groups)
                except Exception as exc:
                    log(f"cleanup: deleting consumer groups failed: {exc}")
        finally:
            admin.close()


# -- reporting -------------------------------------------------------------------------------------
class SseSubscribers:
    """A gateway on the latency worker's Redis and N Server-Sent-Events clients reading /stream,
    in a thread of their own (one asyncio loop, one TCP connection per client)."""

    def __init__(self, bench: Bench, s: Settings, n: int):
        import secrets
        import threading

        self.bench, self.n = bench, n
        self.token = secrets.token_urlsafe(12)
        self.port = free_port()
        env = bench.worker_env(s)
        env["ZONEWATCH_GATEWAY_TOKENS"] = self.token
        self.log_path = RESULTS / f"gateway-{s.app_id}.log"
        self.proc = start_proc(bench.procs, "gateway",
                               [sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(self.port)],
                               env=env, log_path=self.log_path)
        self.events = [0] * n
        self.resyncs = [0] * n
        self.connected = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._result = None

    def start(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"gateway did not start (log {self.log_path})") from exc
                time.sleep(0.2)
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.connected < self.n and time.monotonic() < deadline:
            time.sleep(0.1)
        log(f"  {self.connected}/{self.n} SSE subscribers connected")

    def _run(self) -> None:
        asyncio.run(self._clients())

    async def _clients(self) -> None:
        async def client(i: int) -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(f"GET /stream?token={self.token} HTTP/1.1\r\nHost: bench\r\n"
                             f"Accept: text/event-stream\r\n\r\n".encode())
                await writer.drain()
                self.connected += 1
                while not self._stop.is_set():
                    line = await reader.readline()
                    if not line:
                        break
                    if line.startswith(b"event: zone"):
                        self.events[i] += 1
                    elif line.startswith(b"event: resync"):
                        self.resyncs[i] += 1
                writer.close()
            except Exception as exc:  # a client error is reported, not raised
                self.errors.append(f"client {i}: {exc!r}")

        tasks = [asyncio.create_task(client(i)) for i in range(self.n)]
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> dict:
        if self._result is None:
            self._stop.set()
            self._thread.join(10)
            self.proc.stop(grace=20)
            ev = sorted(self.events)
            self._result = {"clients": self.n, "connected": self.connected,
                            "zone_events_per_client_min": ev[0] if ev else 0,
                            "zone_events_per_client_median": ev[len(ev) // 2] if ev else 0,
                            "resyncs": sum(self.resyncs), "errors": self.errors[:5], "gateway_log": str(self.log_path)}
        return self._result


def render_sse(plain: dict, sse: dict, markdown: bool = False) -> str:
    def q(res, k):
        e = (res or {}).get("e2e") or {}
        v = e.get(k)
        return "n/a" if v is None else f"{v * 1000:,.1f} ms"

    sub = sse.get("sse") or {}
    rows = [("without subscribers", plain), (f"with {sub.get('clients', '?')} SSE subscribers", sse)]
    if markdown:
        out = ["| latency phase | achieved ev/s | p50 | p99 |", "|---|---:|---:|---:|"]
        out += [f"| {name} | {fmt_rate((r or {}).get('achieved_rate'))} | {q(r, 'p50_s')} | {q(r, 'p99_s')} |"
                for name, r in rows]
    else:
        out = ["latency with and without SSE subscribers (same offered load):"]
        out += [f"  {name:<28} achieved {fmt_rate((r or {}).get('achieved_rate'))} ev/s  p50 {q(r, 'p50_s')}"
                f"  p99 {q(r, 'p99_s')}" for name, r in rows]
    out.append(f"{'' if markdown else '  '}subscribers: {sub.get('connected')}/{sub.get('clients')} connected, "
               f"zone events per subscriber: min {sub.get('zone_events_per_client_min')}, median "
               f"{sub.get('zone_events_per_client_median')}; resyncs {sub.get('resyncs')}; "
               f"errors {len(sub.get('errors') or [])}")
    return "\n".join(out)


def outcome_table(rows) -> dict:
    out: dict = {}
    for name, lab, v in rows:
        if name == EVENTS_METRIC:
            out.setdefault(lab.get("outcome", "?"), {})[lab.get("source", "?")] = v
    return {k: {**v, "total": sum(v.values())} for k, v in sorted(out.items())}


def hist_summary(h: promtext.Histogram) -> dict:
    lo, hi = h.max_bound()
    return {"count": h.count, "p50_s": h.quantile(0.50), "p99_s": h.quantile(0.99),
            # true when the quantile lies above the largest finite bucket: the value is then a lower bound
            "p50_beyond_last_bucket": h.beyond_last_bucket(0.50), "p99_beyond_last_bucket": h.beyond_last_bucket(0.99),
            "max_bucket_s": [lo, hi], "mean_s": h.mean()}


def q_txt(summary: dict, q: str, unit: str = "s") -> str:
    v = summary.get(f"{q}_s")
    ge = "≥ " if summary.get(f"{q}_beyond_last_bucket") else ""
    return ge + (fmt_ms(v) if unit == "ms" else f"{fmt_s(v)}s")


def machine_info() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    kafka_version = None
    with contextlib.suppress(OSError, ValueError):
        kafka_version = json.loads((REPO / ".stack" / "stack.json").read_text()).get("kafka_version")
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "streams", "zonewatch",
                                "connectors", "pyproject.toml"], cwd=REPO, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        if commit and dirty:
            commit += "+dirty"  # the worker ran uncommitted changes
    vers = {}
    for pkg in ("faust-streaming", "aiokafka", "orjson", "redis"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            vers[pkg] = importlib.metadata.version(pkg)
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gib": mem, "os": platform.platform(),
            "python": platform.python_version(), "kafka": kafka_version, "packages": vers, "commit": commit}


def fmt_rate(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "—"


def fmt_ms(v) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    return f"{v:,.1f} s" if v >= 10 else f"{v * 1000:,.1f} ms"


def fmt_s(v) -> str:
    return f"{v:,.1f}" if isinstance(v, (int, float)) else "—"


def _max_txt(e2e: dict) -> str:
    lo, hi = e2e.get("max_bucket_s") or (None, None)
    if hi is None:
        return "—"
    if hi == float("inf"):
        return f"> {lo:g} s"
    return f"{fmt_ms(lo)}–{fmt_ms(hi)}"


def _runs_txt(runs) -> str:
    return ", ".join(fmt_rate(r.get("events_per_s")) if r.get("completed") else "FAILED" for r in runs)


def render_table(r: dict) -> str:
    c, m, b = r["config"], r["machine"], r["backlog"]
    e = b["expected"]
    A, B, W, L = r["baseline_a"], r["baseline_b"], r["worker"], r["latency"]
    lines = [
        "",
        f"zonewatch bench {r['run_id']} — {c['events']:,} events ({_mix_txt(c)}; "
        f"{e['duplicate']:,} duplicates, {e['rejected']:,} invalid), {c['partitions']} partitions, "
        f"repeat {c['repeat']} (median)",
        f"machine: {m['cpus']} CPU {m['cpu']}, Python {m['python']}, Kafka {m['kafka']}, commit {m['commit']}; "
        f"load average {_load_txt(m.get('loadavg_start'))} at start, {_load_txt(m.get('loadavg_end'))} at end",
        f"backlog produced in {b['produce']['seconds']:.1f}s ({fmt_rate(b['produce']['events_per_s'])} ev/s, "
        f"acks=all, idempotent)",
        "",
        f"{'consumer of the backlog':<42}{'events/s':>12}   {'runs':<30}measured as",
        "-" * 120,
        f"{'A  aiokafka getmany + orjson.loads':<42}{fmt_rate(A['median_events_per_s']):>12}   "
        f"{_runs_txt(A['runs']):<30}first batch → all N read",
        f"{'B  trivial Faust agent (orjson.loads)':<42}{fmt_rate(B['median_events_per_s']):>12}   "
        f"{_runs_txt(B['runs']):<30}first → last event, in the agent",
        f"{'W  zonewatch worker':<42}{fmt_rate(W['median_events_per_s']):>12}   "
        f"{_runs_txt(W['runs']):<30}5% → 95% of N in zonewatch_events_total",
        "-" * 120,
        f"worker / A = {_ratio(r['ratios']['worker_over_a'])}    worker / B = {_ratio(r['ratios']['worker_over_b'])}",
    ]
    for i, w in enumerate(W["runs"], 1):
        if w.get("completed"):
            lines.append(
                f"worker run {i}: /metrics up {fmt_s(w.get('metrics_up_s'))}s, first event counted "
                f"{fmt_s(w.get('first_event_s'))}s, all {c['events']:,} counted "
                f"{fmt_s(w.get('start_to_all_counted_s'))}s, "
                f"Redis at final clock {fmt_s(w.get('redis_final_clock_s'))}s after process start; "
                f"first→all {fmt_rate(w.get('events_per_s_first_to_all'))} ev/s")
            lines.append("  each source alone, 5% → 95% of its events: " + ", ".join(
                f"{src} {fmt_rate(v)} ev/s" for src, v in (w.get("events_per_s_by_source") or {}).items()))
            q = w["backlog_e2e_queueing_s"]
            lines.append(f"  backlog 'e2e' = time since the backlog was produced (queueing), not latency: "
                         f"p50 {q_txt(q, 'p50')}, p99 {q_txt(q, 'p99')} ({q['count']:,.0f} observations)")
            ages = w.get("event_age_s", {})
            lines.append("  event age at processing (stream clock − ts), p50/p99: " + ", ".join(
                f"{src} {fmt_s(a_['p50_s'])}/{fmt_s(a_['p99_s'])}s" for src, a_ in ages.items()))
            o = w.get("outcomes", {})
            lines.append("  counted: " + ", ".join(f"{k} {v['total']:,.0f}" for k, v in o.items())
                         + "  (expected: " + ", ".join(f"{k} {v:,}" for k, v in w["expected_outcomes"].items()) + ")")
            d = o.get("duplicate", {})
            lines.append("  duplicates counted / sent by source: " + ", ".join(
                f"{src} {d.get(src, 0):,.0f}/{v:,}" for src, v in w["expected_duplicates_by_source"].items()))
        else:
            lines.append(f"worker run {i}: DID NOT COMPLETE — {w.get('failure')}")
        f = w.get("log_findings", {})
        lines.append(f"  log {w.get('log')}: {f.get('errors', 0)} error, {f.get('warnings', 0)} warning, "
                     f"{f.get('tracebacks', 0)} traceback lines")
    if L:
        lines.append("")
        if L.get("e2e"):
            e2e = L["e2e"]
            lines += [
                f"latency at offered {c['rate']:,} ev/s for {c['seconds']:g}s (achieved "
                f"{fmt_rate(L.get('achieved_rate'))} ev/s, {L.get('events_sent', 0):,} events, "
                f"send errors {L.get('send_errors')}): e2e Kafka CreateTime → Redis write",
                f"  p50 {q_txt(e2e, 'p50', 'ms')}   p99 {q_txt(e2e, 'p99', 'ms')}   max in bucket {_max_txt(e2e)}   "
                f"mean {fmt_ms(e2e['mean_s'])}   ({e2e['count']:,.0f} observations; histogram_quantile "
                "interpolation within buckets)",
                f"  worker counted {fmt_rate(L.get('worker_events_per_s_while_sending'))} ev/s "
                "while the producer sent; "
                f"{_ratio(L.get('e2e_observations_per_accepted_event'))} e2e observations per accepted event; "
                f"worker max lag {fmt_rate(L.get('max_worker_lag_events'))} events; caught up "
                f"{fmt_s(L.get('catch_up_after_last_send_s'))}s after the last send",
            ]
        if L.get("failure"):
            lines.append(f"latency phase FAILED: {L['failure']}")
        f = L.get("log_findings", {})
        lines.append(f"  log {L.get('log')}: {f.get('errors', 0)} error, {f.get('warnings', 0)} warning, "
                     f"{f.get('tracebacks', 0)} traceback lines")
    lines.append(f"\nbench took {r['duration_s']:.0f}s")
    return "\n".join(lines)


def _load_txt(v) -> str:
    return "/".join(f"{x:.1f}" for x in v) if v else "?"


def _mix_txt(c: dict) -> str:
    return " / ".join(f"{w:.0%} {src}" for src, w in c["mix"].items())


def _ratio(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "—"


def render_markdown(r: dict) -> str:
    c, m, b = r["config"], r["machine"], r["backlog"]
    A, B, W, L = r["baseline_a"], r["baseline_b"], r["worker"], r["latency"]
    date = r["started_at"][:10]
    out = [
        "<!-- paste into docs/BENCHMARKS.md -->",
        f"### {date} — commit `{m['commit']}`, {m['cpus']} × {m['cpu']}",
        "",
        f"`python -m bench.run --events {c['events']} --partitions {c['partitions']} --repeat {c['repeat']} "
        f"--rate {c['rate']} --seconds {c['seconds']:g}`; Kafka {m['kafka']} and Redis on the same machine "
        f"(`make up`), Python {m['python']}, faust-streaming {m['packages'].get('faust-streaming')}, "
        f"aiokafka {m['packages'].get('aiokafka')}. {c['events']:,} events: {_mix_txt(c)}, "
        f"{b['expected']['duplicate']:,} duplicates, {b['expected']['rejected']:,} invalid. "
        f"Median of {c['repeat']} run(s).",
        "",
        "| consumer of the backlog | events/s | measured as |",
        "|---|---:|---|",
        f"| A: bare aiokafka `getmany` + `orjson.loads` | {fmt_rate(A['median_events_per_s'])} "
        "| first batch → all N read |",
        f"| B: trivial stateless Faust agent | {fmt_rate(B['median_events_per_s'])} "
        "| first → last event in the agent |",
        f"| **zonewatch worker** (1 process) | **{fmt_rate(W['median_events_per_s'])}** "
        "| 5 % → 95 % of N counted (`/metrics`) |",
        "",
        f"worker / A = {_ratio(r['ratios']['worker_over_a'])}, worker / B = {_ratio(r['ratios']['worker_over_b'])}.",
    ]
    done = [w for w in W["runs"] if w.get("completed")]
    if done:
        w = sorted(done, key=lambda x: x.get("events_per_s") or 0)[len(done) // 2]  # the median run
        out.append(f"A fresh worker counted all {c['events']:,} events {fmt_s(w.get('start_to_all_counted_s'))} s "
                   f"after process start; Redis carried the final clock at {fmt_s(w.get('redis_final_clock_s'))} s. "
                   "Each source alone (5 % → 95 % of its events): " + ", ".join(
                       f"{src} {fmt_rate(v)}/s" for src, v in (w.get("events_per_s_by_source") or {}).items()) + ".")
    if L and L.get("e2e"):
        e2e = L["e2e"]
        out += [
            "",
            f"Latency at {c['rate']:,} events/s offered (achieved {fmt_rate(L.get('achieved_rate'))}/s) for "
            f"{c['seconds']:g} s, Kafka CreateTime → Redis write completed "
            "(`zonewatch_e2e_latency_seconds`, delta over the phase, quantiles interpolated within buckets as "
            "PromQL `histogram_quantile` does):",
            "",
            "| p50 | p99 | max (bucket) | mean |",
            "|---:|---:|---:|---:|",
            f"| {q_txt(e2e, 'p50', 'ms')} | {q_txt(e2e, 'p99', 'ms')} | {_max_txt(e2e)} | {fmt_ms(e2e['mean_s'])} |",
            "",
            f"The worker counted {fmt_rate(L.get('worker_events_per_s_while_sending'))} events/s while the producer "
            f"sent (at most {fmt_rate(L.get('max_worker_lag_events'))} events behind) and had counted everything "
            f"{fmt_s(L.get('catch_up_after_last_send_s'))} s after the last send.",
        ]
    return "\n".join(out)


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="zonewatch throughput (vs. a bare aiokafka consumer and a trivial Faust agent, same run, "
                    "same topics) and end-to-end latency at a fixed offered load. Needs Kafka and Redis "
                    "(`make up`; ZONEWATCH_KAFKA / ZONEWATCH_REDIS). Writes bench/results/latest.json and "
                    "the worker logs there; prints a table and a Markdown snippet for docs/BENCHMARKS.md.",
    )
    p.add_argument("--events", type=int, default=200_000,
                   help="messages in the backlog, duplicates and invalid ones included (default 200000; "
                        "20000 for a quick run)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the bench topics (default 4)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each baseline and the worker measurement this many times, report the median")
    p.add_argument("--rate", type=int, default=5000, help="offered load of the latency phase, events/s (default 5000)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="duration of the latency phase (default 20; 0 skips the phase)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of paced load before the latency phase is measured (default 3)")
    p.add_argument("--linger-ms", type=int, default=5, help="producer linger of the latency phase (default 5)")
    p.add_argument("--redis-db", type=int, default=9,
                   help="Redis database the workers write to; flushed before and after (default 9)")
    p.add_argument("--dup-rate", type=float, default=0.005, help="fraction of duplicate messages (default 0.005)")
    p.add_argument("--invalid-rate", type=float, default=0.001, help="fraction of invalid messages (default 0.001)")
    p.add_argument("--mix", default="85,14.5,0.5", metavar="GPS,ALERTS,CALLS",
                   help="percentages of patrol fixes, camera alerts and 110 calls (default 85,14.5,0.5)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the event generator")
    p.add_argument("--sse-clients", type=int, default=200,
                   help="SSE subscribers on a gateway during a second latency phase (0 skips it; default 200)")
    p.add_argument("--stall", type=float, default=60.0,
                   help="give up on a consumer after this many seconds without progress (default 60)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="give up on one consumer measurement or catch-up wait after this many seconds (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the bench topics and consumer groups in Kafka")
    p.add_argument("--out", help="JSON result file (default bench/results/latest.json)")
    a = p.parse_args(argv)
    if a.events < 100:
        p.error("--events must be at least 100")
    try:
        mix = [float(x) for x in a.mix.split(",")]
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise ValueError
    except ValueError:
        p.error("--mix takes three non-negative percentages, e.g. 80,15,5")
    a.weights = tuple((t, w / sum(mix)) for t, w in zip((topics.GPS, topics.ALERTS, topics.CALLS), mix, strict=True))
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    if not 0 <= a.redis_db <= 15:
        p.error("--redis-db must be 0..15")
    return a


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps the bench's stacks to stderr
    bench = Bench(args)
    try:
        return bench.run()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
