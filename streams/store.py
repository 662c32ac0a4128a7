"""The Redis store: everything the worker writes to or reads back from Redis (CONTRACT §3).

Zone documents, one atomic script call per flush (CONTRACT §3 "Updates"): for each changed zone
SET zw:zone:{id}, XADD zw:zone-updates (MAXLEN ~ 100000) and PUBLISH zw:zone:{id}. Many events
between two flushes cost one write per zone, and one Redis command per flush. The script first
checks that the writer still owns the zone's partition (its generation in zw:fence), so a worker
that lost a partition can never overwrite its new owner (WRITE_LUA).

The wall's incident list rides in the same call (docs/DESIGN.md "Open incidents on the wall"): each
changed incident is HSET in (open, breached) or HDEL from (arrived, expired) the hash
zw:incidents, field call_id, then XADD zw:incident-updates (MAXLEN ~ 10000) call_id, status, state.
The hash is written before the stream entry, as the zone document is, so a reader that takes the
stream's last id before reading the hash misses nothing.

The duty plan's documents (CONTRACT §10, streams/duty.py) ride in it too, by the zone documents'
rules: SET zw:post:{id} / zw:checkpoint:{id} (and zw:phase), SADD to zw:posts / zw:checkpoints,
XADD zw:post-updates (MAXLEN ~ 100000) type, id, version, state, and PUBLISH, each version once
(zw:duty-versions), fenced by the partition's owner generation like everything else.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from contract import keys

from . import metrics

log = logging.getLogger("zonewatch.store")



async def until_redis_answers(what: str, call):
    """await call() until Redis answers, counting and logging each failure. Used where a takeover
    or the flusher cannot go on without Redis: it waits rather than crash the worker."""
    while True:
        try:
            return await call()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("cannot %s in Redis (%s); retrying", what, exc)
            await asyncio.sleep(1.0)


#: One flush: per partition, check the writer still owns it (its generation in zw:fence), then
#: SET + XADD + PUBLISH each zone document and HSET/HDEL + XADD each incident entry. Atomic, so
#: a new owner that took the generation and then read the versions cannot be overtaken by the
#: old owner's write, and one call (one command) per flush whatever the number of zones.
WRITE_LUA = """
local fence, zstream, ihash, istream, vhash = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pstream, dvhash = KEYS[6], KEYS[7]
local zmax, imax, zprefix, ttl, pmax = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local i = 6
local fenced = {}
while i <= #ARGV do
  local p, gen, nd = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local cur = redis.call('HGET', fence, p)
  if not cur then
    -- Redis lost the fences (a restart without persistence, FLUSHDB): the first writer claims
    -- it; a worker that loses that race re-takes the partition only while it is assigned it
    redis.call('HSET', fence, p, gen)
    cur = gen
  end
  local ok = cur == gen
  if not ok then table.insert(fenced, p) end
  for _ = 1, nd do
    if ok then
      local zid, v, js = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      -- a write retried after a timeout may have run already: a version is written once
      if tonumber(v) > tonumber(redis.call('HGET', vhash, zid) or '0') then
        redis.call('HSET', vhash, zid, v)
        redis.call('SET', zprefix .. zid, js)
        redis.call('XADD', zstream, 'MAXLEN', '~', zmax, '*', 'zone_id', zid, 'version', v, 'state', js)
        redis.call('PUBLISH', zprefix .. zid, js)
      end
    end
    i = i + 3
  end
  local ni = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, ni do
    if ok then
      local cid, st, js = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      if ARGV[i + 3] == '1' then redis.call('HSET', ihash, cid, js) else redis.call('HDEL', ihash, cid) end
      redis.call('XADD', istream, 'MAXLEN', '~', imax, '*', 'call_id', cid, 'status', st, 'state', js)
    end
    i = i + 4
  end
  local nt = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, nt do
    if ok then redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ttl) end
    i = i + 2
  end
  -- the duty plan's documents (streams/duty.py): key, index set, version field, version, json, type, id
  local nu = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, nu do
    if ok then
      local key, set, vf, v, js = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
      if tonumber(v) > tonumber(redis.call('HGET', dvhash, vf) or '0') then
        redis.call('HSET', dvhash, vf, v)
        redis.call('SET', key, js)
        if set ~= '' then redis.call('SADD', set, ARGV[i + 6]) end
        redis.call('XADD', pstream, 'MAXLEN', '~', pmax, '*', 'type', ARGV[i + 5], 'id', ARGV[i + 6],
                   'version', v, 'state', js)
        redis.call('PUBLISH', key, js)
      end
    end
    i = i + 7
  end
end
return fenced
"""


#: the duty documents' type (zw:post-updates `type`) -> (key of a document id, index set, key field)
DUTY_TYPES = {"post": (keys.post, keys.POSTS, "post_id"), "checkpoint": (keys.checkpoint, keys.CHECKPOINTS,
                                                                       "checkpoint_id")}


def duty_args(typ: str, doc: dict) -> list:
    """WRITE_LUA's arguments for one duty document: key, index set, version field, version, json,
    type, id. The phase document (type "phase") has the one key zw:phase and no index."""
    if typ == "phase":
        return [keys.PHASE, "", "phase", doc["version"], orjson.dumps(doc), typ, "phase"]
    key_of, index, id_field = DUTY_TYPES[typ]
    pid = doc[id_field]
    return [key_of(pid), index, f"{typ}:{pid}", doc["version"], orjson.dumps(doc), typ, pid]


class RedisStore:
    """Zone documents, the wall's incident list and unit positions."""

    def __init__(self, redis):
        self.redis = redis
        self._write_script = redis.register_script(WRITE_LUA)
        self.positions_lost = False   # a positions write failed: rewrite them all when Redis answers

    async def register_zones(self, zone_ids) -> None:
        if zone_ids:
            await self.redis.sadd(keys.ZONES, *zone_ids)

    async def current_versions(self, zone_ids) -> dict[str, int]:
        """Versions already in Redis, so a restarted or re-assigned worker keeps them increasing:
        the larger of the versions hash and the documents (a deployment older than the hash)."""
        zone_ids = list(zone_ids)
        if not zone_ids:
            return {}
        hashed = await self.redis.hmget(keys.ZONE_VERSIONS, zone_ids)
        raw = await self.redis.mget([keys.zone(z) for z in zone_ids])
        out = {}
        for zid, h, val in zip(zone_ids, hashed, raw, strict=True):
            v = int(h) if h else 0
            if val:
                try:
                    v = max(v, int(orjson.loads(val).get("version", 0)))
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    pass
            if v:
                out[zid] = v
        return out

    async def duty_versions(self, fields: list[str]) -> dict[str, int]:
        """Versions of duty documents already in Redis ("post:{id}", "checkpoint:{id}", "phase"),
        so a new owner continues them (the write script writes a version once)."""
        if not fields:
            return {}
        got = await self.redis.hmget(keys.DUTY_VERSIONS, fields)
        return {f: int(v) for f, v in zip(fields, got, strict=True) if v}

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

    async def take_partition(self, partition: int) -> int:
        """Become the owner of a zone-events partition: a new generation, which fences every
        write of the previous owner (see WRITE_LUA). Versions read after this are final."""
        return int(await self.redis.hincrby(keys.FENCE, str(partition), 1))

    async def owns(self, partition: int, generation: int) -> bool:
        """Whether `generation` is still the partition's owner generation (nobody took it over since)."""
        return int(await self.redis.hget(keys.FENCE, str(partition)) or 0) == generation

    async def write(self, parts: list[tuple]) -> tuple[list[bytes], list[str], set[int]]:
        """Write, per partition (p, generation, zone documents, incident entries, incident
        timelines), in one atomic script call; retries until Redis accepts it (state must not be
        skipped).

        Returns the encoded documents and their zone ids that were written (for zones.state),
        and the partitions whose generation is no longer current (another worker owns them;
        nothing of theirs was written)."""
        args: list = [keys.ZONE_UPDATES_MAXLEN, keys.INCIDENT_UPDATES_MAXLEN, keys.zone(""), keys.INCIDENT_TTL_S,
                      keys.POST_UPDATES_MAXLEN]
        written: list[tuple[int, bytes, str]] = []
        n_docs = 0
        for p, gen, docs, incidents, timelines, *more in parts:
            args += [p, gen, len(docs)]
            for doc in docs:
                js = orjson.dumps(doc)
                args += [doc["zone_id"], doc["version"], js]
                written.append((p, js, doc["zone_id"]))
            n_docs += len(docs)
            args.append(len(incidents))
            for inc in incidents:
                args += [inc["call_id"], inc["status"], orjson.dumps(inc),
                         1 if inc["status"] in keys.OPEN_STATUSES else 0]
            args.append(len(timelines))
            for t in timelines:
                args += [keys.incident(t["call_id"]), orjson.dumps(t)]
            duty = more[0] if more else []   # (type, document) of the duty plan, streams/duty.py
            args.append(len(duty))
            for typ, doc in duty:
                args += duty_args(typ, doc)
        delay = 0.1
        while True:
            try:
                fenced = await self._write_script(keys=[keys.FENCE, keys.ZONE_UPDATES, keys.INCIDENTS,
                                                        keys.INCIDENT_UPDATES, keys.ZONE_VERSIONS,
                                                        keys.POST_UPDATES, keys.DUTY_VERSIONS], args=args)
                break
            except Exception as exc:  # connection errors of any kind: keep trying, loudly
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write of %d zone states failed (%s); retrying in %.1fs", n_docs, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        fenced = {int(x) for x in fenced}
        kept = [(js, zid) for p, js, zid in written if p not in fenced]
        metrics.ZONE_WRITES.inc(len(kept))
        return [js for js, _ in kept], [zid for _, zid in kept], fenced

    async def server_id(self) -> str:
        """The Redis server's run id: it changes when Redis restarts or a replica is promoted
        (Sentinel), and writes acknowledged just before may be gone (replication is asynchronous)."""
        return str((await self.redis.info("server")).get("run_id", ""))

    async def exists(self) -> bool:
        """Whether Redis still holds the zone registry (False after a restart or a FLUSHDB)."""
        return bool(await self.redis.exists(keys.ZONES))

    async def write_positions(self, latest: dict) -> None:
        """Latest unit fixes: `zw:units` (CONTRACT §3), plus `zw:units:available` (a GEO set of
        available units, the spatial index of dispatch recommendations) and the hash
        `zw:unit-info` (unit -> {ts, status, kind, lat, lon}). A failure is counted and logged,
        not raised: positions refresh with the next fix."""
        geo: list = []
        avail: list = []
        gone: list = []
        info: dict = {}
        for unit, (ts, lat, lon, status, kind) in latest.items():
            if -keys.GEO_LAT_LIMIT <= lat <= keys.GEO_LAT_LIMIT:
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
        except Exception as exc:  # Redis down must not stop ingest: every position is written again once it is back
            metrics.REDIS_ERRORS.inc()
            self.positions_lost = True
            log.warning("unit positions update failed: %s", exc)

    async def forget_units(self, before_ts: int) -> int:
        """Remove units whose latest fix is older than `before_ts` from zw:units, zw:units:available
        and zw:unit-info (a device that went silent for a day is no unit any more)."""
        gone = []
        async for unit, raw in self.redis.hscan_iter(keys.UNIT_INFO, count=1000):
            try:
                if int(orjson.loads(raw)["ts"]) < before_ts:
                    gone.append(unit)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                gone.append(unit)
        for i in range(0, len(gone), 1000):
            chunk = gone[i:i + 1000]
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(keys.UNITS, *chunk)
            pipe.zrem(keys.UNITS_AVAILABLE, *chunk)
            pipe.hdel(keys.UNIT_INFO, *chunk)
            await pipe.execute()
        return len(gone)

    async def unit_latest(self) -> dict[str, tuple[int, float, float]]:
        """unit -> (ts, lat, lon) of its latest fix, from zw:unit-info (ingest's routing memory)."""
        out = {}
        async for unit, raw in self.redis.hscan_iter(keys.UNIT_INFO, count=1000):
            try:
                info = orjson.loads(raw)
                out[unit.decode() if isinstance(unit, bytes) else unit] = (int(info["ts"]), float(info["lat"]),
                                                                          float(info["lon"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return out

    async def nearby_available(self, points: list[tuple[float, float]], radius_m: float, count: int):
        """For each (lat, lon): up to `count` (unit id, distance m) of `zw:units:available`
        within `radius_m`, nearest first; and `zw:unit-info` of every unit found."""
        pipe = self.redis.pipeline(transaction=False)
        # a call beyond Redis GEO's latitudes (valid by the contract, e.g. a pole) has no unit near
        # it that Redis could hold, and asking would fail every other call's search in the pipeline
        searchable = [i for i, (lat, _lon) in enumerate(points) if -keys.GEO_LAT_LIMIT <= lat <= keys.GEO_LAT_LIMIT]
        for i in searchable:
            lat, lon = points[i]
            pipe.geosearch(keys.UNITS_AVAILABLE, longitude=lon, latitude=lat, radius=radius_m, unit="m",
                           sort="ASC", count=count, withdist=True)
        found: list = [[] for _ in points]
        for i, hits in zip(searchable, await pipe.execute() if searchable else [], strict=True):
            found[i] = hits
        units = sorted({u[0] for hits in found for u in hits})
        info = dict(zip(units, await self.redis.hmget(keys.UNIT_INFO, units), strict=True)) if units else {}
        return found, info
