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

import orjson

from contract import topics
from contract.settings import Settings

from . import metrics, records
from .dispatch import Dispatcher
from .kafka_fence import KafkaFence, OutRecord, StampedRecord

log = logging.getLogger("zonewatch.outputs")


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

    async def send(self, p: int, tenure: int | None, enriched: list, sla: list, arrivals: dict, clock: int,
                   wall: int, fallback: dict[str, float] | None = None, duty: list[OutRecord] | None = None) -> None:
        """The outputs of one batch of partition p, committed. `fallback` (IncidentState.take_fallback):
        records whose recommendation was just decided short, completed from Redis first. `duty`:
        the duty.events records decided with them (streams/duty.py `DutyPlan.records`)."""
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
        await self.deliver(p, tenure, items)

    async def daily(self, p: int, tenure: int | None, docs: list[tuple[str, str, dict]]) -> None:
        """zones.daily records of partition p's zones (compacted, key "{date}|{zone_id}"), committed."""
        await self.deliver(p, tenure, [(self.t_daily, f"{date}|{zid}".encode(), orjson.dumps(doc), None)
                                           for date, zid, doc in docs])

    async def snapshot(self, p: int, tenure: int | None, parts: list[tuple[bytes, bytes | None]]) -> None:
        """A partition's snapshot records, in order, to its partition of the snapshots topic."""
        await self.deliver(p, tenure, [(self.t_snapshots, k, v, p) for k, v in parts])

    async def zone_states(self, p: int, tenure: int | None, docs: list[bytes], ids: list[str]) -> None:
        """The compacted `zones.state` topic: partition p's documents as Redis has them, key zone_id,
        each record's Kafka timestamp its document's `clock`, so GET /zones?at= finds a moment of
        stream time by timestamp (CONTRACT §11)."""
        await self.deliver(p, tenure, [(self.t_zones, zid.encode(), js, None, clock_of(js))
                                           for zid, js in zip(ids, docs, strict=True)])


#: the document's `clock`: the fields before it (zone_id, name, kind, ring, version:
#: streams/zone_state.py) are scalars and a JSON string holds no unescaped quote, so the first
#: match is the document's own (a regex instead of parsing the whole document for one number)
_CLOCK = re.compile(rb'"clock":(\d+)[,}]')


def clock_of(doc: bytes) -> int:
    """The `clock` of an encoded zone document."""
    found = _CLOCK.search(doc)
    return int(found.group(1)) if found else int(orjson.loads(doc)["clock"])


class PartitionOutputs:
    """One partition's deliveries (outputs, zones.daily, snapshots), each started when the one
    queued before it is acknowledged: Kafka sees them in decision order, and the partition's
    apply path never waits for an acknowledgement (it waits only when more than `MAX_QUEUED`
    deliveries are pending: Kafka is down or slow, and memory must stay bounded)."""

    MAX_QUEUED = 256   # deliveries of a partition in flight before its apply waits (back-pressure)

    def __init__(self, p: int):
        self.p = p
        self.last: asyncio.Future | None = None
        self.queued = 0

    def put(self, job: Callable[[], Awaitable[None]]) -> None:
        """Deliver `job()` after everything queued before it."""
        self.queued += 1
        self.last = asyncio.ensure_future(self._after(self.last, job))

    async def _after(self, previous: asyncio.Future | None, job: Callable[[], Awaitable[None]]) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])   # however it ended: the chain goes on
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # deliver() retries refusals itself: this is a bug, not Kafka
            log.exception("partition %d: an output delivery failed", self.p)
        finally:
            self.queued -= 1

    @property
    def full(self) -> bool:
        return self.queued > self.MAX_QUEUED

    async def drained(self) -> None:
        """Until everything queued so far is delivered."""
        last = self.last
        if last is not None and not last.done():
            await asyncio.shield(last)
