"""Recovery: a partition's state after an assignment, and Redis after it lost its data.

A partition's state is a pure function of its zone-events log: when a worker is assigned a
partition (start, restart, rebalance) it rebuilds the state by reading the partition from the
beginning (retention 27 h) up to the first offset it is handed, then continues. Zone versions
must keep increasing across owners, so they are read from Redis before the first write.
The wall's incident list (`zw:incidents`) is made to agree with the rebuilt state.

If Redis loses its data (a restart without persistence, FLUSHDB), the worker notices within
REDIS_CHECK_S and rewrites every zone and unit position it holds; no replay is needed.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from contract.security import aiokafka_kwargs

from .state_stage import StateStage
from .store import RedisStore, until_redis_answers
from .zone_state import PartitionState

log = logging.getLogger("zonewatch.recovery")

REDIS_CHECK_S = 2.0


async def rebuild(stage: StateStage, p: int, upto: int) -> PartitionState:
    """State of partition p from its log up to (excluding) offset `upto`."""
    s = stage.s
    st = stage.new_state(p)
    versions = await until_redis_answers(f"read the zone versions of partition {p}",
                                         lambda: stage.store.current_versions(st.zones))
    for zid, v in versions.items():
        st.zones[zid].version = v
    started = time.monotonic()
    replayed = 0
    if upto > 0:
        tp = TopicPartition(s.internal_zone_events, p)
        c = AIOKafkaConsumer(bootstrap_servers=s.kafka, enable_auto_commit=False,
                             group_id=None, client_id=f"{s.app_id}-rebuild",
                             max_partition_fetch_bytes=8 << 20, **aiokafka_kwargs(s))
        await c.start()
        try:
            c.assign([tp])
            await c.seek_to_beginning(tp)
            while await c.position(tp) < upto:
                got = await c.getmany(tp, timeout_ms=1000, max_records=2000)
                for m in got.get(tp, ()):
                    if m.offset >= upto:
                        break
                    stage.apply_batch(st, m.value, live=False)
                    st.incidents.take_output()  # already emitted by the previous owner
                    replayed += 1
        finally:
            await c.stop()
    st.dirty.clear()
    await reconcile_incidents(stage, p, st)
    log.info("partition %d: state rebuilt from %d batches in %.2fs (clock %d)",
             p, replayed, time.monotonic() - started, st.clock)
    return st


async def reconcile_incidents(stage: StateStage, p: int, st: PartitionState) -> None:
    """Make zw:incidents agree with the rebuilt state of partition p: a previous owner may have
    died between deciding an arrival and writing it. Open incidents are rewritten (keeping
    the dispatch recommendations Redis has: they are not in the log), and entries of this
    partition that are no longer open are closed."""
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
        inc = st.incidents.incidents.get(cid)
        if inc is not None:
            board[cid] = inc  # arrived meanwhile
        else:  # forgotten already: how it ended is no longer known here
            stage.pending_board.append({**doc, "status": "closed", "clock": st.clock})


async def restore_if_redis_lost(stage: StateStage, store: RedisStore, zone_ids: list[str], ingest) -> None:
    """A Redis restart without persistence or a FLUSHDB loses the zone documents and unit
    positions; the worker holds both, so it writes them again."""
    try:
        if await store.exists():
            return
    except Exception:
        return  # Redis unreachable: the writer's retries report it
    try:
        await store.register_zones(zone_ids)
    except Exception:
        return  # down again: the next check retries
    n_zones = stage.rewrite_all()
    n_units = await ingest.restore_positions() if ingest is not None else 0
    log.warning("Redis had lost the zone state (restart or flush): rewriting %d zones and %d unit "
                "positions held by this worker", n_zones, n_units)

