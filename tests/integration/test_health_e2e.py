"""Real Kafka -> Faust worker -> Redis: issue 13's hand-computed scenario (tests/scenario_health.py).

Two moments are checked: phase 1 is published and the zone documents must settle on the
hand-computed ones at its final clock; then phase 2 (a unit moves, another goes quiet, the silent
camera comes back, a priority-1 call in the rings) and the documents must settle again. Every
document read is checked against docs/schemas/zone.json (bench.harness Deployment.zone_docs),
every sla.events record against its schema (consume_all)."""

from __future__ import annotations

import orjson
import pytest

from contract import topics
from tests import scenario_health as sc
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

TOPIC = {"calls": topics.CALLS, "alerts": topics.ALERTS, "status": topics.STATUS, "gps": topics.GPS}


def publish(dep, phase: int) -> None:
    for src, evs in sc.PHASES[phase].items():
        dep.produce(TOPIC[src], evs)


def settled(dep, phase: int):
    """The documents once every event of the phase is counted, every zone carries the phase's
    final clock and every figure but `level` is the hand-computed one (an arrival loops back
    through the zone-events topic, so the final clock can be written one write before it)."""
    if dep.metrics() != {k: float(v) for k, v in sc.EXPECTED_COUNTS[phase].items()}:
        return None
    docs = dep.zone_docs()
    if sorted(docs) != sorted(sc.ZONE_IDS) or any(d["clock"] != sc.FINAL_CLOCK[phase] for d in docs.values()):
        return None
    if any(sc.without_level(docs[z]) != sc.without_level(sc.EXPECTED[phase][z]) for z in sc.ZONE_IDS):
        return None
    return docs


def wait_phase(dep, phase: int) -> dict:
    try:
        return wait_until(lambda: settled(dep, phase), timeout=90, what=f"phase {phase} settled in Redis")
    except AssertionError:
        # name the difference: counts first, then each zone's document
        assert dep.metrics() == {k: float(v) for k, v in sc.EXPECTED_COUNTS[phase].items()}
        docs = dep.zone_docs()
        for zid in sc.ZONE_IDS:
            assert zid in docs, zid
            assert sc.without_level(docs[zid]) == sc.without_level(sc.EXPECTED[phase][zid]), zid
        assert {z: d["clock"] for z, d in docs.items()} == {z: sc.FINAL_CLOCK[phase] for z in sc.ZONE_IDS}
        raise


def check_updates_and_units(dep, docs: dict, phase: int) -> None:
    # versions strictly increase per zone in the update stream; the last one is in the key
    last: dict[str, int] = {}
    for _id, fields in dep.redis.xrange("zw:zone-updates"):
        zid, version = fields[b"zone_id"].decode(), int(fields[b"version"])
        assert version > last.get(zid, 0), (zid, version, last.get(zid))
        last[zid] = version
    assert last == {z: d["version"] for z, d in docs.items()}
    # unit positions: each unit's latest fix
    for unit, (lat, lon) in sc.EXPECTED_UNIT_POSITIONS[phase].items():
        (pos,) = dep.redis.geopos("zw:units", unit)
        assert pos is not None, unit
        assert abs(pos[0] - lon) < 1e-5 and abs(pos[1] - lat) < 1e-5, (phase, unit, pos)


def test_health_scenario_through_real_kafka_and_redis(deployment):
    dep = deployment(sc.ZONES_FILE, partitions=4)
    dep.start_worker()
    # the calls must be consumed within the grace of their ts (CONTRACT §3): publish once the
    # worker's consumers are in their groups
    dep.wait_workers_joined()
    levels = {}
    n_sla = 0
    for phase in (1, 2):
        publish(dep, phase)
        docs = wait_phase(dep, phase)
        check_updates_and_units(dep, docs, phase)
        levels[phase] = sc.levels(docs)
        n_sla += len(sc.EXPECTED_SLA[phase])
        sla = wait_until(lambda n=n_sla: (r := dep.consume_all(topics.SLA, n, timeout=5)) and len(r) >= n and r,
                         timeout=60, what=f"{n_sla} sla.events records")
        got = sorted(sc.sla_tuple(orjson.loads(m.value)) for m in sla)
        assert got == sorted(sc.EXPECTED_SLA[1] + (sc.EXPECTED_SLA[2] if phase == 2 else []))
    # the phases' own figures above pass or fail on their own; the levels come last so that a
    # wrong level (phase 1 holds the drone alerts) does not hide phase 2's figures
    want = {p: sc.levels(sc.EXPECTED[p]) for p in (1, 2)}
    wrong = {f"phase {p} {z}": f"{levels[p][z]}, expected {want[p][z]}"
             for p in (1, 2) for z in sc.ZONE_IDS if levels[p][z] != want[p][z]}
    assert not wrong, f"levels unlike the hand-computed ones: {wrong}"
