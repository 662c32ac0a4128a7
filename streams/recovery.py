"""Recovery: a partition's state on assignment, and Redis after it lost its data.

A partition's state is a pure function of its zone-events log. When a worker is assigned a
partition (start, restart, rebalance, after a kill -9) it does not replay that log from the
start: every few seconds each owner writes a snapshot of the state to the compacted topic
`{prefix}{app_id}-snapshots` (key `{p}/state`, with the zone-events offset it covers; the sealed
hours of the duplicate memory under `{p}/seen/{hour}`, written once each). Taking over is

1. fence: take a new owner generation for p in Redis (zw:fence); from then on the previous
   owner's writes are refused (streams/store.py), so the zone versions read next are final; then
   start p's transactional producer, which aborts what the previous owner left open in Kafka and
   refuses its later writes there (streams/kafka_fence.py);
2. load the latest snapshot of p;
3. rebuild the look-back memory (fixes and alerts held for the grace) from the log between the
   snapshot's `lookback` offset and its `offset`, without applying anything else;
4. apply the log from the snapshot's `offset` to its current end, and send what it decided again,
   in one delivery (the previous owner may have died before sending them: at-least-once,
   consumers dedupe);
   what lies beyond the group's committed offset is also counted in zonewatch_events_total, since
   no live owner counted it (a graceful handover can count the last commit interval twice);
5. make the wall's incident list (zw:incidents) agree with the state, then hand the partition
   to the apply loop (streams/ownership.py), which reads on from there.

So a takeover costs a snapshot plus a few seconds of log, whatever the length of the day.

If Redis loses its data (a restart without persistence, FLUSHDB), the worker notices within
REDIS_CHECK_S and rewrites every zone and unit position it holds; no replay is needed.
"""

from __future__ import annotations

import gc
import logging
import time
import zlib
from contextlib import contextmanager

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from contract.kafka_settings import aiokafka_kwargs

from . import metrics, records
from .kafka_fence import KafkaFence
from .state_stage import SNAPSHOT_ZLIB, Held, StateStage
from .store import RedisStore, until_redis_answers

log = logging.getLogger("zonewatch.recovery")

REDIS_CHECK_S = 2.0
_decode = msgspec.msgpack.Decoder().decode


_rebuilding = 0           # takeovers rebuilding now (gc_paused)
_gc_was_enabled = False


@contextmanager
def gc_paused():
    """The cyclic garbage collector off while any takeover rebuilds: the look-back makes millions of
    held fixes (tuples in lists in dicts, no cycles), and the collector's full passes over a heap
    growing that fast took a quarter of the rebuild (1.1 of 4.6 s of CPU at 1 M events). Reference
    counting still frees everything; the collector resumes when the last rebuild ends."""
    global _rebuilding, _gc_was_enabled
    if _rebuilding == 0:
        _gc_was_enabled = gc.isenabled()
        gc.disable()
    _rebuilding += 1
    try:
        yield
    finally:
        _rebuilding -= 1
        if _rebuilding == 0 and _gc_was_enabled:
            gc.enable()


async def read_snapshot(stage: StateStage, p: int) -> tuple[dict | None, dict[int, bytes]]:
    """The latest `{p}/state` snapshot and the sealed dedup hours, from partition p of the
    snapshots topic (compacted: latest value per key, tombstones remove)."""
    s = stage.s
    tp = TopicPartition(s.internal_snapshots, p)
    # "earliest" and an explicit seek: with the default ("latest") the position the consumer looks
    # up when assigned could land after seek_to_beginning's, at the end: no snapshot was ever
    # found, and every takeover replayed the whole log (make failover: 20 s with 1 M events behind)
    c = AIOKafkaConsumer(bootstrap_servers=s.kafka, enable_auto_commit=False, group_id=None,
                         client_id=f"{s.app_id}-restore", max_partition_fetch_bytes=64 << 20,
                         fetch_max_bytes=128 << 20, auto_offset_reset="earliest",
                         isolation_level="read_committed",   # a fenced owner's aborted snapshots are not
                         **aiokafka_kwargs(s))
    await c.start()
    latest: dict[bytes, bytes | None] = {}
    try:
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        c.seek(tp, (await c.beginning_offsets([tp]))[tp])
        while await c.position(tp) < end:
            got = await c.getmany(tp, timeout_ms=1000, max_records=1000)
            for m in got.get(tp, ()):
                if m.offset >= end:
                    break
                latest[m.key] = m.value
    finally:
        await c.stop()
    return parse_snapshot(p, latest)


def parse_snapshot(p: int, latest: dict[bytes, bytes | None]) -> tuple[dict | None, dict[int, bytes]]:
    """The `{p}/state` snapshot (None: none written) and the sealed dedup hours, from the latest
    value of each key of partition p of the snapshots topic."""
    state_raw = latest.get(f"{p}/state".encode())
    if state_raw is None:
        return None, {}
    prefix = f"{p}/seen/".encode()
    sealed = {int(k[len(prefix):]): v for k, v in latest.items() if k.startswith(prefix) and v is not None}
    if state_raw[:1] == SNAPSHOT_ZLIB:
        state_raw = zlib.decompress(state_raw[1:])
    return _decode(state_raw), sealed


async def committed_offset(s, tp: TopicPartition) -> int | None:
    """The state group's committed offset of tp (None: nothing committed), read by a consumer of
    its own that is never assigned anything, so no lookup of its can move a replay's position."""
    c = AIOKafkaConsumer(bootstrap_servers=s.kafka, enable_auto_commit=False, group_id=s.app_id,
                         client_id=f"{s.app_id}-committed", **aiokafka_kwargs(s))
    await c.start()
    try:
        return await c.committed(tp)
    finally:
        await c.stop()


async def restore(stage: StateStage, p: int, emit, fence: KafkaFence) -> Held:
    """Take partition p over (steps 1-5 above). `emit(p, state)` queues the outputs the state has
    decided (streams/outputs.py PartitionOutputs: delivered in order, before any later snapshot,
    through p's producer in `fence`)."""
    s = stage.s
    started = time.monotonic()
    metrics.REBUILD_IN_PROGRESS.inc()
    try:
        with gc_paused():
            generation = await until_redis_answers(f"take partition {p}", lambda: stage.store.take_partition(p))
            await fence.take(p, generation)   # Kafka away: raises, and the takeover is tried again
            zone_ids = [z.zone_id for z in stage.zones_of[p]]
            versions = await until_redis_answers(f"read the zone versions of partition {p}",
                                                 lambda: stage.store.current_versions(zone_ids))
            # and of its duty plan documents (streams/duty.py), which continue them as zones do
            duty_fields = stage.duty.version_fields(p)
            versions.update(await until_redis_answers(f"read the duty versions of partition {p}",
                                                      lambda: stage.store.duty_versions(duty_fields)))
            snap, sealed = await read_snapshot(stage, p)
            t_read = time.monotonic()
            tp = TopicPartition(s.internal_zone_events, p)
            count_from = await committed_offset(s, tp)
            c = AIOKafkaConsumer(bootstrap_servers=s.kafka, enable_auto_commit=False, group_id=None,
                                 client_id=f"{s.app_id}-rebuild", max_partition_fetch_bytes=8 << 20,
                                 auto_offset_reset="earliest", isolation_level="read_committed",
                                 **aiokafka_kwargs(s))
            await c.start()
            looked = replayed = 0
            t_looked = time.monotonic()
            try:
                c.assign([tp])
                end = (await c.end_offsets([tp]))[tp]
                first = (await c.beginning_offsets([tp]))[tp]
                # batches from the group's committed offset on were applied by no owner that is still
                # counted (none, or one killed before its commit): they count here, once, in
                # zonewatch_events_total; the apply loop reads on from applied_upto afterwards
                if count_from is None:
                    count_from = first
                held, start, lookback = from_snapshot(stage, p, snap, sealed, first)
                t_restored = time.monotonic()
                from_ = max(lookback, first)
                c.seek(tp, from_)
                while from_ < end and await c.position(tp) < end:
                    got = await c.getmany(tp, timeout_ms=1000, max_records=2000)
                    for m in got.get(tp, ()):
                        if m.offset >= end:
                            break
                        if rebuild_from(stage, held, m.offset, m.value, start, count_from):
                            replayed += 1
                        else:
                            looked += 1
                            t_looked = time.monotonic()
            finally:
                await c.stop()
            if replayed:   # what the tail decided, in one delivery (one transaction: streams/kafka_fence.py)
                emit(p, held.state)
            st = held.state
            rebuilt(held, end, start, versions, generation)
            await reconcile_incidents(stage, p, held)
            took = time.monotonic() - started
            metrics.TAKEOVER.observe(took)
            log.info("partition %d: took over in %.2fs (generation %d; snapshot %s read in %.2fs, restored in %.2fs; "
                     "look-back %d batches until %.2fs, replayed %d batches; clock %d)", p, took, generation,
                     "none" if snap is None else f"at {start}", t_read - started, t_restored - t_read, looked,
                     t_looked - started, replayed, st.clock)
            return held
    finally:
        metrics.REBUILD_IN_PROGRESS.dec()


def from_snapshot(stage: StateStage, p: int, snap: dict | None, sealed: dict[int, bytes],
                  first: int) -> tuple[Held, int, int]:
    """Step 2: partition p's state as the snapshot has it, and the offsets the log is read from:
    (held, snapshot offset, look-back offset). Without a snapshot, an empty state that applies the
    log from its first offset `first`."""
    held = Held(stage.new_state(p))
    if snap is None:
        held.floor = first
        return held, first, first
    if snap.get("layout", 0) != stage.layout:   # its held incidents were routed by another map
        stage.foreign_layout(snap.get("layout", 0))
    held.state.restore(snap["state"], sealed)
    held.floor = snap["floor"]
    return held, snap["offset"], snap["lookback"]


def rebuild_from(stage: StateStage, held: Held, offset: int, value: bytes, start: int, count_from: int) -> bool:
    """Steps 3 and 4 for one message of the partition's log: below the snapshot's offset `start`,
    only the look-back memory; from it on, applied (counted in the metrics from the group's
    committed offset `count_from` on). True when applied: its outputs are due."""
    st = held.state
    if offset < start:  # covered by the snapshot: only the look-back memory
        st.keep_lookback(records.decode(value).events)
        return False
    stage.apply_batch(st, value, live=offset >= count_from)
    held.checkpoints.append((offset + 1, st.clock))
    return True


def rebuilt(held: Held, end: int, start: int, versions: dict[str, int], generation: int) -> None:
    """The log read to `end`: the state continues Redis' zone versions under its new owner
    generation. Its watermark is the previous owner's (the snapshot's marks and the tail's):
    the feeds' time comes with the next batches."""
    st = held.state
    held.applied_upto = max(end, start)
    for zid, v in versions.items():
        if zid in st.zones:
            st.zones[zid].version = v
    if st.duty is not None:   # "post:{id}", "checkpoint:{id}", "phase" (streams/duty.py)
        st.duty.set_versions(versions)
    st.rewrite_all()  # the first flush rewrites every zone, with versions above Redis'
    held.generation = generation


async def reconcile_incidents(stage: StateStage, p: int, held: Held) -> None:
    """Make zw:incidents agree with the restored state of partition p: a previous owner may have
    died between deciding an arrival and writing it. Open incidents are rewritten (keeping the
    dispatch recommendations Redis has: they are not in the log), and entries of this partition
    that are no longer open are closed."""
    st = held.state
    st.incidents.take_board()  # the replay's changes; the state itself is what counts
    existing = await until_redis_answers(f"read zw:incidents for partition {p}", stage.store.open_incidents)
    board = st.incidents.board
    for inc in st.incidents.open_incidents():
        old = existing.get(inc.call_id)
        if old and old.get("nearest_units") and not inc.record.get("nearest_units"):
            inc.record["nearest_units"] = old["nearest_units"]
        board[inc.call_id] = inc
    for cid, doc in existing.items():
        if doc.get("partition") != p or cid in board:
            continue
        known = st.incidents.incidents.get(cid)
        if known is not None:
            board[cid] = known  # arrived meanwhile
        else:  # forgotten already: how it ended is no longer known here
            stage.pending_board.setdefault(p, []).append({**doc, "status": "closed", "clock": st.clock})


async def restore_if_redis_lost(stage: StateStage, store: RedisStore, zone_ids: list[str], ingest,
                                fence: KafkaFence | None = None) -> None:
    """A Redis restart without persistence, a FLUSHDB or a Sentinel failover (a promoted replica
    may lack the last writes: replication is asynchronous) loses zone documents, unit positions,
    incident entries and owner generations. The worker holds the state, so it writes it all
    again and takes its partitions' generations again. Unit positions whose write failed while
    Redis was away are written again too."""
    try:
        run_id = await store.server_id()
        lost = not await store.exists() or (stage.redis_run_id is not None and run_id != stage.redis_run_id)
    except Exception:
        return  # Redis unreachable: the writer's retries report it
    if not lost:
        stage.redis_run_id = run_id
        if store.positions_lost and ingest is not None:
            store.positions_lost = False
            await ingest.restore_positions()
        return
    try:
        await store.register_zones(zone_ids)
        for p, h in list(stage.held.items()):
            if h.generation:
                h.generation = await store.take_partition(p)
                if fence is not None:   # its records name the owner by the new generation
                    fence.regenerate(p, h.generation)
                await reconcile_incidents(stage, p, h)
    except Exception:
        return  # down again: the next check retries
    stage.redis_run_id = run_id
    n_zones = stage.rewrite_all()
    store.positions_lost = False
    n_units = await ingest.restore_positions() if ingest is not None else 0
    log.warning("Redis lost the zone state (restart, flush or failover): rewriting %d zones and %d unit "
                "positions held by this worker", n_zones, n_units)
