"""The live feed: one reader of zw:zone-updates (and zw:incident-updates) per gateway process,
fanned out to every connected client, and the two framings of it (SSE and WebSocket).

With a duty plan (CONTRACT §10) the reader also follows zw:post-updates: a `posts` snapshot (every
post, checkpoint and the phase in force) before the zones' `snapshot`, then one `post` event per
entry, resumable like zone events. Every event's `id:` is then the client's position in both
streams, `{zone-updates id}.{post-updates id}` (a resume with a zone id alone gets a fresh `posts`
snapshot); without a plan ids are zone-updates ids, as they always were.

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
    each part within 64 bits (what Redis accepts), or two of them joined by `.` (a zone-updates and a
    post-updates id, with a duty plan)."""
    if raw is None:
        return None
    raw = raw.strip(" \t")
    if raw == "":
        return None
    for part in raw.split(".", 1):
        m = ID_RE.fullmatch(part)
        if m is None or int(m[1]) > ID_PART_MAX or int(m[2]) > ID_PART_MAX:
            raise ValueError(f"Last-Event-ID {raw[:60]!r} is not a zw:zone-updates id like 1686440000000-0 "
                             f"(two parts of ASCII digits, each at most {ID_PART_MAX}), optionally followed "
                             "by `.` and a zw:post-updates id")
    return raw


def _id_str(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


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
        return self.ws_with_id(self.id)

    def body(self) -> bytes:
        """The SSE frame without its `id:` line (a duty plan's per-client ids: `Marked`)."""
        return b"event: zone\ndata: %s\n\n" % self.state

    def ws_with_id(self, eid: str) -> str:
        return f'{{"type":"zone","id":"{eid}","state":{self.state.decode()}}}'

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


class PostEntry(Entry):
    """One zw:post-updates entry (CONTRACT §10): a post's, a checkpoint's or the phase's document
    after a change, checked against its schema; `data` is {"type": "post" | "checkpoint" | "phase",
    "state": document}."""

    __slots__ = ("typ",)
    KIND = "post"

    def __init__(self, sid: str, typ: str, state: bytes):
        super().__init__(sid, state)
        self.typ = typ   # one of untrusted.DUTY's keys: safe inside the JSON text as it is

    def _sse_frame(self) -> bytes:
        return b"id: %s\n%s" % (self.id.encode(), self.body())

    def body(self) -> bytes:
        return b'event: post\ndata: {"type":"%s","state":%s}\n\n' % (self.typ.encode(), self.state)

    def ws_with_id(self, eid: str) -> str:
        return f'{{"type":"post","id":"{eid}","kind":"{self.typ}","state":{self.state.decode()}}}'


class Marked:
    """An entry as one client gets it with a duty plan: its id is that client's position in both
    streams after it (zone-updates id . post-updates id)."""

    __slots__ = ("entry", "eid")

    def __init__(self, entry: Entry, sub: Subscriber):
        self.entry, self.eid = entry, f"{_id_str(sub.mark)}.{_id_str(sub.post_mark)}"

    @property
    def sse(self) -> bytes:
        return b"id: %s\n%s" % (self.eid.encode(), self.entry.body())

    @property
    def ws(self) -> str:
        return self.entry.ws_with_id(self.eid)


def checked_entry(stream: str, sid: bytes | str, fields: dict) -> Entry | None:
    """The entry `sid` of zw:zone-updates, zw:incident-updates or zw:post-updates with its `state`
    checked (a post-updates entry against the schema its `type` names); None (skipped, counted,
    logged once) when the state does not match its schema."""
    sid = sid.decode() if isinstance(sid, bytes) else sid
    if stream == keys.ZONE_UPDATES:
        doc = untrusted.ZONE.read(fields.get(b"state"), f"{stream} {sid}")
        return None if doc is None else Entry(sid, doc.json)
    if stream == keys.POST_UPDATES:
        raw_typ = fields.get(b"type", b"")
        typ = raw_typ.decode(errors="replace") if isinstance(raw_typ, bytes) else str(raw_typ)
        kind = untrusted.DUTY.get(typ)
        if kind is None:   # not a duty document's type: counted as a bad post record
            untrusted.POST.reject(raw_typ if isinstance(raw_typ, bytes) else typ.encode(), f"{stream} {sid}",
                                  f"type {typ[:40]!r} is none of {', '.join(untrusted.DUTY)}")
            return None
        doc = kind.read(fields.get(b"state"), f"{stream} {sid}")
        return None if doc is None else PostEntry(sid, typ, doc.json)
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

    __slots__ = ("queue", "resync", "reason", "mark", "inc_mark", "post_mark", "transport", "closed")

    def __init__(self, maxsize: int, transport: str):
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.resync = False             # queue overflowed; entries are dropped until the resync is sent
        self.reason = ""
        self.mark: tuple[int, int] = (0, 0)  # id of the newest update this client has been given
        self.inc_mark: tuple[int, int] = (0, 0)  # the same for zw:incident-updates
        self.post_mark: tuple[int, int] = (0, 0)  # and for zw:post-updates (a duty plan)
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
                 reader=None, duty: bool = False):
        self.redis = redis                 # the shared pool: snapshots, catch-ups, REST
        self.reader = reader or redis      # the reader's own connection (socket timeout > XREAD BLOCK)
        self.queue_size = queue_size
        self.yield_every = max(1, queue_size // 4)
        self.heartbeat_s = heartbeat_s
        self.subs: set[Subscriber] = set()
        self.last_id: str | None = "0-0"   # None: unknown (Redis was down at start)
        self.inc_last_id = "0-0"
        self.duty = duty                   # a duty plan: zw:post-updates too (the module's docstring)
        self.post_last_id = "0-0"
        self._tasks: list[asyncio.Task] = []
        self.reading = False

    # lifecycle
    async def start(self) -> None:
        try:
            self.last_id = await self._top_id()
            self.inc_last_id = await self._top_id(keys.INCIDENT_UPDATES)
            if self.duty:
                self.post_last_id = await self._top_id(keys.POST_UPDATES)
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
                    if self.duty:
                        self.post_last_id = await self._top_id(keys.POST_UPDATES)
                self.reading = True
                streams = {keys.ZONE_UPDATES: self.last_id, keys.INCIDENT_UPDATES: self.inc_last_id}
                if self.duty:
                    streams[keys.POST_UPDATES] = self.post_last_id
                resp = await self.reader.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
                delay = 0.2
                if not resp:
                    await self._check_reset()
                    continue
                for stream, entries in resp:
                    stream = stream.decode() if isinstance(stream, bytes) else stream
                    zones = stream == keys.ZONE_UPDATES
                    posts = stream == keys.POST_UPDATES
                    for n, (sid, fields) in enumerate(entries, 1):
                        entry = checked_entry(stream, sid, fields)
                        if entry is not None:
                            for sub in tuple(self.subs):
                                sub.offer(entry)
                        # past a skipped entry too: the next read starts after it
                        if zones:
                            self.last_id = sid.decode() if isinstance(sid, bytes) else sid
                        elif posts:
                            self.post_last_id = sid.decode() if isinstance(sid, bytes) else sid
                        else:
                            self.inc_last_id = sid.decode() if isinstance(sid, bytes) else sid
                        if n % self.yield_every == 0:
                            # let the writers of clients that keep up drain their queues within a
                            # big read (never waits for any one client)
                            await asyncio.sleep(0)
                    if zones:
                        UPDATES.inc(len(entries))
                    elif not posts:
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
        if self.duty:
            post_top = await self._top_id(keys.POST_UPDATES)
            if id_key(post_top) < id_key(self.post_last_id):
                log.warning("%s was recreated (last id %s < %s): every client resyncs",
                            keys.POST_UPDATES, post_top, self.post_last_id)
                self.post_last_id = post_top
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

    async def posts(self, sub: Subscriber) -> Snapshot:
        """Every post, checkpoint and the phase in force as {"type", "state"} (a duty plan), each
        checked against its schema (a bad one left out), with zw:post-updates' last id read BEFORE
        the documents (the worker SETs before it XADDs)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrevrange(keys.POST_UPDATES, "+", "-", count=1)
        pipe.smembers(keys.POSTS)
        pipe.smembers(keys.CHECKPOINTS)
        pipe.get(keys.PHASE)
        top, post_ids, cp_ids, phase = await pipe.execute(raise_on_error=False)
        top = readable(top, keys.POST_UPDATES, untrusted.POST, [])
        sid = top[0][0].decode() if top else "0-0"
        docs = []
        for typ, index, ids, key_of in (("post", keys.POSTS, post_ids, keys.post),
                                        ("checkpoint", keys.CHECKPOINTS, cp_ids, keys.checkpoint)):
            kind = untrusted.DUTY[typ]
            names = sorted(m.decode(errors="replace") if isinstance(m, bytes) else m
                           for m in readable(ids, index, kind, set()))
            for name, js in zip(names, await self.redis.mget([key_of(i) for i in names]) if names else [],
                                strict=True):
                checked = kind.read(js, key_of(name)) if js else None   # a member without its document: gone
                if checked is not None:
                    docs.append(b'{"type":"%s","state":%s}' % (typ.encode(), checked.json))
        phase = readable(phase, keys.PHASE, untrusted.PHASE, None)
        if phase:
            checked = untrusted.PHASE.read(phase, keys.PHASE)
            if checked is not None:
                docs.append(b'{"type":"phase","state":%s}' % checked.json)
        sub.post_mark = id_key(sid)
        return Snapshot(sid, docs)

    async def catch_up(self, sub: Subscriber, last_id: str, stream: str = keys.ZONE_UPDATES):
        """Yield lists of entries of `stream` (zone updates, or a duty plan's post updates) after
        `last_id` (exclusive); a `Trimmed` (and nothing more) if some are gone."""
        start = last_id
        first = True
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xrange(stream, f"({start}", "+", count=CATCHUP_PAGE)
            pipe.xinfo_stream(stream)  # after the XRANGE: trimming only moves forward
            entries, info = await pipe.execute(raise_on_error=False)
            skey = id_key(start)
            if isinstance(info, Exception):
                if "no such key" not in str(info).lower():
                    raise info
                if skey != (0, 0):
                    yield Trimmed(f"{stream} does not exist")
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
            batch = [e for sid, fields in entries if (e := checked_entry(stream, sid, fields))]
            last = entries[-1][0]
            start = last.decode() if isinstance(last, bytes) else last
            if stream == keys.ZONE_UPDATES:   # past skipped entries too
                sub.mark = id_key(start)
            else:
                sub.post_mark = id_key(start)
            if batch:
                yield batch
            if len(entries) < CATCHUP_PAGE:
                return

    async def messages(self, sub: Subscriber, last_id: str | None):
        """The feed for one client as batches of ("snapshot", Snapshot) / ("resync", reason) /
        ("zone", Entry) / ("ping", None). The client must be registered before this starts; the
        feed ends once the client is unregistered (`sub.closed`), whatever it was awaiting."""
        if self.duty:   # the duty plan's feed as well (ids in both streams)
            async for batch in self._duty_start(sub, last_id):
                yield batch
        elif last_id is None:
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
                    out += await self._snapshots(sub)
                elif it is PING:
                    if len(items) == 1:
                        out.append(("ping", None))
                elif it.KIND == "incident":
                    if it.key > sub.inc_mark:   # already in the incidents snapshot: skip
                        sub.inc_mark = it.key
                        out.append(("incident", it))
                elif it.KIND == "post":
                    if it.key > sub.post_mark:   # already in the posts snapshot or catch-up: skip
                        sub.post_mark = it.key
                        out.append(("post", Marked(it, sub)))
                elif it.key > sub.mark:   # already sent by the snapshot or the catch-up: skip
                    sub.mark = it.key
                    out.append(("zone", Marked(it, sub) if self.duty else it))
            if out:
                yield out


    async def _snapshots(self, sub: Subscriber) -> list[tuple[str, Any]]:
        """What a client gets first or after a resync: with a duty plan the `posts` snapshot, then
        the zones' (its id the position in both streams), then the incidents."""
        if not self.duty:
            return [("snapshot", await self.snapshot(sub)), ("incidents", await self.incidents(sub))]
        posts = await self.posts(sub)
        snap = await self.snapshot(sub)
        snap.id = f"{snap.id}.{posts.id}"
        return [("posts", posts), ("snapshot", snap), ("incidents", await self.incidents(sub))]

    async def _duty_start(self, sub: Subscriber, last_id: str | None):
        """The start of a client's feed with a duty plan: snapshots, or the catch-up of both
        streams from `{zone id}.{post id}` (a zone id alone: the zones' catch-up and a fresh
        `posts` snapshot)."""
        if last_id is None:
            yield await self._snapshots(sub)
            return
        zone_id, _, post_id = last_id.partition(".")
        yield [("incidents", await self.incidents(sub))]
        sub.mark = id_key(zone_id)
        if post_id:
            sub.post_mark = id_key(post_id)
        else:
            yield [("posts", await self.posts(sub))]
        for stream, start in ((keys.ZONE_UPDATES, zone_id), (keys.POST_UPDATES, post_id)):
            if not start:
                continue
            async for batch in self.catch_up(sub, start, stream):
                if isinstance(batch, Trimmed):
                    log.info("client resumed at %s: %s; resync", last_id, batch.why)
                    RESYNCS.labels("trimmed").inc()
                    yield [("resync", "trimmed"), *await self._snapshots(sub)]
                    return
                out = []
                for e in batch:   # each with the client's position in both streams after it
                    if stream == keys.ZONE_UPDATES:
                        sub.mark = e.key
                        out.append(("zone", Marked(e, sub)))
                    else:
                        sub.post_mark = e.key
                        out.append(("post", Marked(e, sub)))
                yield out


# ---------------------------------------------------------------------------------------------
# encodings


def sse_encode(batch) -> bytes:
    parts = []
    for kind, val in batch:
        if kind == "zone" or kind == "incident" or kind == "post":
            parts.append(val.sse)
        elif kind == "incidents":
            parts.append(b"event: incidents\ndata: %s\n\n" % val.array())
        elif kind == "posts":
            parts.append(b"event: posts\ndata: %s\n\n" % val.array())
        elif kind == "snapshot":
            parts.append(b"id: %s\nevent: snapshot\ndata: %s\n\n" % (val.id.encode(), val.array()))
        elif kind == "resync":
            parts.append(b'event: resync\ndata: {"reason":"%s"}\n\n' % val.encode())
        elif kind == "ping":
            parts.append(b": ping\n\n")
    return b"".join(parts)


def ws_encode(kind, val) -> str:
    if kind == "zone" or kind == "incident" or kind == "post":
        return val.ws
    if kind == "incidents":
        return f'{{"type":"incidents","incidents":{val.array().decode()}}}'
    if kind == "posts":
        return f'{{"type":"posts","posts":{val.array().decode()}}}'
    if kind == "snapshot":
        return f'{{"type":"snapshot","id":"{val.id}","zones":{val.array().decode()}}}'
    if kind == "resync":
        return f'{{"type":"resync","reason":"{val}"}}'
    return '{"type":"ping"}'
