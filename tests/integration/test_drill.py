"""`zonewatch drill` (CONTRACT §11, issue 27) on a real Kafka and Redis, beside a live worker.

The recorded day (SCENARIO below, seeded): 40 minutes from T0 = 2023-06-12 10:00 +08:00 over two
grid cells and a ring inside one of them, a call a minute, each answered (or not) by a unit that
drives to it after a chosen delay, units patrolling, one unit parked in each patrol.gps partition
far away (the watermark holds on every partition from the start), and a duty plan with a post
and a checkpoint. A live deployment (the harness's) consumes it; then:

- the drill of [T0, T0 + 40 min) read from the live input topics: every figure of its baseline
  equals what the live pipeline computed: per zone against the live zones.daily records, and the
  sla.events records themselves (kept with --keep to be read) equal the live ones;
- meanwhile the live state does not change (every key of its Redis database, its groups' committed
  offsets, its topics and their end offsets), and without --keep nothing of the drill is left
  (topics, groups, Redis databases);
- a variant with other zones (north/south halves instead of west/east) and other rules, and a
  --deploy file, from --input: its figures and the estimate equal a brute-force computation here
  from the scenario (not the pipeline's code): zones by rectangle, arrival = the first fix within
  100 m at or after the call, a deployed unit's ETA = great-circle metres × 1.3 / its speed.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.partitioner.default import murmur2

from contract import keys, redisurl, topics
from tests.integration.conftest import REPO, wait_until

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
T0 = int(datetime(2023, 6, 12, 10, 0, tzinfo=CST).timestamp() * 1000)
S = 1000
MINUTES = 40
T1 = T0 + MINUTES * 60 * S
# the grid: west [113.60, 113.62] and east [113.62, 113.64] × [34.70, 34.72]; a ring inside west
BOX = (113.60, 34.70, 113.64, 34.72)
RECORD_ZONES = {"west": (113.60, 34.70, 113.62, 34.72), "east": (113.62, 34.70, 113.64, 34.72),
                "ring": (113.605, 34.705, 113.612, 34.712)}
VARIANT_ZONES = {"south": (113.60, 34.70, 113.64, 34.71), "north": (113.60, 34.71, 113.64, 34.72)}
GATE = (34.708, 113.608)      # in west and ring
BRIDGE = (34.712, 113.632)    # in east
PLAN = f'''timezone = "Asia/Shanghai"
[[phase]]
name = "决战"; from = "2023-06-12T10:00"; to = "2023-06-12T10:40"
[[post]]
id = "gate"; name = "大门"; lat = {GATE[0]}; lon = {GATE[1]}; radius_m = 50
required = {{ "决战" = 2 }}
[[checkpoint]]
id = "bridge"; name = "桥"; lat = {BRIDGE[0]}; lon = {BRIDGE[1]}; radius_m = 80
every_s = {{ "决战" = 300 }}
'''
#: what-if units (`--deploy`): a foot patrol at the ring's centre for the first 20 minutes, a car
#: at the east cell's centre all along
DEPLOY = {"F": ("foot", 34.7085, 113.6085, T0, T0 + 20 * 60 * S), "K": ("car", 34.71, 113.63, T0, T1)}
DEPLOY_TOML = "".join(f'[[unit]]\nid = "{u}"; kind = "{k}"; lat = {la}; lon = {lo}; from = {a}; to = {b}\n'
                      for u, (k, la, lo, a, b) in DEPLOY.items())
#: km/h would do as well; these are the reach speeds of CONTRACT §3 (m/s)
SPEEDS = {"foot": 1.4, "car": 8.3}
#: a responder's delay after the call, by call index modulo 6 (None: nobody comes)
DELAYS = (40, 150, 250, 420, None, 90)
ARRIVAL_M = 100.0


def zones_geojson(rects: dict) -> str:
    feats = [{"type": "Feature", "id": zid, "properties": {"name": zid, "kind": "grid"},
              "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
             for zid, (x0, y0, x1, y1) in rects.items()]
    return json.dumps({"type": "FeatureCollection", "features": feats})


def _fix(unit, ts, lat, lon):
    return {"unit_id": unit, "ts": ts, "lat": round(lat, 6), "lon": round(lon, 6), "status": "available",
            "kind": "car", "force": "police"}


def scenario() -> list[tuple[str, dict]]:
    """(topic, record) of the recorded day, in `ts` order."""
    rnd = random.Random(27)
    calls, fixes = [], []
    for i in range(MINUTES):
        ts = T0 + i * 60 * S + rnd.randrange(0, 50) * S
        lat, lon = rnd.uniform(34.7005, 34.7195), rnd.uniform(113.6005, 113.6395)
        calls.append({"call_id": f"c{i}", "ts": ts, "lat": round(lat, 6), "lon": round(lon, 6),
                      "category": "theft", "priority": 1 + i % 4})
        delay = DELAYS[i % len(DELAYS)]
        if delay is not None:   # the responder: on its way 300 m off, then there
            unit = f"r{i % 5}"
            fixes.append(_fix(unit, ts + delay * S // 2, lat + 0.0027, lon))
            fixes.append(_fix(unit, ts + delay * S, lat + 0.0002, lon))
            if i % 3 == 0:      # a second unit for the tiers
                fixes.append(_fix(f"r{(i + 1) % 5}", ts + (delay + 30) * S, lat, lon + 0.0003))
    for t in range(0, MINUTES * 60, 30):   # two units at the gate for the first half, one later
        fixes.append(_fix("g1", T0 + t * S, *GATE))
        if t < MINUTES * 30 or t > MINUTES * 50:
            fixes.append(_fix("g2", T0 + t * S + 5 * S, GATE[0] + 0.0001, GATE[1]))
        if t % 600 == 0:        # the bridge visited every 10 min: overdue after 5
            fixes.append(_fix("p1", T0 + t * S + 7 * S, *BRIDGE))
    warm, k = {}, 0   # one far-away unit in each of the 4 patrol.gps partitions (the producer's murmur2)
    while len(warm) < 4:
        uid = f"warm-{k}"
        warm.setdefault((murmur2(uid.encode()) & 0x7FFFFFFF) % 4, uid)
        k += 1
    fixes += [_fix(uid, T0 + t * S, 34.0, 113.0) for uid in warm.values() for t in range(-60, MINUTES * 60 + 1, 20)]
    events = [(topics.CALLS, c) for c in calls] + [(topics.GPS, f) for f in fixes]
    return sorted(events, key=lambda te: te[1]["ts"])


# --- the oracle: brute force over the scenario, apart from the pipeline's code ---------------------

def _metres(lat1, lon1, lat2, lon2) -> float:
    """Equirectangular distance: within 100 m it is the haversine's to a few millimetres."""
    k = math.pi / 180
    x = (lon2 - lon1) * k * math.cos((lat1 + lat2) / 2 * k)
    return 6371000.0 * math.hypot(x, (lat2 - lat1) * k)


def _haversine(lat1, lon1, lat2, lon2) -> float:
    """Great-circle metres on the sphere Redis GEO uses (CONTRACT §3's straight line)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6372797.560856 * math.asin(math.sqrt(a))


def _deployed_eta(c: dict) -> int | None:
    etas = [round(_haversine(la, lo, c["lat"], c["lon"]) * 1.3 / SPEEDS[k])
            for k, la, lo, a, b in DEPLOY.values() if a <= c["ts"] < b]
    return min(etas) if etas else None


def oracle(events, rects: dict, deployed: bool = False) -> dict:
    """FIG's call figures per zone and overall (each call once) for the calls of [T0, T1); with
    `deployed`, the --deploy estimate: each call's response the smaller of its arrival and the
    nearest available deployed unit's ETA, a breach only when that is still above 300 s."""
    fixes = [e for t, e in events if t == topics.GPS]
    clock = max(e["ts"] for _t, e in events)
    out = {z: [] for z in rects} | {"overall": []}
    for t, c in events:
        if t != topics.CALLS or not T0 <= c["ts"] < T1:
            continue
        near = [f for f in fixes if f["ts"] >= c["ts"] and _metres(c["lat"], c["lon"], f["lat"], f["lon"]) <= ARRIVAL_M]
        first = min((f["ts"] for f in near), default=None)
        resp = None if first is None or first - c["ts"] > 3600 * S else (first - c["ts"]) / 1000
        if deployed:
            resp = min((x for x in (resp, _deployed_eta(c)) if x is not None), default=None)
        units = [len({f["unit_id"] for f in near if f["ts"] <= c["ts"] + w * S}) for w in (60, 180, 300)]
        decided = clock >= c["ts"] + 300 * S
        rec = {"resp": resp, "breach": decided and (resp is None or resp > 300),
               "tiers": (all(n >= r for n, r in zip(units, (1, 2, 3), strict=True)) if decided else None)}
        if deployed:
            del rec["tiers"]
        out["overall"].append(rec)
        for z, (x0, y0, x1, y1) in rects.items():
            if x0 < c["lon"] < x1 and y0 < c["lat"] < y1:
                out[z].append(rec)
    figs = {}
    for z, recs in out.items():
        times = sorted(round(r["resp"]) for r in recs if r["resp"] is not None)
        figs[z] = {"calls": len(recs), "arrived": len(times),
                   "within_1m": sum(t <= 60 for t in times), "within_3m": sum(t <= 180 for t in times),
                   "within_5m": sum(t <= 300 for t in times), "breaches": sum(r["breach"] for r in recs),
                   "p50_s": _rank(times, 50), "p90_s": _rank(times, 90)}
        if not deployed:
            figs[z].update(tiers_met=sum(r["tiers"] is True for r in recs),
                           tiers_decided=sum(r["tiers"] is not None for r in recs))
    return figs


def _rank(ordered: list[int], percent: int) -> int | None:
    """Nearest rank: the value at rank ceil(percent/100 × n)."""
    return ordered[math.ceil(percent * len(ordered) / 100) - 1] if ordered else None


# --- helpers ------------------------------------------------------------------------------------

def run_drill(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zonewatch.cli", "drill", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _daily(dep) -> dict:
    return {m.key.decode(): orjson.loads(m.value) for m in dep.read_topic(topics.ZONES_DAILY)}


def _live_state(dep) -> dict:
    """Everything of the live deployment a drill could touch: every key of its Redis database
    (DUMP: type and value), its topics, the end offsets of its public (input and output) topics and
    its ingest group's committed offsets. Not the offsets of its internal topics nor of its state
    group on them: an idle worker keeps writing its own ticks and snapshots there (seen: ~1 record
    a second per partition), drill or not; only it writes them (their names carry its app id)."""
    r = dep.redis
    redis_state = {k: r.dump(k) for k in sorted(r.keys("*"))}
    s = dep.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka)
    consumer = KafkaConsumer(bootstrap_servers=s.kafka, group_id=None)
    try:
        ingest = f"{s.app_id}-ingest"
        groups = {ingest: sorted((tp.topic, tp.partition, o.offset)
                                 for tp, o in admin.list_group_offsets(ingest)[ingest].items()),
                  s.app_id: sorted({tp.topic for tp in admin.list_group_offsets(s.app_id)[s.app_id]})}
        names = sorted(t for t in admin.list_topics() if (t.startswith(s.topic_prefix) or t.startswith(s.app_id))
                       and "drill-" not in t)   # a drill's own names carry the live prefix and "drill-"
        consumer.topics()   # the metadata of every topic, so that partitions_for_topic knows them all
        public = [s.topic(t) for t in (*topics.INPUT_TOPICS, *topics.OUTPUT_TOPICS, topics.PLAN_COMMANDS)]
        tps = [TopicPartition(t, p) for t in public for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = sorted((tp.topic, tp.partition, o) for tp, o in consumer.end_offsets(tps).items())
    finally:
        consumer.close()
        admin.close()
    return {"redis": redis_state, "groups": groups, "topics": names, "ends": ends}


def _drill_leftovers(dep) -> dict:
    """The drill names of this live deployment still on the cluster, and the Redis databases
    (other than the live one) that hold keys."""
    s = dep.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka)
    try:
        left_topics = [t for t in admin.list_topics() if t.startswith(f"{s.topic_prefix}drill-")
                       or t.startswith(f"{s.app_id}-drill-")]
        left_groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(f"{s.app_id}-drill-")]
    finally:
        admin.close()
    busy = []
    for db in range(16):
        if db == dep.db:
            continue
        c = redisurl.sync_client(redisurl.with_db(dep.env["ZONEWATCH_REDIS"], db))
        if c.dbsize():
            busy.append(db)
        c.close()
    return {"topics": left_topics, "groups": left_groups, "redis_dbs": busy}


def _delete_kept(dep, spare: list[int]) -> None:
    """Delete what a drill with --keep kept: its topics, groups and Redis databases (not `spare`)."""
    s = dep.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(f"{s.topic_prefix}drill-")
                or t.startswith(f"{s.app_id}-drill-")]
        if mine:
            admin.delete_topics(mine)
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(f"{s.app_id}-drill-")]
        if groups:
            admin.delete_groups(groups)
    finally:
        admin.close()
    for db in range(16):
        if db != dep.db and db not in spare:
            redisurl.sync_client(redisurl.with_db(dep.env["ZONEWATCH_REDIS"], db)).flushdb()


@pytest.fixture(scope="module")
def recorded(stack, tmp_path_factory):
    """The live deployment after it consumed the recorded day, settled."""
    from bench.harness import Deployment

    d = tmp_path_factory.mktemp("drill")
    (d / "record.geojson").write_text(zones_geojson(RECORD_ZONES))
    (d / "variant.geojson").write_text(zones_geojson(VARIANT_ZONES))
    (d / "plan.toml").write_text(PLAN, encoding="utf-8")
    (d / "deploy.toml").write_text(DEPLOY_TOML)
    events = scenario()
    (d / "day.jsonl").write_text("".join(json.dumps({"topic": t, **e}) + "\n" for t, e in events))
    dep = Deployment(stack, d / "record.geojson", partitions=4)
    dep.env["ZONEWATCH_PLAN"] = str(d / "plan.toml")
    # in `ts` order across the topics, as live input comes (all calls first would let the clock
    # run ahead of the fixes and decide breaches before the fixes that prevent them are read), and
    # before the worker starts: it reads the day as a backlog, every partition at hand (a worker
    # racing the publisher on a busy machine can read a partition more than the grace behind)
    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=5)
    for topic, e in events:
        prod.send(dep.settings.topic(topic), orjson.dumps(e), key=str(e[topics.KEY_FIELD[topic]]).encode())
    prod.flush()
    prod.close()
    dep.start_worker()
    dep.wait_workers_joined()
    n_calls = sum(t == topics.CALLS for t, _e in events)
    # settled: every call has its enriched record and every decided one its tiers, and nothing changes
    decided = sum(1 for t, e in events if t == topics.CALLS and e["ts"] + 300 * S <= max(x["ts"] for _t, x in events))
    wait_until(lambda: len(dep.read_topic(topics.INCIDENTS)) >= n_calls and sum(
        orjson.loads(m.value)["type"] == "tiers" for m in dep.read_topic(topics.SLA)) >= decided,
        timeout=180, what="live run decided")
    last = [None]

    def still():
        now = (_live_state(dep)["ends"], dep.redis.xlen(keys.ZONE_UPDATES))
        same, last[0] = now == last[0], now
        return same

    wait_until(still, timeout=120, interval=15, what="live outputs quiet")
    yield {"dep": dep, "dir": d, "events": events}
    dep.close()


def _fig_fields(daily: dict) -> dict:
    r = daily["response"]
    return {"calls": daily["calls"], **{k: r[k] for k in ("arrived", "within_1m", "within_3m", "within_5m", "breaches",
                                                             "p50_s", "p90_s", "tiers_met", "tiers_decided")},
            **{k: daily.get(k, 0) for k in ("post_minutes_understaffed", "post_minutes_empty", "checkpoint_misses")}}


def test_baseline_equals_the_live_run_and_the_live_state_is_untouched(recorded):
    dep, env = recorded["dep"], {**recorded["dep"].env, "ZONEWATCH_PLAN": str(recorded["dir"] / "plan.toml")}
    before, dbs_before = _live_state(dep), _drill_leftovers(dep)["redis_dbs"]
    res = run_drill(env, "--from", str(T0), "--to", str(T1), "--format", "json", "--keep")
    try:
        _check_baseline(recorded, res, before)
    finally:   # what --keep kept goes, whatever failed
        _delete_kept(dep, spare=dbs_before)
    assert _drill_leftovers(dep) == {"topics": [], "groups": [], "redis_dbs": dbs_before}


def _check_baseline(recorded, res, before) -> None:
    dep = recorded["dep"]
    assert res.returncode == 0, res.stderr[-3000:]
    got = orjson.loads(res.stdout)
    assert _live_state(dep) == before
    assert list(got) == ["from", "to", "baseline", "variant", "estimate"]
    base = got["baseline"]
    # the baseline's call figures also equal the brute force over the recorded day
    want = oracle(recorded["events"], RECORD_ZONES)
    for zid, fig in want.items():
        have = base["overall"] if zid == "overall" else base["zones"][zid]
        assert {k: have[k] for k in fig} == fig, zid
    # and the kept baseline's sla.events records are the live ones
    admin = KafkaAdminClient(bootstrap_servers=dep.settings.kafka)
    kept = [t for t in admin.list_topics()
            if t.startswith(dep.settings.topic_prefix + "drill-") and t.endswith("-base." + topics.SLA)]
    admin.close()
    assert len(kept) == 1
    consumer = KafkaConsumer(bootstrap_servers=dep.settings.kafka, group_id=None)
    tps = [TopicPartition(kept[0], p) for p in sorted(consumer.partitions_for_topic(kept[0]))]
    ends = consumer.end_offsets(tps)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    drilled = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for msgs in consumer.poll(timeout_ms=1000).values():
            drilled += [orjson.loads(m.value) for m in msgs]
    consumer.close()
    live = [orjson.loads(m.value) for m in dep.read_topic(topics.SLA)]
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert sorted(map(key, drilled)) == sorted(map(key, live))
    assert len(live) >= 40
    # every zone figure equals the live zones.daily of the day (the period holds the whole recorded day)
    daily = {k.split("|", 1)[1]: v for k, v in _daily(dep).items() if k.startswith("2023-06-12|")}
    assert set(daily) == set(RECORD_ZONES) == set(base["zones"])
    for zid, rec in daily.items():
        want = _fig_fields(rec)
        assert {k: base["zones"][zid][k] for k in want} == want, zid
    for zid in RECORD_ZONES:   # and with the live sla.events (a day's breach undone by a late arrival's feedback)
        breached = {r["call_id"] for r in live if r["type"] == "breach" and zid in r["zone_ids"]}
        assert base["zones"][zid]["breaches"] == len(breached), zid
    assert base["zones"]["west"]["post_minutes_understaffed"] > 0 and base["zones"]["east"]["checkpoint_misses"] > 0


def test_variant_equals_an_independent_computation_and_nothing_is_left(recorded):
    dep, d = recorded["dep"], recorded["dir"]
    env = {**dep.env, "ZONEWATCH_PLAN": str(d / "plan.toml")}
    before, left_before = _live_state(dep), _drill_leftovers(dep)
    res = run_drill(env, "--from", str(T0), "--to", str(T1), "--input", str(d / "day.jsonl"),
                    "--zones", str(d / "variant.geojson"), "--rules", str(REPO / "deploy/k8s/base/rules.toml"),
                    "--deploy", str(d / "deploy.toml"), "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _live_state(dep) == before
    assert _drill_leftovers(dep) == left_before   # its topics, groups and Redis databases are gone
    got = orjson.loads(res.stdout)
    assert set(got["variant"]["zones"]) == set(VARIANT_ZONES) and set(got["baseline"]["zones"]) == set(RECORD_ZONES)
    for side, rects in (("baseline", RECORD_ZONES), ("variant", VARIANT_ZONES)):
        want = oracle(recorded["events"], rects)
        for zid, fig in want.items():
            have = got[side]["overall"] if zid == "overall" else got[side]["zones"][zid]
            assert {k: have[k] for k in fig} == fig, (side, zid)
    # the what-if units answer the recorded calls of the deployment of record
    want = oracle(recorded["events"], RECORD_ZONES, deployed=True)
    est = got["estimate"]
    for zid, fig in want.items():
        have = est["overall"] if zid == "overall" else est["zones"][zid]
        assert {k: have[k] for k in fig} == fig, ("estimate", zid)
        assert all(have[k] is None for k in have if k not in fig)
    assert est["overall"]["within_3m"] > got["baseline"]["overall"]["within_3m"]   # the units made a difference
    # the variant moved calls between zones, not in or out of the period
    assert got["variant"]["overall"]["calls"] == got["baseline"]["overall"]["calls"] == MINUTES
    assert "progress" not in res.stdout and "drill: replaying" in res.stderr
