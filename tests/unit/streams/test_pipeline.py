"""The ingest router and partition state driven directly (no Kafka, no Redis)."""

from __future__ import annotations

import itertools
import random
from collections import namedtuple

import orjson
import pytest

from contract import topics
from contract.settings import Settings
from contract.zones import load_zones
from streams import metrics, records
from streams.routing import Router
from streams.state_stage import StateStage
from streams.testing import Pipeline
from streams.zone_index import ZoneIndex
from tests import scenario

Msg = namedtuple("Msg", "topic partition offset key value timestamp")


def settings(partitions=4):
    return Settings(zones=scenario.ZONES_FILE, partitions=partitions)


def messages(order_seed=None):
    msgs = []
    for topic, evs in ((topics.CALLS, scenario.CALLS), (topics.ALERTS, scenario.ALERTS),
                       (topics.GPS, scenario.FIXES)):
        for ev in evs:
            msgs.append((topic, orjson.dumps(ev)))
    for raw in scenario.INVALID_CALLS:
        msgs.append((topics.CALLS, raw))
    if order_seed is not None:
        # Shuffle across topics but keep each unit's fixes in order (Kafka orders per key).
        rng = random.Random(order_seed)
        rng.shuffle(msgs)
    return [Msg(t, 0, i, None, v, 1) for i, (t, v) in enumerate(msgs)]


class FakeWriter:
    async def current_versions(self, zone_ids):
        return {}


def run_pipeline(msgs, partitions=4, batch=3, sla=None, repeat=1):
    """Router -> partition states, with the incidents stage's arrival records fed back, as the
    worker does through the zone-events topic. Returns (documents by zone, dead letters)."""
    s = settings(partitions)
    zones = load_zones(s.zones)
    router = Router(s, ZoneIndex(zones))
    stage = StateStage(s, zones, FakeWriter())
    states = {p: stage.new_state(p) for p in range(partitions)}
    dead = []

    def deliver(out, clock):
        feedback = {}
        for p, recs in out.items():
            for _ in range(repeat):  # at-least-once: a batch may be delivered again
                stage.apply_batch(states[p], records.encode(clock, recs))
            _enriched, events, arrivals = stage.take_outputs(states[p])
            if sla is not None:
                sla.extend(events)
            for q, arr in arrivals.items():
                feedback.setdefault(q, []).extend(arr)
        if feedback:
            deliver(feedback, clock)

    for i in range(0, len(msgs), batch):
        out, d, _rej, _pos = router.route(msgs[i:i + batch])
        dead.extend(d)
        deliver(out, router.clock)
    docs = {}
    for st in states.values():
        for doc in st.changed_documents(all_zones=True):
            docs[doc["zone_id"]] = doc
    return docs, dead


@pytest.mark.parametrize("partitions", [1, 2, 4, 7])
def test_scenario_matches_hand_computed_states(partitions):
    sla = []
    docs, dead = run_pipeline(messages(), partitions, sla=sla)
    assert {z: scenario.strip_volatile(d) for z, d in docs.items()} == scenario.EXPECTED
    assert sorted(scenario.sla_tuple(e) for e in sla) == scenario.EXPECTED_SLA
    assert all(d["clock"] == scenario.FINAL_CLOCK for d in docs.values())
    reasons = sorted(r.split(":")[0] for _m, r in dead)
    assert reasons == ["invalid JSON", "lat 91.0 out of range -90..90", "missing field category"]


@pytest.mark.parametrize("seed", range(5))
def test_final_state_does_not_depend_on_consumption_order(seed):
    msgs = messages()
    fixes = [m for m in msgs if m.topic == topics.GPS]
    others = [m for m in msgs if m.topic != topics.GPS]
    rng = random.Random(seed)
    rng.shuffle(others)
    # interleave, keeping the fixes (one key-ordered partition per unit) in order
    merged, fi = [], iter(fixes)
    for m in others:
        merged.append(m)
        if rng.random() < 0.5:
            merged.extend(itertools.islice(fi, 1))
    merged.extend(fi)
    sla = []
    docs, _ = run_pipeline(merged, partitions=3, batch=rng.randint(1, 6), sla=sla)
    assert {z: scenario.strip_volatile(d) for z, d in docs.items()} == scenario.EXPECTED
    assert sorted(scenario.sla_tuple(e) for e in sla) == scenario.EXPECTED_SLA


def test_redelivered_batches_change_nothing():
    """At-least-once: every batch applied twice gives the same state and the same SLA events."""
    sla = []
    docs, _ = run_pipeline(messages(), partitions=2, sla=sla, repeat=2)
    assert {z: scenario.strip_volatile(d) for z, d in docs.items()} == scenario.EXPECTED
    assert sorted(scenario.sla_tuple(e) for e in sla) == scenario.EXPECTED_SLA


def test_versions_increase_and_unchanged_figures_are_not_rewritten():
    s = settings(1)
    zones = load_zones(s.zones)
    stage = StateStage(s, zones, FakeWriter())
    st = stage.new_state(0)
    rec = records.ZoneCall("x1", scenario.ms(scenario.local(12, 0, 0)), ["A"], True, 1, "theft", 2, "und")
    stage.apply_batch(st, records.encode(rec.ts, [rec]))
    first = {d["zone_id"]: d["version"] for d in st.changed_documents(all_zones=True)}
    assert first == {"A": 1, "B": 1, "outer": 1, "inner": 1, "core": 1}
    assert st.changed_documents(all_zones=True) == []  # nothing changed: no write
    st.advance_clock(rec.ts + 6 * 60_000)  # the call slides out of the 5m window
    again = st.changed_documents(all_zones=True)
    assert [(d["zone_id"], d["version"], d["windows"]["5m"]["calls"]) for d in again] == [("A", 2, 0)]


@pytest.mark.parametrize("seed", range(6))
def test_skipping_unchanged_zones_never_hides_a_change(seed):
    """Zones are re-evaluated only when dirty or when the clock crosses one of their thresholds;
    after every batch the written documents must equal a full recomputation of every zone."""
    rng = random.Random(seed)
    s = settings(2)
    zones = load_zones(s.zones)
    router = Router(s, ZoneIndex(zones))
    stage = StateStage(s, zones, FakeWriter())
    states = {p: stage.new_state(p) for p in range(2)}
    written: dict[str, dict] = {}
    pts = [scenario.PA, scenario.PAB, scenario.PB, scenario.PCORE, scenario.PIN, scenario.PNONE]
    t = scenario.ms(scenario.local(11, 23, 30))
    for step in range(300):
        t += rng.choice([1_000, 5_000, 20_000, 61_000, 130_000, 400_000])
        topic = rng.choice([topics.CALLS, topics.ALERTS, topics.GPS, topics.GPS])
        lat, lon = rng.choice(pts)
        if topic == topics.CALLS:
            ev = {"call_id": f"c{step}", "ts": t - rng.randrange(0, 600_000), "lat": lat, "lon": lon,
                  "category": "theft", "priority": rng.randint(1, 4)}
        elif topic == topics.ALERTS:
            ev = {"alert_id": f"a{step}", "camera_id": "k", "ts": t, "lat": lat, "lon": lon,
                  "type": rng.choice(["fight", "face_watchlist", "crowd_density"]), "confidence": 0.5}
        else:
            ev = {"unit_id": f"u{rng.randrange(4)}", "ts": t, "lat": lat + rng.uniform(-3e-4, 3e-4),
                  "lon": lon, "status": rng.choice(["available", "busy"])}
        out, _d, _r, _p = router.route([Msg(topic, 0, step, None, orjson.dumps(ev), 1)])
        pending = out
        while pending:
            feedback = {}
            for p, recs in pending.items():
                stage.apply_batch(states[p], records.encode(router.clock, recs))
                for q, arr in stage.take_outputs(states[p])[2].items():
                    feedback.setdefault(q, []).extend(arr)
            pending = feedback
        for st in states.values():
            for doc in st.changed_documents(all_zones=True):
                written[doc["zone_id"]] = scenario.strip_volatile(doc)
            for zid, agg in st.zones.items():
                assert written[zid] == st.figures(agg), (step, zid)


def test_a_camera_status_report_in_a_zone_counts_and_places_its_camera():
    """camera.status reports inside zones (the wall's health): counted under source "status",
    the camera known to its zones, silent once its status says offline."""
    s = settings(2)
    pipe = Pipeline(s)
    t = scenario.ms(scenario.local(12, 0, 0))
    reports = [{"camera_id": "cam-x", "ts": t, "lat": scenario.PCORE[0], "lon": scenario.PCORE[1]},
               {"camera_id": "cam-x", "ts": t + 60_000, "lat": scenario.PCORE[0], "lon": scenario.PCORE[1],
                "online": False},
               {"camera_id": "cam-x", "ts": t + 60_000, "lat": scenario.PCORE[0], "lon": scenario.PCORE[1],
                "online": False}]  # a repeat: a duplicate
    before = {o: metrics.EVENTS.labels("status", o)._value.get() for o in ("accepted", "duplicate")}
    pipe.feed([Msg(topics.STATUS, 0, i, None, orjson.dumps(r), 1) for i, r in enumerate(reports)], batch=3)
    pipe.finish()
    docs = pipe.documents()
    assert {z: docs[z]["health"]["cameras_known"] for z in ("core", "inner", "outer", "A")} == \
        {"core": 1, "inner": 1, "outer": 1, "A": 0}
    assert docs["core"]["health"]["cameras_silent"] == 1
    after = {o: metrics.EVENTS.labels("status", o)._value.get() for o in ("accepted", "duplicate")}
    assert (after["accepted"] - before["accepted"], after["duplicate"] - before["duplicate"]) == (2, 1)


def test_after_a_rebalance_a_units_next_fix_goes_everywhere_again():
    """The router's memory of where a unit's previous fix went is stale once its partition was
    read elsewhere (a rebalance): forget_devices starts afresh, as after a restart."""
    s = settings(4)
    router = Router(s, ZoneIndex(load_zones(s.zones)))
    t = scenario.ms(scenario.local(11, 9, 0))

    def fix(ts):
        ev = {"unit_id": "u1", "ts": ts, "lat": scenario.PA[0], "lon": scenario.PA[1], "status": "available"}
        out, _d, _r, _p = router.route([Msg(topics.GPS, 0, ts, None, orjson.dumps(ev), 1)])
        return {p for p, recs in out.items() if any(isinstance(r, records.IncidentFix) for r in recs)}

    assert fix(t) == set(range(4))                 # unknown unit: every partition
    assert fix(t + 5_000) != set(range(4))         # known: its homes (and its previous fix's)
    router.forget_devices()
    assert fix(t + 10_000) == set(range(4))


def test_after_a_restart_a_units_next_fix_goes_where_its_registry_position_says():
    """load_units (zw:unit-info after a start or a rebalance) stands for the unit's previous fix:
    its next fix goes to the homes of both positions, as if the router had seen that fix itself
    (its status unknown there: taken as available), and not to every partition."""
    s = settings(7)
    t = scenario.ms(scenario.local(11, 9, 0))
    far = (scenario.PA[0] + 0.05, scenario.PA[1] + 0.14)    # ~14 km away: other homes

    def fix(router, ts, where):
        ev = {"unit_id": "u1", "ts": ts, "lat": where[0], "lon": where[1], "status": "available"}
        out, _d, _r, _p = router.route([Msg(topics.GPS, 0, ts, None, orjson.dumps(ev), 1)])
        return {p for p, recs in out.items() if any(isinstance(r, records.IncidentFix) for r in recs)}

    seen = Router(s, ZoneIndex(load_zones(s.zones)))
    fix(seen, t, far)
    want = fix(seen, t + 5_000, scenario.PA)
    restarted = Router(s, ZoneIndex(load_zones(s.zones)))
    restarted.load_units({"u1": (t, far[0], far[1])})
    assert fix(restarted, t + 5_000, scenario.PA) == want != set(range(7))
    assert fix(restarted, t + 10_000, scenario.PA) == fix(seen, t + 10_000, scenario.PA)
