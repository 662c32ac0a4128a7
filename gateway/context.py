"""What every handler of one gateway shares, kept on the app (`app.state.gw`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.settings import Settings
from gateway.auth import Tokens
from gateway.clock import StreamClock
from gateway.feed import Hub
from gateway.intake import Intake
from gateway.stats import WorkerStats


@dataclass
class Context:
    settings: Settings
    tokens: Tokens
    # redis.asyncio.Redis on the shared pool; Any, as redis-py types its replies bytes | str
    # whatever decode_responses says (ours are bytes)
    redis: Any
    hub: Hub
    stats: WorkerStats
    geojson: bytes          # the zones file as served at /zones.geojson
    zone_count: int
    wall_html: bytes
    static: dict[str, bytes]           # the wall's files under /static/ (rest.STATIC_TYPES)
    clock: StreamClock                 # the stream clock of /units
    intake: Intake | None = None       # when ZONEWATCH_INGEST_TOKENS is set


def ctx(conn) -> Context:
    """The context of the app serving this request or WebSocket."""
    return conn.app.state.gw
