"""zonewatch benchmark (`make bench`): throughput against two same-run baselines, latency at a fixed
offered load, Redis commands per event, the cost of 200 SSE subscribers, on two zone sets, five
runs reported as min / median / max. docs/BENCHMARKS.md describes the phases and every flag.

    make bench                      # five runs on both zone sets (`make bench RUNS=1` for a quick one)
    .venv/bin/python -m bench.run --runs 1 --zones city --events 50000     # while developing
    .venv/bin/python -m bench.run --scaling --profile --runs 1             # 1 vs 2 workers; py-spy

One unit = one zone set in one run, on fresh topics (prefix `bench-<run id>-<zone set><run>.`):
 1. backlog: `--events` messages of bench/city.py's CityStream (patrol units walking tens of metres
    between fixes, or jumping anywhere with `--stress`; fixed cameras; calls; `--mix`), ~0.5 %
    exact duplicates and ~0.1 % invalid, produced with aiokafka (acks=all, idempotent);
 2. A (bare aiokafka consumer, getmany + orjson.loads), B (trivial Faust agent) and W (the worker:
    events/s from /metrics between 5 % and 95 % of N counted) on that backlog;
 3. latency: a fresh, caught-up worker; `--rate` events/s offered for `--seconds`; e2e p50/p99 from
    the delta of zonewatch_e2e_latency_seconds; whether it kept up; zonewatch_consumer_lag; Redis
    commands per event (INFO commandstats over the phase, split top-level / in-script with a MONITOR
    sample of `--monitor-seconds` after it); zone writes per event; CPU per process;
 4. the same with `--sse-clients` SSE subscribers on a gateway.
Then, with `--scaling`, 1 vs 2 workers on one backlog (throughput ratio, CPU per process), and with
`--profile` py-spy flame graphs of the worker on the backlog (run 1, each zone set) in docs/profiles/.

Writes bench/results/<time>-<id>.json and latest.json (not versioned), prints a table and a
Markdown section for docs/BENCHMARKS.md (also bench/results/latest.md). It reports; it asserts
nothing about timings. Every process it starts is stopped (also on Ctrl-C), its topics and
consumer groups are deleted, the Redis db it used is flushed.
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
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from contract import keys, metrics, topics
from contract.kafka_settings import ensure_topics
from contract.security import redacted_url
from contract.settings import Settings
from deploy.procs import Child
from gateway import promtext

from . import events as gen
from . import procstat
from .city import CityStream, zone_set
from .harness import free_port
from .measure import LUA, count_true, crossing, per, rate_between, script_calls, split_commands, spread, top_level_share
from .redisprobe import MonitorSample, RedisProbe
from .report import BEYOND, FIGURES, _get, fmt_ms, fmt_rate, render_markdown, render_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PROFILES = REPO / "docs" / "profiles"
EVENTS_METRIC = metrics.EVENTS
E2E_METRIC = metrics.E2E_LATENCY
AGE_METRIC = metrics.EVENT_AGE
POLL_S = 0.1


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def redis_url_with_db(url: str, db: int) -> str:
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, f"/{db}", u.query, u.fragment))


def _port(hostport: str) -> int | None:
    with contextlib.suppress(ValueError, IndexError):
        return int(hostport.split(",")[0].rsplit(":", 1)[1])
    return None


class CachedPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, in pure Python: the bench's own biggest
    cost per message) remembered per key: 5,000 units and 2,000 cameras make 99.5 % of the events."""

    def __init__(self, limit: int = 200_000):
        self.cache: dict = {}
        self.limit = limit
        self.default = DefaultPartitioner()

    def __call__(self, key, all_partitions, available):
        if key is None:
            return self.default(key, all_partitions, available)
        k = (key, len(all_partitions))
        p = self.cache.get(k)
        if p is None:
            p = self.default(key, all_partitions, available)
            if len(self.cache) < self.limit:
                self.cache[k] = p
        return p


class CommittedWatch:
    """Sum of a consumer group's committed offsets (fresh topics start at 0: messages consumed and
    committed): a throughput view that does not rely on the worker's own counters."""

    def __init__(self, kafka: str, group: str, client_id: str):
        from kafka.admin import KafkaAdminClient

        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=kafka, client_id=client_id)

    def total(self) -> int | None:
        try:
            offs = self.admin.list_group_offsets([self.group]).get(self.group) or {}
        except Exception:  # the group is (re)balancing or not there yet
            return None
        return sum(om.offset for om in offs.values() if om.offset >= 0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.close()


def scan_log(path: Path) -> dict:
    """Counts and the first distinct lines of warnings/errors in a worker log."""
    findings: dict = {"errors": 0, "warnings": 0, "tracebacks": 0, "samples": []}
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

    def check(self) -> str | None:
        with contextlib.suppress(OSError):
            with self.path.open("rb") as f:
                f.seek(self.pos)
                chunk = f.read()
            cut = chunk.rfind(b"\n") + 1   # only complete lines
            self.pos += cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                if "Crashed reason=" in line:
                    self.crash = self.crash or line.strip()[:300]
        return self.crash


class Worker:
    """One worker process of a phase: its Child, /metrics port, log and data dir."""

    def __init__(self, child: Child, port: int, log_path: Path, datadir: Path, t0: float):
        self.child, self.port, self.log, self.datadir, self.t0 = child, port, log_path, datadir, t0

    def metrics(self) -> list:
        return promtext.parse(promtext.fetch(f"http://127.0.0.1:{self.port}/metrics"))


def lag_by_group(rows) -> dict[str, float]:
    """zonewatch_consumer_lag summed over topics, per consumer group."""
    out: dict[str, float] = {}
    for name, lab, v in rows:
        if name == metrics.CONSUMER_LAG:
            g = lab.get("group", "?")
            out[g] = out.get(g, 0.0) + v
    return out


def outcome_table(rows) -> dict:
    """zonewatch_events_total by outcome and source (summed: rows may come from several workers)."""
    out: dict = {}
    for name, lab, v in rows:
        if name == EVENTS_METRIC:
            d = out.setdefault(lab.get("outcome", "?"), {})
            d[lab.get("source", "?")] = d.get(lab.get("source", "?"), 0.0) + v
    return {k: {**v, "total": sum(v.values())} for k, v in sorted(out.items())}


def hist_summary(h: promtext.Histogram) -> dict:
    lo, hi = h.max_bound()
    return {"count": h.count, "p50_s": h.quantile(0.50), "p99_s": h.quantile(0.99),
            # true when the quantile lies above the largest finite bucket: the value is then a lower bound
            "p50_beyond_last_bucket": h.beyond_last_bucket(0.50), "p99_beyond_last_bucket": h.beyond_last_bucket(0.99),
            "max_bucket_s": [lo, hi], "mean_s": h.mean()}


class Stack:
    """The Kafka and Redis the bench runs on, and the pids of their servers (for CPU figures)."""

    def __init__(self, args):
        self.base = Settings.from_env()
        self.kafka = self.base.kafka
        self.redis_url = redis_url_with_db(self.base.redis, args.redis_db)
        self.redis_port = urllib.parse.urlsplit(self.redis_url).port or 6379
        kp = _port(self.kafka)
        self.kafka_pid = procstat.listener_pid(kp) if kp else None
        self.redis_pid = procstat.listener_pid(self.redis_port)


class Unit:
    """One zone set in one run: its backlog, the three consumers, the latency phases (and the
    scaling or profile passes when asked)."""

    def __init__(self, args, stack: Stack, zs: dict, run_no: int, run_id: str, geo_cache: Path):
        self.a, self.stack, self.zs, self.run_no = args, stack, zs, run_no
        self.tag = f"{run_id}-{zs['name'][:4]}{run_no}"
        self.geo_cache = geo_cache
        self.kafka = stack.kafka
        self.redis_url = stack.redis_url
        self.procs: list[Child] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"zonewatch-bench-{self.tag}-"))
        self.groups: list[str] = []
        self.worker_logs: list[Path] = []
        self.redis = redis.Redis.from_url(self.redis_url)
        self.probe = RedisProbe(self.redis)
        self.input_tps: list[TopicPartition] = []
        self.logdir = RESULTS / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)

    # -- names ---------------------------------------------------------------------------------
    def settings(self, prefix: str, app_id: str) -> Settings:
        return self.stack.base.with_(topic_prefix=prefix, app_id=app_id, partitions=self.a.partitions,
                                     redis=self.redis_url, zones=self.zs["path"])

    def worker_env(self, s: Settings, datadir: Path) -> dict:
        env = dict(os.environ)
        env.update({
            "ZONEWATCH_KAFKA": s.kafka,
            "ZONEWATCH_REDIS": s.redis,
            "ZONEWATCH_ZONES": str(s.zones),
            "ZONEWATCH_TOPIC_PREFIX": s.topic_prefix,
            "ZONEWATCH_APP_ID": s.app_id,
            "ZONEWATCH_PARTITIONS": str(s.partitions),
            "ZONEWATCH_DATADIR": str(datadir),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def stream(self, salt: int) -> CityStream:
        a = self.a
        return CityStream(self.zs["bbox"], units=a.units, cameras=a.cameras, rate=a.stream_rate,
                          mix=tuple(w for _t, w in a.weights), seed=a.seed + 1000 * self.run_no + salt,
                          tag=f"{self.tag}s{salt}", stress=a.stress)

    def start_proc(self, name: str, argv: list[str], *, env, log_path: Path) -> Child:
        child = Child(name, argv, log_path, env=env, cwd=REPO, append=False).start()
        self.procs.append(child)
        return child

    # -- the unit ------------------------------------------------------------------------------
    def run(self) -> dict:
        a = self.a
        t_unit = time.perf_counter()
        self.redis.ping()
        self.redis.flushdb()
        prefix = f"bench-{self.tag}."
        s = self.settings(prefix, f"bench-{self.tag}-w")
        log(f"[{self.zs['name']} run {self.run_no}] Kafka {self.kafka}, Redis {redacted_url(self.redis_url)}, "
            f"prefix {prefix!r}, {a.partitions} partitions; zones: {self.zs['what']}")
        ensure_topics(s)
        input_names = [s.topic(t) for t in topics.INPUT_TOPICS]
        t0 = time.perf_counter()
        stream = self.stream(0)
        messages, expected = gen.stream_backlog(stream.make, a.events, int(time.time() * 1000), a.stream_rate,
                                                seed=a.seed + self.run_no, dup_rate=a.dup_rate,
                                                invalid_rate=a.invalid_rate)
        gen_s = time.perf_counter() - t0
        prod = asyncio.run(self.produce_backlog(prefix, messages))
        del messages
        log(f"  backlog: {a.events:,} messages generated in {gen_s:.1f}s ({expected.accepted:,} valid, "
            f"{expected.duplicate:,} duplicates, {expected.rejected:,} invalid), produced in "
            f"{prod['seconds']:.1f}s ({prod['events_per_s']:,.0f} ev/s), {prod['errors']} errors")
        n = a.events
        res: dict = {"zone_set": self.zs["name"], "run": self.run_no, "tag": self.tag,
                     "backlog": {"messages": n, "generate_s": gen_s, "produce": prod,
                                 "expected": {"accepted": expected.accepted, "duplicate": expected.duplicate,
                                              "rejected": expected.rejected, "by_topic": expected.by_topic,
                                              "duplicates_by_topic": expected.dup_by_topic,
                                              "max_valid_ts": expected.max_valid_ts}}}
        res["baseline_a"] = asyncio.run(self.baseline_a(input_names, n))
        log(f"  A (aiokafka getmany + orjson): {fmt_rate(res['baseline_a'].get('events_per_s'))} ev/s")
        res["baseline_b"] = self.baseline_b(input_names, n)
        log(f"  B (trivial Faust agent): {fmt_rate(res['baseline_b'].get('events_per_s'))} ev/s")
        w = self.backlog_pass(prefix, n, "w", expected)
        w.pop("zones", None)
        res["worker"] = w
        log(f"  W (zonewatch worker): {fmt_rate(w.get('events_per_s'))} ev/s"
            + ("" if w["completed"] else f" — DID NOT COMPLETE: {w['failure']}"))
        wa, wb = w.get("events_per_s"), res["baseline_a"].get("events_per_s")
        res["ratio_a"] = per(wa, wb)
        res["ratio_b"] = per(wa, res["baseline_b"].get("events_per_s"))
        if a.profile and self.run_no == 1:
            log("  profile: the worker on the same backlog under py-spy")
            res["profile"] = self.backlog_pass(prefix, n, "prof", expected, profile=True)
            res["profile"].pop("zones", None)
        if a.seconds > 0 and a.rate > 0:
            log(f"  latency: {a.rate:,} ev/s offered for {a.seconds:g}s")
            res["latency"] = self.latency_phase()
            log("  " + latency_line(res["latency"]))
            if a.sse_clients > 0:
                log(f"  latency with {a.sse_clients} SSE subscribers on a gateway")
                res["latency_sse"] = self.latency_phase(sse_clients=a.sse_clients)
                log("  " + latency_line(res["latency_sse"]))
        res["duration_s"] = time.perf_counter() - t_unit
        return res

    def scaling(self) -> dict:
        """1 worker, then 2 workers (one group), on the same backlog: throughput and CPU."""
        a = self.a
        self.redis.flushdb()
        prefix = f"bench-{self.tag}."
        s = self.settings(prefix, f"bench-{self.tag}-s")
        ensure_topics(s)
        stream = self.stream(7)
        messages, expected = gen.stream_backlog(stream.make, a.scaling_events, int(time.time() * 1000),
                                                a.stream_rate, seed=a.seed + 77, dup_rate=a.dup_rate,
                                                invalid_rate=a.invalid_rate)
        prod = asyncio.run(self.produce_backlog(prefix, messages))
        del messages
        log(f"[{self.zs['name']} scaling] {a.scaling_events:,} messages produced "
            f"({prod['events_per_s']:,.0f} ev/s); 1 worker")
        one = self.backlog_pass(prefix, a.scaling_events, "s1", expected, workers=1)
        log(f"  1 worker: {fmt_rate(one.get('events_per_s'))} ev/s; 2 workers")
        two = self.backlog_pass(prefix, a.scaling_events, "s2", expected, workers=2)
        log(f"  2 workers: {fmt_rate(two.get('events_per_s'))} ev/s")
        return {"zone_set": self.zs["name"], "events": a.scaling_events, "partitions": a.partitions,
                "produce": prod, "one": one, "two": two,
                "ratio": per(two.get("events_per_s"), one.get("events_per_s")),
                # like for like, from the backlog to the final zone state: also when a counter falls short
                "ratio_to_final_state": per(two.get("events_per_s_to_final_state"),
                                            one.get("events_per_s_to_final_state")),
                "ratio_committed": per(two.get("events_per_s_committed"), one.get("events_per_s_committed")),
                "zones_compared": compare_zones(one.pop("zones", None), two.pop("zones", None))}

    # -- backlog producer ------------------------------------------------------------------------
    async def produce_backlog(self, prefix: str, messages) -> dict:
        p = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", enable_idempotence=True,
                             linger_ms=20, max_batch_size=512 * 1024, max_request_size=8 << 20,
                             partitioner=CachedPartitioner(), client_id=f"bench-{self.tag}-producer")
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
                "first_errors": errors[:3], "end_offsets_sum": sum(ends.values())}

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
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
                             auto_offset_reset="earliest")  # else an assignment's own lookup may win
        t_start = time.perf_counter()
        await c.start()
        try:
            tps = [tp for tp in self.input_tps if tp.topic in names]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            count = bad = 0
            samples: list[tuple[float, float]] = []
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
        out: dict = {"completed": done, "events_read": count, "invalid_json": bad,
                     "wall_s": (samples[-1][0] if samples else time.perf_counter()) - t_start}
        if done and len(samples) > 1:
            (t0, c0), (t1, c1) = samples[0], samples[-1]
            out.update(first_to_last_s=t1 - t0, events_per_s=(c1 - c0) / (t1 - t0),
                       events_per_s_5_95=rate_between(samples, n), batches=len(samples))
        elif not done:
            out["failure"] = f"stalled at {count} of {n} events"
        return out

    # -- baseline B ------------------------------------------------------------------------------
    def baseline_b(self, names: list[str], n: int) -> dict:
        app_id = f"bench-{self.tag}-faust"
        self.groups.append(app_id)
        out = self.tmp / f"{app_id}.json"
        logp = self.logdir / f"faust-baseline-{app_id}.log"
        argv = [sys.executable, "-m", "bench.faust_baseline", "--kafka", self.kafka, "--topics", ",".join(names),
                "--app-id", app_id, "--expect", str(n), "--out", str(out), "--partitions", str(self.a.partitions),
                "--datadir", str(self.tmp / app_id)]
        t0 = time.perf_counter()
        p = self.start_proc("faust baseline", argv, env=dict(os.environ, PYTHONUNBUFFERED="1"), log_path=logp)
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

    # -- workers -----------------------------------------------------------------------------------
    def start_worker(self, s: Settings, k: int = 1) -> Worker:
        if k == 1:
            self.groups += [s.app_id, f"{s.app_id}-ingest"]
        port = free_port()
        logp = self.logdir / f"worker-{s.app_id}-{k}.log"
        self.worker_logs.append(logp)
        datadir = self.tmp / f"{s.app_id}-{k}"
        datadir.mkdir(parents=True, exist_ok=True)
        # the prepared zone geometry (streams/geocache.py, keyed by the zones file's bytes) is shared
        # by every worker of the bench: a city's takes tens of seconds to build
        for f in self.geo_cache.glob("geometry-*.pickle"):
            with contextlib.suppress(OSError):
                shutil.copy2(f, datadir / f.name)
        t0 = time.perf_counter()
        p = self.start_proc("worker", [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port),
                                       "--loglevel", "info"], env=self.worker_env(s, datadir), log_path=logp)
        return Worker(p, port, logp, datadir, t0)

    def stop_worker(self, w: Worker) -> int | None:
        w.child.stop(grace=20)
        for f in w.datadir.glob("geometry-*.pickle"):
            if not (self.geo_cache / f.name).exists():
                with contextlib.suppress(OSError):
                    tmp = self.geo_cache / (f.name + ".tmp")
                    shutil.copy2(f, tmp)
                    os.replace(tmp, self.geo_cache / f.name)
        return w.child.returncode

    def wait_metrics(self, w: Worker, timeout: float = 180.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and w.child.poll() is None:
            try:
                promtext.fetch(f"http://127.0.0.1:{w.port}/metrics", timeout=1.0)
                return time.perf_counter()
            except OSError:
                time.sleep(0.1)
        return None

    def cpu_watch(self, workers: list[Worker], gateway: Child | None = None) -> procstat.CpuWatch:
        groups: dict[str, tuple[int | None, bool]] = {}
        for i, w in enumerate(workers, 1):
            groups[f"worker {i}" if len(workers) > 1 else "worker"] = (w.child.pid, True)
        if gateway is not None:
            groups["gateway"] = (gateway.pid, True)
        groups["kafka"] = (self.stack.kafka_pid, False)
        groups["redis"] = (self.stack.redis_pid, False)
        groups["bench"] = (os.getpid(), False)   # the producer, the pollers, the SSE clients
        return procstat.CpuWatch(groups)

    def backlog_pass(self, prefix: str, n: int, app_tag: str, expected: gen.Expected, *, workers: int = 1,
                     profile: bool = False) -> dict:
        """Fresh worker(s) (one consumer group) on the backlog until all N are counted."""
        self.redis.flushdb()
        s = self.settings(prefix, f"bench-{self.tag}-{app_tag}")
        ws = [self.start_worker(s, k + 1) for k in range(workers)]
        res: dict = {"app_id": s.app_id, "workers": workers, "logs": [str(w.log) for w in ws], "completed": False}
        spy: subprocess.Popen | None = None
        svg = None
        cpu = self.cpu_watch(ws)
        try:
            ups = [self.wait_metrics(w) for w in ws]
            if any(u is None for u in ups):
                res["failure"] = f"/metrics never came up (exit codes {[w.child.poll() for w in ws]})"
                return res
            res["metrics_up_s"] = max(u for u in ups if u is not None) - ws[0].t0
            if profile:
                spy, svg = self.start_py_spy(ws[0])
                res["profile_svg"] = str(svg) if svg else None
                if spy is None:
                    res["failure"] = "py-spy not found: `make setup` installs it (test extras)"
                    return res
            samples: list[tuple[float, float]] = []
            by_src: list[dict] = []
            last_c, last_change = -1.0, time.perf_counter()
            deadline = time.perf_counter() + self.a.timeout
            watches = [LogWatch(w.log) for w in ws]
            rows_by_w: list[list] = [[] for _ in ws]
            t_lo = t_hi = None
            committed = CommittedWatch(self.kafka, f"{s.app_id}-ingest", f"bench-{self.tag}-offsets")
            csamples: list[tuple[float, float]] = []
            last_offsets_check = 0.0
            first_t: float | None = None
            t_final: float | None = None
            last_final_check = 0.0
            cpu.sample()
            while True:
                crash = next((x.check() for x in watches if x.check()), None)
                if crash:
                    res["failure"] = f"Faust agent crashed after counting {last_c:.0f} of {n}: {crash}"
                    break
                if time.perf_counter() > deadline:
                    res["failure"] = f"--timeout {self.a.timeout:g}s: counted {last_c:.0f} of {n}"
                    break
                dead = [w for w in ws if w.child.poll() is not None]
                if dead:
                    res["failure"] = (f"worker exited with code {dead[0].child.returncode} after counting "
                                      f"{last_c:.0f} of {n}")
                    break
                try:
                    rows_by_w = [w.metrics() for w in ws]
                except OSError as exc:
                    res.setdefault("metrics_errors", []).append(repr(exc))
                    time.sleep(POLL_S)
                    continue
                now = time.perf_counter()
                c = sum(promtext.counter_sum(r, EVENTS_METRIC) for r in rows_by_w)
                src: dict = {}
                for r in rows_by_w:
                    for k, v in promtext.counter_sum(r, EVENTS_METRIC, by="source").items():
                        src[k] = src.get(k, 0.0) + v
                samples.append((now, c))
                by_src.append(src)
                if now - last_offsets_check >= 0.5:
                    last_offsets_check = now
                    tot = committed.total()
                    if tot is not None:
                        csamples.append((now, float(tot)))
                # CPU over the measured stretch: sampled when the count first passes 5 % and 95 % (with
                # several workers, whose counters may fall short, also the ingest group's offsets)
                done_in = max(c, csamples[-1][1] if csamples else 0.0) if workers > 1 else c
                if t_lo is None and done_in >= 0.05 * n:
                    t_lo = cpu.sample()
                if t_hi is None and done_in >= 0.95 * n:
                    t_hi = cpu.sample()
                if c != last_c:
                    last_c, last_change = c, now
                if first_t is None and max(c, csamples[-1][1] if csamples else 0.0) > 0:
                    first_t = now
                # once ingest has committed everything: is every zone document at the final clock?
                # (twice a second: reading every zone document costs the bench CPU)
                if t_final is None and csamples and csamples[-1][1] >= n and now - last_final_check >= 0.5:
                    last_final_check = now
                    if self.zones_final(expected.max_valid_ts):
                        t_final = now
                if c >= n:
                    break
                if t_final is not None and now - last_change > 3:
                    res["failure"] = (f"the zone state is final and all {n} messages are committed by the ingest "
                                      f"group, but the workers counted {c:.0f} (zonewatch_events_total falls short)")
                    break
                if now - last_change > self.a.stall + (120 if c == 0 else 0):
                    res["failure"] = f"no progress for {now - last_change:.0f}s: counted {c:.0f} of {n}"
                    break
                time.sleep(POLL_S)
            cpu.sample()
            committed.close()
            res["counted"] = last_c
            # the same rate from the ingest group's committed offsets (independent of the counters)
            res["events_per_s_committed"] = rate_between(csamples, n)
            if t_lo is not None and t_hi is not None:
                res["cpu"] = cpu.between(t_lo, t_hi)
            res["progress"] = [[round(t - ws[0].t0, 2), int(c)] for t, c in samples[::5]]
            per_src = {}
            for t_name, total in expected.by_topic.items():
                srcname = topics.SOURCE_OF_TOPIC[t_name]
                series = [(t, d.get(srcname, 0.0)) for (t, _c), d in zip(samples, by_src, strict=True)]
                per_src[srcname] = rate_between(series, total) if total >= 20 else None
            res["events_per_s_by_source"] = per_src
            rows = [x for r in rows_by_w for x in r]
            res["outcomes"] = outcome_table(rows)
            res["expected_outcomes"] = {"accepted": expected.accepted, "duplicate": expected.duplicate,
                                        "rejected": expected.rejected}
            acc = res["outcomes"].get("accepted", {}).get("total", 0.0)
            # every valid event must be counted accepted once, whatever the re-deliveries (which count
            # as duplicates): fewer means events were lost or miscounted, even when the total reached N
            res["accepted_missing"] = max(0.0, expected.accepted - acc)
            # the final zone documents (also of a stalled pass: what the wall would show)
            res["zones"], t_fin = self.final_zones(expected.max_valid_ts, wait=20.0 if last_c >= n else 3.0)
            t_final = t_final or t_fin
            # backlog -> final state: N / (first event read or counted .. every zone at the final clock);
            # independent of the counters, start-up excluded, the 2-worker rebalance included
            if first_t is not None and t_final is not None and t_final > first_t:
                res["events_per_s_to_final_state"] = n / (t_final - first_t)
            if last_c >= n:
                res["completed"] = True
                t_all = crossing(samples, n)
                res["start_to_all_counted_s"] = t_all - ws[0].t0 if t_all else None
                res["events_per_s"] = rate_between(samples, n)
            if spy is not None:
                res["profile"] = self.stop_py_spy(spy, svg)
                spy = None
            if workers > 1:
                res["per_worker_counted"] = [promtext.counter_sum(r, EVENTS_METRIC) for r in rows_by_w]
            if not res["completed"]:
                res["consumer_lag_at_end"] = [lag_by_group(r) for r in rows_by_w]
                res["committed_behind_end"] = self.committed_behind([s.app_id, f"{s.app_id}-ingest"])
            return res
        finally:
            if spy is not None:
                self.stop_py_spy(spy, svg)
            for w in ws:
                self.stop_worker(w)
            res["exit_codes"] = [w.child.returncode for w in ws]
            res["log_findings"] = [scan_log(w.log) for w in ws]

    def zone_docs(self) -> tuple[list[str], dict]:
        ids = sorted(z.decode() for z in self.redis.smembers(keys.ZONES))
        vals = self.redis.mget([keys.zone(z) for z in ids]) if ids else []
        return ids, {z: orjson.loads(v) for z, v in zip(ids, vals, strict=True) if v}

    def zones_final(self, final_clock: int) -> bool:
        """Every registered zone has a document at the final clock."""
        ids, docs = self.zone_docs()
        return bool(ids) and len(docs) == len(ids) and all(d.get("clock") == final_clock for d in docs.values())

    def final_zones(self, final_clock: int, wait: float = 20.0) -> tuple[dict, float | None]:
        """The zone documents once every one carries the final clock (or after `wait` s) as {zone:
        {today, windows}} — a function of the accepted events and the clock alone (CONTRACT §3), so
        passes over the same backlog must agree — and when they were final (None if not)."""
        deadline = time.perf_counter() + wait
        while True:
            ids, docs = self.zone_docs()
            if ids and len(docs) == len(ids) and all(d.get("clock") == final_clock for d in docs.values()):
                t_final: float | None = time.perf_counter()
                break
            if time.perf_counter() > deadline:
                t_final = None
                break
            time.sleep(0.2)
        return ({z: {"clock": d.get("clock"), "today": d.get("today"), "windows": d.get("windows")}
                 for z, d in docs.items()}, t_final)

    def committed_behind(self, groups: list[str]) -> dict:
        """{group: {topic-partition: log end - committed offset}} for partitions not at their end:
        where a stalled pass stopped (a diagnosis for the report, not a figure)."""
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        out: dict = {}
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.kafka, client_id=f"bench-{self.tag}-diag")
            cons = KafkaConsumer(bootstrap_servers=self.kafka, group_id=None, enable_auto_commit=False)
        except Exception as exc:
            return {"error": repr(exc)}
        try:
            for g in groups:
                committed = admin.list_group_offsets([g]).get(g) or {}
                ends = cons.end_offsets(list(committed)) if committed else {}
                out[g] = {f"{tp.topic}[{tp.partition}]": ends[tp] - om.offset
                          for tp, om in committed.items() if tp in ends and ends[tp] - om.offset > 0}
        except Exception as exc:
            out["error"] = repr(exc)
        finally:
            admin.close()
            cons.close()
        return out

    # -- py-spy ------------------------------------------------------------------------------------
    def start_py_spy(self, w: Worker) -> tuple[subprocess.Popen | None, Path | None]:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            return None, None
        out_dir = Path(self.a.profile_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = f"worker-{self.zs['name']}{'-stress' if self.a.stress else ''}-{self.a.commit_short}.svg"
        svg = out_dir / name
        logp = self.logdir / f"py-spy-{self.tag}.log"
        with open(logp, "wb") as lf:
            p = subprocess.Popen([exe, "record", "--pid", str(w.child.pid), "--subprocesses", "--rate", "100",
                                  "--format", "flamegraph", "--output", str(svg)],
                                 stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return p, svg

    def stop_py_spy(self, p: subprocess.Popen, svg: Path | None) -> dict:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)   # py-spy writes the flame graph on SIGINT
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        ok = svg is not None and svg.exists() and svg.stat().st_size > 0
        return {"svg": str(svg) if svg else None, "written": ok, "exit_code": p.returncode}

    # -- latency at a fixed offered load -----------------------------------------------------------
    def latency_phase(self, sse_clients: int = 0) -> dict:
        self.redis.flushdb()
        tag = f"l{sse_clients}" if sse_clients else "l"
        prefix = f"bench-{self.tag}-{tag}."
        s = self.settings(prefix, f"bench-{self.tag}-{tag}w")
        ensure_topics(s)
        w = self.start_worker(s)
        subscribers = None
        res: dict = {"app_id": s.app_id, "log": str(w.log), "rate": self.a.rate, "seconds": self.a.seconds,
                     "sse_clients": sse_clients}
        try:
            if self.wait_metrics(w) is None:
                res["failure"] = f"/metrics never came up (exit code {w.child.poll()})"
                return res
            if sse_clients:
                subscribers = SseSubscribers(self, s, w.datadir, sse_clients)
                subscribers.start()
            cpu = self.cpu_watch([w], subscribers.proc if subscribers else None)
            res.update(asyncio.run(self._paced(s, w, LogWatch(w.log), cpu)))
            if subscribers is not None:
                res["sse"] = subscribers.stop()
            return res
        finally:
            if subscribers is not None:
                res.setdefault("sse", subscribers.stop())
            self.stop_worker(w)
            res["exit_code"] = w.child.returncode
            res["log_findings"] = scan_log(w.log)

    async def _counted(self, w: Worker) -> tuple[float, list]:
        rows = await asyncio.to_thread(w.metrics)
        return promtext.counter_sum(rows, EVENTS_METRIC), rows

    async def _wait_counted(self, w: Worker, target: int, watch: LogWatch) -> tuple[bool, float, list, str]:
        """Wait until the worker counted `target` events: (ok, counted, rows, why not)."""
        last, last_change = -1.0, time.perf_counter()
        deadline = last_change + self.a.timeout
        while True:
            c, rows = await self._counted(w)
            now = time.perf_counter()
            if c >= target:
                return True, c, rows, ""
            if c != last:
                last, last_change = c, now
            if watch.check():
                return False, c, rows, f"Faust agent crashed: {watch.crash}"
            if w.child.poll() is not None:
                return False, c, rows, f"worker exited with code {w.child.returncode}"
            if now - last_change > self.a.stall + (120 if c == 0 else 0) or now > deadline:
                return False, c, rows, (f"--timeout {self.a.timeout:g}s" if now > deadline
                                        else f"no progress for {now - last_change:.0f}s")
            await asyncio.sleep(POLL_S)

    async def _paced(self, s: Settings, w: Worker, watch: LogWatch, cpu: procstat.CpuWatch) -> dict:
        a = self.a
        stream = self.stream(100 + len(self.worker_logs))
        names = {t: s.topic(t) for t in topics.INPUT_TOPICS}
        prod = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", enable_idempotence=True,
                                linger_ms=a.linger_ms, max_batch_size=256 * 1024,
                                partitioner=CachedPartitioner(), client_id=f"bench-{self.tag}-paced")
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
                    topic, key, value, _ts = stream.make(int(time.time() * 1000))
                    futs.append(await prod.send(names[topic], value, key=key))
                    sent += 1
                last = time.perf_counter()
                await asyncio.sleep(0.002)
            sent_total += sent
            return sent, first, last, behind

        try:
            # warm-up: the first events trigger partition assignment and the (empty) rebuild
            await paced(a.warmup)
            ok, c, _, why = await self._wait_counted(w, sent_total, watch)
            if not ok:
                return {"failure": f"warm-up: worker counted {c:.0f} of {sent_total} events ({why})"}
            await asyncio.sleep(1.0)  # a few idle flushes: the worker is caught up and idle
            c0, rows0 = await self._counted(w)
            h0 = promtext.Histogram.from_rows(rows0, E2E_METRIC)
            writes0 = promtext.counter_sum(rows0, metrics.ZONE_WRITES)
            snap0 = await asyncio.to_thread(self.probe.snapshot)
            t_cpu0 = cpu.sample()

            lag_samples: list[tuple[float, float, dict]] = []
            phase_start = time.perf_counter()

            async def sampler():
                while True:
                    await asyncio.sleep(0.25)
                    with contextlib.suppress(OSError):
                        cc, rr = await self._counted(w)
                        lag_samples.append((time.perf_counter() - phase_start, cc, lag_by_group(rr)))

            task = asyncio.create_task(sampler())
            try:
                sent, first, last, behind = await paced(a.seconds)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            t_cpu1 = cpu.sample()
            await prod.flush()
            res = await asyncio.gather(*futs, return_exceptions=True)
            futs.clear()
            errors = [repr(x) for x in res if isinstance(x, BaseException)]
            t_caught = time.perf_counter()
            ok, c, rows, why = await self._wait_counted(w, sent_total, watch)
            caught_up_after_s = time.perf_counter() - t_caught
            # the e2e observations land after the flush that wrote the events: wait until stable
            prev, stable_since = None, time.perf_counter()
            while time.perf_counter() - stable_since < 0.6:
                await asyncio.sleep(POLL_S)
                _c, rows = await self._counted(w)
                cnt = promtext.Histogram.from_rows(rows, E2E_METRIC).count
                if cnt != prev:
                    prev, stable_since = cnt, time.perf_counter()
            snap1 = await asyncio.to_thread(self.probe.snapshot)
            c1 = promtext.counter_sum(rows, EVENTS_METRIC)
            h = promtext.Histogram.from_rows(rows, E2E_METRIC) - h0
            accepted = (promtext.counter_sum([x for x in rows if x[1].get("outcome") == "accepted"], EVENTS_METRIC)
                        - promtext.counter_sum([x for x in rows0 if x[1].get("outcome") == "accepted"], EVENTS_METRIC))
            achieved = (sent - 1) / (last - first) if last > first else None
            out: dict = {
                "events_sent": sent, "send_errors": len(errors), "first_send_errors": errors[:3],
                "achieved_rate": achieved, "producer_max_behind_s": behind,
                "worker_counted_all": ok, "counted_total": c, "sent_total_incl_warmup": sent_total,
                "catch_up_after_last_send_s": caught_up_after_s,
                "e2e": hist_summary(h), "accepted_in_phase": accepted,
                # where the time went (zonewatch_stage_seconds between the phase's two scrapes)
                "stages": {st: hist_summary(promtext.Histogram.from_rows(rows, metrics.STAGE, {"stage": st})
                                            - promtext.Histogram.from_rows(rows0, metrics.STAGE, {"stage": st}))
                           for st in metrics.STAGES},
                "e2e_observations_per_accepted_event": per(h.count, accepted),
                "cpu": cpu.between(t_cpu0, t_cpu1)}
            # kept up: every event sent was counted within --keepup seconds after the last send
            out["kept_up"] = bool(ok and caught_up_after_s <= a.keepup)
            out["offered_reached"] = bool(achieved and achieved >= 0.98 * a.rate)
            during = [(t, cc) for t, cc, _l in lag_samples if t <= last - phase_start]
            out["worker_events_per_s_while_sending"] = None
            if len(during) > 1:
                (ta, ca), (tb, cb) = during[0], during[-1]
                out["worker_events_per_s_while_sending"] = (cb - ca) / (tb - ta) if tb > ta else None
            if lag_samples:
                # the bench's own view: events offered so far minus counted (sampled every 0.25 s)
                out["max_offered_minus_counted"] = max(
                    0.0, max(min(sent, a.rate * t) - (cc - c0) for t, cc, _l in lag_samples))
                # the worker's: zonewatch_consumer_lag (refreshed by the worker every few seconds)
                groups = sorted({g for _t, _c, lg in lag_samples for g in lg})
                out["consumer_lag_max"] = {g: max(lg.get(g, 0.0) for _t, _c, lg in lag_samples) for g in groups}
                out["consumer_lag_max_total"] = max(sum(lg.values()) for _t, _c, lg in lag_samples)
                out["consumer_lag_samples"] = [[round(t, 2), lg] for t, _c, lg in lag_samples[::4]]
            out["consumer_lag_end"] = lag_by_group(rows)
            events_in = c1 - c0
            d = RedisProbe.delta(snap0, snap1)
            writes = promtext.counter_sum(rows, metrics.ZONE_WRITES) - writes0
            out["redis"] = {"events": events_in, "window_s": d["seconds"], "commands": d["commands"],
                            "commands_per_event_all": per(sum(d["commands"].values()), events_in),
                            "script_calls_per_event": per(script_calls(d["commands"]), events_in),
                            "zone_writes_per_event": per(writes, events_in),
                            "zone_updates_xadd_per_event": per(d["zone_updates_added"], events_in)}
            if not ok:
                out["failure"] = f"worker counted {c:.0f} of {sent_total} events ({why})"
            elif a.monitor_seconds > 0:
                out["monitor"] = await self._monitor_sample(paced, w, watch, cpu, lambda: sent_total)
                if out["monitor"].get("share"):
                    out["redis"]["split"] = sp = split_commands(d["commands"], out["monitor"]["share"])
                    out["redis"]["top_level_per_event"] = per(sp["top_level"], events_in)
                    out["redis"]["in_scripts_per_event"] = per(sp["in_scripts"], events_in)
            return out
        finally:
            await prod.stop()

    async def _monitor_sample(self, paced, w: Worker, watch: LogWatch, cpu: procstat.CpuWatch, sent_total) -> dict:
        """MONITOR for --monitor-seconds under the same offered load, after a second of it: which
        commands the worker (and the gateway) sent, which its scripts ran, how many SETs of zone
        documents — per event the worker counted meanwhile."""
        await paced(1.0)
        mon = MonitorSample(self.redis)
        await asyncio.to_thread(mon.start)
        c0, _ = await self._counted(w)
        await paced(self.a.monitor_seconds)
        c1, _ = await self._counted(w)
        owners = procstat.client_owners(self.stack.redis_port, {
            name: cpu.pids(name) for name in ("worker", "gateway")} | {"bench": {os.getpid()}})
        tally = await asyncio.to_thread(mon.stop)
        ok, _c, _r, why = await self._wait_counted(w, sent_total(), watch)
        events = c1 - c0
        grouped = tally.grouped(owners)
        zone_sets = tally.zone_sets_by(owners)
        out = {"seconds": mon.t1 - mon.t0, "events": events, "lines": tally.lines, "bytes": tally.bytes,
               "unparsed": tally.unparsed, "error": mon.error, "caught_up_after": ok,
               "commands": grouped, "share": top_level_share(grouped),
               "per_event": {who: per(sum(cmds.values()), events) for who, cmds in grouped.items()},
               "zone_sets_per_event": per(sum(zone_sets.values()), events),
               "worker_top_level_per_event": per(sum(grouped.get("worker", {}).values()), events),
               "in_scripts_per_event": per(sum(grouped.get(LUA, {}).values()), events)}
        if not ok:
            out["failure"] = why
        return out

    # -- cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for p in reversed(self.procs):
            p.stop(grace=20)
        with contextlib.suppress(Exception):
            self.redis.flushdb()
            self.redis.close()
        if not self.a.keep:
            self.delete_kafka_objects()
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
                except Exception as exc:
                    log(f"cleanup: deleting topics failed: {exc}")
            if self.groups:
                try:
                    admin.delete_groups(self.groups)
                except Exception as exc:
                    log(f"cleanup: deleting consumer groups failed: {exc}")
        finally:
            admin.close()


class SseSubscribers:
    """A gateway on the latency worker's Redis and N Server-Sent-Events clients reading /stream,
    in a thread of their own (one asyncio loop, one TCP connection per client)."""

    def __init__(self, unit: Unit, s: Settings, datadir: Path, n: int):
        import secrets
        import threading

        self.n = n
        self.token = secrets.token_urlsafe(12)
        self.port = free_port()
        env = unit.worker_env(s, datadir)
        env["ZONEWATCH_GATEWAY_TOKENS"] = self.token
        self.log_path = unit.logdir / f"gateway-{s.app_id}.log"
        self.proc = unit.start_proc("gateway",
                                    [sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(self.port)],
                                    env=env, log_path=self.log_path)
        self.events = [0] * n
        self.resyncs = [0] * n
        self.connected = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._result: dict | None = None

    def start(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"gateway did not start (log {self.log_path})") from None
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
                # a full snapshot of a city's 412 zones is one SSE data line well over asyncio's 64 KiB
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 26)
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


def compare_zones(a: dict | None, b: dict | None) -> dict | None:
    """How two passes' final zone states differ: zones whose `today` or `windows` differ, and the
    difference of the day's call and alert counts summed over zones."""
    if not a or not b:
        return None
    differ = sorted(z for z in set(a) | set(b) if (a.get(z) or {}).get("today") != (b.get(z) or {}).get("today")
                    or (a.get(z) or {}).get("windows") != (b.get(z) or {}).get("windows"))

    def total(docs, what):
        return sum(((d or {}).get("today") or {}).get(what, 0) for d in docs.values())

    return {"zones": len(set(a) | set(b)), "zones_differing": len(differ), "first_differing": differ[:5],
            "today_calls": [total(a, "calls"), total(b, "calls")],
            "today_alerts": [total(a, "alerts"), total(b, "alerts")]}


def latency_line(L: dict) -> str:
    if not L or L.get("failure") and not L.get("e2e"):
        return f"latency FAILED: {(L or {}).get('failure')}"
    e2e = L["e2e"]
    r = L.get("redis") or {}
    return (f"p50 {fmt_ms(e2e.get('p50_s'))}, p99 {fmt_ms(e2e.get('p99_s'))}, achieved "
            f"{fmt_rate(L.get('achieved_rate'))} ev/s, kept up: {'yes' if L.get('kept_up') else 'NO'} "
            f"(caught up {L.get('catch_up_after_last_send_s', 0):.1f}s after the last send, consumer lag max "
            f"{fmt_rate(L.get('consumer_lag_max_total'))}); Redis per event: {_f3(r.get('commands_per_event_all'))} "
            f"commands executed, {_f3(r.get('top_level_per_event'))} top-level, "
            f"{_f3(r.get('zone_writes_per_event'))} zone writes; stages p50/p99 "
            + ", ".join(f"{st} {fmt_ms(v.get('p50_s'))}/{fmt_ms(v.get('p99_s'))}"
                        for st, v in (L.get("stages") or {}).items() if v.get("count")))


def _f3(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "—"


# -- summary -------------------------------------------------------------------------------------
def summarize(units: list[dict], zone_sets: list[str]) -> dict:
    out = {}
    for zs in zone_sets:
        mine = [u for u in units if u["zone_set"] == zs]
        for u in mine:
            p99, sp99 = _get(u, "latency", "e2e", "p99_s"), _get(u, "latency_sse", "e2e", "p99_s")
            u["sse_p99_increase_pct"] = (100.0 * (sp99 - p99) / p99) if p99 and sp99 is not None else None
        figs = {key: {"label": label, **spread(_get(u, *path) for u in mine)} for key, label, path in FIGURES}
        for key, flag in BEYOND.items():
            path = next(p for k, _l, p in FIGURES if k == key)
            figs[key]["lower_bounds"] = [_get(u, *path) for u in mine if _get(u, *flag)]
        figs["kept_up"] = {"label": "worker kept up at the offered load",
                           "yes": count_true(_get(u, "latency", "kept_up") for u in mine)[0],
                           "of": count_true(_get(u, "latency", "kept_up") for u in mine)[1]}
        figs["sse_kept_up"] = {"label": "kept up with SSE subscribers",
                               "yes": count_true(_get(u, "latency_sse", "kept_up") for u in mine)[0],
                               "of": count_true(_get(u, "latency_sse", "kept_up") for u in mine)[1]}
        out[zs] = figs
    return out


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
    commit = None
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "streams", "zonewatch",
                                "connectors", "contract", "pyproject.toml"], cwd=REPO, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += "+dirty"  # the worker ran uncommitted changes
    vers = {}
    for pkg in ("faust-streaming", "aiokafka", "orjson", "redis", "py-spy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            vers[pkg] = importlib.metadata.version(pkg)
    redis_version = None
    with contextlib.suppress(Exception):
        redis_version = redis.Redis.from_url(Settings.from_env().redis).info("server").get("redis_version")
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gib": mem, "os": platform.platform(),
            "python": platform.python_version(), "redis": redis_version, "packages": vers, "commit": commit}


def kafka_version(stack_pid: int | None) -> str | None:
    """From the broker's class path (…/kafka-<version>/libs/*), when it is a process we can see."""
    if not stack_pid:
        return None
    with contextlib.suppress(OSError):
        cmd = Path(f"/proc/{stack_pid}/cmdline").read_bytes().decode(errors="replace")
        m = re.search(r"kafka-(\d+\.\d+\.\d+)/libs", cmd)
        if m:
            return m.group(1)
    return None


# -- command line ----------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="zonewatch throughput (vs. a bare aiokafka consumer and a trivial Faust agent, same run, "
                    "same topics), end-to-end latency at a fixed offered load, Redis commands per event and the "
                    "cost of SSE subscribers, on the demo and a city zone set; min/median/max over runs. Needs "
                    "Kafka and Redis (ZONEWATCH_KAFKA / ZONEWATCH_REDIS) that nothing else uses while it runs. "
                    "docs/BENCHMARKS.md describes every phase.",
    )
    p.add_argument("--runs", type=int, default=5, help="runs of every phase on every zone set (default 5; "
                                                        "figures are reported as min / median / max)")
    p.add_argument("--zones", default="demo,city",
                   help="zone sets, comma-separated: demo (the bundled 39 zones), city (Zhengzhou's 12 districts "
                        "+ a 20x20 grid, 412 zones) (default demo,city)")
    p.add_argument("--stress", action="store_true", help="units jump anywhere between fixes (every fix in a new cell)")
    p.add_argument("--events", type=int, default=200_000,
                   help="messages in each backlog, duplicates and invalid ones included (default 200000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the bench topics (default 4)")
    p.add_argument("--units", type=int, default=5000, help="patrol units of the event stream (default 5000)")
    p.add_argument("--cameras", type=int, default=2000, help="cameras of the event stream (default 2000)")
    p.add_argument("--stream-rate", type=float, default=740.0,
                   help="events per second of event time in the backlog (default 740, a district's load: "
                        "a unit's fixes come ~8 s apart, tens of metres apart)")
    p.add_argument("--rate", type=int, default=5000, help="offered load of the latency phases, events/s (default 5000)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="duration of each latency phase (default 20; 0 skips the latency phases)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of paced load before a latency phase is measured (default 3)")
    p.add_argument("--keepup", type=float, default=2.0,
                   help="the worker kept up when it had counted every event this many seconds after the last "
                        "send (default 2)")
    p.add_argument("--monitor-seconds", type=float, default=3.0,
                   help="Redis MONITOR sample after each latency phase, same load, to split commands the worker "
                        "sent from those its scripts ran (default 3; 0 skips it)")
    p.add_argument("--linger-ms", type=int, default=5, help="producer linger of the latency phases (default 5)")
    p.add_argument("--sse-clients", type=int, default=200,
                   help="SSE subscribers on a gateway during a second latency phase (0 skips it; default 200)")
    p.add_argument("--scaling", action="store_true",
                   help="after the runs: 1 worker vs 2 workers on one backlog per zone set (throughput ratio, CPU "
                        "per process)")
    p.add_argument("--scaling-events", type=int, default=300_000,
                   help="messages in the scaling phase's backlog (default 300000)")
    p.add_argument("--profile", action="store_true",
                   help="run 1: one more worker pass on each backlog under py-spy; flame graphs in --profile-dir")
    p.add_argument("--profile-dir", default=str(PROFILES), help="where the flame graphs go (default docs/profiles)")
    p.add_argument("--redis-db", type=int, default=9,
                   help="Redis database the workers write to; flushed before and after (default 9)")
    p.add_argument("--dup-rate", type=float, default=0.005, help="fraction of duplicate messages (default 0.005)")
    p.add_argument("--invalid-rate", type=float, default=0.001, help="fraction of invalid messages (default 0.001)")
    p.add_argument("--mix", default="85,14.5,0.5", metavar="GPS,ALERTS,CALLS",
                   help="percentages of patrol fixes, camera alerts and 110 calls (default 85,14.5,0.5)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the event streams")
    p.add_argument("--stall", type=float, default=60.0,
                   help="give up on a consumer after this many seconds without progress (default 60)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="give up on one consumer measurement or catch-up wait after this many seconds (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the bench topics and consumer groups in Kafka")
    p.add_argument("--out", help="JSON result file (default bench/results/<time>-<id>.json, also latest.json)")
    a = p.parse_args(argv)
    if a.events < 100:
        p.error("--events must be at least 100")
    if a.runs < 1 and not (a.runs == 0 and a.scaling):
        p.error("--runs must be at least 1 (0 only with --scaling: the scaling phase alone)")
    try:
        mix = [float(x) for x in a.mix.split(",")]
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
            raise ValueError
    except ValueError:
        p.error("--mix takes three non-negative percentages, e.g. 80,15,5")
    a.weights = tuple((t, w / sum(mix)) for t, w in zip((topics.GPS, topics.ALERTS, topics.CALLS), mix, strict=True))
    a.zone_sets = [z.strip() for z in a.zones.split(",") if z.strip()]
    bad = [z for z in a.zone_sets if z not in ("demo", "city")]
    if bad or not a.zone_sets:
        p.error(f"--zones takes demo and/or city, not {', '.join(bad) or 'nothing'}")
    if not 0 <= a.redis_db <= 15:
        p.error("--redis-db must be 0..15")
    return a


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps the bench's stacks to stderr
    started = time.time()
    t_run = time.perf_counter()
    run_id = uuid.uuid4().hex[:6]
    RESULTS.mkdir(parents=True, exist_ok=True)
    gi = RESULTS / ".gitignore"
    if not gi.exists():
        gi.write_text("# bench output, not versioned\n*\n")
    machine = machine_info()
    a.commit_short = (machine.get("commit") or "nocommit").replace("+", "-")
    stack = Stack(a)
    machine["kafka"] = kafka_version(stack.kafka_pid)
    machine["loadavg_start"] = list(os.getloadavg())
    zsets = []
    for name in a.zone_sets:
        path, what, bbox = zone_set(name, RESULTS / "zones")
        zsets.append({"name": name, "path": path, "what": what, "bbox": bbox})
    geo_cache = RESULTS / "geometry"
    geo_cache.mkdir(parents=True, exist_ok=True)
    log(f"bench {run_id}: {a.runs} run(s) on {', '.join(z['name'] for z in zsets)}"
        f"{' (stress: units jump anywhere)' if a.stress else ''}; Kafka {stack.kafka} (pid {stack.kafka_pid}), "
        f"Redis {redacted_url(stack.redis_url)} (pid {stack.redis_pid})")
    units: list[dict] = []
    scaling: list[dict] = []
    interrupted = False
    try:
        for r in range(1, a.runs + 1):
            for zs in zsets:
                u = Unit(a, stack, zs, r, run_id, geo_cache)
                try:
                    units.append(u.run())
                finally:
                    u.cleanup()
        if a.scaling:
            for zs in zsets:
                u = Unit(a, stack, zs, 0, run_id, geo_cache)
                try:
                    scaling.append(u.scaling())
                finally:
                    u.cleanup()
    except KeyboardInterrupt:
        log("interrupted; cleaning up and reporting what was measured")
        interrupted = True
    machine["loadavg_end"] = list(os.getloadavg())
    result = {
        "run_id": run_id,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"runs": a.runs, "zone_sets": [{k: str(v) if k == "path" else v for k, v in z.items()}
                                                  for z in zsets],
                   "stress": a.stress, "events": a.events, "partitions": a.partitions, "units": a.units,
                   "cameras": a.cameras, "stream_rate": a.stream_rate, "rate": a.rate, "seconds": a.seconds,
                   "warmup_s": a.warmup, "keepup_s": a.keepup, "monitor_seconds": a.monitor_seconds,
                   "sse_clients": a.sse_clients, "redis_db": a.redis_db, "kafka": stack.kafka, "seed": a.seed,
                   "mix": {topics.SOURCE_OF_TOPIC[t]: w for t, w in a.weights},
                   "dup_rate": a.dup_rate, "invalid_rate": a.invalid_rate, "scaling": a.scaling,
                   "scaling_events": a.scaling_events, "profile": a.profile},
        "units": units,
        "summary": summarize(units, [z["name"] for z in zsets]),
        "scaling": scaling,
        "interrupted": interrupted,
        "duration_s": time.perf_counter() - t_run,
    }
    out = Path(a.out) if a.out else RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    out.write_bytes(blob)
    (RESULTS / "latest.json").write_bytes(blob)
    md = render_markdown(result)
    (RESULTS / "latest.md").write_text(md + "\n")
    print(render_text(result))
    print()
    print(md)
    log(f"results: {out} (and latest.json, latest.md); logs: {RESULTS / 'logs'}; took {result['duration_s']:.0f}s")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
