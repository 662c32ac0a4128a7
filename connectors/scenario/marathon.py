"""`--scenario marathon`: a city marathon in Lanzhou along the Yellow River.

The course (42.195 km, the zone `course` of contract/data/marathon_zones.geojson, cut by the worker
into 1 km segments `course/0` … `course/42`) starts at Dongfanghong Square (东方红广场), runs north
to the river and out east along the south bank (南滨河路) to a turnaround past Yantan, back west
past Zhongshan Bridge (中山桥) to Xiaoxihu, crosses to the north bank (北滨河路), runs west past the
Yintan bridge to a second turnaround in Anning, comes back and crosses to the finish area on the
south bank at Yintan. The waypoints are placed by hand on the river banks: a plausible course, not
a surveyed one; the east turnaround is placed so that the course is exactly 42.195 km long.

Along it: 27 emergency points (急救点, one every 1.5 km, 100 m circles), 12 barriers at cross
streets (50 m) and four gates at the start and finish areas (60 m), all Point zones; venue rings
(core / inner / outer) around the start and the finish.

The race: the gun fires 30 min after the simulation's start; runners finish between about 2 h 06
and the 6 h cutoff. Calls come from runners where they are on the course (mostly medical, more in
the second half), from the start area before and just after the gun, from the finish area once
runners arrive, from spectators along the course (road-closure traffic, crowding) and a few from
outside every zone. Foot officers hold posts every ~250 m along the course and walk short stretches
of it; motorcycles ride sections of the course; cars wait at the cross streets; more foot officers
and SWAT at the start and finish. Cameras every ~300 m along the course and in the venue rings.
Camera status reports, silent and offline cameras and quiet units are on by default (health.py).
"""

from __future__ import annotations

import bisect
import math
from itertools import pairwise
from pathlib import Path

from contract.settings import DATA_DIR
from contract.zones import RINGS

from .engine import Frame, Simulation, Unit, table, write_zones

MARATHON_ZONES = DATA_DIR / "marathon_zones.geojson"
MARATHON_M = 42_195.0
#: the local frame: origin at Zhongshan Bridge (中山桥), the WGS84 ellipsoid's scales there
FRAME = Frame.wgs84(36.0665, 103.8236)

START = (103.8345, 36.0576)       # Dongfanghong Square (东方红广场), [lon, lat]
FINISH = (103.7345, 36.0815)      # finish area at Yintan, south bank
# out east along the south bank; the turnaround lies on the line from EAST[-1] towards EAST_TURN
EAST = [START, (103.8345, 36.0640), (103.850, 36.0642), (103.865, 36.0648), (103.880, 36.0645), (103.900, 36.0640)]
EAST_TURN = (103.935, 36.0660)
# back west along the south bank past Zhongshan Bridge to Xiaoxihu, across, west on the north bank
WEST = [(103.8236, 36.0650), (103.810, 36.0670), (103.795, 36.0705), (103.795, 36.0745), (103.780, 36.0790),
        (103.760, 36.0840), (103.740, 36.0885), (103.725, 36.0920)]
# out and back along the north bank into Anning, then across to the finish
ANNING = [(103.710, 36.0955), (103.690, 36.0990), (103.670, 36.1020), (103.655, 36.1040)]
HOME = [(103.725, 36.0920), (103.725, 36.0880), FINISH]

RING_RADII = {"core": 150.0, "inner": 400.0, "outer": 800.0}
AREAS = {"start": ("起点", "Start"), "finish": ("终点", "Finish")}
RING_WORDS = {"core": ("核心区", "core"), "inner": ("内圈", "inner ring"), "outer": ("外圈", "outer ring")}
SEGMENT_M, BUFFER_M = 1000, 50
EMERGENCY_POINTS, EMERGENCY_EVERY_M, EMERGENCY_RADIUS_M, EMERGENCY_OFFSET_M = 27, 1500.0, 100.0, 20.0
BARRIER_KM = [2.0 + 3.5 * i for i in range(12)]
BARRIER_RADIUS_M, GATE_RADIUS_M = 50.0, 60.0
#: gates: (area, metres east, metres north of the area's centre)
GATES = (("start", -250.0, 0.0), ("start", 250.0, 0.0), ("finish", 0.0, 250.0), ("finish", 0.0, -250.0))

GUN_AFTER_MS = 30 * 60_000
CUTOFF_MS = 6 * 3_600_000
FINISH_H = (2.1, 6.3, 4.4)   # runners' finish times: triangular (fastest, slowest, most common), hours


def _course_lonlat() -> list[tuple[float, float]]:
    """The course waypoints with the east turnaround placed so that the course is MARATHON_M long."""
    def course(f: float) -> list[tuple[float, float]]:
        (x0, y0), (x1, y1) = EAST[-1], EAST_TURN
        turn = (x0 + f * (x1 - x0), y0 + f * (y1 - y0))
        return EAST + [turn] + EAST[1:][::-1] + WEST + ANNING + ANNING[::-1][1:] + HOME

    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the length grows with f
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _length(course(mid)) < MARATHON_M else (lo, mid)
    return course((lo + hi) / 2)


def _length(lonlats) -> float:
    xy = [FRAME.to_xy(*p) for p in lonlats]
    return sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(xy))


class Course:
    """The course in local metres: `at(s)` is the point s metres from the start and the unit
    vector of the running direction there."""

    def __init__(self, lonlats):
        self.lonlats = lonlats
        self.xy = [FRAME.to_xy(*p) for p in lonlats]
        self.dist = [0.0]
        for a, b in pairwise(self.xy):
            self.dist.append(self.dist[-1] + math.hypot(b[0] - a[0], b[1] - a[1]))
        self.length = self.dist[-1]

    def at(self, s: float) -> tuple[float, float, float, float]:
        """(x, y, dx, dy): position s metres along and the running direction (unit vector)."""
        s = min(max(s, 0.0), self.length)
        k = min(max(bisect.bisect_right(self.dist, s) - 1, 0), len(self.xy) - 2)
        (x0, y0), (x1, y1) = self.xy[k], self.xy[k + 1]
        seg = self.dist[k + 1] - self.dist[k] or 1.0
        f = (s - self.dist[k]) / seg
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0), (x1 - x0) / seg, (y1 - y0) / seg

    def beside(self, s: float, offset: float) -> tuple[float, float]:
        """The point s metres along, `offset` metres to the right of the running direction."""
        x, y, dx, dy = self.at(s)
        return x + dy * offset, y - dx * offset

    def between(self, s0: float, s1: float) -> list[tuple[float, float]]:
        """The course's vertices strictly between s0 and s1 (in the order s0 -> s1), then s1."""
        lo, hi = min(s0, s1), max(s0, s1)
        inner = [p for d, p in zip(self.dist, self.xy, strict=True) if lo < d < hi]
        if s1 < s0:
            inner.reverse()
        x, y, _, _ = self.at(s1)
        return inner + [(x, y)]


COURSE = Course(_course_lonlat())
CENTRES = {"start": FRAME.to_xy(*START), "finish": FRAME.to_xy(*FINISH)}


# --- the zones file -------------------------------------------------------------------------------
def _point(fid: str, name: str, role: str, radius: float, xy: tuple[float, float], **extra) -> dict:
    return {"type": "Feature", "id": fid,
            "properties": {"name": name, "kind": "other", "point": role, "radius_m": radius, **extra},
            "geometry": {"type": "Point", "coordinates": FRAME.to_lonlat(*xy, 6)}}


def marathon_zones() -> dict:
    """The marathon zones FeatureCollection (CONTRACT §2): the course (a route), venue rings at the
    start and the finish, emergency points, barriers and gates (Point zones)."""
    feats = [{"type": "Feature", "id": "course",
              "properties": {"name": "兰州马拉松赛道 / Lanzhou Marathon course", "kind": "route",
                             "segment_m": SEGMENT_M, "buffer_m": BUFFER_M},
              "geometry": {"type": "LineString", "coordinates": [[round(lon, 6), round(lat, 6)]
                                                                  for lon, lat in COURSE.lonlats]}}]
    for area, (zh, en) in AREAS.items():
        cx, cy = CENTRES[area]
        for ring in RINGS:
            rzh, ren = RING_WORDS[ring]
            feats.append({"type": "Feature", "id": f"{area}-{ring}",
                          "properties": {"name": f"{zh}{rzh} / {en} {ren}", "kind": "venue", "ring": ring,
                                         "radius_m": RING_RADII[ring]},
                          "geometry": {"type": "Polygon", "coordinates": [FRAME.disk(RING_RADII[ring], cx, cy)]}})
    for k in range(1, EMERGENCY_POINTS + 1):
        km = k * EMERGENCY_EVERY_M / 1000
        feats.append(_point(f"aid-{k:02d}", f"急救点 {k:02d} / Emergency point {k} (km {km:g})", "emergency",
                            EMERGENCY_RADIUS_M, COURSE.beside(km * 1000, EMERGENCY_OFFSET_M), km=km))
    for k, km in enumerate(BARRIER_KM, 1):
        feats.append(_point(f"barrier-{k:02d}", f"隔离护栏 {k:02d} / Barrier {k} (km {km:g})", "barrier",
                            BARRIER_RADIUS_M, COURSE.beside(km * 1000, 0.0), km=km))
    for k, (area, dx, dy) in enumerate(GATES, 1):
        cx, cy = CENTRES[area]
        zh, en = AREAS[area]
        feats.append(_point(f"gate-{k}", f"{zh}安检门 {k} / {en} gate {k}", "gate", GATE_RADIUS_M, (cx + dx, cy + dy)))
    return {"type": "FeatureCollection", "name": "zonewatch marathon: Lanzhou, along the Yellow River",
            "features": feats}


def write_marathon_zones(path: str | Path) -> Path:
    """Write `marathon_zones()` deterministically (one feature per line)."""
    return write_zones(marathon_zones(), path)


# --- scenario tables ----------------------------------------------------------------------------
CALL_CATEGORIES_RUNNER = {"medical": 78, "assistance": 12, "lost_and_found": 3, "dispute": 3, "other": 4}
CALL_CATEGORIES_AREA = {   # start and finish areas: runners, families, spectators
    "medical": 25, "lost_and_found": 20, "public_order": 18, "assistance": 15, "theft": 10, "dispute": 6,
    "other": 6,
}
CALL_CATEGORIES_ROADSIDE = {  # spectators and the closed roads along the course
    "traffic": 30, "public_order": 25, "dispute": 13, "assistance": 10, "theft": 8, "medical": 6, "other": 8,
}
CALL_CATEGORIES_OUTSIDE = {"traffic": 40, "theft": 20, "dispute": 20, "other": 20}
CALL_TEXT = {
    "medical": ("选手晕倒在赛道上", "选手抽筋倒地", "疑似心脏骤停", "选手中暑", "观众晕倒"),
    "assistance": ("选手退赛需要帮助", "需要担架", "老人走失需要帮助"),
    "lost_and_found": ("孩子走散了", "存衣包丢失", "捡到号码布"),
    "public_order": ("有人翻越护栏", "观众拥挤推搡", "黄牛倒卖号码布"),
    "traffic": ("车辆闯入封闭路段", "电动车冲卡", "路口拥堵"),
    "theft": ("手机被偷了", "存衣包被盗", "钱包被扒"),
    "dispute": ("观众与志愿者争执", "排队纠纷", "两人发生口角"),
    "fraud": ("遇到假号码布", "扫码被骗"), "violent": ("有人打架",), "fire": ("垃圾桶着火",),
    "other": ("可疑人员", "无人机在起点上空", "其他情况"),
}
CALL_TEXT_EN = {
    "medical": "runner collapsed", "assistance": "need help", "lost_and_found": "lost my child",
    "public_order": "crowd pushing", "traffic": "car on the closed road", "theft": "phone stolen",
    "dispute": "people arguing", "fraud": "fake bib", "violent": "fight", "fire": "smoke and fire",
    "other": "suspicious person",
}
LANGS = (("zh", 86), ("en", 5), ("ja", 1.5), ("ko", 1.5), ("ru", 1), ("fr", 1), ("de", 1), ("es", 1),
         ("th", 1), ("vi", 1))

# (weight, camera group, alert type); groups: core / inner / outer (both venues), course, outside
ALERT_CHANNELS = (
    (10.0, "core", "crowd_density"), (1.5, "core", "drone"), (1.0, "core", "abandoned_object"),
    (0.5, "core", "fence_intrusion"), (0.3, "core", "fight"), (0.2, "core", "face_watchlist"),
    (15.0, "inner", "crowd_density"), (1.0, "inner", "drone"), (1.5, "inner", "abandoned_object"),
    (0.8, "inner", "face_watchlist"), (0.8, "inner", "fight"), (0.5, "inner", "fence_intrusion"),
    (10.0, "outer", "crowd_density"), (2.0, "outer", "vehicle_watchlist"), (1.0, "outer", "fight"),
    (1.0, "outer", "abandoned_object"), (0.5, "outer", "face_watchlist"),
    (12.0, "course", "crowd_density"), (6.0, "course", "fence_intrusion"), (3.0, "course", "vehicle_watchlist"),
    (2.0, "course", "abandoned_object"), (1.0, "course", "fight"), (0.5, "course", "drone"),
    (0.3, "course", "fire_smoke"), (2.0, "course", "other"),
    (0.7, "outside", "vehicle_watchlist"), (0.3, "outside", "other"),
)


class MarathonScenario(Simulation):
    """The Lanzhou marathon: units along the course and at the start and finish; the race clock
    starts GUN_AFTER_MS after the simulation's start."""

    NAME = "marathon"
    DEFAULTS = {"units": 260, "cameras": 180, "calls_per_min": 3.0, "alerts_per_min": 40.0}
    FRAME = FRAME
    UNIT_PREFIX = "LZ"
    CALL_PREFIX = "LZM"
    CAMERA_PREFIX = "LZ-CAM-"
    DWELL_MS = {"foot": (180_000, 600_000), "vehicle": (600_000, 1_800_000)}
    ALERT_CHANNELS = ALERT_CHANNELS
    CALL_TEXT, CALL_TEXT_EN, LANGS = CALL_TEXT, CALL_TEXT_EN, LANGS

    def _setup(self) -> None:
        self.course = COURSE
        self.gun_ms = self.start_ms + GUN_AFTER_MS
        self._course_s: dict[str, float] = {}   # unit id -> its post's distance along the course
        self._cat_runner = table(CALL_CATEGORIES_RUNNER)
        self._cat_area = table(CALL_CATEGORIES_AREA)
        self._cat_roadside = table(CALL_CATEGORIES_ROADSIDE)
        self._cat_outside = table(CALL_CATEGORIES_OUTSIDE)

    # --- units and cameras ------------------------------------------------------------------------
    def _build_units(self, n: int) -> None:
        rng, course = self.rng, self.course
        n_swat = round(n * 0.03)
        n_moto = round(n * 0.08)
        n_car = round(n * 0.07)
        n_area = round(n * 0.15)
        n_off = round(n * 0.02)
        n_foot = max(0, n - n_swat - n_moto - n_car - n_area - n_off)
        for i in range(n_foot):   # posts along the course, both sides of the road
            s = course.length * (i + 0.5) / n_foot
            u = self._add_unit("foot", course.beside(s, 8.0 if i % 2 else -8.0), 150.0)
            self._course_s[u.uid] = s
        for i in range(n_area):   # the start and finish areas, within the inner ring
            cx, cy = CENTRES["start" if i % 2 == 0 else "finish"]
            r, a = rng.uniform(30, 380), rng.uniform(0, 2 * math.pi)
            self._add_unit("foot", (cx + r * math.cos(a), cy + r * math.sin(a)), 120.0)
        for i in range(n_moto):   # motorcycles ride sections of the course
            s = course.length * (i + 0.5) / max(1, n_moto)
            u = self._add_unit("motorcycle", course.beside(s, 0.0), 2000.0)
            self._course_s[u.uid] = s
        for i in range(n_car):    # cars wait in the cross streets at the barriers
            s = BARRIER_KM[i % len(BARRIER_KM)] * 1000
            self._add_unit("car", course.beside(s, 80.0 if i % 2 else -80.0), 400.0)
        for i in range(n_swat):
            cx, cy = CENTRES["start" if i % 2 == 0 else "finish"]
            self._add_unit("swat", (cx + 60.0, cy - 60.0), 0.0)
        for _ in range(n_off):
            cx, cy = CENTRES["finish"]
            self._add_unit("car", (cx - 300.0, cy + 150.0), 0.0, off=True)
        self._start_units()

    def _build_cameras(self, n: int) -> None:
        rng, course = self.rng, self.course
        self._cams = {g: [] for g in (*RINGS, "course", "outside")}
        n_out = round(n * 0.01) if n >= 50 else 0
        n_core, n_inner, n_outer = round(n * 0.06), round(n * 0.08), round(n * 0.08)
        n_course = max(0, n - n_out - n_core - n_inner - n_outer)
        self._ring_cameras((("core", n_core, 20, 140), ("inner", n_inner, 160, 390), ("outer", n_outer, 410, 790)),
                           [CENTRES["start"], CENTRES["finish"]])
        for i in range(n_course):
            self._add_camera("course", *course.beside(course.length * (i + 0.5) / n_course, 12.0 if i % 2 else -12.0))
        for _ in range(n_out):
            x, y = course.beside(rng.uniform(0, course.length), rng.choice((-1, 1)) * rng.uniform(1500, 2500))
            self._add_camera("outside", x, y)

    # --- patrols ------------------------------------------------------------------------------------
    def _drive_distance(self, x: float, y: float, cx: float, cy: float) -> float:
        return 1.3 * math.hypot(cx - x, cy - y)   # closed roads, emergency lanes: near the straight line

    def _patrol(self, u: Unit) -> None:
        rng = self.rng
        s = self._course_s.get(u.uid)
        if s is None:   # a walk or a short drive from the post
            self._foot_round(u, 1)
            return
        # along the course and back: foot officers a short stretch, motorcycles a section
        s1 = s + rng.choice((-1, 1)) * rng.uniform(40.0 if u.kind == "foot" else 500.0, u.roam)
        for px, py in self.course.between(s, s1):
            self._move(u, px, py, u.patrol_v)
        self._dwell(u, rng.randint(20_000, 90_000))
        for px, py in self.course.between(s1, s):
            self._move(u, px, py, u.patrol_v)

    # --- calls --------------------------------------------------------------------------------------
    def _call_place(self, t: int) -> tuple[float, float, tuple]:
        rng = self.rng
        tau = t - self.gun_ms
        racing = 0 <= tau <= CUTOFF_MS
        head_in = tau >= FINISH_H[0] * 3_600_000
        weights = (
            6.0 if racing else 0.0,                                          # a runner, where they are
            4.0 if tau < 0 else 4.0 * math.exp(-tau / 2_400_000),            # the start area
            (3.0 if tau <= CUTOFF_MS + 1_800_000 else 1.0) if head_in else 0.0,  # the finish area
            1.0 if racing else 0.5,                                          # roadside
            0.1,                                                             # outside every zone
        )
        pick = rng.random() * sum(weights)
        if pick < weights[0]:
            return (*self._runner(tau), self._cat_runner)
        pick -= weights[0]
        if pick < weights[1] + weights[2]:
            cx, cy = CENTRES["start" if pick < weights[1] else "finish"]
            r, a = RING_RADII["outer"] * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            return cx + r * math.cos(a), cy + r * math.sin(a), self._cat_area
        pick -= weights[1] + weights[2]
        s = rng.uniform(0, self.course.length)
        if pick < weights[3]:
            return (*self.course.beside(s, rng.uniform(-35, 35)), self._cat_roadside)
        return (*self.course.beside(s, rng.choice((-1, 1)) * rng.uniform(1500, 3000)), self._cat_outside)

    def _runner(self, tau: int) -> tuple[float, float]:
        """Where a runner in trouble is at race time tau: later kilometres are likelier (fatigue);
        one who already finished is in the finish area."""
        rng, course = self.rng, self.course
        for _ in range(8):
            finish_ms = rng.triangular(FINISH_H[0], FINISH_H[1], FINISH_H[2]) * 3_600_000
            if tau >= finish_ms:
                cx, cy = CENTRES["finish"]
                r, a = RING_RADII["inner"] * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
                return cx + r * math.cos(a), cy + r * math.sin(a)
            s = course.length * tau / finish_ms
            if rng.random() < 0.35 + 0.65 * s / course.length:
                break
        return course.beside(s, rng.uniform(-6, 6))
