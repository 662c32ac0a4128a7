"""Stage 2, the I/O around the pure states: zone-events batches -> PartitionStates -> Redis.

Holds the `PartitionState` (streams/zone_state.py, with its `IncidentState`) of every assigned
zone-events partition: applies the batches the apply loop hands it (streams/ownership.py), moves
the watermark, collects what the incidents stage decided, takes snapshots, and flushes changed zone
documents and incident entries to the Redis store under the partition's owner generation
(streams/store.py).
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
from .partitioning import HomeMap, layout_version, zone_partitions
from .records import Arrival, DutyNote, Tiers
from .rules import load_rules
from .store import RedisStore
from .watermark import Watermark
from .zone_state import PartitionState

log = logging.getLogger("zonewatch.state")

HEARTBEAT_S = 10.0
#: the records of the state stage's own feedback batches (they follow the zone map only: no layout)
FEEDBACK = (Arrival, Tiers, DutyNote)
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


def compress_snapshot(encoded: bytes) -> bytes:
    """A snapshot's state value as the topic holds it. zlib level 1: a district partition's
    state shrinks several times for a few milliseconds."""
    value = SNAPSHOT_ZLIB + zlib.compress(encoded, 1)
    metrics.SNAPSHOT_BYTES.set(len(value))
    return value


class StateStage:
    """The PartitionState of every assigned zone-events partition, applied to and flushed."""

    def __init__(self, settings: Settings, zones, store: RedisStore, reach_cells: dict | None = None):
        self.s = settings
        self.reach_cells = reach_cells if reach_cells is not None else {}  # zone id -> ZoneCells (shared)
        self.rules = load_rules(settings.rules)
        self.store = store
        self.zone_part = zone_partitions(zones, settings.partitions)
        # the partitioning this worker's ingest routes by: a batch routed by another is noticed
        home_map = HomeMap(zones, settings.partitions)
        self.layout = layout_version(self.zone_part, home_map)
        self.foreign_layouts: set[int] = set()   # other layouts seen (logged once each)
        self.zones_of: dict[int, list] = {p: [] for p in range(settings.partitions)}
        for z in zones:
            self.zones_of[self.zone_part[z.zone_id]].append(z)
        self.held: dict[int, Held] = {}
        self.flushed_clock: dict[int, int] = {}
        self.last_heartbeat: dict[int, float] = {}
        self.pending_e2e: dict[str, list[float]] = {src: [] for src in metric_names.SOURCES}
        self.pending_flush: list[tuple[float, int]] = []   # (wall time applied, events) not yet written
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
        # the duty plan's posts and checkpoints per partition, when there is a plan (streams/duty.py),
        # owned by the partitions of their home cells as the router places them
        self.duty = duty.DutyPlan(settings, zones, self.zone_part, home_map)
        # zone id -> on-scene units required by 1, 3, 5 min: the plan's [[tiers]] (a pure function of
        # the zone id, the same on every worker reading the same plan), else None: 1/2/3 everywhere.
        # Here, before any partition state exists, so every maker of a stage (the worker, tests'
        # Pipeline, the benchmarks) judges tiers alike
        plan = self.duty.plan
        self.tier_requirement: Callable[[str], tuple[int, int, int]] | None = \
            plan.tier_requirement if plan is not None else None

    @property
    def states(self) -> dict[int, PartitionState]:
        return {p: h.state for p, h in self.held.items()}

    def new_state(self, p: int) -> PartitionState:
        st = PartitionState(self.zones_of[p], tz=self.s.tz, rules=self.rules,
                            unit_stale_ms=self.s.unit_stale_ms, grace_ms=self.s.grace_ms,
                            camera_silent_ms=self.s.camera_silent_ms, unit_forget_ms=self.s.unit_forget_ms,
                            reach_cells=self.reach_cells,  # built once for all partitions (geocache)
                            tier_requirement=self.tier_requirement)
        st.watermark = Watermark(self.s.watermark_idle_ms, self.s.watermark_max_lag_ms)
        self.duty.attach(st, p)
        return st

    # -- applying -------------------------------------------------------------------------------
    def apply_batch(self, st: PartitionState, value: bytes, live: bool = True) -> None:
        """Apply one zone-events message; `live=False` replays (no metrics, no e2e). The
        watermark moves on the marks and the wall time the batch carries (streams/watermark.py),
        so replays decide the same."""
        started = time.time()
        batch = records.decode(value)
        if batch.layout != self.layout:
            self.foreign_layout(batch.layout, batch.events)
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
        # stages "hop" (zone-events send to here) and "apply", per event of the batch; "flush" is
        # observed when the write that reflects them completes
        events = sum(counts.values())
        if events:
            applied = time.time()
            metrics.observe_weighted(metrics.STAGE.labels("hop"), max(0.0, started - batch.wall / 1000.0), events)
            metrics.observe_weighted(metrics.STAGE.labels("apply"), applied - started, events)
            self.pending_flush.append((applied, events))
        for (src, outcome), n in counts.items():
            metrics.EVENTS.labels(src, outcome).inc(n)
        for src, vals in ages.items():
            metrics.observe_many(metrics.AGE.labels(src), vals)

    def foreign_layout(self, layout: int, events: list | None = None) -> None:
        """A batch (or snapshot) routed by another partitioning than this worker's: another zones
        file or partition count, or an ingest from before home cells were geographic (layout 0).
        Its records are applied — they are valid — but calls here may lack fixes and alerts that
        went elsewhere (arrivals, dispatch, corroboration): counted and logged, not silent. The
        state stage's own feedback batches (arrivals, on-scene tiers, duty notes) carry no layout (they follow the
        zone map only)."""
        if events is not None and all(type(r) in FEEDBACK for r in events):
            return
        metrics.LAYOUT_MISMATCH.inc()
        if layout not in self.foreign_layouts:
            self.foreign_layouts.add(layout)
            log.error("batches routed by partitioning layout %d, this worker's is %d: every worker must "
                      "run with the same zones file and partition count (incidents may miss fixes until "
                      "they do)", layout, self.layout)

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
        records, SLA events, and arrival and tiers records for the zone partitions of each call's zones."""
        enriched: list = []
        sla: list = []
        arrivals: dict[int, list] = {}
        for what, item in st.incidents.take_output():
            if what == "enriched":
                enriched.append(item)
            elif what == "sla":
                sla.append(item)
            else:
                call_id, call_ts, zones, *decided = item
                by_part: dict[int, list] = {}
                for zid in zones:
                    by_part.setdefault(self.zone_part[zid], []).append(zid)
                for q, zl in by_part.items():
                    rec = Tiers(call_id, call_ts, zl, decided[0]) if what == "tiers" \
                        else Arrival(call_id, call_ts, zl, decided[0], decided[1])
                    arrivals.setdefault(q, []).append(rec)
        self.duty.take_notes(st, arrivals)   # posts' statuses for their zones' partitions, as arrivals go
        return enriched, sla, arrivals

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot_due(self, p: int, now: float | None = None) -> bool:
        """Time for a snapshot of p: the interval passed and it applied or decided something."""
        h = self.held.get(p)
        return h is not None and h.generation > 0 \
            and (time.monotonic() if now is None else now) - h.last_snapshot >= self.s.snapshot_interval_ms / 1000.0 \
            and (h.applied_upto != h.snapshot_offset or h.state.wm != h.snapshot_wm)

    def snapshot(self, p: int, compress: bool = True) -> list[tuple[bytes, bytes | None]]:
        """(key, value) records for the snapshots topic that make partition p's state at
        `applied_upto` recoverable: sealed dedup hours not written yet, tombstones for hours
        that left the horizon, then the state. The caller sends them in this order. With
        compress=False the state's value is left for `compress_snapshot` (off the event loop: zlib
        releases the GIL)."""
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
        value = _snap_encoder.encode(
            {"v": 1, "offset": h.applied_upto, "lookback": lookback, "floor": h.floor, "layout": self.layout,
             "state": st.snapshot()})
        out.append((f"{p}/state".encode(), compress_snapshot(value) if compress else value))
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
            if p not in self.last_heartbeat:
                # staggered: each partition's heartbeat rewrites all its zones, and several partitions'
                # heartbeats in one flush stalled the loop together
                self.last_heartbeat[p] = now - HEARTBEAT_S * (1.0 - p / max(1, self.s.partitions))
            heartbeat = now - self.last_heartbeat[p] >= HEARTBEAT_S
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
        applied, self.pending_flush = self.pending_flush, []
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
        flush_stage = metrics.STAGE.labels("flush")
        for at, n in applied:
            metrics.observe_weighted(flush_stage, now_ms / 1000.0 - at, n)
        for src, kts in pending.items():
            if kts:
                metrics.observe_many(metrics.E2E.labels(src), [(now_ms - t) / 1000.0 for t in kts])
        if encoded and self.on_written is not None:
            await self.on_written(encoded, ids)
