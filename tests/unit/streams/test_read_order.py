"""Issue 11, "partition-independent state" and "arrivals exact under any read order": the same
events give the same zone documents, unit presence, sla.events records and dispatch
recommendations (`nearest_units`) with 1, 3, 4 and 7 partitions, for read orders Kafka allows
(each input partition in order, the topics interleaved freely: fixes read up to 40 s of event time
ahead of or behind the rest, calls up to 9 minutes late, within the 10-minute grace and the
watermark's 60 s bound), and equal an oracle written here from CONTRACT §3/§4 and docs/DESIGN.md alone
(brute force over every call and every fix). Contract v3 (issue 26): units.by_force, coverage,
on-scene tiers (sla.events `tiers`, response.tiers_met/tiers_decided) and health.last_event_ts
against oracles of their own here."""

from __future__ import annotations

import json
import math
import random
import zlib
from collections import Counter

import orjson
import pytest
from h3.api import basic_int as h3
from shapely.geometry import Point, shape
from shapely.ops import unary_union

from contract import topics
from contract.settings import Settings
from streams.testing import Msg, Pipeline
from tests import scenario

T0 = scenario.ms(scenario.local(12, 8, 0))      # 08:00 local, 2023-06-12: one local day
N_INPUT_PARTITIONS = 4
EARTH_M = 6372797.560856


def _zones():
    doc = json.loads(scenario.ZONES_FILE.read_text())
    return {f.get("id", f["properties"].get("id")): shape(f["geometry"]) for f in doc["features"]}


ZONES = _zones()
SPOTS = [scenario.PA, scenario.PAB, scenario.PB, scenario.PCORE, scenario.PIN, scenario.PA2, scenario.PB2]


def _near(rng, pt, metres, at_least=0.0):
    d = rng.uniform(at_least, metres)
    a = rng.uniform(0, 2 * math.pi)
    return (pt[0] + d * math.cos(a) / 111_000, pt[1] + d * math.sin(a) / (111_000 * math.cos(math.radians(pt[0]))))


FORCES = ("police", "auxiliary", "volunteer", "security")   # CONTRACT §1 v3


def events(seed: int):
    """Calls, fixes (units walking between spots, some passing near calls, response teams of three
    converging on some calls, earlier patrols up to 9 h before), alerts. Forces: any of the four,
    none (police) or an unknown one (police)."""
    rng = random.Random(seed)
    side = random.Random(seed + 7_000)   # force, teams and earlier patrols: the rest stays as it was
    calls, fixes, alerts = [], [], []

    def force():
        return side.choice([*FORCES, None, "militia"])

    for i in range(25):
        at = rng.choice(SPOTS)
        ts = T0 + rng.randrange(0, 40 * 60_000)
        lat, lon = _near(rng, at, 30)
        calls.append({"call_id": f"c{i}", "ts": ts, "lat": lat, "lon": lon, "category": "theft",
                      "priority": rng.randint(1, 4), "lang": rng.choice(["zh", "en-US", None])})
        came_by = rng.random() < 0.7
        if came_by:  # a unit comes by: within 100 m or just outside it
            for _ in range(rng.randint(1, 3)):
                u = f"u{rng.randrange(6)}"
                fts = ts + rng.choice([-30_000, 20_000, 95_000, 170_000, 290_000, 320_000, 900_000])
                flat, flon = _near(rng, (lat, lon), rng.choice([20, 80, 99, 140, 400]))
                fixes.append({"unit_id": u, "ts": fts, "lat": flat, "lon": flon,
                              "status": rng.choice(["available", "busy"]), "kind": "foot", "force": force()})
        if came_by and i % 3 == 0:  # a response team: three units by 1, 3 and 5 minutes, one at times late
            delay = side.choice([0, 0, 240_000])   # at times the whole team comes 4 minutes later
            for k, u in enumerate(side.sample([f"r{j}" for j in range(8)], 3)):
                fts = ts + delay + [side.choice([0, 15_000, 60_000, 61_000]), side.choice([100_000, 180_000, 181_000]),
                                    side.choice([250_000, 300_000, 300_001])][k]
                # within 100 m, or (the call then may breach) 105-200 m away
                flat, flon = _near(side, (lat, lon), *side.choice([(99, 0), (99, 0), (200, 105)]))
                fixes.append({"unit_id": u, "ts": fts, "lat": flat, "lon": flon, "status": "busy", "kind": "foot",
                              "force": force()})
    for u in range(6):  # patrols: a fix every 30-90 s, wandering across the zones
        ts = T0
        while ts < T0 + 45 * 60_000:
            ts += rng.randrange(30_000, 90_000)
            lat, lon = _near(rng, rng.choice(SPOTS), 1200)
            fixes.append({"unit_id": f"u{u}", "ts": ts, "lat": lat, "lon": lon, "status": "available",
                          "kind": "car", "force": force()})
    end = max(e["ts"] for e in calls + fixes)
    for u in range(6):  # present at the end: units of every force in the zones
        lat, lon = _near(side, side.choice(SPOTS), 300)
        fixes.append({"unit_id": f"u{u}", "ts": end - side.randrange(0, 100_000), "lat": lat, "lon": lon,
                      "status": side.choice(["available", "busy"]), "kind": "car", "force": force()})
    for _ in range(40):  # earlier patrols (coverage 8h but not 60m, or neither): read first, in ts order
        lat, lon = _near(side, side.choice(SPOTS), 1500)
        fixes.append({"unit_id": f"p{side.randrange(4)}", "ts": T0 - side.randrange(10 * 60_000, 9 * 3_600_000),
                      "lat": lat, "lon": lon, "status": side.choice(["available", "busy", "off_duty"]),
                      "kind": "car", "force": force()})
    for i in range(40):
        lat, lon = _near(rng, rng.choice(SPOTS), 200)
        alerts.append({"alert_id": f"a{i}", "camera_id": f"cam{i % 7}", "ts": T0 + rng.randrange(0, 45 * 60_000),
                       "lat": lat, "lon": lon, "type": rng.choice(["crowd_density", "fight"]), "confidence": 0.8})
    alerts.append(dict(alerts[3]))            # a duplicate alert
    calls.append(dict(calls[5]))              # a duplicate call
    fixes.append(dict(fixes[10]))             # a duplicate fix
    return calls, fixes, alerts


def read_order(calls, fixes, alerts, seed: int) -> list[Msg]:
    """A read order Kafka allows: each input partition (by key, as producers key them) in its
    produced order (ts order), partitions interleaved with bounded event-time skews."""
    rng = random.Random(seed)
    queues: dict[tuple[str, int], list] = {}
    for topic, evs, key in ((topics.CALLS, calls, "call_id"), (topics.GPS, fixes, "unit_id"),
                            (topics.ALERTS, alerts, "camera_id")):
        for ev in sorted(evs, key=lambda e: e["ts"]):
            p = zlib.crc32(ev[key].encode()) % N_INPUT_PARTITIONS
            queues.setdefault((topic, p), []).append(ev)
    # GPS partitions stay within the watermark's max lag (60 s) of each other: 50 s of skew + 5 s
    # of jitter (beyond the bound the contract lets the watermark move on without the late one)
    skew = {tp: (rng.randrange(0, 9 * 60_000) if tp[0] == topics.CALLS else rng.randrange(-25_000, 25_000))
            for tp in queues}
    keyed = []
    for tp, evs in queues.items():
        last = -math.inf
        for i, ev in enumerate(evs):
            last = max(last, ev["ts"] + skew[tp] + rng.randrange(0, 5_000))
            keyed.append((last, rng.random(), tp, i, ev))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [Msg(tp[0], tp[1], i, None, orjson.dumps(ev), 1) for _k, _r, tp, i, ev in keyed]


def canon(ev: dict) -> tuple:
    """An sla.events record as a hashable value: zone_ids in a canonical order (the contract gives
    none), on_scene as sorted pairs."""
    return tuple(sorted((k, tuple(sorted(v)) if isinstance(v, list) else tuple(sorted(v.items()))
                         if isinstance(v, dict) else v) for k, v in ev.items()))


def run(msgs, partitions: int, batch: int):
    s = Settings(zones=scenario.ZONES_FILE, partitions=partitions, future_tolerance_ms=10 ** 13)
    pipe = Pipeline(s)
    pipe.feed(msgs, batch=batch)
    pipe.finish()
    docs = {z: {k: v for k, v in d.items() if k not in ("version",)} for z, d in pipe.documents().items()}
    sla = Counter(canon(e) for e in pipe.sla)
    return docs, pipe.presence(), sla, recommendations(pipe)


def recommendations(pipe) -> dict[str, list]:
    """call_id -> nearest_units of its last incidents.enriched record, after checking that it
    never flips: a call's records carry no units until decided, then always the same ones."""
    sent: dict[str, list] = {}
    for rec in pipe.enriched:
        sent.setdefault(rec["call_id"], []).append(rec["nearest_units"])
    for cid, seq in sent.items():
        changes = [v for i, v in enumerate(seq) if i == 0 or v != seq[i - 1]]
        assert len(changes) == 1 or (len(changes) == 2 and changes[0] == []), (cid, changes)
    return {cid: seq[-1] for cid, seq in sent.items()}


# --- the oracle: CONTRACT §3 by brute force ----------------------------------------------------

def _dist(a, b):
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b[1] - a[1]) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def _in(ev):
    return sorted(z for z, g in ZONES.items() if g.contains(Point(ev["lon"], ev["lat"])))


TIERS = (("1m", 60_000), ("3m", 180_000), ("5m", 300_000))
REQUIRED = {"1m": 1, "3m": 2, "5m": 3}   # CONTRACT §3 "On-scene tiers": 1/2/3 without a plan


def oracle_on_scene(c, fixes) -> dict[str, int]:
    """Distinct units with a fix within 100 m of the call at a ts in [call ts, call ts + T]."""
    return {name: len({f["unit_id"] for f in fixes if c["ts"] <= f["ts"] <= c["ts"] + t
                       and _dist((c["lat"], c["lon"]), (f["lat"], f["lon"])) <= 100})
            for name, t in TIERS}


def oracle_sla(calls, fixes, final_clock):
    """arrived, breach and tiers records (the last decided once the watermark, at the end the final
    clock, reaches call ts + 300 s)."""
    seen, out = set(), Counter()
    for c in calls:
        if c["call_id"] in seen:
            continue
        seen.add(c["call_id"])
        if c["ts"] + 300_000 <= final_clock:
            on_scene = oracle_on_scene(c, fixes)
            out[canon({"type": "tiers", "call_id": c["call_id"], "zone_ids": _in(c), "on_scene": on_scene,
                       "met": all(on_scene[k] >= n for k, n in REQUIRED.items()), "ts": c["ts"] + 300_000})] += 1
        best = min(((f["ts"], f["unit_id"]) for f in fixes
                    if c["ts"] <= f["ts"] < c["ts"] + 3_600_000
                    and _dist((c["lat"], c["lon"]), (f["lat"], f["lon"])) <= 100),
                   default=None)
        zones = tuple(_in(c))
        if best is not None:
            out[tuple(sorted({"type": "arrived", "call_id": c["call_id"], "zone_ids": zones, "unit_id": best[1],
                              "response_s": round((best[0] - c["ts"]) / 1000, 3), "ts": best[0]}.items()))] += 1
        if (best is None or best[0] - c["ts"] > 300_000) and c["ts"] + 300_000 <= final_clock:
            out[tuple(sorted({"type": "breach", "call_id": c["call_id"], "zone_ids": zones, "unit_id": None,
                              "response_s": None, "ts": c["ts"] + 300_000}.items()))] += 1
    return out


# docs/DESIGN.md "Dispatch recommendation": exact within what the fastest kind covers in 5 min
EXACT_M = 300 * 9.0 / 1.3
SPEED = {"foot": 1.4, "car": 8.3, "motorcycle": 9.0, "swat": 8.3, "other": 6.0}


def oracle_nearest(calls, fixes):
    """Per call: the units whose latest fix at or before the call's ts is at most 120 s older,
    available and within EXACT_M, nearest first (ties by unit id), three at most."""
    out = {}
    for c in calls:
        if c["call_id"] in out:
            continue
        latest = {}
        for f in fixes:
            if f["ts"] <= c["ts"] and (f["unit_id"] not in latest or f["ts"] > latest[f["unit_id"]]["ts"]):
                latest[f["unit_id"]] = f
        ranked = sorted((_dist((c["lat"], c["lon"]), (f["lat"], f["lon"])), u, f["kind"]) for u, f in latest.items()
                        if f["ts"] >= c["ts"] - 120_000 and f["status"] == "available")
        out[c["call_id"]] = [{"unit_id": u, "kind": k, "distance_m": round(d, 1),
                              "eta_s": int(round(d * 1.3 / SPEED[k]))} for d, u, k in ranked if d <= EXACT_M][:3]
    return out


def latest_of(evs, key: str) -> dict:
    """The event with the largest ts per device (`key`: unit_id, camera_id)."""
    latest = {}
    for e in evs:
        if e[key] not in latest or e["ts"] > latest[e[key]]["ts"]:
            latest[e[key]] = e
    return latest


def oracle_presence(fixes, final_clock):
    latest = latest_of(fixes, "unit_id")
    return {u: set(_in(f)) for u, f in latest.items() if f["ts"] >= final_clock - 120_000 and _in(f)}


def oracle_counts(calls, alerts):
    """today.calls / today.alerts per zone (every event falls on the local day of the clock)."""
    out = Counter()
    for kind, evs, key in (("calls", calls, "call_id"), ("alerts", alerts, "alert_id")):
        seen = set()
        for ev in evs:
            if ev[key] in seen:
                continue
            seen.add(ev[key])
            for z in _in(ev):
                out[(z, kind)] += 1
    return out


def oracle_by_force(fixes, final_clock):
    """(zone, force) -> present units whose latest fix has that force (absent or unknown: police)."""
    out = Counter()
    for f in latest_of(fixes, "unit_id").values():
        if f["ts"] >= final_clock - 120_000:
            for z in _in(f):
                out[(z, f.get("force") if f.get("force") in FORCES else "police")] += 1
    return out


def zone_res9_cells(zid) -> set:
    """H3 resolution-9 cells whose centre lies in the zone (a disk wide enough around its centroid,
    each centre tested with shapely); none: the cell of a point on its surface
    (docs/DESIGN.md "Forces, coverage and on-scene tiers")."""
    g = ZONES[zid]
    c = g.centroid
    cells = {x for x in h3.grid_disk(h3.latlng_to_cell(c.y, c.x, 9), 25)
             if g.contains(Point(h3.cell_to_latlng(x)[1], h3.cell_to_latlng(x)[0]))}
    if not cells:
        p = g.representative_point()
        cells = {h3.latlng_to_cell(p.y, p.x, 9)}
    return cells


ZONE_CELLS = {z: zone_res9_cells(z) for z in ZONES}


def oracle_coverage(fixes, final_clock):
    """zone -> {"60m", "8h"}: share of its cells with a fix at most 60 min / 8 h older than the clock."""
    out = {}
    for z, cells in ZONE_CELLS.items():
        out[z] = {}
        for name, w in (("60m", 3_600_000), ("8h", 8 * 3_600_000)):
            hit = {h3.latlng_to_cell(f["lat"], f["lon"], 9) for f in fixes if final_clock - f["ts"] <= w}
            out[z][name] = round(len(hit & cells) / len(cells), 2)
    return out


def oracle_last_event_ts(calls, fixes, alerts, final_clock):
    """zone -> source -> the largest ts inside it, None when none within 24 h of the clock."""
    out = {}
    for z in ZONES:
        out[z] = {}
        for src, evs in (("calls", calls), ("gps", fixes), ("alerts", alerts)):
            last = max((e["ts"] for e in evs if z in _in(e)), default=None)
            out[z][src] = last if last is not None and final_clock - last <= 24 * 3_600_000 else None
    return out


def oracle_tiers_response(calls, fixes, final_clock):
    """(zone) -> (tiers_met, tiers_decided) over the last 60 min: decided at call ts + 300 s."""
    out = Counter()
    seen = set()
    for c in calls:
        if c["call_id"] in seen:
            continue
        seen.add(c["call_id"])
        decided = c["ts"] + 300_000
        if final_clock - 3_600_000 < decided <= final_clock:
            on_scene = oracle_on_scene(c, fixes)
            met = all(on_scene[k] >= n for k, n in REQUIRED.items())
            for z in _in(c):
                out[(z, "decided")] += 1
                out[(z, "met")] += met
    return out


def oracle_cameras(alerts, final_clock):
    """(known, silent) per zone: a camera is where its latest report was; silent after 30 min."""
    out = Counter()
    for a in latest_of(alerts, "camera_id").values():
        for z in _in(a):
            out[(z, "known")] += 1
            if a["ts"] < final_clock - 1_800_000:
                out[(z, "silent")] += 1
    return out


@pytest.mark.parametrize("seed", range(4))
def test_same_events_same_results_in_any_allowed_read_order_and_partition_count(seed):
    calls, fixes, alerts = events(seed)
    final_clock = max(e["ts"] for e in calls + fixes + alerts)
    want_sla = oracle_sla(calls, fixes, final_clock)
    assert sum(1 for k in want_sla if dict(k)["type"] == "breach") >= 2  # the set exercises breaches
    assert sum(1 for k in want_sla if dict(k)["type"] == "arrived") >= 3  # and arrivals
    want_nearest = oracle_nearest(calls, fixes)
    assert sum(1 for v in want_nearest.values() if len(v) == 3) >= 3     # the set exercises full lists
    tiers = [dict(dict(k)["on_scene"]) for k in want_sla if dict(k)["type"] == "tiers"]
    met = [dict(k)["met"] for k in want_sla if dict(k)["type"] == "tiers"]
    assert any(met) and not all(met) and any(t["5m"] >= 2 for t in tiers)   # tiers met, not met, crowded
    by_force = oracle_by_force(fixes, final_clock)
    assert len({f for _z, f in by_force}) >= 2                           # several forces present
    coverage = oracle_coverage(fixes, final_clock)
    assert any(c["8h"] > c["60m"] > 0 for c in coverage.values())      # older patrols count in 8h only
    last = oracle_last_event_ts(calls, fixes, alerts, final_clock)
    tiers_resp = oracle_tiers_response(calls, fixes, final_clock)
    results = []
    for i, partitions in enumerate((1, 3, 4, 7)):
        msgs = read_order(calls, fixes, alerts, seed * 100 + i)
        docs, presence, sla, nearest = run(msgs, partitions, batch=random.Random(seed + i).randint(1, 40))
        assert sla == want_sla, (partitions, set(sla) ^ set(want_sla))
        assert nearest == want_nearest, (partitions, {c for c in nearest if nearest[c] != want_nearest.get(c)})
        assert presence == oracle_presence(fixes, final_clock), partitions
        counts = oracle_counts(calls, alerts)
        cams = oracle_cameras(alerts, final_clock)
        for z, d in docs.items():
            assert d["clock"] == final_clock
            assert (d["today"]["calls"], d["today"]["alerts"]) == (counts[(z, "calls")], counts[(z, "alerts")]), z
            h = d["health"]
            assert (h["cameras_known"], h["cameras_silent"]) == (cams[(z, "known")], cams[(z, "silent")]), z
            assert h["last_event_ts"] == last[z], z
            assert d["units"]["by_force"] == {f: by_force[(z, f)] for f in FORCES}, z
            assert d["coverage"] == coverage[z], z
            r = d["response"]
            assert (r["tiers_met"], r["tiers_decided"]) == (tiers_resp[(z, "met")], tiers_resp[(z, "decided")]), z
        results.append(docs)
    for docs in results[1:]:
        assert docs == results[0]


# --- dispatch recommendations over a wider area --------------------------------------------------

CENTRE = (34.72, 113.64)   # ~12 km across: many home cells, so partitions hold different units
# on the north-east corner of the zones' box widened by 10 km (113.82 E, 34.81 N): beyond it home
# cells are hashed, inside they belong to the geographic runs (streams/partitioning.py HomeMap)
EDGE = (34.80, 113.80)


def dispatch_events(seed: int, centre: tuple[float, float] = CENTRE):
    """Units that patrol, jump kilometres at times (leaving a call's exact reach), turn busy and
    back, go quiet; calls anywhere, some right where units are; fixes at exactly the call's ts and
    exactly 120 s before it; a duplicate fix."""
    rng = random.Random(seed)
    kinds = list(SPEED)
    fixes, calls = [], []
    for u in range(40):
        lat, lon = _near(rng, centre, 6000)
        ts = T0 + rng.randrange(0, 60_000)
        kind = rng.choice(kinds)
        while ts < T0 + 32 * 60_000:
            if rng.random() < 0.1:
                lat, lon = _near(rng, (lat, lon), rng.uniform(2000, 4000))
            else:
                lat, lon = _near(rng, (lat, lon), 300)
            status = "available" if rng.random() < 0.75 else rng.choice(["busy", "off_duty"])
            fixes.append({"unit_id": f"d{u}", "ts": ts, "lat": lat, "lon": lon, "status": status, "kind": kind})
            ts += rng.randrange(20_000, 70_000) if rng.random() < 0.9 else rng.randrange(150_000, 400_000)
    for i in range(30):
        ts = T0 + rng.randrange(3 * 60_000, 30 * 60_000)
        if i % 3 == 0:   # where a unit was a little before
            f = rng.choice([f for f in fixes if ts - 100_000 <= f["ts"] <= ts] or fixes)
            lat, lon = _near(rng, (f["lat"], f["lon"]), 400)
        else:
            lat, lon = _near(rng, centre, 6000)
        calls.append({"call_id": f"k{i}", "ts": ts, "lat": lat, "lon": lon, "category": "theft", "priority": 2})
        if i % 5 == 1:   # boundaries of time: a fix at the call's ts, another exactly 120 s before
            for j, dt in enumerate((0, -120_000)):
                flat, flon = _near(rng, (lat, lon), 1500)
                fixes.append({"unit_id": f"e{i}-{j}", "ts": ts + dt, "lat": flat, "lon": flon,
                              "status": "available", "kind": "car"})
    fixes.append(dict(fixes[7]))
    return calls, fixes


@pytest.mark.parametrize("seed,centre", [(s, CENTRE) for s in range(6)] + [(s, EDGE) for s in range(6, 8)])
def test_recommendations_are_positions_at_the_call_whatever_the_read_order_and_partitions(seed, centre):
    calls, fixes = dispatch_events(seed, centre)
    want = oracle_nearest(calls, fixes)
    assert sum(1 for v in want.values() if len(v) == 3) >= 5 and sum(1 for v in want.values() if len(v) < 3) >= 1
    if centre == EDGE:   # calls on both sides of the edge: homes of the runs and hashed ones
        _x0, _y0, x1, y1 = unary_union(list(ZONES.values())).bounds
        x1, y1 = x1 + 10_000 / (111_320 * math.cos(math.radians(y1 + 0.1))), y1 + 10_000 / 111_320
        home_centres = [h3.cell_to_latlng(h3.cell_to_parent(h3.latlng_to_cell(c["lat"], c["lon"], 9), 6))
                        for c in calls]
        assert {lat <= y1 and lon <= x1 for lat, lon in home_centres} == {True, False}
    results = []
    for i, partitions in enumerate((1, 3, 4, 7)):
        msgs = read_order(calls, fixes, [], seed * 100 + 50 + i)
        _docs, _presence, _sla, nearest = run(msgs, partitions, batch=random.Random(seed * 7 + i).randint(1, 60))
        assert nearest == want, (partitions, {c: (nearest[c], want[c]) for c in want if nearest.get(c) != want[c]})
        results.append(nearest)
