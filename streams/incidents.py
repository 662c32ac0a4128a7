"""Incidents and the 1-3-5 minute response (CONTRACT §3), corroboration (§4), per geo partition.

Pure and synchronous like zone_state: the worker feeds it records and collects what it emits.
Incidents are partitioned by geography, not by zone: a call belongs to the partition of its
"home" H3 cell (streams/partitioning.py); ingest sends every fix to the partitions of all home
cells within ARRIVAL_RADIUS_M of it and every alert to those within CORROBORATION_RADIUS_M, so
the partition of a call sees every fix and alert that can matter to it.

Decisions never flip. Arrival is decided by event time: fixes are kept for the grace (10 min of
stream clock) so a fix consumed before its call counts, and the earliest fix within reach is the
arrival *candidate*. A candidate becomes a decision (`sla.events` `arrived`, an `Arrival` record
for the zones) only once the watermark of `patrol.gps` (CONTRACT §3) has passed its `ts`: no fix
with an earlier `ts` can still come, whatever order the topics are read in. A breach is decided
when the watermark passes call ts + 300 s with no candidate at or before it, and is final; a
later arrival is recorded with its true response time. Expiry (60 min) is on the watermark too,
so a pending candidate is always decided before its incident is forgotten.

On-scene tiers (CONTRACT §3 v3) ride on the same look-back and the same links: every fix within
ARRIVAL_RADIUS_M of a call at a ts in [call ts, call ts + 300 s] puts its unit on scene at its
earliest such ts (the fixes held when the call comes, and those consumed after it), and the
counts by 60 / 180 / 300 s are decided once the watermark reaches call ts + 300 s: one `sla.events`
record of type `tiers` and a `Tiers` record for the zones. `met` in that record is against the
strictest requirement of the call's zones (per tier the largest of them: met in every zone); each
zone's `response.tiers_met` is against its own (streams/zone_state.py).

The dispatch recommendation (`nearest_units`) is decided the same way: once the watermark reaches
the call's ts, from the positions the units had at that ts — each unit's latest fix at or before
it, at most the staleness bound older, available — among the fixes held here (for the grace plus
that bound). Ingest sends every available fix to the partitions of the homes within
DISPATCH_EXACT_M of it, and a unit's next fix to those too (streams/routing.py), so within that
distance the partition holds every unit's position at the call's ts, whatever the read order or
the number of partitions. The record is sent at the call (with no units yet) and again when the
recommendation is decided; with fewer than MAX_RECOMMENDED units found within DISPATCH_EXACT_M, the
worker completes it with farther units from Redis at processing time (streams/dispatch.py,
`take_fallback`), as it does for a call consumed after the grace.
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from h3.api import basic_int as h3

from contract.events import UNIT_KINDS
from contract.response import (
    ARRIVAL_RADIUS_M,
    BREACH_AFTER_MS,
    CORROBORATION_RADIUS_M,
    CORROBORATION_WINDOW_MS,
    DEDUP_HORIZON_MS,
    DEFAULT_GRACE_MS,
    DISPATCH_EXACT_M,
    EARTH_RADIUS_M,
    EXPIRE_AFTER_MS,
    MAX_CORROBORATING,
    MAX_RECOMMENDED,
    TIER_NAMES,
    TIERS_DECIDED_MS,
    TIERS_S,
    UNIT_STALE_MS,
    default_tier_requirement,
    eta_s,
    haversine_m,
)

from .partitioning import DISK_K, covering_k

MINUTE_MS = 60_000
_KINDS = {k: k for k in UNIT_KINDS}   # one str object per kind in the held fixes


@dataclass
class Incident:
    call_id: str
    ts: int
    lat: float
    lon: float
    cell: int                        # fine H3 cell (int form)
    zones: list
    record: dict                     # the enriched record (without processed_at)
    consumed_late: bool = False      # consumed after the grace: fixes before that don't count
    arrival_ts: int | None = None    # the decided arrival (emitted)
    arrival_unit: str | None = None
    candidate: tuple | None = None   # (ts, unit) of the earliest fix within reach, not yet decided
    breached: bool = False
    recommended_at: int | None = None  # stream clock when its dispatch recommendation was decided
    completing: bool = False   # decided short: the worker is adding farther units from Redis (touch)
    alerts: dict = field(default_factory=dict)  # alert_id -> corroboration entry
    alerts_rank: dict = field(default_factory=dict)  # alert_id -> (|dt| ms, alert_id)
    worst: tuple | None = None
    # on-scene tiers: unit -> ts of its earliest fix within reach in [ts, ts + 300 s]; decided once
    on_scene: dict = field(default_factory=dict)
    tiers_decided: bool = False
    # where the timeline's map shows them (timeline_doc): alert_id -> [lat, lon] of its camera, and
    # unit_id -> [lat, lon, fix ts] of a recommended unit at the call's ts (the exact part only)
    alert_at: dict = field(default_factory=dict)
    unit_at: dict = field(default_factory=dict)
    # where it stands in the reach indexes (_Reach, _CallsNear): a tie-breaker unique in the state,
    # and the arrival key it is filed under in _Reach (None: filed as not reached)
    seq: int = 0
    reach_key: int | None = None
    squares: list = field(default_factory=list)  # the _Reach squares it is filed in (until settled or forgotten)

    def best(self) -> int | None:
        """ts of the earliest known arrival fix, decided or not."""
        c = self.candidate[0] if self.candidate else None
        a = self.arrival_ts
        return a if c is None else c if a is None else min(a, c)


_LAST = float("inf")   # a tie-breaker above every seq: bisect past every entry of one key
# The grid a fix finds the calls it may reach in (_Reach): squares of 0.001 deg (~111 m of latitude),
# so a call is filed in 6-12 squares around it (as many as the 7 fine H3 cells it was filed in
# before: a sparse city pays no more) and a fix meets only the calls within ~250 m of it, not
# those of a fine cell's whole 1-disk (~500 m across).
REACH_STEP_DEG = 0.001
_LON_SQUARES = 360_000     # 360 / REACH_STEP_DEG: a square's key wraps at the antimeridian
POLAR_LAT = 85.0           # calls this close to a pole share one key (no square grid there)
_POLAR = -1


def reach_square(lat: float, lon: float) -> int:
    """The key of the grid square holding a point."""
    return math.floor(lat / REACH_STEP_DEG) * _LON_SQUARES + math.floor(lon / REACH_STEP_DEG) % _LON_SQUARES


def reach_squares(lat: float, lon: float, radius_m: float) -> list[int]:
    """Keys of every square holding a point within radius_m of (lat, lon) by haversine_m (a superset):
    such a point has |dlat| <= r/R and |sin(dlon/2)| <= sin(r/2R) / sqrt(cos lat cos lat'), lat' at
    most r/R further from the equator; 1 % and a square of margin for rounding."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    if abs(lat) + dlat >= POLAR_LAT:
        return [_POLAR]
    cos_far = math.cos(math.radians(abs(lat) + dlat))
    s = math.sin(radius_m / (2 * EARTH_RADIUS_M)) / math.sqrt(math.cos(math.radians(lat)) * cos_far)
    dlon = math.degrees(2 * math.asin(min(1.0, s))) * 1.01
    lat_lo, lat_hi = math.floor((lat - dlat) / REACH_STEP_DEG), math.floor((lat + dlat) / REACH_STEP_DEG)
    lon_lo, lon_hi = math.floor((lon - dlon) / REACH_STEP_DEG), math.floor((lon + dlon) / REACH_STEP_DEG)
    if lon - dlon < -180.0 or lon + dlon > 180.0:
        lon_lo, lon_hi = lon_lo - 1, lon_hi + 1   # across the antimeridian: a wrapped floor may round
    return [i * _LON_SQUARES + j % _LON_SQUARES for i in range(lat_lo, lat_hi + 1) for j in range(lon_lo, lon_hi + 1)]


class _Reach:
    """The incidents within ARRIVAL_RADIUS_M of one grid square (reach_squares) that a fix there may
    still decide, by event time, so a fix touches only those (a dense cell holds thousands of open calls).

    A fix at `ts` can change an incident only when `inc.ts <= ts` and either `ts <= best` (an earlier
    arrival candidate, or the same ts from a unit sorting first) or its tiers are open and
    `ts <= inc.ts + TIERS_DECIDED_MS` (a unit on scene earlier). Entries are (key, seq, incident)
    sorted by key: `open` keyed by call ts (no candidate yet), `reached` by best (an earlier fix
    read later still fits), `tiers` by call ts (tiers not decided)."""

    __slots__ = ("open", "reached", "tiers")

    def __init__(self) -> None:
        self.open: list[tuple[int, int, Incident]] = []
        self.reached: list[tuple[int, int, Incident]] = []
        self.tiers: list[tuple[int, int, Incident]] = []

    def __bool__(self) -> bool:
        return bool(self.open or self.reached or self.tiers)

    @classmethod
    def union(cls, a: _Reach, b: _Reach) -> _Reach:
        """Both squares' incidents (an incident is filed in one of them only: _POLAR or squares)."""
        out = cls()
        out.open, out.reached, out.tiers = (sorted(x + y) for x, y in
                                            ((a.open, b.open), (a.reached, b.reached), (a.tiers, b.tiers)))
        return out

    def add(self, inc: Incident) -> None:
        if inc.reach_key is None:
            insort(self.open, (inc.ts, inc.seq, inc))
        else:
            insort(self.reached, (inc.reach_key, inc.seq, inc))
        if not inc.tiers_decided:
            insort(self.tiers, (inc.ts, inc.seq, inc))

    def remove(self, inc: Incident) -> None:
        if inc.reach_key is None:
            _drop(self.open, inc.ts, inc)
        else:
            _drop(self.reached, inc.reach_key, inc)
        _drop(self.tiers, inc.ts, inc)

    def refile(self, inc: Incident, old_key: int | None, new_key: int) -> None:
        """Its best moved from old_key (None: not reached) to new_key."""
        if old_key is None:
            _drop(self.open, inc.ts, inc)
        else:
            _drop(self.reached, old_key, inc)
        insort(self.reached, (new_key, inc.seq, inc))

    def arrival_hits(self, ts: int) -> list[Incident]:
        """Incidents with `inc.ts <= ts < inc.ts + EXPIRE_AFTER_MS` and no best or `best >= ts`."""
        lst = self.open
        hits = [e[2] for e in lst[bisect_left(lst, (ts - EXPIRE_AFTER_MS + 1,)):bisect_right(lst, (ts, _LAST))]]
        lst = self.reached
        hits.extend(e[2] for e in lst[bisect_left(lst, (ts,)):] if e[2].ts <= ts)
        return hits

    def tier_hits(self, ts: int) -> list[Incident]:
        """Incidents with tiers open and `inc.ts <= ts <= inc.ts + TIERS_DECIDED_MS`."""
        lst = self.tiers
        return [e[2] for e in lst[bisect_left(lst, (ts - TIERS_DECIDED_MS,)):bisect_right(lst, (ts, _LAST))]]


def _drop(lst: list[tuple[int, int, Incident]], key: int, inc: Incident) -> None:
    """Take (key, inc.seq, inc) out of a sorted list, if there."""
    i = bisect_left(lst, (key, inc.seq))
    if i < len(lst) and lst[i][2] is inc:
        del lst[i]


class IncidentState:
    """Open incidents, the fix and alert look-back, and the decision timers of one partition."""

    def __init__(self, grace_ms: int = DEFAULT_GRACE_MS, arrival_radius_m: float = ARRIVAL_RADIUS_M,
                 unit_stale_ms: int = UNIT_STALE_MS,
                 tier_requirement: Callable[[str], tuple[int, int, int]] | None = None):
        self.grace_ms = grace_ms
        # zone id -> units required on scene by 1, 3, 5 minutes (a plan's [[tiers]], CONTRACT §10)
        self.tier_requirement = tier_requirement or default_tier_requirement
        self.radius = arrival_radius_m
        self.stale_ms = unit_stale_ms
        self.clock = 0
        self.wm = 0                                    # watermark of patrol.gps (<= clock)
        self.incidents: dict[str, Incident] = {}
        self.near: dict[int, _Reach] = {}      # grid square (reach_squares) -> incidents within reach
        # fine cell -> (call ts, seq, incident) sorted: incidents still collecting corroboration whose
        # call lies within the corroboration reach of the cell (an alert looks up its own cell only,
        # and only the calls within CORROBORATION_WINDOW_MS of its ts)
        self.calls_near: dict[int, list[tuple[int, int, Incident]]] = {}
        self._seq = itertools.count(1)
        self.clock_timers: list[tuple[int, str, str]] = []  # (due, uncorr|settle, call_id)
        self.wm_timers: list[tuple[int, str, str]] = []     # (due, arrive|breach|expire, call_id)
        self.seen_calls: dict[str, int] = {}           # call_id -> ts, for DEDUP_HORIZON_MS
        # Fixes held for the grace plus the staleness bound: minute -> fine cell -> [(ts, unit, lat,
        # lon, kind if available else None)], and the same tuples by minute -> unit
        self.fixes: dict[int, dict[int, list]] = {}
        self.fixes_by_unit: dict[int, dict[str, list]] = {}
        self.keep_from = -grace_ms - unit_stale_ms     # fixes older than this are not held
        self.rec_pending: list[tuple[int, str]] = []  # (call ts, call_id): recommendations not decided
        self._names: dict[str, str] = {}               # unit ids, one str object each
        # call_id -> distance beyond which the processing-time lookup may add units (decided with
        # fewer than MAX_RECOMMENDED), until take_fallback
        self.fallback: dict[str, float] = {}
        self.alerts: dict[int, dict[int, list]] = {}   # minute -> fine cell -> [(ts, id, type, lat, lon)]
        self.seen_alerts: set[str] = set()
        # ("enriched", rec) | ("sla", ev) | ("arrival", ...) | ("tiers", ...)
        self.out: list[tuple[str, object]] = []
        self.changed_records: dict[str, Incident] = {}
        self._calls_pruned = 0
        # incidents whose wall entry (board_doc) changed since the last take_board
        self.board: dict[str, Incident] = {}
        # incidents whose timeline (timeline_doc) changed since the last take_timelines
        self.timelines: dict[str, Incident] = {}

    # -- input -----------------------------------------------------------------------------
    def on_call(self, call_id: str, ts: int, lat: float, lon: float, cell: int, zones: list,
                record: dict) -> None:
        if call_id in self.seen_calls:
            return  # duplicate call
        self.seen_calls[call_id] = ts
        inc = Incident(call_id, ts, lat, lon, cell, zones, record,
                       consumed_late=self.clock - ts > self.grace_ms)
        self._link(inc)
        # corroborating alerts already seen (up to 10 min before the call)
        for m in range((ts - CORROBORATION_WINDOW_MS) // MINUTE_MS, (ts + CORROBORATION_WINDOW_MS) // MINUTE_MS + 1):
            by_cell = self.alerts.get(m)
            if not by_cell:
                continue
            for c in h3.grid_disk(cell, DISK_K[CORROBORATION_RADIUS_M]):
                for a in by_cell.get(c, ()):
                    self._corroborate(inc, *a)
        if inc.consumed_late:
            self._recommend_late(inc)
        elif self.wm >= ts:
            self._recommend(inc)  # the watermark has reached the call already (a late call)
        self._finish_record(inc)
        self.changed_records.pop(call_id, None)
        self.out.append(("enriched", inc.record))
        self.board[call_id] = inc
        if not inc.consumed_late:
            # earliest fix at or after the call, within reach, among those kept (the grace);
            # every stored minute from the call's on, whatever the clock says
            best = None
            first = ts // MINUTE_MS
            tiers_end = ts + TIERS_DECIDED_MS
            on_scene = inc.on_scene
            disk = h3.grid_disk(cell, DISK_K[ARRIVAL_RADIUS_M])
            for m, by_cell in self.fixes.items():
                if m < first:
                    continue
                for c in disk:
                    for fts, unit, flat, flon, _kind in by_cell.get(c, ()):
                        if not ts <= fts < ts + EXPIRE_AFTER_MS:
                            continue
                        on_tier = fts <= tiers_end and on_scene.get(unit, tiers_end + 1) > fts
                        if (on_tier or best is None or (fts, unit) < best) \
                                and haversine_m(lat, lon, flat, flon) <= self.radius:
                            if best is None or (fts, unit) < best:
                                best = (fts, unit)
                            if on_tier:
                                on_scene[unit] = fts
            if best is not None:
                self._candidate(inc, best[0], best[1])

    def on_fix(self, unit: str, ts: int, lat: float, lon: float, cell: int, available: bool = False,
               kind: str = "") -> None:
        self.keep_fix(unit, ts, lat, lon, cell, available, kind)
        near = self.near.get(reach_square(lat, lon))
        if abs(lat) > POLAR_LAT - 0.01 and _POLAR in self.near:   # 0.01 deg: far more than twice the radius
            near = self.near[_POLAR] if not near else _Reach.union(near, self.near[_POLAR])
        if not near:
            return
        # only the incidents this fix can decide (_Reach), each once: an incident with tiers open is
        # among the arrival hits too when ts <= its best, so the tier hits skip those, and those
        # with this unit on scene at ts or before (a dense cell's crowd of calls, met again and again
        # by the units patrolling it: one dict look-up each)
        hits = near.arrival_hits(ts)
        for inc in near.tier_hits(ts):
            if inc.reach_key is not None and inc.reach_key < ts and inc.on_scene.get(unit, ts + 1) > ts:
                hits.append(inc)
        for inc in hits:
            if inc.ts <= ts < inc.ts + EXPIRE_AFTER_MS and inc.call_id in self.incidents:
                best = inc.best()
                earlier = best is None or ts < best or (ts == best and inc.candidate is not None
                                                        and unit < inc.candidate[1])
                on_tier = not inc.tiers_decided and ts <= inc.ts + TIERS_DECIDED_MS \
                    and inc.on_scene.get(unit, ts + 1) > ts
                if (earlier or on_tier) and haversine_m(inc.lat, inc.lon, lat, lon) <= self.radius:
                    if on_tier:
                        inc.on_scene[self._names.setdefault(unit, unit)] = ts
                    if earlier:
                        self._candidate(inc, ts, unit)

    def keep_fix(self, unit: str, ts: int, lat: float, lon: float, cell: int, available: bool = False,
                 kind: str = "") -> None:
        """Hold a fix for the look-back and the recommendations (also used alone when a snapshot's
        look-back is rebuilt)."""
        if ts >= self.keep_from:
            unit = self._names.setdefault(unit, unit)
            fix = (ts, unit, lat, lon, _KINDS.get(kind, kind) if available else None)
            m = ts // MINUTE_MS
            by_cell = self.fixes.get(m)
            if by_cell is None:
                by_cell = self.fixes[m] = {}
                by_unit = self.fixes_by_unit[m] = {}
            else:
                by_unit = self.fixes_by_unit[m]
            lst = by_cell.get(cell)
            if lst is None:
                by_cell[cell] = [fix]
            else:
                lst.append(fix)
            lst = by_unit.get(unit)
            if lst is None:
                by_unit[unit] = [fix]
            else:
                lst.append(fix)

    def on_alert(self, alert_id: str, ts: int, typ: str, lat: float, lon: float, cell: int) -> None:
        entry = (ts, alert_id, typ, lat, lon)
        if not self.keep_alert(alert_id, ts, typ, lat, lon, cell):
            return  # duplicate
        # calls still collecting corroboration (call ts within +-10 min of the alert)
        lst = self.calls_near.get(cell)
        if not lst:
            return
        lo = bisect_left(lst, (ts - CORROBORATION_WINDOW_MS,))
        hi = bisect_right(lst, (ts + CORROBORATION_WINDOW_MS, _LAST))
        for _ts, _seq, inc in lst[lo:hi]:
            if self._corroborate(inc, *entry):
                self.changed_records[inc.call_id] = inc  # re-emitted once, in take_output

    def keep_alert(self, alert_id: str, ts: int, typ: str, lat: float, lon: float, cell: int) -> bool:
        """Hold an alert for corroboration look-back; False when it is a duplicate."""
        if ts >= self.clock - CORROBORATION_WINDOW_MS - self.grace_ms:
            if alert_id in self.seen_alerts:
                return False
            self.seen_alerts.add(alert_id)
            self.alerts.setdefault(ts // MINUTE_MS, {}).setdefault(cell, []).append((ts, alert_id, typ, lat, lon))
        return True

    def advance_clock(self, clock: int, wm: int | None = None) -> None:
        """Move the clock and the watermark (never back; wm defaults to the clock) and fire every
        timer now due, including those of calls consumed after their deadline."""
        if clock > self.clock:
            self.clock = clock
        clock = self.clock
        wm = clock if wm is None else min(wm, clock)
        if wm > self.wm:
            self.wm = wm
        wm = self.wm
        timers = self.wm_timers
        while timers and timers[0][0] <= wm:
            due, what, call_id = heapq.heappop(timers)
            inc = self.incidents.get(call_id)
            if inc is None:
                continue
            if what == "arrive":
                c = inc.candidate
                if c is not None and c[0] == due:
                    self._decide(inc)
            elif what == "breach":
                if inc.arrival_ts is None or inc.arrival_ts - inc.ts > BREACH_AFTER_MS:
                    inc.breached = True
                    if inc.arrival_ts is None:
                        self.board[call_id] = inc
                    self.out.append(("sla", {"type": "breach", "call_id": call_id, "zone_ids": inc.zones,
                                             "unit_id": None, "response_s": None, "ts": due}))
            elif what == "tiers":
                if not inc.tiers_decided:
                    self._decide_tiers(inc)
            elif what == "recommend":
                if inc.recommended_at is None:
                    self._recommend(inc)
                    self._finish_record(inc)
                    self.changed_records.pop(call_id, None)
                    self.out.append(("enriched", inc.record))
            elif what == "expire":
                if inc.arrival_ts is None:
                    self.board[call_id] = inc  # leaves the wall unanswered
                self._forget(inc)
        timers = self.clock_timers
        while timers and timers[0][0] <= clock:
            due, what, call_id = heapq.heappop(timers)
            inc = self.incidents.get(call_id)
            if inc is None:
                continue
            if what == "uncorr":
                self._unlink_calls_at(inc)  # alerts from now on are too late to corroborate
            elif what == "settle":
                if inc.arrival_ts is not None and inc.candidate is None and inc.arrival_ts + self.grace_ms <= clock \
                        and inc.tiers_decided:
                    self._unlink_near(inc)  # no fix consumed from now on can be earlier (or on a tier)
        if clock - self._calls_pruned > 600_000:
            self._calls_pruned = clock
            if len(self.seen_calls) > 1024:
                self.seen_calls = {c: t for c, t in self.seen_calls.items() if t >= clock - DEDUP_HORIZON_MS}
            # the ids of units with fixes still held: the others went (churning ids grew it for ever)
            self._names = {u: u for by_unit in self.fixes_by_unit.values() for u in by_unit}
        # look-back pruning by whole minutes
        self._set_keep_from()
        keep_fix = self.keep_from // MINUTE_MS - 1
        for m in [m for m in self.fixes if m < keep_fix]:
            del self.fixes[m]
            self.fixes_by_unit.pop(m, None)
        keep_alert = (clock - CORROBORATION_WINDOW_MS - self.grace_ms) // MINUTE_MS - 1
        for m in [m for m in self.alerts if m < keep_alert]:
            for lst in self.alerts[m].values():
                for a in lst:
                    self.seen_alerts.discard(a[1])
            del self.alerts[m]

    def take_output(self) -> list:
        """Everything decided since the last call; a record changed by several alerts is emitted once."""
        for inc in self.changed_records.values():
            self._finish_record(inc)
            self.out.append(("enriched", inc.record))
            self.timelines[inc.call_id] = inc
        self.changed_records.clear()
        out, self.out = self.out, []
        return out

    def take_fallback(self) -> dict[str, float]:
        """Calls whose recommendation was decided with fewer than MAX_RECOMMENDED units since the
        last call -> the distance beyond which units may be added from processing-time positions
        (DISPATCH_EXACT_M, or 0 for a call consumed after the grace). Their records are among the
        enriched records of the same take_output."""
        out, self.fallback = self.fallback, {}
        return out

    def take_board(self) -> dict[str, Incident]:
        """Incidents whose wall entry changed since the last call (render with board_doc)."""
        out, self.board = self.board, {}
        self.timelines.update(out)
        return out

    def take_timelines(self) -> dict[str, Incident]:
        """Incidents whose timeline changed since the last call (render with timeline_doc)."""
        out, self.timelines = self.timelines, {}
        return out

    def timeline_doc(self, inc: Incident, partition: int) -> dict:
        """GET /incidents/{call_id} (contract.keys.incident): the call without any caller, its
        zones, ring, recommendation, corroboration, decision and events on the stream clock."""
        r = inc.record
        call = {k: v for k, v in r.items() if k not in ("caller", "caller_ref", "zones", "ring", "nearest_units",
                                                        "corroborating_alerts", "processed_at")}
        status = self.board_doc(inc, partition)["status"]
        events = [{"ts": inc.ts, "what": "call"}]
        if inc.recommended_at is not None and not inc.completing:
            # at the call's ts: the positions it was made from (decided once the watermark reached it)
            events.append({"ts": inc.ts, "what": "recommended",
                           "unit_ids": [u["unit_id"] for u in r.get("nearest_units") or ()]})
        for a in sorted(inc.alerts.values(), key=lambda a: (a["dt_s"], a["alert_id"])):
            events.append({"ts": inc.ts + round(a["dt_s"] * 1000), "what": "alert", "alert_id": a["alert_id"],
                           "type": a["type"], "distance_m": a["distance_m"]})
        breach = {"ts": inc.ts + BREACH_AFTER_MS} if inc.breached else None
        if breach:
            events.append({"ts": breach["ts"], "what": "breach"})
        arrival: dict[str, Any] | None = None
        if inc.arrival_ts is not None:
            arrival = {"unit_id": inc.arrival_unit, "response_s": round((inc.arrival_ts - inc.ts) / 1000.0, 3),
                       "ts": inc.arrival_ts}
            events.append({"ts": inc.arrival_ts, "what": "arrived", "unit_id": inc.arrival_unit,
                           "response_s": arrival["response_s"]})
        elif status == "expired":
            events.append({"ts": inc.ts + EXPIRE_AFTER_MS, "what": "expired"})
        decision = None
        if arrival is not None and (arrival["response_s"] <= BREACH_AFTER_MS / 1000 or not inc.breached):
            decision = {"type": "arrived", **arrival}
        elif inc.breached:
            decision = {"type": "breach", "unit_id": None, "response_s": None, "ts": inc.ts + BREACH_AFTER_MS}
        events.sort(key=lambda e: (e["ts"], e["what"]))
        # positions for the map: the cameras', and the units' at the call's ts (units added from
        # Redis beyond the exact part have none: where they were at that ts is not known)
        units = [] if inc.completing else r.get("nearest_units") or []
        return {"call_id": inc.call_id, "call": call, "zones": inc.zones, "ring": r.get("ring"),
                "nearest_units": [_at(u, inc.unit_at.get(u["unit_id"]), ("lat", "lon", "ts")) for u in units],
                "corroborating_alerts": [_at(a, inc.alert_at.get(a["alert_id"]), ("lat", "lon"))
                                         for a in r.get("corroborating_alerts") or ()],
                "decision": decision, "arrival": arrival, "breach": breach, "status": status, "events": events,
                "clock": self.clock, "partition": partition}

    def touch(self, call_id: str) -> None:
        """Its record changed outside this state (the processing-time part of a dispatch
        recommendation, streams/dispatch.py): re-render its entry."""
        inc = self.incidents.get(call_id)
        if inc is not None:
            inc.completing = False
            self.timelines[call_id] = inc
            if inc.arrival_ts is None:
                self.board[call_id] = inc

    def open_incidents(self) -> list[Incident]:
        """Incidents neither arrived nor expired (the wall's list; `open_incidents` of §3)."""
        return [inc for inc in self.incidents.values() if inc.arrival_ts is None]

    def board_doc(self, inc: Incident, partition: int) -> dict:
        """The incident as the wall shows it (`zw:incidents`, docs/DESIGN.md "Open incidents on the wall")."""
        if inc.arrival_ts is not None:
            status = "arrived"
        elif inc.call_id not in self.incidents:
            status = "expired"
        elif inc.breached:
            status = "breached"
        else:
            status = "open"
        r = inc.record
        return {"call_id": inc.call_id, "status": status, "ts": inc.ts, "lat": inc.lat, "lon": inc.lon,
                "category": r.get("category"), "priority": r.get("priority"), "zones": inc.zones,
                "ring": r.get("ring"), "breach_at": inc.ts + BREACH_AFTER_MS,
                "arrived_ts": inc.arrival_ts, "unit_id": inc.arrival_unit,
                "response_s": None if inc.arrival_ts is None else round((inc.arrival_ts - inc.ts) / 1000.0, 3),
                "nearest_units": [] if inc.completing else r.get("nearest_units") or [], "clock": self.clock,
                "partition": partition}

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything but the look-back buffers (rebuilt from the log, see streams/recovery.py)."""
        return {
            "clock": self.clock, "wm": self.wm, "calls_pruned": self._calls_pruned,
            "seen_calls": self.seen_calls,
            "incidents": [[i.call_id, i.ts, i.lat, i.lon, i.cell, i.zones, i.record, i.consumed_late,
                           i.arrival_ts, i.arrival_unit, list(i.candidate) if i.candidate else None,
                           i.breached, [[a, i.alerts_rank[k][0]] for k, a in i.alerts.items()], i.recommended_at,
                           i.on_scene, i.tiers_decided, i.alert_at, i.unit_at]
                          for i in self.incidents.values()],
        }

    @classmethod
    def restore(cls, snap: dict, grace_ms: int = DEFAULT_GRACE_MS, unit_stale_ms: int = UNIT_STALE_MS,
                tier_requirement: Callable[[str], tuple[int, int, int]] | None = None) -> IncidentState:
        s = cls(grace_ms, unit_stale_ms=unit_stale_ms, tier_requirement=tier_requirement)
        s.clock, s.wm, s._calls_pruned = snap["clock"], snap["wm"], snap["calls_pruned"]
        s.seen_calls = dict(snap["seen_calls"])
        for row in snap["incidents"]:
            (cid, ts, lat, lon, cell, zones, record, late, arr_ts, arr_unit, cand, breached,
             alerts, recommended_at) = row[:14]
            inc = Incident(cid, ts, lat, lon, cell, list(zones), record, late, arr_ts, arr_unit,
                           tuple(cand) if cand else None, breached, recommended_at)
            if len(row) > 14:
                inc.on_scene, inc.tiers_decided = dict(row[14]), row[15]
            else:
                # a snapshot of the code before tiers: the fixes it applied were not counted on scene,
                # so deciding now would undercount; such a call gets no tiers record
                # (docs/DESIGN.md "Forces, coverage and on-scene tiers")
                inc.tiers_decided = True
            if len(row) > 16:  # a snapshot of an older worker has no positions
                inc.alert_at, inc.unit_at = dict(row[16]), dict(row[17])
            for a, rank in alerts:
                inc.alerts[a["alert_id"]] = a
                inc.alerts_rank[a["alert_id"]] = (rank, a["alert_id"])
            s._link(inc, restoring=True)
        s._set_keep_from()
        return s

    # -- internals ---------------------------------------------------------------------------
    def _link(self, inc: Incident, restoring: bool = False) -> None:
        """Index an incident and set its timers (what a snapshot does not carry is derived here)."""
        self.incidents[inc.call_id] = inc
        cid, ts = inc.call_id, inc.ts
        inc.seq = next(self._seq)
        inc.reach_key = inc.best()
        # (with its tiers still open, the fixes consumed from now on may yet put units on scene)
        settled = inc.arrival_ts is not None and inc.candidate is None \
            and inc.arrival_ts + self.grace_ms <= self.clock and inc.tiers_decided
        if not settled:
            inc.squares = reach_squares(inc.lat, inc.lon, self.radius)
            for c in inc.squares:
                reach = self.near.get(c)
                if reach is None:
                    reach = self.near[c] = _Reach()
                reach.add(inc)
        if not restoring or self.clock < ts + CORROBORATION_WINDOW_MS + self.grace_ms:
            for c in h3.grid_disk(inc.cell, DISK_K[CORROBORATION_RADIUS_M]):
                insort(self.calls_near.setdefault(c, []), (ts, inc.seq, inc))
            heapq.heappush(self.clock_timers, (ts + CORROBORATION_WINDOW_MS + self.grace_ms, "uncorr", cid))
        if not restoring or not inc.breached:
            heapq.heappush(self.wm_timers, (ts + BREACH_AFTER_MS, "breach", cid))
        if not inc.tiers_decided:
            heapq.heappush(self.wm_timers, (ts + TIERS_DECIDED_MS, "tiers", cid))
        heapq.heappush(self.wm_timers, (ts + EXPIRE_AFTER_MS, "expire", cid))
        if inc.candidate is not None:
            heapq.heappush(self.wm_timers, (inc.candidate[0], "arrive", cid))
        if inc.arrival_ts is not None and not settled:
            heapq.heappush(self.clock_timers, (inc.arrival_ts + self.grace_ms, "settle", cid))
        if inc.recommended_at is None and not inc.consumed_late:
            # decided once the watermark reaches ts: every fix at or before ts has been read (not
            # "passes": the watermark never passes the stream clock, and a call can be the latest
            # event there is while the feeds are quiet)
            heapq.heappush(self.wm_timers, (ts, "recommend", cid))
            heapq.heappush(self.rec_pending, (ts, cid))
            self.keep_from = min(self.keep_from, ts - self.stale_ms)

    def _candidate(self, inc: Incident, ts: int, unit: str) -> None:
        old_key = inc.reach_key
        inc.candidate = (ts, unit)
        inc.reach_key = inc.best()
        if inc.reach_key != old_key:
            for c in inc.squares:
                self.near[c].refile(inc, old_key, inc.reach_key)  # type: ignore[arg-type]  # set just above
        if ts <= self.wm:
            self._decide(inc)  # the watermark is past it already (a late fix): decide now
        else:
            heapq.heappush(self.wm_timers, (ts, "arrive", inc.call_id))

    def _decide(self, inc: Incident) -> None:
        ts, unit = inc.candidate  # type: ignore[misc]  # only an incident with a candidate is decided
        inc.candidate = None
        if inc.arrival_ts is not None and inc.arrival_ts <= ts:
            return
        inc.arrival_ts = ts
        inc.arrival_unit = unit
        heapq.heappush(self.clock_timers, (ts + self.grace_ms, "settle", inc.call_id))
        response_s = round((ts - inc.ts) / 1000.0, 3)
        self.board[inc.call_id] = inc
        self.out.append(("sla", {"type": "arrived", "call_id": inc.call_id, "zone_ids": inc.zones,
                                 "unit_id": unit, "response_s": response_s, "ts": ts}))
        self.out.append(("arrival", (inc.call_id, inc.ts, inc.zones, response_s, unit)))

    def _decide_tiers(self, inc: Incident) -> None:
        """The on-scene counts by 1, 3, 5 minutes, final: an `sla.events` record and the zones' record."""
        inc.tiers_decided = True
        for c in inc.squares:
            _drop(self.near[c].tiers, inc.ts, inc)
        counts = tuple(sum(1 for fts in inc.on_scene.values() if fts <= inc.ts + limit * 1000) for limit in TIERS_S)
        # met in every zone of the call: per tier the largest requirement among them (no zone: the default)
        reqs = [self.tier_requirement(z) for z in inc.zones] or [default_tier_requirement("")]
        required = [max(r[i] for r in reqs) for i in range(len(TIERS_S))]
        met = all(n >= r for n, r in zip(counts, required, strict=True))
        self.out.append(("sla", {"type": "tiers", "call_id": inc.call_id, "zone_ids": inc.zones,
                                 "on_scene": dict(zip(TIER_NAMES, counts, strict=True)), "met": met,
                                 "ts": inc.ts + TIERS_DECIDED_MS}))
        self.out.append(("tiers", (inc.call_id, inc.ts, inc.zones, counts)))

    def _set_keep_from(self) -> None:
        """Hold fixes for the grace plus the staleness bound, and as long as a recommendation
        not yet decided needs them (a watermark further behind than the grace)."""
        keep = self.clock - self.grace_ms - self.stale_ms
        pending = self.rec_pending
        while pending:
            inc = self.incidents.get(pending[0][1])
            if inc is not None and inc.recommended_at is None:
                keep = min(keep, pending[0][0] - self.stale_ms)
                break
            heapq.heappop(pending)
        self.keep_from = keep

    def _recommend(self, inc: Incident) -> None:
        """Decide `nearest_units` from the units' positions at the call's ts (see the module doc)."""
        t = inc.ts
        lo = t - self.stale_ms
        minutes = [m for m in range(lo // MINUTE_MS, t // MINUTE_MS + 1) if m in self.fixes]
        disk = h3.grid_disk(inc.cell, covering_k(inc.cell, DISPATCH_EXACT_M))
        cells = set(disk)
        near: set[str] = set()   # units with an available fix within reach in [lo, t]
        for m in minutes:
            by_cell = self.fixes[m]
            if len(by_cell) < len(disk):
                lists = [lst for c, lst in by_cell.items() if c in cells]
            else:
                lists = [lst for lst in map(by_cell.get, disk) if lst]
            for lst in lists:
                for f in lst:
                    if f[4] is not None and lo <= f[0] <= t:
                        near.add(f[1])
        found = []
        for unit in near:
            latest = None   # its latest fix at or before t, wherever it was
            for m in minutes:
                for f in self.fixes_by_unit[m].get(unit, ()):
                    if f[0] <= t and (latest is None or f[0] > latest[0]):
                        latest = f
            if latest is None or latest[4] is None:
                continue  # not available at t
            d = haversine_m(inc.lat, inc.lon, latest[2], latest[3])
            if d <= DISPATCH_EXACT_M:
                found.append((d, unit, latest[4], latest))
        found.sort(key=lambda f: f[:2])
        inc.record["nearest_units"] = [{"unit_id": u, "kind": k, "distance_m": round(d, 1), "eta_s": eta_s(d, k)}
                                       for d, u, k, _f in found[:MAX_RECOMMENDED]]
        inc.unit_at = {u: [f[2], f[3], f[0]] for _d, u, _k, f in found[:MAX_RECOMMENDED]}
        self._recommended(inc, DISPATCH_EXACT_M if len(found) < MAX_RECOMMENDED else None)

    def _recommend_late(self, inc: Incident) -> None:
        """A call consumed after the grace: the positions of its time are gone; processing-time
        positions only."""
        inc.record["nearest_units"] = []
        self._recommended(inc, 0.0)

    def _recommended(self, inc: Incident, fallback_beyond: float | None) -> None:
        inc.recommended_at = self.clock
        if fallback_beyond is not None:
            # the wall and the timeline show it once complete (touch), not the exact part first
            self.fallback[inc.call_id] = fallback_beyond
            inc.completing = True
            return
        self.timelines[inc.call_id] = inc
        if inc.arrival_ts is None:
            self.board[inc.call_id] = inc

    @staticmethod
    def _finish_record(inc: Incident) -> None:
        inc.record["corroborating_alerts"] = sorted(inc.alerts.values(), key=lambda a: (a["dt_s"], a["alert_id"]))

    def _corroborate(self, inc: Incident, ts: int, alert_id: str, typ: str, lat: float, lon: float) -> bool:
        if alert_id in inc.alerts:
            return False
        dt = ts - inc.ts
        if abs(dt) > CORROBORATION_WINDOW_MS:
            return False
        key = (abs(dt), alert_id)
        full = len(inc.alerts) >= MAX_CORROBORATING
        if full:
            # keep the alerts closest in time to the call; a crowd can raise hundreds (checked before
            # the distance: a dense cell's full calls turn most alerts away)
            if inc.worst is None:
                inc.worst = max(inc.alerts_rank.items(), key=lambda kv: kv[1])
            if key >= inc.worst[1]:
                return False
        d = haversine_m(inc.lat, inc.lon, lat, lon)
        if d > CORROBORATION_RADIUS_M:
            return False
        if inc.worst is not None and full:   # (set above when full)
            del inc.alerts[inc.worst[0]]
            del inc.alerts_rank[inc.worst[0]]
            inc.alert_at.pop(inc.worst[0], None)
            inc.worst = None
        inc.alerts[alert_id] = {"alert_id": alert_id, "type": typ, "distance_m": round(d, 1),
                                "dt_s": round(dt / 1000.0, 1)}
        inc.alerts_rank[alert_id] = key
        inc.alert_at[alert_id] = [lat, lon]
        return True

    def _forget(self, inc: Incident) -> None:
        self.incidents.pop(inc.call_id, None)
        self.changed_records.pop(inc.call_id, None)
        self._unlink_calls_at(inc)
        self._unlink_near(inc)

    def _unlink_calls_at(self, inc: Incident) -> None:
        for c in h3.grid_disk(inc.cell, DISK_K[CORROBORATION_RADIUS_M]):
            lst = self.calls_near.get(c)
            if lst:
                _drop(lst, inc.ts, inc)
                if not lst:
                    del self.calls_near[c]

    def _unlink_near(self, inc: Incident) -> None:
        squares, inc.squares = inc.squares, []
        for c in squares:
            reach = self.near.get(c)
            if reach is not None:
                reach.remove(inc)
                if not reach:
                    del self.near[c]


def _at(entry: dict, where: list | None, names: tuple[str, ...]) -> dict:
    """A timeline entry with its position (lat, lon[, ts]) when one is known."""
    return entry if where is None else {**entry, **dict(zip(names, where, strict=True))}
