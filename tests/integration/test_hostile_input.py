"""Hostile input through real Kafka and a real worker: the corpus of tests/hostile.py (10,000+
malformed and hostile messages interleaved with 2,600 valid ones, 5 MB values included) is
published to the three input topics. Zero crashes, every bad message in `ingest.deadletter` exactly
once with its reason, every valid one counted, and the zone state counts exactly the valid events."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from contract import events, topics
from contract.events import redact_callers
from contract.kafka_settings import kafka_python_kwargs
from tests import hostile
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def publish(dep, msgs) -> dict[tuple[str, int, int], int]:
    """Publish in corpus order; returns (topic, partition, offset) -> corpus index."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=dep.settings.kafka, acks="all", linger_ms=20,
                         batch_size=256 * 1024, max_request_size=hostile.BIG + 2 * 1024 * 1024,
                         **kafka_python_kwargs(dep.settings))
    futures = [prod.send(dep.settings.topic(m.topic), m.value, key=m.key) for m in msgs]
    prod.flush()
    where = {}
    for i, f in enumerate(futures):
        md = f.get(timeout=30)
        where[(md.topic, md.partition, md.offset)] = i
    prod.close()
    return where


def counted(dep) -> float:
    try:
        return sum(dep.metrics().values())
    except OSError:  # the worker is gone (its exit is asserted next) or not serving yet
        return -1


def expected_raw(value: bytes | None, secret: bytes) -> dict:
    raw = redact_callers(value, secret) if value else b""
    raw = raw[:events.DEADLETTER_RAW_LIMIT]
    try:
        return {"raw": raw.decode("utf-8"), "raw_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"raw": base64.b64encode(raw).decode("ascii"), "raw_encoding": "base64"}


def test_hostile_corpus_is_dead_lettered_counted_and_never_stops_the_worker(deployment):
    msgs = hostile.corpus()
    bad = {i for i, m in enumerate(msgs) if m.expect == "rejected"}
    assert len(bad) >= 10_000
    dep = deployment(hostile.ZONES_FILE, partitions=4)
    # Published before the worker starts: it meets a backlog, so its batches are as large as its
    # fetch limits allow (the burst of maximal calls lands in one or two of them).
    started = time.monotonic()
    where = publish(dep, msgs)
    published = time.monotonic()
    dep.start_worker()
    proc, _port, log = dep.workers[0]

    # every message counted once: rejected by ingest, accepted/duplicate by the state stage
    want = {k: float(v) for k, v in hostile.expected_counts(msgs).items()}
    wait_until(lambda: proc.poll() is not None or counted(dep) >= len(msgs), timeout=120, interval=0.5,
               what=f"{len(msgs)} messages counted")
    assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
    assert dep.metrics() == want

    # the zone state counts exactly the valid, non-duplicate in-zone events of the day
    docs = wait_until(lambda: (d := dep.zone_docs()) and len(d) == len(hostile.ZONE_IDS)
                      and all(x["clock"] == hostile.FINAL_CLOCK for x in d.values()) and d,
                      timeout=60, what="zone documents at the final clock")
    assert {z: d["today"] for z, d in docs.items()} == hostile.expected_today(msgs)

    # exactly one dead letter per bad message, pointing back at it, with its reason and raw value
    dead = dep.consume_all(topics.DEADLETTER, len(bad), timeout=60)
    secret = dep.env["ZONEWATCH_CALLER_SECRET"].encode()
    seen = set()
    for rec in dead:
        v = orjson.loads(rec.value)
        i = where[(v["topic"], v["partition"], v["offset"])]
        m = msgs[i]
        assert i in bad, (i, m.cls, v["reason"])
        assert i not in seen, (i, m.cls)
        seen.add(i)
        assert v["reason"] and m.reason in v["reason"], (i, m.cls, m.reason, v["reason"])
        assert {k: v[k] for k in ("raw", "raw_encoding")} == expected_raw(m.value, secret), (i, m.cls)
        raw = base64.b64decode(v["raw"]) if v["raw_encoding"] == "base64" else v["raw"].encode()
        assert len(raw) <= events.DEADLETTER_RAW_LIMIT
        assert b"13800138000" not in raw  # caller numbers never leave ingestion in clear (§6)
        # the original key, or null when it is larger than the dead-letter limit
        key = m.key if m.key is None or len(m.key) <= events.DEADLETTER_RAW_LIMIT else None
        assert rec.key == key, (i, m.cls, (rec.key or b"")[:40], (m.key or b"")[:40])
    assert seen == bad, f"{len(bad - seen)} bad messages without a dead letter"
    assert proc.poll() is None
    print(f"\nhostile corpus: {len(msgs)} messages ({len(bad)} bad), published in {published - started:.1f}s, "
          f"all counted and dead-lettered {time.monotonic() - published:.1f}s later")
