"""The stream clock as the gateway sees it (GET /units leaves out units whose fix is stale by it)."""

from __future__ import annotations

import asyncio
import math
import time

import orjson

from contract import keys

CLOCK_TTL_S = 1.0       # the stream clock read from Redis is reused this long
CLOCK_ENTRIES = 32      # zone updates looked at for the newest clock (partitions write in any order)


class StreamClock:
    """The stream clock as the gateway sees it: the largest `clock` of the newest zone documents
    (the last CLOCK_ENTRIES entries of zw:zone-updates), read at most every CLOCK_TTL_S; wall time
    when there is no zone document yet. `source` says which ("stream" or "wall")."""

    def __init__(self, redis) -> None:
        self.redis = redis
        self.value: int | None = None
        self.read_at = -math.inf
        self.lock = asyncio.Lock()

    async def now(self) -> tuple[int, str]:
        async with self.lock:
            if time.monotonic() - self.read_at >= CLOCK_TTL_S:
                entries = await self.redis.xrevrange(keys.ZONE_UPDATES, count=CLOCK_ENTRIES)
                clocks = []
                for _sid, fields in entries:
                    try:
                        clocks.append(int(orjson.loads(fields.get(b"state") or b"{}").get("clock")))
                    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                        continue
                if not clocks:   # the stream may have been trimmed to nothing: the documents themselves
                    clocks = await self._from_documents()
                self.value = max(clocks) if clocks else None
                self.read_at = time.monotonic()
        if self.value is None:
            return int(time.time() * 1000), "wall"
        return self.value, "stream"

    async def _from_documents(self) -> list[int]:
        ids = [m.decode() for m in await self.redis.smembers(keys.ZONES)]
        out = []
        for doc in (await self.redis.mget([keys.zone(z) for z in ids]) if ids else []):
            try:
                out.append(int(orjson.loads(doc)["clock"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return out
