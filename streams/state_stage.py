"""Stage 2, the I/O around the pure states: zone-events batches -> PartitionStates -> Redis.

Holds the `PartitionState` (streams/zone_state.py, with its `IncidentState`) of every assigned
zone-events partition, applies the batches the agent hands it, collects what the incidents
stage decided, and flushes changed zone documents and incident entries to the Redis store.
"""

from __future__ import annotations

import asyncio
import time

from contract.settings import Settings

from . import metrics, records
from .partitioning import partition_of
from .records import Arrival
from .rules import load_rules
from .store import RedisStore
from .zone_state import PartitionState

HEARTBEAT_S = 10.0


class StateStage:
    """The PartitionState of every assigned zone-events partition, applied to and flushed."""

    def __init__(self, settings: Settings, zones, store: RedisStore):
        self.s = settings
        self.rules = load_rules(settings.rules)
        self.store = store
        self.zones_of: dict[int, list] = {p: [] for p in range(settings.partitions)}
        for z in zones:
            self.zones_of[partition_of(z.zone_id, settings.partitions)].append(z)
        self.states: dict[int, PartitionState] = {}
        self.flushed_clock: dict[int, int] = {}
        self.last_heartbeat: dict[int, float] = {}
        self.pending_e2e: dict[str, list[float]] = {"calls": [], "gps": [], "alerts": []}
        self.events_applied = 0
        self.pending_board: list[dict] = []   # incident entries not held by any state
        self.wake = asyncio.Event()
        # awaited with (documents as JSON, zone ids) after each write (the zones.state topic)
        self.on_written = None

    def new_state(self, p: int) -> PartitionState:
        return PartitionState(self.zones_of[p], tz=self.s.tz, rules=self.rules,
                              unit_stale_ms=self.s.unit_stale_ms)

    def apply_batch(self, st: PartitionState, value: bytes, live: bool = True) -> None:
        """Apply one zone-events message; `live=False` replays (no metrics, no e2e)."""
        batch = records.decode(value)
        recs = batch.events
        if not live:
            for rec in recs:
                st.apply(rec)
            st.advance_clock(batch.clock)
            return
        counts: dict[tuple[str, str], int] = {}
        ages: dict[str, list[float]] = {}
        pending = self.pending_e2e
        source = records.SOURCE
        clock = max(st.clock, batch.clock)
        for rec in recs:
            fresh = st.apply(rec)
            if fresh is None or not rec.primary:
                continue
            src = source[type(rec)]
            key = (src, "accepted" if fresh else "duplicate")
            counts[key] = counts.get(key, 0) + 1
            if fresh:
                ages.setdefault(src, []).append((clock - rec.ts) / 1000.0)
                if rec.zones:  # one observation per event, not per copy
                    pending[src].append(rec.kafka_ts)
        st.advance_clock(batch.clock)
        self.events_applied += len(recs)
        self.wake.set()
        for (src, outcome), n in counts.items():
            metrics.EVENTS.labels(src, outcome).inc(n)
        for src, vals in ages.items():
            metrics.observe_many(metrics.AGE.labels(src), vals)

    def take_outputs(self, st: PartitionState) -> tuple[list, list, dict[int, list]]:
        """What the incidents stage of a partition decided since the last call: enriched
        records, SLA events, and arrival records for the zone partitions of each call's zones."""
        enriched, sla, arrivals = [], [], {}
        for what, item in st.incidents.take_output():
            if what == "enriched":
                enriched.append(item)
            elif what == "sla":
                sla.append(item)
            else:
                call_id, call_ts, zones, response_s, unit = item
                by_part: dict[int, list] = {}
                for zid in zones:
                    by_part.setdefault(partition_of(zid, self.s.partitions), []).append(zid)
                for q, zl in by_part.items():
                    arrivals.setdefault(q, []).append(Arrival(call_id, call_ts, zl, response_s, unit))
        return enriched, sla, arrivals

    def drop(self, partitions) -> None:
        for p in partitions:
            self.states.pop(p, None)
            self.flushed_clock.pop(p, None)
            self.last_heartbeat.pop(p, None)

    def rewrite_all(self) -> int:
        """Make the next flush write every zone of every held partition (Redis lost them)."""
        n = 0
        for st in self.states.values():
            for zid, agg in st.zones.items():
                agg.last_figures = None
                st.dirty.add(zid)
                n += 1
            for inc in st.incidents.open_incidents():
                st.incidents.board[inc.call_id] = inc
        self.wake.set()
        return n

    async def flush(self) -> None:
        """Write every changed zone document and incident entry in one pipeline."""
        docs, board = [], []
        now = time.monotonic()
        for p, st in list(self.states.items()):
            moved = st.clock != self.flushed_clock.get(p)
            # Clock-only rewrites (figures unchanged) when input pauses, and as a heartbeat for
            # wall displays at most every HEARTBEAT_S during a busy stream.
            heartbeat = now - self.last_heartbeat.get(p, 0.0) >= HEARTBEAT_S
            refresh = not moved or heartbeat
            if refresh:
                self.last_heartbeat[p] = now
            docs.extend(st.changed_documents(all_zones=moved, refresh_clock=refresh))
            self.flushed_clock[p] = st.clock
            changed = st.incidents.take_board()
            if changed:
                board.extend(st.incidents.board_doc(inc, p) for inc in changed.values())
        if self.pending_board:
            board.extend(self.pending_board)
            self.pending_board = []
        pending = self.pending_e2e
        self.pending_e2e = {"calls": [], "gps": [], "alerts": []}
        if not docs and not board:
            return
        encoded, ids = await self.store.write(docs, board)
        now_ms = time.time() * 1000
        for src, kts in pending.items():
            if kts:
                metrics.observe_many(metrics.E2E.labels(src), [(now_ms - t) / 1000.0 for t in kts])
        if docs and self.on_written is not None:
            await self.on_written(encoded, ids)
