"""`zonewatch drill`: a past period replayed through the deployment of record and a variant, side
by side (CONTRACT §11; docs/DRILL.md).

The face only: options, then zonewatch/drill_run.py (the recorded input, the isolated deployments,
what they wrote) -> reports/drill.py (the figures) -> reports/drill_render.py (md / html / json).

    zonewatch drill --from 2026-05-10T05:00+08:00 --to 2026-05-10T15:00+08:00 --plan more-posts.toml
    zonewatch drill --from ... --to ... --input day.jsonl --zones new-grid.geojson --format html --out d.html
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from contract.errors import ConfigError
from contract.events import parse_ts
from contract.settings import Settings
from reports import drill as figures
from reports import whatif
from reports.drill_render import FORMATS, render

from . import drill_run

#: roles of the two deployments (their topic prefixes and app ids carry them)
BASELINE, VARIANT = "base", "variant"


def _ts(value: str) -> int:
    try:
        return parse_ts(int(value) if value.isdigit() else value)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{value!r} is neither epoch ms nor RFC 3339 with an offset") from None


def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="replay a past period against a variant (推演)",
                       description="Replay the recorded input of [--from, --to) at full speed through two isolated "
                                   "deployments beside the live one (the deployment of record and the variant the "
                                   "files describe) and print their figures side by side (CONTRACT §11).")
    p.add_argument("--from", dest="start", type=_ts, required=True, help="start (epoch ms or RFC 3339 with offset)")
    p.add_argument("--to", dest="end", type=_ts, required=True, help="end, exclusive")
    p.add_argument("--zones", type=Path, help="the variant's zones file (default: the deployment's)")
    p.add_argument("--plan", type=Path, help="the variant's duty plan (default: the deployment's)")
    p.add_argument("--rules", type=Path, help="the variant's level rules (default: the deployment's)")
    p.add_argument("--deploy", type=Path, help="what-if units (TOML [[unit]] id, kind, lat, lon, from, to): "
                                               "the estimated 1-3-5 figures beside the recorded ones")
    p.add_argument("--input", type=Path, help="JSONL of §1 records with a `topic` field instead of the input topics")
    p.add_argument("--format", choices=FORMATS, default="md", help="md (default), html (one file) or json")
    p.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    p.add_argument("--keep", action="store_true", help="keep the drill's topics, groups and Redis databases")
    p.add_argument("--kafka", default=None, help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.set_defaults(func=run)


class Progress:
    """One line on stderr: a bar redrawn in place on a terminal, a plain line per step and tenth
    otherwise (logs stay readable)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: tuple[str, int] = ("", -1)
        self.t0 = time.monotonic()

    def __call__(self, step: str, fraction: float) -> None:
        tenth = int(fraction * 10)
        if self.tty:
            bar = "█" * int(fraction * 30)
            self.stream.write(f"\r{step:<28} [{bar:<30}] {fraction * 100:5.1f}% {time.monotonic() - self.t0:6.0f}s")
        elif (step, tenth) != self.last:
            self.stream.write(f"drill: {step} {fraction * 100:.0f}% ({time.monotonic() - self.t0:.0f} s)\n")
        self.last = (step, tenth)
        self.stream.flush()

    def say(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + f"drill: {text}\n")
        self.stream.flush()


class Phases:
    """Wall seconds by step of a drill, said on stderr at the end (the §11 json object on stdout
    stays exactly as the contract has it): where a drill's time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.at = time.monotonic()

    def mark(self, step: str, now: float | None = None) -> None:
        """The time since the last mark (or `now`, an instant already passed) goes to `step`."""
        now = time.monotonic() if now is None else now
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self.at
        self.at = now

    def line(self) -> str:
        total = sum(self.seconds.values())
        return f"phases ({total:.0f} s): " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())


def run(args) -> int:
    if args.end <= args.start:
        raise ConfigError("--to must be after --from")
    live = Settings.from_env().with_(kafka=args.kafka)
    units = whatif.load_units(args.deploy, live.tz) if args.deploy is not None else None
    progress = Progress()
    phases = Phases()
    if args.input is not None:
        recording = drill_run.read_file(args.input, args.start, args.end)
    else:
        recording = drill_run.read_topics(live, args.start, args.end, progress=progress)
    phases.mark("reading the input")
    progress.say(f"{len(recording.records)} recorded records, {recording.span_ms / 3_600_000:.2f} h of event time")
    # without a variant file the variant is the deployment of record: one run serves both
    varied = any(x is not None for x in (args.zones, args.plan, args.rules))
    tag = uuid.uuid4().hex[:8]
    dbs = drill_run.empty_dbs(live, 2 if varied else 1)
    deps = [drill_run.Isolated(live, BASELINE, tag, dbs[0])]
    if varied:
        deps.append(drill_run.Isolated(live, VARIANT, tag, dbs[1], zones=args.zones, plan=args.plan,
                                       rules=args.rules))
    t0 = time.monotonic()
    try:
        for d in deps:
            d.create_topics()
        drill_run.publish(deps, recording, lambda fraction: progress("publishing", fraction))
        phases.mark("publishing")
        drill_run.start_workers(deps)
        phases.mark("starting workers")
        consumed, last_output = drill_run.wait_done(deps, progress)
        phases.mark("consuming", consumed)
        phases.mark("last decisions", last_output)
        phases.mark("quiet wait")
        seconds = time.monotonic() - t0
        drill_run.stop_workers(deps)
        phases.mark("stopping workers")
        # the what-if units answer the recorded calls: those of the deployment of record
        got = [drill_run.collect(d, args.start, args.end, units if d is deps[0] else None) for d in deps]
        phases.mark("reading outputs")
    finally:
        for d in deps:
            for line in d.teardown(args.keep):
                progress.say(line)
        phases.mark("teardown")
        progress.say(phases.line())
    n = len(recording.records)
    progress.say(f"replayed {n} records in {seconds:.0f} s: {n / seconds:.0f} records/s, "
                 f"{recording.span_ms / 1000 / seconds:.1f}x real time")
    base, var = got[0], got[-1]
    result = {"report": figures.report(args.start, args.end, base[0], var[0], base[3]),
              "hourly": {"baseline": base[1], "variant": var[1]}, "names": {**base[2], **var[2]},
              "speed": {"records": n, "seconds": round(seconds, 1), "event_ms": recording.span_ms}}
    text = render(result, args.format)
    if args.out is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    else:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--out {args.out}: cannot write it ({exc.strerror})") from exc
        progress.say(f"wrote {args.out} ({args.format})")
    return 0
