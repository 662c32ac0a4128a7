"""A fixed event set over tests/zones_test.geojson with its hand-computed zone states.

Zones: A and B overlap (lon 113.61-113.62); core inside inner inside outer; PNONE is in no zone.
Local time is Asia/Shanghai (UTC+8). The clock ends at 2023-06-12 00:22:40 local, so:
  today = 2023-06-12; windows end at minute 00:22 (5m: 00:18-00:22, 15m: 00:08-00:22,
  60m: 23:23-00:22); a fix counts when at most 120 s old, i.e. at or after 00:20:40.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

ZONES_FILE = Path(__file__).parent / "zones_test.geojson"
CST = timezone(timedelta(hours=8))

PA = (34.71, 113.605)      # A
PA2 = (34.715, 113.605)    # A, 555 m from PA: no call there
PB2 = (34.705, 113.625)    # B, 555 m from PB
PAB = (34.71, 113.615)     # A, B
PB = (34.71, 113.625)      # B
PCORE = (34.701, 113.701)  # outer, inner, core
PIN = (34.699, 113.699)    # outer, inner
PNONE = (34.0, 113.0)      # no zone


def local(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2023, 6, day, hh, mm, ss, tzinfo=CST)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _call(cid, when, pt, cat, prio, iso=False):
    return {"call_id": cid, "ts": when.isoformat() if iso else ms(when), "lat": pt[0], "lon": pt[1],
            "category": cat, "priority": prio, "caller": "13800000000", "text": "scenario"}


def _alert(aid, when, pt, typ):
    return {"alert_id": aid, "camera_id": f"cam-{aid}", "ts": ms(when), "lat": pt[0], "lon": pt[1],
            "type": typ, "confidence": 0.9}


def _fix(unit, when, pt, status="available", iso=False):
    return {"unit_id": unit, "ts": when.isoformat() if iso else ms(when), "lat": pt[0], "lon": pt[1],
            "status": status, "kind": "car"}


CALLS = [
    _call("c1", local(11, 23, 10), PA, "theft", 2),
    _call("c2", local(11, 23, 50), PAB, "violent", 1, iso=True),
    _call("c3", local(12, 0, 5), PB, "fraud", 3),
    _call("c3", local(12, 0, 5), PB, "fraud", 3),                 # duplicate
    _call("c4", local(12, 0, 20), PCORE, "medical", 1),
    _call("c5", local(12, 0, 21, 30), PNONE, "weird_category", 4),  # no zone; category -> other
    _call("c6", local(12, 0, 1), PAB, "dispute", 2),               # out of order
    _call("c7", local(11, 23, 59), PA, "traffic", 3, iso=True),    # late: yesterday after rollover
]
ALERTS = [
    _alert("a1", local(12, 0, 19), PCORE, "face_watchlist"),
    _alert("a2", local(12, 0, 22), PIN, "crowd_density"),
    _alert("a2", local(12, 0, 22), PIN, "crowd_density"),          # duplicate
    _alert("a3", local(12, 0, 10), PAB, "crowd_density"),
]
FIXES = [
    _fix("u1", local(12, 0, 21), PA2),
    _fix("u1", local(12, 0, 22, 30), PB2, "busy"),                 # moved A -> B
    _fix("u2", local(12, 0, 22), PCORE),                           # c4's arrival: 120 s
    _fix("u3", local(12, 0, 19), PIN),                             # stale at the final clock
    _fix("u2", local(12, 0, 21, 50), PA2, iso=True),               # older than u2's latest: ignored
    _fix("u4", local(12, 0, 22, 40), PNONE),                       # no zone; c5's arrival (70 s); final clock
]
INVALID_CALLS = [
    b'{"call_id": "bad1", "ts": 1686500000000, "lat": 34.7',        # invalid JSON
    b'{"call_id": "bad2", "ts": 1686500000000, "lat": 34.7, "lon": 113.6, "priority": 1}',  # no category
    b'{"call_id": "bad3", "ts": 1686500000000, "lat": 91.0, "lon": 113.6, "category": "theft", "priority": 1}',
]

FINAL_CLOCK = ms(local(12, 0, 22, 40))
EXPECTED_COUNTS = {  # zonewatch_events_total
    ("calls", "accepted"): 7, ("calls", "duplicate"): 1, ("calls", "rejected"): 3,
    ("alerts", "accepted"): 3, ("alerts", "duplicate"): 1, ("alerts", "rejected"): 0,
    ("gps", "accepted"): 6, ("gps", "duplicate"): 0, ("gps", "rejected"): 0,
    ("status", "accepted"): 0, ("status", "duplicate"): 0, ("status", "rejected"): 0,   # camera.status
}
# A: c2, c6, c7 open (c1 expired at 00:10); their breaches (23:55, 00:06, 00:04) are within the last
# 60 min, c1's (23:15) is not. B: c2, c3, c6 open and breached. Venue: c4 arrived after 120 s.
# On-scene tiers (CONTRACT §3 v3), decided at call ts + 300 s: nobody came within 100 m of c1, c2,
# c3, c6 or c7 in their first 5 minutes -> on scene 0/0/0, not met (1/2/3 required); c4's (00:25)
# and c5's (00:26:30) are after the final clock. In the last 60 min (since 23:22:40): A holds c2
# (decided 23:55), c6 (00:06), c7 (00:04) -> 3 decided; B c2, c3 (00:10), c6 -> 3; c1's 23:15 is out.
GRID_RESPONSE = {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 3,
                 "p50_s": None, "p90_s": None, "tiers_met": 0, "tiers_decided": 3}
VENUE_RESPONSE = {"arrived": 1, "within_1m": 0, "within_3m": 1, "within_5m": 1, "breaches": 0,
                  "p50_s": 120, "p90_s": 120, "tiers_met": 0, "tiers_decided": 0}


def _w(calls=0, p1=0, alerts=0, by_type=None):
    return {"calls": calls, "calls_p1": p1, "alerts": alerts, "alerts_by_type": by_type or {}}


def _last(calls, gps, alerts):
    """health.last_event_ts from local times on the 12th (hh, mm, ss)."""
    return {src: ms(local(12, *hms)) for src, hms in (("calls", calls), ("gps", gps), ("alerts", alerts))}


# Health at the final clock 00:22:40 (CONTRACT §3), by hand:
#   last_event_ts: A calls c6 00:01:00, gps u2's older fix 00:21:50 (later than u1's 00:21 there),
#   alerts a3 00:10; B calls c3 00:05, gps u1 00:22:30, alerts a3; outer and inner: calls c4 00:20,
#   gps u2 00:22, alerts a2 00:22; core: c4, u2, a1 00:19. units_quiet: u3 (00:19, 220 s old) in
#   outer and inner. cameras_known: cam-a1 (core, inner, outer), cam-a2 (inner, outer), cam-a3 (A,
#   B); none silent (a3's 00:10 is < 30 min old).
HEALTH = {
    "A": {"cameras_known": 1, "cameras_silent": 0, "units_quiet": 0,
          "last_event_ts": _last((0, 1, 0), (0, 21, 50), (0, 10, 0))},
    "B": {"cameras_known": 1, "cameras_silent": 0, "units_quiet": 0,
          "last_event_ts": _last((0, 5, 0), (0, 22, 30), (0, 10, 0))},
    "outer": {"cameras_known": 2, "cameras_silent": 0, "units_quiet": 1,
              "last_event_ts": _last((0, 20, 0), (0, 22, 0), (0, 22, 0))},
    "inner": {"cameras_known": 2, "cameras_silent": 0, "units_quiet": 1,
              "last_event_ts": _last((0, 20, 0), (0, 22, 0), (0, 22, 0))},
    "core": {"cameras_known": 1, "cameras_silent": 0, "units_quiet": 0,
             "last_event_ts": _last((0, 20, 0), (0, 22, 0), (0, 19, 0))},
}


# Reach at the final clock (CONTRACT §3): the only available present unit is u2, a car at PCORE
# (fix 00:22, 40 s old): 180 s x 8.3 m/s / 1.3 = 1,149 m and 300 s -> 1,915 m. Every vertex of the
# convex venue rings lies within 863 m of PCORE, so all of each ring is reached; grids A and B are
# more than 6 km away. u4 (available, at PNONE) is 100 km away; u3 is stale; u1 is busy.
# Within 1 min: 60 s x 8.3 / 1.3 = 383.1 m around PCORE, the centre of every ring. core's corners are
# 144 m away -> 1.0. inner (549 m x 666 m, corners at 431 m) and outer (1,098 m x 1,331 m) only in
# part: the disk is 0.461 km², 31.5 % of outer's 1.462 km²; reach counts the zone's area by its H3
# cells (each whole cell counted when its sample point is reached, weighted by its area in the zone),
# which gives 0.31 for outer and 0.98 for inner (a brute force over those sample points, haversine).
REACH = {"A": {"within_1m": 0.0, "within_3m": 0.0, "within_5m": 0.0},
         "B": {"within_1m": 0.0, "within_3m": 0.0, "within_5m": 0.0},
         "outer": {"within_1m": 0.31, "within_3m": 1.0, "within_5m": 1.0},
         "inner": {"within_1m": 0.98, "within_3m": 1.0, "within_5m": 1.0},
         "core": {"within_1m": 1.0, "within_3m": 1.0, "within_5m": 1.0}}

# Coverage (CONTRACT §3 v3): H3 res-9 cells whose centre lies in the zone (counted once with shapely
# over a 20-ring disk around the zone's centroid): A 48, B 49, outer 17, inner 4; core (222 m x 183 m)
# holds no cell centre, so its one cell is that of a point on its surface: its centre, PCORE's cell.
# Every fix is within the last 60 min of the clock (the earliest is u3's 00:19), so 60m = 8h. A: u1
# and u2 at PA2, one cell -> 1/48; B: u1 at PB2 -> 1/49 (PB2 is 457 m east of A, PA2 457 m west of B);
# outer and inner: PCORE and PIN, two cells -> 2/17 and 2/4; core: PCORE -> 1/1.
COVERAGE = {"A": round(1 / 48, 2), "B": round(1 / 49, 2), "outer": round(2 / 17, 2), "inner": 0.5, "core": 1.0}


def _doc(zid, name, kind, ring, level, today, windows, units):
    grid = kind == "grid"
    # no scenario call carries a `lang`: each counts as "und" (CONTRACT §3)
    today = {**today, "calls_by_lang": {"und": today["calls"]} if today["calls"] else {}}
    return {"zone_id": zid, "name": name, "kind": kind, "ring": ring, "level": level,
            "today": {"date": "2023-06-12", **today}, "windows": windows, "units": units,
            "response": GRID_RESPONSE if grid else VENUE_RESPONSE, "open_incidents": 3 if grid else 0,
            "health": HEALTH[zid], "reach": REACH[zid], "coverage": {"60m": COVERAGE[zid], "8h": COVERAGE[zid]}}


def _units(present, available):
    """No scenario fix names a force: every unit is police (CONTRACT §1)."""
    return {"present": present, "available": available,
            "by_force": {"police": present, "auxiliary": 0, "volunteer": 0, "security": 0}}


_VENUE_WINDOWS = _w(1, 1, 2, {"crowd_density": 1, "face_watchlist": 1})
EXPECTED = {
    "A": _doc("A", "Grid A", "grid", None, "orange",  # 3 breaches in 60 min
              {"calls": 1, "calls_by_category": {"dispute": 1}, "calls_by_priority": {"2": 1},
               "alerts": 1, "alerts_by_type": {"crowd_density": 1}},
              {"5m": _w(), "15m": _w(0, 0, 1, {"crowd_density": 1}),
               "60m": _w(3, 1, 1, {"crowd_density": 1})},
              _units(0, 0)),
    "B": _doc("B", "Grid B", "grid", None, "orange",
              {"calls": 2, "calls_by_category": {"dispute": 1, "fraud": 1},
               "calls_by_priority": {"2": 1, "3": 1}, "alerts": 1, "alerts_by_type": {"crowd_density": 1}},
              {"5m": _w(), "15m": _w(0, 0, 1, {"crowd_density": 1}),
               "60m": _w(3, 1, 1, {"crowd_density": 1})},
              _units(1, 0)),
    "outer": _doc("outer", "Venue outer", "venue", "outer", "orange",
                  {"calls": 1, "calls_by_category": {"medical": 1}, "calls_by_priority": {"1": 1},
                   "alerts": 2, "alerts_by_type": {"crowd_density": 1, "face_watchlist": 1}},
                  {"5m": _VENUE_WINDOWS, "15m": _VENUE_WINDOWS, "60m": _VENUE_WINDOWS},
                  _units(1, 1)),
    "inner": _doc("inner", "Venue inner", "venue", "inner", "orange",
                  {"calls": 1, "calls_by_category": {"medical": 1}, "calls_by_priority": {"1": 1},
                   "alerts": 2, "alerts_by_type": {"crowd_density": 1, "face_watchlist": 1}},
                  {"5m": _VENUE_WINDOWS, "15m": _VENUE_WINDOWS, "60m": _VENUE_WINDOWS},
                  _units(1, 1)),
    "core": _doc("core", "Venue core", "venue", "core", "orange",
                 {"calls": 1, "calls_by_category": {"medical": 1}, "calls_by_priority": {"1": 1},
                  "alerts": 1, "alerts_by_type": {"face_watchlist": 1}},
                 {k: _w(1, 1, 1, {"face_watchlist": 1}) for k in ("5m", "15m", "60m")},
                 _units(1, 1)),
}
EXPECTED_UNIT_POSITIONS = {"u1": PB2, "u2": PCORE, "u3": PIN, "u4": PNONE}

# sla.events: every call but c4 and c5 breached (no unit came within 100 m); c1 (23:10) is over
# by the final clock but its breach (23:15) was still decided. (type, call_id, unit, response_s, ts);
# tiers (type, call_id, on scene by 1/3/5 min, met, ts): see GRID_RESPONSE.
NOBODY = (0, 0, 0)
EXPECTED_SLA = sorted([
    ("tiers", "c1", NOBODY, False, ms(local(11, 23, 15))),
    ("tiers", "c2", NOBODY, False, ms(local(11, 23, 55))),
    ("tiers", "c3", NOBODY, False, ms(local(12, 0, 10))),
    ("tiers", "c6", NOBODY, False, ms(local(12, 0, 6))),
    ("tiers", "c7", NOBODY, False, ms(local(12, 0, 4))),
    ("breach", "c1", None, None, ms(local(11, 23, 15))),
    ("breach", "c2", None, None, ms(local(11, 23, 55))),
    ("breach", "c3", None, None, ms(local(12, 0, 10))),
    ("breach", "c6", None, None, ms(local(12, 0, 6))),
    ("breach", "c7", None, None, ms(local(12, 0, 4))),
    ("arrived", "c4", "u2", 120.0, ms(local(12, 0, 22))),
    ("arrived", "c5", "u4", 70.0, ms(local(12, 0, 22, 40))),
])


def sla_tuple(ev: dict) -> tuple:
    if ev["type"] == "tiers":
        return ("tiers", ev["call_id"], tuple(ev["on_scene"][t] for t in ("1m", "3m", "5m")), ev["met"], ev["ts"])
    return (ev["type"], ev["call_id"], ev["unit_id"], ev["response_s"], ev["ts"])


def strip_volatile(doc: dict) -> dict:
    """A zone document without version and clock (those are checked separately)."""
    return {k: v for k, v in doc.items() if k not in ("version", "clock")}
