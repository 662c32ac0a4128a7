"""What every handler of one gateway shares, kept on the app (`app.state.gw`)."""

from __future__ import annotations

from dataclasses import dataclass

from contract.settings import Settings
from gateway.auth import Tokens
from gateway.feed import Hub
from gateway.stats import WorkerStats


@dataclass
class Context:
    settings: Settings
    tokens: Tokens
    redis: object           # redis.asyncio.Redis on the shared pool
    hub: Hub
    stats: WorkerStats
    geojson: bytes          # the zones file as served at /zones.geojson
    zone_count: int
    wall_html: bytes
    intake: object = None   # gateway.intake.Intake when ZONEWATCH_INGEST_TOKENS is set
    clock: object = None    # gateway.rest.StreamClock


def ctx(conn) -> Context:
    """The context of the app serving this request or WebSocket."""
    return conn.app.state.gw
