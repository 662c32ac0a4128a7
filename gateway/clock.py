"""The stream clock as the gateway sees it (GET /units leaves out units whose fix is stale by it).
What it reads from Redis is checked against the zone schema first (gateway/untrusted.py)."""

from __future__ import annotations

import asyncio
import math
import time

import orjson

from contract import keys
from gateway import untrusted

CLOCK_TTL_S = 1.0       # the stream clock read from Redis is reused this long
CLOCK_ENTRIES = 32      # zone updates looked at for the newest clock (partitions write in any order)


class StreamClock:
    """The stream clock as the gateway sees it: the largest `clock` of the newest zone documents
    (the last CLOCK_ENTRIES entries of zw:zone-updates), read at most every CLOCK_TTL_S; wall time
    when there is no zone document yet. `source` says which ("stream" or "wall")."""

    def __init__(self, redis, hub) -> None:
        self.redis = redis
        self.hub = hub          # its zone documents, checked
        self.value: int | None = None
        self.read_at = -math.inf
        self.lock = asyncio.Lock()

    async def now(self) -> tuple[int, str]:
        async with self.lock:
            if time.monotonic() - self.read_at >= CLOCK_TTL_S:
                entries = await self.redis.xrevrange(keys.ZONE_UPDATES, count=CLOCK_ENTRIES)
                clocks = []
                for sid, fields in entries:
                    where = f"{keys.ZONE_UPDATES} {sid.decode() if isinstance(sid, bytes) else sid}"
                    doc = untrusted.ZONE.parse(fields.get(b"state"), where)
                    if doc is not None:
                        clocks.append(int(doc["clock"]))
                if not clocks:   # the stream may have been trimmed to nothing: the documents themselves
                    clocks = await self._from_documents()
                self.value = max(clocks) if clocks else None
                self.read_at = time.monotonic()
        if self.value is None:
            return int(time.time() * 1000), "wall"
        return self.value, "stream"

    async def _from_documents(self) -> list[int]:
        return [int(orjson.loads(doc)["clock"]) for doc in await self.hub.zone_documents()]
