"""Sizes of the worker's state, measured in-process (no Kafka, no Redis): the byte figures of
docs/OPERATIONS.md "Sizing", and the look-back rebuild's cost per event as a ratio.

    .venv/bin/python -m bench.state_sizes                       # every part (about 5 minutes)
    .venv/bin/python -m bench.state_sizes --only dedup snapshot

Parts (each printed as one line, and as JSON with --json):

- `dedup`: the call and alert id memory (streams/dedup.py) fed `--ids-per-hour` ids for 30 hours
  of stream clock; its memory by tracemalloc at the end of an hour (the open hour full) and just
  after it was sealed, so bytes per remembered id in each form and bytes held per id of a day.
- `snapshot`: a district-like stream (bench/city.py over the `city` zone set, 4 partitions) for
  `--minutes` of event time, then every partition's snapshot (StateStage.snapshot): its bytes raw
  and compressed, and each part of it msgpack-encoded alone: per zone (days, minute buckets,
  incidents, last events), per unit (latest fix, presence in zones, reach), per camera, per open
  incident, per open-hour dedup id.
- `memory`: the resident memory (VmRSS) of a fresh process after the same stream with two unit
  counts (the event rate scaled with them), and with the zones alone (demo 39, city 412): the
  slope per unit and per zone. RSS is what the kernel charges a pod for; Python keeps freed memory
  for reuse, so each figure comes from its own process.
- `rebuild`: the look-back rebuild of a takeover (streams/recovery.py, as bench/lookback_cost.py)
  after the same stream, in CPU per input event of the look-back window, and as a ratio to the
  live flow's CPU per event in the same process: CPU times are noisy on a shared machine, the
  ratio much less.

The stream is the soak's district mix (bench/soak.py: a unit fixes every 7.5 s, 20 alerts/s and
10 calls/min per 5,200 units), not `make bench`'s (whose 0.5 % calls are 3.7 calls/s).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import msgspec

from contract.response import DEDUP_HORIZON_MS
from contract.settings import Settings
from contract.zones import load_zones
from streams.dedup import HOUR_MS, IdMemory, id_hash
from streams.testing import Msg, Pipeline

from .city import CityStream, zone_set

T0 = 1_686_441_600_000     # 2023-06-11 08:00 +08:00
DISTRICT_UNITS = 5200      # the soak's district (bench/soak.py)
FIX_EVERY_S = 7.5          # a unit pings every 5-10 s
ALERTS_PER_S = 20.0        # 1,200 alerts/min
CALLS_PER_S = 10 / 60      # 10 calls/min
PARTITIONS = 4
_enc = msgspec.msgpack.Encoder()


def nbytes(obj) -> int:
    return len(_enc.encode(obj))


def district_mix(units: int) -> tuple[float, tuple[float, float, float]]:
    """(events/s, mix) of the soak's district scaled to `units` patrol units."""
    scale = units / DISTRICT_UNITS
    fixes, alerts, calls = units / FIX_EVERY_S, ALERTS_PER_S * scale, CALLS_PER_S * scale
    rate = fixes + alerts + calls
    return rate, (fixes / rate, alerts / rate, calls / rate)


# ------------------------------------------------------------------------------------- dedup


def dedup(ids_per_hour: int, hours: int = 30, batch: int = 500) -> dict:
    """Memory of IdMemory fed `ids_per_hour` fresh ids for `hours` hours of stream clock."""
    mem = IdMemory()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step = HOUR_MS // ids_per_hour
    full_open = sealed = 0
    n_open = n_held = 0
    for h in range(hours):
        for i0 in range(0, ids_per_hour, batch):
            clock = T0 + h * HOUR_MS + i0 * step
            mem.advance(clock)
            hashes = [id_hash("a", f"A-{h:03d}-{i:07d}") for i in range(i0, min(i0 + batch, ids_per_hour))]
            hits = mem.hit_sealed(hashes)
            for k, hsh in enumerate(hashes):
                mem.seen(hsh, clock + k * step, clock, hits)
        if h == hours - 1:
            del hashes, hits
            gc.collect()
            full_open = tracemalloc.get_traced_memory()[0] - base   # the open hour holds a full hour
            n_open, n_held = len(mem.open), len(mem)
            mem.advance(T0 + hours * HOUR_MS)                       # sealed
            gc.collect()
            sealed = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    n_sealed = len(mem)
    per_sealed = sealed / n_sealed
    per_open = (full_open - (sealed - n_open * per_sealed)) / n_open if n_open else 0.0
    per_day = ids_per_hour * 24
    # held on average over an hour: the sealed hours within the horizon, plus half an open hour
    held_hours = n_sealed / ids_per_hour
    avg = held_hours * ids_per_hour * per_sealed + ids_per_hour / 2 * per_open
    return {"ids_per_hour": ids_per_hour, "hours": hours, "horizon_h": DEDUP_HORIZON_MS / HOUR_MS,
            "held_ids": n_held, "sealed_ids": n_sealed, "sealed_hours": len(mem.sealed),
            "bytes_sealed": sealed, "bytes_full_open": full_open,
            "bytes_per_sealed_id": round(per_sealed, 2), "bytes_per_open_id": round(per_open, 1),
            "bytes_held_avg": round(avg), "bytes_per_id_per_day": round(avg / per_day, 2),
            "snapshot_bytes_per_id": 8}


# ---------------------------------------------------------------------------------- pipeline


def stream_msgs(s: Settings, bbox, units: int, minutes: float, chunk: int = 5000) -> Iterator[list[Msg]]:
    """The stream's messages, `chunk` at a time (a list of all would be most of the memory measured).
    Values are copied to their exact size, as Kafka's are: orjson's bytes keep a 4 KB buffer each."""
    rate, mix = district_mix(units)
    stream = CityStream(bbox, units=units, cameras=6000 * units // DISTRICT_UNITS, rate=rate, mix=mix, seed=23)
    events = stream.events(int(rate * minutes * 60), T0)
    i = 0
    while batch := list(islice(events, chunk)):
        yield [Msg(s.topic(t), zlib.crc32(k) % 4, i + j, k, memoryview(v).tobytes(), ts)
               for j, (t, k, v, ts) in enumerate(batch)]
        i += len(batch)


def feed(pipe: Pipeline, bbox, units: int, minutes: float) -> tuple[int, float]:
    """(events, process CPU seconds of the pipeline's work on them, without making them)."""
    n, cpu = 0, 0.0
    for msgs in stream_msgs(pipe.s, bbox, units, minutes):
        t0 = time.process_time()
        pipe.feed(msgs, batch=500)
        cpu += time.process_time() - t0
        n += len(msgs)
    return n, cpu


def city_pipeline(units: int, minutes: float, keep_log: bool = False, zone_name: str = "city",
                  with_events: bool = True) -> tuple[Pipeline, int, float]:
    """(pipeline after the stream, events fed, process CPU seconds of feeding them)."""
    out_dir = Path(tempfile.mkdtemp(prefix="zw-sizes-"))
    zones_file, _what, bbox = zone_set(zone_name, out_dir)
    s = Settings(zones=zones_file, partitions=PARTITIONS, future_tolerance_ms=10 ** 13)
    pipe = Pipeline(s, zones=load_zones(zones_file), reach_cells=True, keep_log=keep_log)
    if not with_events:
        return pipe, 0, 0.0
    n, cpu = feed(pipe, bbox, units, minutes)
    return pipe, n, cpu


def snapshot_sizes(pipe: Pipeline) -> dict:
    """Every partition's snapshot: its bytes, and its parts encoded alone, per zone, unit, camera,
    open incident and open-hour dedup id."""
    raw = compressed = 0
    per = {"zone": 0, "unit": 0, "camera": 0, "incident": 0, "dedup": 0, "other": 0}
    units: set[str] = set()
    cameras: set[str] = set()
    n_inc = n_ids = 0
    n_zones = 0
    for p in pipe.stage.held:
        value = dict(pipe.stage.snapshot(p))[f"{p}/state".encode()]
        compressed += len(value)
        snap = pipe.stage.held[p].state.snapshot()
        raw += nbytes(snap)
        for days, minutes, in_zone, incidents, cams, last_ts, *firsts in snap["zones"].values():
            n_zones += 1
            per["zone"] += nbytes([days, minutes, incidents, last_ts, firsts])
            per["unit"] += nbytes(in_zone)
            per["camera"] += nbytes(cams)
        reach = snap["reach"]
        per["zone"] += nbytes([reach["value"], reach["at"], reach["dirty"]])
        per["zone"] += nbytes(snap.get("coverage"))   # the zones' patrolled cells (v3), bounded by their cells
        per["unit"] += nbytes(snap["unit_latest"]) + nbytes(reach["latest"])
        per["camera"] += nbytes(snap["camera_latest"]) + nbytes(snap["camera_status"])
        per["incident"] += nbytes(snap["incidents"])
        per["dedup"] += nbytes(snap["seen"])
        per["other"] += nbytes([snap["watermark"], snap["clock"], snap["wm"]])
        units.update(snap["unit_latest"])
        cameras.update(snap["camera_latest"])
        n_inc += len(snap["incidents"]["incidents"])
        n_ids += len(snap["seen"]["open"]) // 8
    return {"partitions": len(pipe.stage.held), "zones": n_zones, "units": len(units), "cameras": len(cameras),
            "incidents": n_inc, "open_ids": n_ids, "bytes_raw": raw, "bytes_compressed": compressed,
            "parts": per,
            "per_zone": round(per["zone"] / max(1, n_zones)), "per_unit": round(per["unit"] / max(1, len(units))),
            "per_camera": round(per["camera"] / max(1, len(cameras))),
            "per_incident": round(per["incident"] / max(1, n_inc)),
            "per_open_id": round(per["dedup"] / max(1, n_ids), 1)}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child_memory(units: int, minutes: float, zone_name: str) -> dict:
    """In a fresh process: RSS before anything, after the zones (pipeline built), after the stream."""
    gc.collect()
    start = rss_bytes()
    pipe, n, _cpu = city_pipeline(units, minutes, zone_name=zone_name, with_events=False)
    gc.collect()
    zones_rss = rss_bytes()
    if units:
        _f, _w, bbox = zone_set(zone_name, Path(tempfile.mkdtemp(prefix="zw-sizes-")))
        n, _cpu = feed(pipe, bbox, units, minutes)
    gc.collect()
    held = sum(len(lst) for st in pipe.states.values() for by_cell in st.incidents.fixes.values()
               for lst in by_cell.values())
    return {"units": units, "zones": sum(len(st.zones) for st in pipe.states.values()), "events": n,
            "rss_start": start, "rss_zones": zones_rss, "rss_end": rss_bytes(), "held_fixes": held}


def memory(units: tuple[int, int], minutes: float) -> dict:
    """RSS per unit (slope between two unit counts) and per zone (demo vs city, no events), each
    measured in its own process."""
    def run(u: int, zones: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "bench.state_sizes", "--child-memory", str(u), str(minutes), zones],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    lo, hi = run(units[0], "city"), run(units[1], "city")
    demo = run(0, "demo")
    city0 = run(0, "city")
    per_unit = (hi["rss_end"] - lo["rss_end"]) / (hi["units"] - lo["units"])
    per_zone = (city0["rss_zones"] - demo["rss_zones"]) / (city0["zones"] - demo["zones"])
    return {"runs": [lo, hi, demo, city0], "minutes": minutes, "rss_per_unit": round(per_unit),
            "rss_base_city": round(hi["rss_end"] - per_unit * hi["units"]),
            "rss_per_zone": round(per_zone), "held_fixes_per_unit": round(hi["held_fixes"] / hi["units"], 1)}


# ---------------------------------------------------------------------------------- rebuild


def rebuild(units: int, minutes: float) -> dict:
    """CPU of a takeover's look-back rebuild per input event of the look-back window, and its ratio
    to the live flow's CPU per event, both in this process."""
    from .lookback_cost import rebuild as rebuild_all

    pipe, n, live_cpu = city_pipeline(units, minutes, keep_log=True)
    assert pipe.log is not None
    rate, _mix = district_mix(units)
    window_events = min(n, int(rate * pipe.stage.lookback_ms / 1000))
    cpu, messages, fixes = rebuild_all(pipe, paused=True)
    per_event = cpu / window_events
    live_per_event = live_cpu / n
    return {"units": units, "events": n, "live_cpu_s": round(live_cpu, 2),
            "live_us_per_event": round(live_per_event * 1e6, 1),
            "lookback_s": pipe.stage.lookback_ms / 1000, "window_events": window_events,
            "rebuild_cpu_s": round(cpu, 2), "messages": messages, "held_fixes": fixes,
            "rebuild_us_per_event": round(per_event * 1e6, 1), "ratio_to_live": round(per_event / live_per_event, 3)}


# ------------------------------------------------------------------------------------- main


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=["dedup", "snapshot", "memory", "rebuild"],
                    choices=["dedup", "snapshot", "memory", "rebuild"])
    ap.add_argument("--ids-per-hour", type=int, default=72_000, help="dedup: the soak's 20 alerts/s")
    ap.add_argument("--units", type=int, nargs=2, default=[2600, 5200], help="memory: two unit counts")
    ap.add_argument("--minutes", type=float, default=20.0, help="event time of the stream (> grace + 2 min)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    ap.add_argument("--child-memory", nargs=3, metavar=("UNITS", "MINUTES", "ZONES"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child_memory:
        u, m, z = a.child_memory
        print(json.dumps(child_memory(int(u), float(m), z)))
        return
    out: dict = {"commit": _commit(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "dedup" in a.only:
        d = out["dedup"] = dedup(a.ids_per_hour)
        _say(a, f"dedup: {d['ids_per_hour']:,} ids/h for {d['hours']} h: {d['held_ids']:,} held "
                f"({d['sealed_hours']} sealed hours, horizon {d['horizon_h']:.0f} h); {d['bytes_per_sealed_id']} B "
                f"per sealed id, {d['bytes_per_open_id']} B per open-hour id; held on average "
                f"{d['bytes_held_avg'] / 2**20:.1f} MiB = {d['bytes_per_id_per_day']} B per id of a day; "
                f"snapshots topic {d['snapshot_bytes_per_id']} B per sealed id")
    if "snapshot" in a.only:
        pipe, n, _cpu = city_pipeline(a.units[1], a.minutes)
        s = out["snapshot"] = snapshot_sizes(pipe) | {"events": n, "minutes": a.minutes}
        del pipe
        _say(a, f"snapshot after {n:,} events ({a.minutes:g} min, {s['units']:,} units, {s['zones']} zones, "
                f"{s['partitions']} partitions): {s['bytes_raw'] / 1e6:.2f} MB raw, "
                f"{s['bytes_compressed'] / 1e6:.2f} MB compressed; per zone {s['per_zone']} B, per unit "
                f"{s['per_unit']} B, per camera {s['per_camera']} B, per open incident {s['per_incident']} B "
                f"({s['incidents']}), per open-hour id {s['per_open_id']} B")
    if "memory" in a.only:
        m = out["memory"] = memory(tuple(a.units), a.minutes)
        lo, hi, demo, city0 = m["runs"]
        _say(a, f"memory (RSS, fresh processes): {lo['units']:,} units {lo['rss_end'] / 2**20:.1f} MiB, "
                f"{hi['units']:,} units {hi['rss_end'] / 2**20:.1f} MiB after {a.minutes:g} min -> "
                f"{m['rss_per_unit'] / 1024:.1f} KiB per unit ({m['held_fixes_per_unit']} held fixes each), "
                f"base {m['rss_base_city'] / 2**20:.1f} MiB; zones alone: demo {demo['zones']} "
                f"{demo['rss_zones'] / 2**20:.1f} MiB, city {city0['zones']} {city0['rss_zones'] / 2**20:.1f} MiB -> "
                f"{m['rss_per_zone'] / 1024:.1f} KiB per zone")
    if "rebuild" in a.only:
        r = out["rebuild"] = rebuild(a.units[1], a.minutes)
        _say(a, f"rebuild: look-back {r['lookback_s']:.0f} s = {r['window_events']:,} events, {r['messages']:,} "
                f"messages, {r['held_fixes']:,} held fixes: {r['rebuild_cpu_s']} s CPU = "
                f"{r['rebuild_us_per_event']} µs per event; live flow {r['live_us_per_event']} µs per event "
                f"({r['events']:,} events); ratio {r['ratio_to_live']}")
    if a.json:
        print(json.dumps(out, indent=1))


def _say(a, line: str) -> None:
    if not a.json:
        print(line, flush=True)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
