"""The duty plan (CONTRACT §10, issue 26) on the real path: gateway -> Kafka -> worker -> Redis ->
gateway, against a scenario computed by hand.

Plan (T0 = 2023-06-12 10:00:00 +08:00, zones of tests/zones_test.geojson):
  phases   临战 [T0, T0+600 s), 决战 [T0+600 s, T0+1800 s) on the schedule
  post     gate   at PA (zone A), 50 m, required 临战 1 / 决战 2, forces police and auxiliary
  cp       bridge at PB (zone B), 80 m, every 300 s in 决战
Operators (POST /plan/phase, before any fix is read): 临战 from T0+1200 s, back to the schedule
from T0+1500 s, both by 值班长 王.
Fixes (every 60 s unless said): u1 (police) at the gate 0..720 s, at the bridge at 780 s, 555 m
away 840..1020 s, at the gate 1080..1620 s; u2 (auxiliary) at the gate 660..840 s, silent, at the
gate 1080..1620 s; v1 (a volunteer: does not count for the gate) at the gate at 700 and 760 s, at
the bridge at 1140 s; four units far away, one in each patrol.gps partition, all along (the
watermark holds on every partition from the start).

By hand (instants in ms after T0):
  0        phase 临战 (schedule); gate off -> manned (1 of 1: u1)
  600000   phase 决战; gate manned -> understaffed (1 of 2)
  660000   gate -> manned (u1, u2)
  780000   u1 visits the bridge; gate -> understaffed (u2)
  960001   u2's fix of 840 s goes stale (120 s and 1 ms): gate -> empty
  1080000  gate -> manned (u1, u2)
  1080001  the bridge is overdue: 300 s and 1 ms after u1's visit, in 决战 since 600 s
  1140000  v1 visits the bridge (any unit, any force): no longer overdue
  1200000  phase 临战 (operator 值班长 王): the gate needs 1 (still manned), the bridge nothing
  1500000  phase 决战 (schedule, returned by 值班长 王): the bridge's interval counts from here
Zones: A holds the gate ({required 1, manned 1} at the end), B the bridge; zones.daily of A:
understaffed 60 s + 180.001 s = 4.0 min, empty 119.999 s = 2.0 min; of B: 1 checkpoint miss.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from kafka.partitioner.default import murmur2

from contract import keys, topics
from tests import scenario
from tests.integration.conftest import wait_until
from tests.integration.test_gateway import AUTH, BackgroundReader, GatewayProcess, SSEClient
from tests.integration.test_intake import IAUTH, INGEST_TOKEN

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
T0 = int(datetime(2023, 6, 12, 10, 0, tzinfo=CST).timestamp() * 1000)
S = 1000
WANG = "值班长 王"
PLAN = f'''timezone = "Asia/Shanghai"
[[phase]]
name = "临战"; from = "2023-06-12T10:00"; to = "2023-06-12T10:10"
[[phase]]
name = "决战"; from = "2023-06-12T10:10"; to = "2023-06-12T10:30"
[[post]]
id = "gate"; name = "A区大门"; lat = {scenario.PA[0]}; lon = {scenario.PA[1]}; radius_m = 50
required = {{ "临战" = 1, "决战" = 2 }}
force = ["police", "auxiliary"]
[[checkpoint]]
id = "bridge"; name = "B区桥"; lat = {scenario.PB[0]}; lon = {scenario.PB[1]}; radius_m = 80
every_s = {{ "决战" = 300 }}
'''


def fix(unit, t_s, pt, force="police"):
    return {"unit_id": unit, "ts": T0 + t_s * S, "lat": pt[0], "lon": pt[1], "status": "available",
            "kind": "foot", "force": force}


def fixes() -> list[dict]:
    out = [fix("u1", t, scenario.PA) for t in range(0, 721, 60)]
    out.append(fix("u1", 780, scenario.PB))
    out += [fix("u1", t, scenario.PB2) for t in range(840, 1021, 60)]
    out += [fix("u1", t, scenario.PA) for t in range(1080, 1621, 60)]
    out += [fix("u2", t, scenario.PA, "auxiliary") for t in (660, 720, 780, 840)]
    out += [fix("u2", t, scenario.PA, "auxiliary") for t in range(1080, 1621, 60)]
    out += [fix("v1", 700, scenario.PA, "volunteer"), fix("v1", 760, scenario.PA, "volunteer"),
            fix("v1", 1140, scenario.PB, "volunteer")]
    warm, k = {}, 0   # one far-away unit in each of the 4 patrol.gps partitions (the producer's murmur2)
    while len(warm) < 4:
        uid = f"warm-{k}"
        warm.setdefault((murmur2(uid.encode()) & 0x7FFFFFFF) % 4, uid)
        k += 1
    out += [fix(uid, t, scenario.PNONE) for uid in warm.values() for t in range(-60, 1621, 60)]
    return sorted(out, key=lambda f: f["ts"])


def ms(t: int) -> int:
    return T0 + t


EVENTS = [
    {"type": "phase", "name": "临战", "previous": None, "source": "schedule", "by": None, "ts": ms(0)},
    {"type": "post_status", "post_id": "gate", "status": "manned", "previous": "off", "required": 1, "present": 1,
     "ts": ms(0)},
    {"type": "phase", "name": "决战", "previous": "临战", "source": "schedule", "by": None, "ts": ms(600_000)},
    {"type": "post_status", "post_id": "gate", "status": "understaffed", "previous": "manned", "required": 2,
     "present": 1, "ts": ms(600_000)},
    {"type": "post_status", "post_id": "gate", "status": "manned", "previous": "understaffed", "required": 2,
     "present": 2, "ts": ms(660_000)},
    {"type": "checkpoint_visited", "checkpoint_id": "bridge", "unit_id": "u1", "ts": ms(780_000)},
    {"type": "post_status", "post_id": "gate", "status": "understaffed", "previous": "manned", "required": 2,
     "present": 1, "ts": ms(780_000)},
    {"type": "post_status", "post_id": "gate", "status": "empty", "previous": "understaffed", "required": 2,
     "present": 0, "ts": ms(960_001)},
    {"type": "post_status", "post_id": "gate", "status": "manned", "previous": "empty", "required": 2, "present": 2,
     "ts": ms(1_080_000)},
    {"type": "checkpoint_overdue", "checkpoint_id": "bridge", "unit_id": None, "ts": ms(1_080_001)},
    {"type": "checkpoint_visited", "checkpoint_id": "bridge", "unit_id": "v1", "ts": ms(1_140_000)},
    {"type": "phase", "name": "临战", "previous": "决战", "source": "operator", "by": WANG, "ts": ms(1_200_000)},
    {"type": "phase", "name": "决战", "previous": "临战", "source": "schedule", "by": WANG, "ts": ms(1_500_000)},
]
GATE = {"post_id": "gate", "name": "A区大门", "lat": scenario.PA[0], "lon": scenario.PA[1], "radius_m": 50.0}
# the gate's documents in the order they can be (a flush writes the state at the watermark then,
# so some may be skipped, never reordered): phase, required, present, unit_ids, status, since
GATE_STATES = [(None, 0, [], "off", None), ("临战", 1, ["u1"], "manned", ms(0)),
               ("决战", 2, ["u1"], "understaffed", ms(600_000)), ("决战", 2, ["u1", "u2"], "manned", ms(660_000)),
               ("决战", 2, ["u2"], "understaffed", ms(780_000)), ("决战", 2, [], "empty", ms(960_001)),
               ("决战", 2, ["u1", "u2"], "manned", ms(1_080_000)), ("临战", 1, ["u1", "u2"], "manned", ms(1_080_000)),
               ("决战", 2, ["u1", "u2"], "manned", ms(1_080_000))]
BRIDGE = {"checkpoint_id": "bridge", "name": "B区桥", "lat": scenario.PB[0], "lon": scenario.PB[1], "radius_m": 80.0}
# last_visit, last_unit, every_s, overdue, overdue_since
BRIDGE_STATES = [(None, None, None, False, None), (None, None, 300, False, None), (ms(780_000), "u1", 300, False, None),
                 (ms(780_000), "u1", 300, True, ms(1_080_001)), (ms(1_140_000), "v1", 300, False, None),
                 (ms(1_140_000), "v1", None, False, None), (ms(1_140_000), "v1", 300, False, None)]
# name, source, by, since, previous
PHASE_STATES = [(None, "schedule", None, None, None), ("临战", "schedule", None, ms(0), None),
                ("决战", "schedule", None, ms(600_000), "临战"), ("临战", "operator", WANG, ms(1_200_000), "决战"),
                ("决战", "schedule", WANG, ms(1_500_000), "临战")]


def gate_doc(state) -> dict:
    phase, required, units, status, since = state
    return {**GATE, "phase": phase, "required": required, "present": len(units), "unit_ids": units,
            "status": status, "since": since}


def bridge_doc(state) -> dict:
    lv, lu, every, overdue, since = state
    return {**BRIDGE, "last_visit": lv, "last_unit": lu, "every_s": every, "overdue": overdue, "overdue_since": since}


def phase_doc(state) -> dict:
    return dict(zip(("name", "source", "by", "since", "previous"), state, strict=True))


def _without_version(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "version"}


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _a_subsequence(seen: list[dict], states: list[dict]) -> bool:
    it = iter(states)
    return all(any(s == x for x in it) for s in seen)


def test_a_hand_computed_duty_day_through_kafka_worker_redis_and_gateway(deployment, tmp_path):
    dep = deployment(scenario.ZONES_FILE, partitions=3)
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    dep.env["ZONEWATCH_PLAN"] = str(plan)
    dep.start_worker()
    gw = GatewayProcess(dep, env={"ZONEWATCH_INGEST_TOKENS": INGEST_TOKEN, "ZONEWATCH_PLAN": str(plan)})
    try:
        post = lambda body, headers=IAUTH: httpx.post(f"{gw.url}/plan/phase", json=body, headers=headers,  # noqa: E731
                                                      timeout=30)
        # refusals first: a read token, no token, a name the plan does not know, no `by`
        assert post({"name": "决战", "by": WANG}, headers=AUTH).status_code == 403
        assert post({"name": "决战", "by": WANG}, headers={}).status_code == 401
        bad = post({"name": "三级", "by": WANG, "ts": ms(1_200_000)})
        assert bad.status_code == 400 and "三级" not in bad.json()["error"] and "临战" in bad.json()["error"]
        assert post({"name": "临战", "ts": ms(1_200_000)}).status_code == 400
        # the two commands, in Kafka before the answers (and before any fix is read)
        sent = [post({"name": "临战", "by": WANG, "ts": ms(1_200_000)}),
                post({"name": None, "by": WANG, "ts": "2023-06-12T10:25:00+08:00"})]
        assert [r.status_code for r in sent] == [200, 200], [r.text for r in sent]
        cmds = [r.json() for r in sent]
        assert [(c["type"], c["name"], c["by"], c["ts"]) for c in cmds] == [
            ("phase", "临战", WANG, ms(1_200_000)), ("phase", None, WANG, ms(1_500_000))]
        logged = [orjson.loads(m.value) for m in dep.read_topic(topics.PLAN_COMMANDS)]
        assert logged == cmds   # the audit trail of who set what

        # a wall connected all along: `posts` (the duty documents), then the zones' snapshot
        live = BackgroundReader(SSEClient(gw.url, incidents=True))
        dep.produce(topics.GPS, fixes())
        final_gate, final_bridge = gate_doc(GATE_STATES[-1]), bridge_doc(BRIDGE_STATES[-1])
        final_phase = phase_doc(PHASE_STATES[-1])

        def settled():
            got = [dep.redis.get(k) for k in (keys.post("gate"), keys.checkpoint("bridge"), keys.PHASE)]
            if None in got:
                return False
            docs = [_without_version(orjson.loads(g)) for g in got]
            return docs == [final_gate, final_bridge, final_phase] and len(
                dep.read_topic(topics.DUTY)) >= len(EVENTS)

        wait_until(settled, timeout=180, what="the duty documents at the end of the day")

        # duty.events: exactly the hand-written records (at least once: a record may repeat after a
        # takeover, none here), each with its key and schema
        records = dep.consume_all(topics.DUTY, expect=len(EVENTS))
        got = [orjson.loads(m.value) for m in records]
        assert sorted(map(orjson.dumps, got)) == sorted(map(orjson.dumps, EVENTS)), got
        assert [m.key.decode() for m in records] == [e.get("post_id") or e.get("checkpoint_id") or "phase"
                                                     for e in got]

        # Redis: the documents, the indexes, every zw:post-updates entry
        assert dep.redis.smembers(keys.POSTS) == {b"gate"} and dep.redis.smembers(keys.CHECKPOINTS) == {b"bridge"}
        entries = dep.redis.xrange(keys.POST_UPDATES)
        by: dict[tuple[str, str], list[dict]] = {}
        for _sid, f in entries:
            doc = orjson.loads(f[b"state"])
            assert int(f[b"version"]) == doc["version"]
            by.setdefault((f[b"type"].decode(), f[b"id"].decode()), []).append(doc)
        assert set(by) == {("post", "gate"), ("checkpoint", "bridge"), ("phase", "phase")}
        for docs in by.values():
            versions = [d["version"] for d in docs]
            assert versions == sorted(set(versions)), versions   # strictly increasing
        assert _a_subsequence([_without_version(d) for d in by["post", "gate"]], [gate_doc(s) for s in GATE_STATES])
        assert _a_subsequence([_without_version(d) for d in by["checkpoint", "bridge"]],
                              [bridge_doc(s) for s in BRIDGE_STATES])
        assert _a_subsequence([_without_version(d) for d in by["phase", "phase"]],
                              [phase_doc(s) for s in PHASE_STATES])
        assert [_without_version(by[k][-1]) for k in (("post", "gate"), ("checkpoint", "bridge"), ("phase", "phase"))] \
            == [final_gate, final_bridge, final_phase]
        for typ_id, key in ((("post", "gate"), keys.post("gate")),
                            (("checkpoint", "bridge"), keys.checkpoint("bridge")), (("phase", "phase"), keys.PHASE)):
            assert orjson.loads(dep.redis.get(key)) == by[typ_id][-1]   # the document is its last entry

        # the zones: A holds the gate, B the bridge
        zones = dep.zone_docs()
        assert zones["A"]["posts"] == {"required": 1, "manned": 1, "understaffed": 0, "empty": 0}
        assert all(zones[z]["posts"] == {"required": 0, "manned": 0, "understaffed": 0, "empty": 0}
                   for z in zones if z != "A")

        # the gateway
        assert gw.get("/posts").json() == [orjson.loads(dep.redis.get(keys.post("gate")))]
        assert gw.get("/checkpoints").json() == [orjson.loads(dep.redis.get(keys.checkpoint("bridge")))]
        assert _without_version(gw.get("/plan/phase").json()) == final_phase

        # zones.daily: the day's post-minutes and checkpoint misses
        def daily():
            latest = {}
            for m in dep.read_topic(topics.ZONES_DAILY):
                latest[m.key.decode()] = orjson.loads(m.value)
            a, b = latest.get("2023-06-12|A"), latest.get("2023-06-12|B")
            return (a and b and (a["post_minutes_understaffed"], a["post_minutes_empty"], a["checkpoint_misses"],
                                 b["post_minutes_understaffed"], b["post_minutes_empty"], b["checkpoint_misses"]))

        wait_until(lambda: daily() == (4.0, 2.0, 0, 0.0, 0.0, 1), timeout=60, what="zones.daily's duty figures")

        # /stream: the live wall got every zw:post-updates entry after its `posts` snapshot as a
        # `post` event, each id its position in both streams; one that resumes from any of those
        # ids gets exactly the entries of both streams after it
        seen = []
        while True:
            try:
                seen.append(live.get(timeout=5))
            except Exception:   # quiet: everything up to now has been read
                break
        live.stop()
        kinds = [e["event"] for e in seen]
        assert kinds[:3] == ["posts", "snapshot", "incidents"], kinds[:5]
        snap_zone, _, snap_post = seen[1]["id"].partition(".")
        first_docs = {(d["type"], d["state"].get("post_id") or d["state"].get("checkpoint_id") or "phase")
                      for d in orjson.loads(seen[0]["data"])}
        assert first_docs <= {("post", "gate"), ("checkpoint", "bridge"), ("phase", "phase")}
        post_events = [e for e in seen if e["event"] == "post"]
        after = [(sid.decode(), f) for sid, f in entries if _key(sid.decode()) > _key(snap_post)]
        assert [orjson.loads(e["data"]) for e in post_events] == [
            {"type": f[b"type"].decode(), "state": orjson.loads(f[b"state"])} for _sid, f in after]
        assert [e["id"].partition(".")[2] for e in post_events] == [sid for sid, _f in after]
        zone_ids = {i.decode() for i, _ in dep.redis.xrange(keys.ZONE_UPDATES)}
        assert all(e["id"].partition(".")[0] in zone_ids | {snap_zone} for e in post_events)
        mid = post_events[len(post_events) // 2]["id"]
        z, _, p = mid.partition(".")
        resumed = SSEClient(gw.url, last_event_id=mid, incidents=True)
        try:
            got = []
            while (ev := resumed.next_event(timeout=5)) is not None:
                got.append(ev)
        finally:
            resumed.close()
        want_posts = [sid.decode() for sid, _ in dep.redis.xrange(keys.POST_UPDATES, f"({p}", "+")]
        want_zones = [sid.decode() for sid, _ in dep.redis.xrange(keys.ZONE_UPDATES, f"({z}", "+")]
        assert [e["id"].partition(".")[2] for e in got if e["event"] == "post"] == want_posts
        assert [e["id"].partition(".")[0] for e in got if e["event"] == "zone"] == want_zones
        assert want_posts and not [e for e in got if e["event"] in ("snapshot", "posts", "resync")]
    finally:
        gw.stop()
