"""Stage 3: zone-state documents -> Redis (CONTRACT §3 "Updates"), one pipeline per flush.

For each changed zone, in the same pipeline: SET zw:zone:{id}, XADD zw:zone-updates (MAXLEN ~
100000) and PUBLISH zw:zone:{id}. Many events between two flushes cost one write per zone.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from . import metrics

log = logging.getLogger("zonewatch.writer")

UPDATES_STREAM = "zw:zone-updates"
ZONES_SET = "zw:zones"
STREAM_MAXLEN = 100_000


def zone_key(zone_id: str) -> str:
    return f"zw:zone:{zone_id}"


class StateWriter:
    def __init__(self, redis):
        self.redis = redis
        # awaited with (documents as JSON, zone ids) after each write and its latency metrics
        self.on_written = None

    async def register_zones(self, zone_ids) -> None:
        if zone_ids:
            await self.redis.sadd(ZONES_SET, *zone_ids)

    async def current_versions(self, zone_ids) -> dict[str, int]:
        """Versions already in Redis, so a restarted or re-assigned worker keeps them increasing."""
        zone_ids = list(zone_ids)
        if not zone_ids:
            return {}
        raw = await self.redis.mget([zone_key(z) for z in zone_ids])
        out = {}
        for zid, val in zip(zone_ids, raw):
            if val:
                try:
                    out[zid] = int(orjson.loads(val).get("version", 0))
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    out[zid] = 0
        return out

    async def write(self, docs: list[dict]) -> tuple[list[bytes], list[str]]:
        """Write documents; retries until Redis accepts them (state must not be skipped).

        Returns the encoded documents and their zone ids (for the zones.state topic).
        """
        if not docs:
            return [], []
        delay = 0.1
        encoded = [orjson.dumps(doc) for doc in docs]
        ids = [doc["zone_id"] for doc in docs]
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for doc, js, zid in zip(docs, encoded, ids):
                pipe.set(zone_key(zid), js)
                pipe.xadd(UPDATES_STREAM, {"zone_id": zid, "version": doc["version"], "state": js},
                          maxlen=STREAM_MAXLEN, approximate=True)
                pipe.publish(zone_key(zid), js)
            try:
                await pipe.execute()
                metrics.ZONE_WRITES.inc(len(docs))
                break
            except Exception as exc:  # connection errors of any kind: keep trying, loudly
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write of %d zone states failed (%s); retrying in %.1fs",
                            len(docs), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return encoded, ids
