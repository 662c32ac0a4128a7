"""Metric names of CONTRACT §5 (and the README's additions), defined once.

The worker registers them (streams/metrics.py); the gateway's latency badge, `zonewatch watch`
and the bench read them by these names.
"""

from __future__ import annotations

EVENTS = "zonewatch_events_total"                 # counter {source, outcome}
E2E_LATENCY = "zonewatch_e2e_latency_seconds"     # histogram {source}
EVENT_AGE = "zonewatch_event_age_seconds"         # histogram {source}
ZONE_WRITES = "zonewatch_zone_writes_total"       # counter

SOURCES = ("calls", "gps", "alerts")
OUTCOMES = ("accepted", "rejected", "duplicate")

# --- beyond the contract (README "Reliability") -------------------------------------------------
DEADLETTERS = "zonewatch_deadletter_total"             # counter {source, reason}
OUTPUT_ERRORS = "zonewatch_output_errors_total"        # counter
REDIS_WRITE_ERRORS = "zonewatch_redis_write_errors_total"  # counter
DEPENDENCY_UP = "zonewatch_dependency_up"              # gauge {dependency}
DEPENDENCY_OUTAGES = "zonewatch_dependency_outages_total"  # counter {dependency}

# --- operations (issue 15; appended by the ops branch) ------------------------------------------
# Names the worker exports for operators; deploy/prometheus/rules.yml and
# deploy/grafana/dashboards/zonewatch.json query exactly these.
CONSUMER_LAG = "zonewatch_consumer_lag"                # gauge {group, topic}: messages behind the end
WATERMARK_MS = "zonewatch_watermark_ms"                # gauge: the watermark, epoch ms
STREAM_CLOCK_MS = "zonewatch_stream_clock_ms"          # gauge: the stream clock, epoch ms
WATERMARK_LAG = "zonewatch_watermark_lag_seconds"      # gauge: stream clock - watermark
REBUILD_IN_PROGRESS = "zonewatch_rebuild_in_progress"  # gauge 0/1: a partition's state is being rebuilt
TAKEOVER = "zonewatch_takeover_seconds"                # histogram: partition takeover time
SLA_DECISIONS = "zonewatch_sla_decisions_total"        # counter {type}: arrived | breach
BREACHES = "zonewatch_breaches_total"                  # counter
BUILD_INFO = "zonewatch_build_info"                    # gauge {version} = 1
SLA_DECISION_TYPES = ("arrived", "breach")
