"""The two live endpoints: /stream (Server-Sent Events) and /ws (WebSocket).

Each connected client is a `Subscriber` of the hub, one writer task draining its queue to the
socket, and one watcher of the connection. Whatever ends first — the client hanging up (seen by
the watcher, at any stage: before the response head, during the snapshot, while live), the writer
failing, the server stopping — the client is unregistered at once and its writer ends:

 * the watcher detects the disconnect itself (ASGI `receive()`), so nothing depends on a write
   failing (uvicorn's `send()` is silent after a disconnect);
 * the writer is cancelled, and also stops by itself at its next step once the subscriber is
   closed, so a cancellation lost inside a Redis call (redis-py can swallow one) cannot keep it
   fanning out to a dead socket;
 * a client that stops reading is cut by the connection's write timeout (gateway/server.py), which
   the watcher then sees as a disconnect.

`zonewatch_gateway_clients` and `zonewatch_gateway_writers` count both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import OK, refusal
from gateway.context import ctx
from gateway.feed import Hub, Subscriber, parse_last_event_id, sse_encode, ws_encode
from gateway.metrics import WRITERS

log = logging.getLogger("zonewatch.gateway")

WRITER_GRACE_S = 5.0   # how long a client's end waits for its writer; it ends by itself anyway
SSE_PRELUDE = b"retry: 2000\n\n"   # the browser reconnects after 2 s


def requested_last_id(params, headers) -> str | None:
    """Last-Event-ID (header, else ?last_event_id=); ValueError when malformed."""
    raw = headers.get("last-event-id") if headers is not None else None
    if raw is None or raw == "":
        raw = params.get("last_event_id")
    return parse_last_event_id(raw)


async def serve_client(hub: Hub, transport: str, write, watch) -> None:
    """Register a client, run `write(sub)` (its writer) and `watch` (the watcher of its
    connection) until either ends; then unregister it and end both."""
    sub = hub.register(transport)
    writer = asyncio.create_task(_counted(write, sub), name=f"zw-{transport}-writer")
    watcher = asyncio.ensure_future(watch)
    try:
        await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.unregister(sub)      # first, before any await: the reader stops feeding it now
        watcher.cancel()
        writer.cancel()
        await asyncio.wait((writer, watcher), timeout=WRITER_GRACE_S)
        for t in (writer, watcher):
            if t.done():
                _report(t)
            else:  # it ends at its next step (sub.closed); report then
                t.add_done_callback(_report)


async def _counted(write, sub: Subscriber) -> None:
    WRITERS.labels(sub.transport).inc()
    try:
        await write(sub)
    finally:
        WRITERS.labels(sub.transport).dec()


def _report(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (OSError, WebSocketDisconnect)):
        log.warning("client stream ended by an error: %r", exc)


async def _feed(hub: Hub, sub: Subscriber, last_id: str | None):
    """The client's batches until it is closed (the generator is closed with the writer)."""
    async with contextlib.aclosing(hub.messages(sub, last_id)) as batches:
        async for batch in batches:
            if sub.closed:
                return
            yield batch


# ---------------------------------------------------------------------------------------------
# /stream


async def stream(request: Request):
    c = ctx(request)
    status = c.tokens.read(request, query_ok=True)
    if status != OK:
        return refusal(status, "read")
    try:
        last_id = requested_last_id(request.query_params, request.headers)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return EventStream(c.hub, last_id)


class EventStream(Response):
    """text/event-stream for one client, until it goes away."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, last_id: str | None):
        self.hub, self.last_id = hub, last_id
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope, receive, send):
        async def write(sub: Subscriber) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": SSE_PRELUDE, "more_body": True})
            async for batch in _feed(self.hub, sub, self.last_id):
                await send({"type": "http.response.body", "body": sse_encode(batch), "more_body": True})

        async def watch() -> None:
            # a GET's (empty) body first, then nothing until the client goes away
            while (await receive())["type"] != "http.disconnect":
                pass

        await serve_client(self.hub, "sse", write, watch())


# ---------------------------------------------------------------------------------------------
# /ws


async def ws(websocket: WebSocket):
    c = ctx(websocket)
    try:
        if not c.tokens.allows(websocket, query_ok=True):
            await websocket.close(code=1008, reason="missing or invalid token")
            return
        try:
            last_id = requested_last_id(websocket.query_params, None)
        except ValueError as exc:
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        await websocket.accept()
    except (WebSocketDisconnect, OSError):
        return   # the client hung up during the handshake: nothing was registered

    async def write(sub: Subscriber) -> None:
        async for batch in _feed(c.hub, sub, last_id):
            for kind, val in batch:
                if sub.closed:
                    return
                await websocket.send_text(ws_encode(kind, val))

    async def watch() -> None:
        # the gateway needs no client message; they are read (and dropped) only to see the close
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    await serve_client(c.hub, "ws", write, watch())
    with contextlib.suppress(Exception):
        await websocket.close()
