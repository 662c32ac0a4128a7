"""CPU per input event of the worker's pure flow (streams/testing.Pipeline), in-process.

    .venv/bin/python -m bench.pipeline_cost                      # 1 and 7 partitions, 700,000 events
    .venv/bin/python -m bench.pipeline_cost --partitions 7 --events 300000
    .venv/bin/python -m bench.pipeline_cost --partitions 7 --writes   # zone writes per event
    .venv/bin/python -m bench.pipeline_cost --partitions 4 --duty marathon   # the duty plan's and coverage's cost
    .venv/bin/python -m bench.pipeline_cost --partitions 4 --duty marathon --paired --minutes 50   # ... slice by slice

A district-like stream (bench/city.py `CityStream`: 5,000 walking units, 2,000 cameras, 740 ev/s,
85 % fixes, 0.5 % calls) over the `city` zone set, read in ts order in batches of 500, through the
same pieces as the worker (router, zone-events encoded and decoded, partition states, incidents
stage, the arrival loop) without Kafka or Redis. The first --warmup events fill the held fixes
(grace + staleness) and are not measured; the figure is process CPU time over the rest divided by
their number, and its ingest part (`Router.route` and the zone-events encoding) apart from the
rest (decoding, the partition states, the arrival loop). Also printed: zone-events records per input
fix and per call, bytes per input event, and the incidents stage's held fixes and their memory
(sys.getsizeof over its look-back structures) at the end, with the largest partition's share against
the mean (a partition that runs hot). The machine is shared: run it twice and take the smaller figure,
or alternate two checkouts and compare ratios.

`--duty marathon` measures what the duty plan (CONTRACT §10: posts and checkpoints) and coverage add
per event, in one process: the marathon scenario's events with its plan's duty layer (units at the
posts, the sweep, the operator's phase change; connectors/scenario/duty.py) over the marathon zones,
fed through the flow three ways — coverage off and no plan, the worker as it is without a plan
(coverage on), and with contract/data/plans/marathon.toml loaded — the same events each time, in
alternating rounds (the smallest figure per way is kept), with a flush every --flush-events events
(zone documents as the worker's flush takes them, and the posts', checkpoints' and phase's; 185 is
a 250 ms flush at a district's 740 events/s, the rate of the figures above: the marathon's own
~45 events/s in real time would flush every ~11 events and the flushes would dominate every figure). Coverage
off is the router sending no fix to a partition for coverage alone and the partition states
skipping the per-fix coverage update and its share (streams/coverage.py), patched in-process. The
increments (coverage; posts and checkpoints; both) are reported in µs per event and as ratios to
the worker without a plan, measured in the same run. With `--paired` the three ways are fed slice by
slice in turn instead (`duty_cost_paired`): on a shared machine whose load drifts over a run, the
increments of separate rounds are ±10-20 µs apart, the paired ones ~±1.

`--writes` measures zone documents written per input event instead: the measured events are fed
in slices of --flush-ms of event time (at 740 ev/s the stream's event time is its wall time), and
after each slice every partition's changed documents are taken as a flush does when the clock
moved (`changed_documents(all_zones=True)`); the 10 s heartbeat's clock-only rewrites are left out
(they are the same whatever the figures do: zones / 10 s).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson

from contract import topics
from contract.plan import COMMAND_KEY
from contract.settings import DATA_DIR, Settings
from contract.zones import load_zones
from streams import records, routing
from streams.coverage import ZoneCoverage
from streams.testing import Msg, Pipeline

from .city import CityStream, zone_set

T0 = 1_686_441_600_000   # 2023-06-11 08:00 +08:00


def _deep_size(obj, seen: set) -> int:
    """Bytes of the containers, tuples, numbers and strings reachable from obj (shared ones once)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            size += _deep_size(k, seen) + _deep_size(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            size += _deep_size(v, seen)
    return size


def held_bytes(pipe: Pipeline) -> tuple[int, int, float]:
    """(held fixes, bytes of the structures that hold them) over every partition, and the most a
    partition holds against the mean."""
    size = 0
    per_part = []
    seen: set = set()
    for st in pipe.states.values():
        inc = st.incidents
        for attr in ("fixes", "fixes_by_unit"):
            obj = getattr(inc, attr, None)
            if obj is not None:
                size += _deep_size(obj, seen)
        per_part.append(sum(len(lst) for by_cell in inc.fixes.values() for lst in by_cell.values()))
    n = sum(per_part)
    return n, size, max(per_part) * len(per_part) / max(1, n)


class _Timed:
    """A callable that adds its process CPU time to `self.cpu`."""

    def __init__(self, fn):
        self.fn, self.cpu = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - t0


def zone_writes(pipe: Pipeline, msgs: list, flush_events: int) -> tuple[int, float, float]:
    """(zone documents written, CPU s feeding, CPU s taking the documents) over msgs, flushed
    every flush_events events (see the module doc)."""
    written = 0
    feed_cpu = flush_cpu = 0.0
    for i in range(0, len(msgs), flush_events):
        t0 = time.process_time()
        pipe.feed(msgs[i:i + flush_events], batch=flush_events)
        t1 = time.process_time()
        for st in pipe.states.values():
            written += len(st.changed_documents(all_zones=True))
        flush_cpu += time.process_time() - t1
        feed_cpu += t1 - t0
    return written, feed_cpu, flush_cpu


def run(partitions: int, events: int, warmup: int, batch: int, flush_ms: int | None = None) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix="zw-cost-"))
    zones_file, _what, bbox = zone_set("city", out_dir)
    s = Settings(zones=zones_file, partitions=partitions, future_tolerance_ms=10 ** 13)
    zones = load_zones(zones_file)
    pipe = Pipeline(s, zones=zones, reach_cells=True)
    msgs = CityStream(bbox, seed=11).messages(s, events, T0)
    n_fix = sum(1 for m in msgs if m.topic == s.topic(topics.GPS))
    n_call = sum(1 for m in msgs if m.topic == s.topic(topics.CALLS))
    # count zone-events records by kind (what the router makes), on a copy of the router's work
    counted = {}
    orig = records.encode_split

    def counting(evs, *a, **kw):
        for r in evs:
            counted[type(r).__name__] = counted.get(type(r).__name__, 0) + 1
        payloads = orig(evs, *a, **kw)
        counted["bytes"] = counted.get("bytes", 0) + sum(map(len, payloads))
        return payloads

    pipe.feed(msgs[:warmup], batch=batch)
    gc.collect()
    if flush_ms is not None:
        measured = msgs[warmup:]
        span_s = max(1, measured[-1].timestamp - measured[0].timestamp) / 1000
        flush_events = max(1, round(len(measured) / span_s * flush_ms / 1000))
        for st in pipe.states.values():   # the warm-up's documents are written already
            st.changed_documents(all_zones=True)
        written, feed_cpu, flush_cpu = zone_writes(pipe, measured, flush_events)
        return {"partitions": partitions, "events": len(measured), "flush_events": flush_events,
                "zone_writes": written, "writes_per_event": written / len(measured),
                "writes_per_s": written / span_s, "feed_us": feed_cpu / len(measured) * 1e6,
                "flush_us": flush_cpu / len(measured) * 1e6}
    # the router makes the zone-events messages (Router.zone_events) with its own name for it
    routing.encode_split = counting
    # the ingest's part: routing and encoding (the counting wrapper is in both runs alike)
    route, zone_events = _Timed(pipe.router.route), _Timed(pipe.router.zone_events)
    pipe.router.route, pipe.router.zone_events = route, zone_events   # type: ignore[method-assign]
    try:
        t0 = time.process_time()
        pipe.feed(msgs[warmup:], batch=batch)
        cpu = time.process_time() - t0
    finally:
        routing.encode_split = orig
    measured = msgs[warmup:]
    m_fix = sum(1 for m in measured if m.topic == s.topic(topics.GPS))
    held, size, hottest = held_bytes(pipe)
    ingest = route.cpu + zone_events.cpu
    return {"partitions": partitions, "events": len(measured), "cpu_s": cpu,
            "us_per_event": cpu / len(measured) * 1e6,
            "ingest_us": ingest / len(measured) * 1e6, "state_us": (cpu - ingest) / len(measured) * 1e6,
            "hottest": hottest,
            "incident_fix_per_fix": counted.get("IncidentFix", 0) / max(1, m_fix),
            "zone_fix_per_fix": counted.get("ZoneFix", 0) / max(1, m_fix),
            "bytes_per_event": counted.get("bytes", 0) / len(measured),
            "fixes": n_fix, "calls": n_call, "held_fixes": held, "held_bytes": size,
            "enriched": len(pipe.enriched)}


# --- the duty plan's and coverage's cost (--duty) -----------------------------------------------
#: the three ways the marathon's events are fed (--duty), in the order of each round
DUTY_WAYS = (("no coverage, no plan", False, False), ("no plan (the worker today)", True, False),
             ("marathon plan", True, True))


@contextlib.contextmanager
def coverage_off(pipe: Pipeline):
    """The flow without coverage: no fix routed to a partition for coverage alone, no per-fix update
    and no share computed (every document's coverage reads 0)."""
    fix, doc = ZoneCoverage.fix, ZoneCoverage.doc
    ZoneCoverage.fix = lambda self, cell, ts, clock: ()   # type: ignore[method-assign,assignment]
    ZoneCoverage.doc = lambda self, zone_id, clock: ({"60m": 0.0, "8h": 0.0}, 2**62)  # type: ignore[method-assign,assignment]
    parts = [r.cover_parts for r in pipe.routers]
    for r in pipe.routers:
        r.cover_parts = {}
    try:
        yield
    finally:
        ZoneCoverage.fix, ZoneCoverage.doc = fix, doc   # type: ignore[method-assign]
        for r, cp in zip(pipe.routers, parts, strict=True):
            r.cover_parts = cp


def marathon_messages(plan_file: Path, minutes: float, seed: int = 7) -> tuple[list, int]:
    """The marathon scenario's events with the plan's duty layer, as messages (4 input partitions by
    key, as a producer would spread them); and how many of them are the duty layer's."""
    from connectors.scenario import scenario_events
    from connectors.scenario.plans import BUNDLED_START_MS
    from contract.plan import load_plan

    plan = load_plan(plan_file)
    evs = scenario_events(seed, scenario="marathon", start_ms=BUNDLED_START_MS["marathon"],
                          duration_s=minutes * 60, plan=plan)
    msgs, duty = [], 0
    for i, (t, ev) in enumerate(evs):
        assert isinstance(ev, dict)
        if t == topics.PLAN_COMMANDS:
            key = COMMAND_KEY.encode()
        else:
            key = str(ev[topics.KEY_FIELD[t]]).encode()
        duty += t == topics.PLAN_COMMANDS or str(ev.get("unit_id", "")).startswith(("DUTY-", "SWEEP-"))
        msgs.append(Msg(t, zlib.crc32(key) % 4, i, key, orjson.dumps(ev), ev["ts"]))
    return msgs, duty


def duty_way(msgs: list, zones_file: Path, plan_file: Path | None, coverage: bool, partitions: int,
             warmup: int, batch: int, flush_events: int) -> dict:
    """CPU per event of one way (module doc): feeding, and the flushes' documents."""
    s = Settings(zones=zones_file, partitions=partitions, plan=plan_file, future_tolerance_ms=10 ** 13)
    msgs = [m._replace(topic=s.topic(m.topic)) for m in msgs]
    pipe = Pipeline(s, zones=load_zones(zones_file), reach_cells=True)
    with contextlib.ExitStack() as stack:
        if not coverage:
            stack.enter_context(coverage_off(pipe))
        pipe.feed(msgs[:warmup], batch=batch)
        measured = msgs[warmup:]
        states = [h.state for h in pipe.stage.held.values()]
        for st in states:   # the warm-up's documents are written already
            st.changed_documents(all_zones=True)
            pipe.stage.duty.documents(st)
        gc.collect()
        feed_cpu = flush_cpu = 0.0
        written = duty_written = 0
        for i in range(0, len(measured), flush_events):
            t0 = time.process_time()
            pipe.feed(measured[i:i + flush_events], batch=min(batch, flush_events))
            t1 = time.process_time()
            for st in states:
                written += len(st.changed_documents(all_zones=True))
                duty_written += len(pipe.stage.duty.documents(st))
            flush_cpu += time.process_time() - t1
            feed_cpu += t1 - t0
    n = len(measured)
    return {"events": n, "us_per_event": (feed_cpu + flush_cpu) / n * 1e6, "feed_us": feed_cpu / n * 1e6,
            "flush_us": flush_cpu / n * 1e6, "zone_writes": written, "duty_writes": duty_written,
            "duty_records": len(pipe.duty)}


def duty_cost(partitions: int, minutes: float, warmup_minutes: float, rounds: int, batch: int,
              flush_events: int) -> dict:
    """The three ways of DUTY_WAYS over the same events, `rounds` times in turn; the smallest CPU
    per event of each way, and the increments against the worker without a plan."""
    plan_file = DATA_DIR / "plans" / "marathon.toml"
    zones_file = DATA_DIR / "marathon_zones.geojson"
    msgs, duty_events = marathon_messages(plan_file, minutes)
    t_warm = msgs[0].timestamp + warmup_minutes * 60_000
    warmup = next(i for i, m in enumerate(msgs) if m.timestamp >= t_warm)
    best: dict[str, dict] = {}
    for _r in range(rounds):
        for name, coverage, with_plan in DUTY_WAYS:
            r = duty_way(msgs, zones_file, plan_file if with_plan else None, coverage, partitions, warmup, batch,
                         flush_events)
            if name not in best or r["us_per_event"] < best[name]["us_per_event"]:
                best[name] = r
    bare, today, planned = (best[name]["us_per_event"] for name, _c, _p in DUTY_WAYS)
    return {"partitions": partitions, "events": len(msgs), "measured": len(msgs) - warmup,
            "duty_layer_events": duty_events, "rounds": rounds, "ways": best,
            "coverage_us": today - bare, "plan_us": planned - today, "both_us": planned - bare,
            "coverage_ratio": today / bare, "plan_ratio": planned / today, "both_ratio": planned / bare}


def duty_cost_paired(partitions: int, minutes: float, warmup_minutes: float, batch: int, flush_events: int) -> dict:
    """The three ways of DUTY_WAYS fed slice by slice in turn (--paired): every flush slice of the
    measured events goes through each way before the next slice, the ways' order rotating, so the
    machine's load drifts over the three alike and the increments hold on a shared machine. The
    warm states are frozen out of the garbage collector's view (gc.freeze) once all three are warm:
    a collection in one way's slice then does not traverse the other two's states."""
    plan_file = DATA_DIR / "plans" / "marathon.toml"
    zones_file = DATA_DIR / "marathon_zones.geojson"
    msgs, duty_events = marathon_messages(plan_file, minutes)
    t_warm = msgs[0].timestamp + warmup_minutes * 60_000
    warmup = next(i for i, m in enumerate(msgs) if m.timestamp >= t_warm)
    ways = []
    for name, coverage, with_plan in DUTY_WAYS:
        s = Settings(zones=zones_file, partitions=partitions, plan=plan_file if with_plan else None,
                     future_tolerance_ms=10 ** 13)
        way_msgs = [m._replace(topic=s.topic(m.topic)) for m in msgs]
        pipe = Pipeline(s, zones=load_zones(zones_file), reach_cells=True)
        off = coverage_off if not coverage else (lambda _pipe: contextlib.nullcontext())
        with off(pipe):
            pipe.feed(way_msgs[:warmup], batch=batch)
        states = [h.state for h in pipe.stage.held.values()]
        for st in states:   # the warm-up's documents are written already
            st.changed_documents(all_zones=True)
            pipe.stage.duty.documents(st)
        ways.append((name, pipe, way_msgs[warmup:], off, states))
    gc.collect()
    gc.freeze()
    cpu = [0.0] * len(ways)
    n = len(msgs) - warmup
    try:
        for k, i in enumerate(range(0, n, flush_events)):
            for j in range(len(ways)):
                w = (k + j) % len(ways)
                _name, pipe, measured, off, states = ways[w]
                with off(pipe):
                    t0 = time.process_time()
                    pipe.feed(measured[i:i + flush_events], batch=min(batch, flush_events))
                    for st in states:
                        st.changed_documents(all_zones=True)
                        pipe.stage.duty.documents(st)
                    cpu[w] += time.process_time() - t0
    finally:
        gc.unfreeze()
    bare, today, planned = (c / n * 1e6 for c in cpu)
    return {"partitions": partitions, "events": len(msgs), "measured": n, "duty_layer_events": duty_events,
            "ways": {name: c / n * 1e6 for (name, *_rest), c in zip(ways, cpu, strict=True)},
            "coverage_us": today - bare, "plan_us": planned - today, "both_us": planned - bare,
            "coverage_ratio": today / bare, "plan_ratio": planned / today, "both_ratio": planned / bare}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, nargs="*", default=[1, 7])
    ap.add_argument("--events", type=int, default=700_000)
    ap.add_argument("--warmup", type=int, default=550_000,
                    help="events before the measurement (≥ 12.5 min of event time at 740 ev/s)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--writes", action="store_true", help="measure zone writes per event (module doc)")
    ap.add_argument("--flush-ms", type=int, default=250, help="with --writes: event time between flushes")
    ap.add_argument("--duty", choices=["marathon"], help="the duty plan's and coverage's cost per event (module doc)")
    ap.add_argument("--minutes", type=float, default=120.0, help="with --duty: simulated minutes of the marathon")
    ap.add_argument("--warmup-minutes", type=float, default=20.0, help="with --duty: not measured")
    ap.add_argument("--rounds", type=int, default=3, help="with --duty: rounds of the three ways")
    ap.add_argument("--flush-events", type=int, default=185, help="with --duty: events between flushes")
    ap.add_argument("--paired", action="store_true",
                    help="with --duty: the three ways slice by slice in turn, one round (duty_cost_paired)")
    a = ap.parse_args(argv)
    if a.duty and a.paired:
        for p in a.partitions:
            r = duty_cost_paired(p, a.minutes, a.warmup_minutes, a.batch, a.flush_events)
            print(f"partitions={p}: the marathon, {a.minutes:g} simulated minutes, {r['events']} events, "
                  f"{r['measured']} measured after {a.warmup_minutes:g} min, the three ways slice by slice "
                  f"(a flush every {a.flush_events} events):", flush=True)
            for name, us in r["ways"].items():
                print(f"  {name:<28} {us:6.1f} µs CPU per event", flush=True)
            print(f"  coverage {r['coverage_us']:+.1f} µs (x{r['coverage_ratio']:.3f}); posts and checkpoints "
                  f"{r['plan_us']:+.1f} µs (x{r['plan_ratio']:.3f}); both {r['both_us']:+.1f} µs "
                  f"(x{r['both_ratio']:.3f})", flush=True)
        return
    if a.duty:
        for p in a.partitions:
            r = duty_cost(p, a.minutes, a.warmup_minutes, a.rounds, a.batch, a.flush_events)
            print(f"partitions={p}: the marathon, {a.minutes:g} simulated minutes, {r['events']} events "
                  f"({r['duty_layer_events']} of them the duty layer's), {r['measured']} measured after "
                  f"{a.warmup_minutes:g} min, batches of {a.batch}, a flush every {a.flush_events} events; "
                  f"the smallest of {r['rounds']} rounds:", flush=True)
            for name, _c, _p in DUTY_WAYS:
                w = r["ways"][name]
                print(f"  {name:<28} {w['us_per_event']:6.1f} µs CPU per event (feeding {w['feed_us']:.1f}, "
                      f"flushes {w['flush_us']:.1f}); zone documents {w['zone_writes']}, duty documents "
                      f"{w['duty_writes']}, duty.events {w['duty_records']}", flush=True)
            print(f"  coverage:                {r['coverage_us']:+6.1f} µs per event (x{r['coverage_ratio']:.3f})\n"
                  f"  posts and checkpoints:   {r['plan_us']:+6.1f} µs per event (x{r['plan_ratio']:.3f} the "
                  f"worker without a plan)\n"
                  f"  both:                    {r['both_us']:+6.1f} µs per event (x{r['both_ratio']:.3f})",
                  flush=True)
        return
    for p in a.partitions:
        if a.writes:
            r = run(p, a.events, a.warmup, a.batch, flush_ms=a.flush_ms)
            print(f"partitions={r['partitions']}: {r['writes_per_event']:.4f} zone writes per event "
                  f"({r['zone_writes']} over {r['events']} events, {r['writes_per_s']:.1f} per s of event time; "
                  f"a flush every {r['flush_events']} events); CPU per event: feeding {r['feed_us']:.1f} µs, "
                  f"taking the documents {r['flush_us']:.1f} µs", flush=True)
            continue
        r = run(p, a.events, a.warmup, a.batch)
        print(f"partitions={r['partitions']}: {r['us_per_event']:.1f} µs CPU per event over {r['events']} events "
              f"({r['cpu_s']:.1f} s; ingest {r['ingest_us']:.1f}, state {r['state_us']:.1f}); zone-events records "
              f"per fix: IncidentFix {r['incident_fix_per_fix']:.2f}, ZoneFix {r['zone_fix_per_fix']:.2f} "
              f"({r['bytes_per_event']:.0f} zone-events bytes per event); held "
              f"fixes {r['held_fixes']} in {r['held_bytes'] / 1e6:.1f} MB "
              f"({r['held_bytes'] / max(1, r['held_fixes']):.0f} B each; the largest partition "
              f"{r['hottest']:.2f}x the mean); enriched records {r['enriched']}", flush=True)


if __name__ == "__main__":
    main()
