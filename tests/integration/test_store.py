"""The worker's Redis store (streams/store.py) on the real Redis: a zone version is published once
however often its write is retried, a stale owner's write lands nowhere, a polar call spoils no
search, and silent units are forgotten."""

from __future__ import annotations

import asyncio
from typing import cast

import orjson
from aiokafka import AIOKafkaProducer

from contract import keys, redisurl, topics
from contract.zones import load_zones
from streams.ingest import IngestStage
from streams.store import RedisStore
from streams.testing import Msg
from streams.zone_index import ZoneIndex
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


def test_units_silent_past_the_forget_bound_leave_redis_and_ingest(deployment):
    """The worker's sweep (IngestStage.forget_silent, every FORGET_S): with ZONEWATCH_UNIT_FORGET_S
    at 1 h, a unit whose latest fix is more than an hour of stream clock old leaves zw:units,
    zw:units:available, zw:unit-info and ingest's maps; a camera as silent leaves ingest's maps; a
    unit and a camera that reported since stay."""
    d = deployment(scenario.ZONES_FILE, partitions=2)
    settings = d.settings.with_(unit_forget_ms=3_600_000)
    t0 = scenario.ms(scenario.local(12, 8, 0))

    def fix(unit, ts):
        ev = {"unit_id": unit, "ts": ts, "lat": scenario.PA[0], "lon": scenario.PA[1], "status": "available"}
        return Msg(settings.topic(topics.GPS), 0, 0, None, orjson.dumps(ev), 1)

    def status(camera, ts):
        ev = {"camera_id": camera, "ts": ts, "lat": scenario.PB[0], "lon": scenario.PB[1]}
        return Msg(settings.topic(topics.STATUS), 0, 0, None, orjson.dumps(ev), 1)

    async def run():
        redis = redisurl.async_client(d.env["ZONEWATCH_REDIS"])
        ingest = IngestStage(settings, ZoneIndex(load_zones(settings.zones)), RedisStore(redis),
                             cast(AIOKafkaProducer, None))
        try:
            for msgs in ([fix("gone", t0), fix("stays", t0), status("cam-gone", t0)],
                         [fix("stays", t0 + 3_600_001), status("cam-stays", t0 + 3_600_001)]):
                _out, _dead, _rejected, positions = ingest.router.route(msgs, t0 + 3_700_000)
                await ingest.store.write_positions(positions)   # as ingest does with each batch
            assert {m.decode() for m in await redis.zrange(keys.UNITS, 0, -1)} == {"gone", "stays"}
            assert await ingest.forget_silent() == (t0 + 1, 1)
            for key in (keys.UNITS, keys.UNITS_AVAILABLE):
                assert await redis.zrange(key, 0, -1) == [b"stays"], key
            assert await redis.hkeys(keys.UNIT_INFO) == [b"stays"]
            router = ingest.router
            assert set(router.units) == set(router.positions) == {"stays"}
            assert set(router.cameras) == {"cam-stays"}
            assert await ingest.forget_silent() == (t0 + 1, 0)   # the next sweep finds nothing more
        finally:
            await redis.aclose()

    asyncio.run(run())
