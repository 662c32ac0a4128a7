"""POST /ingest bodies without Kafka: formats (object, array, NDJSON, by type and by shape), limits
(records, bytes, counted while the body arrives), reasons identical to the worker's, and the
producer's answers when Kafka does not take the records (a fake producer)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from contract import events, topics
from contract.errors import Rejected
from contract.settings import Settings
from gateway import intake
from gateway.intake import AUTO, JSON, MAX_BYTES, MAX_RECORDS, NDJSON, TooLarge, Unavailable
from tests import hostile, scenario

NOW = int(time.time() * 1000)
MAX_TS = NOW + 300_000


def call(i: int, **over) -> dict:
    c = {"call_id": f"c-{i}", "ts": NOW - 1000, "lat": 34.7, "lon": 113.6, "category": "theft", "priority": 2}
    c.update(over)
    return c


def worker_reason(topic: str, value: bytes | None) -> str:
    """What the worker writes in the dead letter for this Kafka value."""
    with pytest.raises(Rejected) as exc:
        events.decode_and_validate(topic, value, MAX_TS)
    return str(exc.value)


def test_the_content_type_picks_the_format():
    assert intake.body_format("application/x-ndjson") == NDJSON
    assert intake.body_format("application/jsonl; charset=utf-8") == NDJSON
    assert intake.body_format("Application/NDJSON") == NDJSON
    assert intake.body_format("application/json; charset=utf-8") == JSON
    assert intake.body_format("application/vnd.vendor+json") == JSON
    for other in (None, "", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x"):
        assert intake.body_format(other) == AUTO


def test_an_object_an_array_and_ndjson_give_the_same_records():
    recs = [call(i, caller="13800138000", unknown_extra={"x": 1}) for i in range(3)]
    bodies = {JSON: [orjson.dumps(recs[0]), orjson.dumps(recs)],
              NDJSON: [b"\n".join(orjson.dumps(r) for r in recs) + b"\n"],
              AUTO: [orjson.dumps(recs), b"\n".join(orjson.dumps(r) for r in recs)]}
    expected = [(r["call_id"].encode(), orjson.dumps(events.validate_call(r, MAX_TS))) for r in recs]
    for fmt, variants in bodies.items():
        for body in variants:
            p = intake.parse(topics.CALLS, body, fmt, MAX_TS)
            n = p.records
            assert p.rejected == [] and p.accepted == expected[:n], (fmt, body[:40])
    # published as the validator normalised it: contract fields only, the caller still there
    # (the worker replaces it by caller_ref), unknown fields gone
    value = orjson.loads(expected[0][1])
    assert "unknown_extra" not in value and value["caller"] == "13800138000"


def test_ndjson_every_line_is_a_record_and_index_is_the_line_number():
    lines = [orjson.dumps(call(0)), b"", b"{broken", orjson.dumps(call(1, lat=91)), b"  ", orjson.dumps(call(2))]
    body = b"\n".join(lines) + b"\n"
    p = intake.parse(topics.CALLS, body, NDJSON, MAX_TS)
    assert p.records == 6 and [k for k, _ in p.accepted] == [b"c-0", b"c-2"]
    assert p.rejected == [{"index": i, "reason": worker_reason(topics.CALLS, lines[i])} for i in (1, 2, 3, 4)]
    assert p.rejected[2]["reason"] == "lat 91.0 out of range -90..90"
    # CRLF line ends: the \r is JSON whitespace, as it is to the worker
    crlf = intake.parse(topics.CALLS, orjson.dumps(call(0)) + b"\r\n" + orjson.dumps(call(1)), NDJSON, MAX_TS)
    assert len(crlf.accepted) == 2 and crlf.rejected == []
    assert intake.parse(topics.CALLS, b"", NDJSON, MAX_TS).records == 0


def test_a_json_body_is_one_value_even_when_it_is_not_json():
    p = intake.parse(topics.GPS, b'{"unit_id": "u1", "ts": 1', JSON, MAX_TS)
    cut = b'{"unit_id": "u1", "ts": 1'
    assert p.records == 1 and p.rejected == [{"index": 0, "reason": worker_reason(topics.GPS, cut)}]
    assert p.rejected[0]["reason"].startswith("invalid JSON: ")
    assert intake.parse(topics.GPS, b"", JSON, MAX_TS).rejected == [{"index": 0, "reason": "empty message value"}]
    assert intake.parse(topics.GPS, b"42", JSON, MAX_TS).rejected == [
        {"index": 0, "reason": "message is not a JSON object"}]
    # array elements that are not objects get the worker's reason for that value
    arr = intake.parse(topics.GPS, b'[1, "x", null, [], {"unit_id": "u"}]', JSON, MAX_TS)
    assert [r["reason"] for r in arr.rejected] == ["message is not a JSON object"] * 4 + [
        worker_reason(topics.GPS, b'{"unit_id": "u"}')]
    # a pretty-printed object without a content type is one record, NDJSON without one is lines
    pretty = orjson.dumps(call(5), option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty and len(intake.parse(topics.CALLS, pretty, AUTO, MAX_TS).accepted) == 1
    two = orjson.dumps(call(6)) + b"\n" + orjson.dumps(call(7))
    assert len(intake.parse(topics.CALLS, two, AUTO, MAX_TS).accepted) == 2
    # ...and as application/json the same two lines are one invalid document
    assert intake.parse(topics.CALLS, two, JSON, MAX_TS).rejected[0]["reason"].startswith("invalid JSON")


def test_every_hostile_message_gets_the_workers_reason():
    """The corpus's values as NDJSON lines (those without a newline) and as single JSON bodies:
    the reason is the worker's dead-letter reason, the accepted record the worker's normalisation."""
    msgs = hostile.corpus()
    checked = 0
    for m in msgs:
        if m.value is not None and b"\n" not in m.value:
            p = intake.parse(m.topic, m.value + b"\n", NDJSON, MAX_TS)
        elif m.value is None or not m.value.lstrip().startswith(b"["):
            p = intake.parse(m.topic, m.value or b"", JSON, MAX_TS)
        else:
            continue
        assert p.records == 1, m.cls
        if m.expect == "rejected":
            assert p.accepted == [] and p.rejected[0]["reason"] == worker_reason(m.topic, m.value), m.cls
            assert m.reason in p.rejected[0]["reason"], (m.cls, m.reason)
        else:
            assert p.rejected == [] and orjson.loads(p.accepted[0][1]) == m.norm, m.cls
        checked += 1
    assert checked > 12_000


def test_record_limits():
    ok = b"\n".join([orjson.dumps(call(i)) for i in range(MAX_RECORDS)])
    assert intake.parse(topics.CALLS, ok, NDJSON, MAX_TS).records == MAX_RECORDS
    with pytest.raises(TooLarge, match="10001 records"):
        intake.parse(topics.CALLS, ok + b"\n{}", NDJSON, MAX_TS)
    with pytest.raises(TooLarge, match="10001 records"):
        intake.parse(topics.CALLS, b"[" + b",".join([b"{}"] * (MAX_RECORDS + 1)) + b"]", JSON, MAX_TS)
    with pytest.raises(TooLarge):
        intake.parse(topics.CALLS, ok + b"\n{}", AUTO, MAX_TS)
    full = b"[" + b",".join([b"{}"] * MAX_RECORDS) + b"]"
    assert intake.parse(topics.CALLS, full, AUTO, MAX_TS).records == MAX_RECORDS


class FakeRequest:
    """A request whose body arrives in chunks; records how many were read."""

    def __init__(self, chunks, headers=None, delay=0.0):
        self.chunks, self.headers, self.delay, self.read = list(chunks), headers or {}, delay, 0

    async def stream(self):
        for c in self.chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.read += 1
            yield c


def test_bodies_are_counted_while_they_arrive():
    mb = b"x" * (1 << 20)
    r = FakeRequest([mb] * 100)
    with pytest.raises(TooLarge, match="body over"):
        asyncio.run(intake.read_body(r, AUTO, 10))
    assert r.read == 11   # refused at the chunk that crossed 10 MB, the other 89 never read
    r = FakeRequest([mb] * 100, {"content-length": str(100 << 20)})
    with pytest.raises(TooLarge, match="body of 104857600 bytes"):
        asyncio.run(intake.read_body(r, AUTO, 10))
    assert r.read == 0    # refused on the header alone
    exact = FakeRequest([b"y" * MAX_BYTES])
    assert len(asyncio.run(intake.read_body(exact, AUTO, 10))) == MAX_BYTES
    lines = FakeRequest([b"{}\n" * 4000] * 10)
    with pytest.raises(TooLarge, match="records"):
        asyncio.run(intake.read_body(lines, NDJSON, 10))
    assert lines.read == 3   # 12,000 newlines after three chunks
    slow = FakeRequest([b"{}"] * 50, delay=0.05)
    with pytest.raises(TimeoutError):
        asyncio.run(intake.read_body(slow, AUTO, 0.3))
    assert slow.read < 50


# --- the producer's answers, with a fake aiokafka producer ------------------------------------


class FakeBatch:
    def __init__(self, cap=3):
        self.records, self.cap = [], cap

    def append(self, key, value, timestamp):
        if len(self.records) >= self.cap:
            return None
        self.records.append((key, value))
        return object()


class FakeCluster:
    def __init__(self, known):
        self.known = known

    def partitions_for_topic(self, t):
        return {0, 1} if t in self.known else None


class FakeProducer:
    """send_batch futures resolve `ack` after `delay` seconds (never when delay is None)."""

    def __init__(self, delay=0.0, error=None, topics_known=("calls.110",)):
        self.delay, self.error, self.sent = delay, error, []
        self.client = type("C", (), {"cluster": FakeCluster(topics_known)})()
        self.stopped = False

    async def partitions_for(self, topic):
        return {0, 1}

    def create_batch(self):
        return FakeBatch()

    async def send_batch(self, batch, topic, partition):
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, list(batch.records)))

        def settle():
            if not fut.done():
                fut.set_exception(self.error) if self.error else fut.set_result(None)
        if self.delay is not None:
            asyncio.get_running_loop().call_later(self.delay, settle)
        return fut

    async def stop(self):
        self.stopped = True


def _intake(producer, timeout=0.3):
    it = intake.Intake(Settings(zones=scenario.ZONES_FILE), produce_timeout_s=timeout)
    from aiokafka.partitioner import DefaultPartitioner

    it._partitioner = DefaultPartitioner()
    it.producer = producer
    return it


RECS = [(f"k{i}".encode(), b"{}") for i in range(10)]


def test_acknowledged_records_are_all_sent_keyed_like_kafkas_partitioner():
    async def go():
        p = FakeProducer()
        it = _intake(p)
        await it.produce(topics.CALLS, RECS)
        return p.sent

    sent = asyncio.run(go())
    assert sorted(r for _t, _p, recs in sent for r in recs) == sorted(RECS)
    from aiokafka.partitioner import DefaultPartitioner

    part = DefaultPartitioner()
    for _t, p, recs in sent:
        assert all(part(k, [0, 1], [0, 1]) == p for k, _v in recs)
    assert {t for t, _p, _r in sent} == {"calls.110"}


def test_unacknowledged_records_make_a_503_and_later_bodies_fail_fast():
    async def go():
        p = FakeProducer(delay=None)   # Kafka never acknowledges
        it = _intake(p, timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="did not acknowledge"):
            await it.produce(topics.CALLS, RECS)
        waited = time.monotonic() - t0
        n = len(p.sent)
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable, match="not acknowledged earlier records"):
            await it.produce(topics.CALLS, RECS)
        return waited, n, len(p.sent)

    waited, before, after = asyncio.run(go())
    assert waited >= 0.2
    assert after == before   # the second body was not queued behind the stuck ones


def test_a_refused_batch_is_a_503_and_a_new_producer():
    async def go():
        p = FakeProducer(error=RuntimeError("OutOfOrderSequenceNumber"))
        it = _intake(p)
        it._connect = lambda: asyncio.sleep(3600)   # no Kafka here: the reconnect just waits
        with pytest.raises(Unavailable, match="RuntimeError"):
            await it.produce(topics.CALLS, RECS)
        gone = it.producer is None
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="not connected"):
            await it.produce(topics.CALLS, RECS)
        await it.stop()
        return gone, p.stopped

    gone, stopped = asyncio.run(go())
    assert gone and stopped


def test_an_unknown_topic_is_named():
    async def go():
        it = _intake(FakeProducer(delay=None, topics_known=()), timeout=0.1)
        with pytest.raises(Unavailable, match="unknown to Kafka.*zonewatch topics"):
            await it.produce(topics.CALLS, RECS)

    asyncio.run(go())
