"""The gateway (CONTRACT §9) against real Redis fed by the real pipeline (Kafka -> worker -> Redis).

One worker and one gateway process serve the tests of this module in order: the hand-computed
scenario first, then reconnection, trimming and a stuck client. Every comparison of "what a client
received" is against XRANGE of zw:zone-updates, the ground truth the contract points at.
"""

from __future__ import annotations

import socket
import sys
import time

import httpx
import orjson
import pytest

from contract import schemas, topics
from deploy.procs import Child
from tests import scenario
from tests.integration.conftest import REPO, Deployment, free_port, wait_until

pytestmark = pytest.mark.integration

TOKEN = "test-token-0123456789"
SECOND_TOKEN = "second-token-0123456789"  # tokens need 16 characters or more
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STREAM = "zw:zone-updates"


class GatewayProcess:
    """`zonewatch gateway` as a subprocess on a free port, on the deployment's Redis database."""

    def __init__(self, dep: Deployment, worker_port: int | None = None, extra: tuple = (), port: int | None = None,
                 env: dict | None = None):
        self.dep, self.extra = dep, tuple(extra)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(dep.env, ZONEWATCH_GATEWAY_TOKENS=f"{TOKEN},{SECOND_TOKEN}", **(env or {}))
        if worker_port:
            self.env["ZONEWATCH_WORKER_METRICS"] = f"http://127.0.0.1:{worker_port}/metrics"
        self.log = REPO / ".stack" / "test" / f"gateway-{dep.settings.app_id}-{self.port}.log"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = Child("gateway", [sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(self.port),
                                      "--heartbeat", "1", *self.extra], self.log, env=self.env, cwd=REPO).start()
        try:
            wait_until(lambda: self._healthy() or self.proc.poll() is not None, 60, what="gateway /healthz")
        except AssertionError:
            self.stop()     # never leave a gateway behind
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(grace=15)

    def get(self, path: str, **kw) -> httpx.Response:
        kw.setdefault("headers", AUTH)
        return httpx.get(self.url + path, timeout=10, **kw)

    def metric(self, name: str) -> float:
        """A series of the gateway's /metrics (`name` or `name{labels}`); without labels, the sum."""
        total, found = 0.0, False
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            series = line.split(" ")[0]
            if series == name or ("{" not in name and series.startswith(name + "{")):
                total += float(line.split()[-1])
                found = True
        assert found, f"{name} not in /metrics"
        return total


class SSEClient:
    """A /stream reader on httpx: next_event() returns {"event", "id", "data"}; heartbeats (every
    second with --heartbeat 1) let every read check its deadline. Unless `incidents` is true,
    the `incidents`/`incident` events are kept aside in `incident_events` (the zone-feed tests
    compare zone events with XRANGE of zw:zone-updates)."""

    def __init__(self, url: str, last_event_id: str | None = None, params: dict | None = None,
                 headers: dict | None = None, incidents: bool = False):
        self.with_incidents = incidents
        self.incident_events: list[dict] = []
        self.client = httpx.Client(timeout=httpx.Timeout(10.0, read=10.0))
        h = dict(AUTH if headers is None else headers)
        if last_event_id is not None:
            h["Last-Event-ID"] = last_event_id
        self._cm = self.client.stream("GET", url + "/stream", headers=h, params=params)
        self.response = self._cm.__enter__()
        self._lines = self.response.iter_lines()

    def next_event(self, timeout: float = 30.0) -> dict | None:
        """The next event, or None if only heartbeats came for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        ev: dict = {}
        for line in self._lines:
            if line == "":
                if "data" in ev:
                    ev.setdefault("event", "message")
                    if self.with_incidents or ev["event"] not in ("incidents", "incident"):
                        return ev
                    self.incident_events.append(ev)
                ev = {}
            elif line.startswith(":"):
                pass
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    ev["data"] = ev["data"] + "\n" + value if "data" in ev else value
                elif field in ("event", "id"):
                    ev[field] = value
            if time.monotonic() > deadline and not ev:
                return None
        raise AssertionError("stream ended")

    def close(self) -> None:
        try:
            self._cm.__exit__(None, None, None)
        finally:
            self.client.close()


class BackgroundReader:
    """Reads an SSEClient in a thread (a client that keeps reading while the test writes)."""

    def __init__(self, client: SSEClient):
        import queue
        import threading

        self.client, self.events, self.stopping = client, queue.Queue(), False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping:
                ev = self.client.next_event(timeout=1)
                if ev is not None:
                    self.events.put(ev)
        except Exception as exc:  # handed to the test thread
            if not self.stopping:
                self.events.put(exc)

    def get(self, timeout: float = 30.0) -> dict:
        ev = self.events.get(timeout=timeout)
        if isinstance(ev, Exception):
            raise ev
        return ev

    def stop(self) -> None:
        self.stopping = True
        self.client.close()
        self.thread.join(10)


def stream_ids(dep, after: str = "-") -> list[str]:
    start = "-" if after in ("-", "0-0") else f"({after}"
    return [i.decode() for i, _ in dep.redis.xrange(STREAM, start, "+")]


def read_zone_events_until_stream(dep, client: SSEClient, after: str, idle: float = 1.5,
                                  timeout: float = 90.0) -> list[dict]:
    """Zone events until the client has everything XRANGE has after `after` and nothing came for
    `idle` seconds; returns the events (the caller compares their ids with XRANGE)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        expected = stream_ids(dep, after)
        have = got[-1]["id"] if got else None
        if expected and have == expected[-1] or (not expected and not got):
            ev = client.next_event(timeout=idle)
            if ev is None:
                if stream_ids(dep, after) == expected:
                    return got
                continue
        else:
            ev = client.next_event(timeout=30)
            assert ev is not None, f"no event while {len(expected)} expected, {len(got)} received"
        assert ev["event"] == "zone", ev
        got.append(ev)
    raise AssertionError(f"stream did not settle: got {len(got)} events")


def id_key(i: str) -> tuple[int, int]:
    a, b = i.split("-")
    return int(a), int(b)


def redis_incidents(dep) -> dict[str, dict]:
    return {k.decode(): orjson.loads(v) for k, v in dep.redis.hgetall("zw:incidents").items()}


def apply_incident_events(events: list[dict], wall: dict | None = None) -> dict[str, dict]:
    """What the wall page does with `incidents` and `incident` events."""
    wall = {} if wall is None else wall
    for ev in events:
        data = orjson.loads(ev["data"])
        assert "id" not in ev, ev          # Last-Event-ID must stay a zw:zone-updates id
        if ev["event"] == "incidents":
            wall = {d["call_id"]: d for d in data}
        elif data["status"] in ("open", "breached"):
            wall[data["call_id"]] = data
        else:
            wall.pop(data["call_id"], None)
    return wall


@pytest.fixture(scope="module")
def live(stack):
    """One deployment (2 partitions), one worker, one gateway for the module."""
    dep = Deployment(stack, scenario.ZONES_FILE, partitions=2)
    gw = None
    try:
        wport = dep.start_worker()
        gw = GatewayProcess(dep, wport)
        yield dep, gw
    finally:
        if gw:
            gw.stop()
        dep.close()


def publish_scenario(dep) -> None:
    dep.produce(topics.CALLS, scenario.CALLS[:4])
    dep.produce(topics.CALLS, scenario.INVALID_CALLS)
    dep.produce(topics.ALERTS, scenario.ALERTS)
    dep.produce(topics.CALLS, scenario.CALLS[4:])
    dep.produce(topics.GPS, scenario.FIXES)


def settled_at(dep, clock: int, n: int = 5):
    docs = dep.zone_docs()
    return len(docs) == n and all(d["clock"] == clock for d in docs.values()) and docs


def test_snapshot_then_updates_from_the_pipeline(live):
    dep, gw = live
    client = SSEClient(gw.url)
    try:
        assert client.response.status_code == 200
        assert client.response.headers["content-type"].startswith("text/event-stream")
        snap = client.next_event()
        assert snap["event"] == "snapshot"
        assert orjson.loads(snap["data"]) == []          # nothing written yet
        snap_id = snap["id"]
        assert snap_id == "0-0"

        publish_scenario(dep)
        docs = wait_until(lambda: settled_at(dep, scenario.FINAL_CLOCK), what="scenario settled")
        events = read_zone_events_until_stream(dep, client, snap_id)
        deadline = time.monotonic() + 10
        while apply_incident_events(client.incident_events) != redis_incidents(dep) and time.monotonic() < deadline:
            ev = client.next_event(timeout=1)  # incident entries of a flush may trail its zone entries
            if ev is not None:
                events.append(ev)
    finally:
        client.close()

    # every update after the snapshot id, exactly once, in stream order
    assert [e["id"] for e in events] == stream_ids(dep, snap_id)
    latest: dict[str, dict] = {}
    for e in events:
        doc = orjson.loads(e["data"])
        if doc["version"] > latest.get(doc["zone_id"], {}).get("version", 0):
            latest[doc["zone_id"]] = doc
    assert latest == docs       # the client holds exactly what Redis holds (the figures themselves
                                # are test_zone_state_e2e's business)

    # open incidents: first the (empty) list after the snapshot, then each change; the client ends
    # with what zw:incidents holds, and each zone's open_incidents counts exactly those in it
    inc_events = client.incident_events
    assert inc_events[0]["event"] == "incidents" and orjson.loads(inc_events[0]["data"]) == []
    wall = apply_incident_events(inc_events)
    assert wall == redis_incidents(dep)
    assert wall, "the scenario leaves open incidents"
    for zid, doc in docs.items():
        assert doc["open_incidents"] == sum(zid in i["zones"] for i in wall.values()), (zid, wall)
    assert [i["call_id"] for i in gw.get("/incidents").json()] == \
        [c for c, _ in sorted(wall.items(), key=lambda kv: kv[1]["ts"])]

    # the REST views agree with Redis
    r = gw.get("/zones")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert {d["zone_id"]: d for d in r.json()} == docs
    assert gw.get("/zones/outer").json() == docs["outer"]
    r = gw.get("/zones/no-such-zone")
    assert r.status_code == 404 and "error" in r.json()

    # units near u1's latest fix: u1 first, then the others by distance
    lat, lon = scenario.EXPECTED_UNIT_POSITIONS["u1"]
    r = gw.get("/units", params={"near": f"{lat},{lon}", "radius": "20000"})
    assert r.status_code == 200
    units = r.json()
    assert units[0]["unit_id"] == "u1" and units[0]["distance_m"] < 1.0, (units, dep.redis.geopos("zw:units", "u1"))
    assert [u["distance_m"] for u in units] == sorted(u["distance_m"] for u in units)
    # u3's fix is more than 120 s older than the stream clock (stale: left out); u4 is ~100 km away
    assert {u["unit_id"] for u in units} == {"u1", "u2"}
    fixes = {f["unit_id"]: f for f in scenario.FIXES}   # one fix per unit (u3 has only one)
    latest = {"u1": scenario.FIXES[1], "u2": scenario.FIXES[2]}
    for u in units:
        elat, elon = scenario.EXPECTED_UNIT_POSITIONS[u["unit_id"]]
        assert abs(u["lat"] - elat) < 1e-5 and abs(u["lon"] - elon) < 1e-5
        want = latest[u["unit_id"]]
        assert (u["status"], u["kind"], u["ts"]) == (want["status"], want["kind"], want["ts"]), u
        assert u["eta_s"] == round(u["distance_m"] * 1.3 / 8.3)        # cars: 8.3 m/s, 1.3 detour
    assert set(fixes) == {"u1", "u2", "u3", "u4"}
    assert scenario.FINAL_CLOCK - fixes["u3"]["ts"] > 120_000
    assert gw.get("/units", params={"near": f"{lat},{lon}", "radius": "50"}).json()[0]["unit_id"] == "u1"
    for bad in ({"near": "x"}, {"near": "91,113"}, {"near": f"{lat},{lon}", "radius": "-1"}, {}):
        assert gw.get("/units", params=bad).status_code == 400, bad

    # the zones file for the wall: ids at top level, whichever way the file gives them
    gj = gw.get("/zones.geojson").json()
    assert [f["id"] for f in gj["features"]] == ["A", "B", "outer", "inner", "core"]
    api = gw.get("/openapi.json").json()
    assert {"/zones", "/zones/{zone_id}", "/units", "/stream"} <= set(api["paths"])

    # the wall's latency badge: the worker's e2e histogram, scraped
    stats = gw.get("/stats").json()
    assert stats["e2e"]["p50_ms"] is not None and stats["e2e"]["events"] > 0, stats
    assert stats["tz"] == "Asia/Shanghai"


def test_tokens_required_except_healthz_and_wall(live):
    dep, gw = live
    for path in ("/zones", "/zones/A", "/zones.geojson", "/units?near=34.7,113.6&radius=100", "/stream",
                 "/stats", "/openapi.json", "/incidents", "/incidents/c1"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = gw.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # ?token= is for /stream only
    assert gw.get("/zones", headers={}, params={"token": TOKEN}).status_code == 401
    assert gw.get("/zones", headers={"Authorization": f"Bearer {SECOND_TOKEN}"}).status_code == 200
    assert gw.get("/healthz", headers={}).json()["redis"] is True
    wall = gw.get("/", headers={})
    assert wall.status_code == 200 and "<svg" in wall.text      # static page, no data in it
    assert "zonewatch_gateway_clients" in gw.get("/metrics", headers={}).text

    # /stream with ?token= (what browsers do)
    c = SSEClient(gw.url, headers={}, params={"token": TOKEN})
    try:
        assert c.next_event()["event"] == "snapshot"
    finally:
        c.close()
    # /ws: rejected without a token, the same feed with one
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def ws_check():
        with pytest.raises(InvalidStatus):
            async with connect(gw.url.replace("http", "ws") + "/ws"):
                pass
        async with connect(gw.url.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["type"] == "snapshot" and len(msg["zones"]) == 5
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["type"] == "incidents" and {i["call_id"] for i in msg["incidents"]} == \
                set(redis_incidents(dep))

    asyncio.run(ws_check())


def _calls(prefix: str, n: int, start_ts: int, pt) -> list[dict]:
    return [{"call_id": f"{prefix}{i}", "ts": start_ts + i * 1000, "lat": pt[0], "lon": pt[1],
             "category": "theft", "priority": 3} for i in range(n)]


def test_reconnect_with_last_event_id_gets_every_update_exactly_once(live):
    dep, gw = live
    clock0 = max(d["clock"] for d in dep.zone_docs().values())

    first = SSEClient(gw.url)
    try:
        snap = first.next_event()
        assert snap["event"] == "snapshot"
        assert {d["zone_id"]: d for d in orjson.loads(snap["data"])} == dep.zone_docs()
        s_id = snap["id"]
        assert s_id == stream_ids(dep)[-1]

        batch1 = _calls("r1-", 6, clock0 + 60_000, scenario.PAB)
        dep.produce(topics.CALLS, batch1)
        wait_until(lambda: settled_at(dep, batch1[-1]["ts"]), what="batch 1 settled")
        got1 = read_zone_events_until_stream(dep, first, s_id)
    finally:
        first.close()
    assert [e["id"] for e in got1] == stream_ids(dep, s_id)
    # disconnect after part of the updates: resume from the middle of what the client saw
    cut = len(got1) // 2
    last_seen = got1[cut - 1]["id"]

    wait_until(lambda: gw.metric("zonewatch_gateway_clients") == 0, 10, what="client gone")
    batch2 = _calls("r2-", 6, batch1[-1]["ts"] + 60_000, scenario.PB)   # produced while disconnected
    dep.produce(topics.CALLS, batch2)
    wait_until(lambda: settled_at(dep, batch2[-1]["ts"]), what="batch 2 settled")

    second = SSEClient(gw.url, last_event_id=last_seen)
    try:
        got2 = read_zone_events_until_stream(dep, second, last_seen)
    finally:
        second.close()
    # a resumed client gets the open incidents first (they are few; the list replaces its own)
    assert second.incident_events[0]["event"] == "incidents"
    ids2 = [e["id"] for e in got2]
    assert ids2 == stream_ids(dep, last_seen)                   # no snapshot: straight to the updates
    assert len(ids2) == len(set(ids2)) and ids2[0] == got1[cut]["id"]
    # seen before the cut + after it = the whole stream after the snapshot, each id once
    assert [e["id"] for e in got1[:cut]] + ids2 == stream_ids(dep, s_id)
    assert orjson.loads(got2[-1]["data"])["clock"] == batch2[-1]["ts"]

    # the same with ?last_event_id= (a new EventSource in a browser cannot set the header)
    third = SSEClient(gw.url, params={"last_event_id": last_seen})
    try:
        got3 = read_zone_events_until_stream(dep, third, last_seen)
    finally:
        third.close()
    assert [e["id"] for e in got3] == ids2

    # a malformed id is refused
    bad = httpx.get(gw.url + "/stream", headers={**AUTH, "Last-Event-ID": "yesterday"}, timeout=5)
    assert bad.status_code == 400


def test_trimmed_last_event_id_gets_resync_and_snapshot(live):
    dep, gw = live
    ids = stream_ids(dep)
    old = ids[0]
    dep.redis.xtrim(STREAM, maxlen=1, approximate=False)          # the writer's MAXLEN~, forced
    assert stream_ids(dep) == ids[-1:]
    before = gw.metric('zonewatch_gateway_resyncs_total{reason="trimmed"}')
    for n, last in enumerate((old, "99999999999999-0")):          # trimmed, and from a newer stream
        top = stream_ids(dep)[-1]
        c = SSEClient(gw.url, last_event_id=last)
        try:
            ev = c.next_event()
            assert ev["event"] == "resync" and orjson.loads(ev["data"])["reason"] == "trimmed"
            snap = c.next_event()
            assert snap["event"] == "snapshot" and snap["id"] == top
            assert {d["zone_id"]: d for d in orjson.loads(snap["data"])} == dep.zone_docs()
            # and live afterwards
            ts = max(d["clock"] for d in dep.zone_docs().values()) + 60_000
            dep.produce(topics.CALLS, _calls(f"trim{n}-", 1, ts, scenario.PA))
            ev = c.next_event()
            assert ev["event"] == "zone" and id_key(ev["id"]) > id_key(top)
            wait_until(lambda ts=ts: settled_at(dep, ts), what="trim test call settled")
        finally:
            c.close()
    assert gw.metric('zonewatch_gateway_resyncs_total{reason="trimmed"}') == before + 2
    # the id still in the stream is no reason to resync
    last = stream_ids(dep)[0]
    c = SSEClient(gw.url, last_event_id=last)
    try:
        got = read_zone_events_until_stream(dep, c, last)
        assert [e["id"] for e in got] == stream_ids(dep, last)
    finally:
        c.close()


def test_stuck_client_does_not_hold_back_others_or_the_pipeline(live):
    dep, _ = live
    # a second gateway with a smaller per-client queue (200 updates instead of 1000), and a write
    # timeout longer than this test: the stuck client reads again at its end (a client that stops
    # reading for --write-timeout is dropped: test_gateway_hostile.py)
    gw = GatewayProcess(dep, extra=("--client-queue", "200", "--write-timeout", "300"))
    stuck = socket.socket()
    fast = None
    try:  # (GatewayProcess stops its process itself when it cannot start)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # and it never reads
        stuck.connect(("127.0.0.1", gw.port))
        stuck.sendall(f"GET /stream?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        fast_client = SSEClient(gw.url)
        assert fast_client.next_event()["event"] == "snapshot"
        fast = BackgroundReader(fast_client)
        wait_until(lambda: gw.metric('zonewatch_gateway_clients{transport="sse"}') == 2, 10, what="2 clients")
        slow_before = gw.metric('zonewatch_gateway_resyncs_total{reason="slow"}')

        # a burst of 5000 updates (~5 MB, far more than the stuck client's queue and socket
        # buffers), written as the state writer writes them, 100 per pipeline like its flushes
        pad = "x" * 900
        t0 = time.monotonic()
        for chunk in range(50):
            pipe = dep.redis.pipeline(transaction=False)
            for i in range(chunk * 100 + 1, chunk * 100 + 101):
                state = orjson.dumps(schemas.example("zone", zone_id="burst", version=i, name=pad))
                pipe.xadd(STREAM, {"zone_id": "burst", "version": i, "state": state})
            pipe.execute()
            time.sleep(0.01)
        last_burst = stream_ids(dep)[-1]

        # the client that reads gets every one of them, in order, and no resync
        versions = []
        while len(versions) < 5000:
            ev = fast.get(timeout=30)
            assert ev["event"] == "zone", ev
            versions.append(orjson.loads(ev["data"])["version"])
        assert versions == list(range(1, 5001)) and ev["id"] == last_burst
        burst_s = time.monotonic() - t0
        # ... while the stuck one overflowed its queue: exactly one resync pending, for it alone
        wait_until(lambda: gw.metric('zonewatch_gateway_resyncs_total{reason="slow"}') == slow_before + 1, 20,
                   what="the stuck client marked for resync")

        # the pipeline is not held back either: a new call reaches Redis and the fast client
        ts = max((d["clock"] for d in dep.zone_docs().values()), default=scenario.FINAL_CLOCK) + 60_000
        t1 = time.monotonic()
        dep.produce(topics.CALLS, _calls("stuck-", 1, ts, scenario.PA))
        while True:
            ev = fast.get(timeout=30)
            assert ev["event"] == "zone", ev
            doc = orjson.loads(ev["data"])
            if doc.get("zone_id") == "A" and doc.get("clock") == ts:
                break
        live_s = time.monotonic() - t1
        assert live_s < 20, live_s

        # when the stuck client finally reads: what was buffered, then `resync` and a fresh snapshot
        stuck.settimeout(30)
        buf = b""
        deadline = time.monotonic() + 60
        while b"event: resync" not in buf or b"event: snapshot" not in buf.split(b"event: resync", 1)[1]:
            assert time.monotonic() < deadline, buf[-500:]
            chunk = stuck.recv(1 << 16)
            assert chunk, "stuck client's stream closed"
            buf += chunk
        head, tail = buf.split(b"event: resync", 1)
        assert head.startswith(b"HTTP/1.1 200")
        assert head.count(b"event: zone") < 5000          # it did not get the whole burst
        assert b'"reason":"slow"' in tail.split(b"\n\n", 1)[0]
        assert gw.metric('zonewatch_gateway_resyncs_total{reason="slow"}') == slow_before + 1
        print(f"burst of 5000 updates to the fast client in {burst_s:.2f}s; call->client {live_s:.2f}s")
    finally:
        stuck.close()
        if fast:
            fast.stop()
        gw.stop()


def test_incidents_on_the_feed_open_arrived_breached_and_on_resume(live):
    """The wall's incident list through the real pipeline: a call appears as `open` with its
    zones and breach deadline, leaves on the arrival of a unit (with its response time), a call
    nobody reaches turns `breached` and stays; a resuming client gets the list first."""
    dep, gw = live
    clock0 = max((d["clock"] for d in dep.zone_docs().values()), default=scenario.FINAL_CLOCK) + 60_000
    c = SSEClient(gw.url, incidents=True)
    try:
        assert c.next_event()["event"] == "snapshot"
        first = c.next_event()
        assert first["event"] == "incidents" and "id" not in first
        wall = apply_incident_events([first])
        assert wall == redis_incidents(dep)

        calls = [{"call_id": "inc-a1", "ts": clock0, "lat": scenario.PA[0], "lon": scenario.PA[1],
                  "category": "violent", "priority": 1, "caller": "13800138000"},
                 {"call_id": "inc-a2", "ts": clock0 + 1000, "lat": scenario.PA[0], "lon": scenario.PA[1],
                  "category": "fire", "priority": 2},
                 {"call_id": "inc-b1", "ts": clock0 + 2000, "lat": scenario.PB[0], "lon": scenario.PB[1],
                  "category": "theft", "priority": 3}]
        dep.produce(topics.CALLS, calls)

        def until(pred, what):
            deadline = time.monotonic() + 60
            while not pred():
                assert time.monotonic() < deadline, f"timed out: {what}; wall {sorted(wall)}"
                ev = c.next_event(timeout=5)
                if ev is not None and ev["event"] in ("incidents", "incident"):
                    apply_incident_events([ev], wall)

        until(lambda: {"inc-a1", "inc-a2", "inc-b1"} <= set(wall), "three open incidents")
        a1 = wall["inc-a1"]
        assert a1["status"] == "open" and a1["zones"] == ["A"] and a1["priority"] == 1
        assert a1["category"] == "violent" and a1["breach_at"] == clock0 + 300_000 and a1["ts"] == clock0
        assert "13800138000" not in orjson.dumps(a1).decode() and "caller" not in a1
        assert wall["inc-b1"]["zones"] == ["B"]
        listed = gw.get("/incidents").json()
        assert [i["call_id"] for i in listed if i["call_id"].startswith("inc-")] == ["inc-a1", "inc-a2", "inc-b1"]

        # a unit reaches A 90 s after the first call: both calls in A leave the list, answered
        dep.produce(topics.GPS, [{"unit_id": "inc-u1", "ts": clock0 + 90_000,
                                    "lat": scenario.PA[0], "lon": scenario.PA[1]}])
        arrived = {}

        def both_arrived():
            apply_incident_events(c.incident_events, wall)
            for ev in c.incident_events:
                d = orjson.loads(ev["data"])
                if ev["event"] == "incident" and d["status"] == "arrived":
                    arrived[d["call_id"]] = d
            c.incident_events.clear()
            return {"inc-a1", "inc-a2"} <= set(arrived)

        c.with_incidents = False      # let next_event collect them for both_arrived
        deadline = time.monotonic() + 60
        while not both_arrived():
            assert time.monotonic() < deadline, f"no arrival events: {arrived}"
            c.next_event(timeout=2)
        c.with_incidents = True
        assert arrived["inc-a1"]["response_s"] == 90.0 and arrived["inc-a2"]["response_s"] == 89.0
        assert arrived["inc-a1"]["unit_id"] == "inc-u1"
        wait_until(lambda: "inc-a1" not in redis_incidents(dep) and "inc-a2" not in redis_incidents(dep), 30,
                   what="arrived incidents removed from zw:incidents")
        assert "inc-b1" in redis_incidents(dep)

        # nobody reaches B: when the stream clock passes ts + 300 s (driven by a unit elsewhere),
        # inc-b1 turns breached and stays on the list
        dep.produce(topics.GPS, [{"unit_id": "inc-u2", "ts": clock0 + 2000 + 300_000,
                                    "lat": scenario.PCORE[0], "lon": scenario.PCORE[1]}])
        until(lambda: wall.get("inc-b1", {}).get("status") == "breached", "inc-b1 breached")
        assert "inc-a1" not in wall and "inc-a2" not in wall
        zone_b = wait_until(lambda: (d := dep.zone_docs()["B"])["clock"] >= clock0 + 302_000 and d,
                            what="B at the breach clock")
        assert wall == redis_incidents(dep)
        assert zone_b["open_incidents"] == sum("B" in i["zones"] for i in wall.values())
        last_zone_id = stream_ids(dep)[-1]
    finally:
        c.close()

    # a browser reconnecting with its Last-Event-ID: the incident list comes first, then zones
    r = SSEClient(gw.url, last_event_id=last_zone_id, incidents=True)
    try:
        ev = r.next_event()
        assert ev["event"] == "incidents"
        resumed = apply_incident_events([ev])
        assert resumed == redis_incidents(dep) and resumed["inc-b1"]["status"] == "breached"
    finally:
        r.close()
