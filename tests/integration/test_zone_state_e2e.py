"""Real Kafka -> Faust worker -> Redis: the hand-computed scenario of tests/scenario.py."""

from __future__ import annotations

import orjson
import pytest

from contract import topics
from tests import scenario
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def publish_scenario(dep) -> None:
    dep.produce(topics.CALLS, scenario.CALLS[:4])
    dep.produce(topics.CALLS, scenario.INVALID_CALLS)
    dep.produce(topics.ALERTS, scenario.ALERTS)
    dep.produce(topics.CALLS, scenario.CALLS[4:])
    dep.produce(topics.GPS, scenario.FIXES)


def settled(dep, port=None):
    """True when every event was counted and every zone reflects the final clock."""
    counts = dep.metrics(port)
    total = sum(counts.values())
    docs = dep.zone_docs()
    done = (total == sum(scenario.EXPECTED_COUNTS.values()) and len(docs) == len(scenario.EXPECTED)
            and all(d["clock"] == scenario.FINAL_CLOCK for d in docs.values()))
    return done and docs


def wait_final_state(dep, port=None, what="scenario settled in Redis") -> dict:
    """Wait until the scenario settled and every document equals EXPECTED: a call's arrival loops
    back through the zone-events topic, so the documents can carry the final clock one write before
    the arrival lands. On timeout, fail with check_final_state's difference."""
    def done():
        docs = settled(dep, port)
        return docs and all(scenario.strip_volatile(d) == scenario.EXPECTED.get(z) for z, d in docs.items()) \
            and docs
    try:
        return wait_until(done, timeout=60, what=what)
    except AssertionError:
        check_final_state(dep, dep.zone_docs())
        raise


def check_final_state(dep, docs) -> None:
    assert {z: scenario.strip_volatile(d) for z, d in docs.items()} == scenario.EXPECTED
    # versions strictly increase per zone in the update stream, and the last one is in the key
    entries = dep.redis.xrange("zw:zone-updates")
    last: dict[str, int] = {}
    for _id, fields in entries:
        zid, version = fields[b"zone_id"].decode(), int(fields[b"version"])
        assert version > last.get(zid, 0), (zid, version, last.get(zid))
        last[zid] = version
        assert orjson.loads(fields[b"state"])["version"] == version
    assert last == {z: d["version"] for z, d in docs.items()}
    # unit positions: the latest fix of each unit, not the last one consumed
    for unit, (lat, lon) in scenario.EXPECTED_UNIT_POSITIONS.items():
        (pos,) = dep.redis.geopos("zw:units", unit)
        assert pos is not None, unit
        assert abs(pos[0] - lon) < 1e-5 and abs(pos[1] - lat) < 1e-5, (unit, pos)


def test_scenario_through_real_kafka_and_redis(deployment):
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    port = dep.start_worker()
    # the expected response figures need the calls consumed before the fixes that carry the final
    # clock (a call consumed after clock > ts + grace is "consumed late", not measured): publish
    # only once the worker's consumers are in their groups
    dep.wait_workers_joined()
    pubsub = dep.redis.pubsub()
    pubsub.subscribe("zw:zone:core")
    publish_scenario(dep)
    docs = wait_final_state(dep)
    check_final_state(dep, docs)
    assert dep.metrics() == {k: float(v) for k, v in scenario.EXPECTED_COUNTS.items()}

    # PUBLISH carried the core zone's updates
    published = []
    for _ in range(50):
        msg = pubsub.get_message(timeout=0.2)
        if msg and msg["type"] == "message":
            published.append(orjson.loads(msg["data"]))
    assert published and published[-1] == docs["core"]

    # the three invalid messages are in the dead-letter topic with their reasons
    dead = dep.consume_all(topics.DEADLETTER, 3)
    recs = sorted((orjson.loads(m.value) for m in dead), key=lambda r: r["reason"])
    assert [r["reason"].split(":")[0] for r in recs] == [
        "invalid JSON", "lat 91.0 out of range -90..90", "missing field category"]
    assert all(r["topic"] == dep.settings.topic(topics.CALLS) for r in recs)
    assert recs[0]["raw"] == scenario.INVALID_CALLS[0].decode()

    text = dep.metrics_text(port)
    for name in ("zonewatch_e2e_latency_seconds_count", "zonewatch_event_age_seconds_count",
                 "zonewatch_zone_writes_total"):
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
        assert values and sum(values) > 0, name


def test_restarted_worker_rebuilds_state_and_keeps_counting(deployment):
    """A worker stopped after part of the input and a new one started: state continues exactly."""
    dep = deployment(scenario.ZONES_FILE, partitions=3)
    dep.start_worker()
    dep.produce(topics.CALLS, scenario.CALLS[:4])
    dep.produce(topics.ALERTS, scenario.ALERTS[:2])
    wait_until(lambda: sum(dep.metrics().values()) == 6, what="first half counted")
    wait_until(lambda: dep.zone_docs().get("A", {}).get("today", {}).get("date") == "2023-06-12",
               what="first half in Redis")
    # ingest commits the input offsets once Kafka has its batch (at-least-once); stopped before that,
    # the new worker would read the first half again and count 22, not 16 (the states drop the repeats)
    wait_until(lambda: dep.ingest_committed() == {topics.CALLS: 4, topics.ALERTS: 2}, what="first half committed")
    dep.kill_worker(0)
    port = dep.start_worker()
    dep.produce(topics.CALLS, scenario.INVALID_CALLS)
    dep.produce(topics.ALERTS, scenario.ALERTS[2:])
    dep.produce(topics.CALLS, scenario.CALLS[4:])
    dep.produce(topics.GPS, scenario.FIXES)
    # the new worker counts only what it processed: 16 of the 22 messages
    remaining = sum(scenario.EXPECTED_COUNTS.values()) - 6
    wait_until(lambda: sum(dep.metrics(port).values()) == remaining
               and all(d["clock"] == scenario.FINAL_CLOCK for d in dep.zone_docs().values()),
               what="second half settled")
    # a call's arrival loops back through zone-events, so the documents can carry the final clock
    # one write before it lands (as wait_final_state says); on timeout the check shows the difference
    def arrived():
        docs = dep.zone_docs()
        return all(scenario.strip_volatile(d) == scenario.EXPECTED.get(z) for z, d in docs.items()) and docs
    try:
        docs = wait_until(arrived, timeout=60, what="the arrival written")
    except AssertionError:
        docs = dep.zone_docs()
    check_final_state(dep, docs)


def test_two_deployments_share_broker_and_redis_without_touching_each_other(deployment):
    one = deployment(scenario.ZONES_FILE, partitions=2)
    two = deployment(scenario.ZONES_FILE, partitions=2)
    one.start_worker()
    two.start_worker()
    one.wait_workers_joined()
    publish_scenario(one)
    only = {"call_id": "solo", "ts": scenario.FINAL_CLOCK, "lat": scenario.PA[0], "lon": scenario.PA[1],
            "category": "fire", "priority": 3}
    two.produce(topics.CALLS, [only])
    docs = wait_final_state(one, what="deployment one settled")
    check_final_state(one, docs)
    two_docs = wait_until(lambda: (d := two.zone_docs()) and len(d) == 5 and d, what="deployment two")
    assert two_docs["A"]["today"] == {"date": "2023-06-12", "calls": 1, "calls_by_category": {"fire": 1},
                                      "calls_by_priority": {"3": 1}, "calls_by_lang": {"und": 1},
                                      "alerts": 0, "alerts_by_type": {}}
    assert two_docs["B"]["today"]["calls"] == 0
    assert two.metrics() == {**{k: 0.0 for k in scenario.EXPECTED_COUNTS}, ("calls", "accepted"): 1.0}
    assert one.metrics() == {k: float(v) for k, v in scenario.EXPECTED_COUNTS.items()}
    # each one's consumer groups and topics carry its own prefix / app id
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=one.settings.kafka)
    listed = admin.list_groups()
    groups = {g["group_id"] if isinstance(g, dict) else g[0] for g in listed}
    listed = set(admin.list_topics())
    admin.close()
    for d in (one, two):
        assert {d.settings.app_id, f"{d.settings.app_id}-ingest"} <= groups
        assert d.settings.internal_zone_events in listed
        assert d.settings.topic(topics.CALLS) in listed
    assert one.redis.connection_pool.connection_kwargs["db"] != two.redis.connection_pool.connection_kwargs["db"]


def test_two_workers_share_the_partitions_and_agree_with_one(deployment):
    """Input and zone-events partitions split across two workers; units cross partitions."""
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    dep.start_worker()
    dep.start_worker()
    dep.wait_workers_joined()
    publish_scenario(dep)
    docs = wait_final_state(dep, what="scenario settled with two workers")
    check_final_state(dep, docs)
    assert dep.metrics() == {k: float(v) for k, v in scenario.EXPECTED_COUNTS.items()}
    # each worker owned part of the zone-events partitions (its log names the ones it rebuilt)
    import re

    owned = [set(re.findall(r"partition (\d+): took over", log.read_text())) for _p, _port, log in dep.workers]
    assert all(owned), owned
