"""Metric names of CONTRACT §5 (and those beyond it: docs/RELIABILITY.md, docs/OPERATIONS.md), defined once.

The worker registers them (streams/metrics.py); the gateway's latency badge, `zonewatch watch`
and the bench read them by these names.
"""

from __future__ import annotations

EVENTS = "zonewatch_events_total"                 # counter {source, outcome}
E2E_LATENCY = "zonewatch_e2e_latency_seconds"     # histogram {source}
EVENT_AGE = "zonewatch_event_age_seconds"         # histogram {source}
ZONE_WRITES = "zonewatch_zone_writes_total"       # counter
STAGE = "zonewatch_stage_seconds"                 # histogram {stage}: where an event's latency goes (v3)

SOURCES = ("calls", "gps", "alerts", "status")
OUTCOMES = ("accepted", "rejected", "duplicate")
#: the hot path's stages (CONTRACT §5), then two beyond the contract: `fetch`, the part of `ingest` until
#: the input message was fetched (the connector's linger, Kafka), and `outputs`, a batch's output records
#: from their decision to Kafka's acknowledgement (off the apply path)
STAGES = ("ingest", "hop", "apply", "flush", "fetch", "outputs")

# --- beyond the contract (docs/RELIABILITY.md "Outages are visible") -------------------------------------------------
DEADLETTERS = "zonewatch_deadletter_total"             # counter {source, reason}
OUTPUT_ERRORS = "zonewatch_output_errors_total"        # counter
REDIS_WRITE_ERRORS = "zonewatch_redis_write_errors_total"  # counter
DEPENDENCY_UP = "zonewatch_dependency_up"              # gauge {dependency}
DEPENDENCY_OUTAGES = "zonewatch_dependency_outages_total"  # counter {dependency}

# --- a day of duty and operations (docs/DESIGN.md "Takeover"; docs/OPERATIONS.md "Takeover") -----
CONSUMER_LAG = "zonewatch_consumer_lag"                  # gauge {group, topic}: messages behind the end
WATERMARK = "zonewatch_watermark_ms"                    # gauge: watermark of patrol.gps (epoch ms)
STREAM_CLOCK = "zonewatch_stream_clock_ms"              # gauge: stream clock (epoch ms)
WATERMARK_LAG = "zonewatch_watermark_lag_seconds"       # gauge: stream clock - watermark
REBUILD_IN_PROGRESS = "zonewatch_rebuild_in_progress"   # gauge 0/1
TAKEOVER = "zonewatch_takeover_seconds"                 # histogram: assignment -> partition ready
SLA_DECISIONS = "zonewatch_sla_decisions_total"         # counter {type: arrived|breach}
BREACHES = "zonewatch_breaches_total"                   # counter
BUILD_INFO = "zonewatch_build_info"                     # gauge 1 {version}
SNAPSHOT_BYTES = "zonewatch_snapshot_bytes"             # gauge: size of the last state snapshot
FENCED = "zonewatch_fenced_writes_total"                # counter: partitions found owned by another worker
OUTPUT_RETRIES = "zonewatch_output_retries_total"       # counter: output records sent again
GC_PAUSE = "zonewatch_gc_pause_seconds"                 # histogram {generation}: collector pauses
FETCH_PAUSES = "zonewatch_fetch_pauses_total"           # counter {reason}: the state stage's fetcher held back
LAYOUT_MISMATCH = "zonewatch_layout_mismatch_total"     # counter: zone-events batches routed by another partitioning
SLA_DECISION_TYPES = ("arrived", "breach")
