"""The simulation engine the bundled scenarios share: a local metric frame, patrol units that
move along planned legs, a dispatcher that sends the nearest available unit to each call, camera
alerts by channel, and the event loop that turns all of it into contract records.

A scenario (venue.py, marathon.py) subclasses `Simulation` and supplies the geography: where the
units and cameras are (`_build_units`, `_build_cameras`), how a unit patrols (`_extend`), where
calls come from and what they are about (`_call_place`), and how vehicles drive (`_drive`,
`_drive_distance`). Everything is a pure function of the seed, the parameters and the start time:
one `random.Random(seed)` drives it, in a fixed order.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from contract import topics

CALLS, GPS, ALERTS, STATUS = topics.CALLS, topics.GPS, topics.ALERTS, topics.STATUS

# priority 1..4 weights per category
CALL_PRIORITY = {
    "violent": (55, 40, 5, 0), "fire": (70, 30, 0, 0), "medical": (35, 50, 15, 0),
    "traffic": (10, 45, 40, 5), "theft": (3, 30, 50, 17), "dispute": (3, 30, 55, 12),
    "public_order": (8, 40, 42, 10), "fraud": (0, 10, 50, 40), "lost_and_found": (0, 2, 38, 60),
    "assistance": (2, 13, 50, 35), "other": (2, 13, 45, 40),
}
# alert type -> (confidence low, high, severity choices)
ALERT_SHAPE = {
    "face_watchlist": (0.70, 0.99, (1, 2, 2)), "vehicle_watchlist": (0.80, 0.99, (2, 3, 3)),
    "crowd_density": (0.50, 0.98, (3, 3, 4, 2)), "fence_intrusion": (0.60, 0.95, (2, 1)),
    "drone": (0.55, 0.95, (2, 3)), "abandoned_object": (0.50, 0.90, (3, 2)),
    "fight": (0.50, 0.90, (2,)), "fire_smoke": (0.50, 0.95, (1, 2)), "other": (0.30, 0.90, (4, 3)),
}
# km/h-free: metres per second (patrol cruising, emergency response), per unit kind
PATROL_SPEED = {"car": (5.0, 8.0), "motorcycle": (6.0, 9.0), "foot": (1.1, 1.5), "swat": (6.0, 8.0),
                "other": (5.0, 8.0)}
RESPONSE_SPEED = {"car": (6.5, 10.0), "motorcycle": (7.5, 11.0), "foot": (1.5, 2.1), "swat": (8.0, 11.0),
                  "other": (6.0, 9.0)}
UNIT_LETTER = {"car": "C", "motorcycle": "M", "foot": "F", "swat": "S", "other": "O"}
FOOT_MAX_DISPATCH_M = 450.0


def cum(weights) -> tuple[list[float], float]:
    """Cumulative weights and their total (for bisect sampling)."""
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return out, acc


def table(weights: dict) -> tuple[list, list[float], float]:
    """(names, cumulative weights, total) of a {name: weight} table."""
    return (list(weights), *cum(weights.values()))


@dataclass(frozen=True)
class Frame:
    """Local metres east (x) / north (y) of an origin <-> WGS84 (equirectangular: exact enough
    over a city). Without `m_per_deg_lon`, a degree of longitude is 111,320 m × cos(lat0)."""

    lat0: float
    lon0: float
    m_per_deg_lat: float = 110_950.0
    m_per_deg_lon: float | None = None
    kx: float = field(init=False)
    ky: float = field(init=False)

    def __post_init__(self):
        m_lon = self.m_per_deg_lon or 111_320.0 * math.cos(math.radians(self.lat0))
        object.__setattr__(self, "kx", 1.0 / m_lon)
        object.__setattr__(self, "ky", 1.0 / self.m_per_deg_lat)

    @classmethod
    def wgs84(cls, lat0: float, lon0: float) -> Frame:
        """The frame whose scales are the WGS84 ellipsoid's at lat0 (lengths true to ~0.1 m per km)."""
        a, e2 = 6_378_137.0, 6.69437999014e-3
        s2 = math.sin(math.radians(lat0)) ** 2
        m_lat = math.radians(1) * a * (1 - e2) / (1 - e2 * s2) ** 1.5        # meridian
        m_lon = math.radians(1) * a * math.cos(math.radians(lat0)) / math.sqrt(1 - e2 * s2)  # parallel
        return cls(lat0, lon0, m_lat, m_lon)

    def to_lonlat(self, x: float, y: float, nd: int = 7) -> list[float]:
        """[lon, lat] (GeoJSON order) of a local point."""
        return [round(self.lon0 + x * self.kx, nd), round(self.lat0 + y * self.ky, nd)]

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) / self.kx, (lat - self.lat0) / self.ky

    def disk(self, r: float, cx: float = 0.0, cy: float = 0.0, n: int = 72) -> list[list[float]]:
        """A closed, counter-clockwise (RFC 7946) n-gon of radius r around (cx, cy)."""
        ring = [self.to_lonlat(cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n))
                for k in range(n)]
        ring.append(ring[0])
        return ring


def write_zones(fc: dict, path: str | Path) -> Path:
    """Write a zones FeatureCollection deterministically (one feature per line)."""
    head = json.dumps({k: v for k, v in fc.items() if k != "features"}, ensure_ascii=False)[:-1]
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in fc["features"]]
    text = head + ', "features": [\n' + ",\n".join(lines) + "\n]}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class Unit:
    __slots__ = ("uid", "kind", "home", "legs", "li", "interval", "busy_from", "busy_until",
                 "dwelt", "outside", "off_duty", "patrol_v", "response_v", "roam")

    def __init__(self, uid, kind, home, interval, patrol_v, response_v, roam, outside=False,
                 off_duty=False) -> None:
        self.uid, self.kind, self.home = uid, kind, home
        self.interval = interval
        self.patrol_v, self.response_v, self.roam = patrol_v, response_v, roam
        self.outside, self.off_duty = outside, off_duty
        self.busy_from = self.busy_until = 0
        self.dwelt = False
        self.li = 0
        # legs: (t0, t1, x0, y0, vx, vy, speed_mps, heading); position(t) = (x0 + vx (t-t0), y0 + vy (t-t0))
        self.legs: list[tuple] = []


class Simulation:
    """The simulation state; `events()` yields (topic, record) in non-decreasing `ts` order."""

    #: the scenario's name (`zonewatch simulate --scenario NAME`) and default parameters
    NAME = ""
    DEFAULTS: dict[str, Any] = {"units": 300, "cameras": 200, "calls_per_min": 6.0, "alerts_per_min": 60.0}
    FRAME: Frame
    UNIT_PREFIX = "SIM"      # unit ids {prefix}-{letter}{n:03d}
    CALL_PREFIX = "SIM"      # call ids {prefix}-{tag}-{n:06d}, alert ids {prefix}A-{tag}-{n:08d}
    #: (weight, camera group, alert type)
    ALERT_CHANNELS: tuple = ()
    CALL_TEXT: dict = {}     # category -> Chinese texts
    CALL_TEXT_EN: dict = {}  # category -> the text of a call in another language
    LANGS: tuple = (("zh", 1),)

    def __init__(self, seed: int = 7, *, units: int | None = None, cameras: int | None = None,
                 calls_per_min: float | None = None, alerts_per_min: float | None = None,
                 start_ms: int | None = None, duration_s: float | None = None):
        d = self.DEFAULTS
        units = d["units"] if units is None else units
        cameras = d["cameras"] if cameras is None else cameras
        calls_per_min = d["calls_per_min"] if calls_per_min is None else calls_per_min
        alerts_per_min = d["alerts_per_min"] if alerts_per_min is None else alerts_per_min
        if units < 1:
            raise ValueError("units must be >= 1")
        if calls_per_min < 0 or alerts_per_min < 0:
            raise ValueError("rates must be >= 0")
        self.rng = random.Random(seed)
        self.seed = seed
        self.frame = self.FRAME
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self.end_ms = None if duration_s is None else self.start_ms + int(duration_s * 1000)
        self.calls_per_ms = calls_per_min / 60_000.0
        self.alerts_per_ms = alerts_per_min / 60_000.0
        self.tag = f"{seed}-{self.start_ms // 1000:x}"       # makes ids unique per (seed, start)
        self.n_calls = self.n_alerts = 0
        #: the first 100k dispatches: (call_id, unit_id, call ts, planned arrival ts)
        self.dispatches: list[tuple[str, str, int, int]] = []
        self.units: list[Unit] = []
        self._unit_counts: Counter = Counter()
        self._cams: dict[str, list[tuple[str, float, float]]] = {}
        self._n_cams = 0
        self._setup()
        self._build_units(units)
        self._build_cameras(cameras)
        self._prio = {c: cum(w) for c, w in CALL_PRIORITY.items()}
        self._langs = ([lang for lang, _ in self.LANGS], *cum(w for _, w in self.LANGS))
        chans = [c for c in self.ALERT_CHANNELS if self._cams.get(c[1])]
        self._chans = chans
        self._chan_cum, self._chan_total = cum(c[0] for c in chans)
        if not chans:  # no cameras, no alerts
            self.alerts_per_ms = 0.0

    # --- what a scenario supplies ---------------------------------------------------------------
    def _setup(self) -> None:
        """Geography computed before the units are placed (no random draws)."""

    def _build_units(self, n: int) -> None:
        raise NotImplementedError

    def _build_cameras(self, n: int) -> None:
        raise NotImplementedError

    def _patrol(self, u: Unit) -> None:
        """Plan a patrol round of u from its post and back (u is at its post and has dwelt there)."""
        raise NotImplementedError

    def _call_place(self, t: int) -> tuple[float, float, tuple]:
        """(x, y, category table) of the next call."""
        raise NotImplementedError

    def _drive_distance(self, x: float, y: float, cx: float, cy: float) -> float:
        """How far a vehicle drives from (x, y) to (cx, cy) (the dispatcher ranks units by it)."""
        return math.hypot(cx - x, cy - y)

    def _drive(self, u: Unit, x1: float, y1: float, v: float) -> None:
        """Append the legs of a vehicle's drive to (x1, y1) at v m/s."""
        self._move(u, x1, y1, v)

    #: how long a unit stays at its post between rounds (ms): foot officers, vehicles
    DWELL_MS = {"foot": (180_000, 600_000), "vehicle": (900_000, 2_400_000)}
    CAMERA_PREFIX = "CAM-"   # camera ids {prefix}{n:04d}

    # --- units and cameras ------------------------------------------------------------------------
    def _add_unit(self, kind: str, home: tuple[float, float], roam: float, outside: bool = False,
                  off: bool = False) -> Unit:
        rng = self.rng
        self._unit_counts[kind] += 1
        uid = f"{self.UNIT_PREFIX}-{UNIT_LETTER[kind]}{self._unit_counts[kind]:03d}"
        pv = rng.uniform(*PATROL_SPEED[kind])
        rv = rng.uniform(*RESPONSE_SPEED[kind])
        u = Unit(uid, kind, home, rng.randint(5000, 10000), pv, rv, roam, outside, off)
        self.units.append(u)
        return u

    def _start_units(self) -> None:
        """Every unit at its home at the start; half begin with a patrol round, half with a dwell."""
        for u in self.units:
            u.legs.append((self.start_ms, self.start_ms, u.home[0], u.home[1], 0.0, 0.0, 0.0, 0.0))
            u.dwelt = self.rng.random() < 0.5

    def _add_camera(self, group: str, x: float, y: float) -> None:
        self._n_cams += 1
        lon, lat = self.frame.to_lonlat(x, y, 6)
        self._cams.setdefault(group, []).append((f"{self.CAMERA_PREFIX}{self._n_cams:04d}", lat, lon))

    def _ring_cameras(self, rings, centres) -> None:
        """Cameras in annuli around venue centres: `rings` is ((group, count, r_min, r_max), ...);
        the i-th camera of a group goes around centres[i % len(centres)]."""
        rng = self.rng
        for group, cnt, lo, hi in rings:
            for i in range(cnt):
                cx, cy = centres[i % len(centres)]
                r, a = rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi)
                self._add_camera(group, cx + r * math.cos(a), cy + r * math.sin(a))

    def cameras(self) -> list[tuple[str, float, float]]:
        """Every camera as (camera_id, lat, lon), in the order they were placed."""
        return sorted((c for cams in self._cams.values() for c in cams), key=lambda c: c[0])

    # --- unit movement ------------------------------------------------------------------------
    @staticmethod
    def _move(u: Unit, x1: float, y1: float, v_mps: float) -> None:
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
    def _dwell(u: Unit, dur_ms: int) -> None:
        t0, t1, x0, y0, vx, vy, _, hdg = u.legs[-1]
        u.legs.append((t1, t1 + max(1, dur_ms), x0 + vx * (t1 - t0), y0 + vy * (t1 - t0), 0.0, 0.0, 0.0, hdg))

    @staticmethod
    def _end(u: Unit) -> tuple[float, float]:
        """Where u's plan ends."""
        t0, t1, x0, y0, vx, vy, _, _ = u.legs[-1]
        return x0 + vx * (t1 - t0), y0 + vy * (t1 - t0)

    def _go(self, u: Unit, x: float, y: float) -> None:
        """To (x, y) at patrol speed: on foot straight, by vehicle as it drives."""
        if u.kind == "foot":
            self._move(u, x, y, u.patrol_v)
        else:
            self._drive(u, x, y, u.patrol_v)

    def _foot_round(self, u: Unit, stops: int) -> None:
        """A walk from the post: `stops` stops in random directions within u.roam, then back."""
        rng = self.rng
        hx, hy = u.home
        for _ in range(stops):
            a = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(40, u.roam)
            self._move(u, hx + r * math.cos(a), hy + r * math.sin(a), u.patrol_v)
            self._dwell(u, rng.randint(20_000, 90_000))
        self._move(u, hx, hy, u.patrol_v)

    def _extend(self, u: Unit) -> None:
        """Plan u's next activity (called when its plan runs out): stay on scene, go back to the post,
        dwell there, or patrol."""
        t_end = u.legs[-1][1]
        if t_end < u.busy_until:       # still on scene
            self._dwell(u, u.busy_until - t_end)
            return
        x, y = self._end(u)
        hx, hy = u.home
        away = abs(x - hx) + abs(y - hy) > 1
        if u.off_duty or u.kind == "swat":
            if away:
                self._go(u, hx, hy)
            else:
                self._dwell(u, 1_800_000)
            return
        if away:                       # back from a call or a round: return to the post
            self._go(u, hx, hy)
            u.dwelt = False
            return
        if not u.dwelt:
            lo, hi = self.DWELL_MS["foot" if u.kind == "foot" else "vehicle"]
            self._dwell(u, self.rng.randint(lo, hi))
            u.dwelt = True
            return
        u.dwelt = False
        self._patrol(u)

    def _leg_at(self, u: Unit, t: int, advance: bool) -> tuple:
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

    def position(self, u: Unit, t: int) -> tuple[float, float]:
        t0, _, x0, y0, vx, vy, _, _ = self._leg_at(u, t, False)
        return x0 + vx * (t - t0), y0 + vy * (t - t0)

    def _truncate(self, u: Unit, t: int) -> None:
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
    def _make_call(self, t: int) -> dict:
        rng = self.rng
        x, y, (names, ccum, total) = self._call_place(t)
        cat = names[bisect.bisect(ccum, rng.random() * total)]
        pcum, ptotal = self._prio[cat]
        prio = bisect.bisect(pcum, rng.random() * ptotal) + 1
        langs, lcum, ltotal = self._langs
        lang = langs[bisect.bisect(lcum, rng.random() * ltotal)]
        self.n_calls += 1
        call_id = f"{self.CALL_PREFIX}-{self.tag}-{self.n_calls:06d}"
        lon, lat = self.frame.to_lonlat(x, y, 6)
        text = rng.choice(self.CALL_TEXT[cat]) if lang == "zh" else self.CALL_TEXT_EN[cat]
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
                d = self._drive_distance(x, y, cx, cy)
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
            self._drive(u, cx, cy, u.response_v)
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
        return {"alert_id": f"{self.CALL_PREFIX}A-{self.tag}-{self.n_alerts:08d}", "camera_id": cam_id, "ts": t,
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
        f = self.frame
        lat0, lon0, kx, ky = f.lat0, f.lon0, f.kx, f.ky
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
                yield GPS, {"unit_id": u.uid, "ts": t, "lat": round(lat0 + y * ky, 6),
                            "lon": round(lon0 + x * kx, 6), "status": status, "kind": u.kind,
                            "speed": round(spd, 1), "heading": round(hdg, 0)}
            elif what == 1:
                heapreplace(heap, (t + 1 + int(rng.expovariate(self.calls_per_ms)), 1, 0))
                yield CALLS, self._make_call(t)
            else:
                heapreplace(heap, (t + 1 + int(rng.expovariate(self.alerts_per_ms)), 2, 0))
                yield ALERTS, self._make_alert(t)


def malformed(rng: random.Random, topic: str, ev: dict) -> dict | bytes:
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
