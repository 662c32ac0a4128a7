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
