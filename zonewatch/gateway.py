"""`zonewatch gateway` — the HTTP / Server-Sent Events gateway and the wall page (CONTRACT §9).

    ZONEWATCH_GATEWAY_TOKENS=secret1,secret2 zonewatch gateway --port 8080
    open http://127.0.0.1:8080/?token=secret1

Starlette on uvicorn, redis.asyncio for Redis. Endpoints (all but `/healthz`, `/metrics` and the
static wall page need `Authorization: Bearer <token>`; `/stream` and `/ws` also take `?token=`):

  GET /zones                 all zone states (JSON array of CONTRACT §3 documents)
  GET /zones/{id}            one zone state, 404 if Redis has none for that id
  GET /zones.geojson         the zones file (ZONEWATCH_ZONES) with every feature's id at top level
  GET /units?near=LAT,LON&radius=M[&limit=N]   units of zw:units within M metres, nearest first
  GET /incidents             open incidents (zw:incidents), oldest call first
  GET /stream                Server-Sent Events: `snapshot`, then one `zone` event per zw:zone-updates
                             entry; resumable with Last-Event-ID (header or ?last_event_id=);
                             `resync` + a fresh `snapshot` when the id was trimmed or the client fell
                             too far behind. Besides: `incidents` (all open incidents) after every
                             snapshot or resume, then one `incident` event per zw:incident-updates
                             entry; these carry no `id:`, so Last-Event-ID stays a zone-updates id
  WS  /ws                    the same feed as JSON messages over a WebSocket
  GET /stats                 the worker's e2e latency (p50/p99 over the last 30 s, scraped from its
                             /metrics), connected clients, the stream's time zone
  GET /healthz  /metrics  /openapi.json  /  (the wall)

Fan-out: ONE task per gateway process reads zw:zone-updates with XREAD BLOCK and puts each entry
(encoded once, shared by every client) into each client's bounded queue without awaiting anyone.
A client whose queue is full is marked "resync needed": its queue is emptied, further entries are
dropped for it, and its writer next sends `resync` and a fresh `snapshot`. A slow or stuck client
therefore costs one bounded queue and one socket buffer, never slows the reader, the pipeline or
the other clients: 200 clients cost 200 queues, one reading Redis connection and a small shared
pool (16) for snapshots, catch-ups and REST calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import re
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest

from contract.errors import ConfigError
from contract.settings import Settings
from contract import metrics
from gateway import promtext
from gateway.promtext import histogram_quantile  # one PromQL-compatible implementation for watch and wall
from contract.security import redacted_url

log = logging.getLogger("zonewatch.gateway")

# CONTRACT §3 Redis names (the same constants as streams/state_writer.py, kept here so the gateway
# does not import the stream processor's modules).
UPDATES_STREAM = "zw:zone-updates"
ZONES_SET = "zw:zones"
INCIDENTS_HASH = "zw:incidents"
INCIDENT_UPDATES = "zw:incident-updates"


def zone_key(zone_id: str) -> str:
    return f"zw:zone:{zone_id}"


STATIC_DIR = Path(__file__).parent / "gateway_static"
DEFAULT_WORKER_METRICS = "http://127.0.0.1:6066/metrics"
DEFAULT_QUEUE = 1000          # entries a client may be behind before it is told to resync
DEFAULT_HEARTBEAT_S = 15.0
READ_BLOCK_MS = 5000          # XREAD BLOCK; on each timeout the reader checks for a recreated stream
READ_COUNT = 1000
REDIS_POOL = 16               # Redis connections per gateway process (one is the reader's)
CATCHUP_PAGE = 500            # XRANGE page size when a client resumes with Last-Event-ID
MAX_BATCH = 500               # queue items a writer sends in one socket write
MAX_RADIUS_M = 100_000.0
E2E_WINDOW_S = 30.0
STATS_MIN_INTERVAL_S = 2.0
ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
CLIENTS = Gauge("zonewatch_gateway_clients", "Connected live-feed clients", ["transport"], registry=REGISTRY)
RESYNCS = Counter("zonewatch_gateway_resyncs_total",
                  "Resyncs sent to clients: slow = its queue overflowed, trimmed = its Last-Event-ID "
                  "is no longer in zw:zone-updates, reset = the stream was recreated", ["reason"],
                  registry=REGISTRY)
UPDATES = Counter("zonewatch_gateway_updates_total", "Entries read from zw:zone-updates", registry=REGISTRY)
INCIDENT_UPDATES_READ = Counter("zonewatch_gateway_incident_updates_total", "Entries read from zw:incident-updates",
                                registry=REGISTRY)
REDIS_ERRORS = Counter("zonewatch_gateway_redis_errors_total", "Failed reads of zw:zone-updates (retried)",
                       registry=REGISTRY)
for _t in ("sse", "ws"):
    CLIENTS.labels(_t)
for _r in ("slow", "trimmed", "reset"):
    RESYNCS.labels(_r)


# ---------------------------------------------------------------------------------------------
# stream ids and entries


def id_key(stream_id: str | bytes) -> tuple[int, int]:
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode()
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def parse_last_event_id(raw: str | None) -> str | None:
    """None when absent; ValueError when it is not a stream id (`<ms>-<seq>`)."""
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not ID_RE.match(raw):
        raise ValueError(f"Last-Event-ID {raw[:60]!r} is not a zw:zone-updates id like 1686440000000-0")
    return raw


class Entry:
    """One zw:zone-updates entry, encoded once for every client (SSE frame and WebSocket text)."""

    __slots__ = ("id", "key", "zone_id", "state", "_sse", "_ws")
    KIND = "zone"

    def __init__(self, sid: bytes | str, fields: dict):
        self.id = sid.decode() if isinstance(sid, bytes) else sid
        self.key = id_key(self.id)
        zid = fields.get(b"zone_id", b"")
        self.zone_id = zid.decode() if isinstance(zid, bytes) else str(zid)
        self.state: bytes = fields.get(b"state") or b"null"
        self._sse: bytes | None = None
        self._ws: str | None = None

    def _sse_frame(self) -> bytes:
        return b"id: %s\nevent: zone\ndata: %s\n\n" % (self.id.encode(), self.state)

    def _ws_text(self) -> str:
        return '{"type":"zone","id":"%s","state":%s}' % (self.id, self.state.decode())

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = self._sse_frame()
        return self._sse

    @property
    def ws(self) -> str:
        if self._ws is None:
            self._ws = self._ws_text()
        return self._ws


class IncidentEntry(Entry):
    """One zw:incident-updates entry: an incident's wall entry after a change."""

    __slots__ = ()
    KIND = "incident"

    def _sse_frame(self) -> bytes:
        # no `id:` line: the browser's Last-Event-ID must stay a zw:zone-updates id
        return b"event: incident\ndata: %s\n\n" % self.state

    def _ws_text(self) -> str:
        return '{"type":"incident","state":%s}' % self.state.decode()


RESYNC = object()   # queue sentinel: the client fell behind
PING = object()     # queue sentinel: heartbeat


@dataclass
class Snapshot:
    id: str
    docs: list[bytes]

    def array(self) -> bytes:
        return b"[" + b",".join(self.docs) + b"]"


class Subscriber:
    """A connected client: a bounded queue filled by the reader, drained by the client's writer."""

    __slots__ = ("queue", "resync", "reason", "mark", "inc_mark", "transport")

    def __init__(self, maxsize: int, transport: str):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.resync = False             # queue overflowed; entries are dropped until the resync is sent
        self.reason = ""
        self.mark: tuple[int, int] = (0, 0)  # id of the newest update this client has been given
        self.inc_mark: tuple[int, int] = (0, 0)  # the same for zw:incident-updates
        self.transport = transport

    def offer(self, entry: Entry | IncidentEntry) -> None:
        """Called by the reader for every entry; never blocks, never awaits."""
        if self.resync:
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.force_resync("slow")

    def force_resync(self, reason: str) -> None:
        if self.resync:
            return
        self.resync, self.reason = True, reason
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        self.queue.put_nowait(RESYNC)
        RESYNCS.labels(reason).inc()

    def ping(self) -> None:
        if not self.resync and self.queue.empty():
            self.queue.put_nowait(PING)


class TrimmedError(Exception):
    """The client's Last-Event-ID is no longer in the stream (or the stream was recreated)."""


class Hub:
    """The shared reader of zw:zone-updates and the set of connected clients."""

    def __init__(self, redis, queue_size: int = DEFAULT_QUEUE, heartbeat_s: float = DEFAULT_HEARTBEAT_S):
        self.redis = redis
        self.queue_size = queue_size
        self.yield_every = max(1, queue_size // 4)
        self.heartbeat_s = heartbeat_s
        self.subs: set[Subscriber] = set()
        self.last_id = "0-0"
        self.inc_last_id = "0-0"
        self._tasks: list[asyncio.Task] = []
        self.reading = False

    # lifecycle
    async def start(self) -> None:
        try:
            self.last_id = await self._top_id()
            self.inc_last_id = await self._top_id(INCIDENT_UPDATES)
        except Exception as exc:  # Redis down at start: the reader retries from the beginning
            log.warning("cannot read %s at start (%s); will retry", UPDATES_STREAM, exc)
            self.last_id = None
        self._tasks = [asyncio.create_task(self._read_loop(), name="zw-gateway-reader"),
                       asyncio.create_task(self._heartbeat_loop(), name="zw-gateway-heartbeat")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # client registry
    def register(self, transport: str) -> Subscriber:
        sub = Subscriber(self.queue_size, transport)
        self.subs.add(sub)
        CLIENTS.labels(transport).inc()
        return sub

    def unregister(self, sub: Subscriber) -> None:
        if sub in self.subs:
            self.subs.discard(sub)
            CLIENTS.labels(sub.transport).dec()

    # the one reader
    async def _top_id(self, stream: str = UPDATES_STREAM) -> str:
        """last-generated-id of the stream ("0-0" when it does not exist)."""
        try:
            info = await self.redis.xinfo_stream(stream)
        except Exception as exc:
            if "no such key" in str(exc).lower():
                return "0-0"
            raise
        lg = info.get("last-generated-id")
        if lg is None:
            last = info.get("last-entry")
            lg = last[0] if last else b"0-0"
        return lg.decode() if isinstance(lg, bytes) else str(lg)

    async def _read_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                if self.last_id is None:
                    self.last_id = await self._top_id()
                    self.inc_last_id = await self._top_id(INCIDENT_UPDATES)
                self.reading = True
                resp = await self.redis.xread({UPDATES_STREAM: self.last_id, INCIDENT_UPDATES: self.inc_last_id},
                                              count=READ_COUNT, block=READ_BLOCK_MS)
                delay = 0.2
                if not resp:
                    await self._check_reset()
                    continue
                for stream, entries in resp:
                    zones = stream in (UPDATES_STREAM, UPDATES_STREAM.encode())
                    for n, (sid, fields) in enumerate(entries, 1):
                        entry = Entry(sid, fields) if zones else IncidentEntry(sid, fields)
                        for sub in tuple(self.subs):
                            sub.offer(entry)
                        if zones:
                            self.last_id = entry.id
                        else:
                            self.inc_last_id = entry.id
                        if n % self.yield_every == 0:
                            # let the writers of clients that keep up drain their queues within a
                            # big read (never waits for any one client)
                            await asyncio.sleep(0)
                    if zones:
                        UPDATES.inc(len(entries))
                    else:
                        INCIDENT_UPDATES_READ.inc(len(entries))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection errors: keep the clients, retry from last_id
                self.reading = False
                REDIS_ERRORS.inc()
                log.warning("reading %s failed (%s); retrying in %.1fs", UPDATES_STREAM, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _check_reset(self) -> None:
        top = await self._top_id()
        inc_top = await self._top_id(INCIDENT_UPDATES)
        reset = False
        if id_key(top) < id_key(self.last_id):
            log.warning("%s was recreated (last id %s < %s): every client resyncs",
                        UPDATES_STREAM, top, self.last_id)
            self.last_id = top
            reset = True
        if id_key(inc_top) < id_key(self.inc_last_id):
            log.warning("%s was recreated (last id %s < %s): every client resyncs",
                        INCIDENT_UPDATES, inc_top, self.inc_last_id)
            self.inc_last_id = inc_top
            reset = True
        if reset:
            for sub in tuple(self.subs):
                sub.force_resync("reset")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for sub in tuple(self.subs):
                sub.ping()

    # reads for one client
    async def snapshot(self, sub: Subscriber) -> Snapshot:
        """All zone documents, with the stream's last id read BEFORE the documents.

        Every update with a smaller id is reflected in the documents (the writer SETs before it
        XADDs); updates after it reach the client through its queue. An update between the id and
        the MGET may be both in the snapshot and sent after it: clients keep the highest version.
        """
        sub.resync = False   # from here on the reader queues entries for this client again
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrevrange(UPDATES_STREAM, "+", "-", count=1)
        pipe.smembers(ZONES_SET)
        top, members = await pipe.execute()
        sid = top[0][0].decode() if top else "0-0"
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        docs = [d for d in (await self.redis.mget([zone_key(z) for z in ids]) if ids else []) if d]
        sub.mark = id_key(sid)
        return Snapshot(sid, docs)

    async def incidents(self, sub: Subscriber | None = None) -> Snapshot:
        """All open incidents, oldest call first, with zw:incident-updates' last id read BEFORE the
        hash (the worker HSETs before it XADDs): entries up to that id are in the snapshot, later
        ones reach the client through its queue and may repeat what the snapshot already shows,
        which is harmless since each entry is the incident's whole state."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrevrange(INCIDENT_UPDATES, "+", "-", count=1)
        pipe.hgetall(INCIDENTS_HASH)
        top, raw = await pipe.execute()
        sid = top[0][0].decode() if top else "0-0"
        if sub is not None:
            sub.inc_mark = id_key(sid)
        docs = []
        for js in raw.values():
            try:
                docs.append((orjson.loads(js).get("ts", 0), js))
            except (orjson.JSONDecodeError, AttributeError):
                continue
        docs.sort(key=lambda d: d[0])
        return Snapshot(sid, [js for _, js in docs])

    async def catch_up(self, sub: Subscriber, last_id: str):
        """Yield lists of entries after `last_id` (exclusive); TrimmedError if some are gone."""
        start = last_id
        first = True
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xrange(UPDATES_STREAM, f"({start}", "+", count=CATCHUP_PAGE)
            pipe.xinfo_stream(UPDATES_STREAM)  # after the XRANGE: trimming only moves forward
            entries, info = await pipe.execute(raise_on_error=False)
            if isinstance(entries, Exception):
                raise entries
            skey = id_key(start)
            if isinstance(info, Exception):
                if "no such key" not in str(info).lower():
                    raise info
                if skey != (0, 0):
                    raise TrimmedError(f"{UPDATES_STREAM} does not exist")
                return
            last_gen = id_key(info.get("last-generated-id") or b"0-0")
            first_entry = info.get("first-entry")
            max_deleted = info.get("max-deleted-entry-id")
            if first and skey > last_gen:
                raise TrimmedError(f"{start} is newer than the stream's last id")
            if first_entry and id_key(first_entry[0]) > skey:
                # trimming removes the oldest entries: the client's id is gone, and maybe some after
                # it. From 0-0 (a snapshot of an empty stream) nothing is lost unless entries were.
                added = info.get("entries-added")
                if skey != (0, 0) or (added is not None and added > info.get("length", 0)):
                    raise TrimmedError(f"{start} was trimmed")
            if not first_entry and last_gen > skey:
                raise TrimmedError(f"entries after {start} were trimmed")
            if max_deleted is not None and id_key(max_deleted) > skey:
                raise TrimmedError(f"entries after {start} were deleted")
            first = False
            if not entries:
                return
            batch = [Entry(sid, fields) for sid, fields in entries]
            sub.mark = batch[-1].key
            yield batch
            if len(entries) < CATCHUP_PAGE:
                return
            start = batch[-1].id

    async def messages(self, sub: Subscriber, last_id: str | None):
        """The feed for one client as batches of ("snapshot", Snapshot) / ("resync", reason) /
        ("zone", Entry) / ("ping", None). The client must be registered before this starts."""
        if last_id is None:
            yield [("snapshot", await self.snapshot(sub)), ("incidents", await self.incidents(sub))]
        else:
            try:
                yield [("incidents", await self.incidents(sub))]
                async for batch in self.catch_up(sub, last_id):
                    yield [("zone", e) for e in batch]
            except TrimmedError as exc:
                log.info("client resumed at %s: %s; resync", last_id, exc)
                RESYNCS.labels("trimmed").inc()
                yield [("resync", "trimmed"), ("snapshot", await self.snapshot(sub)),
                       ("incidents", await self.incidents(sub))]
        queue = sub.queue
        while True:
            items = [await queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            out = []
            for it in items:
                if it is RESYNC:
                    out.append(("resync", sub.reason))
                    out.append(("snapshot", await self.snapshot(sub)))
                    out.append(("incidents", await self.incidents(sub)))
                elif it is PING:
                    if len(items) == 1:
                        out.append(("ping", None))
                elif it.KIND == "incident":
                    if it.key > sub.inc_mark:   # already in the incidents snapshot: skip
                        sub.inc_mark = it.key
                        out.append(("incident", it))
                elif it.key > sub.mark:   # already sent by the snapshot or the catch-up: skip
                    sub.mark = it.key
                    out.append(("zone", it))
            if out:
                yield out


# ---------------------------------------------------------------------------------------------
# encodings


def sse_encode(batch) -> bytes:
    parts = []
    for kind, val in batch:
        if kind == "zone" or kind == "incident":
            parts.append(val.sse)
        elif kind == "incidents":
            parts.append(b"event: incidents\ndata: %s\n\n" % val.array())
        elif kind == "snapshot":
            parts.append(b"id: %s\nevent: snapshot\ndata: %s\n\n" % (val.id.encode(), val.array()))
        elif kind == "resync":
            parts.append(b'event: resync\ndata: {"reason":"%s"}\n\n' % val.encode())
        elif kind == "ping":
            parts.append(b": ping\n\n")
    return b"".join(parts)


def ws_encode(kind, val) -> str:
    if kind == "zone" or kind == "incident":
        return val.ws
    if kind == "incidents":
        return '{"type":"incidents","incidents":%s}' % val.array().decode()
    if kind == "snapshot":
        return '{"type":"snapshot","id":"%s","zones":%s}' % (val.id, val.array().decode())
    if kind == "resync":
        return '{"type":"resync","reason":"%s"}' % val
    return '{"type":"ping"}'


# ---------------------------------------------------------------------------------------------
# worker e2e latency for the wall's badge


def parse_e2e_buckets(text: str) -> dict[float, float]:
    """zonewatch_e2e_latency_seconds buckets summed over sources: {upper bound: cumulative count}."""
    return promtext.buckets(text, metrics.E2E_LATENCY)


class WorkerStats:
    """Scrapes the workers' /metrics on demand (at most every 2 s) and keeps 30 s+ of history."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.history: deque[tuple[float, dict[float, float]]] = deque(maxlen=64)
        self.last_try = 0.0
        self.error: str | None = None
        self.lock = asyncio.Lock()

    @staticmethod
    def _fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=1.5) as resp:
            return resp.read().decode("utf-8", "replace")

    async def refresh(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if now - self.last_try < STATS_MIN_INTERVAL_S:
                return
            self.last_try = now
            total: dict[float, float] = {}
            errors = []
            for url in self.urls:
                try:
                    text = await asyncio.to_thread(self._fetch, url)
                    for le, c in parse_e2e_buckets(text).items():
                        total[le] = total.get(le, 0.0) + c
                except Exception as exc:  # unreachable worker: reported, not fatal
                    errors.append(f"{url}: {exc}")
            self.error = "; ".join(errors) if errors else None
            if len(errors) == len(self.urls):
                return
            if self.history and sum(total.values()) < sum(self.history[-1][1].values()):
                self.history.clear()  # a worker restarted: its counters began again
            self.history.append((now, total))

    def summary(self) -> dict:
        out = {"metric": "zonewatch_e2e_latency_seconds", "what": "Kafka producer timestamp -> Redis write",
               "p50_ms": None, "p99_ms": None, "events": 0, "window_s": None, "error": self.error}
        if not self.history:
            return out
        now_t, now_b = self.history[-1]
        base = None
        for t, b in self.history:
            if now_t - t >= E2E_WINDOW_S:
                base = (t, b)
        if base is None and len(self.history) > 1:
            base = self.history[0]
        if base is not None:
            window = now_t - base[0]
            diff = {le: now_b.get(le, 0.0) - base[1].get(le, 0.0) for le in now_b}
            if diff.get(math.inf, 0.0) > 0:
                cur = diff
                out["window_s"] = round(window, 1)
            else:
                cur = None
        else:
            cur = now_b  # a single sample: since the worker started
        if not cur or cur.get(math.inf, 0.0) <= 0:
            return out
        buckets = sorted(cur.items())
        p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
        out.update(p50_ms=None if p50 is None else round(p50 * 1000, 1),
                   p99_ms=None if p99 is None else round(p99 * 1000, 1), events=int(cur[math.inf]))
        return out


# ---------------------------------------------------------------------------------------------
# zones file


def load_zones_geojson(path: Path) -> tuple[bytes, list[str]]:
    """The zones file as served to the wall: each feature with its id at top level (CONTRACT §2
    id rules, as streams.zone_index.load_zones) and only the properties the wall uses."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read zones file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ConfigError(f"{path}: not a GeoJSON FeatureCollection")
    features, ids = [], []
    for i, feat in enumerate(doc.get("features") or []):
        props = feat.get("properties") or {}
        zid = feat.get("id", props.get("id"))
        if zid is None or str(zid) == "":
            raise ConfigError(f"{path}: feature #{i} has no id (top-level `id` or properties.id)")
        geom = feat.get("geometry") or {}
        if geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise ConfigError(f"{path}: zone {zid!r} geometry must be Polygon or MultiPolygon")
        zid = str(zid)
        ids.append(zid)
        features.append({"type": "Feature", "id": zid, "geometry": geom,
                         "properties": {"name": str(props.get("name") or zid), "kind": props.get("kind"),
                                        "ring": props.get("ring")}})
    if not features:
        raise ConfigError(f"{path}: no zones")
    return orjson.dumps({"type": "FeatureCollection", "features": features}), ids


# ---------------------------------------------------------------------------------------------
# the ASGI app

OPENAPI_TEMPLATE = {
    "openapi": "3.1.0",
    "info": {"title": "zonewatch gateway", "version": "0.1.0",
             "description": "Zone states for wall displays and tools (CONTRACT §3, §9)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "token": {"type": "apiKey", "in": "query", "name": "token"}},
        "schemas": {
            "ZoneState": {"type": "object", "description": "CONTRACT §3 zone state document",
                          "required": ["zone_id", "version", "clock", "level"],
                          "properties": {
                              "zone_id": {"type": "string"}, "name": {"type": "string"},
                              "kind": {"type": "string"}, "ring": {"type": ["string", "null"]},
                              "version": {"type": "integer"}, "clock": {"type": "integer"},
                              "level": {"enum": ["green", "yellow", "orange", "red"]},
                              "today": {"type": "object"}, "windows": {"type": "object"},
                              "units": {"type": "object"}, "response": {"type": "object"},
                              "open_incidents": {"type": "integer"}}},
            "Unit": {"type": "object", "properties": {
                "unit_id": {"type": "string"}, "lat": {"type": "number"}, "lon": {"type": "number"},
                "distance_m": {"type": "number"}}},
            "Incident": {"type": "object", "description": "An incident on the wall (README: Open incidents "
                         "on the wall); in zw:incidents while status is open or breached",
                         "properties": {
                             "call_id": {"type": "string"},
                             "status": {"enum": ["open", "breached", "arrived", "expired", "closed"]},
                             "ts": {"type": "integer", "description": "call time, epoch ms"},
                             "lat": {"type": "number"}, "lon": {"type": "number"},
                             "category": {"type": "string"}, "priority": {"type": "integer"},
                             "zones": {"type": "array", "items": {"type": "string"}},
                             "ring": {"type": ["string", "null"]},
                             "breach_at": {"type": "integer", "description": "ts + 300 s"},
                             "arrived_ts": {"type": ["integer", "null"]}, "unit_id": {"type": ["string", "null"]},
                             "response_s": {"type": ["number", "null"]},
                             "nearest_units": {"type": "array", "items": {"type": "object"}},
                             "clock": {"type": "integer", "description": "stream clock when written"},
                             "partition": {"type": "integer"}}},
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/zones": {"get": {"summary": "All zone states", "responses": {
            "200": {"description": "zone states", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/ZoneState"}}}}},
            "401": {"description": "missing or invalid token"}}}},
        "/zones/{zone_id}": {"get": {"summary": "One zone state", "parameters": [
            {"name": "zone_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "zone state", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ZoneState"}}}},
                "404": {"description": "no state for this zone id"},
                "401": {"description": "missing or invalid token"}}}},
        "/zones.geojson": {"get": {"summary": "The zones file (every feature's id at top level)",
                                   "responses": {"200": {"description": "GeoJSON FeatureCollection"}}}},
        "/units": {"get": {"summary": "Units near a point, nearest first (zw:units)", "parameters": [
            {"name": "near", "in": "query", "required": True, "schema": {"type": "string"},
             "description": "LAT,LON"},
            {"name": "radius", "in": "query", "schema": {"type": "number", "default": 1000,
                                                         "maximum": MAX_RADIUS_M}, "description": "metres"},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 1000, "maximum": 10000}}],
            "responses": {"200": {"description": "units", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/Unit"}}}}},
                "400": {"description": "bad parameters"}}}},
        "/incidents": {"get": {"summary": "Open incidents (not arrived, not expired), oldest call first",
                               "responses": {"200": {"description": "incidents", "content": {"application/json": {
                                   "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}}}},
                                   "401": {"description": "missing or invalid token"}}}},
        "/stream": {"get": {
            "summary": "Server-Sent Events: snapshot, then one `zone` event per update",
            "description": "Events: `snapshot` (data: array of zone states, id: the stream id it is "
                           "consistent with), `zone` (data: one zone state, id: its zw:zone-updates id), "
                           "`resync` (a fresh `snapshot` follows), `incidents` (data: array of open "
                           "incidents; after every snapshot and on resume; no id), `incident` (data: one "
                           "incident after a change; drop it from the list unless status is open or "
                           "breached; no id). Resume with the Last-Event-ID header "
                           "or ?last_event_id=. Clients keep the highest `version` per zone. "
                           "Heartbeat comment every 15 s.",
            "security": [{"bearer": []}, {"token": []}],
            "parameters": [{"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                           {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}},
                          "400": {"description": "malformed Last-Event-ID"}}}},
        "/ws": {"get": {"summary": "WebSocket: the /stream feed as JSON messages {type: snapshot|zone|"
                                   "incidents|incident|resync|ping, ...}", "security": [{"bearer": []}, {"token": []}],
                        "responses": {"101": {"description": "switching protocols"}}}},
        "/stats": {"get": {"summary": "Worker e2e latency (last 30 s), clients, time zone",
                           "responses": {"200": {"description": "stats"}}}},
        "/healthz": {"get": {"summary": "Liveness and Redis reachability (no token)", "security": [],
                             "responses": {"200": {"description": "ok"}, "503": {"description": "Redis down"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (no token)", "security": [],
                             "responses": {"200": {"description": "text format"}}}},
        "/": {"get": {"summary": "The wall page (static; reads ?token=)", "security": [],
                      "responses": {"200": {"description": "HTML"}}}},
    },
}


def create_app(settings: Settings, *, insecure: bool = False, cors_origins=(), worker_metrics=(),
               queue_size: int = DEFAULT_QUEUE, heartbeat_s: float = DEFAULT_HEARTBEAT_S):
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    tokens = [t.encode() for t in settings.gateway_tokens]
    insecure = insecure and not tokens   # tokens, when configured, are always required
    if not tokens and not insecure:
        raise ConfigError("ZONEWATCH_GATEWAY_TOKENS is not set: give the gateway its bearer tokens "
                          "(comma-separated) or start it with --insecure")
    geojson, zone_ids = load_zones_geojson(settings.zones)
    wall_html = (STATIC_DIR / "index.html").read_bytes()
    stats = WorkerStats(list(worker_metrics) or [DEFAULT_WORKER_METRICS])
    # A bounded pool: the reader holds one connection (XREAD BLOCK); snapshots, catch-ups and REST
    # calls share the rest, and a burst of connecting clients waits for a free one instead of
    # opening a connection each.
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis, max_connections=REDIS_POOL, timeout=30,
                                                    health_check_interval=30)
    redis = aioredis.Redis.from_pool(pool)
    hub = Hub(redis, queue_size=queue_size, heartbeat_s=heartbeat_s)

    def token_ok(request, query_ok: bool = False) -> bool:
        if insecure:
            return True
        given = None
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query_ok:
            given = request.query_params.get("token")
        if not given:
            return False
        g = given.encode()
        return any(hmac.compare_digest(g, t) for t in tokens)

    def json_bytes(body: bytes, status: int = 200) -> Response:
        return Response(body, status_code=status, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    def error(status: int, msg: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=status, headers=headers)

    def unauthorized() -> JSONResponse:
        return error(401, "missing or invalid bearer token", {"WWW-Authenticate": 'Bearer realm="zonewatch"'})

    def protected(handler):
        async def wrapped(request: Request):
            if not token_ok(request):
                return unauthorized()
            return await handler(request)
        wrapped.__name__ = handler.__name__
        return wrapped

    async def wall(request: Request):
        return Response(wall_html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request):
        try:
            await asyncio.wait_for(redis.ping(), 2.0)
            ok = True
        except Exception:
            ok = False
        body = {"status": "ok" if ok else "redis unreachable", "redis": ok,
                "clients": len(hub.subs), "last_update_id": hub.last_id}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request):
        return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request):
        return JSONResponse(OPENAPI_TEMPLATE)

    async def zones(request: Request):
        ids = sorted(m.decode() for m in await redis.smembers(ZONES_SET))
        docs = [d for d in (await redis.mget([zone_key(z) for z in ids]) if ids else []) if d]
        return json_bytes(b"[" + b",".join(docs) + b"]")

    async def zone_one(request: Request):
        zid = request.path_params["zone_id"]
        doc = await redis.get(zone_key(zid))
        if doc is None:
            return error(404, f"no zone {zid!r}")
        return json_bytes(doc)

    async def zones_geojson(request: Request):
        return Response(geojson, media_type="application/geo+json", headers={"Cache-Control": "no-cache"})

    async def units(request: Request):
        q = request.query_params
        try:
            lat_s, lon_s = (q.get("near") or "").split(",")
            lat, lon = float(lat_s), float(lon_s)
            radius = float(q.get("radius", "1000"))
            limit = int(q.get("limit", "1000"))
        except ValueError:
            return error(400, "near=LAT,LON is required; radius (metres) and limit must be numbers")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not math.isfinite(lat + lon):
            return error(400, "near: lat must be -90..90 and lon -180..180")
        if not (0 < radius <= MAX_RADIUS_M) or not 1 <= limit <= 10_000:
            return error(400, f"radius must be in (0, {MAX_RADIUS_M:.0f}] metres and limit 1..10000")
        found = await redis.geosearch("zw:units", longitude=lon, latitude=lat, radius=radius, unit="m",
                                      sort="ASC", count=limit, withdist=True, withcoord=True)
        out = [{"unit_id": m.decode() if isinstance(m, bytes) else m, "lat": round(c[1], 7),
                "lon": round(c[0], 7), "distance_m": round(d, 1)} for m, d, c in found]
        return json_bytes(orjson.dumps(out))

    async def incidents(request: Request):
        return json_bytes((await hub.incidents()).array())

    async def stats_endpoint(request: Request):
        await stats.refresh()
        return JSONResponse({"e2e": stats.summary(), "clients": len(hub.subs), "tz": settings.tz,
                             "last_update_id": hub.last_id, "zones": len(zone_ids)},
                            headers={"Cache-Control": "no-store"})

    def requested_last_id(params, headers) -> str | None:
        raw = headers.get("last-event-id") if headers is not None else None
        if raw is None or raw == "":
            raw = params.get("last_event_id")
        return parse_last_event_id(raw)

    async def stream(request: Request):
        if not token_ok(request, query_ok=True):
            return unauthorized()
        try:
            last_id = requested_last_id(request.query_params, request.headers)
        except ValueError as exc:
            return error(400, str(exc))
        return EventStream(hub, last_id)

    async def ws(websocket: WebSocket):
        if not token_ok(websocket, query_ok=True):
            await websocket.close(code=1008, reason="missing or invalid token")
            return
        try:
            last_id = requested_last_id(websocket.query_params, None)
        except ValueError as exc:
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        await websocket.accept()
        sub = hub.register("ws")

        async def writer():
            async for batch in hub.messages(sub, last_id):
                for kind, val in batch:
                    await websocket.send_text(ws_encode(kind, val))

        async def listener():
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    msg = await websocket.receive()
                    if msg["type"] == "websocket.disconnect":
                        return

        try:
            await run_until_first_done(writer(), listener())
        finally:
            hub.unregister(sub)
            with contextlib.suppress(Exception):
                await websocket.close()

    class EventStream(Response):
        """text/event-stream for one client; ends when the client goes away (disconnect seen on
        `receive`, so an idle client is released at once, not at the next write)."""

        media_type = "text/event-stream"

        def __init__(self, hub_: Hub, last_id: str | None):
            self.hub, self.last_id = hub_, last_id
            self.status_code = 200
            self.background = None
            self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        async def __call__(self, scope, receive, send):
            sub = self.hub.register("sse")

            async def writer():
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
                async for batch in self.hub.messages(sub, self.last_id):
                    await send({"type": "http.response.body", "body": sse_encode(batch), "more_body": True})

            async def listener():
                while (await receive())["type"] != "http.disconnect":
                    pass

            try:
                await run_until_first_done(writer(), listener())
            finally:
                self.hub.unregister(sub)

    async def redis_down(request, exc):
        log.warning("redis error on %s: %s", request.url.path, exc)
        return error(503, "redis unavailable")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await redis.aclose()

    routes = [
        Route("/", wall),
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", protected(openapi)),
        Route("/zones", protected(zones)),
        Route("/zones.geojson", protected(zones_geojson)),
        Route("/zones/{zone_id:path}", protected(zone_one)),
        Route("/units", protected(units)),
        Route("/incidents", protected(incidents)),
        Route("/stats", protected(stats_endpoint)),
        Route("/stream", stream),
        WebSocketRoute("/ws", ws),
    ]
    middleware = []
    if cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET"],
                                     allow_headers=["Authorization", "Last-Event-ID", "Cache-Control"],
                                     max_age=600))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={RedisError: redis_down})
    app.state.hub = hub
    return app


async def run_until_first_done(*coros) -> None:
    """Run coroutines together; when the first ends (or fails) cancel the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, (OSError, asyncio.CancelledError)):
                log.warning("client stream ended by an error: %r", r)


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gateway", help="HTTP/SSE gateway for wall displays, and the wall page",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    p.add_argument("--redis", metavar="URL", help="Redis URL (default ZONEWATCH_REDIS)")
    p.add_argument("--zones", type=Path, metavar="FILE", help="zones GeoJSON (default ZONEWATCH_ZONES)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow this browser origin (repeatable; default: no cross-origin access)")
    p.add_argument("--insecure", action="store_true",
                   help="serve without tokens when ZONEWATCH_GATEWAY_TOKENS is unset (local experiments only)")
    p.add_argument("--worker-metrics", action="append", metavar="URL",
                   help="a worker's /metrics for the wall's latency badge (repeatable; default "
                        f"ZONEWATCH_WORKER_METRICS, comma-separated, or {DEFAULT_WORKER_METRICS})")
    p.add_argument("--client-queue", type=int, default=DEFAULT_QUEUE, metavar="N",
                   help=f"updates a client may lag before it is told to resync (default {DEFAULT_QUEUE})")
    p.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help=f"seconds between heartbeat comments (default {DEFAULT_HEARTBEAT_S:.0f})")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().with_(redis=args.redis, zones=args.zones)
        settings.check()
        if args.client_queue < 1 or args.heartbeat <= 0:
            raise ConfigError("--client-queue must be >= 1 and --heartbeat > 0")
        metrics_urls = args.worker_metrics or [
            u.strip() for u in os.environ.get("ZONEWATCH_WORKER_METRICS", DEFAULT_WORKER_METRICS).split(",")
            if u.strip()]
        app = create_app(settings, insecure=args.insecure, cors_origins=args.cors_origin,
                         worker_metrics=metrics_urls, queue_size=args.client_queue, heartbeat_s=args.heartbeat)
    except ConfigError as exc:
        print(f"zonewatch gateway: {exc}", file=sys.stderr)
        return 2
    if args.insecure and settings.gateway_tokens:
        log.warning("--insecure ignored: ZONEWATCH_GATEWAY_TOKENS is set")
    elif args.insecure:
        log.warning("serving WITHOUT tokens (--insecure)")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=args.access_log, lifespan="on", timeout_graceful_shutdown=2,
                            ws_ping_interval=20.0, server_header=False)
    server = uvicorn.Server(config)
    log.info("gateway on http://%s:%d/ (Redis %s, zones %s)", args.host, args.port, redacted_url(settings.redis), settings.zones)
    server.run()
    return 0
