"""Stage 3: zone-state documents -> Redis (CONTRACT §3 "Updates"), one pipeline per flush.

For each changed zone, in the same pipeline: SET zw:zone:{id}, XADD zw:zone-updates (MAXLEN ~
100000) and PUBLISH zw:zone:{id}. Many events between two flushes cost one write per zone.

The wall's incident list rides in the same pipeline (README "Open incidents on the wall"): each
changed incident is HSET in (open, breached) or HDEL from (arrived, expired) the hash
zw:incidents, field call_id, then XADD zw:incident-updates (MAXLEN ~ 10000) call_id, status, state.
The hash is written before the stream entry, as the zone document is, so a reader that takes the
stream's last id before reading the hash misses nothing.
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
INCIDENTS_HASH = "zw:incidents"
INCIDENT_UPDATES = "zw:incident-updates"
INCIDENT_STREAM_MAXLEN = 10_000
OPEN_STATUSES = ("open", "breached")


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

    async def open_incidents(self) -> dict[str, dict]:
        """The wall's open incidents now in Redis, by call_id."""
        out = {}
        for cid, js in (await self.redis.hgetall(INCIDENTS_HASH)).items():
            try:
                doc = orjson.loads(js)
            except orjson.JSONDecodeError:
                doc = {}
            out[cid.decode() if isinstance(cid, bytes) else cid] = doc
        return out

    async def write(self, docs: list[dict], incidents: list[dict] = ()) -> tuple[list[bytes], list[str]]:
        """Write zone documents and incident entries; retries until Redis accepts them (state
        must not be skipped).

        Returns the encoded documents and their zone ids (for the zones.state topic).
        """
        if not docs and not incidents:
            return [], []
        delay = 0.1
        encoded = [orjson.dumps(doc) for doc in docs]
        ids = [doc["zone_id"] for doc in docs]
        inc_encoded = [orjson.dumps(inc) for inc in incidents]
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for doc, js, zid in zip(docs, encoded, ids):
                pipe.set(zone_key(zid), js)
                pipe.xadd(UPDATES_STREAM, {"zone_id": zid, "version": doc["version"], "state": js},
                          maxlen=STREAM_MAXLEN, approximate=True)
                pipe.publish(zone_key(zid), js)
            for inc, js in zip(incidents, inc_encoded):
                if inc["status"] in OPEN_STATUSES:
                    pipe.hset(INCIDENTS_HASH, inc["call_id"], js)
                else:
                    pipe.hdel(INCIDENTS_HASH, inc["call_id"])
                pipe.xadd(INCIDENT_UPDATES, {"call_id": inc["call_id"], "status": inc["status"], "state": js},
                          maxlen=INCIDENT_STREAM_MAXLEN, approximate=True)
            try:
                await pipe.execute()
                metrics.ZONE_WRITES.inc(len(docs))
                break
            except Exception as exc:  # connection errors of any kind: keep trying, loudly
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write of %d zone states and %d incidents failed (%s); retrying in %.1fs",
                            len(docs), len(incidents), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return encoded, ids
