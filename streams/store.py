"""The Redis store: everything the worker writes to or reads back from Redis (CONTRACT §3).

Zone documents, one pipeline per flush (CONTRACT §3 "Updates"):

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

from contract import keys

from . import metrics

log = logging.getLogger("zonewatch.store")

#: Redis GEO's Web Mercator limit: positions beyond it cannot be GEOADDed
GEO_LAT_LIMIT = 85.05112878


async def until_redis_answers(what: str, call):
    """await call() until Redis answers, counting and logging each failure. Used where the
    agent or the flusher cannot go on without Redis: crashing the agent would make Faust skip
    the batch being processed, so it waits (the batch is not acknowledged meanwhile)."""
    while True:
        try:
            return await call()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("cannot %s in Redis (%s); retrying", what, exc)
            await asyncio.sleep(1.0)


class RedisStore:
    """Zone documents, the wall's incident list and unit positions, in pipelines."""

    def __init__(self, redis):
        self.redis = redis
        # awaited with (documents as JSON, zone ids) after each write and its latency metrics
        self.on_written = None

    async def register_zones(self, zone_ids) -> None:
        if zone_ids:
            await self.redis.sadd(keys.ZONES, *zone_ids)

    async def current_versions(self, zone_ids) -> dict[str, int]:
        """Versions already in Redis, so a restarted or re-assigned worker keeps them increasing."""
        zone_ids = list(zone_ids)
        if not zone_ids:
            return {}
        raw = await self.redis.mget([keys.zone(z) for z in zone_ids])
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
        for cid, js in (await self.redis.hgetall(keys.INCIDENTS)).items():
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
                pipe.set(keys.zone(zid), js)
                pipe.xadd(keys.ZONE_UPDATES, {"zone_id": zid, "version": doc["version"], "state": js},
                          maxlen=keys.ZONE_UPDATES_MAXLEN, approximate=True)
                pipe.publish(keys.zone(zid), js)
            for inc, js in zip(incidents, inc_encoded):
                if inc["status"] in keys.OPEN_STATUSES:
                    pipe.hset(keys.INCIDENTS, inc["call_id"], js)
                else:
                    pipe.hdel(keys.INCIDENTS, inc["call_id"])
                pipe.xadd(keys.INCIDENT_UPDATES, {"call_id": inc["call_id"], "status": inc["status"], "state": js},
                          maxlen=keys.INCIDENT_UPDATES_MAXLEN, approximate=True)
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

    async def exists(self) -> bool:
        """Whether Redis still holds the zone registry (False after a restart or a FLUSHDB)."""
        return bool(await self.redis.exists(keys.ZONES))

    async def write_positions(self, latest: dict) -> None:
        """Latest unit fixes: `zw:units` (CONTRACT §3), plus `zw:units:available` (a GEO set of
        available units, the spatial index of dispatch recommendations) and the hash
        `zw:unit-info` (unit -> {ts, status, kind, lat, lon}). A failure is counted and logged,
        not raised: positions refresh with the next fix."""
        geo, avail, gone, info = [], [], [], {}
        for unit, (ts, lat, lon, status, kind) in latest.items():
            if -GEO_LAT_LIMIT <= lat <= GEO_LAT_LIMIT:
                geo.extend((lon, lat, unit))
                if status == "available":
                    avail.extend((lon, lat, unit))
                else:
                    gone.append(unit)
            info[unit] = orjson.dumps({"ts": ts, "status": status, "kind": kind, "lat": lat, "lon": lon})
        pipe = self.redis.pipeline(transaction=False)
        if geo:
            pipe.geoadd(keys.UNITS, geo)
        if avail:
            pipe.geoadd(keys.UNITS_AVAILABLE, avail)
        if gone:
            pipe.zrem(keys.UNITS_AVAILABLE, *gone)
        pipe.hset(keys.UNIT_INFO, mapping=info)
        try:
            await pipe.execute()
        except Exception as exc:  # Redis down must not stop ingest
            metrics.REDIS_ERRORS.inc()
            log.warning("unit positions update failed: %s", exc)

    async def nearby_available(self, points: list[tuple[float, float]], radius_m: float, count: int):
        """For each (lat, lon): up to `count` (unit id, distance m) of `zw:units:available`
        within `radius_m`, nearest first; and `zw:unit-info` of every unit found."""
        pipe = self.redis.pipeline(transaction=False)
        for lat, lon in points:
            pipe.geosearch(keys.UNITS_AVAILABLE, longitude=lon, latitude=lat, radius=radius_m, unit="m",
                           sort="ASC", count=count, withdist=True)
        found = await pipe.execute()
        units = sorted({u[0] for hits in found for u in hits})
        info = dict(zip(units, await self.redis.hmget(keys.UNIT_INFO, units))) if units else {}
        return found, info
