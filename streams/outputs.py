"""Output topics (CONTRACT §4), snapshots, and the arrival feedback into zone-events.

Outputs are at-least-once for real: `send` returns only when Kafka acknowledged every record of
the batch; a record Kafka refuses is sent again (with backoff) until it is accepted. The state
stage does not wait for that: each partition's outputs, daily records and snapshots go through its
`PartitionOutputs`, delivered one after another in the order they were decided, while the
partition applies its next batches. A snapshot is queued behind the outputs decided before it,
so a snapshot in Kafka never covers a decision whose output could still be lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError

from contract import topics
from contract.settings import Settings

from . import metrics, records
from .dispatch import Dispatcher

#: (topic, key, value, partition) of one output record
OutRecord = tuple[str, bytes | None, bytes | None, int | None]

log = logging.getLogger("zonewatch.outputs")

RETRY_MAX_S = 5.0


def _watch(fut) -> None:
    """Count and log a failed fire-and-forget delivery (zones.state: the next write supersedes it)."""
    def done(f):
        if not f.cancelled() and f.exception() is not None:
            metrics.OUTPUT_ERRORS.inc()
            log.error("output delivery failed: %s", f.exception())
    fut.add_done_callback(done)


class OutputSender:
    """incidents.enriched, sla.events, duty.events, zones.state, snapshots and arrival records."""

    def __init__(self, settings: Settings, app: faust.App, dispatcher: Dispatcher):
        self.s = settings
        self.app = app
        self.dispatcher = dispatcher
        self.t_incidents = settings.topic(topics.INCIDENTS)
        self.t_sla = settings.topic(topics.SLA)
        self.t_zones = settings.topic(topics.ZONES_STATE)
        self.t_daily = settings.topic(topics.ZONES_DAILY)
        self.t_snapshots = settings.internal_snapshots

    async def deliver(self, items: list[OutRecord]) -> None:
        """Send (topic, key, value, partition) records and wait until Kafka acknowledged them
        all, sending the refused ones again."""
        producer = self.app.producer
        pending = items
        delay = 0.1
        while pending:
            futures, refused = [], []
            for item in pending:
                t, k, v, part = item
                try:
                    futures.append((item, await producer.send(t, k, v, part, None, None)))
                except Exception as exc:
                    if isinstance(exc, MessageSizeTooLargeError) or isinstance(exc.__cause__, MessageSizeTooLargeError):
                        # never accepted, however often: count it, say it loudly, go on
                        metrics.OUTPUT_ERRORS.inc()
                        log.error("a record for %s of %d bytes is too large and was dropped: %s",
                                  t, len(v or b""), exc)
                    else:  # the producer refused it at once: send it again below
                        refused.append((item, exc))
            results = await asyncio.gather(*(f for _i, f in futures), return_exceptions=True)
            failed = [it for (it, _f), r in zip(futures, results, strict=True) if isinstance(r, BaseException)]
            failed += [it for it, _exc in refused]
            excs = [r for r in results if isinstance(r, BaseException)] + [exc for _it, exc in refused]
            if failed:
                metrics.OUTPUT_ERRORS.inc(len(failed))
                metrics.OUTPUT_RETRIES.inc(len(failed))
                first = excs[0]
                log.warning("Kafka refused %d output records (%s); sending them again in %.1fs",
                            len(failed), first, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            pending = failed

    async def send(self, enriched: list, sla: list, arrivals: dict, clock: int, wall: int,
                   fallback: dict[str, float] | None = None, duty: list[OutRecord] | None = None) -> None:
        """The outputs of one batch, acknowledged. `fallback` (IncidentState.take_fallback):
        records whose recommendation was just decided short, completed from Redis first. `duty`:
        the duty.events records decided with them (streams/duty.py `DutyPlan.records`)."""
        if fallback:
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
        await self.deliver(items)

    async def daily(self, docs: list[tuple[str, str, dict]]) -> None:
        """zones.daily records (compacted, key "{date}|{zone_id}"), acknowledged."""
        await self.deliver([(self.t_daily, f"{date}|{zid}".encode(), orjson.dumps(doc), None)
                            for date, zid, doc in docs])

    async def snapshot(self, p: int, parts: list[tuple[bytes, bytes | None]]) -> None:
        """A partition's snapshot records, in order, to its partition of the snapshots topic."""
        await self.deliver([(self.t_snapshots, k, v, p) for k, v in parts])

    async def zone_states(self, docs: list[bytes], ids: list[str]) -> None:
        """The compacted `zones.state` topic: the same documents as Redis, key zone_id, each
        record's Kafka timestamp its document's `clock`, so GET /zones?at= finds a moment of stream
        time by timestamp (CONTRACT §11)."""
        producer = self.app.producer
        for zid, js in zip(ids, docs, strict=True):
            _watch(await producer.send(self.t_zones, zid.encode(), js, None, faust_timestamp(clock_of(js)), None))


#: the document's `clock`: the fields before it (zone_id, name, kind, ring, version:
#: streams/zone_state.py) are scalars and a JSON string holds no unescaped quote, so the first
#: match is the document's own (a regex instead of parsing the whole document for one number)
_CLOCK = re.compile(rb'"clock":(\d+)[,}]')


def clock_of(doc: bytes) -> int:
    """The `clock` of an encoded zone document."""
    found = _CLOCK.search(doc)
    return int(found.group(1)) if found else int(orjson.loads(doc)["clock"])


def faust_timestamp(ms: int) -> float:
    """`ms` as the seconds Faust's producer takes: it sends int(seconds * 1000.0), which for
    ms / 1000 is one millisecond short for some values (1 in 25 of the years 2000-2004, say, which
    a replay may carry); half a millisecond more is exact."""
    return (ms + 0.5) / 1000.0


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
