"""Event generators for the bench (independent of connectors/simulate.py).

`backlog`: CONTRACT §1 messages uniformly over the zones' bounding box (~80 % patrol fixes, ~15 %
camera alerts, ~5 % 110 calls). `stream_backlog`: the messages of an event source such as
bench/city.py's CityStream (walking patrol units; what `make bench` uses). Both add a fraction of
exact re-sends (duplicates) and of invalid messages and tally the outcome the worker should report
for every message, so the bench can compare `zonewatch_events_total` with what was sent.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from contract import topics

KIND_WEIGHTS = ((topics.GPS, 0.80), (topics.ALERTS, 0.15), (topics.CALLS, 0.05))
CATEGORIES = ("theft", "dispute", "traffic", "public_order", "assistance", "fraud", "medical",
              "violent", "fire", "lost_and_found", "other")
CATEGORY_W = (20, 18, 14, 12, 10, 6, 6, 5, 3, 4, 2)
ALERT_TYPES = ("crowd_density", "vehicle_watchlist", "abandoned_object", "drone", "face_watchlist",
               "fence_intrusion", "fight", "fire_smoke", "other")
ALERT_W = (45, 15, 10, 6, 6, 6, 5, 3, 4)
UNIT_KINDS = ("car", "foot", "motorcycle", "swat")
UNIT_KIND_W = (50, 35, 12, 3)
STATUSES = ("available", "busy", "off_duty")
STATUS_W = (70, 25, 5)
PHRASES = ("报警人称有人打架", "caller reports a stolen bicycle", "两车追尾，无人受伤",
           "crowd pushing near gate 3", "老人走失", "loud dispute between vendors")


def bbox_of(zones_path: Path) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) over every polygon of a zones GeoJSON."""
    doc = json.loads(Path(zones_path).read_text(encoding="utf-8"))
    xs: list[float] = []
    ys: list[float] = []

    def walk(coords):
        if coords and isinstance(coords[0], (int, float)):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        else:
            for c in coords:
                walk(c)

    for f in doc["features"]:
        walk(f["geometry"]["coordinates"])
    if not xs:
        raise ValueError(f"{zones_path}: no coordinates")
    return min(xs), min(ys), max(xs), max(ys)


@dataclass
class Message:
    topic: str            # contract topic name (unprefixed)
    key: bytes | None
    value: bytes


@dataclass
class Expected:
    """What the worker should count for the generated messages (`zonewatch_events_total`)."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    by_topic: dict = field(default_factory=lambda: {t: 0 for t in topics.INPUT_TOPICS})
    dup_by_topic: dict = field(default_factory=lambda: {t: 0 for t in topics.INPUT_TOPICS})
    max_valid_ts: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + self.rejected


class EventFactory:
    """Builds single valid events of each kind at a given ts (used by both bench phases)."""

    def __init__(self, bbox, seed: int = 7, tag: str = "b", units: int = 1000, cameras: int = 300,
                 weights=KIND_WEIGHTS):
        self.rng = random.Random(seed)
        self.tag = tag
        self.min_lon, self.min_lat, self.max_lon, self.max_lat = bbox
        rng = self.rng
        self.units = [(f"unit-{i:04d}", rng.choices(UNIT_KINDS, UNIT_KIND_W)[0]) for i in range(units)]
        self.cameras = [(f"cam-{i:04d}", *self._point()) for i in range(cameras)]
        self.n_alert = 0
        self.n_call = 0
        self.unit_ts: dict[str, int] = {}  # a unit's fixes get strictly increasing ts: (unit, ts) is unique
        weights = [(t, w) for t, w in weights if w > 0]
        self._topics = [t for t, _ in weights]
        self._cum = []
        acc = 0.0
        for _, w in weights:
            acc += w
            self._cum.append(acc)

    def _point(self) -> tuple[float, float]:
        r = self.rng
        return (round(r.uniform(self.min_lat, self.max_lat), 7), round(r.uniform(self.min_lon, self.max_lon), 7))

    def pick_topic(self) -> str:
        x = self.rng.random() * self._cum[-1]
        for t, c in zip(self._topics, self._cum, strict=True):
            if x < c:
                return t
        return self._topics[-1]

    def make(self, topic: str, ts: int) -> tuple[dict, bytes]:
        """(event dict, Kafka key) of one valid event on `topic` at `ts`."""
        r = self.rng
        if topic == topics.GPS:
            uid, kind = self.units[r.randrange(len(self.units))]
            last = self.unit_ts.get(uid)
            if last is not None and ts <= last:
                ts = last + 1
            self.unit_ts[uid] = ts
            lat, lon = self._point()
            ev = {"unit_id": uid, "ts": ts, "lat": lat, "lon": lon,
                  "status": r.choices(STATUSES, STATUS_W)[0], "kind": kind}
            return ev, uid.encode()
        if topic == topics.ALERTS:
            self.n_alert += 1
            cam, lat, lon = self.cameras[r.randrange(len(self.cameras))]
            ev = {"alert_id": f"A-{self.tag}-{self.n_alert:08d}", "camera_id": cam, "ts": ts,
                  "lat": lat, "lon": lon, "type": r.choices(ALERT_TYPES, ALERT_W)[0],
                  "confidence": round(r.uniform(0.5, 1.0), 3), "severity": r.randint(1, 4)}
            return ev, cam.encode()
        self.n_call += 1
        lat, lon = self._point()
        cid = f"C-{self.tag}-{self.n_call:08d}"
        ev = {"call_id": cid, "ts": ts, "lat": lat, "lon": lon,
              "category": r.choices(CATEGORIES, CATEGORY_W)[0], "priority": r.choices((1, 2, 3, 4), (5, 25, 45, 25))[0],
              "caller": f"13{r.randrange(10**9):09d}", "lang": "zh", "text": r.choice(PHRASES)}
        return ev, cid.encode()


def _invalid(rng: random.Random, i: int, now_ms: int) -> tuple[str, bytes | None, bytes]:
    """One message that the validator must reject: (topic, key, value)."""
    variant = i % 6
    if variant == 0:
        return topics.GPS, None, b'{"unit_id": "u-1", "ts": 1686440000000, "lat": 34.7'  # truncated JSON
    if variant == 1:
        return topics.CALLS, b"bad", orjson.dumps({"call_id": f"bad-{i}", "ts": now_ms - 1000, "lon": 113.5,
                                                     "category": "theft", "priority": 2})  # no lat
    if variant == 2:
        return topics.ALERTS, b"bad", orjson.dumps({"alert_id": f"bad-{i}", "camera_id": "cam-x", "ts": now_ms,
                                                      "lat": 134.7, "lon": 113.5, "type": "drone",
                                                      "confidence": 0.9})  # lat out of range
    if variant == 3:
        return topics.GPS, b"bad", orjson.dumps({"unit_id": "unit-x", "ts": now_ms + 86_400_000,
                                                   "lat": 34.74, "lon": 113.53})  # ts a day ahead
    if variant == 4:
        return topics.CALLS, None, b"[1, 2, 3]"  # not an object
    return topics.ALERTS, b"bad", orjson.dumps({"alert_id": "x" * 80, "camera_id": "cam-x", "ts": now_ms,
                                                  "lat": 34.74, "lon": 113.53, "type": "fight",
                                                  "confidence": 1.5})  # id too long


def backlog(n: int, bbox, now_ms: int, *, seed: int = 7, tag: str = "b", dup_rate: float = 0.005,
            invalid_rate: float = 0.001, span_ms: int = 55 * 60_000,
            weights=KIND_WEIGHTS) -> tuple[list[Message], Expected]:
    """`n` messages in total (valid + duplicates + invalid), event ts increasing over
    [now - span - 2 min, now - 2 min]. Duplicates are exact re-sends of a message sent 1..200
    messages earlier (key and value identical)."""
    f = EventFactory(bbox, seed=seed, tag=tag, weights=weights)
    rng = random.Random(seed + 1)
    t0 = now_ms - span_ms - 120_000
    step = span_ms / max(n, 1)
    out: list[Message] = []
    exp = Expected()
    seen: set = set()           # (topic, identity) of accepted events
    recent: list[tuple[Message, tuple]] = []
    n_invalid = 0
    for i in range(n):
        x = rng.random()
        if x < invalid_rate:
            topic, key, value = _invalid(rng, n_invalid, now_ms)
            n_invalid += 1
            out.append(Message(topic, key, value))
            exp.rejected += 1
            exp.by_topic[topic] += 1
            continue
        if x < invalid_rate + dup_rate and recent:
            msg, ident = recent[rng.randrange(len(recent))]
            out.append(Message(msg.topic, msg.key, msg.value))
            exp.duplicate += 1
            exp.by_topic[msg.topic] += 1
            exp.dup_by_topic[msg.topic] += 1
            continue
        ts = t0 + int(i * step)
        topic = f.pick_topic()
        ev, key = f.make(topic, ts)
        ident = (topic, ev["unit_id"], ts) if topic == topics.GPS else (topic, ev.get("call_id") or ev["alert_id"])
        msg = Message(topic, key, orjson.dumps(ev))
        out.append(msg)
        exp.by_topic[topic] += 1
        if ident in seen:       # an accidental repeat (only possible when step < 1 ms)
            exp.duplicate += 1
            exp.dup_by_topic[topic] += 1
        else:
            seen.add(ident)
            exp.accepted += 1
        exp.max_valid_ts = max(exp.max_valid_ts, ts)
        recent.append((msg, ident))
        if len(recent) > 200:
            recent.pop(0)
    return out, exp


def stream_backlog(make, n: int, now_ms: int, rate: float, *, seed: int = 7, dup_rate: float = 0.005,
                   invalid_rate: float = 0.001) -> tuple[list[Message], Expected]:
    """`n` messages (valid + duplicates + invalid) from an event source `make(ts) -> (topic, key,
    value, ts)` whose events all have distinct identities (bench/city.py's CityStream), in event
    time at `rate` events/s, ending 2 min before `now_ms`. Duplicates are exact re-sends of a
    message sent 1..200 messages earlier; invalid ones are those of `_invalid`."""
    rng = random.Random(seed + 1)
    step = 1000.0 / rate
    t0 = now_ms - int(n * step) - 120_000
    out: list[Message] = []
    exp = Expected()
    recent: list[Message] = []
    n_invalid = 0
    for i in range(n):
        x = rng.random()
        if x < invalid_rate:
            topic, key, value = _invalid(rng, n_invalid, now_ms)
            n_invalid += 1
            out.append(Message(topic, key, value))
            exp.rejected += 1
            exp.by_topic[topic] += 1
            continue
        if x < invalid_rate + dup_rate and recent:
            msg = recent[rng.randrange(len(recent))]
            out.append(Message(msg.topic, msg.key, msg.value))
            exp.duplicate += 1
            exp.by_topic[msg.topic] += 1
            exp.dup_by_topic[msg.topic] += 1
            continue
        topic, key, value, ts = make(t0 + int(i * step))
        msg = Message(topic, key, value)
        out.append(msg)
        exp.by_topic[topic] += 1
        exp.accepted += 1
        exp.max_valid_ts = max(exp.max_valid_ts, ts)
        recent.append(msg)
        if len(recent) > 200:
            recent.pop(0)
    return out, exp
