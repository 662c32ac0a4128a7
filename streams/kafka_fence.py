"""The Kafka side of a partition's ownership: what a zone-events partition decides is written by
its owner alone.

Redis refuses a previous owner's writes by generation (streams/store.py, zw:fence). Kafka does the
same with transactions: every zone-events partition p has one transactional id,
`{app_id}-owner-{p}`, and its owner sends everything p decides — incidents.enriched, sla.events,
duty.events, zones.state, zones.daily, the arrival records and the snapshots — through a producer
with that id, one transaction per delivery of p's `PartitionOutputs` (streams/outputs.py). Taking p
over (streams/recovery.py) starts a new producer with the id right after the Redis fence
(InitProducerId): the broker bumps the id's epoch, aborts the transaction the previous owner left
open, and refuses every later request of the previous producer. So a frozen owner that thaws (a
zombie) finds its sends fenced and drops the partition, as it does when Redis refuses its write:
nothing it sends after the new owner started is committed, and what it left in an open
transaction is aborted (read_committed readers never see it). Each record also carries the header
`zw-owner` "{partition}:{generation}" (the Redis generation), which says who wrote it. A
transaction Kafka refused for another reason is sent again with a new producer of the same id,
while Redis still names this worker the owner (`_renew`).

Why transactions rather than a generation in every record that readers honour: zones.state and
zones.daily are compacted, and compaction keeps a key's *last* record by offset — a zombie's stale
record written after the new owner's would be the one kept, whatever generation it carries; and a
rule every downstream reader must implement is a rule some reader will not. The fence is in the
broker instead; readers only read with isolation_level read_committed. Its cost is one transaction
per delivery (round trips off the apply path: bench/fence_cost.py) and one producer per owned
partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from contract.kafka_settings import aiokafka_kwargs
from contract.settings import Settings
from contract.topics import OWNER_HEADER, SNAPSHOT_MAX_BYTES

from . import metrics

log = logging.getLogger("zonewatch.fence")

#: (topic, key, value, partition) of one output record
OutRecord = tuple[str, bytes | None, bytes | None, int | None]
#: the same with its Kafka timestamp in ms (zones.state: the document's clock, CONTRACT §11)
StampedRecord = tuple[str, bytes | None, bytes | None, int | None, int]

RETRY_MAX_S = 5.0
STOP_S = 5.0   # a producer's stop waits this long for what it holds (Kafka away: it never would)


class KafkaFence:
    """One transactional producer per zone-events partition this worker owns."""

    def __init__(self, settings: Settings, owns: Callable[[int, int], Awaitable[bool]] | None = None,
                 on_fenced: Callable[[set[int]], None] | None = None):
        self.settings = settings
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.generations: dict[int, int] = {}                   # the Redis owner generation of each
        self.headers: dict[int, list[tuple[str, bytes]]] = {}   # the zw-owner header per partition
        self.locks: dict[int, asyncio.Lock] = {}                # one transaction at a time per producer
        self.taking: dict[int, asyncio.Lock] = {}               # one take at a time per partition
        # partition -> its current tenure here: a new number at each take, so a delivery decided
        # under an earlier ownership of p is never sent by a later one (tenure())
        self.tenures: dict[int, int] = {}
        self.taken = 0
        # (partition, generation) -> still its owner in Redis (RedisStore.owns); None: always
        self.owns = owns
        # called with {p} when p's producer was fenced (another worker took p over)
        self.on_fenced = on_fenced

    def transactional_id(self, p: int) -> str:
        return f"{self.settings.app_id}-owner-{p}"

    def new_producer(self, p: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.settings.kafka, transactional_id=self.transactional_id(p),
                                enable_idempotence=True, acks="all", linger_ms=0,
                                max_request_size=SNAPSHOT_MAX_BYTES, client_id=self.transactional_id(p),
                                metadata_max_age_ms=10_000,   # a broker restart: partitions back in seconds
                                **aiokafka_kwargs(self.settings))

    async def take(self, p: int, generation: int) -> None:
        """Own p's Kafka writes from now on (a takeover, after Redis' fence): the previous owner's
        producer of p is fenced once this returns. Two takes of p (a takeover cancelled by a
        rebalance may still be under way when the next starts) run one after the other: the later
        one owns p."""
        async with self.taking.setdefault(p, asyncio.Lock()):
            await self.release(p)
            producer = self.new_producer(p)
            try:
                await producer.start()   # InitProducerId: the epoch bump that fences the previous producer
            except BaseException:        # Kafka away, or the takeover cancelled (revoked): nothing kept
                await _stop(producer, p)
                raise
            self.producers[p] = producer
            self.taken += 1
            self.tenures[p] = self.taken
            self.regenerate(p, generation)

    def regenerate(self, p: int, generation: int) -> None:
        """p's Redis generation changed while this worker kept it (Redis lost its fences:
        streams/recovery.py): its records say so; its tenure, and what is queued, stay."""
        if p in self.producers:
            self.generations[p] = generation
            self.headers[p] = [(OWNER_HEADER, f"{p}:{generation}".encode())]

    def tenure(self, p: int) -> int:
        """This worker's current ownership of p's writes (-1: none), for `send`."""
        return self.tenures.get(p, -1)

    def _pop(self, p: int) -> AIOKafkaProducer | None:
        self.generations.pop(p, None)
        self.headers.pop(p, None)
        self.tenures.pop(p, None)
        return self.producers.pop(p, None)

    async def release(self, p: int) -> None:
        """p is no longer this worker's (revoked, or fenced)."""
        producer = self._pop(p)
        if producer is not None:
            await _stop(producer, p)

    def drop(self, p: int) -> None:
        """`release` from synchronous code: p's producer is gone at once, stopped in the background."""
        producer = self._pop(p)
        if producer is not None:
            asyncio.ensure_future(_stop(producer, p))

    async def send(self, p: int, items: Sequence[OutRecord | StampedRecord], tenure: int | None = None) -> bool:
        """Send `items` in one transaction of p's producer, again until it commits (a record too
        large for any request is dropped and counted). False when p is not owned here (or no
        longer under `tenure`, the one the items were decided under), or was fenced (another
        worker owns it now: what p decides is that worker's to send)."""
        lock = self.locks.setdefault(p, asyncio.Lock())
        delay = 0.1
        async with lock:
            while True:
                producer = self.producers.get(p)
                if producer is None or (tenure is not None and self.tenures.get(p) != tenure):
                    return False
                if producer._txn_manager.is_fatal_error():   # fenced while it waited or froze
                    await self._fenced(p, producer, None)
                    return False
                try:
                    items = await self._transaction(producer, p, items)
                    return True
                except KafkaError as exc:
                    if p not in self.producers or self.producers[p] is not producer:
                        return False   # released meanwhile (revoked): p is gone
                    if producer._txn_manager.is_fatal_error():   # fenced: the epoch moved on
                        await self._fenced(p, producer, exc)
                        return False
                    metrics.OUTPUT_ERRORS.inc(len(items))
                    metrics.OUTPUT_RETRIES.inc(len(items))
                    log.warning("Kafka refused partition %d's %d output records (%r); sending them again in "
                                "%.1fs", p, len(items), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                try:
                    if not await self._renew(p, producer):
                        await self._fenced(p, producer, None)
                        return False
                except Exception as exc:   # Kafka or Redis away: the next round tries again
                    log.warning("a new producer for partition %d failed (%r)", p, exc)

    async def _transaction(self, producer: AIOKafkaProducer, p: int,
                           items: Sequence[OutRecord | StampedRecord]) -> list[OutRecord | StampedRecord]:
        """One transaction with `items`; the items kept (without those too large ever to send)."""
        headers = self.headers[p]
        kept = []
        async with producer.transaction():
            futures = []
            for item in items:
                topic, key, value, part = item[0], item[1], item[2], item[3]
                stamp = item[4] if len(item) > 4 else None   # a StampedRecord
                try:
                    futures.append(await producer.send(topic, value, key=key, partition=part,
                                                       timestamp_ms=stamp, headers=headers))
                except MessageSizeTooLargeError as exc:   # never accepted, however often: say it, go on
                    metrics.OUTPUT_ERRORS.inc()
                    log.error("a record for %s of %d bytes is too large and was dropped: %s",
                              topic, len(value or b""), exc)
                    continue
                kept.append(item)
            failed = [r for r in await asyncio.gather(*futures, return_exceptions=True) if isinstance(r, BaseException)]
            if failed:   # every outcome retrieved; the first failure aborts the transaction
                raise failed[0]
        return kept

    async def _renew(self, p: int, producer: AIOKafkaProducer) -> bool:
        """After a transaction Kafka refused, a new producer with p's transactional id: aiokafka does
        not reset its sequence numbers after a failed batch, so every later batch of the old one
        would be refused as out of order. Only while p is still this worker's in Redis (a takeover
        fences Redis before Kafka), else the new producer would fence the new owner: False then."""
        if self.owns is not None and not await self.owns(p, self.generations[p]):
            return False
        renewed = self.new_producer(p)
        await renewed.start()   # fences the old producer (same id): its sequence numbers start again
        if self.producers.get(p) is producer:
            self.producers[p] = renewed
            await _stop(producer, p)
        else:   # released meanwhile
            await _stop(renewed, p)
        return True

    async def _fenced(self, p: int, producer: AIOKafkaProducer, exc: Exception | None) -> None:
        if self.producers.get(p) is not producer:
            return   # an earlier producer of p (this worker took p again since): the current one stands
        log.warning("partition %d's Kafka writes are fenced (%r): another worker owns it now", p, exc)
        metrics.FENCED.inc()
        await self.release(p)
        if self.on_fenced is not None:
            self.on_fenced({p})

    async def close(self) -> None:
        for p in list(self.producers):
            await self.release(p)


async def _stop(producer: AIOKafkaProducer, p: int) -> None:
    """Stop a producer of partition p, whatever state its transactions are in."""
    try:
        # delivers what it holds first; bounded, since with Kafka away it would wait for ever
        await asyncio.wait_for(asyncio.shield(producer.stop()), STOP_S)
    except Exception as exc:  # a fenced producer may fail to flush what it held: nothing to keep
        log.info("stopping the producer of partition %d: %r", p, exc)
    # A send still inside one of its transactions would wait for ever: aiokafka ends neither the
    # commit nor the batches once its sender stopped (a Kafka freeze with a rebalance in it found
    # zones.state stuck behind one). End them; the send sees its producer gone.
    gone = KafkaError(f"the producer of partition {p} was stopped")
    producer._message_accumulator.fail_all(gone)
    txn = producer._txn_manager
    if txn is not None and txn.wait_for_transaction_end() is not None:   # None before its first transaction
        txn.fatal_error(gone)
        waiter = txn.wait_for_transaction_end()
        if waiter.done() and not waiter.cancelled():
            waiter.exception()   # seen (else asyncio logs it at exit)
