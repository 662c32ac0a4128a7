"""The two live endpoints: /stream (Server-Sent Events) and /ws (WebSocket). Each client is a
`Subscriber` of the hub and one writer draining its queue to the socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import unauthorized
from gateway.context import ctx
from gateway.feed import Hub, parse_last_event_id, sse_encode, ws_encode

log = logging.getLogger("zonewatch.gateway")


def requested_last_id(params, headers) -> str | None:
    """Last-Event-ID (header, else ?last_event_id=); ValueError when malformed."""
    raw = headers.get("last-event-id") if headers is not None else None
    if raw is None or raw == "":
        raw = params.get("last_event_id")
    return parse_last_event_id(raw)


async def stream(request: Request):
    c = ctx(request)
    if not c.tokens.allows(request, query_ok=True):
        return unauthorized()
    try:
        last_id = requested_last_id(request.query_params, request.headers)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return EventStream(c.hub, last_id)


class EventStream(Response):
    """text/event-stream for one client; ends when the client goes away (disconnect seen on
    `receive`, so an idle client is released at once, not at the next write)."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, last_id: str | None):
        self.hub, self.last_id = hub, last_id
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope, receive, send):
        sub = self.hub.register("sse")

        async def writer():
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            async for batch in self.hub.messages(sub, self.last_id):
                await send({"type": "http.response.body", "body": sse_encode(batch), "more_body": True})

        async def listener():
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await run_until_first_done(writer(), listener())
        finally:
            self.hub.unregister(sub)


async def ws(websocket: WebSocket):
    c = ctx(websocket)
    if not c.tokens.allows(websocket, query_ok=True):
        await websocket.close(code=1008, reason="missing or invalid token")
        return
    try:
        last_id = requested_last_id(websocket.query_params, None)
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    hub = c.hub
    sub = hub.register("ws")

    async def writer():
        async for batch in hub.messages(sub, last_id):
            for kind, val in batch:
                await websocket.send_text(ws_encode(kind, val))

    async def listener():
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    return

    try:
        await run_until_first_done(writer(), listener())
    finally:
        hub.unregister(sub)
        with contextlib.suppress(Exception):
            await websocket.close()


async def run_until_first_done(*coros) -> None:
    """Run coroutines together; when the first ends (or fails) cancel the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, (OSError, asyncio.CancelledError)):
                log.warning("client stream ended by an error: %r", r)
