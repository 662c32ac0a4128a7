"""Intake, `POST /ingest/{calls|gps|alerts|status}` (CONTRACT §9): events from sources that cannot
speak Kafka, validated exactly as the worker validates them, in Kafka before the answer. This module
reads, splits, validates and produces; the endpoint is `gateway.rest.ingest`.

Body (docs/GATEWAY.md "Intake"): at most MAX_RECORDS records and MAX_BYTES bytes, read in chunks and counted
as they arrive (a larger body is refused with 413 before it is all read).
  * `Content-Type: application/x-ndjson` (also application/ndjson, application/jsonl,
    application/x-jsonlines, application/jsonlines): one record per line; every line is a record
    (a blank one is rejected), a final newline ends the last line; index = line number from 0;
  * `Content-Type: application/json` (or any `+json`): the body is one JSON value; an array's
    elements are the records, anything else is one record (index 0), so a body that is not JSON at
    all is one record rejected with the worker's reason (`invalid JSON: …`), and an empty body one
    record rejected as `empty message value`;
  * no or another Content-Type: application/json when the whole body parses as one JSON value,
    else NDJSON.
Each record goes through `contract.events` (`decode_and_validate` for raw bytes, `VALIDATORS` for
an array's objects): the same code and the same reasons as the worker's dead letters. Valid records
are published as the validator normalised them (CONTRACT §1 fields only; `ts` as epoch ms), keyed
by `contract.topics.KEY_FIELD`, with the gateway's one idempotent acks=all producer.

Answer: 200 {"accepted": n, "rejected": [{"index", "reason"}]} once Kafka has acknowledged every
accepted record; 503 + Retry-After when it has not within `produce_timeout_s` (the client must send
the whole body again: records of a 503'd body may have landed, and the pipeline counts a repeat once
— calls and alerts by id, fixes by (unit_id, ts), status reports by (camera_id, ts)).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import orjson

from contract import events, topics
from contract.errors import KafkaUnavailable, Rejected
from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings

log = logging.getLogger("zonewatch.gateway")

MAX_RECORDS = 10_000
MAX_BYTES = 10 * 1024 * 1024
#: source in the path -> input topic (unprefixed)
SOURCES = {source: topic for topic, source in topics.SOURCE_OF_TOPIC.items()}
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines", "application/json-lines"})
NDJSON, JSON, AUTO = "ndjson", "json", "auto"
#: the record of an empty application/json body: validated as an empty Kafka value
EMPTY = object()

DEFAULT_PRODUCE_TIMEOUT_S = 5.0   # how long a request waits for Kafka's acknowledgements, then 503
DEFAULT_BODY_TIMEOUT_S = 60.0     # the whole body must arrive within this after the head (10 MB at 175 kB/s)
DEFAULT_CONCURRENCY = 4           # bodies read, validated and produced at once; more wait, then 503
RETRY_AFTER_S = 5
CONNECT_RETRY_S = (0.5, 5.0)      # producer start retries: first and longest pause
MAX_BATCH_BYTES = 512 * 1024      # one Kafka record batch


#: a body refused as a whole: over MAX_BYTES or MAX_RECORDS (413)
TooLarge = Rejected
#: Kafka did not take the records in time, or the producer is not connected (503)
Unavailable = KafkaUnavailable


def body_format(content_type: str | None) -> str:
    """NDJSON, JSON or AUTO for a Content-Type header value."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        return NDJSON
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return JSON
    return AUTO


@dataclass
class Parsed:
    """One body, validated: what to publish and what was rejected."""

    records: int = 0
    accepted: list[tuple[bytes | None, bytes]] = field(default_factory=list)   # (key, value)
    rejected: list[dict] = field(default_factory=list)                          # {"index", "reason"}


def _too_many(n: int) -> TooLarge:
    return TooLarge(f"{n} records; at most {MAX_RECORDS} per request")


def split(body: bytes, fmt: str) -> list:
    """The records of a body: raw bytes (one per NDJSON line, or the whole body as one record) or
    the parsed elements of a JSON array. TooLarge beyond MAX_RECORDS."""
    if fmt != NDJSON:
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            doc = ...
        if type(doc) is list:
            if len(doc) > MAX_RECORDS:
                raise _too_many(len(doc))
            return doc
        if type(doc) is dict:
            return [doc]
        if fmt == JSON or doc is not ...:
            return [bytes(body) if body else EMPTY]   # one record; an empty body is an empty value
    if not body:
        return []
    lines = body.split(b"\n")
    if not lines[-1]:
        lines.pop()   # the newline that ends the last line
    if len(lines) > MAX_RECORDS:
        raise _too_many(len(lines))
    return lines


def validate(topic: str, records: list, max_ts: int) -> Parsed:
    """Validate each record with contract.events; the accepted ones as (key, value) for Kafka."""
    out = Parsed(records=len(records))
    check = events.VALIDATORS[topic]
    key_field = topics.KEY_FIELD[topic]
    dumps = orjson.dumps
    for i, rec in enumerate(records):
        try:
            if type(rec) is dict:
                ev = check(rec, max_ts)
            elif isinstance(rec, bytes):
                ev = events.decode_and_validate(topic, rec, max_ts)
            elif rec is EMPTY:
                ev = events.decode_and_validate(topic, None, max_ts)
            else:   # an array element that is not an object: the worker's reason for that value
                ev = events.decode_and_validate(topic, dumps(rec), max_ts)
        except Rejected as exc:
            out.rejected.append({"index": i, "reason": str(exc)})
            continue
        out.accepted.append((ev[key_field].encode(), dumps(ev)))
    return out


def parse(topic: str, body: bytes, fmt: str, max_ts: int) -> Parsed:
    """split + validate (run in a thread: a 10 MB body takes tens of milliseconds)."""
    return validate(topic, split(body, fmt), max_ts)


async def read_body(request, fmt: str, timeout_s: float) -> bytes:
    """The request body, counted while it arrives: TooLarge past MAX_BYTES (or, for NDJSON, past
    MAX_RECORDS newlines) without reading further; TimeoutError when it takes over `timeout_s`."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_BYTES:
        raise TooLarge(f"body of {int(length)} bytes; at most {MAX_BYTES} per request")
    buf = bytearray()
    newlines = 0
    async with asyncio.timeout(timeout_s):
        async for chunk in request.stream():
            if len(buf) + len(chunk) > MAX_BYTES:
                raise TooLarge(f"body over {MAX_BYTES} bytes; at most {MAX_BYTES} per request")
            if fmt == NDJSON:
                newlines += chunk.count(b"\n")
                if newlines > MAX_RECORDS:
                    raise _too_many(newlines)
            buf += chunk
    return bytes(buf)


class Intake:
    """The gateway's one Kafka producer (idempotent, acks=all), connected in the background from
    start: the gateway serves its walls while Kafka is away, and intake answers 503 meanwhile."""

    def __init__(self, settings: Settings, *, produce_timeout_s: float = DEFAULT_PRODUCE_TIMEOUT_S,
                 body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S, concurrency: int = DEFAULT_CONCURRENCY):
        self.settings = settings
        self.produce_timeout_s = produce_timeout_s
        self.body_timeout_s = body_timeout_s
        self.slots = asyncio.Semaphore(concurrency)
        self.producer = None
        self._connector: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._unacked: dict[asyncio.Future, float] = {}   # delivery future -> when it was sent
        self._partitioner = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect in the background; wait for it up to produce_timeout_s (a gateway whose Kafka is
        away starts anyway and serves its walls)."""
        self._connector = asyncio.create_task(self._connect(), name="zonewatch-intake-connect")
        await asyncio.wait([self._connector], timeout=self.produce_timeout_s)

    @property
    def state(self) -> str:
        """"connected" or "connecting" (for /healthz)."""
        return "connected" if self.producer is not None else "connecting"

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.partitioner import DefaultPartitioner

        self._partitioner = DefaultPartitioner()   # murmur2, as Kafka's default: keys land where connectors' do
        pause, attempt = CONNECT_RETRY_S[0], 0
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka, client_id=f"{self.settings.app_id}-gateway-intake",
                acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=MAX_BATCH_BYTES,
                request_timeout_ms=30_000, **aiokafka_kwargs(self.settings))
            try:
                await producer.start()
            except Exception as exc:   # KafkaError, OSError: keep trying, the gateway serves meanwhile
                attempt += 1
                if attempt in (1, 10) or attempt % 60 == 0:
                    log.warning("intake: cannot connect to Kafka at %s (%s); POST /ingest answers 503 until "
                                "it can; retrying", self.settings.kafka, exc)
                await _quiet_stop(producer)
                await asyncio.sleep(pause)
                pause = min(pause * 2, CONNECT_RETRY_S[1])
                continue
            self.producer = producer
            log.info("intake: producer connected to Kafka at %s", self.settings.kafka)
            return

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        producer, self.producer = self.producer, None
        if producer is not None:
            # flushes what is still unacknowledged (answered 503 already, or in flight); bounded
            await self._bounded_stop(producer)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _bounded_stop(self, producer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), self.produce_timeout_s)
        except Exception:
            pass

    def _reset(self, old, why: str) -> None:
        """A producer that failed other than by timing out (a fatal idempotence error, say) is
        replaced by a new one; until it is connected intake answers 503."""
        if self.producer is old:
            self.producer = None
            log.warning("intake: new Kafka producer after %s", why)
            task = asyncio.create_task(self._bounded_stop(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self.producer is None and (self._connector is None or self._connector.done()):
            self._connector = asyncio.create_task(self._connect(), name="zonewatch-intake-connect")

    # -- producing -----------------------------------------------------------------------------
    def _stalled(self, now: float) -> bool:
        """Records sent earlier are still unacknowledged past the timeout: Kafka is not taking
        them, so a new body is refused at once instead of being queued behind them."""
        for fut in [f for f in self._unacked if f.done()]:
            del self._unacked[fut]
        return any(now - sent > self.produce_timeout_s for sent in self._unacked.values())

    def _track(self, fut: asyncio.Future, now: float) -> None:
        self._unacked[fut] = now
        # a 503'd body's futures are never awaited again: retrieve their outcome so asyncio does not log it
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def produce(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
        """Every record in Kafka (acks=all) within produce_timeout_s, or Unavailable."""
        producer = self.producer
        if producer is None:
            raise Unavailable("intake is not connected to Kafka yet")
        now = time.monotonic()
        if self._stalled(now):
            raise Unavailable("Kafka has not acknowledged earlier records yet")
        if not records:
            return
        full = self.settings.topic(topic)
        futures: list[asyncio.Future] = []
        deadline = now + self.produce_timeout_s
        try:
            async with asyncio.timeout(self.produce_timeout_s):
                parts = sorted(await producer.partitions_for(full))
                builders: dict[int, object] = {}
                for key, value in records:
                    p = self._partitioner(key, parts, parts)
                    b = builders.get(p)
                    if b is None:
                        b = builders[p] = producer.create_batch()
                    if b.append(key=key, value=value, timestamp=None) is None:
                        futures.append(await producer.send_batch(b, full, partition=p))
                        self._track(futures[-1], time.monotonic())
                        b = builders[p] = producer.create_batch()
                        b.append(key=key, value=value, timestamp=None)
                for p, b in builders.items():
                    futures.append(await producer.send_batch(b, full, partition=p))
                    self._track(futures[-1], time.monotonic())
        except TimeoutError:
            raise Unavailable(self._why_not(producer, full)) from None
        except Exception as exc:   # aiokafka errors: the broker refused, the producer failed
            self._reset(producer, type(exc).__name__)
            raise Unavailable(f"Kafka refused the records ({type(exc).__name__})") from None
        done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        if pending:
            raise Unavailable(self._why_not(producer, full))
        for f in done:
            exc = f.exception()
            if exc is not None:
                self._reset(producer, type(exc).__name__)
                raise Unavailable(f"Kafka refused the records ({type(exc).__name__})")

    def _why_not(self, producer, full: str) -> str:
        if not producer.client.cluster.partitions_for_topic(full):
            return (f"topic {full!r} is unknown to Kafka at {self.settings.kafka} (create the topics with "
                    "`zonewatch topics`)")
        return f"Kafka did not acknowledge the records within {self.produce_timeout_s:g} s"


async def _quiet_stop(producer) -> None:
    try:
        await producer.stop()
    except Exception:
        pass
