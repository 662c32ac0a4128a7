"""The daily briefing (研判): one local date's zones.daily records -> the report's figures.

Pure: records in, a JSON-ready dict out (`briefing`); reading Kafka is `reports.daily`, text is
`reports.render`. The report's keys do not depend on the language; renderers label them.

Overall figures count each call and alert once, however many (nested) zones hold it. Every record
carries `once` (streams/zone_state.py DayCounts): the figures of the events whose first zone is that
zone, and each event has exactly one first zone, so sums of `once` over the zones are exact; `once`
also carries the day's response times in whole seconds (`times`: seconds -> decisions), merged here
into the overall nearest-rank p50/p90. That costs each record a few counters and one histogram
entry per distinct second, where carrying the call ids (and unioning them here) would cost every
rewrite of a zone's record all of its calls' ids. Calls and alerts in no zone count nowhere.

Records written by a worker from before `once` (a compacted topic keeps a year of days) fall back
to sums over zones, where a call in k zones counts k times, and leave the overall p50/p90 null; the
notes say so. The totals per zone kind are sums in both cases: exact for a kind whose zones do not
overlap (a grid, districts). The spread of the zones' own p50/p90 (min, median of zones, max) is
given either way.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract import topics
from contract.errors import BriefingError
from contract.zones import KINDS

WORST_N = 5      # zones in each "worst" list
PEAK_N = 3       # busiest hours listed
RESPONSE_COUNTS = ("arrived", "within_1m", "within_3m", "within_5m", "breaches")
#: report["notes"] codes, rendered per language
NOTE_ONCE = "counted_once"              # overall figures from `once`: each event once
NOTE_SUMS = "sums_over_zones"           # records without `once`: overall figures are sums over zones
NOTE_PERCENTILES = "overall_percentiles"  # and no overall p50/p90
NOTE_UNREADABLE = "unreadable"


def briefing(records: list[dict], date: str, unreadable: dict[str, str] | None = None) -> dict:
    """The report of local date `date` from the latest zones.daily records (any dates).

    Raises BriefingError, listing the dates there are, when no record has this date.
    """
    day = [r for r in records if r["date"] == date]
    if not day:
        raise BriefingError(_not_there(records, date))
    zones = [_zone(r) for r in day]
    zones.sort(key=lambda z: (-z["response"]["breaches"], -z["calls"], z["zone_id"]))
    final = sum(z["final"] for z in zones)
    tz = _tz_of(day)
    clock = max((r.get("clock") or 0) for r in day)
    once: list[dict] = [r.get("once") for r in day]  # type: ignore[misc]  # dicts when exact
    exact = all(_once_ok(o) for o in once)
    # the overall figures: of `once` (each event once), else of the zones' own (sums over zones)
    overall = once if exact else day
    response = {k: sum(_int(o["response"].get(k)) for o in overall) for k in RESPONSE_COUNTS}
    decided = response["within_5m"] + response["breaches"]
    hourly = {k: [sum(int(o["hourly"][k][h]) for o in overall) for h in range(24)] for k in ("calls", "alerts")}
    times = _merge_times(o["response"]["times"] for o in once) if exact else {}
    skipped = sorted(k for k in (unreadable or {}) if k.split("|", 1)[0] in (date, k))
    notes = ([NOTE_ONCE] if exact else [NOTE_SUMS, NOTE_PERCENTILES]) + ([NOTE_UNREADABLE] if skipped else [])
    return {
        "date": date,
        "tz": tz,
        "status": "final" if final == len(zones) else "in_progress",
        "zones_final": final,
        "zones_total": len(zones),
        "as_of": _local(clock, tz) if clock else None,
        "totals": {
            "calls": sum(_int(o["calls"]) for o in overall),
            "alerts": sum(_int(o["alerts"]) for o in overall),
            "calls_by_priority": _by_priority(_sum_maps(o.get("calls_by_priority") for o in overall)),
            "calls_by_category": _by_count(_sum_maps(o.get("calls_by_category") for o in overall)),
            "alerts_by_type": _by_count(_sum_maps(o.get("alerts_by_type") for o in overall)),
        },
        "response": {
            **response,
            "decided": decided,
            "rates": _rates(response, decided),
            "p50_s": nearest_rank(times, 50),
            "p90_s": nearest_rank(times, 90),
            "zone_p50_s": _spread([z["response"]["p50_s"] for z in zones]),
            "zone_p90_s": _spread([z["response"]["p90_s"] for z in zones]),
        },
        "by_kind": _by_kind(zones),
        "zones": zones,
        "worst_by_breaches": _worst_by_breaches(zones),
        "worst_by_median": _worst_by_median(zones),
        "hourly": hourly,
        "peak_hours": _peaks(hourly),
        "calls_by_lang": [{"lang": k, "calls": n}
                          for k, n in _by_count(_sum_maps(o.get("calls_by_lang") for o in overall)).items()],
        "notes": notes,
        "unreadable": {k: (unreadable or {})[k] for k in skipped},
    }


def dates(records: list[dict]) -> dict[str, bool]:
    """Every date in the records -> whether all its zones are final, oldest first."""
    out: dict[str, bool] = {}
    for r in sorted(records, key=lambda r: r["date"]):
        out[r["date"]] = out.get(r["date"], True) and bool(r.get("final"))
    return out


def _not_there(records: list[dict], date: str) -> str:
    there = dates(records)
    if not there:
        return (f"no {topics.ZONES_DAILY} records for {date}: the topic holds no day yet "
                "(the worker writes it as the day goes on)")
    listed = ", ".join(_runs(there))
    return f"no {topics.ZONES_DAILY} records for {date}; the dates there are: {listed} (pass one with --date)"


def _runs(there: dict[str, bool]) -> list[str]:
    """Dates for a message: three or more consecutive final days as "first … last (n days)"
    (a compacted topic keeps a year of them), days in progress marked."""
    out: list[str] = []
    run: list[str] = []

    def flush():
        if len(run) >= 3:
            out.append(f"{run[0]} … {run[-1]} ({len(run)} days)")
        else:
            out.extend(run)
        run.clear()

    for d, final in there.items():
        if not final:
            flush()
            out.append(f"{d} (in progress)")
            continue
        if run and date.fromisoformat(d) - date.fromisoformat(run[-1]) != timedelta(days=1):
            flush()
        run.append(d)
    flush()
    return out


def _int(v) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def _opt(v) -> int | float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _zone(r: dict) -> dict:
    resp = r["response"]
    counts = {k: _int(resp.get(k)) for k in RESPONSE_COUNTS}
    decided = counts["within_5m"] + counts["breaches"]
    return {
        "zone_id": r["zone_id"],
        "name": str(r.get("name") or r["zone_id"]),
        "kind": r.get("kind") or "other",
        "ring": r.get("ring"),
        "final": bool(r.get("final")),
        "calls": _int(r["calls"]),
        "calls_p1": _int((r.get("calls_by_priority") or {}).get("1")),
        "alerts": _int(r["alerts"]),
        "response": {**counts, "p50_s": _opt(resp.get("p50_s")), "p90_s": _opt(resp.get("p90_s"))},
        "decided": decided,
        "rates": _rates(counts, decided),
    }


def _once_ok(o: object) -> bool:
    """Whether a record's `once` can be used (a record of an older worker has none)."""
    if not isinstance(o, dict) or not isinstance(o.get("response"), dict) or not isinstance(o.get("hourly"), dict):
        return False
    times = o["response"].get("times")
    return isinstance(times, dict) and all(isinstance(k, str) and k.isdigit() and _int(v) == v
                                           for k, v in times.items()) \
        and all(isinstance(o.get(k), int) for k in ("calls", "alerts")) \
        and all(isinstance(o["hourly"].get(k), list) and len(o["hourly"][k]) == 24 for k in ("calls", "alerts"))


def _merge_times(maps) -> dict[int, int]:
    """Response seconds -> decisions, summed over the zones' `once.response.times`."""
    out: dict[int, int] = {}
    for m in maps:
        for s, n in m.items():
            out[int(s)] = out.get(int(s), 0) + n
    return out


def nearest_rank(times: dict[int, int], percent: int) -> int | None:
    """The nearest-rank percentile of the merged times: the smallest second whose cumulative count
    reaches rank ceil(percent/100 x n), in integers (as the worker ranks a zone's own)."""
    n = sum(times.values())
    if not n:
        return None
    rank = (percent * n + 99) // 100
    seen = 0
    for s in sorted(times):
        seen += times[s]
        if seen >= rank:
            return s
    raise AssertionError("unreachable: the ranks add up to n")


def _rates(counts: dict, decided: int) -> dict:
    """Shares of the decided calls (on time within 5 min + breached) that were answered within
    1/3/5 min; a late arrival after a breach counts as the breach it was. None when none decided."""
    return {k: (round(counts[k] / decided, 4) if decided else None) for k in ("within_1m", "within_3m", "within_5m")}


def _spread(values: list) -> dict:
    """min / median (nearest rank, the lower middle) / max of the zones' own figures, and how many."""
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return {"zones": 0, "min": None, "median": None, "max": None}
    return {"zones": len(vs), "min": vs[0], "median": vs[(len(vs) + 1) // 2 - 1], "max": vs[-1]}


def _sum_maps(maps) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in (m or {}).items():
            out[str(k)] = out.get(str(k), 0) + _int(v)
    return out


def _by_count(m: dict[str, int]) -> dict[str, int]:
    return {k: n for k, n in sorted(m.items(), key=lambda kv: (-kv[1], kv[0])) if n}


def _by_priority(m: dict[str, int]) -> dict[str, int]:
    return {k: m[k] for k in sorted(m, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k)) if m[k]}


def _by_kind(zones: list[dict]) -> list[dict]:
    kinds: dict[str, dict] = {}
    for z in zones:
        k = kinds.setdefault(z["kind"], {"kind": z["kind"], "zones": 0, "calls": 0, "alerts": 0,
                                         "arrived": 0, "within_5m": 0, "breaches": 0})
        k["zones"] += 1
        for f in ("calls", "alerts"):
            k[f] += z[f]
        for f in ("arrived", "within_5m", "breaches"):
            k[f] += z["response"][f]
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(kinds.values(), key=lambda k: (order.get(k["kind"], len(order)), k["kind"]))


def _worst_by_breaches(zones: list[dict]) -> list[dict]:
    """Zones with breaches: most first, then the larger breached share, then id."""
    hit = [z for z in zones if z["response"]["breaches"]]
    hit.sort(key=lambda z: (-z["response"]["breaches"], -z["response"]["breaches"] / z["decided"], z["zone_id"]))
    return [{"zone_id": z["zone_id"], "name": z["name"], "breaches": z["response"]["breaches"],
             "decided": z["decided"], "breach_rate": round(z["response"]["breaches"] / z["decided"], 4)}
            for z in hit[:WORST_N]]


def _worst_by_median(zones: list[dict]) -> list[dict]:
    """Zones with a median response: slowest first, then the slower p90, then id."""
    timed = [z for z in zones if z["response"]["p50_s"] is not None]
    timed.sort(key=lambda z: (-z["response"]["p50_s"], -(z["response"]["p90_s"] or 0), z["zone_id"]))
    return [{"zone_id": z["zone_id"], "name": z["name"], "p50_s": z["response"]["p50_s"],
             "p90_s": z["response"]["p90_s"], "arrived": z["response"]["arrived"]} for z in timed[:WORST_N]]


def _peaks(hourly: dict) -> list[dict]:
    """The busiest local hours by calls (ties: the earlier hour), hours without calls left out."""
    hours = sorted((h for h in range(24) if hourly["calls"][h]), key=lambda h: (-hourly["calls"][h], h))
    return [{"hour": h, "calls": hourly["calls"][h], "alerts": hourly["alerts"][h]} for h in hours[:PEAK_N]]


def _tz_of(day: list[dict]) -> str:
    tzs = sorted({str(r["tz"]) for r in day if r.get("tz")})
    return tzs[0] if tzs else "UTC"


def _local(clock_ms: int, tz: str) -> str:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(clock_ms / 1000, zone).isoformat(timespec="seconds")

