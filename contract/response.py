"""The incident rules of CONTRACT §3/§4: arrival, the 1-3-5 minute response, breach, expiry,
corroboration, staleness, and the ETA used by dispatch recommendations.

Defined once; the incidents and zone stages, the wall and the simulator import them.
"""

from __future__ import annotations

import math

ARRIVAL_RADIUS_M = 100.0            # a fix this close to the call is an arrival
CORROBORATION_RADIUS_M = 300.0      # camera alerts this close ...
CORROBORATION_WINDOW_MS = 10 * 60_000  # ... and within +-10 min of the call corroborate it
BREACH_AFTER_MS = 300_000           # no arrival 300 s after the call: a breach
EXPIRE_AFTER_MS = 60 * 60_000       # open incidents expire after 60 min
RESPONSE_WINDOW_MS = 60 * 60_000    # `response` counts decisions of the last 60 min
WITHIN_S = (60, 180, 300)           # within_1m / within_3m / within_5m
UNIT_STALE_MS = 120_000             # a fix older than this (stream clock) makes a unit absent
UNIT_QUIET_MS = 30 * 60_000         # ... and a unit "quiet" in its zone until this (CONTRACT §3 Health)
CAMERA_KNOWN_MS = 24 * 3_600_000    # a camera that reported within this is known to its zone
EVENT_AGE_HORIZON_MS = 24 * 3_600_000  # health.last_event_ts is null beyond this
DEFAULT_GRACE_MS = 10 * 60_000      # ZONEWATCH_GRACE_S: how late a call may be consumed
# On-scene tiers (CONTRACT §3 v3): distinct units within ARRIVAL_RADIUS_M of the call at some fix ts
# in [call ts, call ts + 60 / 180 / 300 s], decided on the watermark at call ts + TIERS_DECIDED_MS
TIERS_S = (60, 180, 300)            # on_scene "1m" / "3m" / "5m"
TIER_NAMES = ("1m", "3m", "5m")
TIERS_DECIDED_MS = 300_000
DEFAULT_TIERS = (1, 2, 3)           # units required by 1, 3 and 5 minutes without a plan (CONTRACT §10)
# Coverage (CONTRACT §3 v3): share of a zone's H3 cells of this resolution (centre in the zone) with a
# fix of any unit in the last 60 min / 8 h of stream clock
COVERAGE_RES = 9
COVERAGE_WINDOWS_MS = (("60m", 60 * 60_000), ("8h", 8 * 3_600_000))
#: a day in any time zone plus the longest window: an id older than this can change no figure
DEDUP_HORIZON_MS = 26 * 3600 * 1000
MAX_CORROBORATING = 50              # per call, the closest in time (docs/DESIGN.md "Corroboration")

# Nominal speeds for the ETA of a recommendation (m/s), and a detour factor from straight line
# to street distance (docs/DESIGN.md "Dispatch recommendation").
UNIT_SPEED_MS = {"foot": 1.4, "motorcycle": 9.0, "car": 8.3, "swat": 8.3, "other": 6.0}
DETOUR_FACTOR = 1.3
EARTH_RADIUS_M = 6372797.560856  # the radius Redis GEO uses, so distances agree with GEOSEARCH

# Dispatch recommendation (docs/DESIGN.md "Dispatch recommendation"): up to MAX_RECOMMENDED available units,
# nearest first, from their positions as of the call's ts. Exact within DISPATCH_EXACT_M of the
# call: the farthest any kind of unit gets within the 5 minutes of the 1-3-5 rule at its nominal
# speed (300 s x 9 m/s / 1.3 = 2,077 m); every fix that close reaches the call's partition
# (streams/routing.py). Beyond it, a processing-time lookup fills the list (streams/dispatch.py).
MAX_RECOMMENDED = 3
DISPATCH_EXACT_M = BREACH_AFTER_MS / 1000 * max(UNIT_SPEED_MS.values()) / DETOUR_FACTOR


def default_tier_requirement(zone_id: str) -> tuple[int, int, int]:
    """Units required on scene by 1, 3 and 5 minutes in a zone without a plan's [[tiers]] entry
    (CONTRACT §10): the shape of the requirement function the incidents and zone stages take."""
    return DEFAULT_TIERS


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres, as Redis GEO computes it."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat = p2 - p1
    dlon = math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def eta_s(distance_m: float, kind: str) -> int:
    """Seconds a unit of this kind needs for a straight-line distance (street detour included)."""
    return int(round(distance_m * DETOUR_FACTOR / UNIT_SPEED_MS.get(kind, UNIT_SPEED_MS["other"])))
