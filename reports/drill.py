"""A drill's figures (CONTRACT §11): what one deployment wrote for the calls of [from, to) -> FIG,
overall and per zone, and the side-by-side comparison of the deployment of record and the variant.

Pure: records in, JSON-ready dicts out. Reading the topics and running the deployments is
zonewatch/drill_run.py; text is reports/drill_render.py. The choices (docs/DRILL.md):

- A call belongs to [from, to) by its `ts`; its zones are those of its `incidents.enriched` record
  (the deployment's own zones: a variant with other zones puts the call elsewhere). `overall`
  counts every call once, also calls in no zone; a zone counts the calls it holds.
- Response figures come from `sla.events` of those calls, as zones.daily computes them
  (streams/zone_state.py `_day_figures`): `arrived` and its p50/p90 (nearest rank, whole seconds,
  reports/briefing.py) over every arrival, late ones included; `within_*` arrivals within 60/180/300 s;
  `breaches`; `tiers_met` / `tiers_decided` of the `tiers` records. A record repeated (delivered
  twice) counts once: the first per (type, call).
- `post_minutes_*` from `duty.events` `post_status`: each status lasts until the post's next status,
  clipped to [from, to) (a status not yet followed by another counts nothing, as in zones.daily);
  a post counts in every zone that holds its position, once in `overall`. `checkpoint_misses`:
  `checkpoint_overdue` records with `ts` in [from, to), likewise.
- `reach_3m_mean`: per zone the time-weighted mean over [from, to) of `reach.within_3m` of its
  `zones.state` documents (each holds from its `clock` to the next document's; the time before the
  zone's first document counts nothing); `overall` the mean of the zones' means. Not exact: which
  documents a run writes depends on coalescing (docs/DRILL.md "The figures (FIG)").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reports.briefing import nearest_rank

FIG_FIELDS = ("calls", "arrived", "within_1m", "within_3m", "within_5m", "breaches", "p50_s", "p90_s",
              "tiers_met", "tiers_decided", "post_minutes_understaffed", "post_minutes_empty",
              "checkpoint_misses", "reach_3m_mean")
WITHIN = (("within_1m", 60), ("within_3m", 180), ("within_5m", 300))
#: post statuses whose minutes are counted (CONTRACT §10)
POST_MINUTES = (("understaffed", "post_minutes_understaffed"), ("empty", "post_minutes_empty"))
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


class Figures:
    """Accumulates one FIG: feed calls, sla records, post periods, misses and reach means."""

    def __init__(self) -> None:
        self.calls: set[str] = set()
        self.responses: dict[str, float] = {}
        self.breaches: set[str] = set()
        self.tiers: dict[str, bool] = {}
        self.post_ms = {field: 0 for _s, field in POST_MINUTES}
        self.misses = 0
        self.reach: list[float] = []

    def fig(self) -> dict:
        times: dict[int, int] = {}
        for r in self.responses.values():
            times[round(r)] = times.get(round(r), 0) + 1
        out: dict = {"calls": len(self.calls), "arrived": len(self.responses)}
        for name, limit in WITHIN:
            out[name] = sum(1 for r in self.responses.values() if r <= limit)
        out.update(breaches=len(self.breaches), p50_s=nearest_rank(times, 50), p90_s=nearest_rank(times, 90),
                   tiers_met=sum(self.tiers.values()), tiers_decided=len(self.tiers))
        for field, ms in self.post_ms.items():
            out[field] = round(ms / MINUTE_MS, 1)
        out["checkpoint_misses"] = self.misses
        out["reach_3m_mean"] = round(sum(self.reach) / len(self.reach), 4) if self.reach else None
        return {k: out[k] for k in FIG_FIELDS}


def figures(start: int, end: int, zone_ids: Iterable[str], enriched: Iterable[dict], sla: Iterable[dict],
            duty: Iterable[dict], states: Iterable[dict], places: Mapping[str, tuple[str, ...]]) -> dict:
    """F = {"overall": FIG, "zones": {zone_id: FIG}} of the calls of [start, end) (epoch ms).

    `enriched`, `sla`, `duty`, `states`: the deployment's incidents.enriched, sla.events,
    duty.events and zones.state records (dicts, any order); `places`: post or checkpoint id -> the
    zones holding its position; `zone_ids`: every zone of the deployment (a zone without calls
    still has its FIG)."""
    overall = Figures()
    zones = {z: Figures() for z in zone_ids}

    def targets(zids: Iterable[str]) -> list[Figures]:
        return [overall] + [zones[z] for z in dict.fromkeys(zids) if z in zones]

    call_zones: dict[str, tuple[str, ...]] = {}
    for rec in enriched:
        cid, ts = rec.get("call_id"), rec.get("ts")
        if not isinstance(cid, str) or not isinstance(ts, int) or cid in call_zones or not start <= ts < end:
            continue
        call_zones[cid] = tuple(rec.get("zones") or ())
        for f in targets(call_zones[cid]):
            f.calls.add(cid)
    for rec in sla:
        cid, kind = rec.get("call_id"), rec.get("type")
        if cid not in call_zones:
            continue
        for f in targets(call_zones[cid]):
            if kind == "arrived" and cid not in f.responses:
                f.responses[cid] = rec["response_s"]
            elif kind == "breach":
                f.breaches.add(cid)
            elif kind == "tiers" and cid not in f.tiers:
                f.tiers[cid] = bool(rec.get("met"))
    _duty(start, end, duty, places, targets)
    for zid, mean in reach_means(start, end, states).items():
        if zid in zones:
            zones[zid].reach.append(mean)
            overall.reach.append(mean)
    return {"overall": overall.fig(), "zones": {z: f.fig() for z, f in sorted(zones.items())}}


def _duty(start: int, end: int, duty: Iterable[dict], places: Mapping[str, tuple[str, ...]], targets) -> None:
    notes: dict[str, dict[int, str]] = {}
    misses: set[tuple[str, int]] = set()
    for rec in duty:
        kind, ts = rec.get("type"), rec.get("ts")
        if not isinstance(ts, int):
            continue
        if kind == "post_status" and isinstance(rec.get("post_id"), str):
            notes.setdefault(rec["post_id"], {})[ts] = rec.get("status", "")
        elif kind == "checkpoint_overdue" and isinstance(rec.get("checkpoint_id"), str) and start <= ts < end:
            misses.add((rec["checkpoint_id"], ts))
    statuses = dict(POST_MINUTES)
    for post, by_ts in notes.items():
        times = sorted(by_ts)
        for a, b in zip(times, times[1:], strict=False):
            field = statuses.get(by_ts[a])
            span = min(b, end) - max(a, start)
            if field and span > 0:
                for f in targets(places.get(post, ())):
                    f.post_ms[field] += span
    for cp, _ts in misses:
        for f in targets(places.get(cp, ())):
            f.misses += 1


def reach_means(start: int, end: int, states: Iterable[dict]) -> dict[str, float]:
    """Zone id -> time-weighted mean of `reach.within_3m` over [start, end) from its documents."""
    by_zone: dict[str, dict[int, tuple[int, float]]] = {}
    for doc in states:
        zid, clock, reach, version = doc.get("zone_id"), doc.get("clock"), doc.get("reach"), doc.get("version")
        if not isinstance(zid, str) or not isinstance(clock, int) or not isinstance(reach, dict):
            continue
        value = reach.get("within_3m")
        if isinstance(value, (int, float)):
            # of several documents of one clock the highest version holds (versions only increase)
            v = version if isinstance(version, int) else 0
            series = by_zone.setdefault(zid, {})
            if clock not in series or series[clock][0] <= v:
                series[clock] = (v, float(value))
    out = {}
    for zid, series in by_zone.items():
        clocks = sorted(series)
        total = weight = 0.0
        for i, c in enumerate(clocks):
            until = clocks[i + 1] if i + 1 < len(clocks) else end
            span = min(until, end) - max(c, start)
            if span > 0:
                total += series[c][1] * span
                weight += span
        if weight:
            out[zid] = total / weight
    return out


def hourly(start: int, end: int, enriched: Iterable[dict], sla: Iterable[dict]) -> dict:
    """The period's curve by hour from `start`: calls, and arrivals within 3 min, of the calls of
    each hour (for the html page's chart; not part of the json object)."""
    hours = max(1, -(-(end - start) // HOUR_MS))
    calls, within = [0] * hours, [0] * hours
    hour_of: dict[str, int] = {}
    for rec in enriched:
        cid, ts = rec.get("call_id"), rec.get("ts")
        if isinstance(cid, str) and isinstance(ts, int) and cid not in hour_of and start <= ts < end:
            hour_of[cid] = (ts - start) // HOUR_MS
            calls[hour_of[cid]] += 1
    seen: set[str] = set()
    for rec in sla:
        cid = rec.get("call_id")
        if rec.get("type") == "arrived" and cid in hour_of and cid not in seen and rec["response_s"] <= 180:
            seen.add(cid)
            within[hour_of[cid]] += 1
    return {"calls": calls, "within_3m": within}


def difference(base: dict, variant: dict) -> dict:
    """FIG of variant − baseline (None where either is None)."""
    out = {}
    for k in FIG_FIELDS:
        a, b = base.get(k), variant.get(k)
        out[k] = None if a is None or b is None else round(b - a, 4)
    return out


def report(start: int, end: int, baseline: dict, variant: dict, estimate: dict | None = None) -> dict:
    """The §11 json object: {"from", "to", "baseline": F, "variant": F, "estimate": F | None}."""
    return {"from": start, "to": end, "baseline": baseline, "variant": variant, "estimate": estimate}

