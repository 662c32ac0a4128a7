"""The duty plan (勤务方案, CONTRACT §10): phases, posts, checkpoints and on-scene tier requirements.

One reading for everyone: the worker (streams/duty.py decides against it), the gateway (`POST
/plan/phase` accepts only its phase names) and `zonewatch plan check FILE`. A plan is refused at
start with the entry and the reason, like a bad zones file (`PlanError`). docs/DUTY.md says what
each figure means where the contract is silent.

    plan = load_plan(path)        # Plan: .phases (sorted, epoch ms), .posts, .checkpoints, .tiers
    plan.tier_requirement("course/3")   # (1, 2, 3) unless a [[tiers]] entry matches the zone id

The file is TOML (tomllib). The contract's own example writes several keys on one line separated by
`;` (`name = "临战"; from = "…"; to = "…"`), which TOML does not allow: a `;` between two keys
outside strings and brackets is read as a line break, so that example loads as written.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import PlanError, Rejected
from .events import FORCES, MIN_TS_MS, parse_ts, to_epoch_ms
from .events import MAX_ID_LEN as MAX_COMMAND_ID_LEN
from .response import DEFAULT_TIERS

#: the forces a post counts when it names none (CONTRACT §1 `force`)
ALL_FORCES = tuple(sorted(FORCES))
#: a post's or checkpoint's radius when the plan gives none: as a Point zone's (CONTRACT §2)
DEFAULT_RADIUS_M = 100.0
#: the largest radius accepted: the worker sends a unit's fixes to the partitions of the posts
#: within this distance of them (streams/routing.py), and a post wider than a kilometre is a typo
MAX_RADIUS_M = 1000.0
#: on-scene units required by 1, 3 and 5 minutes where no [[tiers]] entry matches (CONTRACT §3)
DEFAULT_ON_SCENE: tuple[int, int, int] = DEFAULT_TIERS
MAX_ID_LEN = 64
MAX_NAME_LEN = 200
MAX_REQUIRED = 10_000          # units on one post
MAX_EVERY_S = 7 * 24 * 3600    # a checkpoint visited less than weekly is no checkpoint

_TOP_KEYS = ("timezone", "phase", "post", "checkpoint", "tiers")
_PHASE_KEYS = ("name", "from", "to")
_POST_KEYS = ("id", "name", "lat", "lon", "radius_m", "required", "force")
_CHECKPOINT_KEYS = ("id", "name", "lat", "lon", "radius_m", "every_s")
_TIERS_KEYS = ("zones", "on_scene")


@dataclass(frozen=True)
class Phase:
    """A scheduled phase: in force for stream times in [start, end) (epoch ms)."""
    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Post:
    """定人定岗: `required[phase]` units (missing phase: 0) of `forces` within `radius_m`."""
    post_id: str
    name: str
    lat: float
    lon: float
    radius_m: float
    required: dict[str, int] = field(hash=False)
    forces: tuple[str, ...] = ALL_FORCES


@dataclass(frozen=True)
class Checkpoint:
    """必到点位: visited at least every `every_s[phase]` seconds in the phases that name it."""
    checkpoint_id: str
    name: str
    lat: float
    lon: float
    radius_m: float
    every_s: dict[str, int] = field(hash=False)


@dataclass(frozen=True)
class Tiers:
    """On-scene units required by 1, 3 and 5 minutes in the zones whose id matches `pattern`."""
    pattern: str
    on_scene: tuple[int, int, int]


@dataclass(frozen=True)
class Plan:
    timezone: str
    phases: tuple[Phase, ...]            # by start; never overlapping
    posts: tuple[Post, ...]
    checkpoints: tuple[Checkpoint, ...]
    tiers: tuple[Tiers, ...]             # in the file's order: the first match wins
    source: str = "plan"

    @property
    def phase_names(self) -> tuple[str, ...]:
        """The names a post, a checkpoint or an operator may name, in order of first appearance."""
        return tuple(dict.fromkeys(p.name for p in self.phases))

    @property
    def max_radius_m(self) -> float:
        """The widest post or checkpoint (0 without any): how far fixes are routed for them."""
        return max([p.radius_m for p in self.posts] + [c.radius_m for c in self.checkpoints], default=0.0)

    def tier_requirement(self, zone_id: str) -> tuple[int, int, int]:
        """Units required on scene by 1, 3 and 5 minutes in a zone (CONTRACT §3 "On-scene tiers"):
        the first [[tiers]] whose pattern matches its id, else 1/2/3. A pure function of the zone id
        (the state stage's `tier_requirement`, streams/state_stage.py)."""
        for t in self.tiers:
            if fnmatchcase(zone_id, t.pattern):
                return t.on_scene
        return DEFAULT_ON_SCENE


def load_plan(path: str | Path, default_tz: str = "Asia/Shanghai") -> Plan:
    """Read and validate a plan file; `PlanError` names the entry and the reason. `default_tz`
    (ZONEWATCH_TZ) is the plan's time zone when it names none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"plan {path}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"plan {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_plan(text, source=str(path), default_tz=default_tz)


def parse_plan(text: str, source: str = "plan", default_tz: str = "Asia/Shanghai") -> Plan:
    """Validate a plan's text. Times without an offset are local to its `timezone` (default
    `default_tz`, the deployment's ZONEWATCH_TZ)."""
    split, lines = split_statements(text)
    try:
        doc = tomllib.loads(split)
    except tomllib.TOMLDecodeError as exc:
        msg = re.sub(r"\(at line (\d+), column \d+\)",
                     lambda m: f"(line {lines[min(int(m.group(1)), len(lines)) - 1]})", str(exc))
        raise PlanError(f"plan {source}: not valid TOML: {msg}") from None
    where = f"plan {source}"
    _known(doc, _TOP_KEYS, where)
    tz_name = doc.get("timezone", default_tz)
    if not isinstance(tz_name, str):
        raise PlanError(f"{where}: timezone must be a string such as \"Asia/Shanghai\"")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PlanError(f"{where}: timezone {tz_name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None

    phases = [_phase(e, i, tz, where) for i, e in enumerate(_tables(doc, "phase", where), 1)]
    phases.sort(key=lambda p: (p.start, p.end, p.name))
    for a, b in zip(phases, phases[1:], strict=False):
        if b.start < a.end:
            raise PlanError(f"{where}: phase {b.name!r} (from {_local(b.start, tz)}) overlaps phase {a.name!r} "
                            f"(until {_local(a.end, tz)}): one phase is in force at a time")
    names = {p.name for p in phases}

    posts = [_post(e, i, names, where) for i, e in enumerate(_tables(doc, "post", where), 1)]
    checkpoints = [_checkpoint(e, i, names, where) for i, e in enumerate(_tables(doc, "checkpoint", where), 1)]
    seen: dict[str, str] = {}
    for what, pid in [("post", p.post_id) for p in posts] + [("checkpoint", c.checkpoint_id) for c in checkpoints]:
        if pid in seen:
            raise PlanError(f"{where}: {what} {pid!r}: the id is used by another {seen[pid]} "
                            "(ids are unique over posts and checkpoints: they key duty.events)")
        seen[pid] = what
    tiers = [_tiers(e, i, where) for i, e in enumerate(_tables(doc, "tiers", where), 1)]
    return Plan(tz_name, tuple(phases), tuple(posts), tuple(checkpoints), tuple(tiers), source)


# --- operators' commands (the plan.commands topic) --------------------------------------------

#: the record `POST /plan/phase` writes to plan.commands (key "phase") and the worker reads:
#: {"command_id": "…", "type": "phase", "name": "决战" | null, "by": "duty officer", "ts": epoch ms}
#: name null returns to the schedule; ts is when it takes effect (the gateway's clock by default)
COMMAND_KEY = "phase"
MAX_BY_LEN = 100


def phase_command(command_id: str, name: str | None, by: str, ts: int) -> dict:
    return {"command_id": command_id, "type": "phase", "name": name, "by": by, "ts": ts}


def validate_phase_command(ev: object, plan: Plan | None, max_ts: int) -> dict:
    """A phase command as `phase_command` makes it, or `Rejected` with the reason: the name must be
    a phase of the loaded plan (or null), `by` who gave it."""
    if type(ev) is not dict:
        raise Rejected("a command must be a JSON object")
    if ev.get("type") != "phase":
        raise Rejected("command type must be \"phase\"")
    cid = ev.get("command_id")
    if type(cid) is not str or not 0 < len(cid) <= MAX_COMMAND_ID_LEN or not cid.isprintable():
        raise Rejected(f"command_id must be a string of 1..{MAX_COMMAND_ID_LEN} printable characters")
    by = ev.get("by")
    if type(by) is not str or not by.strip() or len(by) > MAX_BY_LEN or not by.isprintable():
        raise Rejected(f"by must name who gives the command (1..{MAX_BY_LEN} printable characters)")
    name = ev.get("name")
    if plan is None:
        raise Rejected("no duty plan is loaded (ZONEWATCH_PLAN)")
    if name is not None and (type(name) is not str or name not in plan.phase_names):
        raise Rejected(f"name must be null (back to the schedule) or a phase of the plan: "
                       f"{', '.join(plan.phase_names) or 'it declares none'}")
    if "ts" not in ev:
        raise Rejected("missing field ts")
    ts = parse_ts(ev["ts"])
    if not MIN_TS_MS <= ts <= max_ts:
        raise Rejected("ts out of range (before 2000 or beyond host clock + tolerance)")
    return phase_command(cid, name, by, ts)


# --- entries -----------------------------------------------------------------------------------

def _phase(e: dict, i: int, tz: ZoneInfo, where: str) -> Phase:
    name = e.get("name")
    label = f"{where}: phase {name!r}" if isinstance(name, str) else f"{where}: [[phase]] #{i}"
    _known(e, _PHASE_KEYS, label)
    name = _text(e, "name", label, required=True)
    start = _time(e, "from", tz, label)
    end = _time(e, "to", tz, label)
    if end <= start:
        raise PlanError(f"{label}: `to` ({_local(end, tz)}) must be after `from` ({_local(start, tz)})")
    return Phase(name, start, end)


def _point(e: dict, what: str, i: int, keys: tuple[str, ...], where: str) -> tuple[str, str, float, float]:
    """(label, id, lat, lon) of a post or checkpoint entry, its keys checked."""
    label = _label(e, what, i, where)
    _known(e, keys, label)
    pid = _ident(e, label)
    lat, lon = _coords(e, label)
    return label, pid, lat, lon


def _post(e: dict, i: int, phases: set[str], where: str) -> Post:
    label, pid, lat, lon = _point(e, "post", i, _POST_KEYS, where)
    required = _per_phase(e, "required", phases, label, lo=0, hi=MAX_REQUIRED)
    forces: tuple[str, ...] = ALL_FORCES
    if "force" in e:
        raw = e["force"]
        if not isinstance(raw, list) or not raw or not all(isinstance(f, str) for f in raw):
            raise PlanError(f"{label}: force must be a non-empty list of forces, e.g. [\"police\", \"auxiliary\"]")
        unknown = sorted(set(raw) - set(FORCES))
        if unknown:
            raise PlanError(f"{label}: force {unknown[0]!r} is not one of {', '.join(ALL_FORCES)}")
        forces = tuple(sorted(set(raw)))
    return Post(pid, _text(e, "name", label) or pid, lat, lon, _radius(e, label), required, forces)


def _checkpoint(e: dict, i: int, phases: set[str], where: str) -> Checkpoint:
    label, cid, lat, lon = _point(e, "checkpoint", i, _CHECKPOINT_KEYS, where)
    every = _per_phase(e, "every_s", phases, label, lo=1, hi=MAX_EVERY_S)
    return Checkpoint(cid, _text(e, "name", label) or cid, lat, lon, _radius(e, label), every)


def _tiers(e: dict, i: int, where: str) -> Tiers:
    pattern = e.get("zones")
    label = f"{where}: tiers {pattern!r}" if isinstance(pattern, str) else f"{where}: [[tiers]] #{i}"
    _known(e, _TIERS_KEYS, label)
    if not isinstance(pattern, str) or not pattern:
        raise PlanError(f"{label}: zones must be a zone id or a pattern such as \"course/*\"")
    raw = e.get("on_scene", list(DEFAULT_ON_SCENE))
    if not isinstance(raw, list) or len(raw) != 3 or not all(_is_int(v) and 0 <= v <= MAX_REQUIRED for v in raw):
        raise PlanError(f"{label}: on_scene must be three whole numbers of units, by 1, 3 and 5 minutes "
                        "(e.g. [1, 2, 3])")
    return Tiers(pattern, (raw[0], raw[1], raw[2]))


# --- fields ------------------------------------------------------------------------------------

def _tables(doc: dict, key: str, where: str) -> list[dict]:
    raw = doc.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise PlanError(f"{where}: `{key}` must be an array of tables, written [[{key}]]")
    return raw


def _known(e: dict, keys: tuple[str, ...], label: str) -> None:
    for k in e:
        if k not in keys:
            raise PlanError(f"{label}: unknown key {k!r} (known: {', '.join(keys)})")


def _label(e: dict, what: str, i: int, where: str) -> str:
    pid = e.get("id")
    return f"{where}: {what} {pid!r}" if isinstance(pid, str) and pid else f"{where}: [[{what}]] #{i}"


def _ident(e: dict, label: str) -> str:
    v = e.get("id")
    if not isinstance(v, str) or not 0 < len(v) <= MAX_ID_LEN or not v.isprintable() or v != v.strip():
        raise PlanError(f"{label}: id must be a string of 1..{MAX_ID_LEN} printable characters, "
                        "without blanks around it")
    return v


def _text(e: dict, key: str, label: str, required: bool = False) -> str:
    v = e.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME_LEN or not v.isprintable():
        raise PlanError(f"{label}: {key} must be a string of 1..{MAX_NAME_LEN} printable characters")
    return v


def _is_int(v: Any) -> bool:
    return type(v) is int   # not bool (TOML true would pass isinstance(v, int))


def _number(e: dict, key: str, label: str) -> float:
    v = e.get(key)
    if v is None:
        raise PlanError(f"{label}: missing {key}")
    if type(v) not in (int, float) or not math.isfinite(v):
        raise PlanError(f"{label}: {key} must be a number")
    return float(v)


def _coords(e: dict, label: str) -> tuple[float, float]:
    lat, lon = _number(e, "lat", label), _number(e, "lon", label)
    if not -90 <= lat <= 90:
        raise PlanError(f"{label}: lat {lat:g} out of range -90..90")
    if not -180 <= lon <= 180:
        raise PlanError(f"{label}: lon {lon:g} out of range -180..180")
    return lat, lon


def _radius(e: dict, label: str) -> float:
    if "radius_m" not in e:
        return DEFAULT_RADIUS_M
    r = _number(e, "radius_m", label)
    if not 0 < r <= MAX_RADIUS_M:
        raise PlanError(f"{label}: radius_m {r:g} must be more than 0 and at most {MAX_RADIUS_M:g} metres")
    return r


def _per_phase(e: dict, key: str, phases: set[str], label: str, lo: int, hi: int) -> dict[str, int]:
    raw = e.get(key, {})
    if not isinstance(raw, dict):
        raise PlanError(f"{label}: {key} must be a table of phase name = number, e.g. {{ \"决战\" = 4 }}")
    out = {}
    for name, v in raw.items():
        if name not in phases:
            known = ", ".join(repr(p) for p in sorted(phases)) or "none"
            raise PlanError(f"{label}: {key} names phase {name!r}, which no [[phase]] declares (declared: {known})")
        if not _is_int(v) or not lo <= v <= hi:
            raise PlanError(f"{label}: {key}.{name} = {v!r} must be a whole number {lo}..{hi}")
        out[name] = v
    return out


def _time(e: dict, key: str, tz: ZoneInfo, label: str) -> int:
    v = e.get(key)
    if v is None:
        raise PlanError(f"{label}: missing `{key}` (a date and time such as \"2026-05-10T05:00\")")
    return local_time(v, tz, f"{label}: `{key}`")


def local_time(v: object, tz: ZoneInfo, what: str) -> int:
    """A TOML date-time or its text ("2026-05-10T05:00", local to `tz` without an offset) as epoch ms;
    `PlanError` naming `what` otherwise (reports/whatif.py reads its --deploy files' times with it too)."""
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise PlanError(f"{what} = {v!r} is not a date and time such as \"2026-05-10T05:00\"") from None
    if not isinstance(v, datetime):
        kind = "a date without a time" if isinstance(v, date) else "not a date and time"
        raise PlanError(f"{what} is {kind} (write \"2026-05-10T05:00\")")
    if v.tzinfo is None:
        v = v.replace(tzinfo=tz)
    return to_epoch_ms(v)


def _local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="minutes")


# --- `a = 1; b = 2` --------------------------------------------------------------------------

def split_statements(text: str) -> tuple[str, list[int]]:
    """`text` with each `;` that separates two statements (outside strings, comments and
    brackets) made a line break, and for each line of the result the line of `text` it comes from."""
    out: list[str] = []
    lines = [1]
    line = 1
    i, n = 0, len(text)
    depth = 0
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1
                elif text[j] == "\n" and len(quote) == 1:
                    break   # an unterminated string: tomllib reports it
                j += 1
            j = min(n, j + len(quote))
            chunk = text[i:j]
            out.append(chunk)
            for _ in range(chunk.count("\n")):
                line += 1
                lines.append(line)
            i = j
            continue
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            line += 1
            lines.append(line)
        elif c == ";" and depth == 0:
            out.append("\n")
            lines.append(line)
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out), lines
