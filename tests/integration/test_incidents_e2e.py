"""Incidents on the real path: 1-3-5 minute arrivals, breaches on the global clock, a late
arrival after a breach, dispatch recommendations against brute force, corroborating alerts
before and after the call, and no phone number anywhere downstream.

Timeline (T0 = 2023-06-12 10:00:00 +08:00), zones of tests/zones_test.geojson:
  k1 in A at T0       : x1 arrives at +50 s                 -> within_1m
  k2 in A at T0+10 s  : x2's fix (+150 s) consumed BEFORE k2 -> within_3m (decided by event time)
  k3 in A at T0+20 s  : x3 arrives at +290 s                -> within_5m
  k4 in B at T0+30 s  : nobody comes; B is otherwise silent -> breach at +300 s, driven by a unit
                        pinging in the venue zones (another zone, maybe another partition/worker)
  k5 in A at T0+40 s  : x5 arrives at +420 s                -> breach, then the arrival is recorded
  k6 in no zone at T0+50 s, 3 km east: one unit within the exact reach (2,077 m), two beyond it
                        (the processing-time part of the recommendation, from Redis) -> breach

On-scene tiers (CONTRACT §3 v3), decided at call ts + 300 s, all within the final clock: units
within 100 m at a fix ts in [call ts, call ts + 60/180/300 s]: k1 x1 (+50 s) -> 1/1/1; k2 x2 (+150 s)
-> 0/1/1; k3 x3 (+290 s) -> 0/0/1; k4, k5 (x5 comes at +420 s), k6 -> 0/0/0. None meets 1/2/3.

Dispatch recommendations are positions as of each call's ts: x2's fix (+160 s, 44 m from k2) is
known before k2 is processed, but it is after k2's ts, so x2 is not recommended for k2.
"""

from __future__ import annotations

import math
import re
import subprocess
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from contract import topics
from contract.response import eta_s, haversine_m
from tests import scenario
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

T0 = int(datetime(2023, 6, 12, 10, 0, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)
S = 1000
P = {"k1": (34.7030, 113.6030), "k2": (34.7030, 113.6080), "k3": (34.7080, 113.6030),
     "k4": (34.7100, 113.6250), "k5": (34.7080, 113.6080), "k6": (34.7100, 113.6600)}
CALL_TS = {"k1": T0, "k2": T0 + 10 * S, "k3": T0 + 20 * S, "k4": T0 + 30 * S, "k5": T0 + 40 * S,
           "k6": T0 + 50 * S}
PHONES = {"k1": "13912345678", "k2": "+86 139 2345 6789", "k3": "13934567890", "k4": "13945678901",
          "k5": "13956789012", "k6": "13967890123"}


def fix(unit, ts, lat, lon, status="available", kind="car"):
    return {"unit_id": unit, "ts": ts, "lat": lat, "lon": lon, "status": status, "kind": kind}


def call(cid, prio=2):
    lat, lon = P[cid]
    return {"call_id": cid, "ts": CALL_TS[cid], "lat": lat, "lon": lon, "category": "violent",
            "priority": prio, "caller": PHONES[cid], "lang": "zh", "text": "现场有人打架"}


def alert(aid, ts, lat, lon, typ="fight"):
    return {"alert_id": aid, "camera_id": f"cam-{aid}", "ts": ts, "lat": lat, "lon": lon, "type": typ,
            "confidence": 0.8}


# Dispatchable units before the calls (n3 busy, n6 stale), and x2's early fix near k2.
DISPATCH = [
    fix("n1", T0 - 30 * S, 34.7050, 113.6050, kind="car"),
    fix("n2", T0 - 30 * S, 34.7010, 113.6040, kind="foot"),
    fix("n3", T0 - 30 * S, 34.7031, 113.6045, status="busy"),
    fix("n4", T0 - 30 * S, 34.7060, 113.6110, kind="motorcycle"),
    fix("n5", T0 - 30 * S, 34.7120, 113.6200, kind="swat"),
    fix("n6", T0 - 600 * S, 34.7029, 113.6031),  # nearest to k1 but stale at call time
    fix("x2", T0 + 160 * S, 34.7034, 113.6080),  # 44 m from k2, at +150 s
    fix("n9", T0 - 30 * S, 34.7100, 113.6510),   # 823 m W of k6 (2,378 m from k4: beyond the exact reach)
    fix("n7", T0 - 30 * S, 34.7316, 113.6600, kind="foot"),        # 2,402 m N of k6
    fix("n8", T0 - 30 * S, 34.6840, 113.6600, kind="motorcycle"),  # 2,892 m S of k6
]
# nearest_units by hand (haversine on Redis' earth radius; eta = d x 1.3 / speed, contract/response.py):
# the units available at the call's ts whose latest fix then is at most 120 s old (n3 is busy, n6
# stale, x2's fix comes after every call). k6: n9 exactly, then n7 and n8 from Redis (beyond 2,077 m).
EXPECTED_NEAREST = {
    "k1": [("n2", "foot", 240.5, 223), ("n1", "car", 288.0, 45), ("n4", "motorcycle", 804.0, 116)],
    "k2": [("n1", "car", 353.2, 55), ("n2", "foot", 428.1, 398), ("n4", "motorcycle", 432.0, 62)],
    "k3": [("n1", "car", 380.5, 60), ("n4", "motorcycle", 764.6, 110), ("n2", "foot", 783.9, 728)],
    "k4": [("n5", "swat", 508.4, 80), ("n4", "motorcycle", 1355.2, 196), ("n1", "car", 1911.4, 299)],
    "k5": [("n4", "motorcycle", 353.2, 51), ("n1", "car", 432.0, 68), ("n2", "foot", 860.2, 799)],
    "k6": [("n9", "car", 822.9, 129), ("n7", "foot", 2402.5, 2231), ("n8", "motorcycle", 2891.9, 418)],
}
ALERTS_BEFORE = [
    alert("al1", T0 - 300 * S, 34.7048, 113.6030),             # 200 m N of k1, 5 min before
    alert("al3", T0 + 60 * S, 34.7030, 113.59862),             # 400 m W of k1: too far
]
ARRIVALS = [
    fix("x1", T0 + 50 * S, 34.7032, 113.6030),                 # 22 m from k1
    fix("x3", CALL_TS["k3"] + 290 * S, 34.7080, 113.6035),     # 46 m from k3
    fix("x5", CALL_TS["k5"] + 420 * S, 34.7085, 113.6080),     # 55 m from k5
]
ALERTS_AFTER = [
    alert("al2", T0 + 180 * S, 34.7046, 113.6015),             # ~224 m NW of k1, 3 min after
    alert("al4", T0 + 660 * S, 34.7021, 113.6030),             # 100 m S of k1 but 11 min after
]
# the clock: a venue unit pinging every 100 s up to T0+800 s, far from every call
CLOCK_DRIVER = [fix("v1", T0 + t * S, *scenario.PCORE) for t in range(100, 801, 100)]
FINAL_CLOCK = T0 + 800 * S


def brute_force_nearest(call_id: str, fixes: list[dict]) -> list[tuple[str, float]]:
    """The same by brute force: each unit's latest fix at or before the call's ts."""
    latest: dict[str, dict] = {}
    for f in fixes:
        if f["ts"] > CALL_TS[call_id]:
            continue
        if f["unit_id"] not in latest or f["ts"] > latest[f["unit_id"]]["ts"]:
            latest[f["unit_id"]] = f
    lat, lon = P[call_id]
    fresh = [f for f in latest.values()
             if f["status"] == "available" and f["ts"] >= CALL_TS[call_id] - 120 * S]
    ranked = sorted((haversine_m(lat, lon, f["lat"], f["lon"]), f["unit_id"], f["kind"]) for f in fresh)
    return ranked[:3]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_incident_timeline(deployment, workers):
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    for _ in range(workers):
        dep.start_worker()
    dep.wait_workers_joined()

    # phase 1: units and early alerts known before the calls
    dep.produce(topics.GPS, DISPATCH)
    dep.produce(topics.ALERTS, ALERTS_BEFORE)
    wait_until(lambda: dep.redis.hlen("zw:unit-info") == len(DISPATCH), what="units in Redis")
    wait_until(lambda: sum(dep.metrics().values()) == len(DISPATCH) + len(ALERTS_BEFORE), what="phase 1")

    # phase 2: the calls
    dep.produce(topics.CALLS, [call("k1", prio=1), call("k2"), call("k3"), call("k4"), call("k5"), call("k6")])
    wait_until(lambda: len({m.key for m in dep.consume_all(topics.INCIDENTS, 6, timeout=5)}) == 6,
               what="six enriched incidents")

    # phase 3: arrivals, later alerts, and a clock that moves on elsewhere
    dep.produce(topics.GPS, ARRIVALS)
    dep.produce(topics.ALERTS, ALERTS_AFTER)
    dep.produce(topics.GPS, CLOCK_DRIVER)

    def zones_done():
        docs = dep.zone_docs()
        a, b = docs.get("A"), docs.get("B")
        if not a or not b or a["clock"] != FINAL_CLOCK or b["clock"] != FINAL_CLOCK:
            return None
        return docs if a["response"]["arrived"] == 4 and b["response"]["breaches"] == 1 \
            and a["response"]["tiers_decided"] == 4 and b["response"]["tiers_decided"] == 1 else None

    docs = wait_until(zones_done, what="responses in zone state")
    assert docs["A"]["response"] == {"arrived": 4, "within_1m": 1, "within_3m": 2, "within_5m": 3,
                                     "breaches": 1, "p50_s": 150, "p90_s": 420, "tiers_met": 0, "tiers_decided": 4}
    assert docs["A"]["open_incidents"] == 0
    assert docs["B"]["response"] == {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0,
                                     "breaches": 1, "p50_s": None, "p90_s": None, "tiers_met": 0,
                                     "tiers_decided": 1}
    assert docs["B"]["open_incidents"] == 1
    assert docs["B"]["today"]["calls"] == 1 and docs["B"]["today"]["alerts"] == 0  # silent zone

    # sla.events
    sla = wait_until(lambda: (evs := [orjson.loads(m.value) for m in dep.consume_all(topics.SLA, 13, 5)])
                     and len(evs) >= 13 and evs, what="seven SLA decisions and six tiers records")
    tiers = {e["call_id"]: (tuple(e["on_scene"][t] for t in ("1m", "3m", "5m")), e["met"], e["ts"])
             for e in sla if e["type"] == "tiers"}
    assert tiers == {cid: (n, False, CALL_TS[cid] + 300 * S) for cid, n in
                     (("k1", (1, 1, 1)), ("k2", (0, 1, 1)), ("k3", (0, 0, 1)), ("k4", (0, 0, 0)),
                      ("k5", (0, 0, 0)), ("k6", (0, 0, 0)))}
    sla = [e for e in sla if e["type"] != "tiers"]
    got = sorted((e["type"], e["call_id"], e["unit_id"], e["response_s"], e["ts"]) for e in sla)
    assert got == sorted([
        ("arrived", "k1", "x1", 50.0, T0 + 50 * S),
        ("arrived", "k2", "x2", 150.0, T0 + 160 * S),
        ("arrived", "k3", "x3", 290.0, CALL_TS["k3"] + 290 * S),
        ("breach", "k4", None, None, CALL_TS["k4"] + 300 * S),
        ("breach", "k5", None, None, CALL_TS["k5"] + 300 * S),
        ("arrived", "k5", "x5", 420.0, CALL_TS["k5"] + 420 * S),
        ("breach", "k6", None, None, CALL_TS["k6"] + 300 * S),
    ])
    assert {e["call_id"]: e["zone_ids"] for e in sla}["k4"] == ["B"]
    assert {e["call_id"]: e["zone_ids"] for e in sla}["k6"] == []

    # incidents.enriched: the last record per call
    latest = {}
    for m in dep.consume_all(topics.INCIDENTS, 12, timeout=5):
        latest[m.key.decode()] = orjson.loads(m.value)
    assert set(latest) == set(P)
    for cid, rec in latest.items():
        assert rec["zones"] == {"k4": ["B"], "k6": []}.get(cid, ["A"])
        assert rec["ring"] is None and "caller" not in rec and len(rec["caller_ref"]) == 16
        got = [(u["unit_id"], u["kind"], u["distance_m"], u["eta_s"]) for u in rec["nearest_units"]]
        assert got == EXPECTED_NEAREST[cid], cid
        expected = brute_force_nearest(cid, DISPATCH)   # and the hand figures agree with brute force
        assert [u for u, *_ in EXPECTED_NEAREST[cid]] == [u for _d, u, _k in expected], cid
        for (_u, kind, dist, eta), (d, _unit, _kind) in zip(EXPECTED_NEAREST[cid], expected, strict=True):
            assert abs(dist - d) < 0.06 and eta == eta_s(d, kind)
    # the wall shows the same recommendation (k4 and k6 are still open: nobody came)
    def wall_agrees():
        wall = {cid.decode(): orjson.loads(js) for cid, js in dep.redis.hgetall("zw:incidents").items()}
        return set(wall) == {"k4", "k6"} and all(wall[c]["nearest_units"] == latest[c]["nearest_units"]
                                                 for c in wall)
    wait_until(wall_agrees, what="the wall's recommendations for k4 and k6")
    # k1: al1 (before) and al2 (after the call, re-emitted); not al3 (too far) nor al4 (too late)
    corr = {a["alert_id"]: a for a in latest["k1"]["corroborating_alerts"]}
    assert set(corr) == {"al1", "al2"}
    assert corr["al1"]["dt_s"] == -300.0 and corr["al2"]["dt_s"] == 180.0
    assert math.isclose(corr["al1"]["distance_m"], haversine_m(*P["k1"], 34.7048, 113.6030), abs_tol=0.2)
    assert all(not latest[c]["corroborating_alerts"] for c in ("k3", "k4", "k5", "k6"))

    # CONTRACT §6: no phone number in Redis, in any output topic, or in the worker logs
    leaks = find_phone_numbers(dep)
    assert leaks == [], leaks


def find_phone_numbers(dep) -> list[str]:
    needles = [p.encode() for p in PHONES.values()] + [re.sub(r"\D", "", p).encode() for p in PHONES.values()]
    found = []
    r = dep.redis
    for key in r.scan_iter("*"):
        t = r.type(key).decode()
        if t == "string":
            blobs = [r.get(key)]
        elif t == "hash":
            blobs = list(r.hgetall(key).values())
        elif t == "stream":
            blobs = [v for _id, f in r.xrange(key) for v in f.values()]
        elif t == "zset":
            blobs = r.zrange(key, 0, -1)
        elif t == "set":
            blobs = list(r.smembers(key))
        else:
            blobs = []
        for b in blobs:
            found += [f"redis {key!r}: {n!r}" for n in needles if n in b]
    for topic in topics.OUTPUT_TOPICS:
        for m in dep.consume_all(topic, 10**6, timeout=3):
            found += [f"topic {topic}: {n!r}" for n in needles if n in (m.value or b"")]
    for _proc, _port, log in dep.workers:
        text = log.read_bytes()
        found += [f"log {log.name}: {n!r}" for n in needles if n in text]
    return found


def test_rejected_calls_do_not_leak_the_number_into_the_dead_letter_topic(deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=2)
    dep.start_worker()
    bad = [b'{"call_id": "z1", "ts": 1686535200000, "lat": 95.0, "lon": 113.6, "category": "theft",'
           b' "priority": 2, "caller": "13912345678"}',
           b'{"call_id": "z2", "caller": "13912345678", "ts": ']
    dep.produce(topics.CALLS, bad)
    dead = wait_until(lambda: (d := dep.consume_all(topics.DEADLETTER, 2, timeout=3)) and len(d) == 2 and d,
                      what="two dead letters")
    for m in dead:
        rec = orjson.loads(m.value)
        assert "13912345678" not in rec["raw"] and "caller_ref" in rec["raw"], rec
    out = subprocess.run(["grep", "-r", "13912345678", str(dep.workers[0][2])], capture_output=True)
    assert out.returncode == 1  # grep: no match
