"""The drill's publisher (zonewatch/drill_run.py `publish`) on a real Kafka: a recording goes into
the input topics of every deployment at once, each record exactly once, in the partition
the default partitioner gives its key (what every producer of the live input does, so a
unit's fixes stay together), and in the recording's order within each partition."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaConsumer, TopicPartition

from contract import topics
from contract.settings import DEMO_ZONES, Settings
from zonewatch import drill_run

pytestmark = pytest.mark.integration


def recording() -> drill_run.Recording:
    """Fixes of 7 units, alerts of 3 cameras, calls, and unkeyed phase commands, interleaved; each
    value carries its place in the recording (`seq`)."""
    rec = drill_run.Recording()
    for seq in range(3000):
        topic = (topics.GPS, topics.GPS, topics.GPS, topics.ALERTS, topics.CALLS, topics.PLAN_COMMANDS)[seq % 6]
        key = {topics.GPS: f"unit-{seq % 7}", topics.ALERTS: f"cam-{seq % 3}", topics.CALLS: f"call-{seq}"}.get(topic)
        value = orjson.dumps({"seq": seq, "ts": 1_686_535_200_000 + seq, "pad": "x" * (seq % 300)})
        rec.records.append((topic, key.encode() if key is not None else None, value, 1_686_535_200_000 + seq))
    return rec


def _read(settings: Settings, topic: str) -> dict[int, list[tuple[bytes | None, dict]]]:
    """partition -> (key, value) of every record of one of a deployment's topics, in offset order."""
    name = settings.topic(topic)
    c = KafkaConsumer(bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name))]
        ends = c.end_offsets(tps)
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: dict[int, list] = {tp.partition: [] for tp in tps}
        while any(c.position(tp) < ends[tp] for tp in tps):
            for tp, msgs in c.poll(timeout_ms=1000).items():
                out[tp.partition] += [(m.key, orjson.loads(m.value)) for m in msgs]
    finally:
        c.close()
    return out


def test_every_record_once_in_its_keys_partition_in_order_in_every_deployment(stack):
    live = Settings(kafka=stack["kafka"], redis=stack["redis"], zones=DEMO_ZONES,
                    topic_prefix=f"pub{uuid.uuid4().hex[:6]}.", app_id=f"pub-{uuid.uuid4().hex[:6]}")
    tag = uuid.uuid4().hex[:8]
    dbs = drill_run.empty_dbs(live, 2)
    deps = [drill_run.Isolated(live, role, tag, db) for role, db in zip(("base", "variant"), dbs, strict=True)]
    rec = recording()
    try:
        for d in deps:
            d.create_topics()
        drill_run.publish(deps, rec)
        partitioner = DefaultPartitioner()
        for d in deps:
            for topic in (topics.GPS, topics.ALERTS, topics.CALLS, topics.PLAN_COMMANDS):
                want = [(k, orjson.loads(v)["seq"]) for t, k, v, _ts in rec.records if t == topic]
                got = _read(d.settings, topic)
                parts = sorted(got)
                # each record exactly once
                assert sorted(v["seq"] for recs in got.values() for _k, v in recs) == sorted(s for _k, s in want), \
                    (d.role, topic)
                for p, recs in got.items():
                    seqs = [v["seq"] for _k, v in recs]
                    assert seqs == sorted(seqs), (d.role, topic, p)   # the recording's order
                    for key, _v in recs:
                        if key is not None:   # where the default partitioner (aiokafka's, Java's) puts it
                            assert partitioner(key, parts, parts) == p, (d.role, topic, key)
    finally:
        for d in deps:
            d.teardown(keep=False)
