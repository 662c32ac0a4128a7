"""The bundled scenario as a pure event generator: zones, units, calls, alerts (no Kafka, no clock).

`Scenario(seed, ...)` builds the geography and the units and cameras; `Scenario.events()` yields
(topic, record) pairs in non-decreasing `ts` order, a pure function of the seed, the parameters and
the start time. `scenario_events` adds optional malformed messages. What the scenario depicts and
why its numbers are what they are is told in `connectors/simulate.py` (the `zonewatch simulate`
help), which paces these events onto Kafka; the benchmark and the chaos runs use them directly.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

from contract import topics
from contract.zones import RINGS

CALLS, GPS, ALERTS = topics.CALLS, topics.GPS, topics.ALERTS

# --- geography ------------------------------------------------------------------------------
#: Zhengzhou Olympic Sports Center stadium (郑州奥林匹克体育中心), WGS84.
VENUE_LAT = 34.7426
VENUE_LON = 113.5308
#: radii (m) of the venue rings: each ring is a full disk, so core ⊂ inner ⊂ outer
RING_RADII = {"core": 250.0, "inner": 600.0, "outer": 1200.0}
RING_NAMES = {
    "core": "奥体中心核心区 / Venue core",
    "inner": "奥体中心内圈 / Venue inner ring",
    "outer": "奥体中心外圈 / Venue outer ring",
}
GRID_N = 6               # GRID_N x GRID_N patrol grid zones ...
GRID_CELL_M = 1000.0     # ... of this size, centred on the venue
GRID_HALF = GRID_N * GRID_CELL_M / 2
STREET_SPACING = 400.0   # street lattice; lines at -2900, -2500, ..., 2700 (never on a zone edge)
STREETS = [-GRID_HALF + 100.0 + STREET_SPACING * k for k in range(int((2 * GRID_HALF - 150) // STREET_SPACING) + 1)]

_M_PER_DEG_LAT = 110_950.0                                   # at ~34.7° N
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(VENUE_LAT))
KY = 1.0 / _M_PER_DEG_LAT
KX = 1.0 / _M_PER_DEG_LON


def to_lonlat(x: float, y: float, nd: int = 7) -> list[float]:
    """Local metres east/north of the venue -> [lon, lat] (GeoJSON order)."""
    return [round(VENUE_LON + x * KX, nd), round(VENUE_LAT + y * KY, nd)]


def _disk(r: float, n: int = 72) -> list[list[float]]:
    ring = [to_lonlat(r * math.cos(2 * math.pi * k / n), r * math.sin(2 * math.pi * k / n)) for k in range(n)]
    ring.append(ring[0])  # counter-clockwise, closed (RFC 7946)
    return ring


def demo_zones() -> dict:
    """The demo zones FeatureCollection: three nested venue rings, GRID_N x GRID_N 1 km grid zones."""
    feats = []
    for ring in RINGS:
        feats.append({"type": "Feature", "id": f"venue-{ring}",
                      "properties": {"name": RING_NAMES[ring], "kind": "venue", "ring": ring,
                                     "radius_m": RING_RADII[ring]},
                      "geometry": {"type": "Polygon", "coordinates": [_disk(RING_RADII[ring])]}})
    for r in range(GRID_N):            # r1 is the northernmost row, c1 the westernmost column
        y1 = GRID_HALF - r * GRID_CELL_M
        y0 = y1 - GRID_CELL_M
        for c in range(GRID_N):
            x0 = -GRID_HALF + c * GRID_CELL_M
            x1 = x0 + GRID_CELL_M
            coords = [to_lonlat(x0, y0), to_lonlat(x1, y0), to_lonlat(x1, y1), to_lonlat(x0, y1), to_lonlat(x0, y0)]
            code = f"R{r + 1}C{c + 1}"
            feats.append({"type": "Feature", "id": f"grid-r{r + 1}c{c + 1}",
                          "properties": {"name": f"巡逻网格 {code} / Patrol grid {code}", "kind": "grid"},
                          "geometry": {"type": "Polygon", "coordinates": [coords]}})
    return {"type": "FeatureCollection", "name": "zonewatch demo: Zhengzhou Olympic Sports Center",
            "features": feats}


def write_demo_zones(path: str | Path) -> Path:
    """Write `demo_zones()` deterministically (one feature per line)."""
    fc = demo_zones()
    head = json.dumps({k: v for k, v in fc.items() if k != "features"}, ensure_ascii=False)[:-1]
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in fc["features"]]
    text = head + ', "features": [\n' + ",\n".join(lines) + "\n]}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- scenario tables ------------------------------------------------------------------------
# (share, location group, category weights) for calls
CALL_CATEGORIES_STREET = {
    "theft": 18, "dispute": 15, "traffic": 15, "assistance": 11, "public_order": 8, "lost_and_found": 7,
    "medical": 7, "fraud": 6, "violent": 5, "fire": 3, "other": 5,
}
CALL_CATEGORIES_VENUE = {
    "public_order": 18, "lost_and_found": 16, "assistance": 14, "theft": 14, "dispute": 12, "medical": 9,
    "violent": 5, "traffic": 5, "fraud": 2, "fire": 1, "other": 4,
}
# priority 1..4 weights per category
CALL_PRIORITY = {
    "violent": (55, 40, 5, 0), "fire": (70, 30, 0, 0), "medical": (35, 50, 15, 0),
    "traffic": (10, 45, 40, 5), "theft": (3, 30, 50, 17), "dispute": (3, 30, 55, 12),
    "public_order": (8, 40, 42, 10), "fraud": (0, 10, 50, 40), "lost_and_found": (0, 2, 38, 60),
    "assistance": (2, 13, 50, 35), "other": (2, 13, 45, 40),
}
CALL_TEXT = {
    "theft": ("手机被偷了", "电动车被盗", "钱包被扒"), "dispute": ("两人发生口角", "邻里纠纷", "排队纠纷"),
    "traffic": ("两车追尾", "电动车与行人相撞", "路口拥堵"), "assistance": ("老人走失需要帮助", "求助开锁", "车辆抛锚"),
    "public_order": ("有人聚集起哄", "黄牛倒票", "醉酒滋事"), "lost_and_found": ("孩子走散了", "证件丢失", "捡到钱包"),
    "medical": ("有人晕倒", "观众中暑", "老人摔伤"), "fraud": ("遇到假票", "电信诈骗", "扫码被骗"),
    "violent": ("有人打架", "持刀威胁", "抢劫"), "fire": ("垃圾桶着火", "车辆冒烟", "商铺起火"),
    "other": ("可疑人员", "噪音扰民", "其他情况"),
}
CALL_TEXT_EN = {
    "theft": "phone stolen", "dispute": "people arguing", "traffic": "collision", "assistance": "need help",
    "public_order": "rowdy group", "lost_and_found": "lost my child", "medical": "someone fainted",
    "fraud": "fake tickets", "violent": "fight", "fire": "smoke and fire", "other": "suspicious person",
}
LANGS = (("zh", 93), ("en", 3), ("ko", 1), ("ja", 1), ("ru", 1), ("vi", 1))

# (weight, camera group, alert type); groups: core / inner / outer rings, grid streets, outside
ALERT_CHANNELS = (
    (10.0, "core", "crowd_density"), (1.0, "core", "abandoned_object"), (1.0, "core", "drone"),
    (0.5, "core", "fight"), (0.06, "core", "face_watchlist"), (0.05, "core", "fence_intrusion"),
    (20.0, "inner", "crowd_density"), (2.0, "inner", "abandoned_object"), (1.0, "inner", "drone"),
    (1.0, "inner", "fight"), (1.0, "inner", "face_watchlist"), (0.8, "inner", "fence_intrusion"),
    (15.0, "outer", "crowd_density"), (1.0, "outer", "fight"), (3.0, "outer", "vehicle_watchlist"),
    (1.5, "outer", "abandoned_object"), (0.8, "outer", "face_watchlist"),
    (16.0, "grid", "vehicle_watchlist"), (8.0, "grid", "crowd_density"), (2.0, "grid", "fight"),
    (3.0, "grid", "abandoned_object"), (1.0, "grid", "fire_smoke"), (1.5, "grid", "face_watchlist"),
    (3.0, "grid", "other"),
    (0.7, "outside", "vehicle_watchlist"), (0.3, "outside", "other"),
)
# alert type -> (confidence low, high, severity choices)
ALERT_SHAPE = {
    "face_watchlist": (0.70, 0.99, (1, 2, 2)), "vehicle_watchlist": (0.80, 0.99, (2, 3, 3)),
    "crowd_density": (0.50, 0.98, (3, 3, 4, 2)), "fence_intrusion": (0.60, 0.95, (2, 1)),
    "drone": (0.55, 0.95, (2, 3)), "abandoned_object": (0.50, 0.90, (3, 2)),
    "fight": (0.50, 0.90, (2,)), "fire_smoke": (0.50, 0.95, (1, 2)), "other": (0.30, 0.90, (4, 3)),
}
# km/h-free: metres per second (patrol cruising, emergency response)
PATROL_SPEED = {"car": (5.0, 8.0), "motorcycle": (6.0, 9.0), "foot": (1.1, 1.5), "swat": (6.0, 8.0),
                "other": (5.0, 8.0)}
RESPONSE_SPEED = {"car": (6.5, 10.0), "motorcycle": (7.5, 11.0), "foot": (1.5, 2.1), "swat": (8.0, 11.0),
                  "other": (6.0, 9.0)}
FOOT_MAX_DISPATCH_M = 450.0


def _cum(weights) -> tuple[list[float], float]:
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return out, acc


class _Unit:
    __slots__ = ("uid", "kind", "home", "legs", "li", "interval", "busy_from", "busy_until",
                 "dwelt", "outside", "off_duty", "patrol_v", "response_v", "roam")

    def __init__(self, uid, kind, home, interval, patrol_v, response_v, roam, outside=False, off_duty=False):
        self.uid, self.kind, self.home = uid, kind, home
        self.interval = interval
        self.patrol_v, self.response_v, self.roam = patrol_v, response_v, roam
        self.outside, self.off_duty = outside, off_duty
        self.busy_from = self.busy_until = 0
        self.dwelt = False
        self.li = 0
        # legs: (t0, t1, x0, y0, vx, vy, speed_mps, heading); position(t) = (x0 + vx (t-t0), y0 + vy (t-t0))
        self.legs: list[tuple] = []


class Scenario:
    """The simulation state; `events()` yields (topic, record) in non-decreasing `ts` order."""

    def __init__(self, seed: int = 7, *, units: int = 300, cameras: int = 200, calls_per_min: float = 6.0,
                 alerts_per_min: float = 60.0, start_ms: int | None = None, duration_s: float | None = None):
        if units < 1:
            raise ValueError("units must be >= 1")
        if calls_per_min < 0 or alerts_per_min < 0:
            raise ValueError("rates must be >= 0")
        self.rng = random.Random(seed)
        self.seed = seed
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self.end_ms = None if duration_s is None else self.start_ms + int(duration_s * 1000)
        self.calls_per_ms = calls_per_min / 60_000.0
        self.alerts_per_ms = alerts_per_min / 60_000.0
        self.tag = f"{seed}-{self.start_ms // 1000:x}"       # makes ids unique per (seed, start)
        self.n_calls = self.n_alerts = 0
        #: the first 100k dispatches: (call_id, unit_id, call ts, planned arrival ts)
        self.dispatches: list[tuple[str, str, int, int]] = []
        self._lattice = [(x, y) for x in STREETS for y in STREETS]
        self._build_units(units)
        self._build_cameras(cameras)
        self._cat_street = (list(CALL_CATEGORIES_STREET), *_cum(CALL_CATEGORIES_STREET.values()))
        self._cat_venue = (list(CALL_CATEGORIES_VENUE), *_cum(CALL_CATEGORIES_VENUE.values()))
        self._prio = {c: _cum(w) for c, w in CALL_PRIORITY.items()}
        self._langs = ([lang for lang, _ in LANGS], *_cum(w for _, w in LANGS))
        chans = [c for c in ALERT_CHANNELS if self._cams[c[1]]]
        self._chans = chans
        self._chan_cum, self._chan_total = _cum(c[0] for c in chans)
        if not chans:  # no cameras, no alerts
            self.alerts_per_ms = 0.0

    # --- setup ------------------------------------------------------------------------------
    def _build_units(self, n: int) -> None:
        rng = self.rng
        n_out = round(n * 0.01) if n >= 50 else 0
        n_off = round(n * 0.02)
        n_swat = max(0, round(n * 0.04))
        n_foot = round(n * 0.36)
        n_moto = round(n * 0.15)
        n_car = max(0, n - n_out - n_off - n_swat - n_foot - n_moto)
        self.units: list[_Unit] = []
        counters: Counter = Counter()

        def add(kind, home, roam, outside=False, off=False):
            counters[kind] += 1
            letter = {"car": "C", "motorcycle": "M", "foot": "F", "swat": "S"}[kind]
            uid = f"ZZ-{letter}{counters[kind]:03d}"
            pv = rng.uniform(*PATROL_SPEED[kind])
            rv = rng.uniform(*RESPONSE_SPEED[kind])
            u = _Unit(uid, kind, home, rng.randint(5000, 10000), pv, rv, roam, outside, off)
            self.units.append(u)

        # street posts: 3-4 vehicles each, lattice crossings outside the core
        vehicles = ["car"] * n_car + ["motorcycle"] * n_moto
        rng.shuffle(vehicles)
        candidates = [p for p in self._lattice if math.hypot(*p) > 350]
        n_posts = max(1, min(len(candidates), math.ceil(len(vehicles) / 3.5)))
        posts = rng.sample(candidates, n_posts)
        for i, kind in enumerate(vehicles):
            add(kind, posts[i % n_posts], 1050.0 if kind == "car" else 1400.0)
        # foot posts around the venue (gates, plazas), four officers each
        n_fposts = max(1, math.ceil(n_foot / 4))
        fposts = []
        for k in range(n_fposts):
            band = rng.random()
            if band < 0.35:
                r = rng.uniform(120, 230)
            elif band < 0.75:
                r = rng.uniform(280, 570)
            else:
                r = rng.uniform(640, 1150)
            a = rng.uniform(0, 2 * math.pi)
            fposts.append((r * math.cos(a), r * math.sin(a)))
        for i in range(n_foot):
            add("foot", fposts[i % n_fposts], 120.0)
        staging = [(-40.0, -430.0), (400.0, 260.0)]
        for i in range(n_swat):
            add("swat", staging[i % 2], 0.0)
        for i in range(n_off):
            add("car", posts[(i * 7) % n_posts], 0.0, off=True)
        for i in range(n_out):
            a = rng.uniform(0, 2 * math.pi)
            d = rng.uniform(2800, 3400)
            # put the post outside the grid square: push along the dominant axis
            x, y = d * math.cos(a), d * math.sin(a)
            if abs(x) < GRID_HALF + 700 and abs(y) < GRID_HALF + 700:
                if abs(x) > abs(y):
                    x = math.copysign(GRID_HALF + 900, x)
                else:
                    y = math.copysign(GRID_HALF + 900, y)
            add("car", (x, y), 450.0, outside=True)
        for u in self.units:
            u.legs.append((self.start_ms, self.start_ms, u.home[0], u.home[1], 0.0, 0.0, 0.0, 0.0))
            u.dwelt = rng.random() < 0.5  # half start with a patrol loop, half with a dwell

    def _build_cameras(self, n: int) -> None:
        rng = self.rng
        self._cams: dict[str, list[tuple[str, float, float]]] = {g: [] for g in
                                                                ("core", "inner", "outer", "grid", "outside")}
        n_out = round(n * 0.01) if n >= 50 else 0
        n_core, n_inner, n_outer = round(n * 0.08), round(n * 0.10), round(n * 0.12)
        n_grid = max(0, n - n_out - n_core - n_inner - n_outer)
        k = 0

        def add(group, x, y):
            nonlocal k
            k += 1
            lon, lat = to_lonlat(x, y, 6)
            self._cams[group].append((f"CAM-{k:04d}", lat, lon))

        for group, cnt, lo, hi in (("core", n_core, 30, 235), ("inner", n_inner, 265, 585),
                                   ("outer", n_outer, 615, 1185)):
            for _ in range(cnt):
                r, a = rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi)
                add(group, r * math.cos(a), r * math.sin(a))
        for _ in range(n_grid):  # on a street, anywhere in the grid
            s = rng.choice(STREETS)
            v = rng.uniform(-GRID_HALF + 40, GRID_HALF - 40)
            add("grid", *((s, v) if rng.random() < 0.5 else (v, s)))
        for _ in range(n_out):
            add("outside", rng.choice((-1, 1)) * rng.uniform(GRID_HALF + 400, GRID_HALF + 1500),
                rng.uniform(-GRID_HALF, GRID_HALF))

    # --- unit movement ------------------------------------------------------------------------
    @staticmethod
    def _move(u: _Unit, x1: float, y1: float, v_mps: float) -> None:
        """Append a straight leg from the end of u's plan to (x1, y1) at v_mps."""
        t0, t1, x0, y0, vx, vy, _, hdg = u.legs[-1]
        x0 += vx * (t1 - t0)
        y0 += vy * (t1 - t0)
        dx, dy = x1 - x0, y1 - y0
        dist = math.hypot(dx, dy)
        if dist < 0.5:
            return
        dur = max(1, int(dist / v_mps * 1000))
        u.legs.append((t1, t1 + dur, x0, y0, dx / dur, dy / dur, v_mps, math.degrees(math.atan2(dx, dy)) % 360.0))

    @staticmethod
    def _dwell(u: _Unit, dur_ms: int) -> None:
        t0, t1, x0, y0, vx, vy, _, hdg = u.legs[-1]
        u.legs.append((t1, t1 + max(1, dur_ms), x0 + vx * (t1 - t0), y0 + vy * (t1 - t0), 0.0, 0.0, 0.0, hdg))

    def _street_route(self, u: _Unit, x1: float, y1: float, v: float) -> None:
        """L-shaped route along the street axes."""
        t0, t1, x0, y0, vx, vy, _, _ = u.legs[-1]
        x0 += vx * (t1 - t0)
        y0 += vy * (t1 - t0)
        if self.rng.random() < 0.5:
            self._move(u, x1, y0, v)
        else:
            self._move(u, x0, y1, v)
        self._move(u, x1, y1, v)

    def _extend(self, u: _Unit) -> None:
        """Plan u's next activity (called when its plan runs out)."""
        rng = self.rng
        last = u.legs[-1]
        t_end = last[1]
        if t_end < u.busy_until:       # still on scene
            self._dwell(u, u.busy_until - t_end)
            return
        x = last[2] + last[4] * (last[1] - last[0])
        y = last[3] + last[5] * (last[1] - last[0])
        hx, hy = u.home
        if u.off_duty or u.kind == "swat":
            if abs(x - hx) + abs(y - hy) > 1:
                self._street_route(u, hx, hy, u.patrol_v)
            else:
                self._dwell(u, 1_800_000)
            return
        if abs(x - hx) + abs(y - hy) > 1:   # back from a call: return to post
            if u.kind == "foot":
                self._move(u, hx, hy, u.patrol_v)
            else:
                self._street_route(u, hx, hy, u.patrol_v)
            u.dwelt = False
            return
        if not u.dwelt:
            lo, hi = (180_000, 600_000) if u.kind == "foot" else (900_000, 2_400_000)
            self._dwell(u, rng.randint(lo, hi))
            u.dwelt = True
            return
        # a patrol round from the post and back
        u.dwelt = False
        if u.kind == "foot":
            for _ in range(rng.randint(1, 2)):
                a = rng.uniform(0, 2 * math.pi)
                r = rng.uniform(40, u.roam)
                self._move(u, hx + r * math.cos(a), hy + r * math.sin(a), u.patrol_v)
                self._dwell(u, rng.randint(20_000, 90_000))
            self._move(u, hx, hy, u.patrol_v)
            return
        lim = GRID_HALF - 60 if not u.outside else 1e9
        for _ in range(rng.randint(2, 3)):
            wx = hx + rng.uniform(-u.roam, u.roam)
            wy = hy + rng.uniform(-u.roam, u.roam)
            if not u.outside:   # snap to the street lattice, inside the grid
                wx = min(STREETS, key=lambda s: abs(s - wx))
                wy = min(STREETS, key=lambda s: abs(s - wy))
            wx, wy = max(-lim, min(lim, wx)), max(-lim, min(lim, wy))
            self._street_route(u, wx, wy, u.patrol_v)
            self._dwell(u, rng.randint(10_000, 120_000))
        self._street_route(u, hx, hy, u.patrol_v)

    def _leg_at(self, u: _Unit, t: int, advance: bool) -> tuple:
        legs = u.legs
        j = u.li
        while True:
            while j < len(legs) and legs[j][1] < t:
                j += 1
            if j < len(legs):
                break
            self._extend(u)
        if advance:
            if j > 64:
                del legs[:j]
                j = 0
            u.li = j
        return legs[j]

    def position(self, u: _Unit, t: int) -> tuple[float, float]:
        t0, _, x0, y0, vx, vy, _, _ = self._leg_at(u, t, False)
        return x0 + vx * (t - t0), y0 + vy * (t - t0)

    def _truncate(self, u: _Unit, t: int) -> None:
        """Cut u's plan at time t (a dispatch replaces whatever it was going to do)."""
        self._leg_at(u, t, False)
        legs = u.legs
        j = u.li
        while legs[j][1] < t:
            j += 1
        t0, t1, x0, y0, vx, vy, spd, hdg = legs[j]
        del legs[j + 1:]
        legs[j] = (t0, t, x0, y0, vx, vy, spd, hdg)

    # --- calls and dispatch -------------------------------------------------------------------
    def _call_location(self) -> tuple[float, float, bool]:
        rng = self.rng
        u = rng.random()
        if u < 0.01:      # outside every zone
            side = rng.choice((-1, 1))
            along = rng.uniform(-GRID_HALF - 800, GRID_HALF + 800)
            off = side * rng.uniform(GRID_HALF + 300, GRID_HALF + 1400)
            return ((off, along) if rng.random() < 0.5 else (along, off)) + (False,)
        if u < 0.31:      # around the venue
            r = 1250 * math.sqrt(rng.random())
            a = rng.uniform(0, 2 * math.pi)
            return r * math.cos(a), r * math.sin(a), True
        lim = GRID_HALF - 20
        return rng.uniform(-lim, lim), rng.uniform(-lim, lim), False

    def _make_call(self, t: int) -> dict:
        rng = self.rng
        x, y, venue = self._call_location()
        names, cum, total = self._cat_venue if venue else self._cat_street
        cat = names[bisect.bisect(cum, rng.random() * total)]
        pcum, ptotal = self._prio[cat]
        prio = bisect.bisect(pcum, rng.random() * ptotal) + 1
        langs, lcum, ltotal = self._langs
        lang = langs[bisect.bisect(lcum, rng.random() * ltotal)]
        self.n_calls += 1
        call_id = f"SIM-{self.tag}-{self.n_calls:06d}"
        lon, lat = to_lonlat(x, y, 6)
        text = rng.choice(CALL_TEXT[cat]) if lang == "zh" else CALL_TEXT_EN[cat]
        caller = f"1{rng.choice('35789')}{rng.randrange(10 ** 9):09d}"
        self._dispatch(call_id, t, x, y, cat, prio)
        return {"call_id": call_id, "ts": t, "lat": lat, "lon": lon, "category": cat, "priority": prio,
                "caller": caller, "lang": lang, "text": text}

    def _dispatch(self, call_id: str, tc: int, cx: float, cy: float, cat: str, prio: int) -> None:
        rng = self.rng
        swat_ok = cat == "violent" and prio == 1
        best, best_eta = None, math.inf
        for u in self.units:
            if u.off_duty or u.busy_until > tc or (u.kind == "swat" and not swat_ok):
                continue
            x, y = self.position(u, tc)
            if u.kind == "foot":
                d = math.hypot(cx - x, cy - y)
                if d > FOOT_MAX_DISPATCH_M:
                    continue
            else:
                d = abs(cx - x) + abs(cy - y)
            eta = d / u.response_v
            if eta < best_eta:
                best, best_eta = u, eta
        if best is None:
            return
        u = best
        # call taking + dispatch + getting going; sometimes much longer (unit finishing a task,
        # unclear address)
        delay = rng.triangular(55_000, 220_000, 100_000)
        if rng.random() < 0.12:
            delay += rng.uniform(60_000, 300_000)
        td = tc + int(delay)
        self._truncate(u, td)
        u.busy_from = td
        if u.kind == "foot":
            self._move(u, cx, cy, u.response_v)
        else:
            self._street_route(u, cx, cy, u.response_v)
        arrival = u.legs[-1][1]
        self._dwell(u, rng.randint(300_000, 900_000))
        u.busy_until = u.legs[-1][1]
        u.dwelt = False
        if len(self.dispatches) < 100_000:  # for tests and analysis; bounded for endless runs
            self.dispatches.append((call_id, u.uid, tc, arrival))

    # --- alerts -------------------------------------------------------------------------------
    def _make_alert(self, t: int) -> dict:
        rng = self.rng
        _, group, typ = self._chans[bisect.bisect(self._chan_cum, rng.random() * self._chan_total)]
        cam_id, lat, lon = rng.choice(self._cams[group])
        lo, hi, sevs = ALERT_SHAPE[typ]
        self.n_alerts += 1
        return {"alert_id": f"SIMA-{self.tag}-{self.n_alerts:08d}", "camera_id": cam_id, "ts": t,
                "lat": lat, "lon": lon, "type": typ, "confidence": round(rng.uniform(lo, hi), 3),
                "severity": rng.choice(sevs)}

    # --- the event loop -----------------------------------------------------------------------
    def events(self) -> Iterator[tuple[str, dict]]:
        rng = self.rng
        start, end = self.start_ms, self.end_ms
        heap: list[tuple[int, int, int]] = [(start + rng.randint(0, u.interval), 0, i)
                                            for i, u in enumerate(self.units)]
        if self.calls_per_ms > 0:
            heap.append((start + int(rng.expovariate(self.calls_per_ms)), 1, 0))
        if self.alerts_per_ms > 0:
            heap.append((start + int(rng.expovariate(self.alerts_per_ms)), 2, 0))
        heapq.heapify(heap)
        units = self.units
        gauss, randint = rng.gauss, rng.randint
        leg_at = self._leg_at
        vlat0, vlon0 = VENUE_LAT, VENUE_LON
        kx, ky = KX, KY
        heapreplace = heapq.heapreplace
        while heap:
            t, what, i = heap[0]
            if end is not None and t > end:
                return
            if what == 0:
                u = units[i]
                t0, _, x0, y0, vx, vy, spd, hdg = leg_at(u, t, True)
                dt = t - t0
                x = x0 + vx * dt + gauss(0.0, 3.0)
                y = y0 + vy * dt + gauss(0.0, 3.0)
                if u.off_duty:
                    status = "off_duty"
                elif u.busy_from <= t < u.busy_until:
                    status = "busy"
                else:
                    status = "available"
                heapreplace(heap, (t + u.interval + randint(-300, 300), 0, i))
                yield GPS, {"unit_id": u.uid, "ts": t, "lat": round(vlat0 + y * ky, 6),
                            "lon": round(vlon0 + x * kx, 6), "status": status, "kind": u.kind,
                            "speed": round(spd, 1), "heading": round(hdg, 0)}
            elif what == 1:
                heapreplace(heap, (t + 1 + int(rng.expovariate(self.calls_per_ms)), 1, 0))
                yield CALLS, self._make_call(t)
            else:
                heapreplace(heap, (t + 1 + int(rng.expovariate(self.alerts_per_ms)), 2, 0))
                yield ALERTS, self._make_alert(t)


def _malformed(rng: random.Random, topic: str, ev: dict) -> dict | bytes:
    """A broken copy of `ev` that the pipeline must dead-letter."""
    kind = rng.randrange(4)
    if kind == 0:
        return orjson.dumps(ev)[:-9]                     # truncated: invalid JSON
    bad = dict(ev)
    if kind == 1:
        bad.pop(rng.choice(("ts", "lat", topics.KEY_FIELD[topic])))
    elif kind == 2:
        bad["lat"] = round(rng.uniform(91.0, 180.0), 4)
    else:
        bad["ts"] = "yesterday at noon"
    return bad


def scenario_events(seed: int = 7, *, units: int = 300, cameras: int = 200, calls_per_min: float = 6.0,
                    alerts_per_min: float = 60.0, start_ms: int | None = None,
                    duration_s: float | None = None, bad_rate: float = 0.0
                    ) -> Iterator[tuple[str, dict | bytes]]:
    """The scenario as (topic, record) pairs in non-decreasing `ts` order (topic names unprefixed).

    Deterministic for (seed, start_ms, parameters). `duration_s=None` never ends. With `bad_rate`
    > 0, after an event and with that probability, a malformed copy follows (a dict with a missing /
    out-of-range / mistyped field, or `bytes` that are not valid JSON); the malformed messages use
    their own random stream, so the valid events are the same with or without them.
    """
    sc = Scenario(seed, units=units, cameras=cameras, calls_per_min=calls_per_min,
                  alerts_per_min=alerts_per_min, start_ms=start_ms, duration_s=duration_s)
    if not bad_rate > 0:
        yield from sc.events()
        return
    bad_rng = random.Random(f"bad-{seed}")
    for topic, ev in sc.events():
        yield topic, ev
        if bad_rng.random() < bad_rate:
            yield topic, _malformed(bad_rng, topic, ev)


