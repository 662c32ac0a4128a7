"""Output topics (CONTRACT §4) and the arrival feedback into zone-events, on Faust's producer."""

from __future__ import annotations

import logging
import time

import faust
import orjson

from contract import topics
from contract.settings import Settings

from . import metrics, records
from .dispatch import Dispatcher

log = logging.getLogger("zonewatch.outputs")


def _watch(fut) -> None:
    """Log a failed delivery (the next commit's flush would otherwise hide it)."""
    def done(f):
        if not f.cancelled() and f.exception() is not None:
            metrics.OUTPUT_ERRORS.inc()
            log.error("output delivery failed: %s", f.exception())
    fut.add_done_callback(done)


class OutputSender:
    """incidents.enriched, sla.events, zones.state and arrival records for zone partitions."""

    def __init__(self, settings: Settings, app: faust.App, dispatcher: Dispatcher):
        self.s = settings
        self.app = app
        self.dispatcher = dispatcher
        self.t_incidents = settings.topic(topics.INCIDENTS)
        self.t_sla = settings.topic(topics.SLA)
        self.t_zones = settings.topic(topics.ZONES_STATE)

    async def send(self, enriched: list, sla: list, arrivals: dict, clock: int) -> None:
        """Queue the outputs of one batch on Faust's producer without waiting for the acks:
        Faust flushes its producer before it commits the offsets of the batch, so an output is
        acknowledged by Kafka before its input counts as processed (at-least-once), while the
        agent goes on with the next batch."""
        producer = self.app.producer
        new = [r for r in enriched if "processed_at" not in r]
        if new:
            await self.dispatcher.recommend(new)
        now = int(time.time() * 1000)
        for rec in enriched:
            rec["processed_at"] = now
            _watch(await producer.send(self.t_incidents, rec["call_id"].encode(), orjson.dumps(rec),
                                       None, None, None))
        for ev in sla:
            _watch(await producer.send(self.t_sla, ev["call_id"].encode(), orjson.dumps(ev), None, None, None))
        for q, recs in arrivals.items():
            _watch(await producer.send(self.s.internal_zone_events, None, records.encode(clock, recs),
                                       q, None, None))

    async def zone_states(self, docs: list[bytes], ids: list[str]) -> None:
        """The compacted `zones.state` topic: the same documents as Redis, key zone_id."""
        producer = self.app.producer
        for zid, js in zip(ids, docs):
            _watch(await producer.send(self.t_zones, zid.encode(), js, None, None, None))
