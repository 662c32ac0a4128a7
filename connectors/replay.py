"""`zonewatch replay FILE --topic TOPIC` — publish a CSV / JSONL export onto an input topic.

A real export rarely has the contract's field names (CONTRACT §1), so the file is converted on the
fly, row by row, without editing it:

* `--map FIELD=COLUMN`     take contract field FIELD from source column COLUMN (repeatable);
* `--set FIELD=VALUE`      a constant (repeatable), e.g. `--set category=fire --set priority=2`;
* `--latlon COLUMN`        split a `"(lat, lon)"`, `"lat,lon"` or WKT `"POINT (lon lat)"` column;
* `--value-map FIELD=SRC:DST,SRC:DST,...`   translate values (enums); `*:DST` is the fallback for
  values not listed (without it they pass unchanged); repeatable, also several times per field;
* `--ts-format FMT`        parse `ts` with a strftime format (e.g. `%m/%d/%Y %I:%M:%S %p`); a time
  without an offset is local time in `--tz` (default ZONEWATCH_TZ, Asia/Shanghai) and becomes UTC
  epoch ms. Special formats: `epoch_s`, `epoch_ms`, `iso`. Without `--ts-format`, epoch-ms numbers
  and RFC 3339 strings pass as they are; ISO strings without an offset are read in `--tz`.

Numbers are coerced where the contract wants them (lat, lon, speed, heading, confidence -> float;
priority, severity -> int), ids become strings, enum values (category, type, status, kind) are
lower-cased, `online` (camera.status) becomes a boolean from true/false, 1/0, yes/no, on/off or
online/offline (any case; `--value-map` first for other words), empty cells are omitted. Which
other columns travel along: `--extra keep|drop` (default: drop for CSV — exports carry dozens of
columns — keep for JSON/JSONL).

Nothing is dropped: a row that cannot be converted (or that the contract validator would reject) is
published anyway, so the pipeline dead-letters it with a reason (an unparseable JSONL line is sent as
its raw bytes); replay prints how many rows had problems, and the most common reasons, at the end.
A row whose key field is empty is published with a null key.

Pacing: `--max` (default) sends as fast as Kafka takes it; `--speed N` keeps file order and sleeps
for the positive gaps between consecutive events' `ts`, divided by N (`--sort` sorts by `ts` first).
`--dry-run` converts and prints the records (JSONL on stdout) instead of producing: check a mapping
with `--dry-run --limit 5` before you replay.

Example — the San Francisco Fire Department export (one row per dispatched unit, so a `Call Number`
repeats: those repeats are duplicates by `call_id`, which the pipeline counts once):

    zonewatch replay ../shared/datasets/sffd-calls-2016-12-31_2017-01-07.csv --topic calls.110 \\
        --map call_id='Call Number' --map ts='Received DtTm' --map category='Call Type' \\
        --map priority='Original Priority' --latlon Location \\
        --ts-format '%m/%d/%Y %I:%M:%S %p' --tz America/Los_Angeles \\
        --value-map 'priority=E:1,3:2,2:3,1:4,A:4' \\
        --value-map 'category=Medical Incident:medical,Structure Fire:fire,Outside Fire:fire,Vehicle Fire:fire' \\
        --value-map 'category=Traffic Collision:traffic,Citizen Assist / Service Call:assistance,*:other' \\
        --set lang=en --dry-run --limit 3

(SFFD's "3" is Code 3 — lights and siren — and "2" Code 2, the reverse of the contract's 1 = most
urgent; "E" is an emergency. Drop `--dry-run --limit 3` to publish; the file is not in time order,
so add `--sort --speed 60` to replay the week in under three hours.) The same file replayed to
`patrol.gps` with `--map unit_id='Unit ID' --map ts='On Scene DtTm' --latlon Location --ts-format
... --tz America/Los_Angeles --set status=busy` gives each unit a fix on scene, i.e. real response
times; rows without an on-scene time are reported and dead-lettered. Run both replays at the same
time with the same `--sort --speed N` so that calls and fixes interleave in event time (replaying
one file after the other at `--max` would move the stream clock past every call's 5-minute limit
before its fixes arrive).

A video platform's camera health export goes to `camera.status` the same way (key `camera_id`):

    zonewatch replay cameras.csv --topic camera.status --map camera_id=DeviceID --map ts=ReportTime \\
        --map lat=Lat --map lon=Lng --map online=State --value-map 'online=正常:true,离线:false' \\
        --ts-format '%Y-%m-%d %H:%M:%S' --sort --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from contract import errors, events, topics
from contract.errors import ConfigError, KafkaUnavailable, ProducerError, ReplayError
from contract.settings import Settings

from . import command
from .pacing import record_ts, send_paced

TOPIC_FIELDS = {
    topics.CALLS: ("call_id", "ts", "lat", "lon", "category", "priority", "caller", "lang", "text"),
    topics.GPS: ("unit_id", "ts", "lat", "lon", "status", "kind", "speed", "heading"),
    topics.ALERTS: ("alert_id", "camera_id", "ts", "lat", "lon", "type", "confidence", "severity"),
    topics.STATUS: ("camera_id", "ts", "lat", "lon", "online"),
}
REQUIRED = {
    topics.CALLS: ("call_id", "ts", "lat", "lon", "category", "priority"),
    topics.GPS: ("unit_id", "ts", "lat", "lon"),
    topics.ALERTS: ("alert_id", "camera_id", "ts", "lat", "lon", "type", "confidence"),
    topics.STATUS: ("camera_id", "ts", "lat", "lon"),
}
FLOAT_FIELDS = frozenset(("lat", "lon", "speed", "heading", "confidence"))
INT_FIELDS = frozenset(("priority", "severity"))
ID_FIELDS = frozenset(("call_id", "unit_id", "alert_id", "camera_id"))
ENUM_FIELDS = frozenset(("category", "type", "status", "kind"))
BOOL_FIELDS = frozenset(("online",))
#: how exports write a boolean (after --value-map, case-insensitive)
BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
              "on": True, "off": False, "online": True, "offline": False}
DEFAULT_TZ = "Asia/Shanghai"

_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT_STR = re.compile(r"[-+]?\d+")


# --- argument parsing helpers -------------------------------------------------------------
def _pairs(items: Iterable[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ReplayError(f"{flag} expects FIELD=VALUE, got {item!r}")
        out.append((name.strip(), value))
    return out


def parse_value_maps(items: Iterable[str] | None) -> dict[str, dict[str, str]]:
    """`FIELD=SRC:DST,SRC:DST` (repeatable) -> {field: {src: dst}}; `*` is the fallback source."""
    maps: dict[str, dict[str, str]] = {}
    for fld, spec in _pairs(items, "--value-map"):
        table = maps.setdefault(fld, {})
        for part in spec.split(","):
            if not part.strip():
                continue
            src, sep, dst = part.rpartition(":")
            if not sep:
                raise ReplayError(f"--value-map {fld}=...: {part!r} is not SRC:DST")
            table[src.strip()] = dst.strip()
    return maps


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReplayError(f"unknown time zone {name!r} (use an IANA name such as America/Los_Angeles)") from None


# --- the row converter --------------------------------------------------------------------
@dataclass
class Converter:
    """Turns one source row into one contract record (see the module docstring)."""

    topic: str
    renames: dict[str, str] = field(default_factory=dict)      # field -> source column
    sets: dict[str, str] = field(default_factory=dict)         # field -> constant
    value_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    ts_format: str | None = None
    tz: str = DEFAULT_TZ
    latlon: str | None = None
    keep_extra: bool = False
    validate: bool = True
    max_ts: int | None = None

    def __post_init__(self) -> None:
        if self.topic not in TOPIC_FIELDS:
            raise ReplayError(f"unknown topic {self.topic!r}; one of {', '.join(topics.INPUT_TOPICS)}")
        self._zone = _zone(self.tz)
        self._fields = frozenset(TOPIC_FIELDS[self.topic])
        self._required = REQUIRED[self.topic]
        self._sources = set(self.renames.values())
        if self.latlon:
            self._sources.add(self.latlon)
        if self.max_ts is None:
            # validator horizon: generous, conversion reports should be about the data, not the clock
            self.max_ts = int(time.time() * 1000) + 300_000
        self._validator = events.VALIDATORS[self.topic]

    def check_columns(self, columns: Iterable[str]) -> None:
        """Fail early when a mapped column is not in the file's header (a typo in `--map`)."""
        cols = list(columns)
        missing = [c for c in sorted(self._sources) if c not in cols]
        if missing:
            raise ReplayError(
                f"column(s) {', '.join(repr(c) for c in missing)} not in the file; its columns are: "
                + ", ".join(repr(c) for c in cols)
            )

    def convert(self, row: dict) -> tuple[dict, list[str]]:
        """(record, problems). `problems` is empty when the record satisfies the contract."""
        problems: list[str] = []
        sources = self._sources
        if self.keep_extra:
            out = {k: v for k, v in row.items() if k not in sources}
        else:
            out = {k: v for k, v in row.items() if k in self._fields and k not in sources}
        for fld, col in self.renames.items():
            if col in row:
                out[fld] = row[col]
        if self.latlon:
            raw = row.get(self.latlon)
            ll = split_latlon(raw)
            if ll is None:
                problems.append(f"{self.latlon} {str(raw)[:40]!r} is not 'lat, lon'")
            else:
                out["lat"], out["lon"] = ll
        for fld, table in self.value_maps.items():
            if fld in out and out[fld] is not None:
                key = str(out[fld]).strip()
                if key in table:
                    out[fld] = table[key]
                elif "*" in table:
                    out[fld] = table["*"]
        for fld, value in self.sets.items():
            out[fld] = value
        self._coerce(out, problems)
        if not problems and self.validate:
            try:
                self._validator(out, self.max_ts)  # type: ignore[arg-type]  # int since __post_init__
            except errors.Rejected as exc:
                problems.append(exc.reason)
        return out, problems

    def _coerce(self, out: dict, problems: list[str]) -> None:
        for fld in list(out):
            v = out[fld]
            if isinstance(v, str):
                v = v.strip()
                if v == "":
                    del out[fld]
                    if fld in self._required:
                        problems.append(f"empty {fld}")
                    continue
                out[fld] = v
            if fld == "ts":
                try:
                    out["ts"] = self.convert_ts(v)
                except ValueError as exc:
                    problems.append(f"ts: {exc}")
            elif fld in FLOAT_FIELDS:
                if isinstance(v, str):
                    try:
                        f = float(v)
                    except ValueError:
                        problems.append(f"{fld} {v[:40]!r} is not a number")
                        continue
                    if math.isfinite(f):
                        out[fld] = f
                    else:
                        problems.append(f"{fld} {v[:40]!r} is not finite")
                elif type(v) is int:
                    out[fld] = float(v)
            elif fld in INT_FIELDS:
                if isinstance(v, str):
                    if _INT_STR.fullmatch(v):
                        out[fld] = int(v)
                    elif _NUM.fullmatch(v) and float(v).is_integer():
                        out[fld] = int(float(v))
                    else:
                        problems.append(f"{fld} {v[:40]!r} is not an integer")
                elif type(v) is float and v.is_integer():
                    out[fld] = int(v)
            elif fld in ID_FIELDS:
                if type(v) is int:
                    out[fld] = str(v)
                elif type(v) is float and v.is_integer():
                    out[fld] = str(int(v))
            elif fld in ENUM_FIELDS and isinstance(v, str):
                out[fld] = v.lower()
            elif fld in BOOL_FIELDS and type(v) is not bool:
                b = BOOL_WORDS.get(str(v).lower()) if isinstance(v, (str, int)) else None
                if b is None:
                    problems.append(f"{fld} {str(v)[:40]!r} is not true/false")
                else:
                    out[fld] = b

    def convert_ts(self, v: Any) -> Any:
        """`ts` as UTC epoch ms (or an RFC 3339 string with offset, left as it is)."""
        fmt = self.ts_format
        if fmt is None or fmt == "iso":
            if type(v) is int:
                return v
            if type(v) is float:
                if v.is_integer():
                    return int(v)
                raise ValueError(f"{v!r} is not whole epoch ms")
            if not isinstance(v, str):
                raise ValueError(f"{v!r} is neither epoch ms nor a time string")
            if _INT_STR.fullmatch(v):
                return int(v)
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v[:40]!r} is not epoch ms or ISO 8601 (pass --ts-format)") from None
            if dt.tzinfo is not None:
                return v if fmt is None else events.to_epoch_ms(dt)
            return events.to_epoch_ms(dt.replace(tzinfo=self._zone))
        if fmt in ("epoch_ms", "epoch_s"):
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{str(v)[:40]!r} is not a number ({fmt})") from None
            if not math.isfinite(x):
                raise ValueError(f"{v!r} is not finite")
            return int(round(x * 1000)) if fmt == "epoch_s" else int(round(x))
        if not isinstance(v, str):
            v = str(v)
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            raise ValueError(f"{v[:40]!r} does not match --ts-format {fmt!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self._zone)
        return events.to_epoch_ms(dt)


def split_latlon(raw: Any) -> tuple[float, float] | None:
    """`"(37.7, -122.4)"`, `"37.7,-122.4"`, `"37.7 -122.4"` -> (lat, lon); WKT `POINT (lon lat)` too."""
    if raw is None:
        return None
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        try:
            return float(raw[0]), float(raw[1])
        except (TypeError, ValueError):
            return None
    s = str(raw).strip()
    if not s:
        return None
    is_wkt = s[:5].upper() == "POINT"
    nums = _NUM.findall(s)
    if len(nums) != 2:
        return None
    a, b = float(nums[0]), float(nums[1])
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    return (b, a) if is_wkt else (a, b)


# --- reading files ------------------------------------------------------------------------
def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ReplayError(f"cannot tell the format of {path.name}: use --format csv|jsonl")


def read_rows(path: Path, fmt: str, encoding: str = "utf-8-sig", delimiter: str | None = None
              ) -> tuple[list[str] | None, Iterator[dict | bytes]]:
    """(CSV header or None, iterator of rows). A JSONL line that is not a JSON object is bytes."""
    if fmt == "csv":
        f = open(path, newline="", encoding=encoding)
        delim = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        reader = csv.DictReader(f, delimiter=delim)
        header = list(reader.fieldnames or [])

        def rows() -> Iterator[dict]:
            with f:
                yield from reader

        return header, rows()
    if fmt == "jsonl":
        return None, _json_rows(path)
    raise ReplayError(f"unknown format {fmt!r}: csv or jsonl")


def _json_rows(path: Path) -> Iterator[dict | bytes]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        f.seek(0)
        if head.startswith(b"["):  # a plain JSON array
            try:
                doc = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{path}: not valid JSON: {exc}") from None
            for item in doc:
                yield item if isinstance(item, dict) else orjson.dumps(item)
            return
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield line
                continue
            yield obj if isinstance(obj, dict) else line


def count_rows(path: Path, fmt: str, encoding: str = "utf-8-sig") -> int | None:
    """Number of data rows (for the progress bar); None for a JSON array."""
    try:
        if fmt == "csv":
            with open(path, newline="", encoding=encoding) as f:
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except (OSError, UnicodeDecodeError):
        return None


@dataclass
class ConversionReport:
    rows: int = 0
    problem_rows: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, problems: list[str]) -> None:
        self.rows += 1
        if problems:
            self.problem_rows += 1
            for p in problems:
                # group "x '...' is not ..." by its shape so the summary stays short
                self.reasons[re.sub(r"'[^']*'", "'…'", p)] += 1

    def summary(self) -> str:
        if not self.problem_rows:
            return f"{self.rows} rows converted, no problems"
        top = "; ".join(f"{n}× {r}" for r, n in self.reasons.most_common(5))
        return (f"{self.rows} rows converted, {self.problem_rows} with problems "
                f"(published anyway, the pipeline dead-letters them): {top}")


def convert_rows(rows: Iterable[dict | bytes], conv: Converter, report: ConversionReport,
                 limit: int | None = None) -> Iterator[dict | bytes]:
    n = 0
    for row in rows:
        if limit is not None and n >= limit:
            return
        n += 1
        if isinstance(row, (bytes, bytearray)):
            report.add(["not a JSON object"])
            yield bytes(row)
            continue
        rec, problems = conv.convert(row)
        report.add(problems)
        yield rec


# --- publishing ---------------------------------------------------------------------------
async def replay_records(records: Iterable[dict | bytes], topic: str, settings: Settings,
                         speed: float | None = None, *, progress: Any = None, producer: Any = None
                         ) -> int:
    """Publish `records` (contract dicts, or raw bytes) to input topic `topic`; returns the count.

    `speed=None` sends as fast as possible; `speed=N` keeps the given order and sleeps for each
    positive gap between consecutive records' `ts`, divided by N. `progress` (optional) is called
    as `progress(sent_so_far)` now and then. `producer` (an `EventProducer`, started) is reused
    when given, else one is opened and closed here.
    """
    from connectors.producer import EventProducer

    if topic not in topics.INPUT_TOPICS:
        raise ReplayError(f"unknown topic {topic!r}; one of {', '.join(topics.INPUT_TOPICS)}")
    if speed is not None and not speed > 0:
        raise ReplayError("--speed must be > 0")
    own = producer is None
    if own:
        producer = await EventProducer(settings).start()
    try:
        await producer.ensure_topics([topic])
        n = await send_paced(producer, ((topic, rec) for rec in records), speed, on_progress=progress)
        await producer.flush()
        if progress is not None:
            progress(n)
    finally:
        if own:
            await producer.stop()
    return n


def _progress_bar(total: int | None, quiet: bool, label: str):
    """(context manager, callback) — a rich progress bar on stderr, or nothing."""
    import contextlib

    if quiet:
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):  # noqa: D102
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} ev/s" if speed else "– ev/s", style="progress.data.speed")

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task(label, total=total)

    def cb(n: int) -> None:
        bar.update(task, completed=n)

    return bar, cb


# --- command line -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE", help="CSV, JSONL (.jsonl/.ndjson) or JSON array (.json)")
    p.add_argument("--topic", required=True, choices=topics.INPUT_TOPICS, help="input topic (without prefix)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, metavar="N",
                      help="pace by event time: gaps between consecutive ts divided by N")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN", help="contract field from a source column")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="constant field value")
    p.add_argument("--value-map", action="append", metavar="FIELD=SRC:DST,...",
                   help="translate values of FIELD; '*:DST' catches the rest")
    p.add_argument("--latlon", metavar="COLUMN", help="column holding '(lat, lon)' / 'lat,lon' / 'POINT (lon lat)'")
    p.add_argument("--ts-format", metavar="STRFTIME",
                   help="strftime format of ts, or epoch_s / epoch_ms / iso")
    p.add_argument("--tz", metavar="TZNAME",
                   help="time zone of local times without offset (default: ZONEWATCH_TZ or Asia/Shanghai)")
    p.add_argument("--format", choices=("csv", "jsonl"), help="file format (default: from the extension)")
    p.add_argument("--encoding", default="utf-8-sig", help="text encoding of a CSV (e.g. gbk); default utf-8")
    p.add_argument("--delimiter", help="CSV delimiter (default ',' or tab for .tsv)")
    p.add_argument("--extra", choices=("keep", "drop"),
                   help="also send columns that are not contract fields (default: drop for CSV, keep for JSONL)")
    p.add_argument("--sort", action="store_true", help="sort by ts before sending (reads the whole file)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    p.add_argument("--dry-run", action="store_true", help="print converted records as JSONL on stdout; no Kafka")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    command.add_kafka_arguments(p)


def add_parser(subparsers) -> argparse.ArgumentParser:
    return command.add_parser(subparsers, "replay", "publish a CSV/JSONL file onto an input topic", __doc__,
                              add_arguments, run)


def build_converter(args: argparse.Namespace, fmt: str) -> Converter:
    import os

    renames = dict(_pairs(args.map, "--map"))
    sets = dict(_pairs(args.set, "--set"))
    fields = TOPIC_FIELDS[args.topic]
    for fld in list(renames) + list(sets):
        if fld not in fields:
            print(f"zonewatch replay: note: {fld!r} is not a field of {args.topic} "
                  f"({', '.join(fields)}); it is sent but the pipeline ignores it", file=sys.stderr)
    keep = (args.extra == "keep") if args.extra else (fmt != "csv")
    tz = args.tz or os.environ.get("ZONEWATCH_TZ") or DEFAULT_TZ
    return Converter(topic=args.topic, renames=renames, sets=sets,
                     value_maps=parse_value_maps(args.value_map), ts_format=args.ts_format, tz=tz,
                     latlon=args.latlon, keep_extra=keep)


def prepare(args: argparse.Namespace) -> tuple[Iterator[dict | bytes], ConversionReport, int | None]:
    """(records, report, total rows or None) for the parsed arguments."""
    path: Path = args.file
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    fmt = detect_format(path, args.format)
    conv = build_converter(args, fmt)
    try:
        header, rows = read_rows(path, fmt, args.encoding, args.delimiter)
    except LookupError:
        raise ReplayError(f"unknown encoding {args.encoding!r}") from None
    if header is not None:
        conv.check_columns(header)
    report = ConversionReport()
    records: Iterator[dict | bytes] = convert_rows(rows, conv, report, args.limit)
    total = None
    if args.sort:
        recs = list(records)
        recs.sort(key=lambda r: (record_ts(r) is None, record_ts(r) or 0))  # stable; bad ts last
        records, total = iter(recs), len(recs)
    elif not args.dry_run and not args.quiet:
        total = count_rows(path, fmt, args.encoding)
        if total is not None and args.limit is not None:
            total = min(total, args.limit)
    return records, report, total


def run(args: argparse.Namespace) -> int:
    try:
        records, report, total = prepare(args)
        if args.dry_run:
            out = sys.stdout.buffer
            for rec in records:
                out.write(rec if isinstance(rec, bytes) else orjson.dumps(rec))
                out.write(b"\n")
            out.flush()
            print(report.summary(), file=sys.stderr)
            return 0
        settings = command.settings(args)
        bar, cb = _progress_bar(total, args.quiet, f"→ {settings.topic(args.topic)}")
        t0 = time.monotonic()
        with bar:
            n = asyncio.run(replay_records(records, args.topic, settings,
                                           speed=None if args.max else args.speed, progress=cb))
        dt = time.monotonic() - t0
    except (ReplayError, ConfigError) as exc:
        return command.fail("replay", exc, 2)
    except UnicodeDecodeError as exc:
        return command.fail("replay", f"{args.file} is not {args.encoding} text ({exc.reason} at byte "
                                      f"{exc.start}): pass --encoding (e.g. gbk)", 2)
    except (ProducerError, KafkaUnavailable) as exc:
        return command.fail("replay", exc, 1)
    print(f"sent {n} records to {settings.topic(args.topic)} in {dt:.1f} s "
          f"({n / dt if dt > 0 else 0:,.0f}/s); {report.summary()}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command.main("connectors.replay", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
