"""Fast, safe publishing onto the zonewatch input topics (CONTRACT §1).

`EventProducer` wraps aiokafka's `AIOKafkaProducer` with the settings every connector wants:

* `acks="all"` + `enable_idempotence=True`: a broker retry never duplicates or reorders a message;
* a little `linger_ms` and large batches, no compression (loopback / LAN; CPU matters more);
* the Kafka key is the contract's key field of the topic (`topics.KEY_FIELD`), UTF-8; a record
  without it (or with an empty one) is published with a null key;
* the value is the record as orjson bytes; a `bytes` value is published verbatim (the simulator uses
  that to inject malformed messages that the pipeline must dead-letter).

`send()` only appends: it partitions the message exactly like Kafka's default partitioner (murmur2
of the key; a null key goes to a random partition), adds it to a record batch per topic-partition
and hands full batches to aiokafka with `send_batch` (about three times the throughput of one
`AIOKafkaProducer.send()` per message). Partially filled batches go out after `linger_ms` (a
background task), so paced senders are not held back. Delivery futures are awaited in bounded
windows (`window` messages in flight), so throughput is not limited by round trips, memory stays
bounded, and a failed delivery is raised within one window. Per partition, messages keep the order
in which they were sent. `flush()` waits for everything sent so far; `stop()` flushes and closes.

Errors are loud: anything that goes wrong surfaces with a message that says what to do:
`KafkaUnavailable` (the bootstrap servers cannot be reached), or a `ProducerError` (`TopicUnavailable`,
`DeliveryFailed`); all are defined in contract/errors.py.

    async with EventProducer(settings) as p:
        for rec in records:
            await p.send(topics.CALLS, rec)
    # leaving the block flushed and closed it; p.sent == number of delivered messages
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from contract import topics
from contract.errors import DeliveryFailed, KafkaUnavailable, ProducerError, TopicUnavailable
from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings

DEFAULT_LINGER_MS = 10
DEFAULT_MAX_BATCH_SIZE = 512 * 1024
DEFAULT_WINDOW = 50_000          # messages in flight (unacknowledged) before we wait for acks
DEFAULT_REQUEST_TIMEOUT_MS = 120_000  # rides out a broker restart or a short outage (buffered), then fails loudly
METADATA_TIMEOUT_S = 15.0
_partitioner = DefaultPartitioner()  # murmur2, identical to the Java client's


def encode_key(topic: str, record: Any) -> bytes | None:
    """The Kafka key of a record of input topic `topic` (unprefixed): its key field, UTF-8, or None."""
    if not isinstance(record, dict):
        return None
    value = record.get(topics.KEY_FIELD.get(topic, ""))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        value = str(value)
    return value.encode("utf-8")


def encode_value(record: Any) -> bytes:
    """orjson bytes of a record; bytes are passed through untouched."""
    if isinstance(record, (bytes, bytearray, memoryview)):
        return bytes(record)
    return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)


class EventProducer:
    """Publishes contract records (dicts) onto the (prefixed) input topics. Use as `async with`."""

    def __init__(
        self,
        settings: Settings,
        *,
        linger_ms: int = DEFAULT_LINGER_MS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        window: int = DEFAULT_WINDOW,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        client_id: str = "zonewatch-connector",
    ) -> None:
        self.settings = settings
        self.window = max(1, int(window))
        self.linger_s = max(1, int(linger_ms)) / 1000.0
        self.sent = 0                      # acknowledged by Kafka
        self.enqueued = 0
        self._inflight = 0                 # messages handed to aiokafka, not yet acknowledged
        self._pending: deque[tuple[asyncio.Future, int]] = deque()
        self._builders: dict[tuple[str, int], Any] = {}   # (topic, partition) -> open BatchBuilder
        self._oldest: float | None = None  # monotonic time of the oldest unshipped message
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes], int] = {}
        self._ship_lock = asyncio.Lock()
        self._ticker: asyncio.Task | None = None
        self._error: BaseException | None = None
        self._producer_kwargs = dict(
            bootstrap_servers=settings.kafka,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            compression_type=None,
            max_batch_size=max_batch_size,
            request_timeout_ms=request_timeout_ms,
            **aiokafka_kwargs(settings),
        )
        self._producer: AIOKafkaProducer | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> EventProducer:
        producer = AIOKafkaProducer(**self._producer_kwargs)
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await _quiet_stop(producer)
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self.settings.kafka} — is `make up` running? "
                f"(set ZONEWATCH_KAFKA or --kafka to point elsewhere; {exc})"
            ) from exc
        except KafkaError as exc:
            await _quiet_stop(producer)
            raise KafkaUnavailable(f"Kafka at {self.settings.kafka} refused the producer: {exc!r}") from exc
        self._producer = producer
        self._ticker = asyncio.create_task(self._linger_loop(), name="zonewatch-producer-linger")
        return self

    async def ensure_topics(self, names: Iterable[str]) -> None:
        """Fail fast, with advice, when an input topic (unprefixed name) is missing."""
        for name in names:
            await self._check_topic(self.settings.topic(name))

    async def _check_topic(self, full_name: str) -> list[int]:
        parts = self._partitions.get(full_name)
        if parts is not None:
            return parts
        producer = self._require()
        try:
            found = await asyncio.wait_for(producer.partitions_for(full_name), METADATA_TIMEOUT_S)
        except (TimeoutError, KafkaTimeoutError) as exc:
            raise TopicUnavailable(
                f"topic {full_name!r} is not available on {self.settings.kafka} after "
                f"{METADATA_TIMEOUT_S:g} s — create the topics first with `zonewatch topics` "
                f"(ZONEWATCH_TOPIC_PREFIX={self.settings.topic_prefix!r})"
            ) from exc
        if not found:
            raise TopicUnavailable(f"topic {full_name!r} has no partitions on {self.settings.kafka}")
        parts = self._partitions[full_name] = sorted(found)
        return parts

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise ProducerError("EventProducer is not started (use `async with EventProducer(...)`)")
        if self._error is not None:
            raise self._error
        return self._producer

    async def flush(self) -> None:
        """Send everything buffered and wait until it is acknowledged; raise on the first failure."""
        self._require()
        await self.ship()
        await self._drain(0)

    async def stop(self) -> None:
        """Flush and close. Safe to call twice."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            await self._close()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except (asyncio.CancelledError, Exception):
                pass
            self._ticker = None
        if producer is not None:
            await _quiet_stop(producer)

    async def __aenter__(self) -> EventProducer:
        return await self.start()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.stop()
        else:  # do not wait for deliveries when we are already failing
            self._pending.clear()
            self._builders.clear()
            await self._close()

    # --- sending ----------------------------------------------------------------------------
    async def send(self, topic: str, record: Any) -> None:
        """Queue one record for input topic `topic` (unprefixed contract name)."""
        producer = self._require()
        full = self.settings.topic(topic)
        parts = self._partitions.get(full)
        if parts is None:
            parts = await self._check_topic(full)
        key = encode_key(topic, record)
        value = encode_value(record)
        part: int | None
        if key is None:
            part = parts[random.randrange(len(parts))]
        else:
            part = self._key_partition.get((full, key))
            if part is None:
                if len(self._key_partition) > 200_000:
                    self._key_partition.clear()
                part = self._key_partition[(full, key)] = _partitioner(key, parts, parts)
        slot = (full, part)
        builder = self._builders.get(slot)
        if builder is None:
            builder = self._builders[slot] = producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:
            await self._ship_slot(slot, builder)
            builder = self._builders[slot] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                del self._builders[slot]
                raise DeliveryFailed(f"a message for {full!r} of {len(value)} bytes exceeds the batch "
                                     f"size ({self._producer_kwargs['max_batch_size']} bytes)")
        self.enqueued += 1
        now = time.monotonic()
        if self._oldest is None:
            self._oldest = now
        elif now - self._oldest >= self.linger_s:
            await self.ship()
        if self._inflight >= self.window:
            await self._drain(self.window // 2)

    async def send_many(self, topic: str, records: Iterable[Any] | AsyncIterable[Any]) -> int:
        """Send every record to `topic` without waiting per message; flush at the end. Returns count."""
        n = 0
        if hasattr(records, "__aiter__"):
            async for rec in records:
                await self.send(topic, rec)
                n += 1
        else:
            for rec in records:
                await self.send(topic, rec)
                n += 1
        await self.flush()
        return n

    async def ship(self) -> None:
        """Hand every partially filled batch to aiokafka now (does not wait for acknowledgements)."""
        if not self._builders:
            self._oldest = None
            return
        async with self._ship_lock:
            builders, self._builders = self._builders, {}
            self._oldest = None
            for (topic, part), builder in builders.items():
                await self._submit(topic, part, builder)

    async def _ship_slot(self, slot: tuple[str, int], builder: Any) -> None:
        async with self._ship_lock:
            if self._builders.get(slot) is not builder:
                return  # ship() took it (and submitted it) while we waited for the lock
            del self._builders[slot]
            await self._submit(slot[0], slot[1], builder)

    async def _submit(self, topic: str, part: int, builder: Any) -> None:
        count = builder.record_count()
        if not count:
            return
        producer = self._require()
        try:
            fut = await producer.send_batch(builder, topic, partition=part)
        except KafkaTimeoutError as exc:
            raise DeliveryFailed(
                f"Kafka at {self.settings.kafka} did not take a batch for {topic!r} within "
                f"{self._producer_kwargs['request_timeout_ms']} ms (broker down or overloaded?)"
            ) from exc
        except KafkaError as exc:
            raise DeliveryFailed(f"cannot send to {topic!r}: {exc!r}") from exc
        self._pending.append((fut, count))
        self._inflight += count

    async def _linger_loop(self) -> None:
        """Ship partially filled batches that waited `linger_ms` (the sender may be idle or sleeping)."""
        try:
            while True:
                await asyncio.sleep(self.linger_s)
                if self._oldest is not None and time.monotonic() - self._oldest >= self.linger_s:
                    await self.ship()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaces on the next send / flush
            self._error = exc

    def check(self) -> None:
        """Raise the first delivery failure among completed sends; forget completed ones (no wait)."""
        if self._error is not None:
            raise self._error
        pending = self._pending
        while pending and pending[0][0].done():
            fut, count = pending.popleft()
            self._inflight -= count
            self._raise_if_failed(fut)
            self.sent += count

    async def _drain(self, keep: int) -> None:
        """Await delivery futures, oldest first, until at most `keep` messages are in flight."""
        pending = self._pending
        while pending and self._inflight > keep:
            fut, count = pending[0]
            await asyncio.wait((fut,))
            pending.popleft()
            self._inflight -= count
            self._raise_if_failed(fut)
            self.sent += count

    def _raise_if_failed(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            raise DeliveryFailed("a message delivery was cancelled (producer closed while sending?)")
        exc = fut.exception()
        if exc is None:
            return
        if isinstance(exc, KafkaTimeoutError):
            raise DeliveryFailed(
                f"Kafka at {self.settings.kafka} did not acknowledge a batch within "
                f"{self._producer_kwargs['request_timeout_ms']} ms (acks=all: are enough brokers "
                f"in sync? is the broker still up?)"
            ) from exc
        raise DeliveryFailed(f"Kafka rejected a batch: {exc!r}") from exc


async def _quiet_stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception:  # closing after a failure must not mask the original error
        pass


async def publish(settings: Settings, topic: str, records: Iterable[Any]) -> int:
    """One-shot helper: publish `records` to `topic` (unprefixed), flush, close; returns the count."""
    async with EventProducer(settings) as p:
        return await p.send_many(topic, records)
