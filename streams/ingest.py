"""Stage 1, the I/O: input topics -> Router -> zone-events (and dead letters), in batches.

Reads the input topics with a plain aiokafka consumer in batches (`getmany`, consumer group
`{app_id}-ingest`), routes them with the pure `Router` (streams/routing.py) and hands the state stage
*one message per zone partition per batch*, so the per-message costs of the hop are paid per few
hundred events instead of per event.

Delivery is at-least-once: input offsets are committed only after the batch messages and the
dead letters are acknowledged by Kafka (acks=all, idempotent producer). A crash re-sends a
batch; the state stage de-duplicates by event id, so nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError

from contract import events, topics
from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings

from . import metrics
from .routing import Router
from .store import RedisStore, until_redis_answers
from .zone_index import ZoneIndex

log = logging.getLogger("zonewatch.ingest")

MAX_RECORDS = 5000
MAX_PENDING_COMMITS = 64   # batches routed ahead of Kafka's acknowledgements (each re-sent after a crash)
LINGER_BELOW = 2000  # batches smaller than this wait ZONEWATCH_INGEST_LINGER_MS for more
HEARTBEAT_S = 1.0  # with nothing routed for this long, a marks-only batch to every partition (_heartbeat)
ALIGN_MS = 30_000  # how far (event time) one input partition may read ahead of the slowest


class IngestStage:
    """Consumer group `{app_id}-ingest` over the three input topics."""

    def __init__(self, settings: Settings, index: ZoneIndex, store: RedisStore, producer: AIOKafkaProducer,
                 reach_cells: dict | None = None):
        self.s = settings
        self.index, self.reach_cells = index, reach_cells
        self.router = Router(settings, index, reach_cells)
        self.store = store
        self.positions = PositionWriter(store)
        self.producer = producer
        # the AIOKafkaConsumer start() makes; every other method runs after start() (aiokafka is untyped)
        self.consumer: Any = None
        self.paused: set = set()
        self.linger_s = settings.ingest_linger_ms / 1000.0
        self._commits: deque = deque()
        self.events_in = 0
        self._beat = 0.0   # monotonic time of the last batch sent to every zone-events partition
        # partition -> ts of its first record held back by `_cut`: where it stands for `_align`
        # (its last routed ts would make a sparse topic with a gap look behind, and pause patrol.gps)
        self._held: dict = {}
        # partition -> records fetched but held back by `_cut`, in offset order: routed from here
        # as the frontier moves (the partition is paused meanwhile). Seeking back instead made
        # Kafka send the same megabytes again on every fetch of a backlog: 3.5x slower
        self._buffer: dict = {}

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka,
            group_id=f"{self.s.app_id}-ingest",
            client_id=f"{self.s.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=10_000,  # see streams/app.py: recover quickly after a broker restart
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            session_timeout_ms=self.s.session_timeout_ms,
            heartbeat_interval_ms=max(500, self.s.session_timeout_ms // 6),
            group_instance_id=f"{self.s.instance_id}-ingest" if self.s.instance_id else None,
            **aiokafka_kwargs(self.s),
        )
        # the units' latest fixes, so that a late fix right after a restart is known to be late
        self.router.load_units(await until_redis_answers("read zw:unit-info", self.store.unit_latest))
        # and the operators' commands of the duty plan (streams/duty.py), routed like an input
        self.consumer.subscribe([self.s.topic(t) for t in (*topics.INPUT_TOPICS, topics.PLAN_COMMANDS)],
                                listener=_DropHeld(self))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def run(self) -> None:
        consumer = self.consumer
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=MAX_RECORDS)
            self._observe_fetched(batches)
            if not batches:
                try:
                    if self._buffer:   # held records may be routable now (a frontier moved, a feed went quiet)
                        await self._handle({})
                    if time.monotonic() - self._beat >= HEARTBEAT_S:
                        await self._heartbeat()
                except KafkaError as exc:
                    await self._rewind(exc)
                continue
            if sum(len(r) for r in batches.values()) < LINGER_BELOW:
                # A live stream arrives a few events at a time: wait a moment for more, since each
                # batch costs the same messages, Redis calls and commits however small it is.
                await asyncio.sleep(self.linger_s)
                more = await consumer.getmany(timeout_ms=0, max_records=MAX_RECORDS)
                self._observe_fetched(more)
                for tp, recs in more.items():
                    batches[tp] = batches.get(tp, []) + recs
            try:
                await self._handle(batches)
            except KafkaError as exc:
                await self._rewind(exc)

    @staticmethod
    def _observe_fetched(batches: dict) -> None:
        """Stage "fetch" (part of "ingest"): input message timestamp to its return by getmany, the
        connector's linger, Kafka and the fetch; the rest of "ingest" is this stage's own."""
        if batches:
            stamps = np.fromiter((m.timestamp for recs in batches.values() for m in recs), np.float64)
            metrics.observe_array(metrics.STAGE.labels("fetch"), (time.time() * 1000.0 - stamps) / 1000.0)

    async def _handle(self, batches: dict) -> None:
        """Route one fetch, send its records, and queue its commit behind Kafka's acknowledgement."""
        dl_topic = self.s.topic(topics.DEADLETTER)
        # which partitions still have records in Kafka: once per fetch (positions move only with
        # a fetch), for the cut, the watermark's delivering partitions and the pauses
        unfetched = await self._unfetched()
        batches = await self._cut(batches, unfetched)
        msgs = [m for recs in batches.values() for m in recs]
        if not msgs:
            await self._align(unfetched)
            return
        self.events_in += len(msgs)
        prev_clock = self.router.clock
        now_ms = int(time.time() * 1000)
        out, dead, rejected, positions = self.router.route(msgs, now_ms)
        self.router.still_delivering(await self._gps_behind(unfetched), now_ms)
        futures = await self._send_zone_events(out, prev_clock, now_ms)
        # stage "ingest": each input message's Kafka timestamp to its zone-events send
        sent = np.fromiter((m.timestamp for m in msgs), np.float64, len(msgs))
        metrics.observe_array(metrics.STAGE.labels("ingest"), (time.time() * 1000.0 - sent) / 1000.0)
        for m, reason in dead:
            base = self.router.base_topic[m.topic]
            raw = events.redact_callers(m.value, self.router.secret) if m.value else m.value
            value = events.deadletter_record(m.topic, m.partition, m.offset, reason, raw)
            futures.append(await self.producer.send(dl_topic, value, key=events.deadletter_key(m.key)))
            metrics.DEADLETTERS.labels(topics.METRIC_SOURCE[base], metrics.reason_class(reason)).inc()
        for src, n in rejected.items():
            metrics.EVENTS.labels(src, "rejected").inc(n)
        if positions:   # written behind the routing; the commit waits for it (a restart reads them)
            futures.append(self.positions.add(positions))
        # Commit once Kafka has the batch's outputs and Redis its positions, without holding up the
        # next batch; commits stay in order (each waits for the one before).
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
        self._commits.append(asyncio.ensure_future(
            self._commit_when_sent(self._commits[-1] if self._commits else None, futures, offsets)))
        while len(self._commits) > MAX_PENDING_COMMITS or (self._commits and self._commits[0].done()):
            await self._commits.popleft()  # re-raises a failed send (see run: _rewind)
        await self._align(unfetched)

    async def _heartbeat(self) -> None:
        """Nothing routed for HEARTBEAT_S: tell every partition state the ingest's time and marks
        (streams/watermark.py). Not waited for: a lost heartbeat only delays the next decision."""
        now_ms = int(time.time() * 1000)
        self.router.still_delivering(await self._gps_behind(), now_ms)
        for fut in await self._send_zone_events({}, self.router.clock, now_ms):
            fut.add_done_callback(_ignore_failure)

    async def _send_zone_events(self, out: dict, prev_clock: int, now_ms: int) -> list:
        """Send a routed batch's zone-events messages (every partition gets one: Router.zone_events);
        the futures of Kafka's acknowledgements."""
        self._beat = time.monotonic()
        futures = []
        for p, payloads in self.router.zone_events(out, prev_clock, now_ms).items():
            for payload in payloads:
                futures.append(await self.producer.send(self.s.internal_zone_events, payload, partition=p))
        return futures

    async def _rewind(self, exc: Exception) -> None:
        """Kafka did not take a batch's records (a broker down longer than the producer's
        delivery timeout): nothing after the last commit is trusted. Drop the pending commits,
        start routing afresh as a restarted ingest would (unit registry from Redis) and read again
        from the last committed offsets; what did land is delivered twice, and the partition
        states drop the repeats (at-least-once, idempotent state)."""
        metrics.OUTPUT_RETRIES.inc()
        log.warning("Kafka did not take ingest's records (%r); reading again from the last commit", exc)
        pending, self._commits = list(self._commits), deque()
        for fut in pending:
            fut.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.drop_held()
        self.router = Router(self.s, self.index, self.reach_cells)
        self.router.load_units(await until_redis_answers("read zw:unit-info", self.store.unit_latest))
        while True:
            try:
                for tp in self.consumer.assignment():
                    offset = await self.consumer.committed(tp)
                    if offset is None:
                        await self.consumer.seek_to_beginning(tp)
                    else:
                        self.consumer.seek(tp, offset)
                return
            except KafkaError as again:
                log.warning("reading the committed offsets failed (%r); retrying in 1 s", again)
                await asyncio.sleep(1.0)

    async def _cut(self, batches: dict, unfetched: set | None = None) -> dict:
        """Record-level event-time alignment inside one fetch: a partition's records beyond the
        patrol.gps frontier + ALIGN_MS are not routed now (the consumer is moved back to the first
        of them, and `_align` pauses the partition until the frontier catches up). One fetch can
        hold minutes of one topic and seconds of another; without this the stream clock would run
        past patrol.gps and its watermark's 60 s bound would decide breaches before the fixes that
        prevent them are read (docs/DESIGN.md "Decisions never flip"). A patrol.gps partition with
        records waiting whose time is not known yet (never read) holds the other topics back
        entirely: this happens on the first fetches after a start."""
        gps = self.s.topic(topics.GPS)
        if unfetched is None:
            unfetched = await self._unfetched()
        if self._buffer:
            batches = dict(batches)
            for tp, buf in self._buffer.items():
                new = batches.get(tp)
                batches[tp] = buf + new if new else buf
            self._buffer = {}
        for tp in batches:
            self._held.pop(tp, None)
        # only a ts the validator accepts holds anything back: a hostile ts (year 9999) is routed,
        # rejected and dead-lettered, never waited for
        max_ts = int(time.time() * 1000) + self.s.future_tolerance_ms

        def peek(m) -> int | None:
            ts = _peek_ts(m)
            return ts if ts is not None and events.MIN_TS_MS <= ts <= max_ts else None

        last = {tp: peek(recs[-1]) for tp, recs in batches.items()}
        marks = [ts for tp, ts in last.items() if tp.topic == gps and ts is not None]
        unknown = False
        for tp in self.consumer.assignment():
            if tp.topic != gps or tp in batches or not self._behind(tp, unfetched):
                continue
            # its time as `_align` sees it: a record held at its head counts, or the two could wait
            # for each other (this one paused as "ahead", the others held for it)
            ts = self._held.get(tp) or self.router.tp_ts.get((gps, tp.partition))
            if ts is None:
                unknown = True
            else:
                marks.append(ts)
        if not marks and not unknown:
            return batches
        limit = min(marks) + ALIGN_MS if marks else 0
        out = {}
        for tp, recs in batches.items():
            if unknown:
                if tp.topic == gps:
                    out[tp] = recs
                else:
                    self._buffer[tp] = recs
                    self._held[tp] = peek(recs[0])
                continue
            ts = last[tp]
            if ts is None or ts <= limit:
                out[tp] = recs
                continue
            lo, hi = 0, len(recs)  # the first record past the limit (records of a partition are in
            while lo < hi:         # ts order in practice; a late one only cuts a little early)
                mid = (lo + hi) // 2
                t = peek(recs[mid])
                if t is not None and t > limit:
                    hi = mid
                else:
                    lo = mid + 1
            if lo < len(recs):
                self._buffer[tp] = recs[lo:]
                self._held[tp] = peek(recs[lo])
            if lo:
                out[tp] = recs[:lo]
        return out

    async def _gps_behind(self, unfetched: set | None = None) -> list[int]:
        """The patrol.gps partitions of this ingest that have records not routed yet."""
        gps = self.s.topic(topics.GPS)
        if unfetched is None:
            unfetched = await self._unfetched()
        return [tp.partition for tp in self.consumer.assignment() if tp.topic == gps and self._behind(tp, unfetched)]

    async def _unfetched(self) -> set:
        """The partitions of this ingest with records the consumer has not returned yet."""
        out = set()
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            if hw is None:
                continue
            try:
                if await self.consumer.position(tp) < hw:
                    out.add(tp)
            except IllegalStateError:   # no longer assigned
                pass
        return out

    def _behind(self, tp, unfetched: set) -> bool:
        """Whether an input partition has records not routed yet (held back, or still in Kafka)."""
        return tp in self._buffer or tp in unfetched

    async def _commit_when_sent(self, previous, futures, offsets) -> None:
        if previous is not None:
            await previous
        if futures:
            await asyncio.gather(*futures)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # partitions moved to another worker, which resumes from the last commit
            log.info("ingest commit skipped after a rebalance: %s", exc)

    def drop_held(self) -> None:
        """Forget the records held back (the consumer reads them again from its positions)."""
        self._held.clear()
        self._buffer.clear()

    async def _align(self, unfetched: set | None = None) -> None:
        """Event-time alignment: pause input partitions that run more than ALIGN_MS of event
        time ahead of the slowest partition that still has a backlog, resume them when it
        catches up. Without it a backlog (a restart, a replay) is read one topic after another,
        the stream clock jumps to the end of the fastest topic, and calls would be consumed
        "late" (after the grace) only because of read order."""
        consumer = self.consumer
        assigned = consumer.assignment()
        # a rebalance may have taken paused partitions away (their held records: _DropHeld)
        self.paused &= assigned
        if not assigned:
            return
        if unfetched is None:
            unfetched = await self._unfetched()
        behind = {}
        held = self._held
        for tp in assigned:
            ts = held.get(tp) or self.router.tp_ts.get((tp.topic, tp.partition))
            if ts is None:
                continue
            if self._behind(tp, unfetched):
                behind[tp] = ts
        # a partition with held records fetches nothing more until they are routed
        ahead = set(self._buffer)
        if behind:
            frontier = min(behind.values())
            ahead |= {tp for tp in assigned
                      if (held.get(tp) or self.router.tp_ts.get((tp.topic, tp.partition), frontier))
                      > frontier + ALIGN_MS}
        if ahead != self.paused:
            if self.paused - ahead:
                consumer.resume(*(self.paused - ahead))
            if ahead - self.paused:
                consumer.pause(*(ahead - self.paused))
            self.paused = ahead

    async def lag(self) -> dict[str, int]:
        """Messages behind the end, per input topic, over this ingest's partitions."""
        out: dict[str, int] = {}
        c = self.consumer
        if c is None:
            return out
        for tp in c.assignment():
            hw = c.highwater(tp)
            if hw is None:
                continue
            try:
                pos = await c.position(tp)
            except Exception:  # rebalancing
                continue
            out[tp.topic] = out.get(tp.topic, 0) + max(0, hw - pos)
        return out

    async def forget_silent(self) -> tuple[int, int]:
        """The worker's sweep (streams/app.py, every FORGET_S): units and cameras whose latest report
        is ZONEWATCH_UNIT_FORGET_S of stream clock old leave the router's maps, then the units leave
        zw:units, zw:units:available and zw:unit-info. (the cut, units removed from Redis)"""
        before = self.router.forget_silent()
        return before, await self.store.forget_units(before)

    async def restore_positions(self) -> int:
        """Rewrite every unit position this ingest knows (after Redis lost its data)."""
        await self.store.write_positions(dict(self.router.positions))
        return len(self.router.positions)


class PositionWriter:
    """Unit positions (zw:units, zw:unit-info) written to Redis behind the routing, coalesced: one
    write in flight, the next one takes every position routed meanwhile (a later fix of a unit
    replaces its earlier one: the router passes only a unit's newest fixes). Ingest no longer waits
    a Redis round trip per batch before it reads the next one."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.pending: dict = {}
        self.pending_done: asyncio.Future | None = None   # resolves when `pending` is written
        self.writing: asyncio.Future | None = None

    def add(self, positions: dict) -> asyncio.Future:
        """Queue these positions; the future resolves once a write holding them completed (a failed
        write is counted and logged by the store, and every position is written again later)."""
        self.pending.update(positions)
        if self.pending_done is None:
            self.pending_done = asyncio.get_running_loop().create_future()
        done = self.pending_done
        if self.writing is None or self.writing.done():
            self.writing = asyncio.ensure_future(self._write())
        return done

    async def _write(self) -> None:
        while self.pending:
            batch, done = self.pending, self.pending_done
            self.pending, self.pending_done = {}, None
            try:
                await self.store.write_positions(batch)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)


def _peek_ts(m) -> int | None:
    """The event ts of a raw input message, for alignment only (None when it has none readable)."""
    try:
        return events.parse_ts(orjson.loads(m.value)["ts"])
    except Exception:
        return None


def _ignore_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()   # retrieved: a heartbeat that failed needs no retry


class _DropHeld(ConsumerRebalanceListener):
    """Records held back belong to the assignment they were fetched under: a rebalance resets
    every position to the committed offset, so they would be fetched (and routed) twice."""

    def __init__(self, stage: IngestStage):
        self.stage = stage

    async def on_partitions_revoked(self, revoked) -> None:
        self.stage.drop_held()

    async def on_partitions_assigned(self, assigned) -> None:
        self.stage.drop_held()
        # a unit's earlier fixes may have been routed by another worker while its partition was
        # away: the router's memory of where they went is refreshed from zw:unit-info
        router = self.stage.router
        router.forget_devices()
        router.load_units(await until_redis_answers("read zw:unit-info", self.stage.store.unit_latest))
