"""The worker's write script (streams/store.py WRITE_LUA) on the real Redis: a zone version is
published once however often its write is retried, and a stale owner's write lands nowhere."""

from __future__ import annotations

import asyncio

import orjson

from contract import keys, redisurl
from streams.store import RedisStore
from tests import scenario


def _doc(zid: str, version: int, calls: int) -> dict:
    return {"zone_id": zid, "version": version, "calls_5m": calls}


def test_a_retried_write_publishes_each_version_once_and_a_fenced_owner_writes_nothing(deployment):
    d = deployment(scenario.ZONES_FILE, partitions=2)

    async def run():
        redis = redisurl.async_client(d.env["ZONEWATCH_REDIS"])
        store = RedisStore(redis)
        try:
            gen = await store.take_partition(0)
            part = (0, gen, [_doc("z1", 1, 3), _doc("z2", 1, 1)], [], [])
            for _ in range(3):                       # the same flush, retried (a timeout that ran)
                docs, ids, fenced = await store.write([part])
                assert fenced == set() and sorted(ids) == ["z1", "z2"]
            await store.write([(0, gen, [_doc("z1", 2, 4)], [], [])])
            await store.write([(0, gen, [_doc("z1", 1, 3)], [], [])])   # an older version, late
            entries = await redis.xrange(keys.ZONE_UPDATES)
            seen = [(f[b"zone_id"].decode(), int(f[b"version"])) for _id, f in entries]
            assert sorted(seen) == [("z1", 1), ("z1", 2), ("z2", 1)]
            assert orjson.loads(await redis.get(keys.zone("z1")))["version"] == 2
            assert await store.current_versions(["z1", "z2", "z3"]) == {"z1": 2, "z2": 1}

            new_gen = await store.take_partition(0)   # another worker takes the partition
            _docs, _ids, fenced = await store.write([(0, gen, [_doc("z1", 3, 9)], [], [])])
            assert fenced == {0}
            assert orjson.loads(await redis.get(keys.zone("z1")))["version"] == 2
            _docs, _ids, fenced = await store.write([(0, new_gen, [_doc("z1", 3, 9)], [], [])])
            assert fenced == set()
            assert orjson.loads(await redis.get(keys.zone("z1")))["calls_5m"] == 9
        finally:
            await redis.aclose()

    asyncio.run(run())


def test_a_call_beyond_redis_geo_latitudes_does_not_spoil_the_other_searches(deployment):
    """A call at a pole is valid (CONTRACT §2) but Redis GEO cannot search there; the calls searched
    in the same pipeline still get their units (the hostile corpus found this: one polar call
    failed every recommendation of its batch)."""
    d = deployment(scenario.ZONES_FILE, partitions=1)

    async def run():
        redis = redisurl.async_client(d.env["ZONEWATCH_REDIS"])
        store = RedisStore(redis)
        try:
            await redis.geoadd(keys.UNITS_AVAILABLE, (113.6, 34.7, "u1"))
            await redis.hset(keys.UNIT_INFO, "u1", orjson.dumps({"ts": 1, "status": "available", "kind": "foot"}))
            found, info = await store.nearby_available([(34.7, 113.6), (89.9, 10.0), (-90.0, 0.0), (34.7, 113.6)],
                                                       2_000, 10)
            assert [[u for u, _dist in hits] for hits in found] == [[b"u1"], [], [], [b"u1"]]
            assert set(info) == {b"u1"}
            assert await store.nearby_available([(90.0, 0.0)], 2_000, 10) == ([[]], {})
        finally:
            await redis.aclose()

    asyncio.run(run())
