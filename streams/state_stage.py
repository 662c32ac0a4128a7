"""Stage 2, the I/O around the pure states: zone-events batches -> PartitionStates -> Redis.

Holds the `PartitionState` (streams/zone_state.py, with its `IncidentState`) of every assigned
zone-events partition: applies the batches the agent hands it, moves the watermark, collects what
the incidents stage decided, takes snapshots, and flushes changed zone documents and incident
entries to the Redis store under the partition's owner generation (streams/store.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contract import metrics as metric_names
from contract.response import CORROBORATION_WINDOW_MS
from contract.settings import Settings

from . import duty, metrics, records
from .partitioning import zone_partitions
from .records import Arrival
from .rules import load_rules
from .store import RedisStore
from .watermark import Watermark
from .zone_state import PartitionState

log = logging.getLogger("zonewatch.state")

HEARTBEAT_S = 10.0
SNAPSHOT_ZLIB = b"z"   # first byte of a compressed snapshot value
_snap_encoder = msgspec.msgpack.Encoder()


@dataclass
class Held:
    """One assigned partition: its state and what ownership and recovery need to know."""
    state: PartitionState
    generation: int = 0                  # owner generation in zw:fence (0: not written yet)
    applied_upto: int = 0                # zone-events offsets below this are in the state
    floor: int = 0                       # the first offset of the log this state has seen
    checkpoints: deque = field(default_factory=deque)  # (offset after, clock) per applied batch
    last_snapshot: float = 0.0
    snapshot_offset: int = -1            # applied_upto of the last snapshot written
    snapshot_wm: int = -1                # and the watermark it carried
    sealed_written: set = field(default_factory=set)   # dedup hours already in the snapshots topic
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class StateStage:
    """The PartitionState of every assigned zone-events partition, applied to and flushed."""

    def __init__(self, settings: Settings, zones, store: RedisStore, reach_cells: dict | None = None):
        self.s = settings
        self.reach_cells = reach_cells if reach_cells is not None else {}  # zone id -> ZoneCells (shared)
        self.rules = load_rules(settings.rules)
        self.store = store
        self.zone_part = zone_partitions(zones, settings.partitions)
        self.zones_of: dict[int, list] = {p: [] for p in range(settings.partitions)}
        for z in zones:
            self.zones_of[self.zone_part[z.zone_id]].append(z)
        self.held: dict[int, Held] = {}
        self.flushed_clock: dict[int, int] = {}
        self.last_heartbeat: dict[int, float] = {}
        self.pending_e2e: dict[str, list[float]] = {src: [] for src in metric_names.SOURCES}
        self.events_applied = 0
        self.pending_board: dict[int, list[dict]] = {}   # incident entries not held by any state
        self.wake = asyncio.Event()
        # awaited with (documents as JSON, zone ids) after each write (the zones.state topic)
        self.on_written: Callable[[list[bytes], list[str]], Awaitable[None]] | None = None
        # called with the partitions a write found owned by another worker (after they are dropped)
        self.on_fenced: Callable[[set[int]], None] | None = None
        # the look-back a snapshot's state needs rebuilt: alerts for corroboration, fixes for
        # arrivals and dispatch recommendations (the staleness bound before a call)
        self.lookback_ms = settings.grace_ms + max(CORROBORATION_WINDOW_MS, settings.unit_stale_ms)
        self.last_wall = 0   # wall time of the batch applied last (carried by the arrival records it causes)
        self.redis_run_id: str | None = None   # the Redis server last written to (streams/recovery.py)
        # the duty plan's posts and checkpoints per partition, when there is a plan (streams/duty.py)
        self.duty = duty.DutyPlan(settings, zones, self.zone_part)

    @property
    def states(self) -> dict[int, PartitionState]:
        return {p: h.state for p, h in self.held.items()}

    def new_state(self, p: int) -> PartitionState:
        st = PartitionState(self.zones_of[p], tz=self.s.tz, rules=self.rules,
                            unit_stale_ms=self.s.unit_stale_ms, grace_ms=self.s.grace_ms,
                            camera_silent_ms=self.s.camera_silent_ms,
                            reach_cells=self.reach_cells)  # built once for all partitions (geocache)
        st.watermark = Watermark(self.s.watermark_idle_ms, self.s.watermark_max_lag_ms)
        self.duty.attach(st, p)
        return st

    # -- applying -------------------------------------------------------------------------------
    def apply_batch(self, st: PartitionState, value: bytes, live: bool = True) -> None:
        """Apply one zone-events message; `live=False` replays (no metrics, no e2e). The
        watermark moves on the marks and the wall time the batch carries (streams/watermark.py),
        so replays decide the same."""
        batch = records.decode(value)
        st.watermark.observe(batch.gps, batch.wall)
        recs = batch.events
        self.last_wall = batch.wall
        clock = max(st.clock, batch.clock)
        if not live:
            st.apply_all(recs)
            st.advance_clock(clock, st.watermark.value(clock))
            return
        counts: dict[tuple[str, str], int] = {}
        ages: dict[str, list[float]] = {}
        pending = self.pending_e2e
        source = records.SOURCE
        rec: Any  # a zone event wherever fresh is not None (apply's result), the fields read below
        for rec, fresh in zip(recs, st.apply_all(recs), strict=True):
            if fresh is None or not rec.primary:
                continue
            src = source[type(rec)]
            key = (src, "accepted" if fresh else "duplicate")
            counts[key] = counts.get(key, 0) + 1
            if fresh:
                ages.setdefault(src, []).append((clock - rec.ts) / 1000.0)
                if rec.zones:  # one observation per event, not per copy
                    pending[src].append(rec.kafka_ts)
        st.advance_clock(clock, st.watermark.value(clock))
        self.events_applied += len(recs)
        self.wake.set()
        for (src, outcome), n in counts.items():
            metrics.EVENTS.labels(src, outcome).inc(n)
        for src, vals in ages.items():
            metrics.observe_many(metrics.AGE.labels(src), vals)

    def applied(self, p: int, offset: int) -> None:
        """Bookkeeping after message `offset` of partition p was applied (for snapshots)."""
        h = self.held[p]
        h.applied_upto = offset + 1
        h.checkpoints.append((offset + 1, h.state.clock))
        # keep the checkpoints that can still be a look-back start, and one before them
        horizon = h.state.clock - self.lookback_ms
        cps = h.checkpoints
        while len(cps) > 1 and cps[1][1] < horizon:
            cps.popleft()
        while len(cps) > 10_000:  # bound memory on a clock that stands still
            cps.popleft()

    def tick(self) -> list[int]:
        """The partitions whose states have new outputs."""
        out = []
        for p, h in self.held.items():
            st = h.state
            if st.incidents.out or st.incidents.changed_records:
                out.append(p)
        return out

    def take_outputs(self, st: PartitionState) -> tuple[list, list, dict[int, list]]:
        """What the incidents stage of a partition decided since the last call: enriched
        records, SLA events, and arrival records for the zone partitions of each call's zones."""
        enriched: list = []
        sla: list = []
        arrivals: dict[int, list] = {}
        for what, item in st.incidents.take_output():
            if what == "enriched":
                enriched.append(item)
            elif what == "sla":
                sla.append(item)
            else:
                call_id, call_ts, zones, response_s, unit = item
                by_part: dict[int, list] = {}
                for zid in zones:
                    by_part.setdefault(self.zone_part[zid], []).append(zid)
                for q, zl in by_part.items():
                    arrivals.setdefault(q, []).append(Arrival(call_id, call_ts, zl, response_s, unit))
        self.duty.take_notes(st, arrivals)   # posts' statuses for their zones' partitions, as arrivals go
        return enriched, sla, arrivals

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot_due(self, p: int, now: float | None = None) -> bool:
        """Time for a snapshot of p: the interval passed and it applied or decided something."""
        h = self.held.get(p)
        return h is not None and h.generation > 0 \
            and (time.monotonic() if now is None else now) - h.last_snapshot >= self.s.snapshot_interval_ms / 1000.0 \
            and (h.applied_upto != h.snapshot_offset or h.state.wm != h.snapshot_wm)

    def snapshot(self, p: int) -> list[tuple[bytes, bytes | None]]:
        """(key, value) records for the snapshots topic that make partition p's state at
        `applied_upto` recoverable: sealed dedup hours not written yet, tombstones for hours
        that left the horizon, then the state. The caller sends them in this order."""
        h = self.held[p]
        st = h.state
        h.last_snapshot = time.monotonic()
        h.snapshot_offset, h.snapshot_wm = h.applied_upto, st.wm
        out: list[tuple[bytes, bytes | None]] = []
        for hour, arr in st.seen.sealed.items():
            if hour not in h.sealed_written:
                out.append((f"{p}/seen/{hour}".encode(), arr.tobytes()))
                h.sealed_written.add(hour)
        for hour in [x for x in h.sealed_written if x not in st.seen.sealed]:
            out.append((f"{p}/seen/{hour}".encode(), None))
            h.sealed_written.discard(hour)
        horizon = st.clock - self.lookback_ms
        lookback = h.floor
        for offset, clock in h.checkpoints:
            if clock < horizon:
                lookback = max(lookback, offset)
            else:
                break
        # zlib level 1: a district partition's state shrinks several times for a few milliseconds
        value = SNAPSHOT_ZLIB + zlib.compress(_snap_encoder.encode(
            {"v": 1, "offset": h.applied_upto, "lookback": lookback, "floor": h.floor, "state": st.snapshot()}), 1)
        out.append((f"{p}/state".encode(), value))
        metrics.SNAPSHOT_BYTES.set(len(value))
        return out

    # -- ownership --------------------------------------------------------------------------------
    def drop(self, partitions) -> None:
        for p in partitions:
            self.held.pop(p, None)
            self.flushed_clock.pop(p, None)
            self.last_heartbeat.pop(p, None)

    def rewrite_all(self) -> int:
        """Make the next flush write every zone of every held partition (Redis lost them)."""
        n = 0
        for h in self.held.values():
            n += h.state.rewrite_all()
            for inc in h.state.incidents.open_incidents():
                h.state.incidents.board[inc.call_id] = inc
        self.wake.set()
        return n

    # -- writing ------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write every changed zone document and incident entry in one atomic call."""
        parts = []
        now = time.monotonic()
        for p, h in list(self.held.items()):
            if not h.generation:
                continue  # still recovering
            st = h.state
            moved = st.clock != self.flushed_clock.get(p)
            # Clock-only rewrites (figures unchanged) when input pauses, and as a heartbeat for
            # wall displays at most every HEARTBEAT_S during a busy stream.
            heartbeat = now - self.last_heartbeat.get(p, 0.0) >= HEARTBEAT_S
            refresh = not moved or heartbeat
            if refresh:
                self.last_heartbeat[p] = now
            docs = st.changed_documents(all_zones=moved, refresh_clock=refresh)
            duty_docs = self.duty.documents(st)   # the duty plan's posts, checkpoints, phase (duty.py)
            self.flushed_clock[p] = st.clock
            board = [st.incidents.board_doc(inc, p) for inc in st.incidents.take_board().values()]
            board += self.pending_board.pop(p, [])
            timelines = [st.incidents.timeline_doc(inc, p) for inc in st.incidents.take_timelines().values()]
            if docs or board or timelines or duty_docs:
                parts.append((p, h.generation, docs, board, timelines, duty_docs))
        pending = self.pending_e2e
        self.pending_e2e = {src: [] for src in metric_names.SOURCES}
        if not parts:
            return
        encoded, ids, fenced = await self.store.write(parts)
        if fenced:
            log.warning("partitions %s are owned by another worker now (fenced): dropping them", sorted(fenced))
            metrics.FENCED.inc(len(fenced))
            self.drop(fenced)
            if self.on_fenced is not None:
                self.on_fenced(fenced)
        now_ms = time.time() * 1000
        for src, kts in pending.items():
            if kts:
                metrics.observe_many(metrics.E2E.labels(src), [(now_ms - t) / 1000.0 for t in kts])
        if encoded and self.on_written is not None:
            await self.on_written(encoded, ids)
