"""Topic names and specs (CONTRACT §1, §4, README "internal topics") and `zonewatch topics`.

Each topic's record schema sits next to its name: the validators of the input records are in
`contract.events`, the output records are described in CONTRACT §4. Every public name carries
`ZONEWATCH_TOPIC_PREFIX`; internal topics carry the prefix and the app id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConfigError, KafkaUnavailable

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

    from .settings import Settings

# --- input (CONTRACT §1): records validated by contract.events --------------------------------
CALLS = "calls.110"          # key call_id: {call_id, ts, lat, lon, category, priority, caller?, lang?, text?}
GPS = "patrol.gps"           # key unit_id: {unit_id, ts, lat, lon, status?, kind?, speed?, heading?}
ALERTS = "camera.alerts"     # key camera_id: {alert_id, camera_id, ts, lat, lon, type, confidence, severity?}
STATUS = "camera.status"     # key camera_id: {camera_id, ts, lat, lon, online?}
INPUT_TOPICS = (CALLS, GPS, ALERTS, STATUS)

# --- output (CONTRACT §4) ---------------------------------------------------------------------
INCIDENTS = "incidents.enriched"  # key call_id: the call (caller_ref) + zones, ring, nearest_units, ...
SLA = "sla.events"                # key call_id: {type: arrived|breach, call_id, zone_ids, unit_id, response_s, ts}
ZONES_STATE = "zones.state"       # key zone_id, compacted: the Redis zone document
#: key "{local date}|{zone_id}", compacted: the zone's day (DAILY_FIELDS below), rewritten as the
#: day goes on, `final: true` once the stream clock passed the next local midnight plus the grace
ZONES_DAILY = "zones.daily"
DEADLETTER = "ingest.deadletter"  # key: original key: {topic, partition, offset, reason, raw, raw_encoding}
DUTY = "duty.events"              # key post or checkpoint id, or "phase" (CONTRACT §10): the duty audit trail
OUTPUT_TOPICS = (INCIDENTS, SLA, ZONES_STATE, ZONES_DAILY, DEADLETTER, DUTY)

# --- commands (CONTRACT §10) --------------------------------------------------------------------
#: key "phase": an operator's phase command, written by the gateway (POST /plan/phase), read by
#: ingest like an input and sent to every partition (contract.plan.phase_command is the record)
PLAN_COMMANDS = "plan.commands"

#: A zones.daily record (CONTRACT §4; docs in README "The daily briefing"):
#:   {"date": "2023-06-12", "zone_id", "name", "kind", "ring", "tz": "Asia/Shanghai", "final": bool,
#:    "clock": ms (stream clock when written), "version": n (increasing per key),
#:    "calls", "calls_by_category": {...}, "calls_by_priority": {"1": n, ...}, "calls_by_lang": {"zh": n, ...},
#:    "alerts", "alerts_by_type": {...},
#:    "hourly": {"calls": [24 counts by local hour], "alerts": [24 counts]},
#:    "response": {"arrived", "within_1m", "within_3m", "within_5m", "breaches", "p50_s", "p90_s"}}
#: `response` counts the day's decisions: arrivals whose fix ts and breaches whose deadline
#: (call ts + 300 s) fall on the date; p50/p90 nearest-rank over the day's response times.
DAILY_FIELDS = ("date", "zone_id", "name", "kind", "ring", "tz", "final", "clock", "version", "calls",
                "calls_by_category", "calls_by_priority", "calls_by_lang", "alerts", "alerts_by_type",
                "hourly", "response")

#: with a duty plan (CONTRACT §10) a zones.daily record also has these: minutes the posts lying in
#: the zone spent understaffed / empty that day (periods closed by a later status; the status is noted
#: again at every local midnight), and how often a checkpoint in it became overdue that day
DAILY_DUTY_FIELDS = ("post_minutes_understaffed", "post_minutes_empty", "checkpoint_misses")

# --- internal ({prefix}{app_id}-{suffix}) -------------------------------------------------------
#: batches of normalised events per zone partition (streams/records.py)
ZONE_EVENTS_SUFFIX = "zone-events"
#: compacted: state snapshots per zone-events partition (streams/recovery.py), key "{p}/..."
SNAPSHOTS_SUFFIX = "snapshots"

#: metric label `source` per input topic (CONTRACT §5)
SOURCE_OF_TOPIC = {CALLS: "calls", GPS: "gps", ALERTS: "alerts", STATUS: "status"}
#: the same for every topic ingest reads (dead letters and rejections of a command count as `plan`)
METRIC_SOURCE = {**SOURCE_OF_TOPIC, PLAN_COMMANDS: "plan"}
#: the field that is the Kafka message key per input topic
KEY_FIELD = {CALLS: "call_id", GPS: "unit_id", ALERTS: "camera_id", STATUS: "camera_id"}

HOUR_MS = 3_600_000
#: input values up to this size reach the worker (and are dead-lettered if they break the
#: contract) instead of being refused to the producer by the broker's 1 MB default
MAX_INPUT_BYTES = 8 << 20
#: the state stage rebuilds a partition from the zone-events log: a day and the longest window,
#: plus margin (streams/zone_state.py DEDUP_HORIZON_MS)
ZONE_EVENTS_RETENTION_MS = 27 * HOUR_MS
DEADLETTER_RETENTION_MS = 7 * 24 * HOUR_MS
SNAPSHOT_MAX_BYTES = 32 << 20


def internal(prefix: str, app_id: str, suffix: str) -> str:
    """The name of an internal topic of one deployment."""
    return f"{prefix}{app_id}-{suffix}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    topic_configs: dict = field(default_factory=dict)


def topic_specs(s: Settings, partitions: int) -> list[TopicSpec]:
    """Every topic zonewatch uses, with its partitions, replication factor and config."""
    big = {"max.message.bytes": str(MAX_INPUT_BYTES)}
    rf = s.replication_factor
    specs = [TopicSpec(s.topic(t), partitions, rf, topic_configs=dict(big)) for t in INPUT_TOPICS]
    specs += [
        TopicSpec(s.topic(INCIDENTS), partitions, rf),
        TopicSpec(s.topic(SLA), partitions, rf),
        TopicSpec(s.topic(ZONES_STATE), partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        TopicSpec(s.topic(ZONES_DAILY), partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        TopicSpec(s.topic(DEADLETTER), 1, rf, topic_configs={"retention.ms": str(DEADLETTER_RETENTION_MS)}),
        TopicSpec(s.topic(DUTY), partitions, rf),
        # one partition: the commands of a day in one order (the worker orders them by ts anyway)
        TopicSpec(s.topic(PLAN_COMMANDS), 1, rf),
        TopicSpec(s.internal_zone_events, s.partitions, rf,
                  topic_configs={"retention.ms": str(ZONE_EVENTS_RETENTION_MS), **big}),
        # compacted quickly (small segments, any dirty ratio) so a takeover reads little
        TopicSpec(s.internal_snapshots, s.partitions, rf,
                  topic_configs={"cleanup.policy": "compact", "segment.ms": "60000",
                                 "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                                 "delete.retention.ms": "60000", "max.message.bytes": str(SNAPSHOT_MAX_BYTES)}),
    ]
    return specs


def ensure_topics(s: Settings, partitions: int | None = None, timeout_s: float = 60.0) -> list[str]:
    """Create what is missing; returns the names created. Waits for Kafka up to `timeout_s`."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError

    from .security import kafka_python_kwargs

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=s.kafka, client_id=f"{s.app_id}-admin",
                                     request_timeout_ms=10_000, **kafka_python_kwargs(s))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot reach Kafka at {s.kafka} ({exc}); is `make up` running?") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(s, partitions or s.partitions) if t.name not in existing]
        created = []
        for spec in missing:  # one by one: a concurrent creator must not fail the others
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication,
                                              topic_configs=spec.topic_configs)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
            except InvalidReplicationFactorError as exc:
                raise ConfigError(f"ZONEWATCH_REPLICATION_FACTOR={spec.replication}: Kafka at {s.kafka} refused "
                                  f"to create {spec.name} ({exc}); it cannot exceed the number of brokers") from exc
        _wait_for_metadata(admin, [t.name for t in missing], deadline)
        return created
    finally:
        admin.close()


def _wait_for_metadata(admin: KafkaAdminClient, names: list[str], deadline: float) -> None:
    while names:
        known = set(admin.list_topics())
        names = [n for n in names if n not in known]
        if not names or time.monotonic() > deadline:
            return
        time.sleep(0.2)
