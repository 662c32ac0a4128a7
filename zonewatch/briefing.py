"""`zonewatch briefing`: the daily briefing (研判) from zones.daily (CONTRACT §4, §8).

The face only: options, then reports.daily (read the topic) -> reports.briefing (the figures)
-> reports.render (md / html / json) -> stdout or --out.

    zonewatch briefing                                  # yesterday (ZONEWATCH_TZ), Markdown, Chinese
    zonewatch briefing --date 2023-06-12 --format html --lang en --out briefing.html
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from contract.errors import BriefingError
from contract.settings import Settings
from reports import daily
from reports.briefing import briefing
from reports.render import FORMATS, LANGS, render


def _date(value: str) -> str:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None


def add_parser(sub) -> None:
    p = sub.add_parser("briefing", help="the daily briefing (研判) from zones.daily",
                       description="The daily briefing of one local date from the zones.daily topic: totals, "
                                   "the 1-3-5 figures per zone and overall, the worst zones, hourly peaks, calls "
                                   "per language; whether the day is final or still in progress.")
    p.add_argument("--date", type=_date, default=None,
                   help="local date YYYY-MM-DD (default: yesterday in ZONEWATCH_TZ by the wall clock)")
    p.add_argument("--format", choices=FORMATS, default="md", help="md (default), html (one file) or json")
    p.add_argument("--lang", choices=LANGS, default="zh", help="labels: zh (default) or en; json has none")
    p.add_argument("--out", type=Path, default=None, help="write to this file (default: standard output)")
    p.add_argument("--kafka", default=None, help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to read the whole topic before giving up (default 60)")
    p.set_defaults(func=run)


def run(args) -> int:
    s = Settings.from_env().with_(kafka=args.kafka)
    day = args.date or daily.default_date(datetime.now(UTC), s.tz)
    _topic, latest = daily.read_latest(s, day, timeout_s=args.timeout)
    records, unreadable = daily.decode(latest, day)
    text = render(briefing(records, day, unreadable), args.format, args.lang)
    if args.out is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BriefingError(f"--out {args.out}: cannot write it ({exc.strerror})") from exc
    print(f"wrote {args.out} ({args.format}, {day})", file=sys.stderr)
    return 0
