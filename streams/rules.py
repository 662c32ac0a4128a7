"""Zone level rules: counts -> green / yellow / orange / red (CONTRACT §3 "Level").

A rules file is TOML: a list of `[[level]]` tables checked from the most severe down; a level
applies when any of its conditions holds. A condition is `<path> <op> <number>`, where path is
a dotted path into the zone-state document (e.g. `windows.15m.calls_p1`,
`windows.5m.alerts_by_type.fight`, `units.available`, `open_incidents`) and op is one of
>= > <= < ==. A missing path reads as 0. The ring escalations of the contract (core: orange;
any ring and a drone: yellow) are applied after the rules and cannot be switched off.
"""

from __future__ import annotations

import operator
import tomllib
from dataclasses import dataclass
from pathlib import Path

from contract.errors import RulesError

LEVELS = ("green", "yellow", "orange", "red")
RANK = {name: i for i, name in enumerate(LEVELS)}

DEFAULT_RULES = """
# zonewatch default level rules (documented in docs/DESIGN.md "Levels").
[[level]]
name = "red"
any = ["windows.15m.calls_p1 >= 3", "windows.15m.calls >= 20", "windows.5m.alerts >= 60",
       "windows.5m.alerts_by_type.fight >= 3", "windows.5m.alerts_by_type.fire_smoke >= 3"]

[[level]]
name = "orange"
any = ["windows.15m.calls_p1 >= 1", "windows.15m.calls >= 10", "windows.5m.alerts >= 30",
       "windows.5m.alerts_by_type.fight >= 1", "windows.5m.alerts_by_type.fire_smoke >= 1",
       "response.breaches >= 3"]

[[level]]
name = "yellow"
any = ["windows.15m.calls >= 3", "windows.5m.alerts >= 10", "open_incidents >= 3",
       "response.breaches >= 1"]
"""

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
CORE_ALERT_TYPES = ("face_watchlist", "fence_intrusion", "drone")
#: alerts that make any ringed zone at least yellow (a drone: low, slow, small aircraft over a venue)
RING_ALERT_TYPES = ("drone",)


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    op: object
    value: float
    text: str

    def holds(self, doc: dict) -> bool:
        cur = doc
        for part in self.path:
            if not isinstance(cur, dict):
                return False
            cur = cur.get(part, 0)
        return isinstance(cur, (int, float)) and self.op(cur, self.value)


@dataclass(frozen=True)
class Rules:
    levels: tuple[tuple[str, tuple[Condition, ...]], ...]  # most severe first

    def level(self, doc: dict, open_p1: int = 0) -> str:
        """Level of a zone-state document (without its `level` field), escalation included.

        `open_p1` is the zone's open priority-1 incidents (not a field of the document).
        """
        found = "green"
        for name, conds in self.levels:
            if any(c.holds(doc) for c in conds):
                found = name
                break
        ring = doc.get("ring")
        if ring == "core" and RANK[found] < RANK["orange"] and core_escalates(doc, open_p1):
            found = "orange"
        if ring and found == "green" and ring_escalates(doc):
            found = "yellow"
        return found


def core_escalates(doc: dict, open_p1: int) -> bool:
    """Contract: an open priority-1 incident or a watch-list/fence/drone alert in 5 min in a core zone."""
    by_type = doc["windows"]["5m"]["alerts_by_type"]
    return open_p1 > 0 or any(by_type.get(t, 0) for t in CORE_ALERT_TYPES)


def ring_escalates(doc: dict) -> bool:
    """Contract: a drone alert in any ringed zone (in the last 5 min, as for the core rule)."""
    by_type = doc["windows"]["5m"]["alerts_by_type"]
    return any(by_type.get(t, 0) for t in RING_ALERT_TYPES)


def parse_condition(text: str) -> Condition:
    parts = text.split()
    if len(parts) != 3 or parts[1] not in _OPS:
        raise RulesError(f"condition {text!r}: expected '<path> <op> <number>' with op in {list(_OPS)}")
    try:
        value = float(parts[2])
    except ValueError:
        raise RulesError(f"condition {text!r}: {parts[2]!r} is not a number") from None
    return Condition(tuple(parts[0].split(".")), _OPS[parts[1]], value, text)


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    entries = doc.get("level")
    if not isinstance(entries, list) or not entries:
        raise RulesError(f"{source}: needs at least one [[level]] table")
    levels = []
    for i, entry in enumerate(entries):
        name = entry.get("name")
        if name not in LEVELS or name == "green":
            raise RulesError(f"{source}: level #{i + 1} name must be yellow, orange or red, got {name!r}")
        conds = entry.get("any")
        if not isinstance(conds, list) or not conds or not all(isinstance(c, str) for c in conds):
            raise RulesError(f"{source}: level {name!r} needs `any = [\"<path> <op> <number>\", ...]`")
        levels.append((name, tuple(parse_condition(c) for c in conds)))
    levels.sort(key=lambda lv: -RANK[lv[0]])
    return Rules(tuple(levels))


def load_rules(path: str | Path | None) -> Rules:
    """The rules at `path`, or the documented defaults when None."""
    if path is None:
        return parse_rules(DEFAULT_RULES, "default rules")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc}") from None
    return parse_rules(text, str(path))
