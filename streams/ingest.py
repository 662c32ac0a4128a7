"""Stage 1: raw input topics -> validate/normalise -> zone lookup -> repartition by zone.

A Faust agent costs ~60-100 µs per message here, which caps a worker near 10-16k ev/s. This
stage therefore reads the three input topics with a plain aiokafka consumer in batches
(`getmany`), and hands the state stage *one message per zone partition per batch*, so Faust's
per-message cost is paid per few hundred events instead of per event.

Delivery is at-least-once: input offsets are committed only after the batch messages and the
dead letters are acknowledged by Kafka (acks=all, idempotent producer). A crash re-sends a
batch; the state stage de-duplicates by event id, so nothing is lost or counted twice.

Record layout on the zone-events topic (one JSON object per message):
    {"clock": <ms>, "ev": [[kind, id, ts, [zone ids in this partition], primary, kafka_ts, a, b], ...]}
kind "c": a=category, b=priority; "a": a=alert type, b=severity; "g": a=status, b=unit kind.
`primary` is 1 in exactly one partition per event: that copy is counted in the metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
import zlib
from collections import deque

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError
from aiokafka.structs import TopicPartition

from zonewatch import contract
from zonewatch.config import Settings
from zonewatch.contract import KIND_ALERT, KIND_CALL, KIND_GPS, Rejected
from zonewatch.security import aiokafka_kwargs

from . import metrics
from .incidents import ARRIVAL_RADIUS_M, CORROBORATION_RADIUS_M, HomeCells
from .zone_index import ZoneIndex

log = logging.getLogger("zonewatch.ingest")

MAX_RECORDS = 5000
MAX_PENDING_COMMITS = 8
LINGER_BELOW = 2000  # batches smaller than this wait ZONEWATCH_INGEST_LINGER_MS for more
ALIGN_MS = 30_000  # how far (event time) one input partition may read ahead of the slowest
#: bytes per zone-events message (the producer's batch size; a record is at most ~25 KB)
MAX_PAYLOAD_BYTES = 1 << 20


def zone_partition(zone_id: str, partitions: int) -> int:
    """Stable zone -> partition of the zone-events topic (same in every worker and language)."""
    return zlib.crc32(zone_id.encode()) % partitions


def id_partition(event_id: str, partitions: int) -> int:
    return zlib.crc32(event_id.encode()) % partitions


class Router:
    """Pure part of the stage: raw messages in, per-partition record lists and dead letters out."""

    def __init__(self, settings: Settings, index: ZoneIndex):
        self.s = settings
        self.index = index
        self.n = settings.partitions
        self.zone_part = {zid: zone_partition(zid, self.n) for zid in index.zones}
        # unit -> (ts of its latest fix seen here, partitions that fix was sent to). A new fix
        # also goes to the partitions of the previous one so they learn the unit left. After a
        # restart this map is empty, and a unit's first fix is sent to every partition.
        self.units: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.all_parts = tuple(range(self.n))
        self.clock = 0
        names = {settings.topic(t): t for t in contract.INPUT_TOPICS}
        self.base_topic = names  # prefixed name -> contract name
        self.homes = HomeCells(self.n)
        self.tp_ts: dict[tuple[str, int], int] = {}  # (topic, partition) -> ts of its last valid event
        # unit -> (ts, lat, lon, status, kind) of its latest fix, to restore Redis after a loss
        self.positions: dict[str, tuple] = {}
        # No secret configured: the number is dropped, not hashed with a guessable key.
        self.secret = settings.caller_secret.encode("utf-8") if settings.caller_secret else b""

    def route(self, messages) -> tuple[dict[int, list], list, dict, dict]:
        """messages: iterable of aiokafka ConsumerRecord (topic, partition, offset, key, value, timestamp).

        Returns (records by partition, dead letters, rejected counts by source, latest unit fixes).
        """
        out: dict[int, list] = {}
        dead = []
        rejected: dict[str, int] = {}
        units_latest: dict[str, tuple] = {}
        max_ts = int(time.time() * 1000) + self.s.future_tolerance_ms
        lookup = self.index.lookup_cell
        zone_part = self.zone_part
        homes = self.homes
        n = self.n
        clock = self.clock
        tp_ts = self.tp_ts
        for m in messages:
            topic = self.base_topic[m.topic]
            try:
                ev = contract.decode_and_validate(topic, m.value, max_ts)
            except Rejected as exc:
                src = contract.SOURCE_OF_TOPIC[topic]
                rejected[src] = rejected.get(src, 0) + 1
                dead.append((m, exc.reason))
                continue
            ts = ev["ts"]
            if ts > clock:
                clock = ts
            tp_ts[m.topic, m.partition] = ts
            lat, lon = ev["lat"], ev["lon"]
            cell, zones = lookup(lat, lon)
            kind = contract.KIND_OF_TOPIC[topic]
            kts = m.timestamp
            if kind == KIND_CALL:
                eid, a, b = ev["call_id"], ev["category"], ev["priority"]
                # incidents stage: the call, enriched as far as ingest can, to its home partition
                record = self.enriched_base(ev, zones)
                inc = ["C", eid, ts, list(zones), 0, kts, record, cell]
                _append(out, homes.own(cell), inc)
            elif kind == KIND_ALERT:
                eid, a, b = ev["alert_id"], ev["type"], ev["severity"]
                inc = ["A", eid, ts, (), 0, kts, (lat, lon, a), cell]
                for p in homes.within(cell, CORROBORATION_RADIUS_M):
                    _append(out, p, inc)
            else:
                eid, a, b = ev["unit_id"], ev["status"], ev["kind"]
                inc = ["F", eid, ts, (), 0, kts, (lat, lon, a, b), cell]
                for p in homes.within(cell, ARRIVAL_RADIUS_M):
                    _append(out, p, inc)
            by_part: dict[int, list[str]] = {}
            for zid in zones:
                p = zone_part[zid]
                lst = by_part.get(p)
                if lst is None:
                    by_part[p] = [zid]
                else:
                    lst.append(zid)
            primary = zone_part[zones[0]] if zones else id_partition(eid, n)
            if primary not in by_part:
                by_part[primary] = []
            if kind == KIND_GPS:
                prev = self.units.get(eid)
                if prev is None or ts > prev[0]:
                    targets = tuple(by_part)
                    self.units[eid] = (ts, targets)
                    for p in (self.all_parts if prev is None else prev[1]):
                        if p not in by_part:
                            by_part[p] = []
                    units_latest[eid] = self.positions[eid] = (ts, lat, lon, a, b)
            for p, zl in by_part.items():
                _append(out, p, [kind, eid, ts, zl, 1 if p == primary else 0, kts, a, b])
        if clock > self.clock:
            self.clock = clock
            # Everyone needs the clock, even partitions without events in this batch.
            for p in self.all_parts:
                out.setdefault(p, [])
        return out, dead, rejected, units_latest

    def enriched_base(self, call: dict, zones: tuple) -> dict:
        """The `incidents.enriched` record as far as ingest knows it; `caller` never leaves here."""
        rec = {k: v for k, v in call.items() if k != "caller"}
        caller = call.get("caller")
        if caller is not None and self.secret:
            rec["caller_ref"] = caller_ref(caller, self.secret)
        rec["zones"] = list(zones)
        rec["ring"] = self.index.innermost_ring(zones)
        rec["nearest_units"] = []
        rec["corroborating_alerts"] = []
        return rec


# The key, also with any of its letters written as a JSON \u escape ("call\u0065r" is "caller").
_CALLER_KEY = b"".join(b"(?:" + bytes([c]) + b"|\\\\u00" + f"{c:02x}".encode().replace(b"c", b"[cC]") + b")"
                       for c in b"caller")
# a quoted value, or an unterminated one running to the end of a cut message; or a wrongly typed
# one: a bare word or number, or a list / object up to its first closing bracket (that holds
# its first scalar)
_CALLER_FIELD = re.compile(rb'"' + _CALLER_KEY + rb'"\s*:\s*(?:"((?:[^"\\]|\\.)*)(?:"|$)'
                           rb'|([^\s"\[{,}\]][^,}\]]*|\[[^\]]*\]?|\{[^}]*\}?))')


def redact_callers(raw: bytes, secret: bytes) -> bytes:
    """Replace every `"caller": ...` in a raw (possibly broken) message by its `caller_ref`,
    so rejected calls do not carry phone numbers into the dead-letter topic (CONTRACT §6)."""
    if b"caller" not in raw and b"\\u00" not in raw:
        return raw

    def sub(m: re.Match) -> bytes:
        if not secret:
            return b'"caller_ref":null'
        number = (m.group(1) if m.group(1) is not None else m.group(2)).decode("utf-8", "replace")
        return b'"caller_ref":"' + caller_ref(number, secret).encode() + b'"'

    return _CALLER_FIELD.sub(sub, raw)


def zone_event_payloads(recs: list, clock: int, prev_clock: int, limit: int = MAX_PAYLOAD_BYTES) -> list[bytes]:
    """The zone-events messages for one partition's records of a batch: one, or several of at
    most `limit` bytes when the batch is bigger (5000 maximal valid calls are ~120 MB, beyond
    any request size). All but the last carry `prev_clock`, which every partition already has:
    the state stage applies a message's events before its clock, so splitting changes nothing."""
    payload = orjson.dumps({"clock": clock, "ev": recs})
    if len(payload) <= limit or len(recs) <= 1:
        return [payload]
    n = max(1, len(recs) * limit * 9 // (10 * len(payload)))
    parts = [recs[i:i + n] for i in range(0, len(recs), n)]
    out = []
    for j, part in enumerate(parts):
        out.extend(zone_event_payloads(part, clock if j == len(parts) - 1 else prev_clock, prev_clock, limit))
    return out


def deadletter_key(key: bytes | None) -> bytes | None:
    """The original key, or null when it is larger than the dead-letter raw limit: a multi-MB
    key would make the broker refuse the dead letter (and stop ingest)."""
    return key if key is None or len(key) <= contract.DEADLETTER_RAW_LIMIT else None


def caller_ref(number: str, secret: bytes) -> str:
    """CONTRACT §6: HMAC-SHA256 of the caller's number under the configured secret, 16 hex chars."""
    return hmac.new(secret, number.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def _append(out: dict, p: int, rec: list) -> None:
    lst = out.get(p)
    if lst is None:
        out[p] = [rec]
    else:
        lst.append(rec)


class IngestStage:
    """Consumer group `{app_id}-ingest` over the three input topics."""

    def __init__(self, settings: Settings, index: ZoneIndex, redis, producer: AIOKafkaProducer):
        self.s = settings
        self.router = Router(settings, index)
        self.redis = redis
        self.producer = producer
        self.consumer: AIOKafkaConsumer | None = None
        self.paused: set = set()
        self.linger_s = settings.ingest_linger_ms / 1000.0
        self._commits: deque = deque()
        self.events_in = 0

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            *[self.s.topic(t) for t in contract.INPUT_TOPICS],
            bootstrap_servers=self.s.kafka,
            group_id=f"{self.s.app_id}-ingest",
            client_id=f"{self.s.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=10_000,  # see streams/app.py: recover quickly after a broker restart
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **aiokafka_kwargs(self.s),
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def run(self) -> None:
        consumer = self.consumer
        dl_topic = self.s.topic(contract.DEADLETTER)
        ze_topic = self.s.internal_zone_events
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=MAX_RECORDS)
            if not batches:
                continue
            if sum(len(r) for r in batches.values()) < LINGER_BELOW:
                # A live stream arrives a few events at a time: wait a moment for more, since each
                # batch costs the same messages, Redis calls and commits however small it is.
                await asyncio.sleep(self.linger_s)
                more = await consumer.getmany(timeout_ms=0, max_records=MAX_RECORDS)
                for tp, recs in more.items():
                    batches[tp] = batches.get(tp, []) + recs
            msgs = [m for recs in batches.values() for m in recs]
            self.events_in += len(msgs)
            prev_clock = self.router.clock
            out, dead, rejected, positions = self.router.route(msgs)
            clock = self.router.clock
            futures = []
            for p, recs in out.items():
                for payload in zone_event_payloads(recs, clock, prev_clock):
                    futures.append(await self.producer.send(ze_topic, payload, partition=p))
            for m, reason in dead:
                base = self.router.base_topic[m.topic]
                raw = redact_callers(m.value, self.router.secret) if m.value else m.value
                value = contract.deadletter_record(m.topic, m.partition, m.offset, reason, raw)
                futures.append(await self.producer.send(dl_topic, value, key=deadletter_key(m.key)))
                metrics.DEADLETTERS.labels(contract.SOURCE_OF_TOPIC[base], metrics.reason_class(reason)).inc()
            for src, n in rejected.items():
                metrics.EVENTS.labels(src, "rejected").inc(n)
            if positions:
                await self._write_positions(positions)
            # Commit once Kafka has the batch's outputs, without holding up the next batch;
            # commits stay in order (each waits for the one before).
            offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
            self._commits.append(asyncio.ensure_future(
                self._commit_when_sent(self._commits[-1] if self._commits else None, futures, offsets)))
            while len(self._commits) > MAX_PENDING_COMMITS or (self._commits and self._commits[0].done()):
                await self._commits.popleft()  # re-raises a failed send: the worker stops, loudly
            await self._align()

    async def _commit_when_sent(self, previous, futures, offsets) -> None:
        if previous is not None:
            await previous
        if futures:
            await asyncio.gather(*futures)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # partitions moved to another worker, which resumes from the last commit
            log.info("ingest commit skipped after a rebalance: %s", exc)

    async def _align(self) -> None:
        """Event-time alignment: pause input partitions that run more than ALIGN_MS of event
        time ahead of the slowest partition that still has a backlog, resume them when it
        catches up. Without it a backlog (a restart, a replay) is read one topic after another,
        the stream clock jumps to the end of the fastest topic, and calls would be consumed
        "late" (after the grace) only because of read order."""
        consumer = self.consumer
        assigned = consumer.assignment()
        self.paused &= assigned  # a rebalance may have taken paused partitions away
        if not assigned:
            return
        behind = {}
        for tp in assigned:
            ts = self.router.tp_ts.get((tp.topic, tp.partition))
            hw = consumer.highwater(tp)
            if ts is None or hw is None:
                continue
            if await consumer.position(tp) < hw:
                behind[tp] = ts
        if not behind:
            if self.paused:
                consumer.resume(*self.paused)
                self.paused = set()
            return
        frontier = min(behind.values())
        ahead = {tp for tp in assigned
                 if self.router.tp_ts.get((tp.topic, tp.partition), frontier) > frontier + ALIGN_MS}
        if ahead != self.paused:
            if self.paused - ahead:
                consumer.resume(*(self.paused - ahead))
            if ahead - self.paused:
                consumer.pause(*(ahead - self.paused))
            self.paused = ahead

    async def restore_positions(self) -> int:
        """Rewrite every unit position this ingest knows (after Redis lost its data)."""
        await self._write_positions(dict(self.router.positions))
        return len(self.router.positions)

    async def _write_positions(self, latest: dict) -> None:
        """Latest unit fixes into Redis: `zw:units` (CONTRACT §3), plus `zw:units:available` (a GEO
        set of available units, the spatial index of dispatch recommendations) and the hash
        `zw:unit-info` (unit -> {ts, status, kind, lat, lon})."""
        geo, avail, gone, info = [], [], [], {}
        for unit, (ts, lat, lon, status, kind) in latest.items():
            if -85.05112878 <= lat <= 85.05112878:  # Redis GEO's Web Mercator limit
                geo.extend((lon, lat, unit))
                if status == "available":
                    avail.extend((lon, lat, unit))
                else:
                    gone.append(unit)
            info[unit] = orjson.dumps({"ts": ts, "status": status, "kind": kind, "lat": lat, "lon": lon})
        pipe = self.redis.pipeline(transaction=False)
        if geo:
            pipe.geoadd("zw:units", geo)
        if avail:
            pipe.geoadd("zw:units:available", avail)
        if gone:
            pipe.zrem("zw:units:available", *gone)
        pipe.hset("zw:unit-info", mapping=info)
        try:
            await pipe.execute()
        except Exception as exc:  # Redis down must not stop ingest; positions refresh with the next fix
            metrics.REDIS_ERRORS.inc()
            log.warning("unit positions update failed: %s", exc)


def assigned(consumer: AIOKafkaConsumer) -> set[TopicPartition]:
    return set(consumer.assignment())
