"""Output topics (CONTRACT §4), snapshots, and the arrival feedback into zone-events.

Outputs are at-least-once for real: a delivery returns only when Kafka committed every record of
it; a delivery Kafka refuses is sent again (with backoff) until it commits. Every record of a
zone-events partition goes out through its owner's transactional producer, one transaction per
delivery (streams/kafka_fence.py), so a previous owner cannot write after the new one took the
partition over. The state stage does not wait for that: each partition's outputs, zones.state
documents, daily records and snapshots go through its `PartitionOutputs`, delivered one after
another in the order they were decided, while the partition applies its next batches. A snapshot
is queued behind the outputs decided before it, so a snapshot in Kafka never covers a decision
whose output could still be lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import orjson

from contract import topics
from contract.settings import Settings

from . import metrics, records
from .dispatch import Dispatcher
from .kafka_fence import KafkaFence, OutRecord, StampedRecord

log = logging.getLogger("zonewatch.outputs")

AnyRecord = OutRecord | StampedRecord


class OutputSender:
    """incidents.enriched, sla.events, duty.events, zones.state, zones.daily, snapshots and arrival
    records, each delivery as partition p's owner in the tenure it was decided in (KafkaFence.tenure; None:
    whichever is current)."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher | None, fence: KafkaFence):
        self.s = settings
        self.dispatcher = dispatcher
        self.fence = fence            # each partition's records go out through its owner's producer
        self.t_incidents = settings.topic(topics.INCIDENTS)
        self.t_sla = settings.topic(topics.SLA)
        self.t_zones = settings.topic(topics.ZONES_STATE)
        self.t_daily = settings.topic(topics.ZONES_DAILY)
        self.t_snapshots = settings.internal_snapshots

    async def deliver(self, p: int, tenure: int | None, items: Sequence[OutRecord | StampedRecord]) -> bool:
        """Send records decided by zone-events partition p, committed in one transaction of its
        producer, again until Kafka accepts them. False (nothing sent) when this worker no longer
        owns p in `tenure`: the new owner sends what p decides."""
        if not items:
            return True
        return await self.fence.send(p, items, tenure)

    async def outputs(self, enriched: list, sla: list, arrivals: dict, clock: int, wall: int,
                      fallback: dict[str, float] | None = None, duty: list[OutRecord] | None = None) -> list[OutRecord]:
        """The records of one batch's outputs. `fallback` (IncidentState.take_fallback): records
        whose recommendation was just decided short, completed from Redis first. `duty`: the
        duty.events records decided with them (streams/duty.py `DutyPlan.records`)."""
        if fallback and self.dispatcher is not None:
            await self.dispatcher.recommend([(r, fallback[r["call_id"]]) for r in enriched
                                             if r["call_id"] in fallback])
        now = int(time.time() * 1000)
        items: list[OutRecord] = []
        for rec in enriched:
            rec["processed_at"] = now
            items.append((self.t_incidents, rec["call_id"].encode(), orjson.dumps(rec), None))
        for ev in sla:
            items.append((self.t_sla, ev["call_id"].encode(), orjson.dumps(ev), None))
            metrics.SLA_DECISIONS.labels(ev["type"]).inc()
            if ev["type"] == "breach":
                metrics.BREACHES.inc()
        for q, recs in arrivals.items():
            items.append((self.s.internal_zone_events, None, records.encode(clock, recs, None, wall), q))
        if duty:
            items.extend(duty)
        return items

    def daily_records(self, docs: list[tuple[str, str, dict]]) -> list[OutRecord]:
        """zones.daily records (compacted, key "{date}|{zone_id}")."""
        return [(self.t_daily, f"{date}|{zid}".encode(), orjson.dumps(doc), None) for date, zid, doc in docs]

    def snapshot_records(self, p: int, parts: list[tuple[bytes, bytes | None]]) -> list[OutRecord]:
        """A partition's snapshot records, in order, to its partition of the snapshots topic."""
        return [(self.t_snapshots, k, v, p) for k, v in parts]

    def zone_state_records(self, docs: list[bytes], ids: list[str]) -> list[StampedRecord]:
        """The compacted `zones.state` topic: documents as Redis has them, key zone_id, each
        record's Kafka timestamp its document's `clock`, so GET /zones?at= finds a moment of stream
        time by timestamp (CONTRACT §11)."""
        return [(self.t_zones, zid.encode(), js, None, clock_of(js)) for zid, js in zip(ids, docs, strict=True)]


#: the document's `clock`: the fields before it (zone_id, name, kind, ring, version:
#: streams/zone_state.py) are scalars and a JSON string holds no unescaped quote, so the first
#: match is the document's own (a regex instead of parsing the whole document for one number)
_CLOCK = re.compile(rb'"clock":(\d+)[,}]')


def clock_of(doc: bytes) -> int:
    """The `clock` of an encoded zone document."""
    found = _CLOCK.search(doc)
    return int(found.group(1)) if found else int(orjson.loads(doc)["clock"])


class _Batch:
    """The records of consecutive deliveries of a partition that have not started yet: prepared in
    order and sent as one transaction when their turn comes."""

    __slots__ = ("tenure", "prepares", "afters", "started")

    def __init__(self, tenure: int | None):
        self.tenure = tenure
        self.prepares: list[Callable[[], Awaitable[Sequence[OutRecord | StampedRecord]]]] = []
        self.afters: list[Callable[[], None]] = []
        self.started = False


class PartitionOutputs:
    """One partition's deliveries (outputs, zones.state, zones.daily, snapshots, commits), each
    started when the one queued before it is done: Kafka sees them in decision order, and the
    partition's apply path never waits for an acknowledgement (it waits only when more than
    `MAX_QUEUED` deliveries are pending: Kafka is down or slow, and memory must stay bounded).

    Records (`put_records`) queued one after another while an earlier delivery is still under way
    are joined into one delivery — one transaction of the partition's producer
    (streams/kafka_fence.py), whose fixed cost (bench/fence_cost.py) would otherwise bound how many
    deliveries a partition makes per second. A commit or any other job (`put`) ends the join:
    what follows it goes after it."""

    MAX_QUEUED = 256   # deliveries of a partition in flight before its apply waits (back-pressure)

    def __init__(self, p: int, send: Callable[[int, int | None, Sequence[AnyRecord]], Awaitable[object]] | None = None):
        self.p = p
        self.send = send   # (p, tenure, records): OutputSender.deliver
        self.last: asyncio.Future | None = None
        self.queued = 0
        self.open: _Batch | None = None   # the records delivery not started yet, which more records join

    def put(self, job: Callable[[], Awaitable[None]]) -> None:
        """Deliver `job()` after everything queued before it."""
        self.open = None
        self.queued += 1
        self.last = asyncio.ensure_future(self._after(self.last, job, 1))

    def put_records(self, tenure: int | None, prepare: Callable[[], Awaitable[Sequence[OutRecord | StampedRecord]]],
                    after: Callable[[], None] | None = None) -> None:
        """Send the records `prepare()` makes (when their turn comes) after everything queued before
        them, as partition p's owner in `tenure`, in one delivery with the records queued just
        before or after them; `after()` once they are sent."""
        self.queued += 1
        batch = self.open
        if batch is None or batch.started or batch.tenure != tenure:
            batch = self.open = _Batch(tenure)
            self.last = asyncio.ensure_future(self._after(self.last, partial(self._deliver, batch), batch))
        batch.prepares.append(prepare)
        if after is not None:
            batch.afters.append(after)

    async def _deliver(self, batch: _Batch) -> None:
        batch.started = True
        if self.open is batch:
            self.open = None
        items: list[OutRecord | StampedRecord] = []
        for prepare in batch.prepares:
            try:
                items.extend(await prepare())
            except Exception:   # a bug: the others go out all the same
                log.exception("partition %d: preparing output records failed", self.p)
        assert self.send is not None, "PartitionOutputs made without a send"
        await self.send(self.p, batch.tenure, items)
        for after in batch.afters:
            after()

    async def _after(self, previous: asyncio.Future | None, job: Callable[[], Awaitable[None]],
                     count: int | _Batch) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])   # however it ended: the chain goes on
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # deliver() retries refusals itself: this is a bug, not Kafka
            log.exception("partition %d: an output delivery failed", self.p)
        finally:
            self.queued -= count if isinstance(count, int) else len(count.prepares)

    @property
    def full(self) -> bool:
        return self.queued > self.MAX_QUEUED

    async def drained(self) -> None:
        """Until everything queued so far is delivered."""
        last = self.last
        if last is not None and not last.done():
            await asyncio.shield(last)
