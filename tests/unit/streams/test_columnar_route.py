"""The columnar `Router.route` (streams/columns.py, ZoneIndex.lookup_cells) equals today's
per-record router, kept verbatim below as the oracle (`ReferenceRouter.route`, streams/routing.py
at 24579db: `decode_and_validate` and `lookup_cell` per message), on random batches of all four
input topics and phase commands mixed — valid events, every kind of reject (malformed JSON, missing
and mistyped fields, out-of-range coordinates, future and ancient timestamps, extra and duplicate
fields, non-UTF-8 bytes, numbers beyond a double), points exactly on zone borders and on H3 cell
boundaries — each run in more than one batch split: records per partition in order (as encoded on
the wire), the zone-events messages, dead letters with their reasons, rejected counts, the latest
fixes and the router's memory of units and cameras after each batch. The hostile corpus
(tests/hostile.py) runs through both as well."""

from __future__ import annotations

import json
import math
import time
from collections import namedtuple

import h3
import msgspec
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import events, topics
from contract.errors import Rejected
from contract.response import CORROBORATION_RADIUS_M, DISPATCH_EXACT_M
from contract.settings import DEMO_ZONES, Settings
from contract.zones import load_zones
from streams.partitioning import partition_of
from streams.reach import grid_key
from streams.records import IncidentAlert, IncidentCall, IncidentFix, ZoneAlert, ZoneCall, ZoneFix, ZoneStatus
from streams.routing import Router, primary_language
from streams.zone_index import ZoneIndex
from tests import hostile, scenario

Rec = namedtuple("Rec", "topic partition offset key value timestamp")
NOW = 1_700_000_000_000
MIN_TS = events.MIN_TS_MS


def _append(out: dict, p: int, rec) -> None:
    lst = out.get(p)
    if lst is None:
        out[p] = [rec]
    else:
        lst.append(rec)


class ReferenceRouter(Router):
    """The router of 24579db: its `route` verbatim (the rest of Router is unchanged)."""

    def route(self, messages, now_ms: int | None = None) -> tuple[dict[int, list], list, dict, dict]:
        """messages: iterable of aiokafka ConsumerRecord (topic, partition, offset, key, value, timestamp).

        Returns (records by partition, dead letters, rejected counts by source, latest unit fixes).
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        out: dict[int, list] = {}
        dead: list = []
        rejected: dict[str, int] = {}
        units_latest: dict[str, tuple] = {}
        max_ts = now_ms + self.s.future_tolerance_ms
        lookup = self.index.lookup_cell
        zone_part = self.zone_part
        homes = self.homes
        n = self.n
        clock = self.clock
        tp_ts = self.tp_ts
        unit_homes = self.unit_homes
        for m in messages:
            topic = self.base_topic[m.topic]
            if topic == topics.PLAN_COMMANDS:   # an operator's phase command: every partition (duty.py)
                self._command(m, out, dead, rejected, max_ts)
                continue
            try:
                ev = events.decode_and_validate(topic, m.value, max_ts)
            except Rejected as exc:
                src = topics.SOURCE_OF_TOPIC[topic]
                rejected[src] = rejected.get(src, 0) + 1
                dead.append((m, exc.reason))
                continue
            ts = ev["ts"]
            if ts > clock:
                clock = ts
            tp_ts[m.topic, m.partition] = ts
            lat, lon = ev["lat"], ev["lon"]
            cell, zones = lookup(lat, lon)
            kts = m.timestamp
            if topic == topics.CALLS:
                eid = ev["call_id"]
                # incidents stage: the call, enriched as far as ingest can, to its home partition
                _append(out, homes.own(cell), IncidentCall(eid, ts, list(zones), kts, cell,
                                                           self.enriched_base(ev, zones)))
            elif topic == topics.ALERTS:
                eid = ev["alert_id"]
                inc = IncidentAlert(eid, ts, lat, lon, ev["type"], cell)
                for p in homes.within(cell, CORROBORATION_RADIUS_M):
                    _append(out, p, inc)
            elif topic == topics.STATUS:
                eid = ev["camera_id"]
            else:
                eid = ev["unit_id"]
                available = ev["status"] == "available"
                # Arrivals need the fix within ARRIVAL_RADIUS_M of a call; the dispatch
                # recommendation needs every available unit's position at the call's ts within
                # DISPATCH_EXACT_M, and to learn when a unit it holds there moved away or turned
                # busy: so an available fix goes to the homes within DISPATCH_EXACT_M, and every
                # fix also to those its unit's previous fix went to (all partitions when this
                # ingest knows no previous fix of the unit).
                own = homes.within(cell, DISPATCH_EXACT_M if available else self.near_m)
                before = unit_homes.get(eid)
                if before is None and self.loaded_cells:
                    loaded = self.loaded_cells.pop(eid, None)
                    if loaded is not None:
                        before = homes.within(loaded, DISPATCH_EXACT_M)
                if before is None:
                    targets = self.all_parts
                elif before == own or not before:
                    targets = own
                else:
                    targets = tuple(sorted(set(own) | set(before)))
                fix = IncidentFix(eid, ts, lat, lon, cell, available, ev["kind"], ev["status"], ev["force"])
                for p in targets:
                    _append(out, p, fix)
                prev = self.units.get(eid)   # also read below for presence (not updated in between)
                if prev is None or ts > prev[0]:
                    unit_homes[eid] = own if available or self.duty_m else ()
            by_part: dict[int, list[str]] = {}
            for zid in zones:
                p = zone_part[zid]
                lst = by_part.get(p)
                if lst is None:
                    by_part[p] = [zid]
                else:
                    lst.append(zid)
            primary = zone_part[zones[0]] if zones else partition_of(eid, n)
            if primary not in by_part:
                by_part[primary] = []
            if topic == topics.GPS:
                for p in self.cover_parts.get(cell, ()):   # coverage: its cell's zones' partitions
                    if p not in by_part:
                        by_part[p] = []
                mark = self.gps_marks.get(m.partition)
                if mark is None:
                    self.gps_marks[m.partition] = [ts, now_ms]
                else:
                    if ts > mark[0]:
                        mark[0] = ts
                    mark[1] = now_ms
                status, kind = ev["status"], ev["kind"]
                # Only the unit's newest fix decides where it is present; an older one (a late
                # fix) still counts for arrivals and the zone's last gps event.
                newest = prev is None or ts > prev[0]
                if newest:
                    if status == "available":  # the partitions whose zones it may reach learn it
                        for p in self.reach_parts.get(grid_key(lat, lon), ()):
                            if p not in by_part:
                                by_part[p] = []
                    self.units[eid] = (ts, tuple(by_part))
                    for p in (self.all_parts if prev is None else prev[1]):
                        if p not in by_part:
                            by_part[p] = []
                    units_latest[eid] = self.positions[eid] = (ts, lat, lon, status, kind)
                force = ev["force"]
                for p, zl in by_part.items():
                    _append(out, p, ZoneFix(eid, ts, zl, p == primary, kts, status, kind, newest, lat, lon, force,
                                            cell))
            elif topic == topics.CALLS:
                cat, prio = ev["category"], ev["priority"]
                lang = primary_language(ev.get("lang"))
                for p, zl in by_part.items():
                    _append(out, p, ZoneCall(eid, ts, zl, p == primary, kts, cat, prio, lang))
            else:  # alerts and status reports also place their camera (zone health)
                cam = ev["camera_id"]
                prev = self.cameras.get(cam)
                newest = prev is None or ts > prev[0]
                if newest:
                    self.cameras[cam] = (ts, tuple(by_part))
                    for p in (self.all_parts if prev is None else prev[1]):
                        if p not in by_part:
                            by_part[p] = []
                if topic == topics.STATUS:
                    online = ev["online"]
                    for p, zl in by_part.items():
                        _append(out, p, ZoneStatus(cam, ts, zl, p == primary, kts, online, newest))
                else:
                    typ, sev = ev["type"], ev["severity"]
                    for p, zl in by_part.items():
                        _append(out, p, ZoneAlert(eid, ts, zl, p == primary, kts, typ, sev, cam, newest))
        if clock > self.clock:
            self.clock = clock
            # Everyone needs the clock, even partitions without events in this batch.
            for p in self.all_parts:
                out.setdefault(p, [])
        return out, dead, rejected, units_latest


# --- zone sets and points: borders, cell boundaries, anywhere ---------------------------------------

def _zone_set(path):
    zones = load_zones(path)
    index = ZoneIndex(zones)
    vertices: list[tuple[float, float]] = []   # (lat, lon) exactly on a polygon's boundary
    for z in zones:
        polys = list(z.geometry.geoms) if z.geometry.geom_type == "MultiPolygon" else [z.geometry]
        for p in polys:
            for ring in (p.exterior, *p.interiors):
                coords = list(ring.coords)
                vertices += [(lat, lon) for lon, lat in coords]
                # midpoints of edges: on the edge or a rounding off it, either side
                vertices += [((a[1] + b[1]) / 2, (a[0] + b[0]) / 2) for a, b in zip(coords, coords[1:], strict=False)]
    cell_corners = [pt for c in sorted(index._cells)[:400] for pt in h3.cell_to_boundary(h3.int_to_str(c))]
    lats = [a for a, _ in vertices]
    lons = [o for _, o in vertices]
    return zones, index, vertices, cell_corners, (min(lats), max(lats), min(lons), max(lons))


ZONE_SETS = {"scenario": _zone_set(scenario.ZONES_FILE), "demo": _zone_set(DEMO_ZONES)}
ZONE_FILES = {"scenario": scenario.ZONES_FILE, "demo": DEMO_ZONES}
# one strategy object per long list: hypothesis labels a sampled_from by its elements, and building
# a new one over thousands of points per draw made its replays see different labels (FlakyStrategyDefinition)
VERTICES = {name: st.sampled_from(zs[2]) for name, zs in ZONE_SETS.items()}
CORNERS = {name: st.sampled_from(zs[3]) for name, zs in ZONE_SETS.items()}


@st.composite
def points(draw, name: str):
    _zones, _index, _vertices, _corners, (la0, la1, lo0, lo1) = ZONE_SETS[name]
    how = draw(st.sampled_from(("vertex", "corner", "inside", "near", "odd")))
    if how == "vertex":
        return draw(VERTICES[name])
    if how == "corner":
        return draw(CORNERS[name])
    if how == "inside":
        return draw(st.floats(la0, la1)), draw(st.floats(lo0, lo1))
    if how == "near":   # a vertex nudged by a few ulps
        lat, lon = draw(VERTICES[name])
        k = draw(st.integers(-3, 3))

        for _ in range(abs(k)):
            lat = math.nextafter(lat, math.copysign(math.inf, k))
        return lat, lon
    return draw(st.sampled_from([(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0), (-0.0, -0.0), (90.5, 10.0),
                                 (10.0, -180.01), (34, 113), (1e300, 2.0)]))


TS = st.one_of(st.integers(NOW - 3_600_000, NOW + 400_000), st.sampled_from([MIN_TS, MIN_TS - 1, NOW + 300_000,
                                                                               NOW + 300_001, 2**63, 2**70, -1]))
IDS = st.one_of(st.sampled_from(["u1", "u2", "u3", "单位-7", "cam-1", "cam-2", "c\u00e9"]),
                st.sampled_from(["", "x" * 64, "x" * 65, "a\x01", "a\u2028b"]), st.text(max_size=6))


def _odd(draw):
    """A wrongly typed or null value."""
    return draw(st.sampled_from([None, True, False, 1, -1, 1.5, "x", [], {}, "2023-06-11T08:00:00+08:00", 0.0]))


@st.composite
def event(draw, topic: str, zone_set: str) -> dict:
    lat, lon = draw(points(zone_set))
    ts = draw(TS)
    if draw(st.integers(0, 9)) == 0:   # another form of ts: float, RFC 3339, bool, string
        ts = draw(st.sampled_from([float(NOW), NOW + 0.5, "2023-11-14T22:13:20+00:00", "2023-11-14T22:13:20",
                                   True, "junk", None]))
    ev: dict = {"ts": ts, "lat": lat, "lon": lon}
    if topic == topics.GPS:
        ev["unit_id"] = draw(IDS)
        for name, values in (("status", ["available", "busy", "off_duty", "gone"]),
                             ("kind", ["foot", "car", "swat", "tank"]),
                             ("force", ["police", "auxiliary", "volunteer", "security", "militia"]),
                             ("speed", [0, 0.0, 3.5, -1.0, 1e308, 7]), ("heading", [0.0, 360, 360.5, 90.25])):
            c = draw(st.integers(0, 5))
            if c <= 2:
                ev[name] = draw(st.sampled_from(values))
            elif c == 3:
                ev[name] = _odd(draw)
    elif topic == topics.ALERTS:
        ev["alert_id"] = draw(IDS)
        ev["camera_id"] = draw(IDS)
        ev["type"] = draw(st.sampled_from(["crowd_density", "fight", "drone", "ufo"]))
        ev["confidence"] = draw(st.sampled_from([0, 1, 0.5, 1.01, -0.0]))
        if draw(st.booleans()):
            ev["severity"] = draw(st.sampled_from([1, 4, 5, 2.0, 2.5]))
    elif topic == topics.STATUS:
        ev["camera_id"] = draw(IDS)
        if draw(st.booleans()):
            ev["online"] = draw(st.sampled_from([True, False, None, 1]))
    else:
        ev["call_id"] = draw(IDS)
        ev["category"] = draw(st.sampled_from(["theft", "fire", "aliens"]))
        ev["priority"] = draw(st.sampled_from([1, 4, 0, 2.0]))
        for name in ("caller", "lang", "text"):
            if draw(st.booleans()):
                ev[name] = draw(st.sampled_from(["+86 138 0000 0000", "zh-Hans-CN", "en_US", "x" * 40, "", 5]))
    c = draw(st.integers(0, 12))   # a field missing, mistyped, or one more
    if c == 0:
        del ev[draw(st.sampled_from(sorted(ev)))]
    elif c == 1:
        ev[draw(st.sampled_from(sorted(ev)))] = _odd(draw)
    elif c == 2:
        ev["extra"] = draw(st.sampled_from([1, "x", [1, [2]], {"a": None}]))
    return ev


RAW_TAILS = [b',"extra":1e999}', b',"extra":"\xff"}', b',"extra":' + b"[" * 600 + b"]" * 600 + b"}",
             b',"lat":91.0}', b',"lat":"x"}', b',"extra":123456789012345678901234567890}', b',"extra":1e-400}']


@st.composite
def value(draw, topic: str, zone_set: str) -> bytes | None:
    ev = draw(event(topic, zone_set))
    try:
        raw = orjson.dumps(ev)
    except TypeError:   # an int beyond 64 bits
        raw = json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode()
    c = draw(st.integers(0, 14))
    if c == 0:   # a duplicate key or a raw tail orjson and msgspec might read differently
        raw = raw[:-1] + draw(st.sampled_from(RAW_TAILS))
    elif c == 1:   # cut short, or not JSON, or not an object
        raw = draw(st.sampled_from([raw[:draw(st.integers(0, len(raw) - 1))], b"nope", b"[]", b"null",
                                    b"\xef\xbb\xbf" + raw, b" " + raw + b"\n", raw + b"x", None]))
    elif c == 2:   # bytes that are not UTF-8 inside the first string
        i = raw.index(b'"') + 1
        raw = raw[:i] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3"])) + raw[i:]
    elif c == 3:   # a key spelled with a \u escape
        raw = raw.replace(b'"ts"', b'"t\\u0073"', 1)
    return raw


TOPIC_MIX = (topics.GPS, topics.GPS, topics.GPS, topics.ALERTS, topics.STATUS, topics.CALLS, topics.PLAN_COMMANDS)


@st.composite
def messages(draw, zone_set: str, s: Settings) -> list[Rec]:
    out = []
    for i in range(draw(st.integers(1, 60))):
        topic = draw(st.sampled_from(TOPIC_MIX))
        if topic == topics.PLAN_COMMANDS:
            v = draw(st.sampled_from([b'{"command_id":"c1","ts":1700000000000,"name":"x","by":"op"}', b"{", None]))
        else:
            v = draw(value(topic, zone_set))
        out.append(Rec(s.topic(topic), draw(st.integers(0, 2)), i, b"k", v, NOW - draw(st.integers(0, 10_000))))
    return out


def _run(router: Router, batches: list[list]) -> list:
    """Everything a routed batch produces, as bytes or exact values (a -0.0, a float for an int, a
    dict's key order differ in msgpack), and the router's memory after it."""
    got = []
    wall = NOW
    for b in batches:
        wall += 1
        prev = router.clock
        out, dead, rejected, latest = router.route(b, wall)
        got.append((
            {p: msgspec.msgpack.encode(recs) for p, recs in out.items()}, list(out),
            [(m, reason) for m, reason in dead], rejected, msgspec.msgpack.encode(latest),
            router.zone_events(out, prev, wall),
            msgspec.msgpack.encode([router.units, router.unit_homes, router.cameras, router.positions,
                                    sorted(router.tp_ts.items()), router.gps_marks, router.clock]),
        ))
    return got


def _splits(msgs: list, cuts: list[int]) -> list[list[list]]:
    whole = [msgs]
    one_by_one = [[m] for m in msgs]
    pos = sorted({c % (len(msgs) + 1) for c in cuts} | {0, len(msgs)})
    cut = [msgs[a:b] for a, b in zip(pos, pos[1:], strict=False) if b > a]
    return [whole, one_by_one, cut]


def _check(zone_set: str, partitions: int, msgs: list, cuts: list[int], s: Settings) -> None:
    index = ZONE_SETS[zone_set][1]
    for batches in _splits(msgs, cuts):
        assert _run(Router(s, index), batches) == _run(ReferenceRouter(s, index), batches)


def _settings(zone_set: str, partitions: int) -> Settings:
    return Settings(zones=ZONE_FILES[zone_set], partitions=partitions, caller_secret="k")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_columnar_route_equals_the_per_record_router(data):
    zone_set = data.draw(st.sampled_from(sorted(ZONE_SETS)))
    partitions = data.draw(st.sampled_from([1, 3, 4]))
    s = _settings(zone_set, partitions)
    msgs = data.draw(messages(zone_set, s))
    cuts = data.draw(st.lists(st.integers(0, 60), max_size=6))
    _check(zone_set, partitions, msgs, cuts, s)


def test_hostile_corpus_routes_as_the_per_record_router():
    s = Settings(zones=hostile.ZONES_FILE, partitions=4, caller_secret="test-secret")
    index = ZoneIndex(load_zones(hostile.ZONES_FILE))
    corpus = hostile.corpus()
    recs = [Rec(s.topic(m.topic), 0, i, m.key, m.value, 1) for i, m in enumerate(corpus)]
    now = int(time.time() * 1000)
    new, ref = Router(s, index), ReferenceRouter(s, index)
    for i in range(0, len(recs), 700):
        a, b = new.route(recs[i:i + 700], now), ref.route(recs[i:i + 700], now)
        assert {p: msgspec.msgpack.encode(r) for p, r in a[0].items()} == \
            {p: msgspec.msgpack.encode(r) for p, r in b[0].items()}
        assert a[1:] == b[1:]
    assert len(new.positions) > 0 and sum(1 for m in corpus if m.expect == "rejected") > 10_000
