"""Zone sets and a city-like event stream for the benchmarks (`make bench`, `make failover`).

Zone sets:
- `demo`: the bundled demo zones (39: venue rings and a patrol grid, contract/data/).
- `city`: a real city: Zhengzhou's 12 district polygons (../shared/datasets/410100_full.json, looked
  for next to the checkout and the folders above it; ids from `adcode`) plus a 20 x 20 patrol grid
  over them: 412 zones. Without ../shared (a fresh clone), 12 synthetic districts of the same extent
  stand in, and the bench says so.

Events: patrol units that walk or drive as patrols do (a fix every few seconds, tens of metres
apart), cameras at fixed places, calls; in event time at a given rate. `stress=True` makes units
jump anywhere between fixes (every fix in a new cell).
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson

from contract import topics
from contract.settings import DEMO_ZONES

REPO = Path(__file__).resolve().parents[1]
ZHENGZHOU_FILE = Path("shared") / "datasets" / "410100_full.json"


def zhengzhou_file() -> Path | None:
    """../shared/datasets/410100_full.json next to the checkout, or next to a folder above it (a git
    worktree under /work/wt/<name> finds /work/shared); None when there is none."""
    for d in REPO.parents:
        if (d / ZHENGZHOU_FILE).is_file():
            return d / ZHENGZHOU_FILE
    return None
CITY_BBOX = (113.0, 34.45, 114.0, 34.95)   # (min lon, min lat, max lon, max lat): Zhengzhou's core
GRID_N = 20
UNIT_KINDS = (("foot", 1.4, 0.35), ("car", 8.0, 0.5), ("motorcycle", 9.0, 0.1), ("swat", 8.0, 0.05))
CATEGORIES = ("theft", "dispute", "traffic", "public_order", "assistance", "fraud", "medical", "violent")
ALERT_TYPES = ("crowd_density", "vehicle_watchlist", "abandoned_object", "face_watchlist", "fight", "drone")
M_PER_DEG = 111_320.0


def zone_set(name: str, out_dir: Path) -> tuple[Path, str, tuple]:
    """(zones file, description, bbox) of a zone set, written under out_dir when generated."""
    if name == "demo":
        return DEMO_ZONES, "demo zones (39: venue rings + patrol grid)", _bbox(json.loads(DEMO_ZONES.read_text()))
    if name != "city":
        raise ValueError(f"unknown zone set {name!r} (demo, city)")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "city_zones.geojson"
    zz = zhengzhou_file()
    if zz is not None:
        src = json.loads(zz.read_text(encoding="utf-8"))
        districts = [{"type": "Feature", "id": str(f["properties"]["adcode"]),
                      "properties": {"name": f["properties"]["name"], "kind": "district"},
                      "geometry": f["geometry"]} for f in src["features"]]
        what = "Zhengzhou's 12 districts (DataV) + a 20x20 grid: 412 zones"
    else:
        districts = _synthetic_districts()
        what = "12 synthetic districts (../shared not found) + a 20x20 grid: 412 zones"
    bbox = _bbox({"features": districts})
    doc = {"type": "FeatureCollection", "features": districts + grid(CITY_BBOX)}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path, what, bbox


def _bbox(doc) -> tuple[float, float, float, float]:
    xs, ys = [], []

    def walk(c):
        if c and isinstance(c[0], (int, float)):
            xs.append(c[0])
            ys.append(c[1])
        else:
            for x in c:
                walk(x)

    for f in doc["features"]:
        walk(f["geometry"]["coordinates"])
    return min(xs), min(ys), max(xs), max(ys)


def grid(bbox, n: int = GRID_N, prefix: str = "g") -> list[dict]:
    """An n x n grid of rectangular zones over bbox, ids "{prefix}{i:02d}-{j:02d}"."""
    x0, y0, x1, y1 = bbox
    dx, dy = (x1 - x0) / n, (y1 - y0) / n
    out = []
    for i in range(n):
        for j in range(n):
            a, b = x0 + i * dx, y0 + j * dy
            out.append({"type": "Feature", "id": f"{prefix}{i:02d}-{j:02d}",
                        "properties": {"name": f"Grid {i}-{j}", "kind": "grid"},
                        "geometry": {"type": "Polygon", "coordinates": [[[a, b], [a + dx, b], [a + dx, b + dy],
                                                                         [a, b + dy], [a, b]]]}})
    return out


def _synthetic_districts() -> list[dict]:
    """12 irregular polygons tiling CITY_BBOX (jittered 4 x 3 lattice)."""
    rng = random.Random(410100)
    x0, y0, x1, y1 = CITY_BBOX
    nx, ny = 4, 3
    pts = [[(x0 + (x1 - x0) * i / nx + (rng.uniform(-0.03, 0.03) if 0 < i < nx else 0),
             y0 + (y1 - y0) * j / ny + (rng.uniform(-0.03, 0.03) if 0 < j < ny else 0))
            for j in range(ny + 1)] for i in range(nx + 1)]
    out = []
    for i in range(nx):
        for j in range(ny):
            ring = [pts[i][j], pts[i + 1][j], pts[i + 1][j + 1], pts[i][j + 1], pts[i][j]]
            out.append({"type": "Feature", "id": f"4101{i}{j}", "properties": {"name": f"District {i}{j}",
                                                                             "kind": "district"},
                        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}})
    return out


class CityStream:
    """Walking patrol units, fixed cameras, calls: an endless stream in event time."""

    def __init__(self, bbox, *, units: int = 5000, cameras: int = 2000, rate: float = 740.0,
                 mix=(0.85, 0.145, 0.005), seed: int = 7, tag: str = "b", stress: bool = False):
        self.rng = random.Random(seed)
        self.x0, self.y0, self.x1, self.y1 = bbox
        self.rate = rate
        self.mix = mix
        self.tag = tag
        self.stress = stress
        r = self.rng
        kinds = [k for k, _s, w in UNIT_KINDS for _ in range(int(w * 100))]
        speeds = {k: s for k, s, _w in UNIT_KINDS}
        self.units = []
        for i in range(units):
            kind = r.choice(kinds)
            self.units.append([f"unit-{i:05d}", kind, speeds[kind], r.uniform(self.y0, self.y1),
                               r.uniform(self.x0, self.x1), r.uniform(0, 2 * math.pi), 0])
        self.cameras = [(f"cam-{i:05d}", r.uniform(self.y0, self.y1), r.uniform(self.x0, self.x1))
                        for i in range(cameras)]
        self.n = 0

    def events(self, n: int, t0: int) -> Iterator[tuple[str, bytes, bytes, int]]:
        """(topic, key, value, ts) of n events from t0 on, at `rate` events per second of event time."""
        step = 1000.0 / self.rate
        for i in range(n):
            yield self.make(t0 + int(i * step))

    def messages(self, settings, n: int, t0: int) -> list:
        """The n events as consumer records of `settings`' input topics (streams/testing.Msg), each
        in the partition of 4 its key hashes to, offsets in order: what the in-process benches feed."""
        from streams.testing import Msg

        return [Msg(settings.topic(t), zlib.crc32(k) % 4, i, k, v, ts)
                for i, (t, k, v, ts) in enumerate(self.events(n, t0))]

    def make(self, ts: int) -> tuple[str, bytes, bytes, int]:
        """One event at (about) `ts`: (topic, key, value, ts). A fix's ts is raised to 1 ms after its
        unit's previous fix when needed, so every event has a distinct identity (unit and ts for a
        fix, alert_id, call_id): a stream never repeats an event by itself."""
        r = self.rng
        x = r.random()
        self.n += 1
        if x < self.mix[0]:
            u = self.units[r.randrange(len(self.units))]
            dt = max(1.0, (ts - u[6]) / 1000.0) if u[6] else 5.0
            ts = max(ts, u[6] + 1)
            if self.stress:
                u[3], u[4] = r.uniform(self.y0, self.y1), r.uniform(self.x0, self.x1)
            else:  # walk on: a little turn, speed x time, bounce off the edges
                u[5] += r.uniform(-0.4, 0.4)
                d = u[2] * min(dt, 30.0)
                lat = u[3] + d * math.cos(u[5]) / M_PER_DEG
                lon = u[4] + d * math.sin(u[5]) / (M_PER_DEG * math.cos(math.radians(u[3])))
                if not (self.y0 < lat < self.y1 and self.x0 < lon < self.x1):
                    u[5] += math.pi
                else:
                    u[3], u[4] = lat, lon
            u[6] = ts
            ev = {"unit_id": u[0], "ts": ts, "lat": round(u[3], 7), "lon": round(u[4], 7),
                  "status": "available" if r.random() < 0.7 else "busy", "kind": u[1]}
            return topics.GPS, u[0].encode(), orjson.dumps(ev), ts
        if x < self.mix[0] + self.mix[1]:
            cam, lat, lon = self.cameras[r.randrange(len(self.cameras))]
            ev = {"alert_id": f"A-{self.tag}-{self.n:09d}", "camera_id": cam, "ts": ts, "lat": lat, "lon": lon,
                  "type": r.choice(ALERT_TYPES), "confidence": 0.8}
            return topics.ALERTS, cam.encode(), orjson.dumps(ev), ts
        lat, lon = r.uniform(self.y0, self.y1), r.uniform(self.x0, self.x1)
        cid = f"C-{self.tag}-{self.n:09d}"
        ev = {"call_id": cid, "ts": ts, "lat": lat, "lon": lon, "category": r.choice(CATEGORIES),
              "priority": r.choice((1, 2, 2, 3, 3, 3, 4)), "lang": "zh"}
        return topics.CALLS, cid.encode(), orjson.dumps(ev), ts
