"""Reading `zones.daily` (CONTRACT §4): the latest record of every key, and the dates it holds.

The topic is compacted, key `{local date}|{zone_id}`: a key's last value is the zone's day as the
worker last wrote it and an empty value (a tombstone) removes the key. Segments not yet compacted
still hold older versions, so every partition is read from its beginning to its end offset as of
the start of the read, keeping the last value per key: exactly what compaction will leave.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from contract import topics
from contract.errors import BriefingError, ConfigError, KafkaUnavailable

if TYPE_CHECKING:
    from contract.settings import Settings

#: the fields a record needs for the briefing (a subset of topics.DAILY_FIELDS)
REQUIRED = ("date", "zone_id", "calls", "alerts", "hourly", "response")
#: what is kept of a record of another date than the one asked for
SLIM_FIELDS = ("date", "zone_id", "final")


def fold_latest(messages: Iterable[tuple[bytes | None, bytes | None]],
                into: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    """Key -> last value of (key, value) pairs in offset order; a None value removes the key."""
    latest: dict[bytes, bytes] = {} if into is None else into
    for key, value in messages:
        if key is None:  # a compacted topic refuses keyless records; nothing to keep
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def slim(value: bytes) -> bytes:
    """A record cut down to SLIM_FIELDS: enough to list its date. The topic keeps every day (a year
    of 400 zones is ~150,000 records) and only the asked date's records are needed whole. A value
    that is not a JSON object is kept as it is, to be named as unreadable."""
    try:
        rec = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if not isinstance(rec, dict):
        return value
    # not orjson.dumps: its bytes keep a 4 KB buffer each (600 MB for a year of 400 zones)
    return json.dumps({k: rec[k] for k in SLIM_FIELDS if k in rec}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def decode(latest: dict[bytes, bytes], date: str | None = None) -> tuple[list[dict], dict[str, str]]:
    """The readable records, and key -> reason for the values that are not a zone's day. With
    `date`, only that date's records must be whole (the others may be `slim`)."""
    records, unreadable = [], {}
    for raw_key, value in latest.items():
        key = raw_key.decode("utf-8", "replace")
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            unreadable[key] = "not JSON"
            continue
        whole = date is None or not isinstance(rec, dict) or rec.get("date") == date
        reason = problem(rec, REQUIRED if whole else SLIM_FIELDS[:2])
        if reason:
            unreadable[key] = reason
        else:
            records.append(rec)
    return records, unreadable


def problem(rec: object, required: tuple[str, ...] = REQUIRED) -> str | None:
    """Why a decoded value cannot be used as a zone's day (None when it can)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [f for f in required if f not in rec]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(rec["date"], str) or not isinstance(rec["zone_id"], str):
        return "date and zone_id must be strings"
    try:
        date.fromisoformat(rec["date"])
    except ValueError:
        return f"date {rec['date']!r} is not YYYY-MM-DD"
    if required is not REQUIRED:
        return None
    if any(not _count(rec[k]) for k in ("calls", "alerts")):
        return "calls and alerts must be counts"
    hourly = rec["hourly"]
    if not isinstance(hourly, dict) or any(
            not isinstance(hourly.get(k), list) or len(hourly[k]) != 24 or not all(map(_count, hourly[k]))
            for k in ("calls", "alerts")):
        return "hourly.calls and hourly.alerts must be 24 counts"
    if not isinstance(rec["response"], dict):
        return "response must be an object"
    return None


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def default_date(now: datetime, tz: str) -> str:
    """Yesterday in `tz` (ZONEWATCH_TZ) at the wall-clock instant `now` (timezone-aware)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"ZONEWATCH_TZ={tz!r} is not an IANA time zone (e.g. Asia/Shanghai)") from exc
    return (now.astimezone(zone).date() - timedelta(days=1)).isoformat()


def read_latest(s: Settings, date: str | None = None, timeout_s: float = 60.0) -> tuple[str, dict[bytes, bytes]]:
    """(topic name, key -> latest value) of the whole zones.daily topic of this deployment; with
    `date`, the values of other dates' keys are `slim`."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from contract.kafka_settings import kafka_python_kwargs

    topic = s.topic(topics.ZONES_DAILY)
    # parsing large fetches makes kafka-python's selector warn that a task blocked its loop for
    # > 0.1 s, dozens of times per read: expected here (nothing else waits on that loop), not news
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    try:
        # check_crcs=False: kafka-python's CRC32C is pure Python and took 33 of 43 s reading a year
        # of 412 zones (150,000 records); the broker checked each batch's CRC when it was produced
        c = KafkaConsumer(bootstrap_servers=s.kafka, group_id=None, enable_auto_commit=False,
                          client_id=f"{s.app_id}-briefing", request_timeout_ms=20_000,
                          max_partition_fetch_bytes=4 << 20, check_crcs=False,
                          # written in transactions: a fenced worker's aborted records are not the day
                          isolation_level="read_committed", **kafka_python_kwargs(s))
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {s.kafka} ({exc}); set ZONEWATCH_KAFKA or --kafka") from exc
    latest: dict[bytes, bytes] = {}
    whole = f"{date}|".encode() if date else b""

    def value(m) -> bytes | None:
        if m.value is None or m.key is None or m.key.startswith(whole):
            return m.value
        return slim(m.value)

    try:
        # topics() lists without asking for the topic by name, so a broker that auto-creates
        # topics does not create an empty zones.daily for a mistyped prefix
        if topic not in c.topics():
            raise BriefingError(f"topic {topic} does not exist on {s.kafka}: the worker creates and writes it "
                                f"(check ZONEWATCH_TOPIC_PREFIX={s.topic_prefix!r})")
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        end = c.end_offsets(tps)
        c.seek_to_beginning(*tps)
        pending = [tp for tp in tps if end[tp] > 0]
        deadline = time.monotonic() + timeout_s
        while pending:
            for tp, msgs in c.poll(timeout_ms=500, max_records=10_000).items():
                fold_latest(((m.key, value(m)) for m in msgs if m.offset < end[tp]), latest)
            pending = [tp for tp in pending if c.position(tp) < end[tp]]
            if pending and time.monotonic() > deadline:
                left = sum(end[tp] - c.position(tp) for tp in pending)
                raise BriefingError(f"could not read {topic} to its end within {timeout_s:g} s "
                                    f"({left} records left on {len(pending)} partitions); raise --timeout")
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading {topic} from Kafka at {s.kafka} failed ({exc})") from exc
    finally:
        c.close()
    return topic, latest
