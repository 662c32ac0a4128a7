"""CPU per fix and per alert in a dense cell: N calls open around one spot, events read there (issue 25's
dense-incident cliff), for this checkout's IncidentState and a baseline commit's, in the same run.

    .venv/bin/python -m bench.dense_cell                        # N = 100, 500, 2000, 5000; baseline d55909f
    .venv/bin/python -m bench.dense_cell --open 2000 --baseline main

One zone-events message carries up to 5,000 records (ingest's batch), applied in one go: at a few
hundred µs per event it holds the event loop past the 6 s session timeout. The cases, each measured
as process CPU over --events events after the N calls are open (the figure per event, and its ratio
to the baseline's in the same run):

- `alert-before`: the calls came within 10 s at one spot; alerts there 11+ min before them (outside
  the corroboration window: they corroborate nothing) — test_intake before 923c360.
- `alert-within`: the calls came within 10 s; alerts there in the 10 min after them: each one
  corroborates the calls until they hold 50, then only those it is closer in time to than their
  farthest (none here: later alerts are farther in time).
- `fix-reached`: the calls came over 40 min at the spot (within 80 m), each reached by a unit 60 s
  after it, tiers decided; fixes within 80 m afterwards decide nothing.
- `fix-unreached-out-of-reach`: calls over 40 min, none reached; fixes 150-300 m from the spot (in
  its cells' reach disk, beyond the 100 m arrival radius) decide nothing.
- `fix-tiers-open`: the calls came within 10 s; fixes of 100 units within 80 m during the next
  5 min (tiers open): each unit's first fix puts it on scene at the calls within 100 m, its later
  ones decide nothing.

The baseline is streams/incidents.py of --baseline (git show), loaded beside this one.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import time
from pathlib import Path

from h3.api import basic_int as h3

from streams import incidents
from streams.partitioning import FINE_RES

SPOT = (34.7466, 113.6253)
T0 = 1_700_000_000_000
MIN = 60_000
CASES = ("alert-before", "alert-within", "fix-reached", "fix-unreached-out-of-reach", "fix-tiers-open")


def baseline_module(ref: str):
    """streams/incidents.py as of `ref`, importable beside the current one (as streams._incidents_<ref>)."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{ref}:streams/incidents.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    name = f"streams._incidents_{ref.replace('/', '_').replace('-', '_')}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "streams"
    sys.modules[name] = mod
    exec(compile(src, f"{ref}:streams/incidents.py", "exec"), mod.__dict__)  # noqa: S102  # our own source
    return mod


def _at(rng: random.Random, lo_m: float, hi_m: float) -> tuple[float, float]:
    """A point lo_m..hi_m from the spot (1e-5 deg ~ 1.1 m north, ~0.9 m east here)."""
    while True:
        dy, dx = rng.uniform(-hi_m, hi_m), rng.uniform(-hi_m, hi_m)
        if lo_m <= (dx * dx + dy * dy) ** 0.5 <= hi_m:
            return SPOT[0] + dy / 111_000, SPOT[1] + dx / 91_500


def _cell(p: tuple[float, float]) -> int:
    return h3.latlng_to_cell(p[0], p[1], FINE_RES)


def prepare(mod, case: str, n_open: int, n_events: int, seed: int = 3):
    """(state with the N calls open, the events to measure as (method name, args) tuples)."""
    rng = random.Random(seed)
    s = mod.IncidentState()
    t_calls = T0 + 60 * MIN
    spread = 10_000 if case in ("alert-before", "alert-within", "fix-tiers-open") else 40 * MIN
    s.advance_clock(t_calls - 1)
    calls = []
    for i in range(n_open):
        p = _at(rng, 0, 80)
        ts = t_calls + rng.randrange(spread)
        calls.append((ts, p))
        s.on_call(f"c{i}", ts, p[0], p[1], _cell(p), ["Z"], {"call_id": f"c{i}", "nearest_units": []})
    end = max(ts for ts, _p in calls)
    if case == "fix-reached":
        for i, (ts, p) in enumerate(sorted(calls)):
            s.on_fix(f"r{i % 50}", ts + 60_000, p[0], p[1], _cell(p), True, "car")
        end += 60_000
        s.advance_clock(end + 1, end + 1)   # arrivals and tiers decided (the calls stay open an hour)
    else:
        s.advance_clock(end, end)
    s.take_output()
    events = []
    for i in range(n_events):
        if case == "alert-before":
            p = _at(rng, 0, 80)
            events.append(("on_alert", (f"a{i}", t_calls - 11 * MIN - i, "crowd_density", p[0], p[1], _cell(p))))
        elif case == "alert-within":
            p = _at(rng, 0, 80)
            events.append(("on_alert", (f"a{i}", end + 1 + i * 500_000 // n_events, "crowd_density", p[0], p[1],
                                        _cell(p))))
        elif case == "fix-tiers-open":
            p = _at(rng, 0, 80)
            events.append(("on_fix", (f"u{i % 100}", end + 1 + i * 240_000 // n_events, p[0], p[1], _cell(p),
                                      True, "car")))
        else:
            p = _at(rng, 0, 80) if case == "fix-reached" else _at(rng, 150, 300)
            events.append(("on_fix", (f"u{i % 100}", end + 1 + i * 10, p[0], p[1], _cell(p), True, "car")))
    return s, events


def measure(mod, case: str, n_open: int, n_events: int) -> float:
    """µs of process CPU per event."""
    s, events = prepare(mod, case, n_open, n_events)
    calls = [(getattr(s, name), args) for name, args in events]
    t0 = time.process_time()
    for fn, args in calls:
        fn(*args)
    return (time.process_time() - t0) / n_events * 1e6


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--open", type=int, nargs="*", default=[100, 500, 2000, 5000], help="calls open at the spot")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--baseline", default="d55909f", help="git ref of the baseline incidents.py")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    a = ap.parse_args(argv)
    base = baseline_module(a.baseline)
    print(f"µs CPU per event, this checkout vs {a.baseline} ({a.events} events each; a 5,000-record "
          "message at that rate in brackets)")
    for case in a.cases:
        for n in a.open:
            now = measure(incidents, case, n, a.events)
            then = measure(base, case, n, a.events)
            print(f"{case:28s} open={n:5d}: {now:8.1f} µs  (baseline {then:9.1f} µs; x{then / now:7.1f} faster) "
                  f"[5,000 records: {now * 5000 / 1e6:.3f} s vs {then * 5000 / 1e6:.3f} s]", flush=True)


if __name__ == "__main__":
    main()
