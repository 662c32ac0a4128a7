"""Partition ownership of the zone-events topic, in one room: the state stage's consumer.

    OwnedPartitions  the consumer of zone-events (group {app_id}, a plain aiokafka consumer like
                     ingest's): assigned -> paused while the takeover (streams/recovery.py) runs,
                     then sought to the state's `applied_upto` and resumed; revoked -> dropped;
                     fenced (a Redis or Kafka write found another owner) -> dropped, and taken
                     over again if still assigned a few heartbeats later
    run()            the apply loop: each message applied to its partition's state in offset order,
                     no await inside; what the state decided is queued, not awaited
    PartitionOutputs (streams/outputs.py) one per partition: outputs, zones.state, zones.daily,
                     snapshots and commits, delivered in decision order off the apply path, each
                     through the partition's transactional producer (streams/kafka_fence.py)

Why not a Faust agent: its fetcher stops a partition whose queue to the agent is full and sleeps a
whole second when every partition is stopped, and one agent awaited each partition's outputs in
turn; the soak's seconds of latency were spent there
(docs/BENCHMARKS.md "Where the soak's seconds went").
Faust remains the app: its web server (/metrics), timers and tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError
from aiokafka.structs import TopicPartition

from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings

from . import metrics, recovery
from .outputs import OutputSender, PartitionOutputs
from .state_stage import Held, StateStage, compress_snapshot

log = logging.getLogger("zonewatch.ownership")

FETCH_TIMEOUT_MS = 100    # an idle getmany returns this often (the loop checks nothing else meanwhile)
MAX_RECORDS = 500         # zone-events messages per fetch (each a batch of events)
STALLED = "stalled past the session timeout"   # the log line of a worker that was frozen (bench/chaos.py)
# the stall watchdog's tick: a stall is measured up to this much short (a 1 s tick missed a 6.4 s
# SIGSTOP against a 6 s session timeout in test_zombie)
WATCHDOG_S = 0.1
COMMIT_S = 0.1            # a partition's applied offset is committed at most this often, once delivered


class OwnedPartitions:
    """The zone-events partitions this worker owns: their consumer, takeovers and deliveries."""

    def __init__(self, settings: Settings, stage: StateStage, outputs: OutputSender):
        self.settings = settings
        self.stage = stage
        self.outputs = outputs
        self.topic = settings.internal_zone_events
        # the AIOKafkaConsumer start() makes; every other method runs after start() (aiokafka is untyped)
        self.consumer: Any = None
        self.taking: dict[int, asyncio.Future] = {}          # partition -> takeover running or done
        self.deliveries: dict[int, PartitionOutputs] = {}    # partition -> its ordered deliveries
        self.committed_at: dict[int, float] = {}
        self.commit_later: set[int] = set()                  # partitions with a trailing commit scheduled
        # fenced here: taken over again only by retake_if_assigned or a new assignment
        self.suspended: set[int] = set()
        self.fence = outputs.fence
        stage.on_fenced = self.fenced
        self.fence.on_fenced = self.kafka_fenced

    # -- membership ---------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka, group_id=s.app_id, client_id=f"{s.app_id}-state",
            enable_auto_commit=False, auto_offset_reset="earliest",
            metadata_max_age_ms=10_000,   # recover quickly after a broker restart (streams/app.py)
            max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20,
            # a dead worker's partitions move after the session timeout, or at once to a restarted
            # worker with the same ZONEWATCH_INSTANCE_ID (static membership)
            session_timeout_ms=s.session_timeout_ms, heartbeat_interval_ms=max(500, s.session_timeout_ms // 6),
            group_instance_id=s.instance_id or None,
            # the arrival records are written in transactions (streams/kafka_fence.py): a fenced
            # owner's aborted ones are never applied
            isolation_level="read_committed",
            **aiokafka_kwargs(s))
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await self.fence.close()

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()} if self.consumer is not None else set()

    def on_assigned(self, partitions: list[int]) -> None:
        """Restore at once, not on the partition's first new message: the wall must be right after a
        crash even while input is quiet. The partition is read again once its state is ready."""
        self.consumer.pause(*(TopicPartition(self.topic, p) for p in partitions))
        metrics.FETCH_PAUSES.labels("takeover").inc(len(partitions))
        for p in partitions:
            self.suspended.discard(p)
            self.held_or_taking(p)

    async def on_revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            fut = self.taking.pop(p, None)
            if fut is not None and not fut.done():
                fut.cancel()
            self.suspended.discard(p)
        self.stage.drop(partitions)
        for p in partitions:   # what is still queued for them is the next owner's to send
            await self.fence.release(p)

    def fenced(self, partitions) -> None:
        """A write found these partitions owned by another worker: dropped here, their producers
        too. If the group still assigns them to this worker a few heartbeats later (the other writer
        was a zombie, or won a race after Redis lost the fences), take them over again, which fences
        it. Not at once: a thawed zombie is fenced before its consumer has heard of its expulsion,
        and taking over again then fenced the new owner (tests/integration/test_zombie.py)."""
        assigned = self.assigned()
        for p in partitions:
            fut = self.taking.get(p)
            if fut is not None and not fut.done():
                continue   # a takeover of p under way took (or takes) a newer generation than the one fenced
            self.taking.pop(p, None)
            self.fence.drop(p)
            self.suspended.add(p)
            if p in assigned:
                self.consumer.pause(TopicPartition(self.topic, p))
        asyncio.ensure_future(self.retake_if_assigned(set(partitions)))

    def kafka_fenced(self, partitions: set[int]) -> None:
        """Kafka refused a partition's writes (another worker took it over): as a Redis fence."""
        self.stage.drop(partitions)
        self.fenced(partitions)

    async def retake_if_assigned(self, partitions: set[int]) -> None:
        await asyncio.sleep(self.settings.session_timeout_ms / 2000)   # three heartbeats
        assigned = self.assigned()
        for p in partitions & self.suspended:
            self.suspended.discard(p)
            if p in assigned:
                log.warning("partition %d: still assigned here after its fence: taking it over again", p)
                self.held_or_taking(p)

    def held_or_taking(self, p: int) -> asyncio.Future:
        fut = self.taking.get(p)
        if fut is None:
            fut = self.taking[p] = asyncio.ensure_future(self._take_over(p))
        return fut

    async def _take_over(self, p: int) -> Held:
        while True:
            try:
                held = await recovery.restore(self.stage, p, self.emit, self.fence)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking partition %d over failed; retrying", p)
                await asyncio.sleep(1.0)
        if self.taking.get(p) is not asyncio.current_task():
            log.info("partition %d: a later takeover replaced this one", p)   # cancelled late, or fenced
            return held
        self.stage.held[p] = held
        self.stage.wake.set()
        tp = TopicPartition(self.topic, p)
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, held.applied_upto)   # what the takeover applied is not read again
            self.consumer.resume(tp)
        return held

    # -- applying -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Apply every fetched message to its partition's state, in offset order."""
        consumer = self.consumer
        stage = self.stage
        watchdog = asyncio.ensure_future(self._watch_stalls())
        try:
            await self._apply_loop(consumer, stage)
        finally:
            watchdog.cancel()

    async def _watch_stalls(self) -> None:
        """Say so when this process did not run for longer than the session timeout (SIGSTOP, a paused
        VM, swapping, a loop blocked): the group may have given its partitions to another worker
        meanwhile, and what it writes now is fenced (streams/store.py)."""
        session_s = self.settings.session_timeout_ms / 1000.0
        while True:
            started = time.monotonic()
            await asyncio.sleep(WATCHDOG_S)
            late = time.monotonic() - started - WATCHDOG_S
            if late > session_s:
                log.warning("the worker %s (%.1f s without running): its partitions may have moved", STALLED, late)

    async def _apply_loop(self, consumer, stage: StateStage) -> None:
        while True:
            try:
                got = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_RECORDS)
            except KafkaError as exc:   # the consumer retries by itself; say so and go on
                log.warning("fetching zone-events failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, msgs in got.items():
                p = tp.partition
                for m in msgs:
                    held = stage.held.get(p)
                    if held is None:
                        break      # revoked, or being taken over (it seeks to where its state stands)
                    if m.offset < held.applied_upto:
                        continue   # fetched before the takeover, which applied it
                    stage.apply_batch(held.state, m.value)
                    stage.applied(p, m.offset)
                    self.emit(p, held.state)   # arrivals go back into zone-events
                    await asyncio.sleep(0)     # the flusher, ingest and the timers run between batches
                queue = self.deliveries.get(p)
                if queue is not None and queue.full:   # Kafka slow or down: hold until it catches up
                    metrics.FETCH_PAUSES.labels("outputs_full").inc()
                    await queue.drained()
                self._commit_when_delivered(p)

    def delivery(self, p: int) -> PartitionOutputs:
        q = self.deliveries.get(p)
        if q is None:
            q = self.deliveries[p] = PartitionOutputs(p, self.outputs.deliver)
        return q

    def emit(self, p: int, st) -> None:
        """Queue what partition p's state decided (delivered in order and acknowledged, off the apply
        path); Arrival, Tiers and DutyNote records loop back into zone-events."""
        stage = self.stage
        enriched, sla, arrivals = stage.take_outputs(st)
        fallback = st.incidents.take_fallback()
        duty = stage.duty.records(st)   # duty.events (streams/duty.py), taken now like the others
        if not (enriched or sla or arrivals or duty):
            return
        clock, wall, queued = st.clock, stage.last_wall, time.monotonic()

        async def records() -> list:
            return await self.outputs.outputs(enriched, sla, arrivals, clock, wall, fallback, duty)

        def sent() -> None:
            metrics.STAGE.labels("outputs").observe(time.monotonic() - queued)
            for call_id in fallback:  # the wall shows the units outputs() added from Redis
                st.incidents.touch(call_id)

        self.delivery(p).put_records(self.fence.tenure(p), records, sent)

    def queue_daily(self, p: int, docs: list) -> None:
        """zones.daily records of partition p, taken now: a snapshot that says so is queued behind them."""
        self.stage.held[p].state.daily_taken(docs)
        self.delivery(p).put_records(self.fence.tenure(p), partial(_ready, self.outputs.daily_records(docs)))

    async def zone_states(self, docs: list[bytes], ids: list[str]) -> None:
        """zones.state: the documents a flush wrote to Redis, queued per partition behind what it
        decided before (StateStage.on_written)."""
        by_part: dict[int, tuple[list[bytes], list[str]]] = {}
        zone_part = self.stage.zone_part
        for js, zid in zip(docs, ids, strict=True):
            part_docs, part_ids = by_part.setdefault(zone_part[zid], ([], []))
            part_docs.append(js)
            part_ids.append(zid)
        for p, (part_docs, part_ids) in by_part.items():
            self.delivery(p).put_records(self.fence.tenure(p),
                                         partial(_ready, self.outputs.zone_state_records(part_docs, part_ids)))

    def queue_snapshot(self, p: int) -> None:
        """Partition p's snapshot, encoded now (a consistent point between two batches), compressed
        off the event loop and sent behind every output decided before it."""
        owner = self.stage.held[p]
        parts = self.stage.snapshot(p, compress=False)
        key, encoded = parts[-1]
        assert encoded is not None   # the state record is never a tombstone
        async def records() -> list:
            if self.stage.held.get(p) is not owner:
                return []   # revoked meanwhile: the next owner's snapshots must not be overwritten
            sealed = await asyncio.to_thread(compress_snapshot, encoded)   # zlib releases the GIL
            return self.outputs.snapshot_records(p, parts[:-1] + [(key, sealed)])

        self.delivery(p).put_records(self.fence.tenure(p), records)

    def _commit_when_delivered(self, p: int) -> None:
        """Commit p's applied offset once what was decided up to it is in Kafka (the group's committed
        offset tells a takeover from where on the metrics were not counted: streams/recovery.py). At
        most every COMMIT_S, and the last batch before a pause too (a trailing commit): a group whose
        committed offsets stop short of what was applied looks behind to every reader of its lag."""
        now = time.monotonic()
        held = self.stage.held.get(p)
        if held is None:
            return
        wait = self.committed_at.get(p, 0.0) + COMMIT_S - now
        if wait > 0:
            if p not in self.commit_later:
                self.commit_later.add(p)
                asyncio.get_running_loop().call_later(wait, self._commit_trailing, p)
            return
        self.committed_at[p] = now
        offsets = {TopicPartition(self.topic, p): held.applied_upto}

        async def commit() -> None:
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError, RebalanceInProgressError, KafkaError) as exc:
                log.info("commit of zone-events partition %d skipped: %r", p, exc)   # moved: the next owner commits

        self.delivery(p).put(commit)

    def _commit_trailing(self, p: int) -> None:
        self.commit_later.discard(p)
        self._commit_when_delivered(p)

    async def lag(self) -> int:
        """Messages between this worker's positions and the ends of its zone-events partitions."""
        n = 0
        c = self.consumer
        if c is None:
            return 0
        for tp in c.assignment():
            hw = c.highwater(tp)
            if hw is None:
                continue
            try:
                n += max(0, hw - await c.position(tp))
            except IllegalStateError:   # rebalancing: the next round reports
                pass
        return n


async def _ready(records: list) -> list:
    """Records made already (PartitionOutputs.put_records takes a maker)."""
    return records


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owned: OwnedPartitions):
        self.owned = owned

    async def on_partitions_revoked(self, revoked) -> None:
        await self.owned.on_revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned) -> None:
        self.owned.on_assigned([tp.partition for tp in assigned])
