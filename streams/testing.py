"""The worker's real flow in-process, without Kafka or Redis (as bytewax's `testing.py` does).

    pipe = Pipeline(settings)
    pipe.feed(messages, batch=50)        # aiokafka-like records, in the order they are read
    pipe.finish()                        # the feeds go quiet: the watermark reaches the clock
    pipe = Pipeline(settings, ingests=3) # three workers' ingests (routers) feeding the same states:
    pipe.feed(messages, ingest=1)        # ingest 1 routes what it reads,
    pipe.wall += 1000; pipe.beat(2)      # a second later ingest 2 sends its heartbeat
    Pipeline(settings, keep_log=True).log[p]   # partition p's zone-events log, as applied
    pipe.documents(), pipe.sla, pipe.enriched, pipe.dead, pipe.router.positions
    pipe.duty, pipe.duty_documents()     # with ZONEWATCH_PLAN: duty.events, posts and checkpoints

Each batch goes through the same pieces as in the worker: the Router (validation, zones,
partitioning, the watermark marks), the zone-events records encoded and decoded as on the wire,
the partition states, the incidents stage's outputs, and the Arrival records fed back to the
zones' partitions. Only the transport is missing. Wall time is simulated (1 ms per batch, or as a
test moves `wall`), so a run is a pure function of the messages and their read order.
"""

from __future__ import annotations

from collections import namedtuple
from typing import cast

import orjson

from contract.settings import Settings
from contract.zones import load_zones

from . import records
from .routing import Router
from .state_stage import Held, StateStage
from .store import RedisStore
from .zone_index import ZoneIndex

Msg = namedtuple("Msg", "topic partition offset key value timestamp")


class _NoStore:
    async def current_versions(self, zone_ids):
        return {}


class Pipeline:
    def __init__(self, settings: Settings, zones=None, repeat: int = 1, wall0: int = 1_700_000_000_000,
                 reach_cells: bool = False, keep_log: bool = False, ingests: int = 1):
        self.s = settings
        zones = zones if zones is not None else load_zones(settings.zones, id_property=settings.zone_id_property)
        from .reach import zone_cells

        cells = {z.zone_id: zone_cells(z) for z in zones} if reach_cells else None
        index = ZoneIndex(zones, settings.h3_resolution)
        # one router per ingest (worker); each routes the input partitions a test hands it
        self.routers = [Router(settings, index, cells) for _ in range(ingests)]
        self.router = self.routers[0]
        # the stand-in has the one store call a pipeline without flushes reaches
        self.stage = StateStage(settings, zones, cast(RedisStore, _NoStore()), reach_cells=cells)
        for p in range(settings.partitions):
            self.stage.held[p] = Held(self.stage.new_state(p), generation=1)
        self.repeat = repeat     # deliver every zone-events message this many times (at-least-once)
        self.wall = wall0
        self.sla: list[dict] = []
        self.enriched: list[dict] = []
        # call_id -> beyond which the worker would add units from Redis (no Redis here)
        self.fallback: dict[str, float] = {}
        self.dead: list = []
        self.duty: list[dict] = []   # duty.events records, as sent (streams/duty.py)
        # keep_log: each partition's zone-events log as applied (offset = index), for takeovers
        # (streams/recovery.py)
        self.log: dict[int, list[bytes]] | None = {p: [] for p in range(settings.partitions)} if keep_log else None

    @property
    def states(self):
        return self.stage.states

    def feed(self, messages, batch: int = 50, ingest: int = 0) -> None:
        router = self.routers[ingest]
        messages = list(messages)
        for i in range(0, len(messages), batch):
            self.wall += 1
            prev = router.clock
            out, dead, _rejected, _positions = router.route(messages[i:i + batch], self.wall)
            self.dead.extend(dead)
            self._deliver(router.zone_events(out, prev, self.wall))   # as ingest sends them

    def beat(self, ingest: int = 0) -> None:
        """An ingest's heartbeat at the current wall time (it routed nothing for a second)."""
        router = self.routers[ingest]
        self._deliver(router.zone_events({}, router.clock, self.wall))

    def finish(self, quiet_ms: int = 3_600_000) -> None:
        """Every feed goes quiet: wall time passes (the ingests' heartbeats say so), the watermark
        reaches the stream clock and every decision due by then is made."""
        self.wall += quiet_ms
        for ingest in range(len(self.routers)):
            self.beat(ingest)

    def applied(self, p: int, value: bytes) -> None:
        """Apply one zone-events message to partition p, as its owner does (and log it)."""
        self.stage.apply_batch(self.stage.held[p].state, value)
        if self.log is not None:
            log = self.log[p]
            log.append(value)
            self.stage.applied(p, len(log) - 1)

    def _deliver(self, payloads: dict[int, list[bytes]]) -> None:
        while True:
            feedback: dict[int, list[bytes]] = {}
            for p, values in payloads.items():
                for value in values:
                    for _ in range(self.repeat):
                        self.applied(p, value)
            for h in self.stage.held.values():
                enriched, sla, arrivals = self.stage.take_outputs(h.state)
                fallback = h.state.incidents.take_fallback()
                self.fallback.update(fallback)
                for call_id in fallback:   # as the worker does once Redis has answered
                    h.state.incidents.touch(call_id)
                # as sent (the state keeps changing its record objects: corroboration, recommendation)
                self.enriched.extend(orjson.loads(orjson.dumps(r)) for r in enriched)
                self.sla.extend(sla)
                if h.state.duty is not None:
                    self.duty.extend(h.state.duty.take_events())
                for q, recs in arrivals.items():
                    feedback.setdefault(q, []).append(records.encode(h.state.clock, recs, None, self.wall))
            # no flush here: drop the e2e observations the flusher would take (they only grow)
            for observed in self.stage.pending_e2e.values():
                observed.clear()
            if not feedback:
                return
            payloads = feedback

    def documents(self) -> dict[str, dict]:
        """Every zone's current document (as a full rewrite would write it)."""
        docs = {}
        for h in self.stage.held.values():
            h.state.rewrite_all()
            for doc in h.state.changed_documents(all_zones=True, refresh_clock=True):
                docs[doc["zone_id"]] = doc
        return docs

    def daily(self) -> dict[str, dict]:
        """zones.daily records now due ("{date}|{zone_id}" -> record), as the worker emits them."""
        out = {}
        for h in self.stage.held.values():
            docs = h.state.daily_docs(self.s.grace_ms)
            h.state.daily_taken(docs)
            out.update({f"{date}|{zid}": doc for date, zid, doc in docs})
        return out

    def timelines(self) -> dict[str, dict]:
        """Incident timelines changed since the last call (zw:incident:{call_id})."""
        out = {}
        for p, h in self.stage.held.items():
            inc = h.state.incidents
            inc.take_board()
            out.update({cid: inc.timeline_doc(i, p) for cid, i in inc.take_timelines().items()})
        return out

    def duty_documents(self) -> tuple[dict[str, dict], dict[str, dict], dict | None]:
        """Every post's and checkpoint's current document (zw:post:{id}, zw:checkpoint:{id}, without
        versions) and the phase in force (partition 0's)."""
        posts, cps, phase = {}, {}, None
        for p, h in self.stage.held.items():
            duty = h.state.duty
            if duty is None:
                continue
            posts.update({pid: duty.post_doc(ps) for pid, ps in duty.posts.items()})
            cps.update({cid: duty.checkpoint_doc(cs) for cid, cs in duty.cps.items()})
            if p == 0:
                phase = duty.phase_doc()
        return posts, cps, phase

    def presence(self) -> dict[str, set[str]]:
        """unit -> zones it is present in, over every partition."""
        out: dict[str, set[str]] = {}
        for h in self.stage.held.values():
            st = h.state
            for zid, agg in st.zones.items():
                for unit, (ts, _status, _force) in agg.units.items():
                    if ts >= st.clock - st.unit_stale_ms:
                        out.setdefault(unit, set()).add(zid)
        return out
