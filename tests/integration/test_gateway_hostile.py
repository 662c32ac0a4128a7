"""Careless and hostile clients against a real gateway on real Redis (issue 16).

Each test would have failed on the gateway before issue 16: clients that hang up at every stage of
the SSE and WebSocket handshakes (the old one kept about one in six of them registered, its writer
fanning out to a dead socket), connections that never send a request (held forever), no cap on
connections, tokens in the log, out-of-range Last-Event-IDs (200 and a cut stream), coordinates
beyond Redis GEO (503), short tokens, 16 MiB WebSocket client frames, an idle feed logging read
timeouts. The feed is written straight into Redis as the worker's store writes it (no worker
needed). Durations below are liveness bounds (how long to wait at most), never measured claims.
"""

from __future__ import annotations

import base64
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import orjson
import pytest

from contract import keys, schemas
from tests import scenario
from tests.integration.conftest import REPO, wait_until
from tests.integration.test_gateway import AUTH, TOKEN, BackgroundReader, GatewayProcess, SSEClient

pytestmark = pytest.mark.integration

BOUND_S = 30.0


# --- a feed and raw clients -------------------------------------------------------------------------


class Feed:
    """Zone updates written as streams/store.py writes them (SET the document, XADD the entry), and
    a snapshot of some size (`docs` zones of ~2 KB) so that hanging up mid-snapshot is possible."""

    def __init__(self, dep, docs: int = 300):
        self.dep, self.version, self.stopping = dep, 0, threading.Event()
        pipe = dep.redis.pipeline(transaction=False)
        for i in range(docs):
            zid = f"h{i}"
            pipe.sadd(keys.ZONES, zid)
            pipe.set(keys.zone(zid), orjson.dumps(schemas.example("zone", zone_id=zid, version=1, name="p" * 2000)))
        pipe.execute()
        self.thread = None

    def write(self, n: int = 5) -> None:
        pipe = self.dep.redis.pipeline(transaction=False)
        for _ in range(n):
            self.version += 1
            zid = f"h{self.version % 7}"
            doc = orjson.dumps(schemas.example("zone", zone_id=zid, version=self.version + 1))
            pipe.set(keys.zone(zid), doc)
            pipe.xadd(keys.ZONE_UPDATES, {"zone_id": zid, "version": self.version + 1, "state": doc})
        pipe.execute()

    def start(self) -> Feed:
        def run():
            while not self.stopping.wait(0.05):
                self.write()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(10)


def sse_request(token: str = TOKEN, extra: str = "") -> bytes:
    return f"GET /stream?token={token}{extra} HTTP/1.1\r\nHost: hostile\r\nAccept: text/event-stream\r\n\r\n".encode()


def ws_request(token: str = TOKEN, extra: str = "") -> bytes:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return (f"GET /ws?token={token}{extra} HTTP/1.1\r\nHost: hostile\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def read_until(s: socket.socket, marker: bytes, limit: int = 1 << 24) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}: {buf[:200]!r}")
        buf += chunk
        assert len(buf) < limit
    return buf


def ws_frames(s: socket.socket, buf: bytes):
    """Yield the payloads of unmasked server frames (no extensions negotiated)."""
    while True:
        while len(buf) < 2:
            buf += s.recv(65536)
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            while len(buf) < 4:
                buf += s.recv(65536)
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            while len(buf) < 10:
                buf += s.recv(65536)
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        while len(buf) < off + n:
            chunk = s.recv(65536)
            assert chunk, "closed mid-frame"
            buf += chunk
        yield buf[off:off + n]
        buf = buf[off + n:]


def hang_up(port: int, stage: str, rst: bool) -> str:
    """Connect, go as far as `stage` into the SSE or WebSocket handshake or stream, hang up."""
    s = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    try:
        kind, _, step = stage.partition("-")
        req = sse_request() if kind == "sse" else ws_request()
        if step == "partial":
            s.sendall(req[:len(req) // 2])
        elif step != "tcp":
            s.sendall(req)
        if step in ("head", "mid-snapshot", "live"):
            buf = read_until(s, b"\r\n\r\n")
            assert buf.startswith(b"HTTP/1.1 200" if kind == "sse" else b"HTTP/1.1 101"), buf[:100]
            rest = buf.split(b"\r\n\r\n", 1)[1]
            if step == "mid-snapshot":
                while len(rest) < 4000:          # a part of the ~600 KB snapshot
                    rest += s.recv(4000)
            elif step == "live" and kind == "sse":
                read_until(s, b"event: zone")     # past the snapshot, a live update
            elif step == "live":
                frames = ws_frames(s, rest)
                while b'"type":"zone"' not in next(frames):
                    pass
        return stage
    finally:
        if rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


async def _burst(port: int, n: int, concurrency: int) -> int:
    """n SSE clients, `concurrency` at a time, that send the request and hang up right after the
    response head (half of them, or before it): many snapshots at once, which is when a cancelled
    Redis call can swallow its cancellation."""
    import asyncio

    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sse_request())
            await writer.drain()
            if i % 2:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND_S)
            if i % 4 < 2:
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))
            writer.close()
            done += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return done


STAGES = [f"{k}-{s}" for k in ("sse", "ws") for s in ("tcp", "partial", "request", "head", "mid-snapshot", "live")]


def gateway_log(gw: GatewayProcess) -> str:
    return gw.log.read_text(errors="replace")


def settled(gw: GatewayProcess, clients: int = 0) -> bool:
    return (gw.metric("zonewatch_gateway_clients") == clients and gw.metric("zonewatch_gateway_writers") == clients
            and gw.metric("zonewatch_gateway_connections") == clients + 1)   # + 1: this very scrape


# --- the tests --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dep(stack):
    from tests.integration.conftest import Deployment

    d = Deployment(stack, scenario.ZONES_FILE, partitions=1)
    try:
        yield d
    finally:
        d.close()


def test_clients_hanging_up_at_every_stage_leave_no_client_and_no_writer(dep):
    feed = Feed(dep, docs=40).start()
    gw = GatewayProcess(dep)
    live = None
    try:
        live = SSEClient(gw.url)                        # a healthy client all along
        assert live.next_event()["event"] == "snapshot"
        wait_until(lambda: gw.metric("zonewatch_gateway_clients") == 1, BOUND_S, what="one live client")
        jobs = [(stage, rst) for _ in range(12) for stage in STAGES for rst in (False, True)]
        with ThreadPoolExecutor(48) as pool:      # many at once: they contend for Redis connections
            done = list(pool.map(lambda j: hang_up(gw.port, *j), jobs))
        assert len(done) == len(jobs) == 288
        import asyncio

        assert asyncio.run(_burst(gw.port, 200, 32)) == 200
        # library clients that close politely
        for _ in range(5):
            c = SSEClient(gw.url, params={"last_event_id": "0-0"})
            c.next_event()
            c.close()
        from websockets.sync.client import connect

        for _ in range(5):
            with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:
                ws.recv(timeout=10)
        # every one of them is gone: unregistered, its writer ended, its connection closed
        wait_until(lambda: gw.metric("zonewatch_gateway_clients") == 1, BOUND_S,
                   what="every client that hung up unregistered")
        wait_until(lambda: settled(gw, 1), BOUND_S, what="clients, writers and connections back to the live one")
        assert gw.metric('zonewatch_gateway_clients{transport="sse"}') == 1
        assert gw.metric('zonewatch_gateway_writers{transport="ws"}') == 0
        # and the live client still gets every update, in order
        last = None
        for _ in range(20):
            ev = live.next_event()
            assert ev["event"] == "zone", ev
            if last:
                assert tuple(map(int, ev["id"].split("-"))) > tuple(map(int, last.split("-")))
            last = ev["id"]
    finally:
        feed.stop()
        if live:
            live.close()
        gw.stop()
    log = gateway_log(gw)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert "socket.send() raised exception" not in log


def test_idle_and_slow_header_connections_are_closed_and_an_idle_feed_logs_no_timeouts(dep):
    started = time.monotonic()
    gw = GatewayProcess(dep, extra=("--header-timeout", "2", "--keepalive", "1"))
    socks = []
    try:
        before = gw.metric('zonewatch_gateway_connections_closed_total{reason="header_timeout"}')
        socks = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(40)]       # say nothing
        for s in socks[:10]:
            s.sendall(b"GET /zones HTTP/1.1\r\nHost: x\r\n")                                 # half a head
        stop = threading.Event()

        def slowloris(s):                        # a header byte every 0.2 s, never the end of the head
            try:
                while not stop.wait(0.2):
                    s.sendall(b"a")
            except OSError:
                return

        for s in socks[10:20]:
            s.sendall(b"GET /zones HTTP/1.1\r\nX-Slow: ")
            threading.Thread(target=slowloris, args=(s,), daemon=True).start()
        # a keep-alive connection after a response, then silence
        ka = socket.create_connection(("127.0.0.1", gw.port))
        ka.sendall(f"GET /zones HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert read_until(ka, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        socks.append(ka)

        def all_closed():
            for s in socks:
                s.settimeout(0.05)
                try:
                    while s.recv(65536):
                        pass
                except TimeoutError:
                    return False
                except OSError:
                    pass
            return True

        wait_until(all_closed, BOUND_S, what="every idle and slow connection closed by the gateway")
        stop.set()
        assert gw.metric('zonewatch_gateway_connections_closed_total{reason="header_timeout"}') >= before + 20
        wait_until(lambda: gw.metric("zonewatch_gateway_connections") == 1, BOUND_S, what="connections back")
        # the feed has been idle all along: two XREAD BLOCKs (5 s) and more without a read error
        time.sleep(max(0.0, 12.0 - (time.monotonic() - started)))
        assert gw.metric("zonewatch_gateway_redis_errors_total") == 0
    finally:
        for s in socks:
            s.close()
        gw.stop()
    log = gateway_log(gw)
    assert "reading zw:zone-updates failed" not in log and "Timeout" not in log, log[-3000:]


def test_connections_beyond_the_limit_are_refused_at_once(dep):
    gw = GatewayProcess(dep, extra=("--max-connections", "20", "--header-timeout", "60"))
    held, extra = [], []
    try:
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
        time.sleep(0.5)
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S)
            extra.append(s)
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer in (b"",) or answer.startswith(b"HTTP/1.1 503"), answer
        for s in held:
            s.close()
        wait_until(lambda: gw._healthy(), BOUND_S, what="a request served again")
        assert gw.metric("zonewatch_gateway_connections_refused_total") >= 30
    finally:
        for s in held + extra:
            s.close()
        gw.stop()
    log = gateway_log(gw)
    assert 1 <= log.count("(--max-connections)") <= 3, log[-2000:]   # one line per 10 s, not per connection


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(dep):
    feed = Feed(dep, docs=0)
    gw = GatewayProcess(dep, extra=("--write-timeout", "2"))
    stuck = socket.socket()
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", gw.port))
        stuck.sendall(sse_request())                                  # and never reads
        wait_until(lambda: gw.metric("zonewatch_gateway_clients") == 1, BOUND_S, what="the client registered")
        for _ in range(60):                                            # ~3 MB of updates
            pipe = dep.redis.pipeline(transaction=False)
            for _ in range(50):
                feed.version += 1
                pipe.xadd(keys.ZONE_UPDATES, {"zone_id": "w", "version": feed.version,
                                              "state": orjson.dumps(schemas.example("zone", zone_id="w",
                                                                                    name="q" * 1000))})
            pipe.execute()
        wait_until(lambda: settled(gw, 0), BOUND_S, what="the stuck client dropped, its writer ended")
    finally:
        stuck.close()
        gw.stop()


def _log_scan(dep, extra: tuple) -> str:
    gw = GatewayProcess(dep, extra=extra)
    wrong = "wrong-token-" + secrets.token_hex(8)
    try:
        c = SSEClient(gw.url, headers={}, params={"token": TOKEN})                     # ?token= on /stream
        assert c.next_event()["event"] == "snapshot"
        c.close()
        c = SSEClient(gw.url)                                                          # bearer header
        c.next_event()
        c.close()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as s:  # an encoded name
            s.sendall(f"GET /stream?%74oken={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_until(s, b"event: snapshot").startswith(b"HTTP/1.1 200")
        assert gw.get("/zones", headers={}, params={"token": TOKEN}).status_code == 401   # query not taken here
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:       # handshake logged
            ws.recv(timeout=10)
        with connect(gw.url.replace("http", "ws") + "/ws", additional_headers=AUTH) as ws:
            ws.recv(timeout=10)
        with pytest.raises(InvalidStatus):
            with connect(gw.url.replace("http", "ws") + f"/ws?token={wrong}"):
                pass
    finally:
        gw.stop()
    log = gateway_log(gw)
    assert TOKEN not in log and wrong not in log, [line for line in log.splitlines() if TOKEN in line or wrong in line]
    return log


def test_tokens_are_never_logged_with_access_log_off_and_on(dep):
    quiet = _log_scan(dep, ())
    assert '"WebSocket /ws?token=***" [accepted]' in quiet          # uvicorn logs handshakes anyway
    assert '"WebSocket /ws?token=***" 403' in quiet
    loud = _log_scan(dep, ("--access-log", "--log-level", "debug"))
    assert '"GET /stream?token=*** HTTP/1.1" 200' in loud
    assert '"GET /stream?%74oken=*** HTTP/1.1" 200' in loud
    assert '"GET /zones?token=*** HTTP/1.1" 401' in loud
    assert "Authorization: ***" in loud or "authorization: ***" in loud    # websockets' debug header lines


BAD_IDS = ["99999999999999999999-0", "18446744073709551616-0", "1-18446744073709551616", "١٢٣-0", "１-０",
           "1--0", "abc", "1-0-0", "-1-0"]


def test_malformed_and_out_of_range_last_event_ids_get_400(dep):
    gw = GatewayProcess(dep)
    try:
        for bad in BAD_IDS:
            r = httpx.get(gw.url + "/stream", params={"last_event_id": bad}, headers=AUTH, timeout=10)
            assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"], (bad, r.status_code, r.text[:200])
            r = httpx.get(gw.url + "/stream", headers={**AUTH, "Last-Event-ID": bad.encode()}, timeout=10)
            assert r.status_code == 400, (bad, r.status_code)
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        with pytest.raises(InvalidStatus):
            with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}&last_event_id={quote(BAD_IDS[0])}"):
                pass
        # the largest id Redis has is valid: newer than the stream, so resync and a snapshot
        c = SSEClient(gw.url, last_event_id="18446744073709551615-18446744073709551615")
        try:
            ev = c.next_event()
            assert ev["event"] == "resync" and orjson.loads(ev["data"]) == {"reason": "trimmed"}
            assert c.next_event()["event"] == "snapshot"
        finally:
            c.close()
        assert gw.get("/healthz", headers={}).status_code == 200
    finally:
        gw.stop()


def test_units_beyond_redis_geo_range_get_400_not_503(dep):
    gw = GatewayProcess(dep)
    try:
        for near in ("85.06,0", "-85.06,0", "89.9,179", "90,180", "-90,-180"):
            r = gw.get("/units", params={"near": near, "radius": "1000"})
            assert r.status_code == 400 and "85.05112878" in r.json()["error"], (near, r.status_code, r.text)
        for near in ("85.05,0", "-85.05,-180", "34.7,113.6"):
            r = gw.get("/units", params={"near": near, "radius": "100000"})
            assert r.status_code == 200 and r.json() == [], (near, r.status_code, r.text)
        assert gw.metric("zonewatch_gateway_redis_errors_total") == 0
    finally:
        gw.stop()


def test_websocket_client_messages_are_limited_to_4_kib(dep):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    gw = GatewayProcess(dep)
    try:
        with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}", max_size=None) as ws:
            ws.recv(timeout=10)
            ws.send("x" * 4000)                        # small ones are read and ignored
            ws.send("x" * 65536)
            with pytest.raises(ConnectionClosed) as exc:
                for _ in range(100):
                    ws.recv(timeout=10)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1009     # message too big
        wait_until(lambda: settled(gw, 0), BOUND_S, what="the client gone")
    finally:
        gw.stop()


def test_short_tokens_are_refused_at_start(dep):
    env = dict(dep.env, ZONEWATCH_GATEWAY_TOKENS=f"{TOKEN},short-one")
    r = subprocess.run([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", "0"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ZONEWATCH_GATEWAY_TOKENS" in r.stderr and "16 characters" in r.stderr and "#2 has 9" in r.stderr
    assert "short-one" not in r.stderr + r.stdout and TOKEN not in r.stderr + r.stdout


# --- issue 24: floods, smuggling, heads, proxies, spellings, noisy logs, untrusted Redis data --------


def rss_mib(gw: GatewayProcess) -> float:
    import os

    return int(open(f"/proc/{gw.proc.pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ws_open(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.settimeout(BOUND_S)
    s.sendall(ws_request())
    assert read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 101")
    return s


def flood(port: int, one_frame: bytes, mib: int, read: bool) -> int | None:
    """One WebSocket client sending `mib` MiB of `one_frame` (reading nothing unless `read`); the
    code of the close frame the gateway sent, None if it sent none."""
    from tests.unit.gateway.test_server import close_code

    s = ws_open(port, rcvbuf=None if read else 4096)
    try:
        chunk = one_frame * (65536 // len(one_frame))
        s.settimeout(5)
        try:
            for _ in range(mib * 16):
                s.sendall(chunk)
        except OSError:
            pass                     # closed (or no longer read) while flooding
        return close_code(s)
    finally:
        s.close()


def test_websocket_floods_are_closed_with_1008_and_cost_no_memory(dep):
    """Ten clients flooding /ws (pings never reading the pongs, unsolicited pongs, tiny text
    messages): each is closed with 1008, the gateway's memory stays where it was (the old one grew
    by 900 MB from one ping flooder), and the live SSE client and /healthz are served throughout."""
    from tests.unit.gateway.test_server import frame

    feed = Feed(dep, docs=20).start()
    gw = GatewayProcess(dep)
    live = None
    try:
        live = BackgroundReader(SSEClient(gw.url))
        assert live.get()["event"] == "snapshot"
        baseline = rss_mib(gw)
        before = gw.metric('zonewatch_gateway_connections_closed_total{reason="ws_flood"}')
        kinds = [frame(0x9, b"p" * 125), frame(0xA, b""), frame(0x1, b"x")] * 3 + [frame(0x1, b"y" * 100)]
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(lambda f: flood(gw.port, f, 64, read=False), kinds))
            # meanwhile, for everyone else
            assert gw.get("/healthz", headers={}).status_code == 200
        # each closed for flooding: its close frame, unless the reset of the socket it still wrote to
        # came first (the metric counts the gateway's side)
        assert set(codes) <= {1008, None} and 1008 in codes, codes
        assert gw.metric('zonewatch_gateway_connections_closed_total{reason="ws_flood"}') == before + 10
        assert rss_mib(gw) - baseline < 50, (baseline, rss_mib(gw))
        events = [live.get() for _ in range(20)]
        assert all(e["event"] == "zone" for e in events)      # the live client never noticed
        wait_until(lambda: settled(gw, 1), BOUND_S, what="the flooders gone, the live client left")
    finally:
        feed.stop()
        if live:
            live.stop()
        gw.stop()
    log = gateway_log(gw)
    assert log.count("a WebSocket client sent frames beyond") <= 5, log[-2000:]      # rate-limited


def test_what_a_client_sends_on_its_sse_request_cannot_grow_memory(dep):
    """20 MB sent after a GET /stream (pipelined junk) is not read: the gateway's memory stays, and
    the stream goes on. A GET /stream with a body is refused."""
    feed = Feed(dep, docs=5).start()
    gw = GatewayProcess(dep)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S)
    try:
        baseline = rss_mib(gw)
        s.sendall(sse_request())
        assert read_until(s, b"event: snapshot").startswith(b"HTTP/1.1 200")
        sent = 0
        s.settimeout(3)
        try:
            while sent < 20 * 2**20:
                sent += s.send(b"X" * 65536)
        except TimeoutError:
            pass
        assert sent < 20 * 2**20, "the gateway read all of it"
        assert rss_mib(gw) - baseline < 20
        s.settimeout(BOUND_S)
        read_until(s, b"event: zone")                  # still streaming
        for body_head in (b"Content-Length: 3\r\n\r\nabc", b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as b:
                b.sendall(sse_request()[:-2] + body_head)
                assert read_until(b, b"\r\n\r\n").startswith(b"HTTP/1.1 400")
    finally:
        s.close()
        feed.stop()
        gw.stop()


def test_smuggling_big_heads_and_forwarded_for(dep):
    """Content-Length with Transfer-Encoding: 400 and closed, the request behind it never answered;
    request heads of 30-100 KB in one write: 431; X-Forwarded-For believed only with
    --forwarded-allow-ips (the access log shows the peer otherwise)."""
    from tests.unit.gateway.test_server import answers

    gw = GatewayProcess(dep, extra=("--access-log",))
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as s:
            s.sendall(f"POST /zones HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 4\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
                      .encode())
            out = answers(s)
            assert out.startswith(b"HTTP/1.1 400") and out.count(b"HTTP/1.1 ") == 1, out
        for kib in (30, 60, 100):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (kib * 1024) + b"\r\n\r\n")
                assert answers(s).startswith(b"HTTP/1.1 431"), kib
        r = httpx.get(gw.url + "/healthz", headers={"X-Forwarded-For": "203.0.113.77"}, timeout=10)
        assert r.status_code == 200
    finally:
        gw.stop()
    log = gateway_log(gw)
    assert "/hidden" not in log and "203.0.113.77" not in log
    trusting = GatewayProcess(dep, extra=("--access-log", "--forwarded-allow-ips", "127.0.0.1"))
    try:
        httpx.get(trusting.url + "/healthz", headers={"X-Forwarded-For": "203.0.113.77"}, timeout=10)
    finally:
        trusting.stop()
    assert '203.0.113.77:0 - "GET /healthz HTTP/1.1" 200' in gateway_log(trusting)


SPELLED = ["?token='{t}'", '?token="{t}"', ";token={t}", "?a=1;token={t}", "?%2574oken={t}", "?TOKEN={t}",
           "?token[]={t}", "?access_token={t}", "?token=%27{t}%27"]


def test_tokens_under_any_spelling_and_callers_never_reach_the_log(dep):
    """With the access log on at debug level: a wrong token under every spelling of the parameter
    (a real one is masked wherever it stands); a caller number in a query string is refused (400)
    and not logged; 300 malformed requests leave a few lines, not 300."""
    wrong = "wrong-token-" + secrets.token_hex(8)
    number = "13800138000"
    gw = GatewayProcess(dep, extra=("--access-log", "--log-level", "debug"))
    try:
        for spelled in SPELLED:
            for t in (TOKEN, wrong):
                httpx.get(gw.url + "/zones" + spelled.format(t=t), timeout=10)
                with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as s:  # as sent, not re-encoded
                    s.sendall(f"GET /stream{spelled.format(t=t)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    read_until(s, b"\r\n\r\n")
        for query in (f"?caller={number}", f"?a=1;caller_ref={number}", f"?%63aller={number}"):
            r = httpx.get(gw.url + "/zones" + query, headers=AUTH, timeout=10)
            assert r.status_code == 400 and number not in r.text
        before = gw.metric("zonewatch_gateway_log_lines_suppressed_total")
        for _ in range(300):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=BOUND_S) as s:
                s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                answers_or_reset(s)
        assert gw.metric("zonewatch_gateway_log_lines_suppressed_total") >= before + 290
    finally:
        gw.stop()
    log = gateway_log(gw)
    leaks = [line for line in log.splitlines() if TOKEN in line or wrong in line or number in line]
    assert not leaks, leaks[:5]
    assert log.count("Invalid HTTP request received.") <= 10, log.count("Invalid HTTP request received.")


def answers_or_reset(s: socket.socket) -> bytes:
    from tests.unit.gateway.test_server import answers

    return answers(s)


def test_a_malformed_incident_and_a_multi_line_state_break_no_answer_and_no_stream(deployment):
    """Two zw:incidents entries whose ts have different types (the sort raised: /incidents 500 and
    every stream died before its snapshot), a zone update whose `state` has raw newlines (it forged
    an empty snapshot, a day-long retry, a fake id), a malformed incident update: /incidents 200,
    SSE and WebSocket clients get their snapshot and keep going, each bad record counted."""
    from websockets.sync.client import connect

    dep = deployment(scenario.ZONES_FILE, partitions=1)
    now = int(time.time() * 1000)
    r = dep.redis
    r.sadd(keys.ZONES, "A")
    r.set(keys.zone("A"), orjson.dumps(schemas.example("zone", zone_id="A", clock=now)))
    r.hset(keys.INCIDENTS, mapping={
        "i1": orjson.dumps(schemas.example("incident", call_id="i1", ts=now, status="open")),
        "i2": orjson.dumps(schemas.example("incident", call_id="i2", ts=str(now - 1), status="open")),
        "i3": b"{not json"})
    gw = GatewayProcess(dep)
    sse = None
    try:
        r1 = gw.get("/incidents")
        assert r1.status_code == 200 and [i["call_id"] for i in r1.json()] == ["i1"]
        sse = SSEClient(gw.url, incidents=True)
        snap = sse.next_event()
        assert snap["event"] == "snapshot" and [z["zone_id"] for z in orjson.loads(snap["data"])] == ["A"]
        inc = sse.next_event()
        assert inc["event"] == "incidents" and [i["call_id"] for i in orjson.loads(inc["data"])] == ["i1"]
        with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:
            assert orjson.loads(ws.recv(timeout=10))["type"] == "snapshot"
            assert [i["call_id"] for i in orjson.loads(ws.recv(timeout=10))["incidents"]] == ["i1"]
            forged = b'{"zone_id": "A"}\nretry: 86400000\nid: 99-0\nevent: snapshot\ndata: []\n'
            r.xadd(keys.ZONE_UPDATES, {"zone_id": "A", "version": 2, "state": forged})
            r.xadd(keys.INCIDENT_UPDATES, {"call_id": "i4", "state": b'{"call_id": "i4", "ts": "soon"}'})
            good = schemas.example("zone", zone_id="A", clock=now, version=99)
            last = r.xadd(keys.ZONE_UPDATES, {"zone_id": "A", "version": 99,
                                              "state": orjson.dumps(good, option=orjson.OPT_INDENT_2)}).decode()
            msg = orjson.loads(ws.recv(timeout=10))
            assert msg["type"] == "zone" and msg["id"] == last and msg["state"] == good
        ev = sse.next_event()
        assert ev == {"event": "zone", "id": last, "data": orjson.dumps(good).decode()} or \
            (ev["event"] == "zone" and ev["id"] == last and orjson.loads(ev["data"]) == good), ev
        assert "\n" not in ev["data"]
        assert gw.metric('zonewatch_gateway_bad_records_total{kind="incident"}') >= 4   # i2, i3 (twice+), i4
        assert gw.metric('zonewatch_gateway_bad_records_total{kind="zone"}') >= 1
    finally:
        if sse:
            sse.close()
        gw.stop()
    log = gateway_log(gw)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
