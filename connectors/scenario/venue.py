"""The default scenario (`--scenario demo`): a big event at the Zhengzhou Olympic Sports Center.

Three nested venue rings and a 6 km × 6 km patrol grid of 1 km squares; vehicles at street posts on
a 400 m lattice, foot officers at posts around the venue, SWAT staged inside the inner ring; calls
weighted toward the venue; cameras a third in the rings, the rest on the streets. The story and the
numbers are told in connectors/simulate.py (the `zonewatch simulate` help). The bundled
contract/data/demo_zones.geojson is `write_demo_zones`' output.
"""

from __future__ import annotations

import math
from pathlib import Path

from contract.zones import RINGS

from .engine import Frame, Simulation, Unit, table, write_zones

# --- geography ------------------------------------------------------------------------------
#: Zhengzhou Olympic Sports Center stadium (郑州奥林匹克体育中心), WGS84.
VENUE_LAT = 34.7426
VENUE_LON = 113.5308
FRAME = Frame(VENUE_LAT, VENUE_LON, 110_950.0)   # metres per degree of latitude at ~34.7° N
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


def to_lonlat(x: float, y: float, nd: int = 7) -> list[float]:
    """Local metres east/north of the venue -> [lon, lat] (GeoJSON order)."""
    return FRAME.to_lonlat(x, y, nd)


def demo_zones() -> dict:
    """The demo zones FeatureCollection: three nested venue rings, GRID_N x GRID_N 1 km grid zones."""
    feats = []
    for ring in RINGS:
        feats.append({"type": "Feature", "id": f"venue-{ring}",
                      "properties": {"name": RING_NAMES[ring], "kind": "venue", "ring": ring,
                                     "radius_m": RING_RADII[ring]},
                      "geometry": {"type": "Polygon", "coordinates": [FRAME.disk(RING_RADII[ring])]}})
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
    return write_zones(demo_zones(), path)


# --- scenario tables ------------------------------------------------------------------------
CALL_CATEGORIES_STREET = {
    "theft": 18, "dispute": 15, "traffic": 15, "assistance": 11, "public_order": 8, "lost_and_found": 7,
    "medical": 7, "fraud": 6, "violent": 5, "fire": 3, "other": 5,
}
CALL_CATEGORIES_VENUE = {
    "public_order": 18, "lost_and_found": 16, "assistance": 14, "theft": 14, "dispute": 12, "medical": 9,
    "violent": 5, "traffic": 5, "fraud": 2, "fire": 1, "other": 4,
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


class VenueScenario(Simulation):
    """The Zhengzhou venue: vehicles drive along the street lattice (L-shaped routes)."""

    NAME = "demo"
    DEFAULTS = {"units": 300, "cameras": 200, "calls_per_min": 6.0, "alerts_per_min": 60.0}
    FRAME = FRAME
    UNIT_PREFIX = "ZZ"
    CALL_PREFIX = "SIM"
    ALERT_CHANNELS = ALERT_CHANNELS
    CALL_TEXT, CALL_TEXT_EN, LANGS = CALL_TEXT, CALL_TEXT_EN, LANGS

    def _setup(self) -> None:
        self._lattice = [(x, y) for x in STREETS for y in STREETS]
        self._cat_street = table(CALL_CATEGORIES_STREET)
        self._cat_venue = table(CALL_CATEGORIES_VENUE)

    def _build_units(self, n: int) -> None:
        rng = self.rng
        n_out = round(n * 0.01) if n >= 50 else 0
        n_off = round(n * 0.02)
        n_swat = max(0, round(n * 0.04))
        n_foot = round(n * 0.36)
        n_moto = round(n * 0.15)
        n_car = max(0, n - n_out - n_off - n_swat - n_foot - n_moto)
        add = self._add_unit

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
        for _ in range(n_fposts):
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
        for _ in range(n_out):
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
        self._start_units()

    def _build_cameras(self, n: int) -> None:
        rng = self.rng
        self._cams = {g: [] for g in (*RINGS, "grid", "outside")}
        n_out = round(n * 0.01) if n >= 50 else 0
        n_core, n_inner, n_outer = round(n * 0.08), round(n * 0.10), round(n * 0.12)
        n_grid = max(0, n - n_out - n_core - n_inner - n_outer)
        self._ring_cameras((("core", n_core, 30, 235), ("inner", n_inner, 265, 585),
                            ("outer", n_outer, 615, 1185)), [(0.0, 0.0)])
        for _ in range(n_grid):  # on a street, anywhere in the grid
            s = rng.choice(STREETS)
            v = rng.uniform(-GRID_HALF + 40, GRID_HALF - 40)
            self._add_camera("grid", *((s, v) if rng.random() < 0.5 else (v, s)))
        for _ in range(n_out):
            self._add_camera("outside", rng.choice((-1, 1)) * rng.uniform(GRID_HALF + 400, GRID_HALF + 1500),
                             rng.uniform(-GRID_HALF, GRID_HALF))

    # --- unit movement ------------------------------------------------------------------------
    def _drive_distance(self, x: float, y: float, cx: float, cy: float) -> float:
        return abs(cx - x) + abs(cy - y)   # along the street lattice

    def _drive(self, u: Unit, x1: float, y1: float, v: float) -> None:
        """L-shaped route along the street axes."""
        t0, t1, x0, y0, vx, vy, _, _ = u.legs[-1]
        x0 += vx * (t1 - t0)
        y0 += vy * (t1 - t0)
        if self.rng.random() < 0.5:
            self._move(u, x1, y0, v)
        else:
            self._move(u, x0, y1, v)
        self._move(u, x1, y1, v)

    def _patrol(self, u: Unit) -> None:
        rng = self.rng
        if u.kind == "foot":
            self._foot_round(u, rng.randint(1, 2))
            return
        hx, hy = u.home   # a loop along the streets
        lim = GRID_HALF - 60 if not u.outside else 1e9
        for _ in range(rng.randint(2, 3)):
            wx = hx + rng.uniform(-u.roam, u.roam)
            wy = hy + rng.uniform(-u.roam, u.roam)
            if not u.outside:   # snap to the street lattice, inside the grid
                wx = min(STREETS, key=lambda s: abs(s - wx))
                wy = min(STREETS, key=lambda s: abs(s - wy))
            wx, wy = max(-lim, min(lim, wx)), max(-lim, min(lim, wy))
            self._drive(u, wx, wy, u.patrol_v)
            self._dwell(u, rng.randint(10_000, 120_000))
        self._drive(u, hx, hy, u.patrol_v)

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

    def _call_place(self, t: int) -> tuple[float, float, tuple]:
        x, y, venue = self._call_location()
        return x, y, self._cat_venue if venue else self._cat_street
