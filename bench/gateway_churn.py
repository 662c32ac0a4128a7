"""Gateway churn (issue 16): do clients that connect and hang up leave anything behind?

    .venv/bin/python -m bench.gateway_churn                 # 200 live SSE clients, 1,000 churners
    .venv/bin/python -m bench.gateway_churn --checkout DIR  # the same against another checkout's gateway

One private Redis (redis-server on a free port, no persistence; or --redis URL), one `zonewatch
gateway` process (from this checkout, or from --checkout DIR for a before/after comparison), and in
this process:

 * a writer that XADDs zone updates to the feed (`--rate` per second, in 20 batches a second, each
   a valid zone document whose `clock` is its write time) as the worker's store does;
 * `--live` SSE clients reading /stream for the whole run (`--sampled` of them parse every event
   for the feed lag: receive time - write time);
 * after a `--window`-second measurement, `--churn` clients that connect and hang up, spread evenly
   over the stages of the SSE and WebSocket handshakes (TCP only, half a request head, the whole
   request, the response head read, the first event read; WebSocket upgrade sent, 101 read, first
   message read; or only the `--stage`s given), half closing with FIN and half with RST,
   `--concurrency` at a time;
 * then up to `--settle` seconds for the gateway's client count to come back, and the same
   measurement again.

Measured: the gateway's CPU (utime + stime from /proc/<pid>/stat over the window, as a share of one
core), its client count (`zonewatch_gateway_clients`), writer tasks (`zonewatch_gateway_writers`,
when the gateway has it), open connections and file descriptors, RSS, and the lag of the sampled
live clients (p50/p99). Prints a Markdown block for docs/BENCHMARKS.md and writes
bench/results/gateway_churn-<time>.json. It reports; it asserts nothing. Everything it starts is
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from contract import keys, schemas
from contract.settings import DEMO_ZONES
from contract.zones import load_zones
from deploy.procs import free_port
from gateway import promtext

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("sse-tcp", "sse-partial-head", "sse-request", "sse-response-head", "sse-first-event",
          "ws-tcp", "ws-request", "ws-101", "ws-first-message")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(f"[churn {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------------------


def start(argv: list[str], log_path: Path, **kw) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, **kw)


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


# --- the gateway from outside -----------------------------------------------------------------------


class Probe:
    """/proc and /metrics readings of the gateway process."""

    def __init__(self, pid: int, url: str):
        self.pid, self.url = pid, url

    def cpu_ticks(self) -> int:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])      # utime + stime (fields 14, 15 of stat)

    def rss_mib(self) -> float:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE / 2**20

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            rows = promtext.parse(r.read().decode())
        out: dict[str, float] = {}
        for name in ("zonewatch_gateway_clients", "zonewatch_gateway_writers", "zonewatch_gateway_connections"):
            if any(n == name for n, _l, _v in rows):
                out[name] = promtext.counter_sum(rows, name)
        return out


# --- load ---------------------------------------------------------------------------------------------


class Load:
    """The writer, the live clients and the churners, on one asyncio loop."""

    def __init__(self, a: argparse.Namespace, redis_url: str, gw_port: int, token: str, zone_ids: list[str]):
        self.a, self.redis_url, self.port, self.token, self.zone_ids = a, redis_url, gw_port, token, zone_ids
        self.stopping = asyncio.Event()
        self.live_connected = 0
        self.live_bytes = [0] * a.live
        self.live_errors: list[str] = []
        self.lags: list[float] = []          # ms, from the sampled clients
        self.written = 0
        self.churn_results: dict[str, dict[str, int]] = {s: {"done": 0, "error": 0} for s in a.stages or STAGES}

    # writer: what streams/store.py does for a zone update (SET the document, XADD the entry)
    async def writer(self) -> None:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(self.redis_url)
        version = 0
        per_tick = max(1, round(self.a.rate / 20))
        pad = "x" * 400
        try:
            while not self.stopping.is_set():
                t0 = time.monotonic()
                pipe = r.pipeline(transaction=False)
                for _ in range(per_tick):
                    version += 1
                    zid = self.zone_ids[version % len(self.zone_ids)]
                    # a valid zone document (the gateway skips others), its clock the write time
                    doc = orjson.dumps(schemas.example("zone", zone_id=zid, version=version, level="green",
                                                       clock=int(time.time() * 1000), name=pad))
                    pipe.set(keys.zone(zid), doc)
                    pipe.xadd(keys.ZONE_UPDATES, {"zone_id": zid, "version": version, "state": doc},
                              maxlen=keys.ZONE_UPDATES_MAXLEN, approximate=True)
                await pipe.execute()
                self.written += per_tick
                await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
        finally:
            await r.aclose()

    async def ready(self, warmup: float, say) -> None:
        """Wait (up to 60 s) for the live clients to connect, say how many did, warm up."""
        deadline = time.monotonic() + 60
        while self.live_connected < self.a.live and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        say(f"{self.live_connected}/{self.a.live} live SSE clients connected; warming up {warmup:g}s")
        await asyncio.sleep(warmup)

    def _request(self, path: str = "/stream") -> bytes:
        return (f"GET {path}?token={self.token} HTTP/1.1\r\nHost: churn\r\n"
                f"Accept: text/event-stream\r\n\r\n").encode()

    def _ws_request(self) -> bytes:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        return (f"GET /ws?token={self.token} HTTP/1.1\r\nHost: churn\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()

    async def live(self, i: int) -> None:
        sampled = i < self.a.sampled
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
            writer.write(self._request())
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            self.live_connected += 1
            while not self.stopping.is_set():
                if sampled:
                    line = await reader.readline()
                    if not line:
                        break
                    self.live_bytes[i] += len(line)
                    if line.startswith(b"data: {") and b'"clock":' in line:
                        now = time.time() * 1000
                        written = float(line.split(b'"clock":', 1)[1].split(b",", 1)[0])
                        self.lags.append(now - written)
                else:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        break
                    self.live_bytes[i] += len(chunk)
            writer.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, not raised
            self.live_errors.append(f"live {i}: {exc!r}")

    async def churn_one(self, i: int, stage: str) -> None:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
            if stage == "sse-partial-head":
                writer.write(self._request()[:40])
            elif stage.startswith("sse-") and stage != "sse-tcp":
                writer.write(self._request())
            elif stage.startswith("ws-") and stage != "ws-tcp":
                writer.write(self._ws_request())
            await writer.drain()
            if stage in ("sse-response-head", "sse-first-event", "ws-101", "ws-first-message"):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                if not (head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.1 101")):
                    raise RuntimeError(head[:40])
            if stage == "sse-first-event":
                await asyncio.wait_for(reader.readuntil(b"event: snapshot"), 10)
            elif stage == "ws-first-message":
                await asyncio.wait_for(reader.readexactly(2), 10)
            self.churn_results[stage]["done"] += 1
        except Exception:  # e.g. refused at a connection limit: counted, not raised
            self.churn_results[stage]["error"] += 1
        finally:
            if writer is not None:
                if i % 2:  # half hang up with RST (a vanished client), half with FIN
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()

    async def churn(self) -> None:
        sem = asyncio.Semaphore(self.a.concurrency)

        stages = self.a.stages or STAGES

        async def one(i: int) -> None:
            async with sem:
                await self.churn_one(i, stages[i % len(stages)])

        await asyncio.gather(*(one(i) for i in range(self.a.churn)))


def lag_figures(lags: list[float]) -> dict:
    if len(lags) < 2:
        return {"events": len(lags), "p50_ms": None, "p99_ms": None}
    q = statistics.quantiles(lags, n=100)
    return {"events": len(lags), "p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1)}


async def measure(load: Load, probe: Probe, window: float) -> dict:
    load.lags.clear()
    t0, c0 = time.monotonic(), probe.cpu_ticks()
    await asyncio.sleep(window)
    t1, c1 = time.monotonic(), probe.cpu_ticks()
    m = await asyncio.to_thread(probe.metrics)
    return {"cpu_pct_of_one_core": round(100 * (c1 - c0) / CLK_TCK / (t1 - t0), 1), "window_s": round(t1 - t0, 1),
            "clients": m.get("zonewatch_gateway_clients"), "writers": m.get("zonewatch_gateway_writers"),
            "connections": m.get("zonewatch_gateway_connections"), "fds": probe.fds(),
            "rss_mib": round(probe.rss_mib(), 1), "lag": lag_figures(list(load.lags))}


async def scenario(a: argparse.Namespace, load: Load, probe: Probe) -> dict:
    tasks = [asyncio.create_task(load.writer())] + [asyncio.create_task(load.live(i)) for i in range(a.live)]
    try:
        await load.ready(a.warmup, log)
        before = await measure(load, probe, a.window)
        log(f"before: {before}")
        t0 = time.monotonic()
        await load.churn()
        churn_s = time.monotonic() - t0
        log(f"{a.churn} churners in {churn_s:.1f}s: {load.churn_results}")
        settle_deadline = time.monotonic() + a.settle
        settled_after = None
        while time.monotonic() < settle_deadline:
            m = await asyncio.to_thread(probe.metrics)
            if m.get("zonewatch_gateway_clients") == before["clients"] and \
                    m.get("zonewatch_gateway_writers", before["writers"]) == before["writers"]:
                settled_after = round(time.monotonic() - t0 - churn_s, 1)
                break
            await asyncio.sleep(0.5)
        after = await measure(load, probe, a.window)
        log(f"after: {after}")
        return {"before": before, "after": after, "churn_s": round(churn_s, 1), "settled_after_s": settled_after,
                "churn_by_stage": load.churn_results, "live_connected": load.live_connected,
                "live_errors": load.live_errors[:5], "updates_written": load.written}
    finally:
        load.stopping.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def git_commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def markdown(res: dict) -> str:
    b, f = res["before"], res["after"]

    def row(name, key, fmt=lambda v: "n/a" if v is None else f"{v:g}"):
        return f"| {name} | {fmt(b.get(key))} | {fmt(f.get(key))} |"

    lag = lambda r, k: "n/a" if r["lag"][k] is None else f"{r['lag'][k]:.1f} ms"  # noqa: E731
    lines = ["| gateway | before the churn | after it |", "|---|---:|---:|",
             row("CPU (% of one core)", "cpu_pct_of_one_core"), row("live-feed clients", "clients"),
             row("writer tasks", "writers"), row("open connections", "connections"),
             row("file descriptors", "fds"), row("RSS (MiB)", "rss_mib"),
             f"| lag of {res['args']['sampled']} sampled clients, p50 | {lag(b, 'p50_ms')} | {lag(f, 'p50_ms')} |",
             f"| lag, p99 | {lag(b, 'p99_ms')} | {lag(f, 'p99_ms')} |"]
    return "\n".join(lines)


def add_load_options(p: argparse.ArgumentParser) -> None:
    """The live clients and the feed's rate (bench/gateway_flood.py has the same)."""
    p.add_argument("--live", type=int, default=200, help="live SSE clients (default 200)")
    p.add_argument("--sampled", type=int, default=10, help="live clients that measure the lag (default 10)")
    p.add_argument("--rate", type=int, default=100, help="zone updates per second on the feed (default 100)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_churn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_load_options(p)
    p.add_argument("--churn", type=int, default=1000, help="clients that connect and hang up (default 1000)")
    p.add_argument("--concurrency", type=int, default=50, help="churners at a time (default 50)")
    p.add_argument("--stage", dest="stages", action="append", choices=STAGES,
                   help="hang up only at this stage (repeatable; default: all, evenly)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--window", type=float, default=20.0, help="seconds of each CPU measurement (default 20)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds allowed for the client count to come back")
    p.add_argument("--redis", metavar="URL", help="use this Redis (a database the bench may write to) "
                   "instead of a private redis-server")
    p.add_argument("--checkout", type=Path, default=REPO,
                   help="run the gateway of this checkout (default: this one); e.g. an older commit's worktree")
    p.add_argument("--gateway-arg", action="append", default=[], help="extra argument for `zonewatch gateway`")
    a = p.parse_args(argv)

    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="zw-churn-"))
    redis_proc = gw = None
    try:
        if a.redis:
            redis_url = a.redis
        else:
            server = shutil.which("redis-server") or "/usr/bin/redis-server"
            rport = free_port()
            redis_proc = start([server, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(tmp)], tmp / "redis.log")
            redis_url = f"redis://127.0.0.1:{rport}/0"
            wait_for(lambda: _ping(rport), 30, "redis-server", redis_proc)
        zone_ids = [z.zone_id for z in load_zones(DEMO_ZONES)]

        token = secrets.token_urlsafe(24)
        port = free_port()
        checkout = a.checkout.resolve()
        env = dict(os.environ, ZONEWATCH_REDIS=redis_url, ZONEWATCH_GATEWAY_TOKENS=token,
                   ZONEWATCH_ZONES=str(DEMO_ZONES), PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
        gw_log = RESULTS / f"gateway_churn-{stamp}-gateway.log"
        gw = start([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(port), *a.gateway_arg],
                   gw_log, cwd=checkout, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), 60, "gateway /healthz", gw)
        log(f"gateway of {checkout} ({git_commit(checkout)}) on {url}, pid {gw.pid}; Redis {redis_url}")

        load = Load(a, redis_url, port, token, zone_ids)
        res = asyncio.run(scenario(a, load, Probe(gw.pid, url)))
        res.update(args={k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                   checkout=str(checkout), commit=git_commit(checkout), bench_commit=git_commit(REPO),
                   date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                   gateway_log=str(gw_log))
        out = RESULTS / f"gateway_churn-{stamp}.json"
        out.write_text(json.dumps(res, indent=2))
        print(markdown(res))
        print("\nchurners by stage (done/error): "
              + ", ".join(f"{s} {v['done']}/{v['error']}" for s, v in res["churn_by_stage"].items()))
        settled = res["settled_after_s"]
        back = f"after {settled} s" if settled is not None else f"NOT within {a.settle} s"
        print(f"client count back {back}"
              f"; {res['updates_written']} updates written; results in {out}")
        return 0
    finally:
        stop(gw)
        stop(redis_proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
