"""Issue 23 item 4: a worker that lost its partitions writes no zones.daily, zones.state or
sla.events record (nor incidents.enriched) after the new owner did.

First the fence itself on the real broker (streams/kafka_fence.py), deterministically: two owners
of one partition, the old one frozen in the middle of a transaction. Then real workers: the first
one decides outputs Kafka refuses for a while (so it holds deliveries it must send again), is
frozen (SIGSTOP) past its session timeout, a second worker takes every partition over and writes,
and the first is thawed (SIGCONT) with its deliveries still due. Read back read_committed, every
record names its writer (`zw-owner` "{partition}:{generation}"), and in every partition of every
output topic the generations of each zone-events partition never go back: nothing of an owner
appears after a later owner's record."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from bench.chaos import event_set, final_clock, produce_chunks, settle
from bench.harness import refused_sends
from contract import topics
from contract.settings import DEMO_ZONES
from contract.topics import OWNER_HEADER
from streams.kafka_fence import KafkaFence

from .conftest import wait_until

OUTPUTS = (topics.SLA, topics.INCIDENTS, topics.ZONES_STATE, topics.ZONES_DAILY)


async def _records(settings, topic: str, isolation: str) -> dict[int, list[tuple[bytes | None, str]]]:
    """Per Kafka partition of `topic`, (key, zw-owner header) of every record up to its end, in log
    order, read with `isolation`."""
    c = AIOKafkaConsumer(bootstrap_servers=settings.kafka, enable_auto_commit=False, group_id=None,
                         auto_offset_reset="earliest", isolation_level=isolation)
    await c.start()
    try:
        # the output topics have the deployment's partition count (contract/kafka_settings.py)
        tps = [TopicPartition(settings.topic(topic), p) for p in range(settings.partitions)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        out: dict[int, list[tuple[bytes | None, str]]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 60
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out[tp.partition].append((m.key, dict(m.headers or ()).get(OWNER_HEADER, b"").decode()))
        return out
    finally:
        await c.stop()


def test_a_previous_owner_of_a_partition_writes_nothing_once_the_next_one_took_it(deployment):
    d = deployment(DEMO_ZONES, partitions=2)
    s = d.settings
    sla = s.topic(topics.SLA)

    def rec(call_id: str) -> tuple:   # all to partition 0 of sla.events: one log, one order
        return (sla, call_id.encode(), orjson.dumps({"call_id": call_id}), 0)

    async def run():
        fenced: list[set[int]] = []
        old, new = KafkaFence(s, on_fenced=fenced.append), KafkaFence(s)
        try:
            await old.take(0, generation=1)
            assert await old.send(0, [rec("before")])
            # the old owner freezes inside a transaction, its record already in the log
            producer = old.producers[0]
            await producer.begin_transaction()
            await (await producer.send(sla, b"{}", key=b"open-when-frozen", partition=0, headers=old.headers[0]))
            await new.take(0, generation=2)              # the takeover: the old producer is fenced
            assert await new.send(0, [rec("new-owner")])
            with pytest.raises(KafkaError):               # it thaws: its transaction cannot commit
                await producer.commit_transaction()
            assert not await old.send(0, [rec("after-the-takeover")])
            assert fenced == [{0}] and 0 not in old.producers
            assert await new.send(0, [rec("new-owner-again")])
        finally:
            await old.close()
            await new.close()
        committed = (await _records(s, topics.SLA, "read_committed"))[0]
        assert committed == [(b"before", "0:1"), (b"new-owner", "0:2"), (b"new-owner-again", "0:2")]
        # a reader of uncommitted records sees nothing of the old owner after the takeover either:
        # only its open transaction (aborted), which precedes the new owner's records
        raw = (await _records(s, topics.SLA, "read_uncommitted"))[0]
        assert (b"after-the-takeover", "0:1") not in raw
        assert raw.index((b"open-when-frozen", "0:1")) < raw.index((b"new-owner", "0:2"))

    asyncio.run(run())


def test_a_thawed_zombie_worker_writes_nothing_after_the_new_owner(deployment):
    d = deployment(DEMO_ZONES, partitions=2)
    events = event_set(3.0)
    half = len(events) // 2
    d.start_worker()
    d.wait_workers_joined()
    produce_chunks(d, events[:half], 1)
    settle(d, final_clock(events[:half]))
    zombie_gens = {p: g for w, p, _s, g in d.takeovers() if w == 0}
    assert set(zombie_gens) == {0, 1}
    # the first worker decides outputs Kafka refuses (it holds them, to send again), and freezes
    with refused_sends(d, OUTPUTS):
        produce_chunks(d, events[half:], 1)
        wait_until(lambda: "Kafka refused partition" in d.worker_log(0), timeout=60,
                   what="the first worker holding refused outputs")
        d.pause_worker(0)
    d.start_worker()
    wait_until(lambda: {p for w, p, _s, _g in d.takeovers() if w == 1} == {0, 1}, timeout=90,
               what="the second worker owning every partition")
    new_gens = {p: g for w, p, _s, g in d.takeovers() if w == 1}

    new_owners = {f"{p}:{g}" for p, g in new_gens.items()}

    def new_owner_wrote() -> bool:   # (the demo zones are all partition 0's: zones.state is its alone)
        state = asyncio.run(_records(d.settings, topics.ZONES_STATE, "read_committed"))
        return bool(new_owners & {o for recs in state.values() for _k, o in recs})

    wait_until(new_owner_wrote, timeout=60, what="the new owner's zones.state records")
    frozen_log = len(d.worker_log(0))
    d.resume_worker(0)   # its held deliveries are due again
    # running again: it writes a line once thawed (the stall, or the group that expelled it; the stall
    # line only when the freeze outlasted the session timeout by more than the watchdog's tick)
    wait_until(lambda: len(d.worker_log(0)) > frozen_log, timeout=60, what="the thawed worker running again")
    time.sleep(6.0)   # what the thawed worker held is due again within its retry's backoff (5 s at most)
    _check_owner_order(d.settings)
    settle(d, final_clock(events))   # and the owners of the time finish the day
    _check_owner_order(d.settings)
    written = {o for t in (topics.ZONES_STATE, topics.SLA)
               for recs in asyncio.run(_records(d.settings, t, "read_committed")).values() for _k, o in recs}
    # the test could fail: a partition's zombie wrote before its freeze, and its new owner after it
    assert [p for p in (0, 1) if {f"{p}:{zombie_gens[p]}", f"{p}:{new_gens[p]}"} <= written], written
    # the thawed worker did not take a partition back before its group said so: the new owner's
    # writes were never fenced
    fenced = [ln for ln in d.worker_log(1).splitlines() if "are fenced" in ln or "(fenced)" in ln]
    assert not fenced, fenced[:3]


def _check_owner_order(settings) -> None:
    """In every partition of every output topic, read_committed: each record names its writer, and
    per zone-events partition the owner generations never go back (nothing of an owner after a
    later owner's record)."""
    for topic in OUTPUTS:
        for kp, recs in asyncio.run(_records(settings, topic, "read_committed")).items():
            assert all(owner for _k, owner in recs), f"{topic}[{kp}]: a record without {OWNER_HEADER}"
            latest: dict[int, tuple[int, int]] = {}   # zone-events partition -> (generation, at)
            for at, (key, owner) in enumerate(recs):
                p, g = map(int, owner.split(":"))
                seen, seen_at = latest.get(p, (0, -1))
                assert g >= seen, (f"{topic}[{kp}] record {at}: {key!r} by partition {p}'s owner {g} after "
                                   f"its owner {seen}'s record {seen_at} (the zombie wrote after the new owner)")
                latest[p] = (g, at)
