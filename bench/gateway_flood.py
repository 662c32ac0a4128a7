"""Gateway under WebSocket floods (issue 24): what do flooding clients cost the live walls?

    .venv/bin/python -m bench.gateway_flood                  # 200 live SSE clients, 10 flooders
    .venv/bin/python -m bench.gateway_flood --checkout DIR   # the same against another checkout

One private Redis (redis-server, no persistence), one `zonewatch gateway` process (this checkout or
--checkout DIR) and, as in bench/gateway_churn.py (whose writer, live clients and probes this uses):
a writer of valid zone updates (`--rate` per second, `clock` = write time), `--live` SSE clients
reading /stream for the whole run (`--sampled` of them measure the feed lag: receive time - write
time) and a /healthz prober (every 0.2 s, its answer time). Three windows of `--window` seconds:

 * no flood: nothing else;
 * flood: `--flooders` WebSocket clients in separate processes, half sending tiny text messages as
   fast as the socket takes them, half sending pings and never reading (the pongs), each
   reconnecting at once when the gateway closes it or stops reading it for `--stall-s`;

 * decoy (unless --no-decoy): the same flooders on a second gateway on the same machine and Redis:
   what the flood costs the machine (its CPU, its loopback) rather than this gateway;

`--rounds` of each in turn (the machine's other work drifts over minutes; spreading every kind over
the run keeps the drift out of the ratios), then one window after. /healthz (which pings Redis) and
/schemas/index.json (which touches nothing) are probed every 0.2 s. Reported per window: the gateway's
CPU (share of one core), RSS (its maximum, sampled every 0.5 s), clients, lag p50/p99 of the sampled
clients and the probes' p50/p99; then all flood windows against all no-flood (and decoy) windows of
the same run (RSS difference, p99 ratios), and what the flooders did (connections, bytes sent,
closes, stalls). Before
that, in this process: what checking a zone
update against its schema costs (gateway/untrusted.py), per document and at --rate. Prints a
Markdown block for docs/BENCHMARKS.md and writes bench/results/gateway_flood-<time>.json. It reports;
it asserts nothing. Everything it starts is stopped. The machine it runs on may be shared: the
ratios come from windows of one run, minutes apart, not from separate runs.
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import gateway_churn as churn
from contract import keys, schemas
from contract.settings import DEMO_ZONES
from contract.zones import load_zones

MASK = b"\x01\x02\x03\x04"


def log(msg: str) -> None:
    print(f"[flood {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payload < 126 bytes)."""
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + body


FRAMES = {"text": client_frame(0x1, b"x"), "ping": client_frame(0x9, b"p" * 125)}


# --- the flooders (a process of their own: their CPU is not the measuring loop's) ------------------


async def flooder(kind: str, port: int, token: str, stop_at: float, stats: dict, stall_s: float) -> None:
    chunk = FRAMES[kind] * (65536 // len(FRAMES[kind]))
    while time.monotonic() < stop_at:
        writer = None
        try:
            sock = socket.socket()
            sock.setblocking(False)
            # a send buffer of 64 KiB, not loopback's megabytes: the bytes the gateway never reads would
            # otherwise be copied by this machine's kernel at the gateway's expense (here the flooders
            # share the gateway's two cores; a real one burns its own machine)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            if kind == "ping":                     # never reads: the smallest buffer
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            key = base64.b64encode(secrets.token_bytes(16)).decode()
            writer.write(f"GET /ws?token={token} HTTP/1.1\r\nHost: flood\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                         .encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 101"):
                stats["refused"] += 1
                await asyncio.sleep(0.1)
                continue
            stats["connections"] += 1
            drain = asyncio.create_task(reader.read(-1)) if kind == "text" else None   # text: reads the feed
            try:
                while time.monotonic() < stop_at:
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), stall_s)
                    stats["bytes_sent"] += len(chunk)
            finally:
                if drain:
                    drain.cancel()
        except TimeoutError:
            stats["stalled"] += 1                  # the gateway stopped reading it
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            stats["closed"] += 1                   # the gateway closed it (1008)
        finally:
            if writer is not None:
                writer.close()


def flooders_main(kind: str, n: int, port: int, token: str, seconds: float, out: Path, stall_s: float) -> None:
    # the lowest priority: here the attackers share the gateway's machine; their own CPU is not what
    # is measured (a real one burns its own)
    os.nice(19)
    stats = {"connections": 0, "closed": 0, "stalled": 0, "refused": 0, "bytes_sent": 0}

    async def run():
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(flooder(kind, port, token, stop_at, stats, stall_s) for _ in range(n)))

    asyncio.run(run())
    out.write_text(json.dumps(stats))


# --- measuring -----------------------------------------------------------------------------------------


async def prober(port: int, path: str, samples: list[float], stopping: asyncio.Event) -> None:
    """GET `path` every 0.2 s, its answer time (ms; 10 s for a failure)."""
    while not stopping.is_set():
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
            await asyncio.wait_for(reader.read(-1), 10)
            writer.close()
            samples.append((time.monotonic() - t0) * 1000)
        except (TimeoutError, OSError):
            samples.append(10_000.0)
        await asyncio.sleep(0.2)


def quantiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {"n": len(values), "p50_ms": None, "p99_ms": None}
    q = statistics.quantiles(values, n=100)
    return {"n": len(values), "p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1)}


async def window(load: churn.Load, probe: churn.Probe, probes: dict[str, list[float]], seconds: float) -> dict:
    load.lags.clear()
    for samples in probes.values():
        samples.clear()
    rss_max = 0.0
    t0, c0 = time.monotonic(), probe.cpu_ticks()
    while time.monotonic() - t0 < seconds:
        rss_max = max(rss_max, probe.rss_mib())
        await asyncio.sleep(0.5)
    t1, c1 = time.monotonic(), probe.cpu_ticks()
    m = await asyncio.to_thread(probe.metrics)
    out = {"cpu_pct_of_one_core": round(100 * (c1 - c0) / churn.CLK_TCK / (t1 - t0), 1), "window_s": round(t1 - t0, 1),
           "clients": m.get("zonewatch_gateway_clients"), "connections": m.get("zonewatch_gateway_connections"),
           "rss_mib": round(probe.rss_mib(), 1), "rss_max_mib": round(max(rss_max, probe.rss_mib()), 1),
           "lag": churn.lag_figures(list(load.lags)), "samples": {"lag": list(load.lags)}}
    for name, samples in probes.items():
        out[name] = quantiles(list(samples))
        out["samples"][name] = list(samples)
    return out


def start_flooders(a: argparse.Namespace, port: int, token: str, tmp: Path, tag: str) -> list:
    half = a.flooders // 2
    procs = []
    for kind, n in (("text", a.flooders - half), ("ping", half)):
        out = tmp / f"flooders-{tag}-{kind}.json"
        procs.append((kind, subprocess.Popen(
            [sys.executable, "-m", "bench.gateway_flood", "--flooder", kind, "--flooders", str(n), "--port", str(port),
             "--token", token, "--window", str(a.window + 1), "--out", str(out), "--stall-s", str(a.stall_s)],
            cwd=churn.REPO, env=dict(os.environ, PYTHONPATH=str(churn.REPO))), out))
    return procs


async def end_flooders(procs: list, timeout: float) -> dict:
    stats: dict = {}
    for kind, proc, out in procs:
        await asyncio.to_thread(proc.wait, timeout)
        got = json.loads(out.read_text()) if out.exists() else {}
        for k, v in got.items():
            stats.setdefault(kind, {}).setdefault(k, 0)
            stats[kind][k] += v
    return stats


PROBES = {"healthz": "/healthz", "static": "/schemas/index.json"}   # the second touches no Redis
KINDS = ("baseline", "flood", "decoy")


def pooled(windows: list[dict]) -> dict:
    """Windows of one kind together: the quantiles over all their samples."""
    out = {"lag": churn.lag_figures([x for w in windows for x in w["samples"]["lag"]]),
           "cpu_pct_of_one_core": round(statistics.mean(w["cpu_pct_of_one_core"] for w in windows), 1),
           "rss_max_mib": max(w["rss_max_mib"] for w in windows)}
    for name in PROBES:
        out[name] = quantiles([x for w in windows for x in w["samples"][name]])
    return out


async def scenario(a: argparse.Namespace, load: churn.Load, probe: churn.Probe, port: int, decoy: int | None,
                   token: str, tmp: Path) -> dict:
    """In each of `--rounds`: a window without flooders, one with them flooding this gateway, and
    (with a decoy) one with them flooding the decoy, a second gateway on the same machine — what
    the flood costs the machine, not this gateway; then one window after. The machine's other work
    drifts over minutes, so each kind is spread over the whole run."""
    stopping = asyncio.Event()
    probes: dict[str, list[float]] = {name: [] for name in PROBES}
    tasks = [asyncio.create_task(load.writer())]
    tasks += [asyncio.create_task(prober(port, path, probes[name], stopping)) for name, path in PROBES.items()]
    tasks += [asyncio.create_task(load.live(i)) for i in range(a.live)]
    procs: list = []
    try:
        await load.ready(a.warmup, log)
        rounds, flooders = [], {}
        for i in range(a.rounds):
            this: dict = {}
            for kind in KINDS if decoy else KINDS[:2]:
                target = port if kind == "flood" else decoy
                procs = start_flooders(a, target, token, tmp, f"{i}-{kind}") if kind != "baseline" else []
                this[kind] = await window(load, probe, probes, a.window)
                log(f"round {i + 1} {kind}: {brief(this[kind])}")
                for fkind, st in (await end_flooders(procs, a.window + 60)).items():
                    for k, v in st.items():
                        flooders.setdefault(f"{kind} {fkind}", {}).setdefault(k, 0)
                        flooders[f"{kind} {fkind}"][k] += v
                procs = []
            rounds.append(this)
        after = await window(load, probe, probes, a.window)
        log(f"after: {brief(after)}; flooders {flooders}")
        res = {"rounds": rounds, "after": after, "flooders": flooders, "live_connected": load.live_connected,
               "live_errors": load.live_errors[:5], "updates_written": load.written}
        for kind in rounds[0]:
            res[kind] = pooled([r[kind] for r in rounds])
        return res
    finally:
        stopping.set()
        load.stopping.set()
        for _kind, proc, _out in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def brief(w: dict) -> str:
    return (f"CPU {w['cpu_pct_of_one_core']} %, RSS {w['rss_mib']} (max {w['rss_max_mib']}) MiB, clients "
            f"{w['clients']}, lag p50/p99 {w['lag']['p50_ms']}/{w['lag']['p99_ms']} ms, /healthz p50/p99 "
            f"{w['healthz']['p50_ms']}/{w['healthz']['p99_ms']} ms, static p50/p99 "
            f"{w['static']['p50_ms']}/{w['static']['p99_ms']} ms")


# --- what checking an update costs (in this process) ---------------------------------------------------


def validation_cost(rate: int, n: int = 20_000) -> dict:
    """µs per zone document: parsing it (orjson.loads), checking it (the compiled schema), reading
    it through gateway/untrusted.py with a new document each time (a miss: parse + check) and with
    one it has seen (a hit), and the reader's fan-out of one update to 200 clients for scale; the
    share of one core that checking takes at `rate` updates a second."""
    from gateway import untrusted
    from gateway.feed import Entry, Subscriber

    docs = [orjson.dumps(schemas.example("zone", zone_id=f"z{i % 300}", version=i + 1, clock=1_700_000_000_000 + i))
            for i in range(n)]
    kind = untrusted.Kind("zone", "zone")

    def per_doc_us(fn, items) -> float:
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        return (time.perf_counter() - t0) / len(items) * 1e6

    loads = per_doc_us(orjson.loads, docs)
    values = [orjson.loads(d) for d in docs]
    check = per_doc_us(kind.check, values)
    miss = per_doc_us(lambda d: kind.read(d, "bench"), docs)
    kind.cache.clear()
    hot = docs[:1000]
    for d in hot:
        kind.read(d, "bench")
    copies = [bytes(bytearray(d)) for d in hot * 10]     # new objects, as Redis replies are: hashed anew
    hit = per_doc_us(lambda d: kind.read(d, "bench"), copies)
    subs = [Subscriber(1_000_000, "sse") for _ in range(200)]

    def fan_out(d):
        entry = Entry("1-0", d)
        for sub in subs:
            sub.offer(entry)

    fan = per_doc_us(fan_out, docs[:2000])
    return {"doc_bytes": len(docs[0]), "loads_us": round(loads, 2), "check_us": round(check, 2),
            "read_miss_us": round(miss, 2), "read_hit_us": round(hit, 2), "fan_out_200_us": round(fan, 2),
            "rate": rate, "check_pct_of_one_core_at_rate": round(miss * rate / 1e4, 2),
            "check_vs_fan_out": round(miss / fan, 3)}


# --- report ---------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or b is None else f"{b / a:.2f}"


def markdown(res: dict) -> str:
    def q(r, k, name):
        v = r[k][name]
        return "n/a" if v is None else f"{v:.1f}"

    def row(label, w, clients=True):
        count = f"{w['clients']:g}" if clients else ""
        figures = " | ".join(f"{q(w, k, 'p50_ms')} / {q(w, k, 'p99_ms')}" for k in ("lag", "healthz", "static"))
        return f"| {label} | {w['cpu_pct_of_one_core']} | {w['rss_max_mib']} | {count} | {figures} |"

    names = {"baseline": "no flood", "flood": "10 flooders on this gateway", "decoy": "10 flooders on the decoy"}
    lines = ["| window | gateway CPU (% of one core) | RSS max (MiB) | live clients | feed lag p50 / p99 (ms) | "
             "/healthz p50 / p99 (ms) | /schemas/index.json p50 / p99 (ms) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(res["rounds"], 1):
        for kind, w in r.items():
            lines.append(row(f"{i}. {names[kind]}", w))
    lines.append(row("after", res["after"]))
    for kind in res["rounds"][0]:
        lines.append(row(f"**all: {names[kind]}**", res[kind], clients=False))
    b, f = res["baseline"], res["flood"]
    first = res["rounds"][0]["baseline"]["rss_mib"]
    lines += ["", f"flood vs no flood (same run): RSS max {f['rss_max_mib'] - first:+.1f} MiB over the first window; "
                  f"p99 ratios: feed lag x{ratio(b['lag']['p99_ms'], f['lag']['p99_ms'])}, /healthz "
                  f"x{ratio(b['healthz']['p99_ms'], f['healthz']['p99_ms'])}, static "
                  f"x{ratio(b['static']['p99_ms'], f['static']['p99_ms'])}"]
    if "decoy" in res:
        d = res["decoy"]
        lines.append(f"flood on this gateway vs the same flood on the decoy: p99 ratios: feed lag "
                     f"x{ratio(d['lag']['p99_ms'], f['lag']['p99_ms'])}, /healthz "
                     f"x{ratio(d['healthz']['p99_ms'], f['healthz']['p99_ms'])}, static "
                     f"x{ratio(d['static']['p99_ms'], f['static']['p99_ms'])}")
    lines.append("flooders: " + "; ".join(f"{k}: {v}" for k, v in res["flooders"].items()))
    v = res["validation"]
    lines += ["", f"checking a zone update ({v['doc_bytes']} bytes): parse {v['loads_us']} us, schema check "
                  f"{v['check_us']} us, read uncached {v['read_miss_us']} us, cached {v['read_hit_us']} us; the "
                  f"reader's fan-out of one update to 200 clients {v['fan_out_200_us']} us; at {v['rate']} updates/s "
                  f"checking takes {v['check_pct_of_one_core_at_rate']} % of one core"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    churn.add_load_options(p)
    p.add_argument("--flooders", type=int, default=10, help="WebSocket flooders, half text, half ping (default 10)")
    p.add_argument("--validation-rate", type=int, default=2000,
                   help="updates a second at which to state the cost of checking them (default 2000)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--window", type=float, default=15.0, help="seconds of each window (default 15)")
    p.add_argument("--rounds", type=int, default=5, help="no-flood and flood windows in turn (default 5 of each)")
    p.add_argument("--stall-s", type=float, default=5.0,
                   help="a flooder whose writes block this long (the gateway stopped reading it) reconnects "
                        "(default 5; the gateway closes one over its budget after 10 s)")
    p.add_argument("--no-decoy", dest="decoy", action="store_false",
                   help="no windows with the flooders on a second gateway (what the flood costs the machine)")
    p.add_argument("--checkout", type=Path, default=churn.REPO,
                   help="run the gateway of this checkout (default: this one)")
    p.add_argument("--gateway-arg", action="append", default=[], help="extra argument for `zonewatch gateway`")
    # the flooder processes (started by the bench itself)
    p.add_argument("--flooder", choices=sorted(FRAMES), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.flooder:
        flooders_main(a.flooder, a.flooders, a.port, a.token, a.window, a.out, a.stall_s)
        return 0

    churn.RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="zw-flood-"))
    redis_proc = gw = decoy = None
    try:
        log("checking cost (in-process) …")
        validation = validation_cost(a.validation_rate)
        log(f"validation: {validation}")
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        rport = churn.free_port()
        redis_proc = churn.start([server, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(tmp)], tmp / "redis.log")
        redis_url = f"redis://127.0.0.1:{rport}/0"
        churn.wait_for(lambda: churn._ping(rport), 30, "redis-server", redis_proc)
        zone_ids = [z.zone_id for z in load_zones(DEMO_ZONES)]
        import redis

        r = redis.Redis.from_url(redis_url)
        for zid in zone_ids:                      # a snapshot of every zone for each (re)connecting client
            r.sadd(keys.ZONES, zid)
            r.set(keys.zone(zid), orjson.dumps(schemas.example("zone", zone_id=zid, clock=int(time.time() * 1000))))
        r.close()

        token = secrets.token_urlsafe(24)
        port = churn.free_port()
        checkout = a.checkout.resolve()
        env = dict(os.environ, ZONEWATCH_REDIS=redis_url, ZONEWATCH_GATEWAY_TOKENS=token,
                   ZONEWATCH_ZONES=str(DEMO_ZONES), PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
        gw_log = churn.RESULTS / f"gateway_flood-{stamp}-gateway.log"
        gw = churn.start([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(port), *a.gateway_arg],
                   gw_log, cwd=checkout, env=env)
        url = f"http://127.0.0.1:{port}"
        churn.wait_for(lambda: churn._healthy(url), 60, "gateway /healthz", gw)
        decoy_port = None
        if a.decoy:
            decoy_port = churn.free_port()
            decoy = churn.start([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(decoy_port),
                                 *a.gateway_arg], tmp / "decoy.log", cwd=checkout, env=env)
            churn.wait_for(lambda: churn._healthy(f"http://127.0.0.1:{decoy_port}"), 60, "decoy /healthz", decoy)
        log(f"gateway of {checkout} ({churn.git_commit(checkout)}) on {url}, pid {gw.pid}; {len(zone_ids)} zones")

        churn_args = argparse.Namespace(live=a.live, sampled=a.sampled, rate=a.rate, stages=None, churn=0,
                                        concurrency=1)
        load = churn.Load(churn_args, redis_url, port, token, zone_ids)
        res = asyncio.run(scenario(a, load, churn.Probe(gw.pid, url), port, decoy_port, token, tmp))
        for w in [res["after"], *(w for r in res["rounds"] for w in r.values())]:
            w.pop("samples")                     # the samples stay out of the results file
        res.update(validation=validation, args={k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                   checkout=str(checkout), commit=churn.git_commit(checkout), bench_commit=churn.git_commit(churn.REPO),
                   date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   load_average=os.getloadavg(),
                   machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                   gateway_log=str(gw_log))
        out = churn.RESULTS / f"gateway_flood-{stamp}.json"
        out.write_text(json.dumps(res, indent=2))
        print(markdown(res))
        print(f"\nload average at the end {os.getloadavg()}; {res['updates_written']} updates written; "
              f"results in {out}")
        return 0
    finally:
        churn.stop(decoy)
        churn.stop(gw)
        churn.stop(redis_proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
