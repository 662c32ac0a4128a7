"""The gateway's request/response endpoints on a fake Redis (no server): /units with ETA, status,
kind, ts and without stale units on the stream clock; /incidents/{call_id} without any caller;
/ingest's refusals (intake off, tokens, content encoding, sizes, Kafka not connected); /plan/phase
before and after the worker decides a phase. Every answer of an endpoint /openapi.json describes is
checked against the schema it gives (a small JSON Schema reader below)."""

from __future__ import annotations

import time

import jsonschema
import orjson
import pytest
from starlette.testclient import TestClient

from contract import schemas
from contract.response import eta_s, haversine_m
from contract.settings import Settings
from gateway import openapi
from gateway.app import create_app
from gateway.clock import StreamClock
from gateway.feed import Hub
from tests import scenario

READ, INGEST = "read-token-0123456789", "ingest-token-0123456789"
RAUTH, IAUTH = {"Authorization": f"Bearer {READ}"}, {"Authorization": f"Bearer {INGEST}"}


# --- answers against the OpenAPI document's schemas (jsonschema, draft 2020-12) ----------------


def conforms(value, schema) -> None:
    """Raise AssertionError naming where `value` breaks `schema` (whose `$ref`s point into the
    OpenAPI document's components)."""
    root = {**schema, "components": openapi.SPEC["components"]}
    errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(value), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message[:160]}" for e in errors[:5])


def response_schema(path: str, status: int) -> dict:
    op = openapi.SPEC["paths"][path]
    op = op.get("get") or op.get("post")
    return op["responses"][str(status)]["content"]["application/json"]["schema"]


def test_the_schemas_refuse_what_they_should():
    for bad in ({"accepted": "1", "rejected": []}, {"accepted": 1}, {"accepted": 1, "rejected": [{"index": 0}]}):
        with pytest.raises(AssertionError):
            conforms(bad, openapi.SCHEMAS["IngestResult"])
    call = {"call_id": "c", "ts": CLOCK, "lat": 1.0, "lon": 1.0, "category": "theft", "priority": 1}
    tl = dict(TIMELINE, call=call, nearest_units=[])
    conforms(tl, openapi.SCHEMAS["IncidentTimeline"])
    with pytest.raises(AssertionError, match="caller"):   # a timeline never carries a caller
        conforms(dict(tl, call=dict(call, caller_ref="abcdef0123456789")), openapi.SCHEMAS["IncidentTimeline"])
    unit = {"unit_id": "u", "lat": 1.0, "lon": 1.0, "distance_m": 1.0, "eta_s": 1, "status": "busy", "kind": "car",
            "ts": CLOCK}
    conforms([unit], response_schema("/units", 200))
    with pytest.raises(AssertionError, match="eta_s"):
        conforms([{k: v for k, v in unit.items() if k != "eta_s"}], response_schema("/units", 200))


# --- a fake Redis -------------------------------------------------------------------------------


class FakeRedis:
    def __init__(self, units=(), info=None, updates=(), docs=None, strings=None):
        self.units = list(units)          # (unit_id, lat, lon)
        self.info = info or {}            # unit_id -> dict
        self.updates = list(updates)      # state dicts, oldest first
        self.docs = docs or {}            # zone_id -> dict
        self.strings = strings or {}
        self.calls = []

    async def geosearch(self, key, longitude, latitude, radius, unit, sort, count, withdist, withcoord):
        self.calls.append(("geosearch", count))
        out = []
        for uid, lat, lon in self.units:
            d = haversine_m(latitude, longitude, lat, lon)
            if d <= radius:
                out.append((uid.encode(), d, (lon, lat)))
        return sorted(out, key=lambda x: x[1])[:count]

    async def hmget(self, key, ids):
        return [orjson.dumps(self.info[i]) if i in self.info else None for i in ids]

    async def xrevrange(self, key, count):
        return [(f"{i}-0".encode(), {b"state": orjson.dumps(d)}) for i, d in enumerate(self.updates)][::-1][:count]

    async def smembers(self, key):
        return {z.encode() for z in self.docs}

    async def mget(self, keys):
        return [orjson.dumps(self.docs[k.rsplit(":", 1)[1]]) for k in keys]

    async def get(self, key):
        return self.strings.get(key)

    async def ping(self):
        return True


def client(redis=None, ingest=(INGEST,)) -> TestClient:
    """The app on a fake Redis, without its lifespan (no feed reader, no Kafka producer)."""
    app = create_app(Settings(gateway_tokens=(READ,), ingest_tokens=tuple(ingest), zones=scenario.ZONES_FILE))
    if redis is not None:
        app.state.gw.redis = redis
        app.state.gw.clock = StreamClock(redis, app.state.gw.hub)
        app.state.gw.hub.redis = redis
    return TestClient(app)


A = scenario.PA
CLOCK = 1_686_500_000_000


def zone(zone_id: str = "A", clock: int = CLOCK) -> dict:
    return schemas.example("zone", zone_id=zone_id, clock=clock)


def units_redis(updates=None):
    return FakeRedis(
        units=[("car", A[0] + 0.001, A[1]), ("foot", A[0] + 0.002, A[1]), ("stale", A[0], A[1]),
               ("busy", A[0] + 0.003, A[1]), ("noinfo", A[0] + 0.0005, A[1])],
        info={"car": {"ts": CLOCK - 120_000, "status": "available", "kind": "car", "lat": 0, "lon": 0},
              "foot": {"ts": CLOCK - 1000, "status": "available", "kind": "foot", "lat": 0, "lon": 0},
              "stale": {"ts": CLOCK - 120_001, "status": "available", "kind": "car", "lat": 0, "lon": 0},
              "busy": {"ts": CLOCK, "status": "busy", "kind": "swat", "lat": 0, "lon": 0}},
        updates=[zone()] if updates is None else updates)


def test_units_carry_eta_status_kind_ts_and_leave_stale_ones_out():
    c = client(units_redis())
    r = c.get(f"/units?near={A[0]},{A[1]}&radius=2000", headers=RAUTH)
    assert r.status_code == 200
    got = r.json()
    conforms(got, response_schema("/units", 200))
    # `stale` is 120.001 s older than the clock; `noinfo` has no zw:unit-info; `car` is exactly 120 s
    assert [u["unit_id"] for u in got] == ["car", "foot", "busy"]
    for u in got:
        assert u["eta_s"] == eta_s(u["distance_m"], u["kind"])
    assert [(u["status"], u["kind"], u["ts"]) for u in got] == [
        ("available", "car", CLOCK - 120_000), ("available", "foot", CLOCK - 1000), ("busy", "swat", CLOCK)]
    assert got[1]["eta_s"] == round(got[1]["distance_m"] * 1.3 / 1.4)
    only = c.get(f"/units?near={A[0]},{A[1]}&radius=2000&status=available&limit=1", headers=RAUTH).json()
    assert [u["unit_id"] for u in only] == ["car"]
    assert c.get(f"/units?near={A[0]},{A[1]}&status=parked", headers=RAUTH).status_code == 400


def test_the_clock_is_the_newest_zone_clock_else_the_documents_else_wall_time():
    # the newest of the last zone updates (partitions write in any order)
    r = units_redis(updates=[zone(clock=CLOCK - 500_000), zone(clock=CLOCK), zone(clock=CLOCK - 1000)])
    assert [u["unit_id"] for u in client(r).get(f"/units?near={A[0]},{A[1]}", headers=RAUTH).json()] == \
        ["car", "foot", "busy"]
    # an empty stream: the documents' clocks
    r = units_redis(updates=[])
    r.docs = {"A": zone("A", CLOCK - 1), "B": zone("B", CLOCK)}
    assert len(client(r).get(f"/units?near={A[0]},{A[1]}", headers=RAUTH).json()) == 3
    # nothing at all: wall time, so 2023's fixes are all stale
    r = units_redis(updates=[])
    assert client(r).get(f"/units?near={A[0]},{A[1]}", headers=RAUTH).json() == []

    async def now():
        redis = FakeRedis()
        return await StreamClock(redis, Hub(redis)).now()
    import asyncio

    value, source = asyncio.run(now())
    assert source == "wall" and abs(value - time.time() * 1000) < 60_000


TIMELINE = {"call_id": "c1", "call": {"call_id": "c1", "ts": CLOCK, "lat": A[0], "lon": A[1], "category": "theft",
                                      "priority": 2, "caller_ref": "abcdef0123456789", "caller": "13800138000"},
            "zones": ["A"], "ring": None, "nearest_units": [{"unit_id": "u", "kind": "car", "distance_m": 10.0,
                                                             "eta_s": 2, "caller": "x"}],
            "corroborating_alerts": [], "decision": None, "arrival": None, "breach": None, "status": "open",
            "events": [{"ts": CLOCK, "what": "call"}], "clock": CLOCK, "partition": 0}


def test_a_timeline_never_carries_a_caller_and_unknown_ids_are_404():
    c = client(FakeRedis(strings={"zw:incident:c1": orjson.dumps(TIMELINE)}))
    r = c.get("/incidents/c1", headers=RAUTH)
    assert r.status_code == 200 and "caller" not in r.text and "13800138000" not in r.text
    conforms(r.json(), response_schema("/incidents/{call_id}", 200))
    assert r.json()["call"] == {k: v for k, v in TIMELINE["call"].items() if not k.startswith("caller")}
    for path in ("/incidents/nope", "/incidents/" + "x" * 65):
        r = c.get(path, headers=RAUTH)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        conforms(r.json(), response_schema("/incidents/{call_id}", 404))
    assert c.get("/incidents/c1").status_code == 401
    assert c.get("/incidents/c1", headers=IAUTH).status_code == 403


def test_intake_refusals_without_kafka():
    c = client(FakeRedis())
    body = b'{"call_id": "c", "ts": 1686500000000, "lat": 34.7, "lon": 113.6, "category": "theft", "priority": 1}'
    r = c.post("/ingest/calls", content=body)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert c.post("/ingest/calls", content=body, headers=RAUTH).status_code == 403
    assert c.post("/ingest/parcels", content=body, headers=IAUTH).status_code == 404
    assert c.get("/ingest/calls", headers=IAUTH).status_code == 405
    r = c.post("/ingest/calls", content=body, headers={**IAUTH, "Content-Encoding": "gzip"})
    assert r.status_code == 415
    r = c.post("/ingest/calls", content=b"x" * (10 * 1024 * 1024 + 1), headers=IAUTH)
    assert r.status_code == 413 and r.headers.get("connection") == "close"
    conforms(r.json(), response_schema("/ingest/{source}", 413))
    # a valid body while the producer is not connected (no lifespan here): 503 + Retry-After
    r = c.post("/ingest/calls", content=body, headers={**IAUTH, "Content-Type": "application/json"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    conforms(r.json(), response_schema("/ingest/{source}", 503))
    # intake off: 404 for everyone
    off = client(FakeRedis(), ingest=())
    for h in (IAUTH, RAUTH, {}):
        r = off.post("/ingest/calls", content=body, headers=h)
        assert r.status_code == 404 and "ZONEWATCH_INGEST_TOKENS" in r.json()["error"]
    assert off.get("/healthz").json()["intake"] == "off"
    h = c.get("/healthz").json()
    assert h["intake"] == "connecting"
    conforms(h, response_schema("/healthz", 200))


def test_the_published_schemas_are_served_without_a_token():
    c = client(FakeRedis())
    index = c.get("/schemas/index.json")
    assert index.status_code == 200
    names = [x["name"] for x in index.json()["schemas"]]
    assert {"zone", "incident-timeline", "unit", "calls.110"} <= set(names)
    r = c.get("/schemas/incident-timeline.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    assert r.json()["title"] == "Incident timeline"
    assert c.get("/schemas/zone-events.json").status_code == 404     # internal: not served
    assert c.get("/schemas/nope.json").status_code == 404


def test_the_phase_is_null_before_any_and_the_document_after():
    """GET /plan/phase: `null` (200) while no phase is decided, with or without a plan (the wall's
    duty.js polls it on every wall: a 404 would be a console error each poll), zw:phase once written."""
    c = client(FakeRedis())
    r = c.get("/plan/phase", headers=RAUTH)
    assert (r.status_code, r.json()) == (200, None)
    phase = {"name": "决战", "source": "operator", "by": "duty officer", "since": CLOCK, "previous": None, "version": 3}
    c = client(FakeRedis(strings={"zw:phase": orjson.dumps(phase)}))
    r = c.get("/plan/phase", headers=RAUTH)
    assert (r.status_code, r.json()) == (200, phase)
    assert c.get("/plan/phase").status_code == 401


@pytest.mark.parametrize("query", ["caller=13800138000", "Caller=1", "a=1;caller_ref=x", "%63aller=1",
                                   "callerNumber=1"])
def test_a_caller_in_a_query_string_is_refused(query):
    c = client(FakeRedis())
    r = c.get(f"/zones?{query}", headers=RAUTH)
    assert r.status_code == 400 and "caller" in r.json()["error"] and "13800138000" not in r.text
    assert c.get(f"/healthz?{query}").status_code == 400          # open endpoints too
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with c.websocket_connect(f"/ws?token={READ}&{query}"):
            pass
    assert c.get("/zones?call=1&recall=2", headers=RAUTH).status_code == 200   # only names that say caller
    assert c.get("/zones;caller=1", headers=RAUTH).status_code == 400               # a parameter in the path


# --- the duty plan's documents, checked like the others (gateway/untrusted.py) -------------------

POST_DOC = {"post_id": "gate", "name": "北门 north gate", "lat": A[0], "lon": A[1], "radius_m": 50.0, "phase": "决战",
            "required": 2, "present": 1, "unit_ids": ["P-1"], "status": "understaffed", "since": CLOCK, "version": 4}


def _bad_records(kind: str) -> float:
    from gateway.metrics import BAD_RECORDS

    return BAD_RECORDS.labels(kind)._value.get()


def test_posts_leave_out_a_document_that_does_not_match_its_schema_and_a_bad_phase_is_502():
    before = _bad_records("post")
    bad = dict(POST_DOC, post_id="evil", status="<script>")     # not a post status
    c = client(FakeRedis(docs={"gate": POST_DOC, "evil": bad}))
    r = c.get("/posts", headers=RAUTH)
    assert (r.status_code, r.json()) == (200, [POST_DOC])
    assert _bad_records("post") == before + 1
    c = client(FakeRedis(strings={"zw:phase": b'{"name": 7}'}))
    r = c.get("/plan/phase", headers=RAUTH)
    assert r.status_code == 502 and "phase schema" in r.json()["error"]


def test_a_post_updates_entry_is_checked_against_the_schema_its_type_names():
    from gateway.feed import PostEntry, checked_entry

    good = checked_entry("zw:post-updates", b"5-0", {b"type": b"post", b"state": orjson.dumps(POST_DOC)})
    assert type(good) is PostEntry and good.typ == "post" and orjson.loads(good.state) == POST_DOC
    assert good.sse.startswith(b'id: 5-0\nevent: post\ndata: {"type":"post","state":{')
    before = _bad_records("post"), _bad_records("checkpoint")
    # a post's document under another type, a type that is none, a forged type (it goes into the JSON text)
    assert checked_entry("zw:post-updates", b"6-0", {b"type": b"checkpoint", b"state": orjson.dumps(POST_DOC)}) is None
    assert checked_entry("zw:post-updates", b"7-0", {b"type": b'post","x":"', b"state": orjson.dumps(POST_DOC)}) is None
    assert checked_entry("zw:post-updates", b"8-0", {b"state": orjson.dumps(POST_DOC)}) is None
    assert (_bad_records("post"), _bad_records("checkpoint")) == (before[0] + 2, before[1] + 1)
