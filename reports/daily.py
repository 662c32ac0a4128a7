"""Reading `zones.daily` (CONTRACT §4): the latest record of every key, and the dates it holds.

The topic is compacted, key `{local date}|{zone_id}`: a key's last value is the zone's day as the
worker last wrote it and an empty value (a tombstone) removes the key. Segments not yet compacted
still hold older versions, so every partition is read from its beginning to its end offset as of
the start of the read, keeping the last value per key: exactly what compaction will leave.
"""

from __future__ import annotations

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


def decode(latest: dict[bytes, bytes]) -> tuple[list[dict], dict[str, str]]:
    """The readable records, and key -> reason for the values that are not a zone's day."""
    records, unreadable = [], {}
    for raw_key, value in latest.items():
        key = raw_key.decode("utf-8", "replace")
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            unreadable[key] = "not JSON"
            continue
        reason = problem(rec)
        if reason:
            unreadable[key] = reason
        else:
            records.append(rec)
    return records, unreadable


def problem(rec: object) -> str | None:
    """Why a decoded value cannot be used as a zone's day (None when it can)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [f for f in REQUIRED if f not in rec]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(rec["date"], str) or not isinstance(rec["zone_id"], str):
        return "date and zone_id must be strings"
    try:
        date.fromisoformat(rec["date"])
    except ValueError:
        return f"date {rec['date']!r} is not YYYY-MM-DD"
    hourly = rec["hourly"]
    if not isinstance(hourly, dict) or any(
            not isinstance(hourly.get(k), list) or len(hourly[k]) != 24 for k in ("calls", "alerts")):
        return "hourly.calls and hourly.alerts must be 24 counts"
    if not isinstance(rec["response"], dict):
        return "response must be an object"
    return None


def default_date(now: datetime, tz: str) -> str:
    """Yesterday in `tz` (ZONEWATCH_TZ) at the wall-clock instant `now` (timezone-aware)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"ZONEWATCH_TZ={tz!r} is not an IANA time zone (e.g. Asia/Shanghai)") from exc
    return (now.astimezone(zone).date() - timedelta(days=1)).isoformat()


def read_latest(s: Settings, timeout_s: float = 60.0) -> tuple[str, dict[bytes, bytes]]:
    """(topic name, key -> latest value) of the whole zones.daily topic of this deployment."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from contract.security import kafka_python_kwargs

    topic = s.topic(topics.ZONES_DAILY)
    try:
        c = KafkaConsumer(bootstrap_servers=s.kafka, group_id=None, enable_auto_commit=False,
                          client_id=f"{s.app_id}-briefing", request_timeout_ms=20_000,
                          max_partition_fetch_bytes=8 << 20, **kafka_python_kwargs(s))
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {s.kafka} ({exc}); set ZONEWATCH_KAFKA or --kafka") from exc
    latest: dict[bytes, bytes] = {}
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
                fold_latest(((m.key, m.value) for m in msgs if m.offset < end[tp]), latest)
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
