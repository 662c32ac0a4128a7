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
 * request heads up to MAX_HEAD_BYTES (h11), WebSocket client messages up to WS_MAX_MESSAGE_BYTES
   (the gateway needs none), WebSocket pings every 20 s (a peer that misses one for 20 s is closed);
 * logs without secrets (gateway/logs.py).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.errors import ConfigError
from gateway import logs
from gateway.metrics import CONNECTIONS, CONNECTIONS_CLOSED, CONNECTIONS_REFUSED

log = logging.getLogger("zonewatch.gateway")

MAX_HEAD_BYTES = 16 * 1024          # request line + headers (h11's default, made explicit)
WS_MAX_MESSAGE_BYTES = 4 * 1024     # a WebSocket client message; the gateway needs none
WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
FD_HEADROOM = 128                   # files besides client connections: Redis pool, listener, logs, scrapes
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
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

    refusals = {"last_warned": 0.0, "since": 0}

    class GatewayHTTP(_WriteTimeout, H11Protocol):
        _head_timer = None
        _refused = False

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
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            _user_timeout(transport, limits.write_timeout_s)

        def connection_lost(self, exc) -> None:
            self._cancel_write_timer()
            super().connection_lost(exc)

        async def send(self, message) -> None:
            # the transport knows at once when the peer is gone; uvicorn learns it one loop step
            # later (connection_lost), and a writer sending a batch would write into the void meanwhile
            if self.transport.is_closing() and message["type"] == "websocket.send":
                raise ClientDisconnected()
            await super().send(message)

    GatewayHTTP.limits = GatewayWebSocket.limits = limits
    return GatewayHTTP, GatewayWebSocket


def server(app, *, host: str, port: int, limits: Limits, log_level: str = "info", access_log: bool = False):
    """A uvicorn.Server for the app with the limits, logs redacted, connections counted."""
    import uvicorn

    http, ws = protocols(limits)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log, lifespan="on",
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
