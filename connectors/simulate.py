"""`zonewatch simulate` — the bundled scenario: a big event at the Zhengzhou Olympic Sports Center.

What it generates (all on the contract's input topics, CONTRACT §1):

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

Time: simulated time starts at `--start` and events carry it as `ts`. `--speed 1` (the default)
emits each event when due in real time, `--speed 10` ten times faster, `--max` as fast as Kafka
takes it. `--duration` is in simulated seconds (default: until Ctrl-C). With `--max`, or a speed
above 1 and a duration, the default start is chosen so that the simulated period ends *now*:
event times never run ahead of the wall clock (the pipeline rejects events from the future).

The scenario is a pure function of `--seed` and the start time; generation (`scenario_events`) is
separate from sending, pure Python, and fast (well above 50 k events/s), so the benchmark uses it too.

The bundled zones file (`contract/data/demo_zones.geojson`) matches the scenario's geography and is
regenerated, byte for byte, by

    python -m connectors.simulate --write-zones contract/data/demo_zones.geojson

Examples:

    zonewatch simulate                                 # live, real time, until Ctrl-C
    zonewatch simulate --speed 10 --duration 3600      # an hour in six minutes, ending now
    zonewatch simulate --max --duration 86400 --seed 3 # a whole day, as fast as possible
    zonewatch simulate --dry-run --duration 60 | head  # look at the events, no Kafka
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson

from contract import topics
from contract.errors import ConfigError, KafkaUnavailable, ProducerError
from contract.settings import Settings

from . import command
from .pacing import send_paced
from .scenario import scenario_events, write_demo_zones

CALLS, GPS, ALERTS = topics.CALLS, topics.GPS, topics.ALERTS


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
        dt = dt.replace(tzinfo=timezone.utc)
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
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--units", type=int, default=300, help="patrol units (default 300)")
    p.add_argument("--cameras", type=int, default=200, help="cameras (default 200)")
    p.add_argument("--calls-per-min", type=float, default=6.0, help="110 calls per minute (default 6)")
    p.add_argument("--alerts-per-min", type=float, default=60.0, help="camera alerts per minute (default 60)")
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
                   help="write the demo zones GeoJSON matching the scenario to PATH and exit")


def add_parser(subparsers) -> argparse.ArgumentParser:
    return command.add_parser(subparsers, "simulate", "run the bundled Zhengzhou venue scenario", __doc__,
                              add_arguments, run)


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
        sim = datetime.fromtimestamp(self.sim_ts / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") \
            if self.sim_ts else "-"
        per = "  ".join(f"{t} {self.counts[t]:,}" for t in (CALLS, GPS, ALERTS))
        bad = f"  malformed {self.counts['bad']:,}" if self.counts["bad"] else ""
        return f"[sim {sim}Z] {per}{bad}  ({rate:,.0f} ev/s)"

    def tick(self) -> None:
        if not self.quiet and time.monotonic() - self.last >= self.every:
            print(self.line(), file=sys.stderr, flush=True)


async def simulate(events, settings: Settings, speed: float | None, start_ms: int, status: _Status) -> None:
    """Send `events` ((topic, record) pairs); pace them by `ts` unless `speed` is None."""
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
        await p.ensure_topics(topics.INPUT_TOPICS)
        await send_paced(p, events, speed, origin_ms=start_ms, on_send=count,
                         on_progress=lambda _n: status.tick(), every=5000)


def _valid_shape(ev: dict, topic: str) -> bool:
    lat = ev.get("lat")
    return (topics.KEY_FIELD[topic] in ev and "lat" in ev and "lon" in ev
            and isinstance(lat, float) and -90 <= lat <= 90)


def run(args: argparse.Namespace) -> int:
    if args.write_zones:
        path = write_demo_zones(args.write_zones)
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
    events = scenario_events(args.seed, units=args.units, cameras=args.cameras,
                             calls_per_min=args.calls_per_min, alerts_per_min=args.alerts_per_min,
                             start_ms=start_ms, duration_s=args.duration, bad_rate=args.bad_rate)
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
        start_s = datetime.fromtimestamp(start_ms / 1000, timezone.utc).isoformat(timespec="seconds")
        print(f"simulating seed {args.seed} from {start_s} "
              f"({'max speed' if speed is None else f'speed {speed:g}x'}"
              f"{'' if args.duration is None else f', {args.duration:g} s'}) -> {settings.kafka}",
              file=sys.stderr)
    try:
        asyncio.run(simulate(events, settings, speed, start_ms, status))
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
