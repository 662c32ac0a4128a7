"""uvicorn for the gateway, with the limits a client-facing server needs (docs/SECURITY.md,
"Gateway limits"). uvicorn alone holds a connection that never sends a request forever (its
keep-alive timer starts only after a first response, and any byte resets it), has no cap on open
connections, and logs WebSocket handshakes with their query string. Here:

 * header timeout: from connect, and again from the end of each response, the complete request
   head must arrive within `header_timeout_s`, whatever trickles in meanwhile; else the
   connection is closed (slow-header and idle connections, with or without a first byte);
 * keep-alive: uvicorn's `timeout_keep_alive` (an idle connection between requests);
 * write timeout: a connection whose writes stay paused (the client stopped reading) for
   `write_timeout_s` is aborted, and TCP_USER_TIMEOUT makes the kernel drop a peer that vanished
   without a FIN or RST after as long (the heartbeats give it something to time out on);
 * connection cap: at `max_connections` open connections a new one gets `503` and is closed at
   once, well below the file limit (which `check_fd_limit` raises or refuses at start);
 * request heads up to MAX_HEAD_BYTES however they arrive (h11 bounds only a head that arrives in
   pieces: `RequestHeads` also measures one that comes in a single write, and refuses a head with both
   Content-Length and Transfer-Encoding, RFC 9112 §6.3, and a GET with a body), answered with 431 or
   400 and the connection closed;
 * WebSocket input bounded (issue 24): client messages up to WS_MAX_MESSAGE_BYTES (the gateway needs
   none; 1009 past it), frames of any kind (pings and pongs too) within a `FrameBudget` (a client
   over it is not read until the budget has paid; one over it for WS_FLOOD_CLOSE_S is closed with
   1008), parsed WS_READ_SLICE bytes at a time, and nothing
   parsed while the connection's writes are paused, nor read once WS_UNREAD_MAX bytes wait (a client
   that sends pings and never reads the pongs stops being read instead of filling the gateway's memory
   with pongs), with a kernel receive buffer of WS_RCVBUF; pings every 20 s (a peer that misses one for
   20 s is closed);
 * proxy headers (X-Forwarded-For, X-Forwarded-Proto) only from `forwarded_allow_ips` (default none);
 * logs without secrets, noisy lines rate-limited (gateway/logs.py).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11

from contract.errors import ConfigError
from gateway import logs
from gateway.metrics import CONNECTIONS, CONNECTIONS_CLOSED, CONNECTIONS_REFUSED

log = logging.getLogger("zonewatch.gateway")

MAX_HEAD_BYTES = 16 * 1024          # request line + headers (h11's default, made explicit)
WS_MAX_MESSAGE_BYTES = 4 * 1024     # a WebSocket client message; the gateway needs none
WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
# A WebSocket client needs to send nothing but pongs (one per 20 s ping), its own pings and a close:
# 64 frames at once and 8 a second after that leave any library room and bound a flood at 8 x 4 KiB/s.
WS_FRAME_BURST = 64
WS_FRAMES_PER_S = 8.0
WS_READ_SLICE = 512                 # bytes parsed at a time: at most 85 frames handled past the budget
WS_UNREAD_MAX = 64 * 1024           # bytes waiting unparsed (writes paused) before reading stops too
# The kernel's receive buffer of a WebSocket (it grows to megabytes on its own): what a client that is
# not read can park in this host's memory. Clients send next to nothing.
WS_RCVBUF = 64 * 1024
# A client over its budget is not read until the budget has paid for what it sent; one that is over it
# this long (back to back) is closed (1008), held unread meanwhile: closing at once would invite an
# immediate reconnect, which costs the gateway a handshake and a snapshot each time.
WS_FLOOD_CLOSE_S = 10.0
FD_HEADROOM = 128                   # files besides client connections: Redis pool, listener, logs, scrapes
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_PHRASES = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}
LIMIT_WARN_EVERY_S = 10.0


@dataclass(frozen=True)
class Limits:
    """The connection limits (flags and ZONEWATCH_GATEWAY_* variables of `zonewatch gateway`)."""

    header_timeout_s: float = 10.0
    keepalive_s: float = 5.0
    write_timeout_s: float = 30.0
    max_connections: int = 1000

    def check(self) -> None:
        for name, flag in (("header_timeout_s", "--header-timeout"), ("keepalive_s", "--keepalive"),
                           ("write_timeout_s", "--write-timeout")):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{flag} must be a positive number of seconds, not {getattr(self, name)!r}")
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections must be at least 1, not {self.max_connections!r}")


class FrameBudget:
    """A token bucket of WebSocket frames: `burst` at once, refilled at `per_s`; what is spent
    beyond it is a debt, repaid at the same rate."""

    def __init__(self, burst: int, per_s: float, clock=time.monotonic):
        self.burst, self.per_s, self.clock = burst, per_s, clock
        self.tokens = float(burst)
        self.at = clock()

    def spend(self, frames: int) -> float:
        """Spend `frames`; the seconds until the debt (if any) is repaid."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s) - frames
        self.at = now
        return max(0.0, -self.tokens / self.per_s)


def _head_end(data: bytes) -> int:
    """Where the request head in `data` ends (past its blank line, as h11 finds it: LF, optional
    CR, LF), or -1."""
    ends = [i + n for i, n in ((data.find(b"\n\r\n"), 3), (data.find(b"\n\n"), 2)) if i >= 0]
    return min(ends) if ends else -1


def head_size(request: h11.Request) -> int:
    """The size of a parsed request head (its request line and headers, without the spaces h11
    strips around values): a lower bound of what came on the wire."""
    return (len(request.method) + len(request.target) + 12
            + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items()) + 2)


class RequestHeads(h11.Connection):
    """h11's server side, refusing what h11 lets through: a request head over `max_head` bytes
    however it arrives (h11 bounds only an incomplete one; a 100 KB head in one write passed), both
    Content-Length and Transfer-Encoding (RFC 9112 §6.3: a server must close such a connection, as
    the two may frame the body differently for a proxy in front), and a body on any method but POST
    (no route reads one; /stream's would be read and dropped for as long as it lasts). `refusal`
    is then the (status, reason) to answer before closing."""

    def __init__(self, max_head: int):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self.max_head = max_head
        self.head_bytes = 0           # of the head being received, while the client is IDLE
        self.tail = b""               # the last bytes of it: a blank line may span two writes
        self.refusal: tuple[int, str] | None = None

    def receive_data(self, data: bytes) -> None:
        if self.their_state is h11.IDLE and data and self.refusal is None:
            seen = self.tail + data
            end = _head_end(seen)
            if end < 0:
                self.head_bytes += len(data)
                self.tail = seen[-2:]
            else:
                self.head_bytes += end - len(self.tail)
                if self.head_bytes > self.max_head:
                    self.refusal = (431, f"request head over {self.max_head} bytes")
        super().receive_data(data)

    def next_event(self):
        if self.refusal is not None:
            raise h11.RemoteProtocolError(self.refusal[1], error_status_hint=self.refusal[0])
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.head_bytes, self.tail = 0, b""
            names = {name for name, _ in event.headers}
            if head_size(event) > self.max_head:      # a pipelined head, behind another in one write
                self.refusal = (431, f"request head over {self.max_head} bytes")
            elif b"content-length" in names and b"transfer-encoding" in names:
                self.refusal = (400, "Content-Length and Transfer-Encoding together (RFC 9112 section 6.3)")
            elif event.method != b"POST" and (b"transfer-encoding" in names or any(
                    value != b"0" for name, value in event.headers if name == b"content-length")):
                self.refusal = (400, f"a {event.method.decode('ascii', 'replace')} request carries no body")
            if self.refusal is not None:
                raise h11.RemoteProtocolError(self.refusal[1], error_status_hint=self.refusal[0])
        return event


def check_fd_limit(max_connections: int) -> int:
    """Make sure the process may open `max_connections` sockets and then some: raise the soft
    RLIMIT_NOFILE up to the hard one if needed, or refuse. Returns the soft limit in effect."""
    needed = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ConfigError(f"--max-connections {max_connections} (ZONEWATCH_GATEWAY_MAX_CONNECTIONS) needs "
                              f"{needed} file descriptors but the limit is {hard} (ulimit -n): lower it or "
                              "raise the limit")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def _user_timeout(transport, seconds: float) -> None:
    """TCP_USER_TIMEOUT: the kernel drops the connection when sent data stays unacknowledged
    (or unsent behind a zero window) this long."""
    sock = transport.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))


if TYPE_CHECKING:  # what the mixin finds in the uvicorn protocol it is mixed into
    import asyncio

    _Protocol = asyncio.Protocol
else:
    _Protocol = object


class _WriteTimeout(_Protocol):
    """Abort the connection when its writes stay paused for `write_timeout_s`."""

    limits: Limits
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _write_timer = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            CONNECTIONS_CLOSED.labels("write_timeout").inc()
            self.transport.abort()   # what is buffered will never be read


def protocols(limits: Limits):
    """uvicorn's h11 HTTP and websockets (sans-I/O) protocols with the limits (classes for
    uvicorn.Config's `http` and `ws`)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.utils import ClientDisconnected
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame

    refusals = {"last_warned": 0.0, "since": 0}

    class GatewayHTTP(_WriteTimeout, H11Protocol):
        _head_timer = None
        _refused = False
        conn: RequestHeads

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.conn = RequestHeads(MAX_HEAD_BYTES)

        def send_400_response(self, msg: str) -> None:
            refusal = self.conn.refusal
            if refusal is None:           # h11's own refusals (malformed heads): uvicorn's answer
                super().send_400_response(msg)
                return
            CONNECTIONS_CLOSED.labels("bad_head").inc()
            status, reason = refusal
            body = reason.encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (status, _PHRASES[status], len(body), body))
            self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self._refuse(transport)
                return
            _user_timeout(transport, limits.write_timeout_s)
            self._arm_head_timer()

        def _refuse(self, transport) -> None:
            self._refused = True
            CONNECTIONS_REFUSED.inc()
            refusals["since"] += 1
            now = time.monotonic()
            if now - refusals["last_warned"] >= LIMIT_WARN_EVERY_S:   # one line per 10 s, not per connection
                log.warning("%d open connections (--max-connections): refused %d new ones since the last "
                            "message", len(self.connections) - 1, refusals["since"])
                refusals["last_warned"], refusals["since"] = now, 0
            transport.write(REFUSAL)
            transport.close()

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._cancel_head_timer()   # a request is being served

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                self._arm_head_timer()      # before uvicorn reads a pipelined request
            super().on_response_complete()

        def handle_websocket_upgrade(self, event) -> None:
            self._cancel_head_timer()
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            self._cancel_write_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            CONNECTIONS_CLOSED.labels("header_timeout").inc()
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    class GatewayWebSocket(_WriteTimeout, WebSocketsSansIOProtocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.budget = FrameBudget(WS_FRAME_BURST, WS_FRAMES_PER_S)
            self.unread = bytearray()     # received, not parsed yet: waits while writes are paused
            self.writes_paused = False
            self.reading_held = False     # reading paused here (`unread` full, or over the budget)
            # the timer of a client over its budget: read it again, or close it
            self.throttle: asyncio.TimerHandle | None = None
            self.over_since: float | None = None   # over its budget since (back within it: None)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            _user_timeout(transport, limits.write_timeout_s)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WS_RCVBUF)

        def connection_lost(self, exc) -> None:
            self._cancel_write_timer()
            if self.throttle is not None:
                self.throttle.cancel()
                self.throttle = None
            self.unread.clear()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self.unread += data
            self._parse()

        def _parse(self) -> None:
            """Parse what was received, a slice at a time, while writes flow and the budget holds:
            every slice's frames are spent from the budget as uvicorn handles them (answers pings,
            queues messages for the app); over it, nothing more is read or parsed until the budget
            has paid, or the client is closed (WS_FLOOD_CLOSE_S). While writes are paused nothing is
            parsed, so nothing is answered, and past WS_UNREAD_MAX bytes waiting nothing is read."""
            done = 0
            while (done < len(self.unread) and not self.writes_paused and self.throttle is None
                   and not self.transport.is_closing()):
                piece = bytes(self.unread[done:done + WS_READ_SLICE])
                done += len(piece)
                self.conn.receive_data(piece)
                if self.conn.parser_exc is not None:     # e.g. a message over the size limit: 1009
                    self.unread.clear()
                    self.handle_parser_exception()
                    return
                frames = sum(isinstance(e, Frame) for e in self.conn.events)
                wait = self.budget.spend(frames) if frames else 0.0
                self.handle_events()
                if wait > 0:
                    self._over_budget(wait)
                elif frames:
                    self.over_since = None
            del self.unread[:done]
            if self.transport.is_closing():
                return
            if len(self.unread) > WS_UNREAD_MAX or self.throttle is not None:
                self.reading_held = True
                self.transport.pause_reading()
            elif self.reading_held:
                self.reading_held = False
                if not self.read_paused:                 # uvicorn's own pause (the app's messages) stays
                    self.transport.resume_reading()

        def _over_budget(self, wait: float) -> None:
            """Read again once the budget has paid; close when the client will have been over it
            (back to back) for WS_FLOOD_CLOSE_S by then."""
            now = self.loop.time()
            if self.over_since is None:
                self.over_since = now
            left = WS_FLOOD_CLOSE_S - (now - self.over_since)
            if wait >= left:
                self.throttle = self.loop.call_later(max(0.0, left), self._flooded)
            else:
                self.throttle = self.loop.call_later(wait, self._paid)

        def _paid(self) -> None:
            self.throttle = None
            self._parse()

        def _flooded(self) -> None:
            self.throttle = None
            if self.transport.is_closing():
                return
            CONNECTIONS_CLOSED.labels("ws_flood").inc()
            log.warning("a WebSocket client sent frames beyond %d at once and %g a second: closed (1008)",
                        WS_FRAME_BURST, WS_FRAMES_PER_S)
            self.unread.clear()
            self.conn.fail(1008, "too many frames")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1008, "reason": "too many frames"})
            self.transport.close()

        def pause_writing(self) -> None:
            super().pause_writing()
            self.writes_paused = True

        def resume_writing(self) -> None:
            super().resume_writing()
            self.writes_paused = False
            self._parse()

        async def send(self, message) -> None:
            # the transport knows at once when the peer is gone; uvicorn learns it one loop step
            # later (connection_lost), and a writer sending a batch would write into the void meanwhile
            if self.transport.is_closing() and message["type"] == "websocket.send":
                raise ClientDisconnected()
            await super().send(message)

    GatewayHTTP.limits = GatewayWebSocket.limits = limits
    return GatewayHTTP, GatewayWebSocket


def server(app, *, host: str, port: int, limits: Limits, log_level: str = "info", access_log: bool = False,
           forwarded_allow_ips: tuple[str, ...] = ()):
    """A uvicorn.Server for the app with the limits, logs redacted, connections counted. Proxy
    headers (X-Forwarded-For, X-Forwarded-Proto) count only from `forwarded_allow_ips` (addresses
    or networks; none by default, whatever FORWARDED_ALLOW_IPS says): uvicorn alone trusts them from
    127.0.0.1, so anything on the gateway's host could pose as any client in the logs."""
    import uvicorn

    http, ws = protocols(limits)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log, lifespan="on",
                            proxy_headers=bool(forwarded_allow_ips),
                            forwarded_allow_ips=list(forwarded_allow_ips) or ["127.0.0.1"],
                            http=http, ws=ws, ws_max_size=WS_MAX_MESSAGE_BYTES,
                            ws_ping_interval=WS_PING_INTERVAL_S, ws_ping_timeout=WS_PING_TIMEOUT_S,
                            # uvicorn annotates int; it is call_later's delay, fractions work
                            timeout_keep_alive=limits.keepalive_s,  # type: ignore[arg-type]
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                            timeout_graceful_shutdown=2, server_header=False)
    logs.redact_uvicorn()   # after uvicorn.Config: it (re)configures the uvicorn loggers
    srv = uvicorn.Server(config)
    state = srv.server_state
    CONNECTIONS.set_function(lambda: len(state.connections))
    return srv
