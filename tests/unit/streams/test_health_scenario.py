"""Issue 13's scenario (tests/scenario_health.py) through the worker's flow in-process
(streams.testing.Pipeline): health, reach, languages, drone levels, route segments and a point
zone, checked at two moments against the hand-computed documents, with 1 and 4 partitions and
two read orders Kafka allows."""

from __future__ import annotations

import orjson
import pytest

from contract import topics
from contract.settings import Settings
from streams.testing import Msg, Pipeline
from tests import scenario_health as sc

TOPIC = {"calls": topics.CALLS, "alerts": topics.ALERTS, "status": topics.STATUS, "gps": topics.GPS}


def phase_messages(phase: int, order: str, offset0: int = 0) -> list[Msg]:
    """One phase's messages in a read order: "published" = topic after topic, each in its list's
    order (as tests/integration publishes them); "event_time" = every topic interleaved by ts (a
    live feed). Both keep each key's records in ts order, as a Kafka partition keeps them."""
    evs = [(src, ev) for src, lst in sc.PHASES[phase].items() for ev in lst]
    if order == "event_time":
        evs.sort(key=lambda se: se[1]["ts"])  # stable: a repeated status report stays after its original
    elif order != "published":
        raise ValueError(order)
    return [Msg(TOPIC[src], 0, offset0 + i, None, orjson.dumps(ev), 1) for i, (src, ev) in enumerate(evs)]


def run(partitions: int, order: str, batch: int = 4):
    """Phase 1, quiet, documents; phase 2, quiet, documents. Returns ({phase: docs}, {phase: sla})."""
    pipe = Pipeline(Settings(zones=sc.ZONES_FILE, partitions=partitions))
    docs, sla = {}, {}
    offset = 0
    for phase in (1, 2):
        msgs = phase_messages(phase, order, offset)
        offset += len(msgs)
        before = len(pipe.sla)
        pipe.feed(msgs, batch=batch)
        pipe.finish()
        docs[phase] = pipe.documents()
        sla[phase] = pipe.sla[before:]
    assert pipe.dead == []
    return docs, sla


CASES = [(p, o) for p in (1, 4) for o in ("published", "event_time")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{p}p-{o}" for p, o in CASES])
def result(request):
    return run(*request.param)


@pytest.mark.parametrize("phase", [1, 2])
def test_documents_match_the_hand_computed_ones(result, phase):
    """Every figure but `level` (compared on its own below), zone by zone."""
    docs, _sla = result
    assert sorted(docs[phase]) == sorted(sc.ZONE_IDS)
    got = {z: sc.without_level(d) for z, d in docs[phase].items()}
    want = {z: sc.without_level(d) for z, d in sc.EXPECTED[phase].items()}
    for zid in sc.ZONE_IDS:
        assert got[zid] == want[zid], zid
    assert all(d["clock"] == sc.FINAL_CLOCK[phase] for d in docs[phase].values())


@pytest.mark.parametrize("phase", [1, 2])
def test_levels_match_the_hand_computed_ones(result, phase):
    """Phase 1 holds the drone alerts (CONTRACT §3 "Level"): a drone over the core ring makes it at
    least orange, and inner and outer (ringed) at least yellow; one over a grid changes nothing."""
    docs, _sla = result
    assert sc.levels(docs[phase]) == sc.levels(sc.EXPECTED[phase])


@pytest.mark.parametrize("phase", [1, 2])
def test_sla_events_match_the_hand_computed_ones(result, phase):
    _docs, sla = result
    assert sorted(sc.sla_tuple(e) for e in sla[phase]) == sc.EXPECTED_SLA[phase]
    assert all(sorted(e["zone_ids"]) == sc.SLA_ZONES[e["call_id"]] for e in sla[phase])


def test_reach_follows_the_unit_that_moved_and_the_unit_that_went_quiet(result):
    """The two checked moments side by side: car-1 moved from G1 to G2; car-d went quiet in D."""
    docs, _sla = result
    share = {p: {z: docs[p][z]["reach"]["within_3m"] for z in ("G1", "G2", "D")} for p in (1, 2)}
    assert share == {1: {"G1": 1.0, "G2": 0.0, "D": 0.25}, 2: {"G1": 0.0, "G2": 1.0, "D": 0.0}}
    quiet = {p: {z: docs[p][z]["health"]["units_quiet"] for z in ("G2", "D")} for p in (1, 2)}
    assert quiet == {1: {"G2": 1, "D": 0}, 2: {"G2": 1, "D": 1}}


def test_a_drone_alert_raises_ringed_zones():
    """The drone rule alone (CONTRACT §3 "Level"), without the rest of the scenario: one drone
    alert inside the core ring (so inside inner and outer too), nothing else."""
    pipe = Pipeline(Settings(zones=sc.ZONES_FILE, partitions=1))
    drone = next(a for a in sc.ALERTS_1 if a["type"] == "drone" and a["camera_id"] == "cam-dr")
    pipe.feed([Msg(topics.ALERTS, 0, 0, None, orjson.dumps(drone), 1)])
    pipe.finish()
    docs = pipe.documents()
    assert {z: docs[z]["windows"]["5m"]["alerts_by_type"] for z in ("core", "inner", "outer")} == \
        {z: {"drone": 1} for z in ("core", "inner", "outer")}
    assert sc.levels({z: docs[z] for z in ("core", "inner", "outer")}) == \
        {"core": "orange", "inner": "yellow", "outer": "yellow"}
