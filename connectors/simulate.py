"""`zonewatch simulate` — the bundled scenarios: a big event at the Zhengzhou Olympic Sports Center
(`--scenario demo`, the default) or a marathon in Lanzhou (`--scenario marathon`).

What the demo generates (all on the contract's input topics, CONTRACT §1):

* **patrol.gps** — a few hundred patrol units (`foot`, `car`, `motorcycle`, `swat`; a few `off_duty`),
  each pinging every 5–10 s. Vehicles are stationed at street posts (屯警街面: three or four units a
  post, posts on a 400 m street lattice across the 6 km × 6 km patrol grid), dwell there, and now and
  then drive a patrol loop along the streets; foot officers hold posts around the venue in fours and
  walk short rounds; SWAT teams are staged inside the venue's inner ring. About 1 % of units patrol
  outside every zone.
* **calls.110** — emergency calls, a Poisson process (`--calls-per-min`), weighted toward the venue,
  with a plausible category / priority mix (mostly public order, lost & found and assistance near
  the venue; theft, disputes and traffic in the streets); ~1 % land outside every zone. For every
  call the dispatcher picks the nearest available unit (by travel time); after the call-handling
  delay it turns `busy`, travels there along the streets at response speed, stays 5–15 min and
  becomes `available` again. Response times as the pipeline measures them (first fix of any unit
  within 100 m) come out like a city's: about a quarter within 1 min (an officer happened to be
  close), ~60 % within 3 min, ~90 % within 5 min, a tail beyond (far calls, delayed dispatches).
  That is why the grid is 6 × 6 one-kilometre squares: 300 units packed into 4 × 4 km would be
  within 100 m of almost every call by chance.
* **camera.alerts** — 200 fixed cameras (a third of them inside the venue rings) raising contract
  alert types (`--alerts-per-min`, Poisson): crowd density dominates at the venue, vehicle watch-list
  hits in the streets, the occasional face watch-list hit / fence intrusion in the core ring.
* `--bad-rate P` adds malformed messages (invalid JSON, a missing field, an out-of-range latitude,
  a non-RFC-3339 ts) at rate P per event, to show the dead-letter path.

Health (`--health`; on by default in the marathon, off in the demo so that its events stay what they
always were): every camera's platform reports it on **camera.status** every 5 min; now and then a
camera goes silent (no reports, no alerts) for 35–90 min or is reported offline (`online: false`,
no alerts) for 10–60 min, and a unit goes quiet (no fixes) for 3–20 min, then each comes back.

The marathon (`--scenario marathon`, zones in `contract/data/marathon_zones.geojson`): a 42.195 km
course along the Yellow River from Dongfanghong Square to Yintan with 27 emergency points, barriers
and gates; the gun fires 30 min after `--start`, runners finish from ~2 h 06 to the 6 h cutoff.
Calls come mostly from runners where they are on the course (medical, more in the later
kilometres), from the start and finish areas and from spectators; foot officers stand along the
course, motorcycles ride it, cars wait at the cross streets; cameras line the course and the rings.
Defaults: 260 units, 180 cameras, 3 calls and 40 alerts a minute.

The duty plan (CONTRACT §10; `--plan FILE`, default ZONEWATCH_PLAN): units keep the plan's posts
(of the forces each counts, and a volunteer that does not count), now and then leave and come back;
sweep riders pass its checkpoints, late when held up; an operator changes the phase mid-run and
returns to the schedule (plan.commands). `--write-plan FILE` writes the scenario's own plan for the
run's `--start` (posts at the venue's gates, the marathon's 27 emergency points, gates and
barriers; sweep checkpoints) and exits: connectors/scenario/duty.py, plans.py.

Time: simulated time starts at `--start` and events carry it as `ts`. `--speed 1` (the default)
emits each event when due in real time, `--speed 10` ten times faster, `--max` as fast as Kafka
takes it. `--duration` is in simulated seconds (default: until Ctrl-C). With `--max`, or a speed
above 1 and a duration, the default start is chosen so that the simulated period ends *now*:
event times never run ahead of the wall clock (the pipeline rejects events from the future).

A scenario is a pure function of `--seed` and the start time; generation (connectors/scenario/) is
separate from sending, pure Python, and fast (well above 50 k events/s), so the benchmark uses it too.

Each scenario's zones file matches its geography and is regenerated, byte for byte, by

    python -m connectors.simulate --write-zones contract/data/demo_zones.geojson
    python -m connectors.simulate --scenario marathon --write-zones contract/data/marathon_zones.geojson

Examples:

    zonewatch simulate                                 # live, real time, until Ctrl-C
    zonewatch simulate --speed 10 --duration 3600      # an hour in six minutes, ending now
    zonewatch simulate --max --duration 86400 --seed 3 # a whole day, as fast as possible
    zonewatch simulate --dry-run --duration 60 | head  # look at the events, no Kafka
    zonewatch simulate --scenario marathon --speed 10 --duration 25200   # race day in 42 min
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson

from contract import topics
from contract.errors import ConfigError, KafkaUnavailable, PlanError, ProducerError
from contract.plan import load_plan
from contract.settings import Settings

from . import command
from .pacing import send_paced
from .scenario import HEALTH_BY_DEFAULT, SCENARIOS, ZONES_WRITERS, scenario_events
from .scenario.plans import write_plan

CALLS, GPS, ALERTS, STATUS = topics.CALLS, topics.GPS, topics.ALERTS, topics.STATUS


# --- command line -----------------------------------------------------------------------------
def parse_start(value: str | None) -> int | None:
    """`now` / None -> None (decided later); an ISO 8601 time (UTC if no offset) or epoch ms -> ms."""
    if value is None or value == "now":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--start {value!r}: use 'now', epoch ms or ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def default_start(now_ms: int, speed: float | None, duration_s: float | None) -> int:
    """A start such that simulated time never runs ahead of the wall clock (when that is possible)."""
    if duration_s is None:
        return now_ms
    if speed is None:                       # --max: the whole period lies in the past
        return now_ms - int(duration_s * 1000)
    if speed > 1:                           # catches up with the wall clock exactly at the end
        return now_ms - int(duration_s * 1000 * (speed - 1) / speed)
    return now_ms


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default="demo",
                   help="demo: the Zhengzhou venue (default); marathon: the Lanzhou course")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--units", type=int, help="patrol units (default 300; marathon 260)")
    p.add_argument("--cameras", type=int, help="cameras (default 200; marathon 180)")
    p.add_argument("--calls-per-min", type=float, help="110 calls per minute (default 6; marathon 3)")
    p.add_argument("--alerts-per-min", type=float, help="camera alerts per minute (default 60; marathon 40)")
    p.add_argument("--health", action=argparse.BooleanOptionalAction,
                   help="camera status reports, silent and offline cameras, quiet units "
                        "(default: on in the marathon, off in the demo)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    pace.add_argument("--max", action="store_true", help="as fast as possible (benchmarks, tests)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="simulated seconds (default: until Ctrl-C)")
    p.add_argument("--start", metavar="now|ISO", help="simulated start time (default: now, or so that the "
                   "simulated period ends now with --max / --speed > 1 and --duration)")
    p.add_argument("--bad-rate", type=float, default=0.0, metavar="P",
                   help="probability per event of an extra malformed message (dead-letter demo), e.g. 0.001")
    p.add_argument("--dry-run", action="store_true",
                   help='print events as JSONL {"topic": ..., "value": ...} on stdout instead of producing')
    p.add_argument("--quiet", "-q", action="store_true", help="no status lines")
    command.add_kafka_arguments(p)
    p.add_argument("--write-zones", metavar="PATH", type=Path,
                   help="write the zones GeoJSON matching the scenario to PATH and exit")
    # the duty plan (CONTRACT §10, connectors/scenario/duty.py)
    p.add_argument("--plan", metavar="FILE", type=Path, default=None,
                   help="a duty plan (default ZONEWATCH_PLAN): units keep its posts and sweep its checkpoints, "
                        "and an operator changes the phase mid-run (on plan.commands)")
    p.add_argument("--phase-after", metavar="SECONDS", type=float, default=None,
                   help="when the operator's phase change comes, after --start (default: halfway through "
                        "--duration, or two hours)")
    p.add_argument("--write-plan", metavar="PATH", type=Path,
                   help="write the scenario's duty plan for this run's --start to PATH and exit (its phases "
                        "are in force while the run lasts)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    return command.add_parser(subparsers, "simulate", "run a bundled scenario (Zhengzhou venue, Lanzhou marathon)",
                              __doc__, add_arguments, run)


class _Status:
    def __init__(self, quiet: bool, every_s: float = 5.0):
        self.quiet, self.every = quiet, every_s
        self.counts: Counter = Counter()
        self.t0 = self.last = time.monotonic()
        self.last_n = 0
        self.sim_ts = 0

    def line(self) -> str:
        now = time.monotonic()
        n = sum(self.counts.values())
        rate = (n - self.last_n) / max(1e-9, now - self.last)
        self.last, self.last_n = now, n
        sim = datetime.fromtimestamp(self.sim_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") \
            if self.sim_ts else "-"
        shown = (CALLS, GPS, ALERTS, STATUS) if self.counts[STATUS] else (CALLS, GPS, ALERTS)
        per = "  ".join(f"{t} {self.counts[t]:,}" for t in shown)
        bad = f"  malformed {self.counts['bad']:,}" if self.counts["bad"] else ""
        return f"[sim {sim}Z] {per}{bad}  ({rate:,.0f} ev/s)"

    def tick(self) -> None:
        if not self.quiet and time.monotonic() - self.last >= self.every:
            print(self.line(), file=sys.stderr, flush=True)


async def simulate(events, settings: Settings, speed: float | None, start_ms: int, status: _Status,
                   input_topics=topics.INPUT_TOPICS) -> None:
    """Send `events` ((topic, record) pairs); pace them by `ts` unless `speed` is None. The
    `input_topics` the events go to must exist."""
    from connectors.producer import EventProducer

    counts = status.counts

    def count(topic: str, ev) -> None:
        if isinstance(ev, dict) and type(ev.get("ts")) is int:
            status.sim_ts = ev["ts"]
            if _valid_shape(ev, topic):
                counts[topic] += 1
                return
        counts["bad"] += 1

    async with EventProducer(settings) as p:
        await p.ensure_topics(input_topics)
        await send_paced(p, events, speed, origin_ms=start_ms, on_send=count,
                         on_progress=lambda _n: status.tick(), every=5000)


def _valid_shape(ev: dict, topic: str) -> bool:
    if topic == topics.PLAN_COMMANDS:   # an operator's command (the duty layer)
        return "command_id" in ev
    lat = ev.get("lat")
    return (topics.KEY_FIELD[topic] in ev and "lat" in ev and "lon" in ev
            and isinstance(lat, float) and -90 <= lat <= 90)


def _checked(events):
    """The first event now, so that a bad parameter (--units 0) fails before anything is sent."""
    it = iter(events)
    try:
        first = next(it)
    except StopIteration:
        return iter(())
    return itertools.chain((first,), it)


def run(args: argparse.Namespace) -> int:
    if args.write_zones:
        path = ZONES_WRITERS[args.scenario](args.write_zones)
        print(f"wrote {path}", file=sys.stderr)
        return 0
    speed = None if args.max else args.speed
    if speed is not None and not speed > 0:
        return command.fail("simulate", "--speed must be > 0", 2)
    try:
        start_ms = parse_start(args.start)
    except argparse.ArgumentTypeError as exc:
        return command.fail("simulate", exc, 2)
    now_ms = int(time.time() * 1000)
    if start_ms is None:
        start_ms = default_start(now_ms, speed, args.duration)
        if args.duration is None and (speed is None or speed > 1) and not args.dry_run:
            print("zonewatch simulate: warning: without --duration, simulated time runs ahead of the "
                  "wall clock; the pipeline rejects events more than its future tolerance (5 min) ahead",
                  file=sys.stderr)
    if args.write_plan:
        path = write_plan(args.scenario, args.write_plan, start_ms)
        print(f"wrote {path} (phases from {datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()})",
              file=sys.stderr)
        return 0
    health = HEALTH_BY_DEFAULT[args.scenario] if args.health is None else args.health
    plan_path = args.plan or (Path(os.environ["ZONEWATCH_PLAN"]) if os.environ.get("ZONEWATCH_PLAN") else None)
    try:
        plan = load_plan(plan_path, os.environ.get("ZONEWATCH_TZ") or "Asia/Shanghai") if plan_path else None
    except PlanError as exc:
        return command.fail("simulate", exc, 2)
    try:
        events = scenario_events(args.seed, scenario=args.scenario, units=args.units, cameras=args.cameras,
                                 calls_per_min=args.calls_per_min, alerts_per_min=args.alerts_per_min,
                                 start_ms=start_ms, duration_s=args.duration, bad_rate=args.bad_rate,
                                 health=health, plan=plan, phase_after_s=args.phase_after)
        events = _checked(events)
    except ValueError as exc:
        return command.fail("simulate", exc, 2)
    if args.dry_run:
        out = sys.stdout.buffer
        try:
            for topic, ev in events:
                if isinstance(ev, bytes):
                    out.write(orjson.dumps({"topic": topic, "raw": ev.decode("utf-8", "replace")}))
                else:
                    out.write(orjson.dumps({"topic": topic, "value": ev}))
                out.write(b"\n")
            out.flush()
        except BrokenPipeError:  # `| head`
            sys.stderr.close()
        return 0
    status = _Status(args.quiet)
    try:
        settings = command.settings(args)
    except ConfigError as exc:
        return command.fail("simulate", exc, 2)
    if not args.quiet:
        start_s = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(timespec="seconds")
        what = "" if args.scenario == "demo" else f"the {args.scenario} scenario, "
        print(f"simulating {what}seed {args.seed} from {start_s} "
              f"({'max speed' if speed is None else f'speed {speed:g}x'}"
              f"{'' if args.duration is None else f', {args.duration:g} s'}) -> {settings.kafka}",
              file=sys.stderr)
    try:
        used = topics.INPUT_TOPICS if health else (CALLS, GPS, ALERTS)   # no camera.status without health
        if plan is not None:
            used = (*used, topics.PLAN_COMMANDS)
        asyncio.run(simulate(events, settings, speed, start_ms, status, used))
    except (ProducerError, KafkaUnavailable) as exc:
        return command.fail("simulate", exc, 1)
    except KeyboardInterrupt:
        pass
    if not args.quiet:
        print("done: " + status.line(), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command.main("connectors.simulate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
