"""What if these units had stood there (CONTRACT §11 `--deploy`): each recorded call of [from, to)
also answered by the nearest available deployed unit, and the estimated 1-3-5 figures.

Pure: the deploy file's units and a deployment's incidents.enriched and sla.events records in,
an `estimate` F out ({"overall": FIG, "zones": {...}}: the response fields estimated, the others
null). The choices (docs/DRILL.md "What-if units (`--deploy`)"):

- A deployed unit is *available* for a call when the call's `ts` lies in its [from, to); it answers
  any number of calls (it is a standing post, not dispatched away).
- Its ETA = straight-line distance × 1.3 / the speed of its kind (contract/response.py `eta_s`,
  the reach speeds of §3), in whole seconds.
- A call's estimated response is the smaller of its recorded arrival (`sla.events`) and the
  nearest available deployed unit's ETA; none when it has neither. `breaches` counts the calls
  recorded as breached whose estimate is still above 300 s or none.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from contract.errors import ConfigError, PlanError
from contract.plan import local_time, split_statements
from contract.response import BREACH_AFTER_MS, UNIT_SPEED_MS, eta_s, haversine_m
from reports.briefing import nearest_rank
from reports.drill import FIG_FIELDS, WITHIN

#: the FIG fields an estimate has; the others are null (§11)
ESTIMATED = ("calls", "arrived", "within_1m", "within_3m", "within_5m", "breaches", "p50_s", "p90_s")


@dataclass(frozen=True)
class Unit:
    unit_id: str
    kind: str
    lat: float
    lon: float
    start: int   # epoch ms
    end: int


def _time(value: object, tz: ZoneInfo, where: str) -> int:
    """The plan's local date-times (contract/plan.py `local_time`), or epoch ms as an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return local_time(value, tz, where)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None


def parse_units(text: str, source: str = "deploy", tz: str = "Asia/Shanghai") -> list[Unit]:
    """`[[unit]] id, kind, lat, lon, from, to` (times local to `timezone`, default `tz`; `;` may
    separate statements on one line, as in a duty plan)."""
    try:
        doc = tomllib.loads(split_statements(text)[0])   # `;` between statements, as in a plan (§10)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not TOML ({exc})") from None
    zone = ZoneInfo(str(doc.get("timezone", tz)))
    out = []
    for i, e in enumerate(doc.get("unit", [])):
        where = f"{source}: unit {i + 1}"
        try:
            uid, kind, lat, lon = str(e["id"]), str(e.get("kind", "car")), float(e["lat"]), float(e["lon"])
            start, end = _time(e["from"], zone, where), _time(e["to"], zone, where)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: needs id, lat, lon, from, to ({exc})") from None
        if kind not in UNIT_SPEED_MS:
            raise ConfigError(f"{where}: kind {kind!r} is none of {', '.join(UNIT_SPEED_MS)}")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or end <= start:
            raise ConfigError(f"{where}: lat/lon out of range or `to` not after `from`")
        out.append(Unit(uid, kind, lat, lon, start, end))
    if not out:
        raise ConfigError(f"{source}: no [[unit]]")
    return out


def load_units(path: Path, tz: str) -> list[Unit]:
    try:
        return parse_units(path.read_text(encoding="utf-8"), str(path), tz)
    except OSError as exc:
        raise ConfigError(f"--deploy {path}: cannot read it ({exc.strerror})") from exc


def nearest_eta(units: list[Unit], ts: int, lat: float, lon: float) -> int | None:
    """The smallest ETA (s) of the units available at `ts` to (lat, lon); None when none is."""
    etas = [eta_s(haversine_m(u.lat, u.lon, lat, lon), u.kind) for u in units if u.start <= ts < u.end]
    return min(etas) if etas else None


def estimate(start: int, end: int, zone_ids: Iterable[str], units: list[Unit], enriched: Iterable[dict],
             sla: Iterable[dict]) -> dict:
    """F of the estimate (see the module docstring)."""
    calls: dict[str, tuple[tuple[str, ...], float | None]] = {}
    for rec in enriched:
        cid, ts = rec.get("call_id"), rec.get("ts")
        if not isinstance(cid, str) or not isinstance(ts, int) or cid in calls or not start <= ts < end:
            continue
        calls[cid] = (tuple(rec.get("zones") or ()), nearest_eta(units, ts, float(rec["lat"]), float(rec["lon"])))
    recorded: dict[str, float] = {}
    breached: set[str] = set()
    for rec in sla:
        cid = rec.get("call_id")
        if cid in calls and rec.get("type") == "arrived" and cid not in recorded:
            recorded[cid] = float(rec["response_s"])
        elif cid in calls and rec.get("type") == "breach":
            breached.add(cid)
    est: dict[str, float | None] = {}
    for cid, (_zones, eta) in calls.items():
        options = [x for x in (recorded.get(cid), eta) if x is not None]
        est[cid] = min(options) if options else None
    overall = list(calls)
    by_zone: dict[str, list[str]] = {z: [] for z in zone_ids}
    for cid, (zones, _eta) in calls.items():
        for z in dict.fromkeys(zones):
            if z in by_zone:
                by_zone[z].append(cid)
    return {"overall": _fig(overall, est, breached),
            "zones": {z: _fig(c, est, breached) for z, c in sorted(by_zone.items())}}


def _fig(cids: list[str], est: dict[str, float | None], breached: set[str]) -> dict:
    responses = [r for c in cids if (r := est[c]) is not None]
    times: dict[int, int] = {}
    for r in responses:
        times[round(r)] = times.get(round(r), 0) + 1
    out: dict = dict.fromkeys(FIG_FIELDS)
    out.update(calls=len(cids), arrived=len(responses),
               breaches=sum(1 for c in cids if c in breached and ((r := est[c]) is None or r > BREACH_AFTER_MS / 1000)),
               p50_s=nearest_rank(times, 50), p90_s=nearest_rank(times, 90))
    for name, limit in WITHIN:
        out[name] = sum(1 for r in responses if r <= limit)
    return out
