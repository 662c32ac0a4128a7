"""GET /zones?at=TS: every zone's document as it was at stream time TS (CONTRACT §11), read from the
zones.state topic by timestamp. The choices (what "as it was" means, the window that widens, the
bounds, when the answer is 404) are in docs/ARCHITECTURE.md "Rewind".

    parse_at      TS (epoch ms or RFC 3339, like an input `ts`), strictly
    find          the read: windows of stream time before TS, each older than the last, until every
                  zone is found, the retention's start is reached or a bound stops it (pure: any History)
    KafkaHistory  the History of zones.state: one aiokafka consumer without a group, offsets by time
    Rewind        what the handler uses: the history, one read at a time, a small cache of answers
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contract import topics
from contract.errors import RewindRefused
from contract.events import MIN_TS_MS
from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings
from gateway import untrusted

log = logging.getLogger("zonewatch.gateway.rewind")

#: the first window before TS: every zone is rewritten at least every state-stage heartbeat (10 s of
#: wall time) while the clock moves, so in a live stream one window of 15 s holds every zone
FIRST_WINDOW_MS = 15_000
GROWTH = 4                     # each further window 4x the last: 15 s, 1 min, 4 min, ... 7 days in 9 reads
#: records stamped TS or earlier may sit after the first one stamped later (several workers write a
#: partition of zones.state, each on its own partitions' clock, a few seconds apart): read that far on
SLACK_MS = 10_000
MAX_SCAN_BYTES = 256 << 20     # keys and values one answer reads at most (then it answers what it found)
READ_DEADLINE_S = 15.0         # the same in time
LOCK_WAIT_S = 10.0             # one read at a time; a request waits this long for its turn, then 503
RETRY_AFTER_S = 2
CACHE_BYTES = 32 << 20         # answers kept for moments that can no longer change (at most this much)
OLDEST_TTL_S = 30.0            # the oldest record's timestamp is looked up at most this often
POLL_MS = 200                  # one fetch waits at most this long (the deadline is checked between)
BATCH_RECORDS = 2_000
FETCH_MAX_BYTES = 8 << 20      # the consumer's fetch buffer (aiokafka's default is 50 MB)
CONNECT_RETRY_S = (0.5, 30.0)
METADATA_WAIT_S = 5.0          # for the topic's partitions when the consumer first looks at it

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})")


def parse_at(text: str) -> int:
    """`at` as epoch ms: digits (epoch ms) or an RFC 3339 date-time with `Z` or an offset. Anything
    else, or a moment before 2000 (what an input `ts` may carry), is a ValueError saying why."""
    if _EPOCH_MS.fullmatch(text):
        at = int(text)
    elif _RFC3339.fullmatch(text):
        try:
            dt = datetime.fromisoformat(text.upper())
        except ValueError:
            raise ValueError(f"at={text!r} is no date-time (RFC 3339)") from None
        at = (dt - _EPOCH) // _MS
    else:
        hint = " (a '+' in a query string is a space: write %2B)" if " " in text else ""
        raise ValueError(f"at={text[:40]!r} must be epoch ms or an RFC 3339 date-time such as "
                         f"2023-06-11T09:42:00+08:00{hint}")
    if at < MIN_TS_MS:
        raise ValueError(f"at={text[:40]!r} lies before 2000-01-01")
    return at


# ---------------------------------------------------------------------------------------------
# the read


class Rec(NamedTuple):
    """One zones.state record: key = zone id, timestamp = the document's stream clock."""
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class History(Protocol):
    async def offsets_at(self, ts: int) -> dict[int, int]:
        """Per partition, the offset of its first record stamped `ts` or later; its end offset
        when there is none (Kafka's ListOffsets by timestamp)."""
        ...

    def read(self, ranges: dict[int, tuple[int, int]]) -> AsyncIterator[list[Rec]]:
        """The records of [start, stop) of each partition, in batches, each partition in offset
        order; a batch may be empty (nothing came for a while), so the caller can look at its clock."""
        ...


@dataclass
class Found:
    """What `find` found: per zone id its record (the one with the greatest timestamp at or
    before `at`, the latest written among equals); `since` the oldest stream time searched;
    `complete` false when a bound (bytes or time) stopped the search early."""
    records: dict[str, Rec]
    since: int
    complete: bool
    windows: int = 0
    scanned_bytes: int = 0
    missing: list[str] = field(default_factory=list)


async def find(history: History, at: int, zone_ids: Iterable[str], floor_ms: int, *,
               first_window_ms: int = FIRST_WINDOW_MS, growth: int = GROWTH, slack_ms: int = SLACK_MS,
               max_bytes: int = MAX_SCAN_BYTES, deadline: float = math.inf,
               now: Callable[[], float] = time.monotonic) -> Found:
    """Every zone's last record at or before `at`: read the window [at - W, at + slack] by offsets
    for those times, then the window before it, W growing `growth`-fold, each offset read once,
    until every zone of `zone_ids` has a record, the window reaches `floor_ms` (the retention's
    start), or `max_bytes` / `deadline` stop it. Records after `at` are skipped; a zone's record
    found in a window is newer than any in the windows before it (a zone's writes follow each
    other in one partition), so it is never looked for again."""
    wanted = set(zone_ids)
    best: dict[str, Rec] = {}
    upper = await history.offsets_at(at + slack_ms + 1)
    window = first_window_ms
    scanned = windows = 0
    while True:
        since = max(at - window, floor_ms)
        lower = await history.offsets_at(since)
        ranges = {p: (lower.get(p, stop), stop) for p, stop in upper.items() if lower.get(p, stop) < stop}
        windows += 1
        async for batch in history.read(ranges):
            for rec in batch:
                scanned += len(rec.key or b"") + len(rec.value or b"")
                if rec.timestamp > at or rec.key is None:
                    continue
                zid = rec.key.decode("utf-8", "replace")
                if zid not in wanted:
                    continue
                held = best.get(zid)
                if held is None or (rec.timestamp, rec.offset) > (held.timestamp, held.offset):
                    best[zid] = rec
            if scanned > max_bytes or now() > deadline:
                return Found(best, since, False, windows, scanned, sorted(wanted - best.keys()))
        if wanted <= best.keys() or since <= floor_ms:
            return Found(best, since, True, windows, scanned, sorted(wanted - best.keys()))
        upper = {p: min(lower.get(p, stop), stop) for p, stop in upper.items()}
        window *= growth


# ---------------------------------------------------------------------------------------------
# zones.state in Kafka


class KafkaHistory:
    """zones.state read by timestamp through one aiokafka consumer with no group (nothing is
    committed, nothing joins), connected in the background from `start`: a gateway whose Kafka is
    away serves its walls, and rewinds answer 503 meanwhile. One caller at a time (Rewind's lock)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.topic(topics.ZONES_STATE)
        self.consumer: Any = None   # aiokafka.AIOKafkaConsumer once connected
        self._connector: asyncio.Task | None = None
        self._assigned: frozenset = frozenset()

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect(), name="zonewatch-rewind-connect")

    @property
    def connected(self) -> bool:
        return self.consumer is not None

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaConsumer

        pause, attempt = CONNECT_RETRY_S[0], 0
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka, client_id=f"{self.settings.app_id}-gateway-rewind",
                group_id=None, enable_auto_commit=False, auto_offset_reset="latest",
                fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=1 << 20, request_timeout_ms=30_000,
                # zones.state is written in transactions: a fenced worker's aborted documents are not
                # history (streams/kafka_fence.py)
                isolation_level="read_committed",
                **aiokafka_kwargs(self.settings))
            try:
                await consumer.start()
            except Exception as exc:   # KafkaError, OSError: keep trying, the walls are served meanwhile
                attempt += 1
                if attempt in (1, 10) or attempt % 60 == 0:
                    log.warning("rewind: cannot connect to Kafka at %s (%s); GET /zones?at= answers 503 until "
                                "it can; retrying", self.settings.kafka, exc)
                try:
                    await consumer.stop()
                except Exception:
                    pass
                await asyncio.sleep(pause)
                pause = min(pause * 2, CONNECT_RETRY_S[1])
                continue
            self.consumer = consumer
            log.info("rewind: reading %s from Kafka at %s", self.topic, self.settings.kafka)
            return

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), 5.0)
            except Exception:
                pass

    async def partitions(self) -> list:
        """The topic's partitions (assigned to the consumer, all paused); [] when it does not exist."""
        from aiokafka import TopicPartition

        parts = self.consumer.partitions_for_topic(self.topic)
        if parts is None:
            # the names of all topics: asking for this one by name would have the broker create it
            # (auto.create.topics.enable), with none of zones.state's configs
            if self.topic not in await self.consumer.topics():
                return []
            # the consumer follows the metadata of the topics it is assigned: partition 0 makes it
            # follow this one (its metadata comes in the background)
            if not self._assigned:
                self.consumer.assign([TopicPartition(self.topic, 0)])
                self._assigned = frozenset((TopicPartition(self.topic, 0),))
            deadline = time.monotonic() + METADATA_WAIT_S
            while parts is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                parts = self.consumer.partitions_for_topic(self.topic)
            parts = parts or set()
        tps = frozenset(TopicPartition(self.topic, p) for p in parts)
        if tps and tps != self._assigned:
            self.consumer.assign(sorted(tps))
            self._assigned = tps
        if tps:
            self.consumer.pause(*tps)           # nothing is fetched but what `read` asks for
        return sorted(tps)

    async def offsets_at(self, ts: int) -> dict[int, int]:
        tps = await self.partitions()
        if not tps:
            return {}
        found = await self.consumer.offsets_for_times({tp: ts for tp in tps})
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: await self._first_stamped(tp, ts, found[tp].offset if found.get(tp) is not None
                                                        else ends[tp], ends[tp]) for tp in tps}

    async def _first_stamped(self, tp, ts: int, lo: int, end: int) -> int:
        """The offset of tp's first record stamped `ts` or later (`end`: none). Kafka's answer `lo`
        is the first *batch* stamped `ts` or later, and may come early: zones.state is written in
        transactions (streams/kafka_fence.py), whose commit markers carry the broker's clock — for
        a replayed day hours after the documents' stream clocks. `lo` is a lower bound, then: when
        the record there is stamped earlier, bisect [lo, end) on the records' stamps (in order within
        SLACK_MS, like the broker's own answer)."""
        first = await self._stamp_from(tp, lo, end)
        if first is None or first[1] >= ts:
            return lo
        lo, hi = first[0] + 1, end
        while lo < hi:
            mid = (lo + hi) // 2
            rec = await self._stamp_from(tp, mid, hi)
            if rec is None or rec[1] >= ts:
                hi = mid
            else:
                lo = rec[0] + 1
        return lo

    async def _stamp_from(self, tp, offset: int, stop: int) -> tuple[int, int] | None:
        """(offset, timestamp) of tp's first committed record at `offset` or after and before
        `stop` (None: none, markers and aborted records only)."""
        self.consumer.seek(tp, offset)
        self.consumer.resume(tp)
        deadline = time.monotonic() + READ_DEADLINE_S
        try:
            while await self.consumer.position(tp) < stop and time.monotonic() < deadline:
                got = await self.consumer.getmany(tp, timeout_ms=POLL_MS, max_records=1)
                for rec in got.get(tp, ()):
                    return (rec.offset, rec.timestamp) if rec.offset < stop else None
            return None
        finally:
            self.consumer.pause(tp)

    async def oldest(self) -> int | None:
        """The timestamp of the first record of the topic (the smallest over its partitions' first
        records), None when it holds none."""
        tps = await self.partitions()
        if not tps:
            return None
        found = await self.consumer.offsets_for_times({tp: 0 for tp in tps})
        stamps = [f.timestamp for f in found.values() if f is not None]
        return min(stamps) if stamps else None

    async def read(self, ranges: dict[int, tuple[int, int]]) -> AsyncIterator[list[Rec]]:
        from aiokafka import TopicPartition

        stops = {}
        for p, (start, stop) in ranges.items():
            if start < stop:
                tp = TopicPartition(self.topic, p)
                self.consumer.seek(tp, start)
                stops[tp] = stop
        if not stops:
            return
        self.consumer.resume(*stops)
        try:
            while stops:
                got = await self.consumer.getmany(*stops, timeout_ms=POLL_MS, max_records=BATCH_RECORDS)
                batch: list[Rec] = []
                for tp, recs in got.items():
                    if tp not in stops:
                        continue
                    end = stops[tp]
                    for r in recs:
                        if r.offset >= end:
                            break
                        batch.append(Rec(tp.partition, r.offset, r.timestamp, r.key, r.value))
                    if recs and recs[-1].offset >= end - 1:
                        self._done(stops, tp)
                for tp in [tp for tp in stops if tp not in got]:
                    # nothing came: compaction may have left no record before `stop` any more
                    if await self.consumer.position(tp) >= stops[tp]:
                        self._done(stops, tp)
                yield batch
        finally:
            if self._assigned:
                self.consumer.pause(*self._assigned)

    def _done(self, stops: dict, tp) -> None:
        stops.pop(tp, None)
        self.consumer.pause(tp)


# ---------------------------------------------------------------------------------------------
# the answer


class Rewind:
    """GET /zones?at=: the zones.state history, one read at a time, and the answers of moments
    that can no longer change (older than the stream clock by more than SLACK_MS), up to CACHE_BYTES."""

    def __init__(self, settings: Settings, zone_ids: Iterable[str], history=None):
        self.settings = settings
        self.zone_ids = sorted(zone_ids)
        self.topic = settings.topic(topics.ZONES_STATE)
        self.history = history if history is not None else KafkaHistory(settings)
        self.lock = asyncio.Lock()
        self.cache: OrderedDict[int, tuple[bytes, dict]] = OrderedDict()
        self.cache_bytes = 0
        self._oldest: tuple[float, int | None] = (-math.inf, None)

    async def start(self) -> None:
        await self.history.start()

    async def stop(self) -> None:
        await self.history.stop()

    async def oldest(self) -> int | None:
        read_at, value = self._oldest
        if time.monotonic() - read_at >= OLDEST_TTL_S or value is None:
            value = await self.history.oldest()
            self._oldest = (time.monotonic(), value)
        return value

    async def zones_at(self, request: Request, clock: int) -> Response:
        """The answer to GET /zones?at= (after the token check), given the stream clock;
        RewindRefused when there is none (400, 404, 503: gateway/rest.py `zones` renders it)."""
        raw = request.query_params.getlist("at")
        if len(raw) != 1:
            raise RewindRefused(400, "give one `at`")
        try:
            at = parse_at(raw[0])
        except ValueError as exc:
            raise RewindRefused(400, str(exc)) from None
        if at > clock:
            raise RewindRefused(404, f"at={at} lies after the stream clock ({clock}): GET /zones without `at` is now")
        floor = clock - self.settings.rewind_retention_ms
        if at < floor:
            retention = self.settings.rewind_retention_ms
            raise RewindRefused(404, f"at={at} lies before the rewind retention ({retention} ms before the "
                                     f"stream clock {clock}, ZONEWATCH_REWIND_RETENTION_MS)")
        cached = self.cache.get(at)
        if cached is not None:
            self.cache.move_to_end(at)
            return answered(cached)
        if not self.history.connected:
            raise RewindRefused(503, "the rewind's Kafka consumer is not connected yet",
                                {"Retry-After": str(RETRY_AFTER_S)})
        try:
            await asyncio.wait_for(self.lock.acquire(), LOCK_WAIT_S)
        except TimeoutError:
            raise RewindRefused(503, "another rewind is being read; try again",
                                {"Retry-After": str(RETRY_AFTER_S)}) from None
        try:
            oldest = await self.oldest()
            if oldest is None:
                raise RewindRefused(404, f"{self.topic} holds no record yet")
            if at < oldest:
                raise RewindRefused(404, f"at={at} lies before the oldest {self.topic} record ({oldest})")
            # the deadline stops the read between batches; a Kafka that stops answering (a request
            # waits up to 30 s) is cut off at twice it
            found = await asyncio.wait_for(find(self.history, at, self.zone_ids, floor,
                                                deadline=time.monotonic() + READ_DEADLINE_S), 2 * READ_DEADLINE_S)
        except RewindRefused:
            raise
        except Exception as exc:   # KafkaError and kin, TimeoutError: the wall retries
            log.warning("rewind at %d: reading %s failed: %s", at, self.topic, exc)
            raise RewindRefused(503, f"reading {self.topic} failed; try again",
                                {"Retry-After": str(RETRY_AFTER_S)}) from exc
        finally:
            self.lock.release()
        answer = self.answer(at, found)
        if found.complete and at <= clock - SLACK_MS:
            self.remember(at, answer)
        log.info("rewind at %d: %d zones, %d missing, %d windows, %d bytes read%s", at, len(found.records),
                 len(found.missing), found.windows, found.scanned_bytes, "" if found.complete else " (stopped early)")
        return answered(answer)

    def answer(self, at: int, found: Found) -> tuple[bytes, dict]:
        """The body (the documents by zone id, as /zones) and the headers that say what it holds."""
        docs, bad = [], 0
        for zid in sorted(found.records):
            # checked as the documents from Redis are (gateway/untrusted.py): whoever can write the topic
            # must not put a bad document on a wall; one that fails is left out, counted with the missing
            value = found.records[zid].value
            checked = untrusted.ZONE.read(value, f"{topics.ZONES_STATE}:{zid}") if value else None  # a tombstone
            if checked is None or orjson.loads(checked.json).get("zone_id") != zid:
                bad += 1
                continue
            docs.append(checked.json)
        headers = {"X-Rewind-At": str(at), "X-Rewind-Missing": str(len(found.missing) + bad),
                   "X-Rewind-Complete": "true" if found.complete else "false"}
        return b"[" + b",".join(docs) + b"]", headers

    def remember(self, at: int, answer: tuple[bytes, dict]) -> None:
        size = len(answer[0])
        if size > CACHE_BYTES:
            return
        self.cache[at] = answer
        self.cache_bytes += size
        while self.cache_bytes > CACHE_BYTES:
            _at, (body, _h) = self.cache.popitem(last=False)
            self.cache_bytes -= len(body)


def answered(answer: tuple[bytes, dict]) -> Response:
    body, headers = answer
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store", **headers})
