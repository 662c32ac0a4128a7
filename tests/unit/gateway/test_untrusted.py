"""Redis data the gateway does not trust (issue 24): a zone document, an incident entry, a timeline
or a unit's info that does not match its schema is skipped, counted and logged once — never a 500,
never a stream that ends; what is sent is always one line of JSON after `data:`. On a fake Redis (the
integration suite has the same on a real one: tests/integration/test_gateway_hostile.py)."""

from __future__ import annotations

import asyncio
import logging
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from contract import keys, schemas
from gateway import untrusted
from gateway.feed import Hub, Subscriber, checked_entry, sse_encode, ws_encode
from gateway.metrics import BAD_RECORDS
from tests.unit.gateway.test_rest import RAUTH, client

CLOCK = 1_686_500_000_000


def bad_count(kind: str) -> float:
    return BAD_RECORDS.labels(kind)._value.get()


def zone(zid: str, **kw) -> dict:
    return schemas.example("zone", zone_id=zid, clock=CLOCK, **kw)


def incident(cid: str, ts, **kw) -> dict:
    return schemas.example("incident", call_id=cid, ts=ts, **kw)


# what a careless writer or an attacker might leave in zw:* (each fails its schema)
BAD_INCIDENTS = {
    "ts-string": incident("ts-string", "1686500000000"),          # the sort used to raise on str < int
    "ts-float": incident("ts-float", 1686500000000.5),
    "status-script": incident("status-script", CLOCK, status='"><img src=x onerror=alert(1)>'),
    "no-ts": {k: v for k, v in incident("no-ts", CLOCK).items() if k != "ts"},
    "list": [1, 2],
}
BAD_ZONES = {
    "level": zone("level", level="<script>alert(1)</script>"),
    "calls": zone("calls", today=dict(zone("x")["today"], calls="<b>9</b>")),
    "extra": zone("extra", injected=1),
}


class FakeRedis:
    """Just what the hub's snapshot, incidents and zone documents read; `wrong` names keys whose
    reads Redis refuses with WRONGTYPE."""

    def __init__(self, zones: dict[str, bytes | None], incidents: dict[str, bytes], wrong=()):
        self.zones, self.incidents, self.wrong = zones, incidents, set(wrong)

    def _reply(self, key, value):
        return ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value") \
            if key in self.wrong else value

    def pipeline(self, transaction=False):
        redis, calls = self, []

        class Pipe:
            def xrevrange(self, key, *a, **k):
                calls.append(redis._reply(key, [(b"5-0", {})]))

            def smembers(self, key):
                calls.append(redis._reply(key, {z.encode() for z in redis.zones}))

            def hgetall(self, key):
                calls.append(redis._reply(key, {k.encode(): v for k, v in redis.incidents.items()}))

            async def execute(self, raise_on_error=True):
                if raise_on_error and any(isinstance(c, Exception) for c in calls):
                    raise next(c for c in calls if isinstance(c, Exception))
                return list(calls)

        return Pipe()

    async def smembers(self, key):
        reply = self._reply(key, {z.encode() for z in self.zones})
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def mget(self, keys_):
        return [self.zones.get(k.split(":", 2)[2]) for k in keys_]

    async def get(self, key):
        return self.zones.get(key.split(":", 2)[2]) if key.startswith("zw:zone:") else None


def sse_events(stream: bytes) -> list[dict]:
    """The events of an SSE byte stream as the HTML standard's parser reads them (lines end at CR,
    LF or CRLF; a blank line dispatches; `data` lines are joined with LF)."""
    events, current = [], {}
    for line in re.split(rb"\r\n|\r|\n", stream):
        if line == b"":
            if current:
                events.append(current)
            current = {}
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        current.setdefault(name.decode(), []).append(value)
    return [{k: b"\n".join(v) for k, v in e.items()} for e in events]


def test_a_bad_incident_is_skipped_counted_and_logged_once(caplog):
    good = {f"ok{i}": orjson.dumps(incident(f"ok{i}", CLOCK - i)) for i in range(3)}
    bad = {k: orjson.dumps(v) for k, v in BAD_INCIDENTS.items()} | {"not-json": b"{oops"}
    hub = Hub(FakeRedis({}, good | bad))
    before = bad_count("incident")
    with caplog.at_level(logging.WARNING, logger="zonewatch.gateway"):
        for _ in range(3):
            snap = asyncio.run(hub.incidents())
            assert [orjson.loads(d)["call_id"] for d in snap.docs] == ["ok2", "ok1", "ok0"]   # oldest call first
    assert bad_count("incident") == before + 3 * len(bad)
    lines = [r.getMessage() for r in caplog.records if "does not match the incident schema" in r.getMessage()]
    assert len(lines) == len(bad), lines                     # once per bad record, not per read
    assert any("/ts: not integer" in line for line in lines)
    assert not any("onerror" in line for line in lines)      # where and why, never the content


def test_incidents_of_both_ts_types_answer_200_and_the_snapshot_goes_on():
    c = client(FakeRedis({"A": orjson.dumps(zone("A"))},
                         {"a": orjson.dumps(incident("a", CLOCK)), "b": orjson.dumps(BAD_INCIDENTS["ts-string"])}))
    c.app.state.gw.hub.redis = c.app.state.gw.redis
    r = c.get("/incidents", headers=RAUTH)
    assert r.status_code == 200 and [i["call_id"] for i in r.json()] == ["a"]


def test_bad_zone_documents_are_left_out_of_snapshots_and_answers():
    docs = {zid: orjson.dumps(d) for zid, d in BAD_ZONES.items()}
    docs["good"] = orjson.dumps(zone("good"))
    docs["no-doc-yet"] = None
    redis = FakeRedis(docs, {})
    hub = Hub(redis)
    snap = asyncio.run(hub.snapshot(Subscriber(10, "sse")))
    assert [orjson.loads(d)["zone_id"] for d in snap.docs] == ["good"]
    c = client(redis)
    c.app.state.gw.hub = hub
    assert [z["zone_id"] for z in c.get("/zones", headers=RAUTH).json()] == ["good"]
    r = c.get("/zones/level", headers=RAUTH)
    assert r.status_code == 502 and "zone schema" in r.json()["error"]
    assert c.get("/zones/good", headers=RAUTH).json() == zone("good")
    assert c.get("/zones/none", headers=RAUTH).status_code == 404


def test_a_key_of_the_wrong_type_is_an_empty_answer_not_an_error():
    redis = FakeRedis({"good": orjson.dumps(zone("good"))}, {}, wrong={keys.INCIDENTS})
    hub = Hub(redis)
    before = bad_count("incident")
    assert asyncio.run(hub.incidents()).docs == []
    assert bad_count("incident") == before + 1
    redis.wrong = {keys.ZONES}
    assert asyncio.run(hub.snapshot(Subscriber(10, "sse"))).docs == []
    assert asyncio.run(hub.zone_documents()) == []


def test_a_timeline_or_unit_info_that_does_not_conform_is_not_served():
    from tests.unit.gateway.test_rest import TIMELINE, units_redis
    from tests.unit.gateway.test_rest import FakeRedis as RestRedis

    bad_timeline = dict(TIMELINE, status="<img src=x onerror=alert(1)>")
    c = client(RestRedis(strings={"zw:incident:c1": orjson.dumps(bad_timeline),
                                  "zw:incident:c2": b"[1, 2]"}))
    for cid in ("c1", "c2"):
        r = c.get(f"/incidents/{cid}", headers=RAUTH)
        assert r.status_code == 502 and "incident-timeline schema" in r.json()["error"]
    r = units_redis()
    r.info["car"] = dict(r.info["car"], status="<script>")
    r.info["foot"] = dict(r.info["foot"], kind=["car"])
    r.info["busy"] = dict(r.info["busy"], ts="soon")
    got = client(r).get(f"/units?near={34.7},{113.6}&radius=100000", headers=RAUTH)
    assert got.status_code == 200 and got.json() == []


def test_the_reader_skips_a_bad_entry_and_reads_on_past_it():
    entries = [(b"1-0", {b"state": orjson.dumps(zone("a", version=1))}),
               (b"2-0", {b"state": b'{"zone_id": "a",\n"level": "red"}\n\nevent: snapshot\ndata: []'}),
               (b"3-0", {}),
               (b"4-0", {b"state": orjson.dumps(zone("a", version=4), option=orjson.OPT_INDENT_2)})]

    class Reader:
        calls = []

        async def xread(self, streams, count, block):
            self.calls.append(dict(streams))
            if len(self.calls) == 1:
                return [(keys.ZONE_UPDATES.encode(), entries)]
            await asyncio.sleep(3600)

    async def scenario():
        reader = Reader()
        hub = Hub(FakeRedis({}, {}), reader=reader)
        hub.last_id = hub.inc_last_id = "0-0"
        sub = hub.register("sse")
        task = asyncio.create_task(hub._read_loop())
        while len(reader.calls) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        got = []
        while not sub.queue.empty():
            got.append(sub.queue.get_nowait())
        hub.unregister(sub)
        return hub, reader, got

    hub, reader, got = asyncio.run(scenario())
    assert [e.id for e in got] == ["1-0", "4-0"]
    assert reader.calls[1][keys.ZONE_UPDATES] == "4-0" and hub.last_id == "4-0"
    assert orjson.loads(got[1].state) == zone("a", version=4)
    assert b"\n" not in got[1].state                          # stored over several lines, sent as one


NAMES = st.lists(st.sampled_from(["a", "\n", "\r", "\r\n", " ", "data: x", "\u2028", "é", '"', "\\"]),
                 max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(name=NAMES, indent=st.booleans())
def test_every_sse_event_is_one_line_of_json_whatever_the_stored_bytes(name, indent):
    doc = zone("z", name=name)
    stored = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)
    entry = checked_entry(keys.ZONE_UPDATES, b"7-1", {b"state": stored})
    inc = checked_entry(keys.INCIDENT_UPDATES, b"7-2", {b"state": orjson.dumps(incident("c", CLOCK),
                                                                              option=orjson.OPT_INDENT_2)})
    assert entry is not None and inc is not None
    from gateway.feed import Snapshot

    batch = [("snapshot", Snapshot("7-0", [entry.state])), ("zone", entry), ("incident", inc),
             ("incidents", Snapshot("7-2", [inc.state])), ("resync", "slow"), ("ping", None)]
    events = sse_events(sse_encode(batch))
    assert [e.get("event") for e in events] == [b"snapshot", b"zone", b"incident", b"incidents", b"resync"]
    assert orjson.loads(events[0]["data"]) == [doc] and orjson.loads(events[1]["data"]) == doc
    assert events[1]["id"] == b"7-1" and "id" not in events[2]
    for kind, val in batch:
        assert orjson.loads(ws_encode(kind, val))["type"] == kind


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b'"x"', b"{}", b"\xff\xfe"])
def test_read_refuses_what_is_not_a_document(raw):
    assert untrusted.ZONE.read(raw, "test") is None
    assert untrusted.INCIDENT.read(raw, "test") is None
