"""gateway/server.py's connection limits on a real uvicorn (in a thread, a trivial ASGI app, no Redis):
connections that never send a complete request head, a cap on open connections, clients that stop
reading. Plain uvicorn holds the first forever (issue 16); the bounds below are liveness bounds."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import pytest

from gateway import server as server_module
from gateway.metrics import CONNECTIONS_CLOSED, CONNECTIONS_REFUSED
from gateway.server import MAX_HEAD_BYTES, FrameBudget, Limits, check_fd_limit, server

BOUND_S = 10.0   # liveness bound: far above every limit used here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """/ answers "ok" (and records the client address it was given); /flood streams forever and
    records when it sees the client go; a WebSocket is accepted, its messages counted (and, on
    /ws-flood, 64 KiB messages sent to it for ever)."""

    def __init__(self):
        self.flood_gone = threading.Event()
        self.clients: list = []
        self.ws_messages = 0
        self.ws_closed: list = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})

            async def push():
                while True:
                    await send({"type": "websocket.send", "bytes": b"y" * 65536})

            task = asyncio.ensure_future(push()) if scope["path"] == "/ws-flood" else None
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.ws_closed.append(message.get("code"))
                    break
                self.ws_messages += 1
            if task:
                task.cancel()
            return
        self.clients.append(scope["client"])
        if scope["path"] == "/flood":
            async def flood():
                await send({"type": "http.response.start", "status": 200, "headers": []})
                while True:
                    await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})

            task = asyncio.ensure_future(flood())
            while (await receive())["type"] != "http.disconnect":
                pass
            self.flood_gone.set()
            task.cancel()
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


class Running:
    def __init__(self, limits: Limits, **server_kw):
        self.app = App()
        self.port = free_port()
        self.srv = server(self.app, host="127.0.0.1", port=self.port, limits=limits, log_level="warning", **server_kw)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.srv.serve()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + BOUND_S
        while not self.srv.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=BOUND_S)
        return s

    def stop(self):
        self.srv.should_exit = True
        self.thread.join(BOUND_S)


@pytest.fixture
def running():
    made = []

    def start(forwarded_allow_ips=(), **kw) -> Running:
        r = Running(Limits(**kw), forwarded_allow_ips=forwarded_allow_ips)
        made.append(r)
        return r

    yield start
    for r in made:
        r.stop()


def response(s: socket.socket) -> bytes:
    """One whole response of App's / (its body is "ok")."""
    buf = b""
    while not buf.endswith(b"\r\n\r\nok"):
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    return buf


def closed_by_server(s: socket.socket, trickle: bytes = b"") -> bool:
    """Read (sending a byte of `trickle` every 0.1 s) until the server closes; True if it did
    within the bound."""
    s.settimeout(0.1)
    deadline = time.monotonic() + BOUND_S
    i = 0
    while time.monotonic() < deadline:
        if trickle:
            try:
                s.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
            except OSError:
                return True
            i += 1
        try:
            data = s.recv(4096)
            if data == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_connections_without_a_complete_request_head_are_closed(running):
    r = running(header_timeout_s=0.5, keepalive_s=0.3)
    before = CONNECTIONS_CLOSED.labels("header_timeout")._value.get()
    idle = r.connect()                                      # never sends a byte
    slow = r.connect()                                      # a header byte every 0.1 s, never done
    partial = r.connect()
    partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")       # half a head, then silence
    assert closed_by_server(idle)
    assert closed_by_server(slow, trickle=b"GET / HTTP/1.1\r\nX-A: " + b"a" * 1000)
    assert closed_by_server(partial)
    assert CONNECTIONS_CLOSED.labels("header_timeout")._value.get() >= before + 2   # keep-alive may take idle


def test_after_a_response_the_next_head_is_bounded_too(running):
    r = running(header_timeout_s=0.5, keepalive_s=30)
    s = r.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response(s).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")        # keep-alive works
    assert response(s).startswith(b"HTTP/1.1 200")
    assert closed_by_server(s, trickle=b"GET / HTTP/1.1\r\nX-Slow: " + b"b" * 1000)   # keep-alive 30 s: the head bound


def test_at_most_max_connections_then_503_at_once(running):
    r = running(header_timeout_s=30, max_connections=3)
    before = CONNECTIONS_REFUSED._value.get()
    held = [r.connect() for _ in range(3)]
    time.sleep(0.2)
    extra = r.connect()
    extra.settimeout(BOUND_S)
    assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    assert CONNECTIONS_REFUSED._value.get() == before + 1
    held.pop().close()
    time.sleep(0.2)
    s = r.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response(s).startswith(b"HTTP/1.1 200")
    for c in held + [s, extra]:
        c.close()


def test_a_client_that_stops_reading_is_dropped(running):
    r = running(write_timeout_s=0.5)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", r.port))
    s.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")   # and never reads
    assert r.app.flood_gone.wait(BOUND_S), "the app never saw the client go"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_the_file_limit_is_raised_or_the_start_refused(monkeypatch):
    import resource

    from contract.errors import ConfigError

    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _r, v: calls.append(v))
    assert check_fd_limit(500) == 1024 and calls == []
    assert check_fd_limit(2000) == 2128 and calls == [(2128, 4096)]
    with pytest.raises(ConfigError, match="ZONEWATCH_GATEWAY_MAX_CONNECTIONS"):
        check_fd_limit(5000)


def test_limits_are_checked():
    from contract.errors import ConfigError

    for bad in ({"header_timeout_s": 0}, {"keepalive_s": -1}, {"write_timeout_s": 0}, {"max_connections": 0}):
        with pytest.raises(ConfigError):
            Limits(**bad).check()
    Limits().check()


# --- issue 24: request smuggling, head sizes, proxy headers, WebSocket floods --------------------------


def answers(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    s.settimeout(BOUND_S)
    buf = b""
    try:
        while chunk := s.recv(65536):
            buf += chunk
    except ConnectionResetError:      # closed while we were still sending: what came before counts
        pass
    return buf


def test_content_length_and_transfer_encoding_together_get_400_and_the_connection_closed(running):
    r = running()
    s = r.connect()
    hidden = b"GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\n" + hidden)
    out = answers(s)
    assert out.startswith(b"HTTP/1.1 400") and b"Transfer-Encoding" in out
    assert out.count(b"HTTP/1.1") == 1            # the request hidden behind it is never answered
    assert r.app.clients == []


def test_a_get_with_a_body_gets_400(running):
    r = running()
    for head in (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                 b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"):
        s = r.connect()
        s.sendall(head)
        assert answers(s).startswith(b"HTTP/1.1 400")
    s = r.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert response(s).startswith(b"HTTP/1.1 200")
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert response(s).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("kib", [17, 30, 60, 100])
def test_a_request_head_over_the_limit_is_refused_however_it_arrives(running, kib):
    r = running()
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (kib * 1024) + b"\r\n\r\n"
    s = r.connect()
    s.sendall(head)                                          # in one write
    assert answers(s).startswith(b"HTTP/1.1 431")
    s = r.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + head)   # behind a small one, in the same write
    out = answers(s)
    assert out.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 431" in out
    s = r.connect()
    for i in range(0, len(head), 1000):                      # in pieces: h11's own limit
        try:
            s.sendall(head[i:i + 1000])
        except OSError:
            break
    out = answers(s)                                         # 400, or a reset while we still sent
    assert out == b"" or out.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), out[:100]
    assert len(r.app.clients) == 1                           # only the small request was served


def test_a_head_padded_with_spaces_h11_strips_is_measured_as_it_came(running):
    r = running()
    s = r.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad:" + b" " * (40 * 1024) + b"v\r\n\r\n")
    assert answers(s).startswith(b"HTTP/1.1 431")
    assert r.app.clients == []


def test_a_head_just_under_the_limit_is_served(running):
    r = running()
    s = r.connect()
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (MAX_HEAD_BYTES - 200) + b"\r\n\r\n"
    s.sendall(head)
    assert response(s).startswith(b"HTTP/1.1 200")


def test_forwarded_for_is_trusted_only_from_configured_addresses(running):
    spoof = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
    for allow, want in (((), "127.0.0.1"), (("127.0.0.1",), "203.0.113.9"), (("10.0.0.0/8",), "127.0.0.1")):
        r = running(forwarded_allow_ips=allow)
        s = r.connect()
        s.sendall(spoof)
        assert response(s).startswith(b"HTTP/1.1 200")
        assert r.app.clients[-1][0] == want, allow


# a WebSocket client's frames, masked as a client must send them
WS_HANDSHAKE = (b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body      # payloads < 126 bytes here


def ws_connect(r: Running, path: bytes = b"/ws", rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", r.port))
    s.settimeout(BOUND_S)
    s.sendall(WS_HANDSHAKE % path)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    return s


def close_code(s: socket.socket) -> int | None:
    """The code of the server's close frame (reading past any other frame), None if none came."""
    buf = answers(s)
    while len(buf) >= 2:
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        if buf[0] & 0x0F == 0x8:
            return struct.unpack("!H", buf[off:off + 2])[0]
        buf = buf[off + n:]
    return None


def test_frame_budget_refills_at_its_rate_and_counts_a_debt():
    now = [0.0]
    b = FrameBudget(10, 2.0, clock=lambda: now[0])
    assert b.spend(10) == 0.0 and b.spend(1) == 0.5          # 1 frame over: half a second at 2/s
    now[0] = 1.5
    assert b.spend(2) == 0.0                                  # repaid, and one more frame's worth
    now[0] = 100.0
    assert b.spend(30) == 10.0                                # never more than the burst: 20 over


@pytest.mark.parametrize("opcode, payload", [(0x1, b"x"), (0x9, b"p" * 125), (0xA, b"")])
def test_a_websocket_flood_of_any_frame_is_held_then_closed_with_1008(running, monkeypatch, opcode, payload):
    monkeypatch.setattr(server_module, "WS_FLOOD_CLOSE_S", 0.5)
    r = running()
    before = CONNECTIONS_CLOSED.labels("ws_flood")._value.get()
    s = ws_connect(r)
    s.settimeout(2.0)
    sent = 0
    try:
        while sent < 16 * 2**20:                             # text messages, pings, unsolicited pongs
            sent += s.send(frame(opcode, payload) * 5000)
    except OSError:
        pass                                                 # no longer read, or closed: that is the point
    assert sent < 16 * 2**20, "the gateway kept reading the flood"
    # its close frame, unless the connection was reset while we still sent (it closed our socket)
    assert close_code(s) in (1008, None)
    assert CONNECTIONS_CLOSED.labels("ws_flood")._value.get() == before + 1
    deadline = time.monotonic() + BOUND_S
    while not r.app.ws_closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.app.ws_closed == [1008]                         # the app was told why
    # the budget and one parsed slice at most reached the app, not the flood
    assert r.app.ws_messages <= server_module.WS_FRAME_BURST + server_module.WS_READ_SLICE // 6


def test_a_client_kept_just_over_its_budget_is_closed_in_the_end(running, monkeypatch):
    """Over the budget all the time, but never by much at once (frames of 125 bytes: at most 31 in a
    parsed slice, 0.6 s of debt at 50 a second): slowed to the budget's pace, and closed once it has
    been over it for WS_FLOOD_CLOSE_S back to back."""
    monkeypatch.setattr(server_module, "WS_FRAME_BURST", 10)
    monkeypatch.setattr(server_module, "WS_FRAMES_PER_S", 50.0)
    monkeypatch.setattr(server_module, "WS_FLOOD_CLOSE_S", 1.0)
    r = running()
    before = CONNECTIONS_CLOSED.labels("ws_flood")._value.get()
    s = ws_connect(r)
    s.settimeout(0.5)
    deadline, pending = time.monotonic() + BOUND_S, b""
    try:
        while not r.app.ws_closed and time.monotonic() < deadline:
            pending = pending or frame(0x1, b"m" * 125) * 20
            try:
                pending = pending[s.send(pending):]          # whole frames in the end, however it goes
            except TimeoutError:                             # not read meanwhile: try again
                continue
    except OSError:
        pass
    assert close_code(s) in (1008, None)
    assert CONNECTIONS_CLOSED.labels("ws_flood")._value.get() == before + 1 and r.app.ws_closed == [1008]


def test_a_client_a_little_over_its_budget_is_slowed_not_closed(running, monkeypatch):
    monkeypatch.setattr(server_module, "WS_FRAME_BURST", 10)
    monkeypatch.setattr(server_module, "WS_FRAMES_PER_S", 50.0)
    r = running()
    before = CONNECTIONS_CLOSED.labels("ws_flood")._value.get()
    s = ws_connect(r)
    for _ in range(3):
        s.sendall(frame(0x1, b"hi") * 30)                    # 20 over: read again after 0.4 s
    deadline = time.monotonic() + BOUND_S
    while r.app.ws_messages < 90 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.app.ws_messages == 90                           # every message, at the budget's pace
    assert CONNECTIONS_CLOSED.labels("ws_flood")._value.get() == before
    s.sendall(frame(0x8, struct.pack("!H", 1000)))
    assert close_code(s) == 1000


def test_a_websocket_client_within_the_budget_is_served(running):
    r = running()
    s = ws_connect(r)
    for _ in range(3):                                       # a burst below the budget, then a pause
        s.sendall(frame(0x9, b"ping") + frame(0x1, b"hello") * 10)
        time.sleep(0.3)
    s.sendall(frame(0x8, struct.pack("!H", 1000)))
    assert close_code(s) == 1000                             # the server's reply to our close
    assert r.app.ws_messages == 30 and r.app.ws_closed == [1000]


def test_a_websocket_client_that_never_reads_is_not_read_either(running, monkeypatch):
    """Pings (with no budget to stop them) from a client that reads nothing: the gateway stops
    reading while its writes are paused, so what it holds for the client stays near the transport's
    high-water mark instead of every pong of the flood (issue 24: 79 -> 989 MB from one client)."""
    monkeypatch.setattr(server_module, "WS_FRAME_BURST", 10**9)
    r = running(write_timeout_s=60)
    s = ws_connect(r, rcvbuf=4096)
    held = []

    def sample():
        for conn in list(r.srv.server_state.connections):
            if hasattr(conn, "unread") and conn.transport:     # the WebSocket protocol
                held.append(conn.transport.get_write_buffer_size() + len(conn.unread))

    ping = frame(0x9, b"p" * 125)
    sent, blocked = 0, False
    s.settimeout(2.0)
    try:
        while sent < 64 * 2**20:                             # 64 MiB of pings, unless the gateway stops reading
            s.sendall(ping * 1000)
            sent += len(ping) * 1000
            if sent % (4 * 2**20) < len(ping) * 1000:
                sample()
    except TimeoutError:
        blocked = True
    sample()
    assert blocked, f"the gateway read all {sent} bytes of pings"
    conn = next(c for c in list(r.srv.server_state.connections) if hasattr(c, "unread"))
    rcvbuf = conn.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert rcvbuf <= 2 * server_module.WS_RCVBUF              # what the kernel parks for it too (Linux doubles it)
    assert max(held) < 2 * 2**20, held                       # bytes held for this client, not the flood
    s.close()


def test_a_websocket_client_is_read_again_once_it_reads(running, monkeypatch):
    """With the app writing (the feed): the gateway stops reading a client that lags and sends
    pings, and reads it again once it reads: its close, sent after the pings, arrives."""
    monkeypatch.setattr(server_module, "WS_FRAME_BURST", 10**9)
    r = running(write_timeout_s=60)
    s = ws_connect(r, path=b"/ws-flood", rcvbuf=4096)
    s.settimeout(2.0)
    ping, sent = frame(0x9, b"q" * 125) * 1000, 0
    try:
        while sent < 64 * 2**20:
            sent += s.send(ping)
    except TimeoutError:
        pass
    assert sent < 64 * 2**20, "the gateway read everything"
    stop = threading.Event()

    rs = s.dup()                                             # its own timeout, apart from the sender's
    rs.settimeout(0.2)

    def drain():                                             # now the client reads, for good
        while not stop.is_set():
            try:
                if not rs.recv(1 << 20):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    s.settimeout(BOUND_S)
    s.sendall(ping * 4 + frame(0x8, struct.pack("!H", 1000)))
    deadline = time.monotonic() + BOUND_S
    while not r.app.ws_closed and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(BOUND_S)
    assert r.app.ws_closed == [1000]
    rs.close()
    s.close()
