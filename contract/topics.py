"""Topic names and their configuration (CONTRACT §1, §4, docs/DESIGN.md "Choices where the contract is silent").

Each topic's record schema sits next to its name: the validators of the input records are in
`contract.events`, the output records are described in CONTRACT §4. Every public name carries
`ZONEWATCH_TOPIC_PREFIX`; internal topics carry the prefix and the app id. The specs of one
deployment's topics and `ensure_topics` (`zonewatch topics`) are in contract/kafka_settings.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

#: A zones.daily record (CONTRACT §4; docs/COMMANDS.md "The daily briefing"):
#:   {"date": "2023-06-12", "zone_id", "name", "kind", "ring", "tz": "Asia/Shanghai", "final": bool,
#:    "clock": ms (stream clock when written), "version": n (increasing per key),
#:    "calls", "calls_by_category": {...}, "calls_by_priority": {"1": n, ...}, "calls_by_lang": {"zh": n, ...},
#:    "alerts", "alerts_by_type": {...},
#:    "hourly": {"calls": [24 counts by local hour], "alerts": [24 counts]},
#:    "response": {"arrived", "within_1m", "within_3m", "within_5m", "breaches", "p50_s", "p90_s",
#:                 "tiers_met", "tiers_decided"},
#:    "once": {the same counts, hourly and response for the calls and alerts whose first zone is this
#:             one, its response with "times": {"<whole seconds>": decisions} and no tiers}}
#: `response` counts the day's decisions: arrivals whose fix ts and breaches and on-scene tiers (v3)
#: whose deadline (call ts + 300 s) fall on the date; p50/p90 nearest-rank over the day's response times.
#: Each event has one first zone, so `once` summed over zones counts it once (reports/briefing.py).
DAILY_FIELDS = ("date", "zone_id", "name", "kind", "ring", "tz", "final", "clock", "version", "calls",
                "calls_by_category", "calls_by_priority", "calls_by_lang", "alerts", "alerts_by_type",
                "hourly", "response", "once")

#: with a duty plan (CONTRACT §10) a zones.daily record also has these: minutes the posts lying in
#: the zone spent understaffed / empty that day (periods closed by a later status; the status is noted
#: again at every local midnight), and how often a checkpoint in it became overdue that day
DAILY_DUTY_FIELDS = ("post_minutes_understaffed", "post_minutes_empty", "checkpoint_misses")

#: Kafka header of every record the worker writes for a zone-events partition (the outputs above but
#: ingest.deadletter, the arrival records, the snapshots): "{partition}:{owner generation}", the owner
#: that wrote it (streams/kafka_fence.py: a previous owner's writes are fenced by transactions)
OWNER_HEADER = "zw-owner"

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
    #: keys of topic_configs that follow a zonewatch setting: ensure_topics sets them on an existing
    #: topic too (the others are set at creation only, so an operator's later tuning stays)
    kept: tuple[str, ...] = ()
