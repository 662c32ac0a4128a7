"""Redis key names (CONTRACT §3, docs/DESIGN.md "Open incidents on the wall"): every one defined here.

Writers (streams/store.py) and readers (the gateway, `zonewatch watch`, the bench) import these;
tests/unit/test_house.py fails on a `zw:` literal anywhere else in the source tree.
"""

from __future__ import annotations

PREFIX = "zw:"

# --- CONTRACT §3 -------------------------------------------------------------------------------
ZONES = f"{PREFIX}zones"                  # SET of every zone id
ZONE_UPDATES = f"{PREFIX}zone-updates"    # STREAM: zone_id, version, state (the JSON document)
ZONE_UPDATES_MAXLEN = 100_000             # XADD MAXLEN ~
UNITS = f"{PREFIX}units"                  # GEO set: latest position of every unit, member unit_id
_ZONE = f"{PREFIX}zone:"                  # + zone id: the JSON document (SET), and its PUBLISH channel

# --- CONTRACT §10 (the duty plan) ---------------------------------------------------------------
POSTS = f"{PREFIX}posts"                  # SET of every post id written
CHECKPOINTS = f"{PREFIX}checkpoints"      # SET of every checkpoint id written
#: STREAM: type post|checkpoint|phase, id, version, state (the JSON document); same rules as ZONE_UPDATES
POST_UPDATES = f"{PREFIX}post-updates"
POST_UPDATES_MAXLEN = 100_000
_POST = f"{PREFIX}post:"                  # + post id: its JSON document (SET), and its PUBLISH channel
_CHECKPOINT = f"{PREFIX}checkpoint:"      # + checkpoint id: the same
#: beyond the contract: the phase in force, {"name", "source", "by", "since", "previous", "version"}
#: (the wall's banner; docs/DUTY.md), written by partition 0's owner
PHASE = f"{PREFIX}phase"
DUTY_VERSIONS = f"{PREFIX}duty-versions"  # HASH "post:{id}" / "checkpoint:{id}" / "phase" -> version written

# --- beyond the contract (docs/DESIGN.md "Extra Redis keys") ----------------------------------
UNITS_AVAILABLE = f"{PREFIX}units:available"  # GEO set of available units (dispatch recommendation)
UNIT_INFO = f"{PREFIX}unit-info"              # HASH unit_id -> {ts, status, kind, lat, lon}
#: Redis GEO (Web Mercator) indexes latitudes within ±GEO_LAT_LIMIT: a position beyond cannot be
#: GEOADDed, and GEOSEARCH refuses a centre there (it fails the whole pipeline it is in)
GEO_LAT_LIMIT = 85.05112878
INCIDENTS = f"{PREFIX}incidents"              # HASH call_id -> the wall's entry of an open incident
INCIDENT_UPDATES = f"{PREFIX}incident-updates"  # STREAM: call_id, status, state
INCIDENT_UPDATES_MAXLEN = 10_000
_INCIDENT = f"{PREFIX}incident:"             # + call_id: the incident's timeline (JSON, expires)
INCIDENT_TTL_S = 48 * 3600
ZONE_VERSIONS = f"{PREFIX}zone-versions"     # HASH zone_id -> version last written (idempotent writes)
FENCE = f"{PREFIX}fence"                      # HASH zone-events partition -> owner generation
#: statuses of an entry that stays in INCIDENTS; the others remove it
OPEN_STATUSES = ("open", "breached")


def zone(zone_id: str) -> str:
    """`zw:zone:{zone_id}`: the zone's document, and the channel its updates are published on."""
    return f"{_ZONE}{zone_id}"


def post(post_id: str) -> str:
    """`zw:post:{post_id}` (CONTRACT §10): {"post_id", "name", "lat", "lon", "radius_m", "phase",
    "required", "present", "unit_ids", "status", "since", "version"}."""
    return f"{_POST}{post_id}"


def checkpoint(checkpoint_id: str) -> str:
    """`zw:checkpoint:{checkpoint_id}` (CONTRACT §10): {"checkpoint_id", "name", "lat", "lon",
    "radius_m", "last_visit", "last_unit", "every_s", "overdue", "overdue_since", "version"}."""
    return f"{_CHECKPOINT}{checkpoint_id}"


def incident(call_id: str) -> str:
    """`zw:incident:{call_id}`: one incident's timeline (GET /incidents/{call_id}), kept 48 h:
    {"call_id", "call": {the call without caller or caller_ref}, "zones", "ring",
     "nearest_units": [{unit_id, kind, distance_m, eta_s, lat?, lon?, ts?}] (at call time; the position
     and ts of the unit's fix at the call's ts when the exact part found it),
     "corroborating_alerts": [{alert_id, type, distance_m, dt_s, lat, lon}] (the camera's position),
     "decision": null | {"type": "arrived"|"breach", "unit_id", "response_s", "ts"},
     "arrival": null | {"unit_id", "response_s", "ts"}, "breach": null | {"ts"},
     "status": "open"|"breached"|"arrived"|"expired",
     "events": [{"ts", "what": "call"|"recommended"|"alert"|"breach"|"arrived"|"expired", ...}],
     "clock": stream clock when written, "partition"}"""
    return f"{_INCIDENT}{call_id}"
