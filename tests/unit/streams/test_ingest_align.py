"""Ingest's event-time alignment inside one fetch (`IngestStage._cut`) and the watermark's notion of
a patrol.gps partition that still delivers, driven with a fake consumer (no Kafka)."""

from __future__ import annotations

import asyncio
from collections import namedtuple

import orjson
from aiokafka.structs import TopicPartition

from contract import topics
from contract.settings import Settings
from contract.zones import load_zones
from streams.ingest import ALIGN_MS, IngestStage
from streams.zone_index import ZoneIndex
from tests import scenario

Msg = namedtuple("Msg", "topic partition offset key value timestamp")
T0 = 1_714_550_400_000


class FakeConsumer:
    """assignment, highwater and position (records not returned yet) as aiokafka's consumer."""

    def __init__(self, assigned, highwater, positions=None):
        self.assigned = set(assigned)
        self.hw = dict(highwater)
        self.pos = dict(positions or {})
        self.seeks = {}
        self.paused = set()

    async def position(self, tp):
        return self.pos.get(tp, 0)

    def assignment(self):
        return set(self.assigned)

    def highwater(self, tp):
        return self.hw.get(tp)

    def pause(self, *tps):
        self.paused.update(tps)

    def resume(self, *tps):
        self.paused.difference_update(tps)

    def seek(self, tp, offset):
        self.seeks[tp] = offset
        self.pos[tp] = offset


def stage(consumer) -> IngestStage:
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    st = IngestStage(s, ZoneIndex(load_zones(s.zones)), store=None, producer=None)
    st.consumer = consumer
    return st


def cut(st, batches):
    return asyncio.run(st._cut(batches))


def held_from(st) -> dict:
    """Partition -> offset of the first record `_cut` holds back (in memory, not fetched again)."""
    return {tp: held[0].offset for tp, held in st._buffer.items()}


def recs(topic, partition, ts_list, first_offset=0):
    return [Msg(topic, partition, first_offset + i, None, orjson.dumps({"ts": ts}), 0)
            for i, ts in enumerate(ts_list)]


def test_a_topic_read_past_the_gps_frontier_is_held_back_and_re_read():
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)
    c = FakeConsumer([calls, gps], {calls: 10, gps: 1000}, {calls: 10, gps: 100})
    st = stage(c)
    call_ts = [T0 + i * 60_000 for i in range(10)]          # ten minutes of calls in one fetch
    gps_ts = [T0 + i * 1_000 for i in range(100)]            # 100 s of fixes
    out = cut(st, {calls: recs(calls.topic, 0, call_ts), gps: recs(gps.topic, 0, gps_ts)})
    limit = gps_ts[-1] + ALIGN_MS
    kept = [orjson.loads(m.value)["ts"] for m in out[calls]]
    assert kept == [t for t in call_ts if t <= limit]
    assert held_from(st) == {calls: len(kept)}                # the rest waits in memory, paused
    assert len(out[gps]) == 100                               # the frontier itself is never cut


def test_nothing_is_held_back_when_gps_is_caught_up_and_quiet():
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)
    c = FakeConsumer([calls, gps], {calls: 10, gps: 5}, {calls: 10, gps: 5})
    st = stage(c)
    st.router.tp_ts[gps.topic, 0] = T0           # gps read to its end (position 5 = highwater)
    batch = {calls: recs(calls.topic, 0, [T0 + i * 600_000 for i in range(10)])}
    assert cut(st, batch) == batch and held_from(st) == {}
    # the same with unread fixes: calls past their frontier + ALIGN_MS wait for them
    c.pos[gps] = 3
    out = cut(st, batch)
    assert [orjson.loads(m.value)["ts"] for m in out[calls]] == [T0]
    assert held_from(st) == {calls: 1}


def test_a_gps_partition_with_unread_records_counts_as_delivering():
    s = Settings(zones=scenario.ZONES_FILE, partitions=2)
    g0, g1 = TopicPartition(s.topic(topics.GPS), 0), TopicPartition(s.topic(topics.GPS), 1)
    c = FakeConsumer([g0, g1], {g0: 10, g1: 10}, {g0: 10, g1: 4})   # g0 caught up, g1 behind
    st = stage(c)
    st.router.gps_marks = {0: [T0, 1_000], 1: [T0, 1_000]}
    behind = asyncio.run(st._gps_behind())
    assert behind == [1]
    st.router.still_delivering(behind, 50_000)
    assert st.router.gps_marks == {0: [T0, 1_000], 1: [T0, 50_000]}


def test_other_topics_wait_while_a_gps_partition_with_records_was_never_read():
    """The first fetches after a start: calls returned before any fix would move the clock to the
    end of the calls (and the watermark with it: no patrol.gps partition has a time yet)."""
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)
    c = FakeConsumer([calls, gps], {calls: 10, gps: 1000}, {calls: 10, gps: 0})
    st = stage(c)
    batch = {calls: recs(calls.topic, 0, [T0 + i * 60_000 for i in range(10)], first_offset=0)}
    assert cut(st, batch) == {} and held_from(st) == {calls: 0}
    # an empty patrol.gps holds nothing back
    c2 = FakeConsumer([calls, gps], {calls: 10, gps: 0}, {calls: 10, gps: 0})
    assert cut(stage(c2), batch) == batch


def test_a_sparse_topic_held_back_does_not_pause_the_fixes_it_waits_for():
    """calls.110 with a 10-minute gap: its next call is held back (past the patrol.gps frontier +
    ALIGN_MS); between fetches it must count as being at that call's time, not at its last
    routed call, or patrol.gps would be paused as "ahead" of it and neither could move."""
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)
    c = FakeConsumer([calls, gps], {calls: 2, gps: 1000}, {calls: 2, gps: 100})
    st = stage(c)
    batch = {calls: recs(calls.topic, 0, [T0, T0 + 600_000]),
             gps: recs(gps.topic, 0, [T0 + i * 1_000 for i in range(100)])}
    out = cut(st, batch)
    assert len(out[calls]) == 1 and held_from(st) == {calls: 1}
    st.router.tp_ts.update({(calls.topic, 0): T0, (gps.topic, 0): T0 + 99_000})   # as routed
    asyncio.run(st._align())
    assert gps not in c.paused
    assert calls in c.paused          # it is ahead: it waits for the fixes, paused


def test_a_ts_the_validator_refuses_holds_nothing_back():
    """Hostile input (a ts in year 9999, before 2000) is routed to be rejected, never waited for:
    bad input never stops the pipeline."""
    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)
    c = FakeConsumer([calls, gps], {calls: 3, gps: 1000}, {calls: 3, gps: 100})
    st = stage(c)
    batch = {calls: recs(calls.topic, 0, [T0, 253_402_300_799_000, 5]),
             gps: recs(gps.topic, 0, [T0 + i * 1_000 for i in range(100)])}
    out = cut(st, batch)
    assert len(out[calls]) == 3 and held_from(st) == {} and st._held == {}


def test_a_batch_kafka_did_not_take_is_read_again_from_the_last_commit():
    """A send that fails (a broker down past the producer's timeout) fails the batch: pending
    commits are dropped, routing restarts as after a restart, and the consumer goes back to the
    committed offsets (the beginning where none was committed)."""
    from aiokafka.errors import LeaderNotAvailableError

    s = Settings(zones=scenario.ZONES_FILE, partitions=1)
    calls, gps = TopicPartition(s.topic(topics.CALLS), 0), TopicPartition(s.topic(topics.GPS), 0)

    class Consumer(FakeConsumer):
        begun: list = []

        async def committed(self, tp):
            return {calls: 7}.get(tp)

        async def seek_to_beginning(self, *tps):
            self.begun.extend(tps)

    class Store:
        async def unit_latest(self):
            return {"u1": (T0, 34.7, 113.6)}

    c = Consumer([calls, gps], {calls: 10, gps: 10}, {calls: 10, gps: 10})
    st = IngestStage(s, ZoneIndex(load_zones(s.zones)), store=Store(), producer=None)
    st.consumer = c
    old_router = st.router
    old_router.clock = T0 + 99

    async def go():
        never = asyncio.get_running_loop().create_future()
        st._commits.append(asyncio.ensure_future(never))
        await st._rewind(LeaderNotAvailableError())
        return never

    never = asyncio.run(go())
    assert never.cancelled() and not st._commits
    assert c.seeks == {calls: 7} and c.begun == [gps]
    assert st.router is not old_router and st.router.clock == 0 and "u1" in st.router.units


def drain(st, c, data: dict, batch: int, max_rounds: int = 20_000) -> tuple[dict, int]:
    """Fetch-route loop over `data` (tp -> records) as `IngestStage.run` runs it: a fetch returns up
    to `batch` records of every unpaused partition with records left (the position moves past
    them), `_cut` routes some and holds the rest, the router's clock of a partition is its last
    routed ts, then `_align` pauses or resumes. Returns (tp -> routed records, rounds)."""
    routed: dict = {tp: [] for tp in data}
    for rounds in range(1, max_rounds + 1):
        fetched = {}
        for tp, recs_ in data.items():
            pos = c.pos.get(tp, 0)
            if tp not in c.paused and pos < len(recs_):
                fetched[tp] = recs_[pos:pos + batch]
                c.pos[tp] = pos + len(fetched[tp])
        out = asyncio.run(st._cut(fetched)) if fetched or st._buffer else {}
        for tp, got in out.items():
            routed[tp].extend(got)
            st.router.tp_ts[tp.topic, tp.partition] = orjson.loads(got[-1].value)["ts"]
        asyncio.run(st._align())
        if not st._buffer and all(c.pos.get(tp, 0) >= len(r) for tp, r in data.items()):
            return routed, rounds
    return routed, max_rounds


def test_every_record_is_routed_whatever_the_order_of_ts_inside_a_partition():
    """Progress: records of a partition out of ts order (late fixes, a replayed file, hostile but
    valid ts spread over hours) must never hold each other back for good: every record is routed
    once, in offset order per partition, for any fetch size."""
    import random

    s = Settings(zones=scenario.ZONES_FILE, partitions=2)
    g0, g1 = TopicPartition(s.topic(topics.GPS), 0), TopicPartition(s.topic(topics.GPS), 1)
    calls = TopicPartition(s.topic(topics.CALLS), 0)
    alerts = TopicPartition(s.topic(topics.ALERTS), 1)
    for seed in range(12):
        rng = random.Random(seed)
        data = {}
        for tp, n in ((g0, 300), (g1, 200), (calls, 60), (alerts, 120)):
            ts = sorted(T0 + rng.randrange(0, 6 * 3_600_000) for _ in range(n))
            for _ in range(n // 5):                      # some records moved far out of order
                i, j = rng.randrange(n), rng.randrange(n)
                ts[i], ts[j] = ts[j], ts[i]
            data[tp] = recs(tp.topic, tp.partition, ts)
        c = FakeConsumer(data, {tp: len(r) for tp, r in data.items()}, {tp: 0 for tp in data})
        st = stage(c)
        routed, rounds = drain(st, c, data, batch=rng.choice((7, 50, 500)))
        for tp, r in data.items():
            assert [m.offset for m in routed[tp]] == [m.offset for m in r], (seed, tp, rounds)

