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

from gateway.metrics import CONNECTIONS_CLOSED, CONNECTIONS_REFUSED
from gateway.server import Limits, check_fd_limit, server

BOUND_S = 10.0   # liveness bound: far above every limit used here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """/ answers "ok"; /flood streams forever and records when it sees the client go."""

    def __init__(self):
        self.flood_gone = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
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
    def __init__(self, limits: Limits):
        self.app = App()
        self.port = free_port()
        self.srv = server(self.app, host="127.0.0.1", port=self.port, limits=limits, log_level="warning")
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

    def start(**kw) -> Running:
        r = Running(Limits(**kw))
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
