"""The live feed: one reader of zw:zone-updates (and zw:incident-updates) per gateway process,
fanned out to every connected client, and the two framings of it (SSE and WebSocket).

The reader puts each entry (encoded once, shared by every client) into each client's bounded queue
without awaiting anyone. A client whose queue is full is marked "resync needed": its queue is
emptied, further entries are dropped for it, and its writer next sends `resync` and a fresh
`snapshot`. A slow or stuck client therefore costs one bounded queue and one socket buffer and never
slows the reader, the pipeline or the other clients.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from contract import keys
from gateway import untrusted
from gateway.metrics import CLIENTS, INCIDENT_UPDATES, REDIS_ERRORS, RESYNCS, UPDATES

log = logging.getLogger("zonewatch.gateway")

DEFAULT_QUEUE = 1000          # entries a client may be behind before it is told to resync
DEFAULT_HEARTBEAT_S = 15.0
READ_BLOCK_MS = 5000          # XREAD BLOCK; on each timeout the reader checks for a recreated stream
READER_TIMEOUT_MARGIN_S = 5.0  # the reader's socket timeout is BLOCK + this: an idle feed is no error
READ_COUNT = 1000
CATCHUP_PAGE = 500            # XRANGE page size when a client resumes with Last-Event-ID
MAX_BATCH = 500               # queue items a writer sends in one socket write
# ASCII digits only (`\d` would take any Unicode digit); each part a 64-bit unsigned integer as in Redis
ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
ID_PART_MAX = 2**64 - 1


# ---------------------------------------------------------------------------------------------
# stream ids and entries


def id_key(stream_id: str | bytes) -> tuple[int, int]:
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode()
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def parse_last_event_id(raw: str | None) -> str | None:
    """None when absent; ValueError unless it is a stream id `<ms>-<seq>` of ASCII digits with
    each part within 64 bits (what Redis accepts)."""
    if raw is None:
        return None
    raw = raw.strip(" \t")
    if raw == "":
        return None
    m = ID_RE.fullmatch(raw)
    if m is None or int(m[1]) > ID_PART_MAX or int(m[2]) > ID_PART_MAX:
        raise ValueError(f"Last-Event-ID {raw[:60]!r} is not a zw:zone-updates id like 1686440000000-0 "
                         f"(two parts of ASCII digits, each at most {ID_PART_MAX})")
    return raw


class Entry:
    """One zw:zone-updates entry, encoded once for every client (SSE frame and WebSocket text).
    `state` is its document checked against the zone schema, as one line of JSON
    (gateway/untrusted.py): the SSE `data:` field and the WebSocket text embed it as it is."""

    __slots__ = ("id", "key", "state", "_sse", "_ws")
    KIND = "zone"

    def __init__(self, sid: str, state: bytes):
        self.id = sid
        self.key = id_key(sid)
        self.state = state
        self._sse: bytes | None = None
        self._ws: str | None = None

    def _sse_frame(self) -> bytes:
        return b"id: %s\nevent: zone\ndata: %s\n\n" % (self.id.encode(), self.state)

    def _ws_text(self) -> str:
        return f'{{"type":"zone","id":"{self.id}","state":{self.state.decode()}}}'

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
    """One zw:incident-updates entry: an incident's wall entry after a change (checked against the
    incident schema)."""

    __slots__ = ()
    KIND = "incident"

    def _sse_frame(self) -> bytes:
        # no `id:` line: the browser's Last-Event-ID must stay a zw:zone-updates id
        return b"event: incident\ndata: %s\n\n" % self.state

    def _ws_text(self) -> str:
        return f'{{"type":"incident","state":{self.state.decode()}}}'


def checked_entry(stream: str, sid: bytes | str, fields: dict) -> Entry | None:
    """The entry `sid` of zw:zone-updates or zw:incident-updates with its `state` checked; None
    (skipped, counted, logged once) when the state does not match its schema."""
    sid = sid.decode() if isinstance(sid, bytes) else sid
    if stream == keys.ZONE_UPDATES:
        doc = untrusted.ZONE.read(fields.get(b"state"), f"{stream} {sid}")
        return None if doc is None else Entry(sid, doc.json)
    doc = untrusted.INCIDENT.read(fields.get(b"state"), f"{stream} {sid}")
    return None if doc is None else IncidentEntry(sid, doc.json)


def readable(result, key: str, kind: untrusted.Kind, empty):
    """A reply of a pipeline run with raise_on_error=False: `empty` (counted and logged as a bad
    record of `kind`) when Redis refused the command on that key (WRONGTYPE: something else wrote
    it), so one wrong key leaves the rest of the feed standing."""
    if isinstance(result, ResponseError):
        kind.reject(str(result).encode(), key, f"Redis refused to read it: {str(result)[:80]}")
        return empty
    if isinstance(result, Exception):
        raise result
    return result


RESYNC = object()   # queue sentinel: the client fell behind
PING = object()     # queue sentinel: heartbeat
CLOSED = object()   # queue sentinel: the client is gone; its writer stops


@dataclass
class Snapshot:
    id: str
    docs: list[bytes]

    def array(self) -> bytes:
        return b"[" + b",".join(self.docs) + b"]"


@dataclass
class Trimmed:
    """What catch_up yields when the client's Last-Event-ID is no longer in the stream (or the
    stream was recreated): the client gets `resync` and a fresh snapshot instead."""

    why: str


class Subscriber:
    """A connected client: a bounded queue filled by the reader, drained by the client's writer."""

    __slots__ = ("queue", "resync", "reason", "mark", "inc_mark", "transport", "closed")

    def __init__(self, maxsize: int, transport: str):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.resync = False             # queue overflowed; entries are dropped until the resync is sent
        self.reason = ""
        self.mark: tuple[int, int] = (0, 0)  # id of the newest update this client has been given
        self.inc_mark: tuple[int, int] = (0, 0)  # the same for zw:incident-updates
        self.transport = transport
        self.closed = False             # unregistered: its writer must stop at its next step

    def close(self) -> None:
        """Mark the client gone and wake its writer if it waits on the queue (it also stops when
        its cancellation was lost, e.g. swallowed inside a Redis call)."""
        self.closed = True
        while True:
            try:
                self.queue.put_nowait(CLOSED)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

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


class Hub:
    """The shared reader of zw:zone-updates and the set of connected clients."""

    def __init__(self, redis, queue_size: int = DEFAULT_QUEUE, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                 reader=None):
        self.redis = redis                 # the shared pool: snapshots, catch-ups, REST
        self.reader = reader or redis      # the reader's own connection (socket timeout > XREAD BLOCK)
        self.queue_size = queue_size
        self.yield_every = max(1, queue_size // 4)
        self.heartbeat_s = heartbeat_s
        self.subs: set[Subscriber] = set()
        self.last_id: str | None = "0-0"   # None: unknown (Redis was down at start)
        self.inc_last_id = "0-0"
        self._tasks: list[asyncio.Task] = []
        self.reading = False

    # lifecycle
    async def start(self) -> None:
        try:
            self.last_id = await self._top_id()
            self.inc_last_id = await self._top_id(keys.INCIDENT_UPDATES)
        except Exception as exc:  # Redis down at start: the reader retries from the beginning
            log.warning("cannot read %s at start (%s); will retry", keys.ZONE_UPDATES, exc)
            self.last_id = None
        self._tasks = [asyncio.create_task(self._read_loop(), name="zw-gateway-reader"),
                       asyncio.create_task(self._heartbeat_loop(), name="zw-gateway-heartbeat")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:  # bounded: a cancellation swallowed inside a Redis call must not hold up the shutdown
            await asyncio.wait(self._tasks, timeout=2.0)

    # client registry
    def register(self, transport: str) -> Subscriber:
        sub = Subscriber(self.queue_size, transport)
        self.subs.add(sub)
        CLIENTS.labels(transport).inc()
        return sub

    def unregister(self, sub: Subscriber) -> None:
        """Forget the client; idempotent. Its writer stops at its next step."""
        sub.close()
        if sub in self.subs:
            self.subs.discard(sub)
            CLIENTS.labels(sub.transport).dec()

    # the one reader
    async def _top_id(self, stream: str = keys.ZONE_UPDATES) -> str:
        """last-generated-id of the stream ("0-0" when it does not exist)."""
        try:
            info = await self.reader.xinfo_stream(stream)
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
                    self.inc_last_id = await self._top_id(keys.INCIDENT_UPDATES)
                self.reading = True
                resp = await self.reader.xread({keys.ZONE_UPDATES: self.last_id,
                                               keys.INCIDENT_UPDATES: self.inc_last_id},
                                              count=READ_COUNT, block=READ_BLOCK_MS)
                delay = 0.2
                if not resp:
                    await self._check_reset()
                    continue
                for stream, entries in resp:
                    stream = stream.decode() if isinstance(stream, bytes) else stream
                    zones = stream == keys.ZONE_UPDATES
                    for n, (sid, fields) in enumerate(entries, 1):
                        entry = checked_entry(stream, sid, fields)
                        if entry is not None:
                            for sub in tuple(self.subs):
                                sub.offer(entry)
                        # past a skipped entry too: the next read starts after it
                        if zones:
                            self.last_id = sid.decode() if isinstance(sid, bytes) else sid
                        else:
                            self.inc_last_id = sid.decode() if isinstance(sid, bytes) else sid
                        if n % self.yield_every == 0:
                            # let the writers of clients that keep up drain their queues within a
                            # big read (never waits for any one client)
                            await asyncio.sleep(0)
                    if zones:
                        UPDATES.inc(len(entries))
                    else:
                        INCIDENT_UPDATES.inc(len(entries))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection errors: keep the clients, retry from last_id
                self.reading = False
                REDIS_ERRORS.inc()
                log.warning("reading %s failed (%s); retrying in %.1fs", keys.ZONE_UPDATES, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _check_reset(self) -> None:
        top = await self._top_id()
        inc_top = await self._top_id(keys.INCIDENT_UPDATES)
        reset = False
        if id_key(top) < id_key(self.last_id):  # type: ignore[arg-type]  # _read_loop has set it
            log.warning("%s was recreated (last id %s < %s): every client resyncs",
                        keys.ZONE_UPDATES, top, self.last_id)
            self.last_id = top
            reset = True
        if id_key(inc_top) < id_key(self.inc_last_id):
            log.warning("%s was recreated (last id %s < %s): every client resyncs",
                        keys.INCIDENT_UPDATES, inc_top, self.inc_last_id)
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
        pipe.xrevrange(keys.ZONE_UPDATES, "+", "-", count=1)
        pipe.smembers(keys.ZONES)
        top, members = await pipe.execute(raise_on_error=False)
        top = readable(top, keys.ZONE_UPDATES, untrusted.ZONE, [])
        sid = top[0][0].decode() if top else "0-0"
        docs = await self.zone_documents(readable(members, keys.ZONES, untrusted.ZONE, set()))
        sub.mark = id_key(sid)
        return Snapshot(sid, docs)

    async def zone_documents(self, members=None) -> list[bytes]:
        """The zone documents of zw:zones (read here unless given), ordered by zone id, each checked
        (gateway/untrusted.py): a bad one is left out; a zone without a document is not there yet."""
        if members is None:
            try:
                members = await self.redis.smembers(keys.ZONES)
            except ResponseError as exc:
                members = readable(exc, keys.ZONES, untrusted.ZONE, set())
        ids = []
        for m in members:
            try:
                ids.append(m.decode() if isinstance(m, bytes) else m)
            except UnicodeDecodeError:
                untrusted.ZONE.reject(m, keys.ZONES, "a member that is not UTF-8")
        ids.sort()
        raw = await self.redis.mget([keys.zone(z) for z in ids]) if ids else []
        docs = []
        for zid, doc in zip(ids, raw, strict=True):
            if doc is not None and (checked := untrusted.ZONE.read(doc, keys.zone(zid))) is not None:
                docs.append(checked.json)
        return docs

    async def incidents(self, sub: Subscriber | None = None) -> Snapshot:
        """All open incidents, oldest call first, with zw:incident-updates' last id read BEFORE the
        hash (the worker HSETs before it XADDs): entries up to that id are in the snapshot, later
        ones reach the client through its queue and may repeat what the snapshot already shows,
        which is harmless since each entry is the incident's whole state."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrevrange(keys.INCIDENT_UPDATES, "+", "-", count=1)
        pipe.hgetall(keys.INCIDENTS)
        top, raw = await pipe.execute(raise_on_error=False)
        top = readable(top, keys.INCIDENT_UPDATES, untrusted.INCIDENT, [])
        sid = top[0][0].decode() if top else "0-0"
        if sub is not None:
            sub.inc_mark = id_key(sid)
        docs = []
        for field, js in readable(raw, keys.INCIDENTS, untrusted.INCIDENT, {}).items():
            checked = untrusted.INCIDENT.read(js, f"{keys.INCIDENTS} {field!r}")
            if checked is not None:
                docs.append(checked)
        docs.sort(key=lambda d: d.order)   # (ts, call_id): every checked entry has both, of one type
        return Snapshot(sid, [d.json for d in docs])

    async def catch_up(self, sub: Subscriber, last_id: str):
        """Yield lists of entries after `last_id` (exclusive); a `Trimmed` (and nothing more) if
        some are gone."""
        start = last_id
        first = True
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xrange(keys.ZONE_UPDATES, f"({start}", "+", count=CATCHUP_PAGE)
            pipe.xinfo_stream(keys.ZONE_UPDATES)  # after the XRANGE: trimming only moves forward
            entries, info = await pipe.execute(raise_on_error=False)
            skey = id_key(start)
            if isinstance(info, Exception):
                if "no such key" not in str(info).lower():
                    raise info
                if skey != (0, 0):
                    yield Trimmed(f"{keys.ZONE_UPDATES} does not exist")
                return
            last_gen = id_key(info.get("last-generated-id") or b"0-0")
            first_entry = info.get("first-entry")
            max_deleted = info.get("max-deleted-entry-id")
            trimmed = None
            if first and skey > last_gen:
                trimmed = f"{start} is newer than the stream's last id"
            elif first_entry and id_key(first_entry[0]) > skey:
                # trimming removes the oldest entries: the client's id is gone, and maybe some after
                # it. From 0-0 (a snapshot of an empty stream) nothing is lost unless entries were.
                added = info.get("entries-added")
                if skey != (0, 0) or (added is not None and added > info.get("length", 0)):
                    trimmed = f"{start} was trimmed"
            if trimmed is None and not first_entry and last_gen > skey:
                trimmed = f"entries after {start} were trimmed"
            if trimmed is None and max_deleted is not None and id_key(max_deleted) > skey:
                trimmed = f"entries after {start} were deleted"
            if trimmed is not None:
                yield Trimmed(trimmed)
                return
            if isinstance(entries, Exception):
                raise entries
            first = False
            if not entries:
                return
            batch = [e for sid, fields in entries if (e := checked_entry(keys.ZONE_UPDATES, sid, fields))]
            last = entries[-1][0]
            start = last.decode() if isinstance(last, bytes) else last
            sub.mark = id_key(start)          # past skipped entries too
            if batch:
                yield batch
            if len(entries) < CATCHUP_PAGE:
                return

    async def messages(self, sub: Subscriber, last_id: str | None):
        """The feed for one client as batches of ("snapshot", Snapshot) / ("resync", reason) /
        ("zone", Entry) / ("ping", None). The client must be registered before this starts; the
        feed ends once the client is unregistered (`sub.closed`), whatever it was awaiting."""
        if last_id is None:
            yield [("snapshot", await self.snapshot(sub)), ("incidents", await self.incidents(sub))]
        else:
            yield [("incidents", await self.incidents(sub))]
            async for batch in self.catch_up(sub, last_id):
                if isinstance(batch, Trimmed):
                    log.info("client resumed at %s: %s; resync", last_id, batch.why)
                    RESYNCS.labels("trimmed").inc()
                    yield [("resync", "trimmed"), ("snapshot", await self.snapshot(sub)),
                           ("incidents", await self.incidents(sub))]
                    break
                yield [("zone", e) for e in batch]
        queue = sub.queue
        while not sub.closed:
            items = [await queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            out: list[tuple[str, Any]] = []
            for it in items:
                if it is CLOSED or sub.closed:
                    return
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
        return f'{{"type":"incidents","incidents":{val.array().decode()}}}'
    if kind == "snapshot":
        return f'{{"type":"snapshot","id":"{val.id}","zones":{val.array().decode()}}}'
    if kind == "resync":
        return f'{{"type":"resync","reason":"{val}"}}'
    return '{"type":"ping"}'
