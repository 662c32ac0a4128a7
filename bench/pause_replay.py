"""`python -m bench.pause_replay`: a real day fed in chunks with pauses through several workers,
its sla.events compared with a brute-force reference (issue 23 item 7).

The day (../shared/datasets, read by hand: no test CI runs depends on it):
- calls.110: the SFFD calls received that day, one record per Call Number (the file has one row
  per dispatched unit), at `Received DtTm`, mapped as `zonewatch replay`'s docstring shows;
- patrol.gps: every dispatched unit's `On Scene DtTm` as a fix at the call's place (real response
  times), and the 12 Cabspotting cabs as patrol units: their traces of --cab-day moved to the SFFD
  day at the same local time of day (available when free, busy with a fare);
- zones: a 6 x 6 grid over San Francisco (calls and fixes outside it are in no zone).

They are published in chunks of --chunk-min minutes of event time (topics interleaved in ts
order), --gap-s apart, with a pause of --pause-s (longer than the watermark's idle bound) at every
--every-h hours of event time, into a deployment of --workers workers on --partitions partitions
(bench/harness.py, the real worker processes), then read back from sla.events once every feed has
been quiet past the idle bound.

The reference is CONTRACT §3 by brute force, apart from the worker's code: per call, the earliest
fix of any unit within 100 m at or after its ts and before it expires (60 min) is its arrival; a
breach when there is none within 300 s. Records are compared as (type, call_id, unit_id,
response_s, ts); zone_ids are left out (which grid cell a point near an edge falls in is the zone
index's business, not the watermark's). Printed: arrivals and breaches of the run and the
reference, missing and extra records, breaches of calls the reference has reached within 300 s
(decided before a fix that prevents them had arrived), and calls with more than one arrival.

    python -m bench.pause_replay [--workers 3] [--partitions 7] [--day 2017-01-01] [--pause-s 35]
        [--idle-ms 30000] [--max-lag-ms 3600000] [--kafka-port P --redis-port P]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from bisect import bisect_left
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.chaos import settle  # noqa: E402
from bench.city import grid  # noqa: E402
from bench.harness import Deployment, wait_until  # noqa: E402
from connectors.replay import Converter  # noqa: E402
from contract import topics  # noqa: E402
from contract.security import kafka_python_kwargs  # noqa: E402
from deploy import stack as stack_module  # noqa: E402

LA = ZoneInfo("America/Los_Angeles")
SF_BBOX = (-122.52, 37.70, -122.35, 37.83)   # (min lon, min lat, max lon, max lat)
GRID_N = 6
EARTH_M = 6372797.560856
ARRIVAL_M, BREACH_MS, EXPIRY_MS = 100.0, 300_000, 3_600_000   # CONTRACT §3, written out here
SFFD_TS = "%m/%d/%Y %I:%M:%S %p"
CALL_MAP = {"call_id": "Call Number", "ts": "Received DtTm", "category": "Call Type", "priority": "Original Priority"}
CALL_VALUES = {"priority": {"E": "1", "3": "2", "2": "3", "1": "4", "A": "4"},
               "category": {"Medical Incident": "medical", "Structure Fire": "fire", "Outside Fire": "fire",
                            "Vehicle Fire": "fire", "Traffic Collision": "traffic",
                            "Citizen Assist / Service Call": "assistance", "*": "other"}}


def datasets() -> Path:
    for d in REPO.parents:
        if (d / "shared" / "datasets").is_dir():
            return d / "shared" / "datasets"
    raise SystemExit("../shared/datasets not found next to the checkout or a folder above it")


def grid_zones(path: Path) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": grid(SF_BBOX, GRID_N, prefix="sf")}))
    return path


def day_events(sffd_day: date, cab_day: date) -> list[tuple[str, dict]]:
    """(topic, record) of the day, in ts order (stable: calls before fixes of the same ms)."""
    root = datasets()
    conv_call = Converter(topics.CALLS, renames=CALL_MAP, value_maps=CALL_VALUES, ts_format=SFFD_TS, tz=str(LA),
                          latlon="Location", sets={"lang": "en"})
    conv_fix = Converter(topics.GPS, renames={"unit_id": "Unit ID", "ts": "On Scene DtTm"}, ts_format=SFFD_TS,
                         tz=str(LA), latlon="Location", sets={"status": "busy", "kind": "car"})
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    prefix = sffd_day.strftime("%m/%d/%Y")
    with open(root / "sffd-calls-2016-12-31_2017-01-07.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if not row["Received DtTm"].startswith(prefix):
                continue
            call, problems = conv_call.convert(row)
            if problems:
                continue
            if call["call_id"] not in seen:
                seen.add(call["call_id"])
                out.append((topics.CALLS, call))
            if row["On Scene DtTm"]:
                fix, problems = conv_fix.convert(row)
                if not problems:
                    out.append((topics.GPS, fix))
    shift = datetime.combine(sffd_day, datetime.min.time()) - datetime.combine(cab_day, datetime.min.time())
    for trace in sorted((root / "cabspotting").glob("new_*.txt")):
        cab = trace.stem.removeprefix("new_")
        for line in trace.read_text().splitlines():
            lat, lon, occupied, unix_s = line.split()
            local = datetime.fromtimestamp(int(unix_s), LA)
            if local.date() != cab_day:
                continue
            moved = (local.replace(tzinfo=None) + shift).replace(tzinfo=LA)   # same local time of day
            out.append((topics.GPS, {"unit_id": f"cab-{cab}", "ts": int(moved.timestamp() * 1000), "lat": float(lat),
                                     "lon": float(lon), "status": "busy" if occupied == "1" else "available",
                                     "kind": "car"}))
    out.sort(key=lambda e: (e[1]["ts"], e[0] != topics.CALLS))
    return out


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b[1] - a[1]) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def reference(events) -> set[tuple]:
    """CONTRACT §3 by brute force over every call and every fix (see the module docstring)."""
    fixes = sorted((ev["ts"], ev["unit_id"], ev["lat"], ev["lon"]) for t, ev in events if t == topics.GPS)
    times = [f[0] for f in fixes]
    clock = max(ev["ts"] for _t, ev in events)
    out = set()
    for t, c in events:
        if t != topics.CALLS:
            continue
        best = None   # every fix of the call's hour (fixes in ts order), the earliest within reach
        for ts, unit, lat, lon in fixes[bisect_left(times, c["ts"]):bisect_left(times, c["ts"] + EXPIRY_MS)]:
            if _dist((c["lat"], c["lon"]), (lat, lon)) <= ARRIVAL_M and (best is None or (ts, unit) < best):
                best = (ts, unit)
        if best is not None:
            out.add(("arrived", c["call_id"], best[1], round((best[0] - c["ts"]) / 1000, 3), best[0]))
        if (best is None or best[0] - c["ts"] > BREACH_MS) and c["ts"] + BREACH_MS <= clock:
            out.add(("breach", c["call_id"], None, None, c["ts"] + BREACH_MS))
    return out


def feed(dep: Deployment, events, chunk_ms: int, gap_s: float, pause_s: float, every_ms: int, say) -> None:
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=5, retries=2**31 - 1,
                         max_in_flight_requests_per_connection=1, **kafka_python_kwargs(dep.settings))
    t0 = events[0][1]["ts"] // chunk_ms * chunk_ms
    i = 0
    chunk = 0
    while i < len(events):
        end = t0 + (chunk + 1) * chunk_ms
        if chunk and (end - chunk_ms - t0) % every_ms == 0:
            say(f"pause of {pause_s:.0f} s at {datetime.fromtimestamp((end - chunk_ms) / 1000, LA):%H:%M}")
            time.sleep(pause_s)
        while i < len(events) and events[i][1]["ts"] < end:
            topic, ev = events[i]
            prod.send(dep.settings.topic(topic), orjson.dumps(ev), key=str(ev[topics.KEY_FIELD[topic]]).encode())
            i += 1
        prod.flush()
        chunk += 1
        time.sleep(gap_s)
    prod.close()


def sla_records(dep: Deployment) -> list[tuple]:
    out = []
    for m in dep.read_topic(topics.SLA):
        e = orjson.loads(m.value)
        out.append((e["type"], e["call_id"], e["unit_id"], e["response_s"], e["ts"]))
    return out


def compare(got: list[tuple], want: set[tuple]) -> dict:
    have = set(got)
    reached = {r[1] for r in want if r[0] == "arrived" and r[3] <= BREACH_MS / 1000}
    arrivals = Counter(r[1] for r in have if r[0] == "arrived")
    return {"arrived": sum(1 for r in have if r[0] == "arrived"), "breach": sum(1 for r in have if r[0] == "breach"),
            "want_arrived": sum(1 for r in want if r[0] == "arrived"),
            "want_breach": sum(1 for r in want if r[0] == "breach"),
            "missing": sorted(want - have), "extra": sorted(have - want),
            "wrong_breaches": sorted(r[1] for r in have if r[0] == "breach" and r[1] in reached),
            "arrivals_corrected": sorted(c for c, n in arrivals.items() if n > 1),
            "redelivered": len(got) - len(have)}


def run(stack: dict, events, args, say) -> dict:
    zones = grid_zones(REPO / ".stack" / "test" / "sf_grid.geojson")
    dep = Deployment(stack, zones, args.partitions, name=f"pause-{os.getpid()}-{int(time.time())}")
    dep.env["ZONEWATCH_WATERMARK_IDLE_MS"] = str(args.idle_ms)
    dep.env["ZONEWATCH_WATERMARK_MAX_LAG_MS"] = str(args.max_lag_ms)
    dep.env["ZONEWATCH_TZ"] = str(LA)
    try:
        for _ in range(args.workers):
            dep.start_worker()
        dep.wait_workers_joined(timeout=180)
        say(f"{args.workers} workers joined; feeding {len(events)} records")
        started = time.monotonic()
        feed(dep, events, args.chunk_min * 60_000, args.gap_s, args.pause_s, int(args.every_h * 3_600_000), say)
        say(f"fed in {time.monotonic() - started:.0f} s; settling")
        settle(dep, max(ev["ts"] for _t, ev in events), timeout=900)
        # the last decisions come once every feed has been quiet past the idle bound
        time.sleep(args.idle_ms / 1000 + 5)
        got: list[tuple] = []

        def stable():
            nonlocal got
            before = len(got)
            got = sla_records(dep)
            return len(got) == before and got

        wait_until(stable, timeout=300, interval=5.0, what=f"{topics.SLA} stable")
        return compare(got, reference(events))
    finally:
        dep.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=7)
    ap.add_argument("--day", type=date.fromisoformat, default=date(2017, 1, 1), help="the SFFD day (local)")
    ap.add_argument("--cab-day", type=date.fromisoformat, default=date(2008, 5, 18),
                    help="the cabs' day moved onto it (every cab drove most of it)")
    ap.add_argument("--chunk-min", type=float, default=5.0)
    ap.add_argument("--gap-s", type=float, default=0.5, help="wall time between chunks")
    ap.add_argument("--pause-s", type=float, default=35.0)
    ap.add_argument("--every-h", type=float, default=6.0)
    ap.add_argument("--idle-ms", type=int, default=30_000)
    ap.add_argument("--max-lag-ms", type=int, default=3_600_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--kafka-port", type=int, default=int(os.environ.get("ZONEWATCH_TEST_KAFKA_PORT", 19092)))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("ZONEWATCH_TEST_REDIS_PORT", 16379)))
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    events = day_events(args.day, args.cab_day)
    n = Counter(t for t, _ev in events)
    want = reference(events)
    say(f"day {args.day}: {n[topics.CALLS]} calls, {n[topics.GPS]} fixes; reference: "
        f"{sum(1 for r in want if r[0] == 'arrived')} arrivals, {sum(1 for r in want if r[0] == 'breach')} breaches")
    state = REPO / ".stack" / "test"
    stack = stack_module.up(kafka_port=args.kafka_port, redis_port=args.redis_port, state_dir=state)
    failed = False
    for i in range(args.runs):
        res = run(stack, events, args, say)
        ok = not (res["missing"] or res["extra"])
        failed |= not ok
        say(f"run {i + 1}: arrivals {res['arrived']} (reference {res['want_arrived']}), breaches {res['breach']} "
            f"(reference {res['want_breach']}); missing {len(res['missing'])}, extra {len(res['extra'])}, "
            f"breaches of calls reached within 300 s {len(res['wrong_breaches'])}, calls with a corrected arrival "
            f"{len(res['arrivals_corrected'])}, redelivered {res['redelivered']} => {'EXACT' if ok else 'DIFFERENT'}")
        for r in (res["missing"][:5] + res["extra"][:5]):
            say(f"  {'missing' if r in res['missing'] else 'extra'}: {r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
