"""The duty plan against the live picture (CONTRACT §10): posts, checkpoints and the phase in force.

Pure and synchronous like zone_state: the partition state feeds it records and collects what it
decided. Who holds what:

* A post or checkpoint belongs to the partition of its home cell, as a call does
  (streams/partitioning.py `HomeCells.own`). The router sends every fix to the home partitions within
  the plan's largest radius of it, and a unit's next fix to the homes its previous fix went to
  (streams/routing.py), whatever the unit's status: so the partition of a post holds every fix that
  lies within its radius and, after each, the unit's next fix — when it arrived and when it left.
* An operator's phase command (`PhaseCommand`, from the plan.commands topic) goes to every partition:
  each one knows the phase in force; partition 0 alone emits the `phase` records.
* What a post's status means for its zones travels as `DutyNote` records to the zones' partitions
  (the arrival loop's way), which count `posts` in the zone document and the day's post-minutes and
  checkpoint misses for zones.daily (`DutyZones`).

Decisions are made on the watermark, like breaches: the state is a function of time T, and every
instant T at which anything can change — a fix's ts, 120 s and 1 ms after a unit's latest fix (it
goes stale), a phase boundary, an operator's command, a checkpoint's due time — is decided, in order,
once the watermark reaches it. A fix with a ts the watermark has passed cannot change what was
decided (it takes effect at the next instant); a decision, once emitted, is final. The documents
(`zw:post:{id}`, `zw:checkpoint:{id}`) show the state at the watermark. docs/DUTY.md has the rules
where the contract is silent; tests/unit/streams/test_duty.py checks them against a brute-force oracle.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field

import orjson
import shapely
from h3.api import basic_int as h3i

from contract import topics
from contract.plan import Checkpoint, Phase, Plan, Post, load_plan
from contract.response import EARTH_RADIUS_M, UNIT_STALE_MS, haversine_m

from .days import LocalDays
from .partitioning import FINE_RES, HomeCells, HomeMap, covering_k
from .records import DutyNote

OFF, MANNED, UNDERSTAFFED, EMPTY = "off", "manned", "understaffed", "empty"
#: statuses whose minutes zones.daily counts (post_minutes_understaffed / post_minutes_empty)
COUNTED = (UNDERSTAFFED, EMPTY)
OVERDUE = "overdue"          # DutyNote status of a checkpoint that became overdue
SCHEDULE, OPERATOR = "schedule", "operator"
NO_FORCE = "police"          # a fix record written before `force` existed (CONTRACT §1: the default)
_NEVER = -(1 << 62)
_FOREVER = 1 << 62


def post_status(present: int, required: int) -> str:
    """CONTRACT §10: off when nothing is required, else manned / understaffed / empty."""
    if required <= 0:
        return OFF
    if present >= required:
        return MANNED
    return UNDERSTAFFED if present > 0 else EMPTY


# --- the phase in force ------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """From `t` on (until the next segment) the phase `name` is in force from `source`; `by` the
    operator whose command began it (None for a schedule boundary); `start` since when `name` has
    been in force without a break (a checkpoint's interval counts from it)."""
    t: int
    name: str | None
    source: str
    by: str | None
    start: int


class PhaseTimeline:
    """The schedule plus the operators' commands: the phase in force at any instant."""

    def __init__(self, phases: tuple[Phase, ...]):
        self.phases = phases
        self.commands: dict[str, tuple[int, str | None, str]] = {}   # command_id -> (ts, name, by)
        self.segments: list[Segment] = []
        self._times: list[int] = []
        self._build()

    def command(self, command_id: str, ts: int, name: str | None, by: str) -> bool:
        """Add an operator's command (False: a repeat of one already known)."""
        if command_id in self.commands:
            return False
        self.commands[command_id] = (ts, name, by)
        self._build()
        return True

    def at(self, t: int) -> Segment:
        return self.segments[bisect.bisect_right(self._times, t) - 1]

    def next_change(self, after: int) -> int | None:
        """The first instant > after at which the phase in force changes."""
        i = bisect.bisect_right(self._times, after)
        return self._times[i] if i < len(self._times) else None

    def scheduled(self, t: int) -> str | None:
        for p in self.phases:
            if p.start <= t < p.end:
                return p.name
        return None

    def _build(self) -> None:
        cmds = sorted((ts, cid, name, by) for cid, (ts, name, by) in self.commands.items())
        instants = sorted({p.start for p in self.phases} | {p.end for p in self.phases} | {c[0] for c in cmds})
        segs = [Segment(_NEVER, None, SCHEDULE, None, _NEVER)]
        k = 0
        active = None   # the latest command at or before the instant
        name: str | None
        by: str | None
        for t in instants:
            by_now = None
            while k < len(cmds) and cmds[k][0] <= t:
                active = cmds[k]
                by_now = active[3]
                k += 1
            if active is not None and active[2] is not None:
                name, source, by = active[2], OPERATOR, active[3]
            else:
                name, source, by = self.scheduled(t), SCHEDULE, by_now
            last = segs[-1]
            if (name, source) != (last.name, last.source):
                segs.append(Segment(t, name, source, by, last.start if name == last.name else t))
        self.segments = segs
        self._times = [s.t for s in segs]


# --- which points a fix lies in ------------------------------------------------------------------

#: room on a cell's centre-to-vertex distance (H3's edges are straight in the gnomonic projection,
#: not great-circle arcs, so a point of the cell may lie a little beyond its farthest vertex)
CELL_REACH_ROOM = 1.05
#: room on a point's bounding box, far beyond the float error of haversine_m
BOX_ROOM = 1.001


class PointIndex:
    """The fine cells (streams/partitioning.py FINE_RES) a post's or checkpoint's disc reaches, and
    for each a box around the disc: a fix in no such cell, or outside every box, lies in no point
    without any distance computed; inside a box haversine_m decides, as it always did.

    A cell is kept when its centre lies within the radius plus the cell's reach (its farthest
    boundary vertex, with CELL_REACH_ROOM) of the point: by the triangle inequality no point of a
    cell left out lies within the radius. The box: a point within r of (lat, lon) differs by at most
    r/R in latitude, and by at most r / (R cos φ) in longitude, φ the largest latitude the disc
    reaches (tests/unit/streams/test_duty.py `test_the_point_index_keeps_every_fix_within_a_radius`)."""

    def __init__(self, points: list[tuple[str, str, float, float, float]]):
        # fine cell -> ((kind, id, lat, lon, radius, lat_lo, lat_hi, lon_lo, lon_hi), ...)
        self.cells: dict[int, tuple[tuple, ...]] = {}
        cells: dict[int, list[tuple]] = {}
        reach: dict[int, tuple[float, float, float]] = {}   # cell -> (centre lat, lon, farthest vertex)
        for kind, pid, lat, lon, r in points:
            entry = (kind, pid, lat, lon, r, *self.box(lat, lon, r))
            centre = h3i.latlng_to_cell(lat, lon, FINE_RES)
            for cell in h3i.grid_disk(centre, covering_k(centre, r)):
                if cell not in reach:
                    clat, clon = h3i.cell_to_latlng(cell)
                    far = max(haversine_m(clat, clon, a, b) for a, b in h3i.cell_to_boundary(cell))
                    reach[cell] = (clat, clon, far)
                clat, clon, far = reach[cell]
                if haversine_m(lat, lon, clat, clon) <= r + far * CELL_REACH_ROOM:
                    cells.setdefault(cell, []).append(entry)
        self.cells = {c: tuple(es) for c, es in cells.items()}

    @staticmethod
    def box(lat: float, lon: float, r: float) -> tuple[float, float, float, float]:
        """(lat_lo, lat_hi, lon_lo, lon_hi) holding every point within r metres of (lat, lon)."""
        dlat = math.degrees(r / EARTH_RADIUS_M) * BOX_ROOM
        top = abs(lat) + dlat
        dlon = math.degrees(r / (EARTH_RADIUS_M * math.cos(math.radians(min(top, 89.0))))) * BOX_ROOM
        if top >= 89.0 or abs(lon) + dlon >= 180.0:   # near a pole or the antimeridian: latitude only
            return lat - dlat, lat + dlat, -math.inf, math.inf
        return lat - dlat, lat + dlat, lon - dlon, lon + dlon

    def hits(self, lat: float, lon: float, cell: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(posts, checkpoints) within whose radius (lat, lon) lies, each sorted; cell its fine cell."""
        cands = self.cells.get(cell)
        if cands is None:
            return (), ()
        posts: list[str] = []
        cps: list[str] = []
        for kind, pid, plat, plon, r, lat_lo, lat_hi, lon_lo, lon_hi in cands:
            if lat_lo <= lat <= lat_hi and lon_lo <= lon <= lon_hi and haversine_m(lat, lon, plat, plon) <= r:
                (posts if kind == "post" else cps).append(pid)
        if not posts and not cps:
            return (), ()
        return tuple(sorted(posts)), tuple(sorted(cps))


# --- per-point state ---------------------------------------------------------------------------

@dataclass
class PostState:
    post: Post
    zones: tuple[str, ...]
    units: set[str] = field(default_factory=set)   # units counted now
    status: str = OFF
    since: int | None = None
    phase: str | None = None
    required: int = 0
    version: int = 0
    shown: dict | None = None     # the document last taken (None: write it)


@dataclass
class CheckpointState:
    cp: Checkpoint
    zones: tuple[str, ...]
    last_visit: int | None = None
    last_unit: str | None = None
    every_s: int | None = None
    overdue: bool = False
    overdue_since: int | None = None
    timer: tuple | None = None    # (every_s, base) its due timer was set for
    version: int = 0
    shown: dict | None = None


class DutyState:
    """The posts and checkpoints one partition owns, and the phase in force, decided on the watermark."""

    def __init__(self, plan: Plan, posts: list[Post], checkpoints: list[Checkpoint],
                 zones_of: dict[str, tuple[str, ...]], tz: str = "Asia/Shanghai", emit_phase: bool = False,
                 stale_ms: int = UNIT_STALE_MS):
        self.plan = plan
        self.stale_ms = stale_ms
        self.emit_phase = emit_phase
        self.days = LocalDays(tz)
        self.timeline = PhaseTimeline(plan.phases)
        self.posts = {p.post_id: PostState(p, zones_of.get(p.post_id, ())) for p in posts}
        self.cps = {c.checkpoint_id: CheckpointState(c, zones_of.get(c.checkpoint_id, ())) for c in checkpoints}
        # the fine cells the points' discs reach (a fix record carries its fine cell, streams/records.py)
        self.index = PointIndex([("post", p.post_id, p.lat, p.lon, p.radius_m) for p in posts]
                                + [("cp", c.checkpoint_id, c.lat, c.lon, c.radius_m) for c in checkpoints])
        self.cells = self.index.cells
        self.wm = 0          # every instant up to this is decided
        # fixes not decided yet: (instant, seq, unit, ts, status, force, posts hit, checkpoints hit)
        self.pending: list[tuple] = []
        self.pending_units: dict[str, int] = {}
        self._seq = 0
        # unit -> (ts, posts hit, checkpoints hit, posts counted) of its latest decided fix, while
        # that fix lies in a point of this partition and is fresh
        self.latest: dict[str, tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        self.timers: list[tuple[int, str, str]] = []   # (instant, "stale"|"due", unit or checkpoint)
        self._midnight = _NEVER   # the first local midnight after wm (advance)
        self.counted: set[str] = set()   # posts with zones in a status whose minutes zones.daily counts
        # posts and checkpoints decided since the documents were last taken (changed_documents)
        self.touched_posts: set[str] = set(self.posts)
        self.touched_cps: set[str] = set(self.cps)
        self.events: list[dict] = []      # duty.events records not taken yet
        self.notes: list[DutyNote] = []   # for the zones' partitions, not taken yet
        self.phase_shown: dict | None = None
        self.phase_changed = False
        self.phase_version = 0

    # -- input -------------------------------------------------------------------------------
    def on_fix(self, unit: str, ts: int, lat: float, lon: float, cell: int, status: str, force: str) -> None:
        """A fix the router sent here. Kept when it lies in a point of this partition or its unit
        has a fix kept or pending already (then it may say the unit left)."""
        held = unit in self.latest or unit in self.pending_units
        if not held and cell not in self.cells:   # most fixes: near no point, of a unit none holds
            return
        posts, cps = self.index.hits(lat, lon, cell)
        if not posts and not cps and not held:
            return
        self._seq += 1
        # a fix the watermark has passed takes effect at the next instant (decisions are final)
        heapq.heappush(self.pending, (max(ts, self.wm + 1), self._seq, unit, ts, status, force or NO_FORCE,
                                      posts, cps))
        self.pending_units[unit] = self.pending_units.get(unit, 0) + 1

    def on_command(self, command_id: str, ts: int, name: str | None, by: str) -> None:
        """An operator's phase command; one the watermark has passed takes effect at the next instant."""
        self.timeline.command(command_id, max(ts, self.wm + 1), name, by)

    # -- decisions ---------------------------------------------------------------------------
    def advance(self, wm: int) -> None:
        """Decide every instant up to the watermark wm, in order. Only instants at which something
        can change are visited: a pending fix, a live timer, a phase boundary, a local midnight."""
        timers, latest, stale_ms = self.timers, self.latest, self.stale_ms
        while True:
            # a stale timer whose unit has a newer fix (or none) decides nothing: its instant is
            # skipped (the newer fix set its own timer)
            while timers:
                _t, what, key = timers[0]
                if what != "stale":
                    break
                last = latest.get(key)
                if last is not None and last[0] + stale_ms < _t:
                    break
                heapq.heappop(timers)
            t = self._next_instant()
            if t > wm:
                break
            self._decide(t)
            self.wm = t
        if wm > self.wm:
            self.wm = wm
            self.phase_changed = True   # the documents' `every_s`/`phase` are as of the watermark

    def _next_instant(self) -> int:
        if self.wm >= self._midnight:   # once a day (or a jump of the watermark)
            self._midnight = self.days.next_midnight(self.wm)
        t = self._midnight if self.counted else _FOREVER   # the day's post-minutes split at midnight
        if self.pending and self.pending[0][0] < t:
            t = self.pending[0][0]
        if self.timers and self.timers[0][0] < t:
            t = self.timers[0][0]
        nxt = self.timeline.next_change(self.wm)
        if nxt is not None and nxt < t:
            t = nxt
        return t

    def _decide(self, t: int) -> None:
        seg = self.timeline.at(t)
        phase_change = seg.t == t
        if phase_change and self.emit_phase:
            prev = self.timeline.at(t - 1)
            self.events.append({"type": "phase", "name": seg.name, "previous": prev.name, "source": seg.source,
                                "by": seg.by, "ts": t})
            self.phase_changed = True
        posts: set[str] = set()
        cps: set[str] = set()
        pending = self.pending
        while pending and pending[0][0] == t:
            _t, _s, unit, ts, status, force, hit_posts, hit_cps = heapq.heappop(pending)
            n = self.pending_units[unit] - 1
            if n:
                self.pending_units[unit] = n
            else:
                del self.pending_units[unit]
            self._fix(t, unit, ts, status, force, hit_posts, hit_cps, posts, cps)
        timers = self.timers
        while timers and timers[0][0] == t:
            _t, what, key = heapq.heappop(timers)
            if what == "due":
                cps.add(key)
                continue
            last = self.latest.get(key)
            if last is not None and last[0] + self.stale_ms < t:   # its latest fix went stale
                del self.latest[key]
                for pid in last[3]:
                    self.posts[pid].units.discard(key)
                    posts.add(pid)
        for pid in (self.posts if phase_change else sorted(posts)):
            self._post(t, self.posts[pid], seg)
        for cid in (self.cps if phase_change else sorted(cps)):
            self._checkpoint(t, self.cps[cid], seg)
        # a local midnight (_midnight is the first after the previous instant; beyond it, look it up):
        # the counted statuses again
        if t == self._midnight or (t > self._midnight and t == self.days.next_midnight(t - 1)):
            for ps in self.posts.values():
                if ps.status in COUNTED and ps.zones:
                    self.notes.append(DutyNote(ps.post.post_id, list(ps.zones), t, ps.status))

    def _fix(self, t: int, unit: str, ts: int, status: str, force: str, hit_posts: tuple[str, ...],
             hit_cps: tuple[str, ...], posts: set[str], cps: set[str]) -> None:
        prev = self.latest.get(unit)
        if prev is not None and ts <= prev[0]:
            return   # a repeat, or older than what is known of the unit
        for cid in hit_cps:
            cs = self.cps[cid]
            if cs.last_visit is None or ts > cs.last_visit or (ts == cs.last_visit and unit < (cs.last_unit or "")):
                cs.last_visit, cs.last_unit = ts, unit
                cps.add(cid)
            # a visit: the unit arrives (its previous fix was not here, or went stale before this one)
            if ts == t and (prev is None or cid not in prev[2] or ts - prev[0] > self.stale_ms):
                self.events.append({"type": "checkpoint_visited", "checkpoint_id": cid, "unit_id": unit, "ts": ts})
        kept = t - ts <= self.stale_ms and bool(hit_posts or hit_cps)   # fresh, and in a point
        counted = tuple(pid for pid in hit_posts if status != "off_duty" and force in self.posts[pid].post.forces) \
            if kept else ()
        before = prev[3] if prev is not None else ()
        if counted != before:
            # only the posts the unit leaves or joins are decided again: a unit standing at its post
            # changes nothing there (the phase and requirement a post shows change only at a phase
            # change, when every post is decided)
            for pid in before:
                if pid not in counted:
                    self.posts[pid].units.discard(unit)
                    posts.add(pid)
            for pid in counted:
                if pid not in before:
                    self.posts[pid].units.add(unit)
                    posts.add(pid)
        if not kept:
            self.latest.pop(unit, None)
            return
        self.latest[unit] = (ts, hit_posts, hit_cps, counted)
        heapq.heappush(self.timers, (ts + self.stale_ms + 1, "stale", unit))

    def _post(self, t: int, ps: PostState, seg: Segment) -> None:
        self.touched_posts.add(ps.post.post_id)
        required = ps.post.required.get(seg.name, 0) if seg.name is not None else 0
        present = len(ps.units)
        status = post_status(present, required)
        ps.phase, ps.required = seg.name, required
        if status == ps.status:
            return
        self.events.append({"type": "post_status", "post_id": ps.post.post_id, "status": status,
                            "previous": ps.status, "required": required, "present": present, "ts": t})
        if ps.zones:
            self.notes.append(DutyNote(ps.post.post_id, list(ps.zones), t, status))
            if status in COUNTED:
                self.counted.add(ps.post.post_id)
            else:
                self.counted.discard(ps.post.post_id)
        ps.status, ps.since = status, t

    def _checkpoint(self, t: int, cs: CheckpointState, seg: Segment) -> None:
        self.touched_cps.add(cs.cp.checkpoint_id)
        every = cs.cp.every_s.get(seg.name) if seg.name is not None else None
        cs.every_s = every
        if every is None:
            cs.overdue, cs.overdue_since, cs.timer = False, None, None
            return
        base = seg.start if cs.last_visit is None else max(cs.last_visit, seg.start)
        due = base + every * 1000 + 1     # CONTRACT §10: clock - max(last_visit, phase start) > every_s
        if t >= due:
            if not cs.overdue:
                cs.overdue, cs.overdue_since = True, due
                self.events.append({"type": "checkpoint_overdue", "checkpoint_id": cs.cp.checkpoint_id,
                                    "unit_id": None, "ts": due})
                if cs.zones:
                    self.notes.append(DutyNote(cs.cp.checkpoint_id, list(cs.zones), due, OVERDUE))
            return
        cs.overdue, cs.overdue_since = False, None
        if cs.timer != (every, base):
            cs.timer = (every, base)
            heapq.heappush(self.timers, (due, "due", cs.cp.checkpoint_id))

    # -- output ------------------------------------------------------------------------------
    def take_events(self) -> list[dict]:
        out, self.events = self.events, []
        return out

    def take_notes(self) -> list[DutyNote]:
        out, self.notes = self.notes, []
        return out

    def post_doc(self, ps: PostState) -> dict:
        p = ps.post
        return {"post_id": p.post_id, "name": p.name, "lat": p.lat, "lon": p.lon, "radius_m": p.radius_m,
                "phase": ps.phase, "required": ps.required, "present": len(ps.units), "unit_ids": sorted(ps.units),
                "status": ps.status, "since": ps.since}

    def checkpoint_doc(self, cs: CheckpointState) -> dict:
        c = cs.cp
        return {"checkpoint_id": c.checkpoint_id, "name": c.name, "lat": c.lat, "lon": c.lon,
                "radius_m": c.radius_m, "last_visit": cs.last_visit, "last_unit": cs.last_unit,
                "every_s": cs.every_s, "overdue": cs.overdue, "overdue_since": cs.overdue_since}

    def phase_doc(self) -> dict:
        """The phase in force at the watermark (zw:phase, the wall's banner)."""
        seg = self.timeline.at(self.wm)
        prev = self.timeline.at(seg.t - 1).name if seg.t > _NEVER else None
        return {"name": seg.name, "source": seg.source, "by": seg.by,
                "since": seg.t if seg.t > _NEVER else None, "previous": prev}

    def changed_documents(self) -> tuple[list[dict], list[dict], dict | None]:
        """(post documents, checkpoint documents, the phase document or None) changed since the
        last call, each with its next `version`. The phase document comes from partition 0 only.
        Only the points decided since (`touched_*`) can have changed: every change of a document's
        fields is made in _post or _checkpoint (the units a post counts, in the same _decide)."""
        posts, cps = [], []
        for pid in sorted(self.touched_posts):
            ps = self.posts[pid]
            doc = self.post_doc(ps)
            if doc != ps.shown:
                ps.shown = doc
                ps.version += 1
                posts.append({**doc, "version": ps.version})
        for cid in sorted(self.touched_cps):
            cs = self.cps[cid]
            doc = self.checkpoint_doc(cs)
            if doc != cs.shown:
                cs.shown = doc
                cs.version += 1
                cps.append({**doc, "version": cs.version})
        self.touched_posts.clear()
        self.touched_cps.clear()
        phase = None
        if self.emit_phase and self.phase_changed:
            doc = self.phase_doc()
            if doc != self.phase_shown:
                self.phase_shown = doc
                self.phase_version += 1
                phase = {**doc, "version": self.phase_version}
        self.phase_changed = False
        return posts, cps, phase

    def rewrite_all(self) -> None:
        """Make the next changed_documents() return every document (a new owner, Redis lost them)."""
        for ps in self.posts.values():
            ps.shown = None
        for cs in self.cps.values():
            cs.shown = None
        self.touched_posts.update(self.posts)
        self.touched_cps.update(self.cps)
        self.phase_shown = None
        self.phase_changed = True

    def set_versions(self, versions: dict[str, int]) -> None:
        """Continue the versions Redis has ("post:{id}" / "checkpoint:{id}" -> version)."""
        for pid, ps in self.posts.items():
            ps.version = max(ps.version, versions.get(f"post:{pid}", 0))
        for cid, cs in self.cps.items():
            cs.version = max(cs.version, versions.get(f"checkpoint:{cid}", 0))
        self.phase_version = max(self.phase_version, versions.get("phase", 0))

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "wm": self.wm, "seq": self._seq, "phase_version": self.phase_version,
            "commands": {cid: list(v) for cid, v in self.timeline.commands.items()},
            "pending": [list(p) for p in self.pending],
            "latest": {u: list(v) for u, v in self.latest.items()},
            "timers": [list(t) for t in self.timers],
            "posts": {pid: [sorted(ps.units), ps.status, ps.since, ps.phase, ps.required, ps.version]
                      for pid, ps in self.posts.items()},
            "cps": {cid: [cs.last_visit, cs.last_unit, cs.every_s, cs.overdue, cs.overdue_since,
                          list(cs.timer) if cs.timer else None, cs.version] for cid, cs in self.cps.items()},
            # decided but not taken yet: sent again after a takeover (at-least-once)
            "events": self.events, "notes": [[n.point_id, n.zones, n.ts, n.status] for n in self.notes],
        }

    def restore(self, snap: dict | None) -> None:
        """Load `snapshot()`'s data into this fresh state (posts and checkpoints no longer in the
        plan are dropped; new ones start off)."""
        if not snap:
            return
        self.wm, self._seq, self.phase_version = snap["wm"], snap["seq"], snap.get("phase_version", 0)
        for cid, (ts, name, by) in snap["commands"].items():
            self.timeline.commands[cid] = (ts, name, by)
        self.timeline._build()
        known = set(self.posts) | set(self.cps)
        for t, seq, unit, ts, status, force, posts, cps in snap["pending"]:
            posts, cps = tuple(p for p in posts if p in self.posts), tuple(c for c in cps if c in self.cps)
            self.pending.append((t, seq, unit, ts, status, force, posts, cps))
            self.pending_units[unit] = self.pending_units.get(unit, 0) + 1
        heapq.heapify(self.pending)
        for unit, (ts, posts, cps, counted) in snap["latest"].items():
            self.latest[unit] = (ts, tuple(p for p in posts if p in self.posts), tuple(c for c in cps if c in self.cps),
                                 tuple(p for p in counted if p in self.posts))
        self.timers = [tuple(t) for t in snap["timers"] if t[1] == "stale" or t[2] in known]
        heapq.heapify(self.timers)
        for pid, (units, status, since, phase, required, version) in snap["posts"].items():
            ps = self.posts.get(pid)
            if ps is not None:
                ps.units, ps.status, ps.since, ps.phase, ps.required, ps.version = \
                    set(units), status, since, phase, required, version
        for cid, (lv, lu, every, overdue, since, timer, version) in snap["cps"].items():
            cs = self.cps.get(cid)
            if cs is not None:
                cs.last_visit, cs.last_unit, cs.every_s, cs.overdue, cs.overdue_since = lv, lu, every, overdue, since
                cs.timer, cs.version = (tuple(timer) if timer else None), version
        self.events = list(snap["events"])
        self.notes = [DutyNote(p, list(z), ts, st) for p, z, ts, st in snap["notes"]]
        self.phase_changed = True
        self.touched_posts.update(self.posts)
        self.touched_cps.update(self.cps)
        self.counted = {pid for pid, ps in self.posts.items() if ps.status in COUNTED and ps.zones}


class DutyPlan:
    """The plan's pieces for each partition (StateStage): which posts and checkpoints it owns (those
    of its home cells, as calls are owned), the zones each lies in, and the duty state's hooks into
    a partition state. Without ZONEWATCH_PLAN every method does nothing."""

    def __init__(self, settings, zones, zone_part: dict[str, int], home_map: HomeMap | None = None) -> None:
        self.plan = load_plan(settings.plan, settings.tz) if settings.plan else None
        self.tz = settings.tz
        self.stale_ms = settings.unit_stale_ms
        self.zone_part = zone_part
        self.topic = settings.topic(topics.DUTY)
        self.owned: dict[int, tuple[list[Post], list[Checkpoint]]] = {}
        self.zones_of: dict[str, tuple[str, ...]] = {}
        if self.plan is None:
            return
        zones = list(zones)
        # the router's homes (streams/routing.py): geographic runs over the zones, hashed beyond
        if home_map is None:
            home_map = HomeMap(zones, settings.partitions)
        homes = HomeCells(settings.partitions, home_map)

        def place(pid: str, lat: float, lon: float) -> tuple[list[Post], list[Checkpoint]]:
            # the zones it lies in, as an event there would be counted (CONTRACT §2), and its owner
            self.zones_of[pid] = tuple(z.zone_id for z in zones if shapely.contains_xy(z.geometry, lon, lat))
            return self.owned.setdefault(homes.own(h3i.latlng_to_cell(lat, lon, FINE_RES)), ([], []))

        for post in self.plan.posts:
            place(post.post_id, post.lat, post.lon)[0].append(post)
        for cp in self.plan.checkpoints:
            place(cp.checkpoint_id, cp.lat, cp.lon)[1].append(cp)

    def version_fields(self, p: int) -> list[str]:
        """The zw:duty-versions fields of partition p's documents (a new owner continues them)."""
        if self.plan is None:
            return []
        posts, cps = self.owned.get(p, ([], []))
        return ([f"post:{x.post_id}" for x in posts] + [f"checkpoint:{x.checkpoint_id}" for x in cps]
                + (["phase"] if p == 0 else []))

    def documents(self, st) -> list[tuple[str, dict]]:
        """(type, document) of the posts, checkpoints and phase of a partition changed since the
        last call (streams/store.py writes them with the zone documents)."""
        if st.duty is None:
            return []
        posts, cps, phase = st.duty.changed_documents()
        out = [("post", d) for d in posts] + [("checkpoint", d) for d in cps]
        if phase is not None:
            out.append(("phase", phase))
        return out

    def records(self, st) -> list[tuple[str, bytes | None, bytes | None, int | None]]:
        """The duty.events records a partition decided since the last call (topic, key, value,
        partition), key the post or checkpoint id, or "phase"."""
        if st.duty is None:
            return []
        out: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        for ev in st.duty.take_events():
            key = ev.get("post_id") or ev.get("checkpoint_id") or "phase"
            out.append((self.topic, key.encode(), orjson.dumps(ev), None))
        return out

    def attach(self, st, p: int) -> None:
        """Give partition p's fresh state its duty state (its posts) and its zones' view."""
        if self.plan is None:
            return
        posts, cps = self.owned.get(p, ([], []))
        st.duty = DutyState(self.plan, posts, cps, self.zones_of, tz=self.tz, emit_phase=p == 0,
                            stale_ms=self.stale_ms)
        st.duty_zones = DutyZones(st.zones)

    def take_notes(self, st, feedback: dict[int, list]) -> None:
        """The state's notes, added to the feedback records by zone partition."""
        if st.duty is None:
            return
        for note in st.duty.take_notes():
            by_part: dict[int, list[str]] = {}
            for zid in note.zones:
                by_part.setdefault(self.zone_part[zid], []).append(zid)
            for q, zl in by_part.items():
                feedback.setdefault(q, []).append(DutyNote(note.point_id, zl, note.ts, note.status))


# --- the zones' side ---------------------------------------------------------------------------

class DutyZones:
    """What the zones of one partition know of the duty plan: each post's status (from its owner's
    notes, by time) and each checkpoint's overdues, for the zone document's `posts` and zones.daily."""

    def __init__(self, zone_ids) -> None:
        self.zone_ids = set(zone_ids)
        # zone -> post -> {ts: status} (notes of the last days and the latest one)
        self.posts: dict[str, dict[str, dict[int, str]]] = {}
        self.misses: dict[str, set[tuple[str, int]]] = {}   # zone -> {(checkpoint id, overdue since)}
        self._counts: dict[str, dict] = {}   # zone -> counts(zone), until a note for it (every flush reads it)

    def apply(self, rec: DutyNote) -> list[tuple[str, int, int]]:
        """A note for these zones; returns (zone, from ts, to ts) of the days whose figures changed."""
        out = []
        for zid in rec.zones:
            if zid not in self.zone_ids:
                continue
            if rec.status == OVERDUE:
                seen = self.misses.setdefault(zid, set())
                if (rec.point_id, rec.ts) not in seen:
                    seen.add((rec.point_id, rec.ts))
                    out.append((zid, rec.ts, rec.ts))
                continue
            notes = self.posts.setdefault(zid, {}).setdefault(rec.point_id, {})
            if notes.get(rec.ts) == rec.status:
                continue
            notes[rec.ts] = rec.status
            self._counts.pop(zid, None)
            before = [t for t in notes if t < rec.ts]
            after = [t for t in notes if t > rec.ts]
            # the period this note ends (from the note before) and the one it begins (to the next)
            out.append((zid, max(before) if before else rec.ts, min(after) if after else rec.ts))
        return out

    def counts(self, zid: str) -> dict:
        """The zone document's `posts`: posts required now (not off), by status."""
        out = self._counts.get(zid)
        if out is None:
            out = self._counts[zid] = {"required": 0, MANNED: 0, UNDERSTAFFED: 0, EMPTY: 0}
            for notes in self.posts.get(zid, {}).values():
                status = notes[max(notes)]
                if status != OFF:
                    out["required"] += 1
                    out[status] += 1
        return dict(out)

    def daily(self, zid: str, start: int, end: int) -> dict:
        """zones.daily's figures of the local day [start, end): the minutes posts in the zone spent
        understaffed and empty (periods closed by a later note: a post's status is noted again at
        every midnight), and the checkpoints that became overdue that day."""
        ms = {UNDERSTAFFED: 0, EMPTY: 0}
        for notes in self.posts.get(zid, {}).values():
            times = sorted(notes)
            for a, b in zip(times, times[1:], strict=False):
                status = notes[a]
                if status in ms:
                    ms[status] += max(0, min(b, end) - max(a, start))
        misses = sum(1 for _cid, ts in self.misses.get(zid, ()) if start <= ts < end)
        return {"post_minutes_understaffed": round(ms[UNDERSTAFFED] / 60_000, 1),
                "post_minutes_empty": round(ms[EMPTY] / 60_000, 1), "checkpoint_misses": misses}

    def prune(self, before: int) -> None:
        """Forget notes and misses older than `before`, keeping each post's latest note."""
        for by_post in self.posts.values():
            for notes in by_post.values():
                last = max(notes)
                for t in [t for t in notes if t < before and t != last]:
                    del notes[t]
        for zid, seen in self.misses.items():
            self.misses[zid] = {m for m in seen if m[1] >= before}

    def snapshot(self) -> dict:
        return {"posts": {z: {p: [[t, s] for t, s in n.items()] for p, n in by.items()}
                          for z, by in self.posts.items()},
                "misses": {z: sorted(list(m) for m in seen) for z, seen in self.misses.items()}}

    def restore(self, snap: dict | None) -> None:
        if not snap:
            return
        self.posts = {z: {p: {t: s for t, s in n} for p, n in by.items()}
                      for z, by in snap["posts"].items() if z in self.zone_ids}
        self._counts.clear()
        self.misses = {z: {(c, t) for c, t in seen} for z, seen in snap["misses"].items() if z in self.zone_ids}
