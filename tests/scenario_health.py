"""Issue 13's hand-computed scenario: health, reach, languages, drones, routes and points.

Zones (tests/zones_health.geojson), all in the band lat 34.800-34.810 near Zhengzhou:
  G1, G2   grid squares 0.01° x 0.01° (913 m east-west x 1,112 m north-south), 4.1 km apart;
  D        a district of two parts on the same band: west lon 113.600-113.605, east lon
           113.640-113.655, so the east part has exactly 3 times the west part's area;
  outer ⊃ inner ⊃ core   venue rings centred on (34.805, 113.700);
  aid-1    a Point, radius_m absent: a circle of 100 m (CONTRACT §2) around (34.805, 113.7165);
  course   a LineString (kind route, no segment_m/buffer_m: 1000 m and 50 m) from 113.735 to
           113.765 along lat 34.805, cut into course/0, course/1, course/2.

Length of the course (for the last segment's name, docs/DESIGN.md "Zones files": `{start}–{end} km`,
metre precision): both ends lie on the parallel 34.805°, so on the plane tangent to WGS84 at the
line's centre the length is 2 N cos φ sin(Δλ/2) with N = a / sqrt(1 - e² sin² φ):
a = 6,378,137 m, e² = 0.00669438, sin² 34.805° = 0.32587 -> N = 6,385,103.8 m; N cos φ = 5,242,804.9 m;
sin(0.015°) = 2.617994e-4 -> 2,745.13 m. Segments: 0–1 km, 1–2 km, 2–2.745 km.

Distances below are haversine on a sphere; every margin is kept far wider than the choice of
radius (6,371.0 km vs 6,378.1 km changes them by 0.1 %). At lat 34.805°: 0.001° of latitude ≈ 111.2 m,
0.001° of longitude ≈ 91.3 m. ETA (CONTRACT §3 "Reach") = distance × 1.3 / speed: a car (8.3 m/s)
reaches 180 s × 8.3 / 1.3 = 1,149.2 m within 3 min and 300 s × 8.3 / 1.3 = 1,915.4 m within 5 min.

Local time is Asia/Shanghai (UTC+8), day 2023-06-15. Two moments are checked:
  phase 1 ends at T1 = 10:20:00 (a camera status report of that time is the largest ts);
  phase 2 ends at T2 = 10:30:00 (the silent camera's report of that time).
Minute windows at T1: 5m = 10:16–10:20, 15m = 10:06–10:20, 60m = 09:21–10:20;
at T2: 5m = 10:26–10:30, 15m = 10:16–10:30, 60m = 09:31–10:30.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

ZONES_FILE = Path(__file__).parent / "zones_health.geojson"
CST = timezone(timedelta(hours=8))
DATE = "2023-06-15"
ZONE_IDS = ("G1", "G2", "D", "outer", "inner", "core", "aid-1", "course/0", "course/1", "course/2")

# places
G1_CENTRE = (34.805, 113.505)   # car-1 in phase 1; call c4
G1_SW = (34.802, 113.502)       # calls c1 c2 c3 c5 c8: 432 m from G1_CENTRE (334 m N-S, 274 m E-W)
CAM_S_AT = (34.808, 113.502)    # G1
CAM_O_AT = (34.808, 113.508)    # G1
CAM_G_AT = (34.803, 113.508)    # G1
G2_CENTRE = (34.805, 113.555)   # car-1 in phase 2
FOOT_Q_AT = (34.806, 113.556)   # G2
CAM_GD_AT = (34.807, 113.553)   # G2
D_WEST = (34.805, 113.6025)     # the centre of D's west part: car-d
VENUE = (34.805, 113.700)       # outer, inner and core: car-v
CAM_DR_AT = (34.8052, 113.7002)  # core (hence inner and outer too)
C7_AT = (34.8051, 113.7001)     # core; 14 m from VENUE (11.1 m N, 9.1 m E)
AID = (34.805, 113.7165)        # aid-1's centre
# 1,500 m from the course's start on the tangent plane (start at x = -1,372.56 m, so x = 127.44 m,
# i.e. lon 113.75 + 127.44 / 91,504 m per degree = 113.75139), 11 m north of the centre line:
# inside course/1 only (500 m from either cut, each segment's round end reaching 50 m past it)
ON_COURSE_1 = (34.8051, 113.75139)


def local(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2023, 6, 15, hh, mm, ss, tzinfo=CST)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


T1 = ms(local(10, 20))
T2 = ms(local(10, 30))


def _call(cid, when, pt, cat, prio, lang=None):
    ev = {"call_id": cid, "ts": ms(when), "lat": pt[0], "lon": pt[1], "category": cat, "priority": prio}
    if lang is not None:
        ev["lang"] = lang
    return ev


def _alert(aid, cam, when, pt, typ):
    return {"alert_id": aid, "camera_id": cam, "ts": ms(when), "lat": pt[0], "lon": pt[1], "type": typ,
            "confidence": 0.9}


def _status(cam, when, pt, online=None):
    ev = {"camera_id": cam, "ts": ms(when), "lat": pt[0], "lon": pt[1]}
    if online is not None:
        ev["online"] = online
    return ev


def _fix(unit, when, pt, status="available", kind="car"):
    return {"unit_id": unit, "ts": ms(when), "lat": pt[0], "lon": pt[1], "status": status, "kind": kind}


# ------------------------------------------------------------------ phase 1 (clock ends at T1 10:20:00)
CALLS_1 = [
    _call("c1", local(10, 2), G1_SW, "theft", 3, "zh"),
    _call("c2", local(10, 12), G1_SW, "fraud", 3, "en-GB"),
    _call("c3", local(10, 16), G1_SW, "dispute", 2),                  # no lang: "und"
    _call("c4", local(10, 18), G1_CENTRE, "medical", 2, "zh-Hans-CN"),
    _call("c5", local(10, 19), G1_SW, "traffic", 4, "vi"),
    _call("c6", local(10, 14), ON_COURSE_1, "medical", 2, "fr"),      # on the course, segment 1
]
ALERTS_1 = [
    _alert("a1", "cam-g", local(10, 18, 10), CAM_G_AT, "abandoned_object"),
    _alert("a2", "cam-dr", local(10, 18, 30), CAM_DR_AT, "drone"),    # a drone over the core ring
    _alert("a3", "cam-gd", local(10, 17), CAM_GD_AT, "drone"),        # a drone over a grid (no ring)
    _alert("a4", "cam-p", local(10, 15), AID, "crowd_density"),       # at the aid point
]
STATUS_1 = [
    _status("cam-s", local(9, 40), CAM_S_AT, True),                   # then nothing until 10:30: silent
    _status("cam-o", local(10, 10), CAM_O_AT, False),                 # the platform says it is down
    _status("cam-o", local(10, 10), CAM_O_AT, False),                 # the same report again: duplicate
    _status("cam-g", local(10, 18), CAM_G_AT),                        # online by default
    _status("cam-p", local(10, 20), AID, True),                       # the clock: T1
]
FIXES_1 = [
    _fix("foot-q", local(10, 8), FOOT_Q_AT, "busy", "foot"),          # its last fix: quiet from 10:10
    _fix("car-1", local(10, 10), G1_CENTRE),
    _fix("car-v", local(10, 19, 10), VENUE),
    _fix("car-1", local(10, 19, 30), G1_CENTRE),                     # c4's arrival: 90 s
    _fix("car-d", local(10, 19, 40), D_WEST),                         # its last fix: quiet in phase 2
]

# ------------------------------------------------------------------ phase 2 (clock ends at T2 10:30:00)
CALLS_2 = [
    _call("c7", local(10, 27), C7_AT, "violent", 1, "ru"),            # priority 1 in the core
    _call("c8", local(10, 26), G1_SW, "theft", 3, "zh-TW"),
]
ALERTS_2 = [
    _alert("a5", "cam-o", local(10, 25), CAM_O_AT, "vehicle_watchlist"),  # an alert, no new status
]
STATUS_2 = [
    _status("cam-s", local(10, 30), CAM_S_AT, True),                  # back after 50 min; the clock: T2
]
FIXES_2 = [
    _fix("car-v", local(10, 29, 20), VENUE),                         # c7's arrival: 140 s
    _fix("car-1", local(10, 29, 30), G2_CENTRE),                     # car-1 moved from G1 to G2
]

PHASES = {
    1: {"calls": CALLS_1, "alerts": ALERTS_1, "status": STATUS_1, "gps": FIXES_1},
    2: {"calls": CALLS_2, "alerts": ALERTS_2, "status": STATUS_2, "gps": FIXES_2},
}
FINAL_CLOCK = {1: T1, 2: T2}

# zonewatch_events_total after each phase (cumulative), by (source, outcome)
EXPECTED_COUNTS = {
    1: {("calls", "accepted"): 6, ("calls", "duplicate"): 0, ("calls", "rejected"): 0,
        ("alerts", "accepted"): 4, ("alerts", "duplicate"): 0, ("alerts", "rejected"): 0,
        ("gps", "accepted"): 5, ("gps", "duplicate"): 0, ("gps", "rejected"): 0,
        ("status", "accepted"): 4, ("status", "duplicate"): 1, ("status", "rejected"): 0},
    2: {("calls", "accepted"): 8, ("calls", "duplicate"): 0, ("calls", "rejected"): 0,
        ("alerts", "accepted"): 5, ("alerts", "duplicate"): 0, ("alerts", "rejected"): 0,
        ("gps", "accepted"): 7, ("gps", "duplicate"): 0, ("gps", "rejected"): 0,
        ("status", "accepted"): 5, ("status", "duplicate"): 1, ("status", "rejected"): 0},
}

# ------------------------------------------------------------------ sla.events, by hand (CONTRACT §3, §4)
# Arrival: the first fix at/after the call within 100 m. c4 (10:18 at G1_CENTRE): car-1's fix at
# 10:19:30 there (its 10:10 fix is before the call) -> 90 s. c7 (10:27, 14 m from VENUE): car-v's
# 10:29:20 -> 140 s. No unit ever comes within 100 m of G1_SW (car-1 stood 432 m away) or of the
# course: those calls breach 300 s after the call. After phase 1 (watermark = T1 10:20 once the feeds
# are quiet): c1 10:07, c2 10:17, c6 10:19 breached; c3 (due 10:21) and c5 (10:24) not yet.
# After phase 2 (T2 10:30): c3 and c5 too; c8 (due 10:31) not yet. (type, call_id, unit, response_s, ts)
# Tiers (type, call_id, on scene by 1/3/5 min, met, ts): see "v3 figures" below.
EXPECTED_SLA = {
    1: sorted([
        ("breach", "c1", None, None, ms(local(10, 7))),
        ("breach", "c2", None, None, ms(local(10, 17))),
        ("breach", "c6", None, None, ms(local(10, 19))),
        ("arrived", "c4", "car-1", 90.0, ms(local(10, 19, 30))),
        ("tiers", "c1", (0, 0, 0), False, ms(local(10, 7))),
        ("tiers", "c2", (0, 0, 0), False, ms(local(10, 17))),
        ("tiers", "c6", (0, 0, 0), False, ms(local(10, 19))),
    ]),
    2: sorted([
        ("breach", "c3", None, None, ms(local(10, 21))),
        ("breach", "c5", None, None, ms(local(10, 24))),
        ("arrived", "c7", "car-v", 140.0, ms(local(10, 29, 20))),
        ("tiers", "c3", (0, 0, 0), False, ms(local(10, 21))),
        ("tiers", "c4", (0, 1, 1), False, ms(local(10, 23))),
        ("tiers", "c5", (0, 0, 0), False, ms(local(10, 24))),
    ]),
}
SLA_ZONES = {"c1": ["G1"], "c2": ["G1"], "c3": ["G1"], "c4": ["G1"], "c5": ["G1"], "c6": ["course/1"],
             "c7": ["core", "inner", "outer"]}


def sla_tuple(ev: dict) -> tuple:
    if ev["type"] == "tiers":
        return ("tiers", ev["call_id"], tuple(ev["on_scene"][t] for t in ("1m", "3m", "5m")), ev["met"], ev["ts"])
    return (ev["type"], ev["call_id"], ev["unit_id"], ev["response_s"], ev["ts"])


# ------------------------------------------------------------------ zone documents, by hand

def _w(calls=0, p1=0, alerts=0, by_type=None):
    return {"calls": calls, "calls_p1": p1, "alerts": alerts, "alerts_by_type": by_type or {}}


def _today(calls=0, cat=None, prio=None, lang=None, alerts=0, types=None):
    return {"date": DATE, "calls": calls, "calls_by_category": cat or {}, "calls_by_priority": prio or {},
            "calls_by_lang": lang or {}, "alerts": alerts, "alerts_by_type": types or {}}


def _resp(arrived=0, w1=0, w3=0, w5=0, breaches=0, p50=None, p90=None):
    return {"arrived": arrived, "within_1m": w1, "within_3m": w3, "within_5m": w5, "breaches": breaches,
            "p50_s": p50, "p90_s": p90}


def _health(known=0, silent=0, quiet=0, calls=None, gps=None, alerts=None, at=T1):
    """The ages (s) of the hand figures below; the document carries the ts, `at` - age (v3)."""
    return {"cameras_known": known, "cameras_silent": silent, "units_quiet": quiet,
            "last_event_ts": {src: None if age is None else at - age * 1000
                              for src, age in (("calls", calls), ("gps", gps), ("alerts", alerts))}}


def _reach(r1, r3, r5):
    return {"within_1m": r1, "within_3m": r3, "within_5m": r5}


_META = {
    "G1": ("Grid 1", "grid", None), "G2": ("Grid 2", "grid", None), "D": ("District D", "district", None),
    "outer": ("Stadium outer", "venue", "outer"), "inner": ("Stadium inner", "venue", "inner"),
    "core": ("Stadium core", "venue", "core"), "aid-1": ("Aid point 1", "other", None),
    "course/0": ("Course 0–1 km", "route", None), "course/1": ("Course 1–2 km", "route", None),
    "course/2": ("Course 2–2.745 km", "route", None),
}


def _doc(zid, level, *, today=None, windows=None, units=(0, 0), response=None, open_incidents=0,
         health=None, reach=(0.0, 0.0, 0.0), coverage=0.0, tiers=(0, 0)):
    """`tiers`: (tiers_met, tiers_decided) of the response; `coverage`: both windows (every fix of
    the scenario is less than 60 min old at either moment); every unit is police (no fix names a
    force)."""
    name, kind, ring = _META[zid]
    windows = windows or {}
    return {"zone_id": zid, "name": name, "kind": kind, "ring": ring, "level": level,
            "today": today or _today(),
            "windows": {k: windows.get(k, _w()) for k in ("5m", "15m", "60m")},
            "units": {"present": units[0], "available": units[1],
                      "by_force": {"police": units[0], "auxiliary": 0, "volunteer": 0, "security": 0}},
            "response": {**(response or _resp()), "tiers_met": tiers[0], "tiers_decided": tiers[1]},
            "open_incidents": open_incidents,
            "health": health or _health(), "reach": _reach(*reach), "coverage": {"60m": coverage, "8h": coverage}}


# ---- at T1 = 10:20:00
#
# G1. Calls c1 10:02 zh theft p3, c2 10:12 en-GB fraud p3, c3 10:16 (no lang) dispute p2, c4 10:18
#   zh-Hans-CN medical p2, c5 10:19 vi traffic p4: 5 today; lang = primary subtag: zh 2 (c1, c4), en 1,
#   und 1, vi 1. Alert a1 abandoned_object 10:18:10. Windows: 5m (10:16–10:20) c3 c4 c5 + a1; 15m
#   (10:06–) c2..c5 + a1; 60m all. Units: car-1 (10:19:30, 30 s old, available) present. Response: c4
#   arrived in 90 s (within 3m and 5m, not 1m); breaches c1 (due 10:07) and c2 (10:17), both in the
#   last 60 min; open: c1 c2 c3 c5 (c4 arrived; none 60 min old) = 4. Health: cameras cam-s (status
#   09:40: 40 min > 30 min -> silent), cam-o (status online:false -> silent), cam-g (10:18:10): 3
#   known, 2 silent; no quiet unit; ages: calls c5 10:19:00 -> 60 s, gps 10:19:30 -> 30 s, alerts
#   a1 10:18:10 -> 110 s. Reach: car-1 at the centre, every point of G1 within 720 m (456 m E-W,
#   556 m N-S to a corner) < 1,149 m -> 1.0 / 1.0. Level: no priority-1 call, 2 breaches (< 3), 4
#   calls in 15 min (< 10): not orange; 15m calls ≥ 3 (and breaches ≥ 1, open ≥ 3) -> yellow.
# G2. Alert a3 drone 10:17 (cam-gd). foot-q's only fix 10:08 (busy): 12 min old -> not present,
#   quiet 1. No available present unit within 1,915 m (car-1 at G1's centre is 4,110 m from G2's
#   west edge; car-d 3,880 m from its east edge) -> reach 0 / 0. Ages: gps 10:08 -> 720 s, alerts
#   10:17 -> 180 s. Level: a drone makes only *ringed* zones yellow; G2 has no ring -> green.
# D. car-d (10:19:40, available) at the centre of the west part: every point of that part within
#   601 m (228 m E-W, 556 m N-S) -> reached in 3 min; the east part starts 3,425 m away (car-v is
#   4,110 m from its east edge) -> not reached in 5 min. The west part is 1/4 of D's area -> 0.25 /
#   0.25. gps age 20 s. Green.
# outer, inner, core (all hold VENUE, CAM_DR_AT): a2 drone 10:18:30 in every window; car-v (10:19:10)
#   present; cam-dr known, not silent; ages gps 50 s, alerts 90 s. Reach: every point of the outer
#   ring (and so of inner and core) within 495 m of car-v -> 1.0 / 1.0. Level (CONTRACT §3): the
#   table says green (1 alert, no call); a drone alert in the last 5 minutes inside a core ring ->
#   core at least orange; a drone alert in any ringed zone -> inner and outer at least yellow.
# aid-1. a4 crowd_density 10:15 (15m, 60m; not 5m); cam-p known (status 10:20), not silent; alerts
#   age 300 s. Reach: the circle lies 1,407–1,607 m from car-v (centre 1,507 m): none within 1,149 m,
#   all within 1,915 m -> 0.0 / 1.0; every other available unit is > 3 km away. Green.
# course/1. c6 10:14 fr medical p2 (15m and 60m); no unit within 100 m: breach due 10:19 -> 1 breach,
#   open 1; calls age 360 s; no unit within 3.1 km -> reach 0 / 0. Level: breaches ≥ 1 -> yellow.
# course/0, course/2: nothing; reach 0 / 0; green.
#
# v3 figures at T1:
# Reach within 1 min: a car covers 60 s x 8.3 / 1.3 = 383.1 m. G1: the disk around its centre lies
#   inside G1 (456 m / 556 m to the sides), 0.461 km² of 1.015 km² = 45 %; reach counts the area by
#   its H3 cells (a cell counts when its sample point is reached, weighted by its area in the zone),
#   which gives 0.44 (a brute force over those sample points). D: the disk clipped to the 456 m wide
#   west part, a quarter of D -> 0.16 by the same brute force. outer: 0.89 (its corners are beyond
#   383 m); inner and core lie within 383 m of car-v -> 1.0. aid-1 (1,407 m away) -> 0.
# Coverage: H3 res-9 cells with their centre in the zone (shapely over an H3 disk): G1 12, G2 13,
#   D 26, outer 5, inner 1, course/0 1, course/2 1; core, aid-1 and course/1 hold no centre: their one
#   cell is that of a point on their surface (core: its centre, VENUE's cell). Fixes: car-1 at
#   G1_CENTRE (twice) -> G1 1/12 = 0.08; foot-q -> G2 1/13 = 0.08; car-d -> D 1/26 = 0.04; car-v at
#   VENUE -> outer 1/5 = 0.2, inner 1/1, core 1/1.
# On-scene tiers (1/2/3 units required by 1/3/5 min), decided at call ts + 300 s: c1 (10:07) and c2
#   (10:17) in G1, c6 (10:19) on course/1; nobody within 100 m of G1_SW or of the course: 0/0/0, not
#   met. G1: (0 met, 2 decided); course/1 (0, 1).
_G1_TODAY_1 = _today(5, {"dispute": 1, "fraud": 1, "medical": 1, "theft": 1, "traffic": 1},
                     {"2": 2, "3": 2, "4": 1}, {"en": 1, "und": 1, "vi": 1, "zh": 2},
                     1, {"abandoned_object": 1})
_VENUE_TODAY_1 = _today(alerts=1, types={"drone": 1})
_VENUE_W_1 = {k: _w(alerts=1, by_type={"drone": 1}) for k in ("5m", "15m", "60m")}
_VENUE_HEALTH_1 = _health(1, 0, 0, None, 50, 90)
_COURSE_1_TODAY = _today(1, {"medical": 1}, {"2": 1}, {"fr": 1})

EXPECTED_1 = {
    "G1": _doc("G1", "yellow", today=_G1_TODAY_1,
               windows={"5m": _w(3, 0, 1, {"abandoned_object": 1}), "15m": _w(4, 0, 1, {"abandoned_object": 1}),
                        "60m": _w(5, 0, 1, {"abandoned_object": 1})},
               units=(1, 1), response=_resp(1, 0, 1, 1, 2, 90, 90), open_incidents=4,
               health=_health(3, 2, 0, 60, 30, 110), reach=(0.44, 1.0, 1.0), coverage=0.08, tiers=(0, 2)),
    "G2": _doc("G2", "green", today=_today(alerts=1, types={"drone": 1}),
               windows={k: _w(alerts=1, by_type={"drone": 1}) for k in ("5m", "15m", "60m")},
               health=_health(1, 0, 1, None, 720, 180), coverage=0.08),
    "D": _doc("D", "green", units=(1, 1), health=_health(gps=20), reach=(0.16, 0.25, 0.25), coverage=0.04),
    "outer": _doc("outer", "yellow", today=_VENUE_TODAY_1, windows=_VENUE_W_1, units=(1, 1),
                  health=_VENUE_HEALTH_1, reach=(0.89, 1.0, 1.0), coverage=0.2),
    "inner": _doc("inner", "yellow", today=_VENUE_TODAY_1, windows=_VENUE_W_1, units=(1, 1),
                  health=_VENUE_HEALTH_1, reach=(1.0, 1.0, 1.0), coverage=1.0),
    "core": _doc("core", "orange", today=_VENUE_TODAY_1, windows=_VENUE_W_1, units=(1, 1),
                 health=_VENUE_HEALTH_1, reach=(1.0, 1.0, 1.0), coverage=1.0),
    "aid-1": _doc("aid-1", "green", today=_today(alerts=1, types={"crowd_density": 1}),
                  windows={"15m": _w(alerts=1, by_type={"crowd_density": 1}),
                           "60m": _w(alerts=1, by_type={"crowd_density": 1})},
                  health=_health(1, 0, 0, None, None, 300), reach=(0.0, 0.0, 1.0)),
    "course/0": _doc("course/0", "green"),
    "course/1": _doc("course/1", "yellow", today=_COURSE_1_TODAY,
                     windows={"15m": _w(1), "60m": _w(1)}, response=_resp(breaches=1), open_incidents=1,
                     health=_health(calls=360), tiers=(0, 1)),
    "course/2": _doc("course/2", "green"),
}

# ---- at T2 = 10:30:00
#
# G1. c8 10:26 zh-TW theft p3 -> 6 calls today: theft 2; p2 2 (c3 c4), p3 3 (c1 c2 c8), p4 1; zh 3
#   (c1 c4 c8). a5 vehicle_watchlist 10:25 (cam-o). Windows: 5m (10:26–10:30) c8; 15m (10:16–) c3 c4
#   c5 c8 + a1 a5; 60m (09:31–) all 6 + a1 a5. car-1's latest fix is now in G2: none present, and
#   not quiet here (its latest fix is not in G1). Response: c4's arrival (decided 10:19:30) still in
#   the last 60 min; breaches c1 c2 c3 (10:21) c5 (10:24) -> 4; open c1 c2 c3 c5 c8 -> 5 (c1 expires
#   11:02). Cameras: cam-s reported at 10:30 -> no longer silent; cam-o's last status still says
#   offline (its 10:25 alert is a report, not a status) -> silent; cam-g (10:18:10, 12 min) fine:
#   3 known, 1 silent. Ages: calls c8 -> 240 s, gps 10:19:30 -> 630 s (the largest fix ts ever
#   accepted in G1), alerts a5 -> 300 s. Reach: car-1 now at G2's centre, 4,110 m from G1 -> 0 / 0.
#   Level: breaches ≥ 3 -> orange.
# G2. car-1 (10:29:30, available) present at the centre: G2 within 720 m -> 1.0 / 1.0. foot-q's
#   10:08 fix: 22 min old -> still quiet. a3 (10:17) left the 5m window. Ages gps 30 s, alerts 780 s.
#   Green.
# D. car-d sent nothing since 10:19:40: 620 s old -> not present, quiet; it no longer reaches
#   anything; car-1 at G2's centre is 4,110 m from D -> reach 0 / 0. gps age 620 s. Green.
# outer, inner, core. c7 10:27 ru violent p1 at C7_AT (all three rings): arrived by car-v's
#   10:29:20 fix (14 m away) in 140 s: within 3m and 5m, not 1m; not open. Windows: 5m c7 (p1), the
#   drone (10:18) out; 15m and 60m c7 + the drone. car-v present. Ages calls 180 s, gps 40 s,
#   alerts 690 s; cam-dr not silent (11.5 min). Reach 1.0 / 1.0 as before. Level: a priority-1 call
#   in 15 min -> orange in the table (not red: 1 < 3 p1 calls), whatever the drone: the drone left
#   the 5-minute window, and orange is above any drone escalation anyway.
# aid-1. a4 (10:15) is out of 15m (10:16–), in 60m; cam-p's last report 10:20 (10 min) -> known, not
#   silent; alerts age 900 s; car-v still 1,407–1,607 m away -> 0.0 / 1.0. Green.
# course/1. c6's breach (10:19) is in the last 60 min; c6 open; out of 15m; calls age 960 s. Yellow.
# v3 figures at T2: reach within 1 min as at T1 for the venue (car-v) and aid-1; G2 now as G1 was
#   (car-1 at its centre) -> 0.44; G1 and D 0. Coverage as at T1 but G2: car-1 at G2_CENTRE too ->
#   2/13 = 0.15. Tiers: c3 (10:21), c4 (10:23) and c5 (10:24) are decided too: c4 at G1_CENTRE has
#   car-1's 10:19:30 fix there, 90 s after the call -> on scene 0/1/1, not met (1 by 1 min needed);
#   the others 0/0/0 -> G1 (0, 5); course/1 still (0, 1); c7 (10:32) and c8 (10:31) not yet.
_VENUE_2 = dict(
    today=_today(1, {"violent": 1}, {"1": 1}, {"ru": 1}, 1, {"drone": 1}),
    windows={"5m": _w(1, 1), "15m": _w(1, 1, 1, {"drone": 1}), "60m": _w(1, 1, 1, {"drone": 1})},
    units=(1, 1), response=_resp(1, 0, 1, 1, 0, 140, 140), health=_health(1, 0, 0, 180, 40, 690, at=T2),
    reach=(1.0, 1.0, 1.0), coverage=1.0)
_VW = {"abandoned_object": 1, "vehicle_watchlist": 1}

EXPECTED_2 = {
    "G1": _doc("G1", "orange",
               today=_today(6, {"dispute": 1, "fraud": 1, "medical": 1, "theft": 2, "traffic": 1},
                            {"2": 2, "3": 3, "4": 1}, {"en": 1, "und": 1, "vi": 1, "zh": 3}, 2, _VW),
               windows={"5m": _w(1), "15m": _w(4, 0, 2, _VW), "60m": _w(6, 0, 2, _VW)},
               response=_resp(1, 0, 1, 1, 4, 90, 90), open_incidents=5,
               health=_health(3, 1, 0, 240, 630, 300, at=T2), reach=(0.0, 0.0, 0.0), coverage=0.08, tiers=(0, 5)),
    "G2": _doc("G2", "green", today=_today(alerts=1, types={"drone": 1}),
               windows={"15m": _w(alerts=1, by_type={"drone": 1}), "60m": _w(alerts=1, by_type={"drone": 1})},
               units=(1, 1), health=_health(1, 0, 1, None, 30, 780, at=T2), reach=(0.44, 1.0, 1.0),
               coverage=0.15),
    "D": _doc("D", "green", health=_health(0, 0, 1, None, 620, None, at=T2), coverage=0.04),
    "outer": _doc("outer", "orange", **{**_VENUE_2, "reach": (0.89, 1.0, 1.0), "coverage": 0.2}),
    "inner": _doc("inner", "orange", **_VENUE_2),
    "core": _doc("core", "orange", **_VENUE_2),
    "aid-1": _doc("aid-1", "green", today=_today(alerts=1, types={"crowd_density": 1}),
                  windows={"60m": _w(alerts=1, by_type={"crowd_density": 1})},
                  health=_health(1, 0, 0, None, None, 900, at=T2), reach=(0.0, 0.0, 1.0)),
    "course/0": _doc("course/0", "green"),
    "course/1": _doc("course/1", "yellow", today=_COURSE_1_TODAY, windows={"60m": _w(1)},
                     response=_resp(breaches=1), open_incidents=1, health=_health(calls=960, at=T2), tiers=(0, 1)),
    "course/2": _doc("course/2", "green"),
}

EXPECTED = {1: EXPECTED_1, 2: EXPECTED_2}
# the latest fix of each unit after each phase (zw:units)
EXPECTED_UNIT_POSITIONS = {
    1: {"car-1": G1_CENTRE, "car-d": D_WEST, "car-v": VENUE, "foot-q": FOOT_Q_AT},
    2: {"car-1": G2_CENTRE, "car-d": D_WEST, "car-v": VENUE, "foot-q": FOOT_Q_AT},
}


def strip_volatile(doc: dict) -> dict:
    """A zone document without version and clock (those are checked separately)."""
    return {k: v for k, v in doc.items() if k not in ("version", "clock")}


def without_level(doc: dict) -> dict:
    """strip_volatile, and without `level`: the levels are compared on their own, so that a wrong
    level names itself instead of hiding every other figure's agreement."""
    return {k: v for k, v in strip_volatile(doc).items() if k != "level"}


def levels(docs: dict) -> dict[str, str]:
    return {z: d["level"] for z, d in docs.items()}
