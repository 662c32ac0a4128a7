"""Stage 1, the pure part: raw input messages -> validated events -> zones -> records by partition.

No Kafka, no Redis: `Router.route` takes aiokafka-like records (topic, partition, offset, key,
value, timestamp) and returns the zone-events records per partition (streams/records.py), the
dead letters and the latest unit fixes. `streams/ingest.py` does the I/O around it.
"""

from __future__ import annotations

import re
import time

import numpy as np
import orjson

from contract import topics
from contract.errors import Rejected
from contract.events import caller_ref
from contract.plan import load_plan, validate_phase_command
from contract.response import ARRIVAL_RADIUS_M, CORROBORATION_RADIUS_M, COVERAGE_RES, DISPATCH_EXACT_M
from contract.settings import Settings

from .columns import decode_topic
from .coverage import coverage_cells
from .partitioning import FINE_RES, HomeCells, HomeMap, layout_version, partition_of, zone_partitions
from .reach import grid_key, reach_keys
from .records import (
    IncidentAlert,
    IncidentCall,
    IncidentFix,
    PhaseCommand,
    ZoneAlert,
    ZoneCall,
    ZoneFix,
    ZoneStatus,
    encode_split,
)
from .zone_index import ZoneIndex


class Router:
    """Raw messages in, per-partition record lists and dead letters out."""

    def __init__(self, settings: Settings, index: ZoneIndex, reach_cells: dict | None = None):
        self.s = settings
        self.index = index
        self.n = settings.partitions
        self.zone_part = zone_partitions(index.zones.values(), self.n)
        # unit-grid key -> partitions with a zone an available unit there may reach (CONTRACT §3
        # "Reach": any unit, not only those inside the zone, counts)
        reach: dict[int, set[int]] = {}
        for zid, z in index.zones.items():
            for k in reach_keys(z, (reach_cells or {}).get(zid)):
                reach.setdefault(k, set()).add(self.zone_part[zid])
        self.reach_parts = {k: tuple(sorted(v)) for k, v in reach.items()}
        self.cover_parts = coverage_partitions(index, self.zone_part)
        # unit -> (ts of its latest fix seen here, partitions that fix was sent to). A new fix
        # also goes to the partitions of the previous one so they learn the unit left. After a
        # restart this map is empty, and a unit's first fix is sent to every partition.
        self.units: dict[str, tuple[int, tuple[int, ...]]] = {}
        # unit -> the home partitions its newest fix went to for dispatch (() when it was not
        # available): its next fix goes there too, see `route`
        self.unit_homes: dict[str, tuple[int, ...]] = {}
        # unit -> fine cell of its latest fix known from zw:unit-info (load_units), until its next
        # fix here computes those homes (0.14 ms a unit: not all at a start, beside a takeover)
        self.loaded_cells: dict[str, int] = {}
        # the same for cameras (their latest report, alert or status, places them)
        self.cameras: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.all_parts = tuple(range(self.n))
        self.clock = 0
        self.base_topic = {settings.topic(t): t for t in topics.INPUT_TOPICS}  # prefixed -> contract name
        home_map = HomeMap(index.zones.values(), self.n)
        self.homes = HomeCells(self.n, home_map)
        self.layout = layout_version(self.zone_part, home_map)   # in every zone-events batch
        self.tp_ts: dict[tuple[str, int], int] = {}  # (topic, partition) -> ts of its last valid event
        self.gps_topic = settings.topic(topics.GPS)
        # patrol.gps partition -> [largest ts accepted, wall ms of its last delivery] (the watermark)
        self.gps_marks: dict[int, list[int]] = {}
        # unit -> (ts, lat, lon, status, kind) of its latest fix, to restore Redis after a loss
        self.positions: dict[str, tuple] = {}
        # No secret configured: the number is dropped, not hashed with a guessable key.
        self.secret = settings.caller_secret.encode("utf-8") if settings.caller_secret else b""
        # --- the duty plan (streams/duty.py): a post's partition needs every fix within its radius
        # and the unit's next fix after one, whatever the unit's status: a fix that is not available
        # goes to the homes within the plan's largest radius (not only the arrival radius), and the
        # unit's next fix there too (available fixes already reach DISPATCH_EXACT_M, beyond any post)
        self.plan = load_plan(settings.plan, settings.tz) if settings.plan else None
        self.duty_m = self.plan.max_radius_m if self.plan else 0.0
        self.near_m = max(ARRIVAL_RADIUS_M, self.duty_m)
        self.base_topic[settings.topic(topics.PLAN_COMMANDS)] = topics.PLAN_COMMANDS

    def load_units(self, latest: dict[str, tuple[int, float, float]]) -> None:
        """Start from the units' latest fixes known elsewhere (zw:unit-info): a fix older than
        those is then known not to decide presence, even right after a restart."""
        for unit, (ts, lat, lon) in latest.items():
            prev = self.units.get(unit)
            if prev is None or ts > prev[0]:
                cell, zones = self.index.lookup_cell(lat, lon)
                parts = {self.zone_part[z] for z in zones} | set(self.reach_parts.get(grid_key(lat, lon), ()))
                self.units[unit] = (ts, tuple(sorted(parts)))
                # its status is not known here: as if available (a superset, see `route`)
                self.loaded_cells[unit] = cell
                self.unit_homes.pop(unit, None)

    def forget(self, before_ts: int) -> int:
        """Forget units and cameras whose latest report is older than before_ts (memory stays
        bounded by live devices; one that reports again starts afresh)."""
        units = [u for u, (ts, _p) in self.units.items() if ts < before_ts]
        for u in units:
            del self.units[u]
            self.positions.pop(u, None)
            self.unit_homes.pop(u, None)
            self.loaded_cells.pop(u, None)
        cams = [c for c, (ts, _p) in self.cameras.items() if ts < before_ts]
        for c in cams:
            del self.cameras[c]
        return len(units) + len(cams)

    def forget_silent(self) -> int:
        """`forget` what fell silent ZONEWATCH_UNIT_FORGET_S of stream clock ago (the worker's sweep,
        IngestStage.forget_silent); the cut."""
        before = self.clock - self.s.unit_forget_ms
        self.forget(before)
        return before

    def zone_events(self, out: dict[int, list], prev_clock: int, wall: int) -> dict[int, list[bytes]]:
        """The zone-events messages of a routed batch for every partition, with or without records:
        each carries the patrol.gps marks and the ingest's time, on which each partition's state
        moves its watermark (streams/watermark.py). With nothing routed (`out` empty) it is the
        ingest's heartbeat."""
        marks = self.marks()
        return {p: encode_split(out.get(p, []), self.clock, prev_clock, gps=marks, wall=wall, layout=self.layout)
                for p in range(self.n)}

    def forget_devices(self) -> None:
        """A rebalance: what this ingest remembers of units and cameras (where their previous
        report went) may be stale — a partition read elsewhere meanwhile routed their later reports
        — so it starts afresh, as after a restart (then `load_units`)."""
        self.units.clear()
        self.unit_homes.clear()
        self.loaded_cells.clear()
        self.cameras.clear()

    def marks(self) -> list[tuple[int, int, int]]:
        """[patrol.gps partition, largest ts, wall ms of its last delivery] (zone-events batches)."""
        return [(p, ts, wall) for p, (ts, wall) in self.gps_marks.items()]

    def still_delivering(self, partitions, now_ms: int) -> None:
        """patrol.gps partitions with records not read yet count as delivering: a feed that
        has data waiting has not stopped, even while this ingest was too busy (or the broker too
        slow) to fetch it; only a feed that is caught up and silent goes idle for the watermark."""
        for p in partitions:
            mark = self.gps_marks.get(p)
            if mark is not None:
                mark[1] = now_ms

    def route(self, messages, now_ms: int | None = None) -> tuple[dict[int, list], list, dict, dict]:
        """messages: iterable of aiokafka ConsumerRecord (topic, partition, offset, key, value, timestamp).

        Returns (records by partition, dead letters, rejected counts by source, latest unit fixes).
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        out: dict[int, list] = {}
        dead: list = []
        rejected: dict[str, int] = {}
        units_latest: dict[str, tuple] = {}
        max_ts = now_ms + self.s.future_tolerance_ms
        zone_part = self.zone_part
        homes = self.homes
        n = self.n
        clock = self.clock
        tp_ts = self.tp_ts
        unit_homes = self.unit_homes
        messages = messages if isinstance(messages, list) else list(messages)
        base = [self.base_topic[m.topic] for m in messages]
        evs, cells, zones_of = self._columns(messages, base, max_ts)
        for i, m in enumerate(messages):
            topic = base[i]
            if topic == topics.PLAN_COMMANDS:   # an operator's phase command: every partition (duty.py)
                self._command(m, out, dead, rejected, max_ts)
                continue
            ev = evs[i]
            if type(ev) is str:   # the contract's reason (streams/columns.py)
                src = topics.SOURCE_OF_TOPIC[topic]
                rejected[src] = rejected.get(src, 0) + 1
                dead.append((m, ev))
                continue
            if topic == topics.CALLS:
                ts, lat, lon = ev["ts"], ev["lat"], ev["lon"]
            else:
                ts, lat, lon = ev.ts, ev.lat, ev.lon
            if ts > clock:
                clock = ts
            tp_ts[m.topic, m.partition] = ts
            cell, zones = cells[i], zones_of[i]
            kts = m.timestamp
            if topic == topics.CALLS:
                eid = ev["call_id"]
                # incidents stage: the call, enriched as far as ingest can, to its home partition
                _append(out, homes.own(cell), IncidentCall(eid, ts, list(zones), kts, cell,
                                                           self.enriched_base(ev, zones)))
            elif topic == topics.ALERTS:
                eid = ev.alert_id
                inc = IncidentAlert(eid, ts, lat, lon, ev.type, cell)
                for p in homes.within(cell, CORROBORATION_RADIUS_M):
                    _append(out, p, inc)
            elif topic == topics.STATUS:
                eid = ev.camera_id
            else:
                eid = ev.unit_id
                available = ev.status == "available"
                # Arrivals need the fix within ARRIVAL_RADIUS_M of a call; the dispatch
                # recommendation needs every available unit's position at the call's ts within
                # DISPATCH_EXACT_M, and to learn when a unit it holds there moved away or turned
                # busy: so an available fix goes to the homes within DISPATCH_EXACT_M, and every
                # fix also to those its unit's previous fix went to (all partitions when this
                # ingest knows no previous fix of the unit).
                own = homes.within(cell, DISPATCH_EXACT_M if available else self.near_m)
                before = unit_homes.get(eid)
                if before is None and self.loaded_cells:
                    loaded = self.loaded_cells.pop(eid, None)
                    if loaded is not None:
                        before = homes.within(loaded, DISPATCH_EXACT_M)
                if before is None:
                    targets = self.all_parts
                elif before == own or not before:
                    targets = own
                else:
                    targets = tuple(sorted(set(own) | set(before)))
                fix = IncidentFix(eid, ts, lat, lon, cell, available, ev.kind, ev.status, ev.force)
                for p in targets:
                    _append(out, p, fix)
                prev = self.units.get(eid)   # also read below for presence (not updated in between)
                if prev is None or ts > prev[0]:
                    unit_homes[eid] = own if available or self.duty_m else ()
            by_part: dict[int, list[str]] = {}
            for zid in zones:
                p = zone_part[zid]
                lst = by_part.get(p)
                if lst is None:
                    by_part[p] = [zid]
                else:
                    lst.append(zid)
            primary = zone_part[zones[0]] if zones else partition_of(eid, n)
            if primary not in by_part:
                by_part[primary] = []
            if topic == topics.GPS:
                for p in self.cover_parts.get(cell, ()):   # coverage: its cell's zones' partitions
                    if p not in by_part:
                        by_part[p] = []
                mark = self.gps_marks.get(m.partition)
                if mark is None:
                    self.gps_marks[m.partition] = [ts, now_ms]
                else:
                    if ts > mark[0]:
                        mark[0] = ts
                    mark[1] = now_ms
                status, kind = ev.status, ev.kind
                # Only the unit's newest fix decides where it is present; an older one (a late
                # fix) still counts for arrivals and the zone's last gps event.
                newest = prev is None or ts > prev[0]
                if newest:
                    if status == "available":  # the partitions whose zones it may reach learn it
                        for p in self.reach_parts.get(grid_key(lat, lon), ()):
                            if p not in by_part:
                                by_part[p] = []
                    self.units[eid] = (ts, tuple(by_part))
                    for p in (self.all_parts if prev is None else prev[1]):
                        if p not in by_part:
                            by_part[p] = []
                    units_latest[eid] = self.positions[eid] = (ts, lat, lon, status, kind)
                force = ev.force
                for p, zl in by_part.items():
                    _append(out, p, ZoneFix(eid, ts, zl, p == primary, kts, status, kind, newest, lat, lon, force,
                                            cell))
            elif topic == topics.CALLS:
                cat, prio = ev["category"], ev["priority"]
                lang = primary_language(ev.get("lang"))
                for p, zl in by_part.items():
                    _append(out, p, ZoneCall(eid, ts, zl, p == primary, kts, cat, prio, lang))
            else:  # alerts and status reports also place their camera (zone health)
                cam = ev.camera_id
                prev = self.cameras.get(cam)
                newest = prev is None or ts > prev[0]
                if newest:
                    self.cameras[cam] = (ts, tuple(by_part))
                    for p in (self.all_parts if prev is None else prev[1]):
                        if p not in by_part:
                            by_part[p] = []
                if topic == topics.STATUS:
                    online = ev.online
                    for p, zl in by_part.items():
                        _append(out, p, ZoneStatus(cam, ts, zl, p == primary, kts, online, newest))
                else:
                    typ, sev = ev.type, ev.severity
                    for p, zl in by_part.items():
                        _append(out, p, ZoneAlert(eid, ts, zl, p == primary, kts, typ, sev, cam, newest))
        if clock > self.clock:
            self.clock = clock
            # Everyone needs the clock, even partitions without events in this batch.
            for p in self.all_parts:
                out.setdefault(p, [])
        return out, dead, rejected, units_latest

    def _columns(self, messages: list, base: list[str], max_ts: int) -> tuple[list, list[int], list]:
        """The batch decoded per topic (streams/columns.py) and the accepted events' cells and zones
        (ZoneIndex.lookup_cells), per message: (event or reject reason, fine cell, zone ids); a
        phase command's row is None (`_command` reads it)."""
        n = len(messages)
        evs: list = [None] * n
        lat = np.full(n, np.nan)
        lon = np.full(n, np.nan)
        rows_of: dict[str, list[int]] = {}
        for i, topic in enumerate(base):
            if topic != topics.PLAN_COMMANDS:
                rows = rows_of.get(topic)
                if rows is None:
                    rows_of[topic] = [i]
                else:
                    rows.append(i)
        for topic, rows in rows_of.items():
            decoded, lat[rows], lon[rows] = decode_topic(topic, [messages[i].value for i in rows], max_ts)
            for i, ev in zip(rows, decoded, strict=True):
                evs[i] = ev
        accepted = np.flatnonzero(~np.isnan(lat))   # a reject's and a command's rows are NaN
        cells: list[int] = [0] * n
        zones: list = [()] * n
        if len(accepted) == n:   # the common batch: every message an accepted event
            return evs, *self.index.lookup_cells(lat, lon)
        if len(accepted):
            acc_cells, acc_zones = self.index.lookup_cells(lat[accepted], lon[accepted])
            for i, c, z in zip(accepted.tolist(), acc_cells, acc_zones, strict=True):
                cells[i] = c
                zones[i] = z
        return evs, cells, zones

    def _command(self, m, out: dict, dead: list, rejected: dict, max_ts: int) -> None:
        """An operator's command (contract.plan): to every partition, or a dead letter. It does not
        move the stream clock: it takes effect at its ts, when the watermark gets there."""
        try:
            try:
                ev = orjson.loads(m.value) if m.value is not None else None
            except orjson.JSONDecodeError as exc:
                raise Rejected(f"invalid JSON: {str(exc)[:120]}") from None
            cmd = validate_phase_command(ev, self.plan, max_ts)
        except Rejected as exc:
            src = topics.METRIC_SOURCE[topics.PLAN_COMMANDS]
            rejected[src] = rejected.get(src, 0) + 1
            dead.append((m, exc.reason))
            return
        rec = PhaseCommand(cmd["command_id"], cmd["ts"], cmd["name"], cmd["by"])
        for p in self.all_parts:
            _append(out, p, rec)

    def enriched_base(self, call: dict, zones: tuple) -> dict:
        """The `incidents.enriched` record as far as ingest knows it; `caller` never leaves here."""
        rec = {k: v for k, v in call.items() if k != "caller"}
        caller = call.get("caller")
        if caller is not None and self.secret:
            rec["caller_ref"] = caller_ref(caller, self.secret)
        rec["zones"] = list(zones)
        rec["ring"] = self.index.innermost_ring(zones)
        rec["nearest_units"] = []
        rec["corroborating_alerts"] = []
        return rec


def coverage_partitions(index: ZoneIndex, zone_part: dict[str, int]) -> dict[int, tuple[int, ...]]:
    """Fine cell -> the partitions of the zones whose coverage counts a fix in it (streams/coverage.py)
    but which may not contain the fix: a cell's centre may lie in a zone whose boundary cuts the cell,
    and a fix in the cell counts there even outside the polygon. A cell a zone holds whole is left
    out (every fix in it is in the zone, so routed to its partition already)."""
    if FINE_RES != COVERAGE_RES:
        raise ValueError("coverage needs the fine cell of a fix at its own resolution")
    out: dict[int, set[int]] = {}
    for zid, z in index.zones.items():
        for cell in coverage_cells(z).tolist():
            if zid not in index.zones_holding_cell(cell):
                out.setdefault(cell, set()).add(zone_part[zid])
    return {c: tuple(sorted(ps)) for c, ps in out.items()}


_PRIMARY = re.compile(r"[A-Za-z]{1,8}(?![A-Za-z])")


def primary_language(tag: str | None) -> str:
    """The primary language subtag of a BCP 47 tag, lower case ("zh-Hans-CN" -> "zh", "en_US" ->
    "en"); "und" (undetermined) when the call has no tag or it does not start with one."""
    m = _PRIMARY.match(tag) if tag else None
    return m.group(0).lower() if m else "und"


def _append(out: dict, p: int, rec) -> None:
    lst = out.get(p)
    if lst is None:
        out[p] = [rec]
    else:
        lst.append(rec)
