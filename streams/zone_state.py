"""Per-zone situation state for one partition of the zone-events topic (CONTRACT §3).

Pure and synchronous: no Kafka, no Redis, no wall clock, so the same events, stream clock and
watermark always give the same documents (tests drive it directly). The worker feeds it batches
from the repartition topic and asks for the documents of zones whose figures changed. Its parts:
the zones' counters here, incidents (streams/incidents.py, whose Arrival and Tiers records come
back for the zones' `response`), reach (streams/reach.py) and coverage (streams/coverage.py).

Idempotence is what makes at-least-once delivery safe: calls and alerts are remembered by id
(compactly, streams/dedup.py) and fixes by (unit_id, ts) for as long as they can still change a
figure, so a batch delivered twice after a crash or rebalance changes nothing the second time.
`snapshot()`/`restore()` carry the state across owners (streams/recovery.py).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from contract.events import DEFAULT_FORCE, FORCES
from contract.response import (
    BREACH_AFTER_MS,
    CAMERA_KNOWN_MS,
    DEFAULT_GRACE_MS,
    EVENT_AGE_HORIZON_MS,
    EXPIRE_AFTER_MS,
    RESPONSE_WINDOW_MS,
    TIERS_DECIDED_MS,
    UNIT_QUIET_MS,
    default_tier_requirement,
)
from contract.zones import Zone

from .coverage import ZoneCoverage, cell_of
from .days import LocalDays
from .dedup import IdMemory, id_hash
from .duty import DutyState, DutyZones
from .incidents import IncidentState
from .reach import ZoneReach
from .records import (
    Arrival,
    DutyNote,
    IncidentAlert,
    IncidentCall,
    IncidentFix,
    PhaseCommand,
    Tiers,
    ZoneAlert,
    ZoneCall,
    ZoneFix,
    ZoneStatus,
)
from .rules import Rules, load_rules
from .watermark import Watermark

MINUTE_MS = 60_000
INF = float("inf")
WINDOWS = (("5m", 5), ("15m", 15), ("60m", 60))
KEEP_MINUTES = 60
GPS_DEDUP_HORIZON_MS = 10 * 60 * 1000  # per unit, behind its newest fix
GPS_DEDUP_PER_UNIT = 128
PRUNE_EVERY_MS = 60_000
INCIDENT_KEEP_MS = EXPIRE_AFTER_MS + RESPONSE_WINDOW_MS
_NO_HITS: frozenset[int] = frozenset()
LAST_EVENT_SOURCES = ("calls", "gps", "alerts")   # health.last_event_ts
#: the requirement of a zone: units on scene by 1, 3 and 5 minutes (contract.response.DEFAULT_TIERS)
TierRequirement = Callable[[str], tuple[int, int, int]]


def empty_response() -> dict:
    return {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 0,
            "p50_s": None, "p90_s": None, "tiers_met": 0, "tiers_decided": 0}


def tiers_met(on_scene, required) -> bool:
    """The on-scene counts reach the requirement in every tier (CONTRACT §3 "On-scene tiers")."""
    return all(n >= r for n, r in zip(on_scene, required, strict=True))


class DayCounts:
    """A zone's local day: `today` of the zone document and the record of zones.daily.

    `once` holds the same figures for the calls and alerts whose first zone (in the ingest's order,
    the zone its primary copy is routed by) is this one: each event has exactly one first zone, so
    summed over every zone they count each event once however many nested zones hold it (the
    briefing's overall totals and percentiles, reports/briefing.py)."""

    __slots__ = ("calls", "alerts", "by_category", "by_priority", "by_lang", "by_type", "hourly_calls",
                 "hourly_alerts", "responses", "breaches", "version", "changed", "tiers", "once")

    def __init__(self) -> None:
        self.calls = 0
        self.alerts = 0
        self.by_category: dict[str, int] = defaultdict(int)
        self.by_priority: dict[int, int] = defaultdict(int)
        self.by_lang: dict[str, int] = defaultdict(int)
        self.by_type: dict[str, int] = defaultdict(int)
        self.hourly_calls = [0] * 24
        self.hourly_alerts = [0] * 24
        self.responses: dict[str, float] = {}   # call_id -> response s, arrivals decided this day
        self.breaches: set[str] = set()         # call_ids whose breach falls on this day
        self.version = 0                        # of its zones.daily record
        self.changed = True                     # since its zones.daily record was last taken
        self.tiers: dict[str, bool] = {}        # call_id -> met, tiers decided this day (call ts + 300 s)
        self.once: DayCounts | None = None      # the events whose first zone this is (first())

    def first(self) -> DayCounts:
        """`once`, made when the first event whose first zone this is counts."""
        once = self.once
        if once is None:
            once = self.once = DayCounts()
        return once

    def dump(self) -> list:
        return [self.calls, self.alerts, dict(self.by_category), {str(k): v for k, v in self.by_priority.items()},
                dict(self.by_lang), dict(self.by_type), self.hourly_calls, self.hourly_alerts, self.responses,
                sorted(self.breaches), self.version, self.changed, self.tiers,
                None if self.once is None else self.once.dump()]

    @classmethod
    def load(cls, raw: list) -> DayCounts:
        d = cls()
        d.calls, d.alerts = raw[0], raw[1]
        d.by_category.update(raw[2])
        d.by_priority.update({int(k): v for k, v in raw[3].items()})
        d.by_lang.update(raw[4])
        d.by_type.update(raw[5])
        d.hourly_calls, d.hourly_alerts = list(raw[6]), list(raw[7])
        d.responses, d.breaches = dict(raw[8]), set(raw[9])
        d.version, d.changed = raw[10], raw[11]
        if len(raw) > 12:   # a snapshot of the code before tiers has none
            d.tiers = dict(raw[12])
        if len(raw) > 13 and raw[13] is not None:  # a snapshot of an older worker has no `once`
            d.once = cls.load(raw[13])
        return d


def nearest_rank(ordered: list[float], percent: int) -> int | None:
    """The nearest-rank percentile of sorted response times, rounded to whole seconds: the value at
    rank ceil(percent/100 x n), computed in integers as the briefing ranks its merged times."""
    n = len(ordered)
    return round(ordered[(percent * n + 99) // 100 - 1]) if n else None


def _day_figures(day: DayCounts, tiers: bool = True) -> dict:
    """The counts and the response decisions of a day (zones.daily; CONTRACT §4)."""
    responses = sorted(day.responses.values())
    n = len(responses)
    response = {"arrived": n, "within_1m": sum(1 for r in responses if r <= 60),
                "within_3m": sum(1 for r in responses if r <= 180),
                "within_5m": sum(1 for r in responses if r <= 300), "breaches": len(day.breaches),
                "p50_s": nearest_rank(responses, 50), "p90_s": nearest_rank(responses, 90)}
    if tiers:   # on-scene tiers decided this day (v3); `once` carries none
        response["tiers_met"], response["tiers_decided"] = sum(day.tiers.values()), len(day.tiers)
    return {"calls": day.calls, "calls_by_category": dict(sorted(day.by_category.items())),
            "calls_by_priority": {str(k): v for k, v in sorted(day.by_priority.items())},
            "calls_by_lang": dict(sorted(day.by_lang.items())),
            "alerts": day.alerts, "alerts_by_type": dict(sorted(day.by_type.items())),
            "hourly": {"calls": list(day.hourly_calls), "alerts": list(day.hourly_alerts)},
            "response": response}


class MinuteBucket:
    __slots__ = ("calls", "calls_p1", "alerts", "by_type")

    def __init__(self) -> None:
        self.calls = 0
        self.calls_p1 = 0
        self.alerts = 0
        self.by_type: dict[str, int] = defaultdict(int)

    def dump(self) -> list:
        return [self.calls, self.calls_p1, self.alerts, dict(self.by_type)]

    @classmethod
    def load(cls, raw: list) -> MinuteBucket:
        b = cls()
        b.calls, b.calls_p1, b.alerts = raw[0], raw[1], raw[2]
        b.by_type.update(raw[3])
        return b


class ZoneAgg:
    """Counters of one zone. Units present are tracked by the partition (units move)."""

    __slots__ = ("zone", "days", "minutes", "units", "incidents", "cameras", "last_ts", "version",
                 "last_figures", "last_clock", "valid_until", "valid_until_wm", "resp_cache", "firsts")

    def __init__(self, zone: Zone):
        self.zone = zone
        self.days: dict[str, DayCounts] = {}
        self.minutes: dict[int, MinuteBucket] = {}
        # unit_id -> (fix ts, status, force) of its latest fix
        self.units: dict[str, tuple[int, str, str]] = {}
        # call_id -> [call ts, priority (None until the call is seen), response s (None = not arrived),
        # on-scene tiers (None until decided)]
        self.incidents: dict[str, list] = {}
        self.firsts: set[str] = set()   # of `incidents`, the calls whose first zone this is (DayCounts.once)
        # camera_id -> (ts of its latest report, online per its latest status) for cameras whose
        # latest report lies in the zone (health)
        self.cameras: dict[str, tuple[int, bool]] = {}
        self.last_ts: dict[str, int] = {}   # source -> largest ts accepted inside the zone (last_event_ts)
        self.version = 0
        self.last_figures: dict | None = None
        self.last_clock = 0
        # the clock / watermark at which the figures can next change without a new event
        self.valid_until = 0
        self.valid_until_wm = 0
        self.resp_cache: tuple | None = None  # _response() result, until incidents change


class PartitionState:
    """All zones owned by one partition, their dedup memory, units, the clock and the watermark."""

    def __init__(self, zones: list[Zone], tz: str = "Asia/Shanghai", rules: Rules | None = None,
                 unit_stale_ms: int = 120_000, grace_ms: int = DEFAULT_GRACE_MS,
                 camera_silent_ms: int = 1_800_000, reach_cells: dict | None = None,
                 unit_forget_ms: int = 24 * 3_600_000, tier_requirement: TierRequirement | None = None):
        self.tz_name = tz
        self.days = LocalDays(tz)
        self.rules = rules or load_rules(None)
        self.unit_stale_ms = unit_stale_ms
        self.grace_ms = grace_ms
        self.camera_silent_ms = camera_silent_ms
        self.unit_forget_ms = unit_forget_ms   # ZONEWATCH_UNIT_FORGET_S: a unit this silent leaves the fix memory
        self.zones: dict[str, ZoneAgg] = {z.zone_id: ZoneAgg(z) for z in zones}
        # on-scene tiers required per zone (a plan's [[tiers]], CONTRACT §10; (1, 2, 3) without one)
        self.tier_requirement = tier_requirement or default_tier_requirement
        self.tiers_required = {zid: tuple(self.tier_requirement(zid)) for zid in self.zones}
        self.coverage = ZoneCoverage(zones)
        self.clock = 0
        self.wm = 0
        self.seen = IdMemory()                  # hashes of "c|call_id" / "a|alert_id"
        self.seen_fix: dict[str, set] = {}      # unit_id -> {fix ts}
        self.unit_latest: dict[str, tuple[int, tuple[str, ...], str]] = {}
        # camera_id -> (ts, zones, online) of its latest report; online from its latest status
        self.camera_latest: dict[str, tuple[int, tuple[str, ...], bool]] = {}
        self.camera_status: dict[str, tuple[int, bool]] = {}   # camera -> (ts, online) of its latest status
        self.seen_status: dict[str, set] = {}                  # camera -> {status report ts}
        self.dirty: set[str] = set()
        # Incidents of the geo cells this partition is home to (a different key than zones).
        self.incidents = IncidentState(grace_ms, unit_stale_ms=unit_stale_ms, tier_requirement=self.tier_requirement)
        # the patrol.gps marks this partition's own zone-events batches carried (StateStage sets
        # its bounds): a mark arrives with, or after, every record routed here before it, so a
        # decision on it never precedes a fix of this partition that it covers
        self.watermark = Watermark()
        self.reach = ZoneReach(zones, cells=reach_cells)
        self._last_pruned = 0
        # the latest local date whose zones.daily records were taken final: no decision reopens it
        self.final_through = ""
        # (a fix ts of the unit, unit), one entry per unit of seen_fix: popped once that ts falls behind
        # ZONEWATCH_UNIT_FORGET_S, then the unit goes or is pushed again with its newest (as reach's expiry)
        self._fix_expiry: list[tuple[int, str]] = []
        self._hits: AbstractSet[int] = _NO_HITS  # ids of the current batch the sealed dedup hours hold
        self.deadlines: list[tuple[int, str, str]] = []  # (call ts + 300 s, zone, call) not yet passed
        # the duty plan (streams/duty.py; StateStage sets them when a plan is loaded): the posts and
        # checkpoints this partition owns, and what its zones know of them
        self.duty: DutyState | None = None
        self.duty_zones: DutyZones | None = None

    # -- input -----------------------------------------------------------------------------
    def advance_clock(self, clock: int, wm: int | None = None) -> None:
        """Move the stream clock and the watermark of patrol.gps (each never back; the
        watermark defaults to the clock and never passes it)."""
        # always: calls consumed after their deadline fire their timers even if the clock stays
        if clock > self.clock:
            self.clock = clock
        wm = self.clock if wm is None else min(wm, self.clock)
        if wm > self.wm:
            self.wm = wm
        self.incidents.advance_clock(self.clock, self.wm)
        if self.duty is not None:
            self.duty.advance(self.wm)   # posts and checkpoints are decided on the watermark too
        self.seen.advance(self.clock)
        self.reach.stale_before(self.clock - self.unit_stale_ms)
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= self.wm:
            # the day's decisions (zones.daily): a breach is decided on the watermark, at its deadline
            due, zid, call_id = heapq.heappop(deadlines)
            agg = self.zones[zid]
            inc = agg.incidents.get(call_id)
            if inc is not None and (inc[2] is None or inc[2] > BREACH_AFTER_MS / 1000):
                day = self._day(agg, due)
                if day is not None and call_id not in day.breaches:
                    day.breaches.add(call_id)
                    if call_id in agg.firsts:
                        day.first().breaches.add(call_id)
                    day.changed = True
        if self.clock - self._last_pruned >= PRUNE_EVERY_MS:
            self._prune()

    def apply_all(self, recs: list) -> list:
        """Apply a batch's records in order; the results of `apply` for each."""
        ids = [id_hash("c", r.call_id) if type(r) is ZoneCall else id_hash("a", r.alert_id)
               for r in recs if type(r) is ZoneCall or type(r) is ZoneAlert]
        self._hits = self.seen.hit_sealed(ids) if ids else _NO_HITS
        apply = self.apply
        return [apply(r) for r in recs]

    def apply(self, rec) -> bool | None:
        """Apply one record (streams/records.py); False when it is a duplicate, None for
        incident-stage and arrival records."""
        t = type(rec)
        if t is ZoneFix:
            unit, ts = rec.unit_id, rec.ts
            if rec.primary:
                # Only the primary copy is counted (accepted or duplicate), so only it needs the
                # memory of fixes; every other use of a fix (presence, last gps event, reach) is
                # idempotent. Fixes are remembered per unit, relative to the unit's own newest fix
                # rather than the stream clock, so a backlog that moves the clock far ahead still
                # finds repeats.
                seen = self.seen_fix.get(unit)
                if seen is None:
                    seen = self.seen_fix[unit] = set()
                    heapq.heappush(self._fix_expiry, (ts, unit))
                elif ts in seen:
                    return False
                seen.add(ts)
                if len(seen) > GPS_DEDUP_PER_UNIT:
                    newest = max(seen)
                    self.seen_fix[unit] = {t for t in seen if t >= newest - GPS_DEDUP_HORIZON_MS}
            zones = rec.zones
            if zones:
                zs = self.zones
                for zid in zones:
                    agg = zs[zid]
                    if ts > agg.last_ts.get("gps", 0):
                        agg.last_ts["gps"] = ts
                        self.dirty.add(zid)
            covered = self.coverage.fix(rec.cell or cell_of(rec.lat, rec.lon), ts, self.clock)
            if covered:
                self.dirty.update(covered)
            if rec.presence and self._apply_fix(unit, ts, tuple(zones), rec.status, rec.force):
                self.reach.fix(unit, ts, rec.lat, rec.lon, rec.kind, rec.status == "available")
            return True
        if t is ZoneStatus:
            cam, ts = rec.camera_id, rec.ts
            seen = self.seen_status.get(cam)
            if seen is None:
                seen = self.seen_status[cam] = set()
            elif ts in seen:
                return False
            seen.add(ts)
            if len(seen) > GPS_DEDUP_PER_UNIT:
                newest = max(seen)
                self.seen_status[cam] = {t for t in seen if t >= newest - GPS_DEDUP_HORIZON_MS}
            prev = self.camera_status.get(cam)
            if prev is None or ts > prev[0]:
                self.camera_status[cam] = (ts, rec.online)
            self._apply_camera(cam, ts, tuple(rec.zones), rec.presence)
            return True
        if t is IncidentFix:
            self.incidents.on_fix(rec.unit_id, rec.ts, rec.lat, rec.lon, rec.cell, rec.available, rec.kind)
            if self.duty is not None:
                self.duty.on_fix(rec.unit_id, rec.ts, rec.lat, rec.lon, rec.cell,
                                 rec.status or ("available" if rec.available else "busy"), rec.force)
            return None
        if t is PhaseCommand or t is DutyNote:
            self._apply_duty(rec)
            return None
        if t is IncidentAlert:
            self.incidents.on_alert(rec.alert_id, rec.ts, rec.type, rec.lat, rec.lon, rec.cell)
            return None
        if t is IncidentCall:
            r = rec.record
            self.incidents.on_call(rec.call_id, rec.ts, r["lat"], r["lon"], rec.cell, rec.zones, r)
            return None
        if t is Arrival:
            self._apply_arrival(rec)
            return None
        if t is Tiers:
            self._apply_tiers(rec)
            return None
        is_call = t is ZoneCall
        eid = rec.call_id if is_call else rec.alert_id
        ts = rec.ts
        if self.seen.seen(id_hash("c" if is_call else "a", eid), ts, self.clock, self._hits):
            return False
        zones = rec.zones
        if not is_call:  # an alert also places its camera (in no zone, too)
            self._apply_camera(rec.camera_id, ts, tuple(zones), rec.presence)
        if not zones:
            return True
        date = self.days.date_of(ts)
        hour = self.days.hour_of(ts)
        counted = self._day_open(date)  # a day whose zones.daily record is final takes nothing more
        minute = ts // MINUTE_MS
        keep_bucket = minute > self.clock // MINUTE_MS - KEEP_MINUTES
        # the event's first zone is the first of the primary copy's zones (streams/routing.py):
        # there it also counts in `once`, the figures that count it once overall
        first = zones[0] if rec.primary else None
        if is_call:
            cat, prio, lang = rec.category, rec.priority, rec.lang
            for zid in zones:
                agg = self.zones[zid]
                day = agg.days.get(date) if counted else None
                if day is None and counted:
                    day = agg.days[date] = DayCounts()
                if day is not None:
                    for d in (day, day.first()) if zid == first else (day,):
                        d.calls += 1
                        d.by_category[cat] += 1
                        d.by_priority[prio] += 1
                        d.by_lang[lang] += 1
                        d.hourly_calls[hour] += 1
                    day.changed = True
                inc = agg.incidents.get(eid)
                if inc is None:
                    agg.incidents[eid] = [ts, prio, None, None]
                else:  # the arrival was decided before the call reached this partition
                    inc[0], inc[1] = ts, prio
                if zid == first:
                    agg.firsts.add(eid)
                    if inc is not None and inc[2] is not None:
                        self._first_response(agg, eid, ts, inc[2])
                heapq.heappush(self.deadlines, (ts + BREACH_AFTER_MS, zid, eid))
                agg.resp_cache = None
                if ts > agg.last_ts.get("calls", 0):
                    agg.last_ts["calls"] = ts
                if keep_bucket:
                    b = agg.minutes.get(minute)
                    if b is None:
                        b = agg.minutes[minute] = MinuteBucket()
                    b.calls += 1
                    if prio == 1:
                        b.calls_p1 += 1
                self.dirty.add(zid)
        else:
            typ = rec.type
            for zid in zones:
                agg = self.zones[zid]
                day = agg.days.get(date) if counted else None
                if day is None and counted:
                    day = agg.days[date] = DayCounts()
                if day is not None:
                    for d in (day, day.first()) if zid == first else (day,):
                        d.alerts += 1
                        d.by_type[typ] += 1
                        d.hourly_alerts[hour] += 1
                    day.changed = True
                if ts > agg.last_ts.get("alerts", 0):
                    agg.last_ts["alerts"] = ts
                if keep_bucket:
                    b = agg.minutes.get(minute)
                    if b is None:
                        b = agg.minutes[minute] = MinuteBucket()
                    b.alerts += 1
                    b.by_type[typ] += 1
                self.dirty.add(zid)
        return True

    def keep_lookback(self, recs) -> None:
        """Rebuild the look-back memory from the records of a batch a snapshot already covers
        (recovery): fixes and alerts held for arrivals and corroboration, and the per-unit fix
        memory of the primary copies (as `apply` keeps it). A takeover runs this over the whole
        look-back (grace + 10 min of log), so fixes older than the held ones are skipped here."""
        inc = self.incidents
        keep_from = inc.keep_from
        keep_fix = inc.keep_fix
        seen_fix = self.seen_fix
        for rec in recs:
            t = type(rec)
            if t is IncidentFix:
                if rec.ts >= keep_from:
                    keep_fix(rec.unit_id, rec.ts, rec.lat, rec.lon, rec.cell, rec.available, rec.kind)
            elif t is ZoneFix:
                if rec.primary:
                    seen = seen_fix.get(rec.unit_id)
                    if seen is None:
                        seen_fix[rec.unit_id] = {rec.ts}
                        heapq.heappush(self._fix_expiry, (rec.ts, rec.unit_id))
                    else:
                        seen.add(rec.ts)
            elif t is IncidentAlert:
                inc.keep_alert(rec.alert_id, rec.ts, rec.type, rec.lat, rec.lon, rec.cell)

    def _apply_arrival(self, rec: Arrival) -> None:
        call_id, call_ts, response = rec.call_id, rec.call_ts, rec.response_s
        for zid in rec.zones:
            agg = self.zones[zid]
            inc = agg.incidents.get(call_id)
            if inc is None:
                agg.incidents[call_id] = [call_ts, None, response, None]
                old = None
            elif inc[2] is None or response < inc[2]:
                old = inc[2]
                inc[2] = response  # the earliest arrival by event time wins, in any order
            else:
                continue
            agg.resp_cache = None
            self.dirty.add(zid)
            # the day's decisions (zones.daily): an arrival is decided at its fix's ts
            if old is not None:
                d = agg.days.get(self.days.date_of(call_ts + round(old * 1000)))
                if d is not None and d.responses.pop(call_id, None) is not None:
                    if d.once is not None:
                        d.once.responses.pop(call_id, None)
                    d.changed = True
            if response <= BREACH_AFTER_MS / 1000:
                # the arrival looped back after this partition's watermark passed the deadline (a
                # replay at full speed): the incidents stage decided no breach, so neither does the day
                due = agg.days.get(self.days.date_of(call_ts + BREACH_AFTER_MS))
                if due is not None and call_id in due.breaches:
                    due.breaches.discard(call_id)
                    if due.once is not None:
                        due.once.breaches.discard(call_id)
                    due.changed = True
            day = self._day(agg, call_ts + round(response * 1000))
            if day is not None:
                day.responses[call_id] = response
                if call_id in agg.firsts:
                    day.first().responses[call_id] = response
                day.changed = True

    def _apply_tiers(self, rec: Tiers) -> None:
        """A call's on-scene tiers (decided once by the incidents stage; a copy delivered again
        changes nothing): `met` against each zone's own requirement (CONTRACT §3, §10)."""
        on_scene = list(rec.on_scene)
        decided = rec.call_ts + TIERS_DECIDED_MS
        for zid in rec.zones:
            agg = self.zones[zid]
            inc = agg.incidents.get(rec.call_id)
            if inc is None:   # decided before the call reached this partition
                agg.incidents[rec.call_id] = [rec.call_ts, None, None, on_scene]
            elif inc[3] is None:
                inc[3] = on_scene
            else:
                continue
            agg.resp_cache = None
            self.dirty.add(zid)
            day = self._day(agg, decided)   # zones.daily: on the day of its decision
            if day is not None:
                day.tiers[rec.call_id] = tiers_met(on_scene, self.tiers_required[zid])
                day.changed = True

    def _first_response(self, agg: ZoneAgg, call_id: str, call_ts: int, response: float) -> None:
        """The call arrived after its arrival was decided, and this is its first zone: the decision,
        recorded on its own day already, counts in that day's `once` too."""
        day = agg.days.get(self.days.date_of(call_ts + round(response * 1000)))
        if day is not None and call_id in day.responses:
            day.first().responses[call_id] = response
            day.changed = True

    def _day_open(self, date: str) -> bool:
        """Whether the day's zones.daily record is not final yet (CONTRACT §4)."""
        return self.clock < self.days.end_of(date) + self.grace_ms

    def _day(self, agg: ZoneAgg, ts: int) -> DayCounts | None:
        """The zone's day holding a decision at ts: its record until that is taken final, or a new
        one while no record of that date was taken final; None otherwise. A decision falls on its own
        time, so the clock jumping past the day's close before it is decided (in the same batch, or
        before the arrival record loops back) loses nothing: the day's record is then written final
        with it (test_briefing_overall's property test found a breach at midnight lost that way)."""
        date = self.days.date_of(ts)
        day = agg.days.get(date)
        if day is None and date > self.final_through:
            day = agg.days[date] = DayCounts()
        return day

    def _saw(self, zid: str, source: str, ts: int) -> None:
        agg = self.zones[zid]
        if ts > agg.last_ts.get(source, 0):
            agg.last_ts[source] = ts
            self.dirty.add(zid)

    def _apply_camera(self, cam: str, ts: int, zones: tuple[str, ...], newest: bool) -> None:
        """A camera's report (alert or status). Its newest report places it, like a unit's fix;
        whether it is online is what its latest status report said (online until one says not)."""
        prev = self.camera_latest.get(cam)
        status = self.camera_status.get(cam)
        online = True if status is None else status[1]
        if newest and (prev is None or ts > prev[0]):
            self.camera_latest[cam] = (ts, zones, online)
            if prev is not None:
                for zid in prev[1]:
                    if zid not in zones:
                        self.zones[zid].cameras.pop(cam, None)
                        self.dirty.add(zid)
            for zid in zones:
                self.zones[zid].cameras[cam] = (ts, online)
                self.dirty.add(zid)
        elif prev is not None and prev[2] != online:
            self.camera_latest[cam] = (prev[0], prev[1], online)
            for zid in prev[1]:
                self.zones[zid].cameras[cam] = (prev[0], online)
                self.dirty.add(zid)

    def _apply_fix(self, unit: str, ts: int, zones: tuple[str, ...], status: str,
                   force: str = DEFAULT_FORCE) -> bool:
        """The unit's fix if it is its newest here (True); an older one decides nothing."""
        prev = self.unit_latest.get(unit)
        if prev is not None and prev[0] >= ts:
            return False
        self.unit_latest[unit] = (ts, zones, status)
        if prev is not None:
            for zid in prev[1]:
                if zid not in zones:
                    self.zones[zid].units.pop(unit, None)
                    self.dirty.add(zid)
        for zid in zones:
            self.zones[zid].units[unit] = (ts, status, force)
            self.dirty.add(zid)
        return True

    # -- output ----------------------------------------------------------------------------
    def figures(self, agg: ZoneAgg) -> dict:
        """The zone-state document without `version` and `clock`."""
        z = agg.zone
        clock = self.clock
        wm = self.wm
        date = self.days.date_of(clock)
        day = agg.days.get(date) or DayCounts()
        cm = clock // MINUTE_MS
        windows = {}
        for name, n in WINDOWS:
            calls = p1 = alerts = 0
            by_type: dict[str, int] = {}
            for m in range(cm - n + 1, cm + 1):
                b = agg.minutes.get(m)
                if b is None:
                    continue
                calls += b.calls
                p1 += b.calls_p1
                alerts += b.alerts
                for t, c in b.by_type.items():
                    by_type[t] = by_type.get(t, 0) + c
            windows[name] = {"calls": calls, "calls_p1": p1, "alerts": alerts,
                             "alerts_by_type": dict(sorted(by_type.items()))}
        # The clock (watermark) at which these figures next change by time alone: windows slide
        # at the next minute, the day rolls at local midnight, a fix goes stale, an incident
        # leaves the 60-min response window (clock); an incident breaches or expires (watermark).
        # Until then a flush can skip this zone.
        valid_until = self.days.next_midnight(clock)  # `today.date` changes even with no counts
        if agg.minutes:
            valid_until = min(valid_until, (cm + 1) * MINUTE_MS)
        present = available = quiet = 0
        by_force = dict.fromkeys(FORCES, 0)
        fresh_after = clock - self.unit_stale_ms
        quiet_after = clock - UNIT_QUIET_MS
        for ts, status, force in agg.units.values():
            if ts >= fresh_after:
                present += 1
                by_force[force] = by_force.get(force, 0) + 1
                if status == "available":
                    available += 1
                if ts + self.unit_stale_ms + 1 < valid_until:
                    valid_until = ts + self.unit_stale_ms + 1
            elif ts >= quiet_after:
                quiet += 1
                if ts + UNIT_QUIET_MS + 1 < valid_until:
                    valid_until = ts + UNIT_QUIET_MS + 1
        known = silent = 0
        for ts, online in agg.cameras.values():
            if ts >= clock - CAMERA_KNOWN_MS:
                known += 1
                if ts + CAMERA_KNOWN_MS + 1 < valid_until:
                    valid_until = ts + CAMERA_KNOWN_MS + 1
                if not online or ts < clock - self.camera_silent_ms:
                    silent += 1
                elif ts + self.camera_silent_ms + 1 < valid_until:
                    valid_until = ts + self.camera_silent_ms + 1
        # the ts itself, not its age: the document changes when an event comes or the ts leaves the
        # 24 h horizon, not with every second of the clock (issue 22; readers compute the age)
        last_event: dict[str, int | None] = {}
        for source in LAST_EVENT_SOURCES:
            last = agg.last_ts.get(source)
            if last is None or clock - last > EVENT_AGE_HORIZON_MS:
                last_event[source] = None
            else:
                last_event[source] = last
                if last + EVENT_AGE_HORIZON_MS + 1 < valid_until:
                    valid_until = last + EVENT_AGE_HORIZON_MS + 1
        coverage, coverage_until = self.coverage.doc(z.zone_id, clock)
        if coverage_until < valid_until:
            valid_until = coverage_until
        cache = agg.resp_cache
        if cache is None or clock >= cache[3] or wm >= cache[4] or clock < cache[5] or wm < cache[6]:
            cache = agg.resp_cache = (*self._response(agg, clock, wm), clock, wm)
        response, open_all, open_p1, until_clock, until_wm, _c, _w = cache
        response = dict(response)
        agg.valid_until = min(valid_until, until_clock)
        agg.valid_until_wm = until_wm
        doc = {
            "zone_id": z.zone_id, "name": z.name, "kind": z.kind, "ring": z.ring,
            "today": {
                "date": date,
                "calls": day.calls,
                "calls_by_category": dict(sorted(day.by_category.items())),
                "calls_by_priority": {str(k): v for k, v in sorted(day.by_priority.items())},
                "calls_by_lang": dict(sorted(day.by_lang.items())),
                "alerts": day.alerts,
                "alerts_by_type": dict(sorted(day.by_type.items())),
            },
            "windows": windows,
            "units": {"present": present, "available": available, "by_force": by_force},
            "response": response,
            "open_incidents": open_all,
            "health": {"cameras_known": known, "cameras_silent": silent, "units_quiet": quiet,
                       "last_event_ts": last_event},
            "reach": self.reach.doc(z.zone_id),
            "coverage": coverage,
        }
        if self.duty_zones is not None:
            doc["posts"] = self.duty_zones.counts(z.zone_id)   # CONTRACT §10: absent without a plan
        doc["level"] = self.rules.level(doc, open_p1=open_p1)
        return doc

    def _response(self, agg: ZoneAgg, clock: int, wm: int) -> tuple[dict, int, int, float, float]:
        """`response` of the last 60 min, open incidents, open priority-1 incidents, and the
        clock and the watermark at which these change next by time alone. Breaches and expiry
        are on the watermark (CONTRACT §3 "Decision time"), the 60-minute window on the clock."""
        since = clock - RESPONSE_WINDOW_MS
        responses = []
        breaches = open_all = open_p1 = decided_tiers = met_tiers = 0
        required = self.tiers_required[agg.zone.zone_id]
        until = until_wm = INF
        for ts, prio, resp, on_scene in agg.incidents.values():
            if on_scene is not None:   # on-scene tiers, decided at call ts + 300 s (the watermark)
                decided = ts + TIERS_DECIDED_MS
                if since < decided <= clock:
                    decided_tiers += 1
                    met_tiers += tiers_met(on_scene, required)
                    until = min(until, decided + RESPONSE_WINDOW_MS)
                elif decided > clock:
                    until = min(until, decided)
            if prio is None and resp is None:
                continue   # only its tiers are known here yet: the call decides the rest
            if resp is not None:
                decided = ts + resp * 1000
                if since < decided <= clock:
                    responses.append(resp)
                    until = min(until, math.floor(decided) + RESPONSE_WINDOW_MS)  # leaves the window
                elif decided > clock:
                    until = min(until, math.ceil(decided))  # enters it
            elif prio is not None and wm < ts + EXPIRE_AFTER_MS:
                open_all += 1
                until_wm = min(until_wm, ts + EXPIRE_AFTER_MS)
                if prio == 1:
                    open_p1 += 1
            due = ts + BREACH_AFTER_MS
            if resp is None or resp > BREACH_AFTER_MS / 1000:
                if due <= wm:
                    if since < due:
                        breaches += 1
                        until = min(until, due + RESPONSE_WINDOW_MS)
                else:
                    until_wm = min(until_wm, due)
        out = empty_response()
        if responses:
            responses.sort()
            n = len(responses)
            out.update(arrived=n,
                       within_1m=sum(1 for r in responses if r <= 60),
                       within_3m=sum(1 for r in responses if r <= 180),
                       within_5m=sum(1 for r in responses if r <= 300),
                       p50_s=nearest_rank(responses, 50), p90_s=nearest_rank(responses, 90))
        out["breaches"] = breaches
        out["tiers_met"], out["tiers_decided"] = met_tiers, decided_tiers
        return out, open_all, open_p1, until, until_wm

    def changed_documents(self, all_zones: bool = False, refresh_clock: bool = False) -> list[dict]:
        """Documents of zones whose figures changed since the last call, with version and clock.

        When the clock moved, any zone may have changed (windows slide, fixes go stale, the day
        rolls over), so the caller passes all_zones=True and unchanged figures are filtered here.
        refresh_clock=True also rewrites zones whose figures are unchanged but whose written
        `clock` is behind: the caller does that once input pauses, so that every document
        reflects the final clock without rewriting every zone on every tick of a busy stream.
        """
        if self.clock == 0:
            return []
        # reach: dirty zones whose turn came (every 10 s of stream clock), all of them when input pauses
        self.dirty |= self.reach.due(self.clock, force=refresh_clock)
        dirty = self.dirty
        self.dirty = set()
        names = self.zones.keys() if (all_zones or refresh_clock) else dirty
        clock, wm = self.clock, self.wm
        out = []
        for zid in names:
            agg = self.zones[zid]
            if zid not in dirty and clock < agg.valid_until and wm < agg.valid_until_wm \
                    and agg.last_figures is not None and not (refresh_clock and agg.last_clock != clock):
                continue  # nothing of this zone changed and time crossed none of its thresholds
            fig = self.figures(agg)
            if fig == agg.last_figures and not (refresh_clock and agg.last_clock != clock):
                continue
            agg.last_figures = fig
            agg.last_clock = clock
            agg.version += 1
            doc = {"zone_id": fig["zone_id"], "name": fig["name"], "kind": fig["kind"],
                   "ring": fig["ring"], "version": agg.version, "clock": clock,
                   "level": fig["level"], "today": fig["today"], "windows": fig["windows"],
                   "units": fig["units"], "response": fig["response"],
                   "open_incidents": fig["open_incidents"], "health": fig["health"], "reach": fig["reach"],
                   "coverage": fig["coverage"]}
            if "posts" in fig:
                doc["posts"] = fig["posts"]
            out.append(doc)
        return out

    def daily_docs(self, final_after_ms: int) -> list[tuple[str, str, dict]]:
        """(date, zone_id, zones.daily record) of every zone-day changed since it was last taken,
        and of every day now final (the clock passed its next local midnight + final_after_ms).
        Nothing changes until `daily_taken` is called with what was delivered."""
        out = []
        clock = self.clock
        for zid, agg in self.zones.items():
            for date, day in agg.days.items():
                final = clock >= self.days.end_of(date) + final_after_ms
                if day.changed or final:
                    out.append((date, zid, self._daily_doc(agg, date, day, final)))
        return out

    def daily_taken(self, docs: list[tuple[str, str, dict]]) -> None:
        for date, zid, doc in docs:
            agg = self.zones[zid]
            day = agg.days.get(date)
            if day is None:
                continue
            day.version = doc["version"]
            day.changed = False
            if doc["final"]:
                del agg.days[date]
                self.final_through = max(self.final_through, date)

    def _daily_doc(self, agg: ZoneAgg, date: str, day: DayCounts, final: bool) -> dict:
        z = agg.zone
        once = _day_figures(day.once or DayCounts(), tiers=False)
        # every response time once, in whole seconds: merged over zones, their nearest-rank
        # percentiles are the overall p50/p90 (rounding keeps the order, so it commutes with rank)
        times: dict[int, int] = {}
        for r in (day.once.responses.values() if day.once is not None else ()):
            times[round(r)] = times.get(round(r), 0) + 1
        once["response"]["times"] = {str(s): n for s, n in sorted(times.items())}
        rec = {"date": date, "zone_id": z.zone_id, "name": z.name, "kind": z.kind, "ring": z.ring,
               "tz": self.tz_name, "final": final, "clock": self.clock, "version": day.version + 1,
               **_day_figures(day), "once": once}
        if self.duty_zones is not None:   # CONTRACT §10: post-minutes and checkpoint misses of the day
            rec.update(self.duty_zones.daily(z.zone_id, self.days.start_of(date), self.days.end_of(date)))
        return rec

    def rewrite_all(self) -> int:
        """Make the next changed_documents() return every zone (Redis lost them, or a new owner)."""
        for zid, agg in self.zones.items():
            agg.last_figures = None
            self.dirty.add(zid)
        if self.duty is not None:
            self.duty.rewrite_all()
        return len(self.zones)

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The state as plain data (msgpack-able). Look-back memory (fixes and alerts held for
        the grace, per-unit fix memory) is not in it: recovery rebuilds it from the log."""
        return {
            "v": 1, "clock": self.clock, "wm": self.wm, "last_pruned": self._last_pruned,
            "final_through": self.final_through,
            "zones": {zid: [{d: c.dump() for d, c in agg.days.items()},
                            {m: b.dump() for m, b in agg.minutes.items()},
                            agg.units, agg.incidents, agg.cameras, agg.last_ts, sorted(agg.firsts)]
                      for zid, agg in self.zones.items()},
            "unit_latest": {u: [ts, list(z), s] for u, (ts, z, s) in self.unit_latest.items()},
            "camera_latest": {c: [ts, list(z), o] for c, (ts, z, o) in self.camera_latest.items()},
            "camera_status": self.camera_status,
            # the sealed dedup hours are written apart, once each (streams/recovery.py)
            "seen": self.seen.snapshot(),
            "incidents": self.incidents.snapshot(),
            "reach": self.reach.snapshot(),
            "watermark": self.watermark.snapshot(),
            "coverage": self.coverage.snapshot(self.clock),
            "duty": self.duty.snapshot() if self.duty is not None else None,
            "duty_zones": self.duty_zones.snapshot() if self.duty_zones is not None else None,
        }

    def restore(self, snap: dict, sealed: dict[int, bytes]) -> None:
        """Load a snapshot (and its sealed dedup hours) into this fresh state."""
        self.clock, self.wm, self._last_pruned = snap["clock"], snap["wm"], snap["last_pruned"]
        # an older snapshot: the days final by its clock (the rule before final_through)
        self.final_through = snap.get("final_through", self.days.date_of(self.clock - self.grace_ms - 86_400_000)
                                      if self.clock else "")
        for zid, (days, minutes, units, incidents, cameras, last_ts, *firsts) in snap["zones"].items():
            agg = self.zones.get(zid)
            if agg is None:
                continue  # a zone no longer in the zones file
            # an older worker's snapshot has no firsts: its calls in flight miss from `once`
            agg.firsts = set(firsts[0]) if firsts else set()
            agg.days = {d: DayCounts.load(c) for d, c in days.items()}
            agg.minutes = {int(m): MinuteBucket.load(b) for m, b in minutes.items()}
            # a snapshot of the code before v3: units without force (police then), incidents without tiers
            agg.units = {u: (v[0], v[1], v[2] if len(v) > 2 else DEFAULT_FORCE) for u, v in units.items()}
            agg.incidents = {c: list(v) if len(v) > 3 else [*v, None] for c, v in incidents.items()}
            agg.cameras = {c: tuple(v) for c, v in cameras.items()}
            for call_id, (ts, prio, _resp, _tiers) in agg.incidents.items():
                if prio is not None and ts + BREACH_AFTER_MS > self.wm:
                    heapq.heappush(self.deadlines, (ts + BREACH_AFTER_MS, zid, call_id))
            agg.last_ts = dict(last_ts)
        self.unit_latest = {u: (ts, tuple(z for z in zones if z in self.zones), s)
                            for u, (ts, zones, s) in snap["unit_latest"].items()}
        self.camera_latest = {c: (ts, tuple(z for z in zones if z in self.zones), o)
                              for c, (ts, zones, o) in snap["camera_latest"].items()}
        self.camera_status = {c: tuple(v) for c, v in snap["camera_status"].items()}
        self.seen = IdMemory.restore(snap["seen"], sealed)
        self.incidents = IncidentState.restore(snap["incidents"], self.grace_ms, self.unit_stale_ms,
                                               self.tier_requirement)
        self.reach.restore(snap["reach"])
        self.watermark.restore(snap.get("watermark"))
        self.coverage.restore(snap.get("coverage"))
        if self.duty is not None:
            self.duty.restore(snap.get("duty"))
        if self.duty_zones is not None:
            self.duty_zones.restore(snap.get("duty_zones"))

    # -- the duty plan (streams/duty.py) ------------------------------------------------------
    def _apply_duty(self, rec: PhaseCommand | DutyNote) -> None:
        """An operator's phase command (for this partition's posts), or a post's status or a
        checkpoint's overdue decided by its owner (for this partition's zones)."""
        if type(rec) is PhaseCommand:
            if self.duty is not None:
                self.duty.on_command(rec.command_id, rec.ts, rec.name, rec.by)
            return
        if self.duty_zones is None:
            return
        for zid, start, end in self.duty_zones.apply(rec):
            self.dirty.add(zid)
            agg = self.zones[zid]
            t = start
            while True:   # every day the note's period touches: its zones.daily record changed
                day = self._day(agg, t)
                if day is not None:
                    day.changed = True
                nxt = self.days.next_midnight(t)
                if nxt > end:
                    break
                t = nxt

    # -- housekeeping ----------------------------------------------------------------------
    def _prune(self) -> None:
        clock = self.clock
        self._last_pruned = clock
        # days leave through zones.daily (daily_taken, once final); a day this old never will
        oldest_day = self.days.date_of(clock - 3 * 24 * 3_600_000)
        oldest_minute = clock // MINUTE_MS - KEEP_MINUTES
        if self.duty_zones is not None:
            self.duty_zones.prune(clock - 3 * 24 * 3_600_000)
        for agg in self.zones.values():
            for d in [d for d in agg.days if d < oldest_day]:
                del agg.days[d]
            for m in [m for m in agg.minutes if m <= oldest_minute]:
                del agg.minutes[m]
        oldest_incident = clock - INCIDENT_KEEP_MS
        for agg in self.zones.values():
            if agg.incidents:
                for cid in [c for c, inc in agg.incidents.items() if inc[0] < oldest_incident]:
                    del agg.incidents[cid]
                    agg.firsts.discard(cid)
                    agg.resp_cache = None
        gone = clock - UNIT_QUIET_MS
        for unit, (ts, zones, _status) in list(self.unit_latest.items()):
            if ts < gone:
                # Fixes older than the quiet horizon count nowhere; forgetting them keeps memory
                # bounded by live units.
                del self.unit_latest[unit]
                for zid in zones:
                    self.zones[zid].units.pop(unit, None)
        known = clock - CAMERA_KNOWN_MS
        for cam, (ts, zones, _online) in list(self.camera_latest.items()):
            if ts < known:
                del self.camera_latest[cam]
                self.camera_status.pop(cam, None)
                self.seen_status.pop(cam, None)
                for zid in zones:
                    self.zones[zid].cameras.pop(cam, None)
        # the fix memory of units silent for ZONEWATCH_UNIT_FORGET_S (each unit looked at about once
        # per that period, not on every prune)
        horizon = clock - self.unit_forget_ms
        expiry, seen_fix = self._fix_expiry, self.seen_fix
        while expiry and expiry[0][0] < horizon:
            _ts, unit = heapq.heappop(expiry)
            seen = seen_fix.get(unit)
            if seen is not None:
                newest = max(seen)
                if newest < horizon:
                    del seen_fix[unit]
                else:
                    heapq.heappush(expiry, (newest, unit))
        # status reports of cameras this partition never placed (none of their reports here was their
        # newest): the placed ones leave with camera_latest above
        placed = self.camera_latest
        for cam in [c for c, v in self.camera_status.items() if c not in placed and v[0] < known]:
            del self.camera_status[cam]
        for cam in [c for c, ts in self.seen_status.items() if c not in placed and max(ts) < known]:
            del self.seen_status[cam]
