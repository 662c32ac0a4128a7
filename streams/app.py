"""The zonewatch worker: the whole topology in one place.

    calls.110 ─┐                         (ingest.py: aiokafka batches, group {app_id}-ingest)
    patrol.gps ├─► validate/normalise ─► zone lookup ─► {app_id}-zone-events   (partitioned by zone,
    camera.alerts┘        │                                     │               one message = many events)
                          └─► ingest.deadletter                 ▼
                                                  zone_state agent (Faust, group {app_id})
                                                  PartitionState per assigned partition
                                                                │  every ZONEWATCH_FLUSH_MS
                                                                ▼
                                          state_writer: SET zw:zone:{id} + XADD zw:zone-updates
                                                        + PUBLISH zw:zone:{id}   (one pipeline)
                                                        + HSET/HDEL zw:incidents + XADD
                                                          zw:incident-updates   (the wall's list)

Topic schemas: input topics and ingest.deadletter are CONTRACT §1/§4 (validated by
zonewatch/contract.py); the zone-events record layout is documented in streams/ingest.py.

State durability: a partition's state is a pure function of its zone-events log, so when a
worker is assigned a partition it rebuilds that state by reading the partition from the start
(retention 27 h) up to the first offset it is handed, then continues. Faust commits offsets
after processing (at-least-once); PartitionState de-duplicates by event id, so re-delivery
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import faust
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from zonewatch import contract
from zonewatch.config import Settings
from zonewatch.contract import KIND_ALERT, KIND_CALL
from zonewatch.security import aiokafka_kwargs, faust_broker_credentials, faust_broker_url

from . import metrics
from .health import probe_forever
from .incidents import eta_s
from .ingest import IngestStage, zone_partition
from .rules import load_rules
from .state_writer import ZONES_SET, StateWriter
from .zone_index import ZoneIndex, load_zones
from .zone_state import KIND_ARRIVAL, KTS, PRIMARY, TS, ZONES, K, PartitionState

log = logging.getLogger("zonewatch.worker")

HEARTBEAT_S = 10.0
IDLE_FLUSH_S = 0.25
REDIS_CHECK_S = 2.0
RECOMMEND_RADIUS_M = 20_000
RECOMMEND_CANDIDATES = 10
SOURCE_OF_KIND = {KIND_CALL: "calls", KIND_ALERT: "alerts", "g": "gps"}


async def until_redis_answers(what: str, call):
    """await call() until Redis answers, counting and logging each failure. Used where the
    agent or the flusher cannot go on without Redis: crashing the agent would make Faust skip
    the batch being processed, so it waits (the batch is not acknowledged meanwhile)."""
    while True:
        try:
            return await call()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("cannot %s in Redis (%s); retrying", what, exc)
            await asyncio.sleep(1.0)


class ZoneStateStage:
    """Holds the PartitionState of every assigned zone-events partition and flushes them."""

    def __init__(self, settings: Settings, zones, writer: StateWriter):
        self.s = settings
        self.rules = load_rules(settings.rules)
        self.writer = writer
        self.zones_of: dict[int, list] = {p: [] for p in range(settings.partitions)}
        for z in zones:
            self.zones_of[zone_partition(z.zone_id, settings.partitions)].append(z)
        self.states: dict[int, PartitionState] = {}
        self.flushed_clock: dict[int, int] = {}
        self.last_heartbeat: dict[int, float] = {}
        self.pending_e2e: dict[str, list[float]] = {"calls": [], "gps": [], "alerts": []}
        self.events_applied = 0
        self.pending_board: list[dict] = []   # incident entries not held by any state
        self.wake = asyncio.Event()

    def new_state(self, p: int) -> PartitionState:
        return PartitionState(self.zones_of[p], tz=self.s.tz, rules=self.rules,
                              unit_stale_ms=self.s.unit_stale_ms)

    def apply_batch(self, st: PartitionState, value: bytes, live: bool = True) -> None:
        batch = orjson.loads(value)
        recs = batch["ev"]
        if not live:
            for rec in recs:
                st.apply(rec)
            st.advance_clock(batch["clock"])
            return
        counts: dict[tuple[str, str], int] = {}
        ages: dict[str, list[float]] = {}
        pending = self.pending_e2e
        clock = max(st.clock, batch["clock"])
        for rec in recs:
            fresh = st.apply(rec)
            if rec[PRIMARY]:
                src = SOURCE_OF_KIND[rec[K]]
                key = (src, "accepted" if fresh else "duplicate")
                counts[key] = counts.get(key, 0) + 1
                if fresh:
                    ages.setdefault(src, []).append((clock - rec[TS]) / 1000.0)
            if fresh and rec[PRIMARY] and rec[ZONES]:  # one observation per event, not per copy
                pending[SOURCE_OF_KIND[rec[K]]].append(rec[KTS])
        st.advance_clock(batch["clock"])
        self.events_applied += len(recs)
        self.wake.set()
        for (src, outcome), n in counts.items():
            metrics.EVENTS.labels(src, outcome).inc(n)
        for src, vals in ages.items():
            metrics.observe_many(metrics.AGE.labels(src), vals)

    def take_outputs(self, st: PartitionState) -> tuple[list, list, dict[int, list]]:
        """What the incidents stage of a partition decided since the last call: enriched
        records, SLA events, and arrival records for the zone partitions of each call's zones."""
        enriched, sla, arrivals = [], [], {}
        for what, item in st.incidents.take_output():
            if what == "enriched":
                enriched.append(item)
            elif what == "sla":
                sla.append(item)
            else:
                call_id, call_ts, zones, response_s, unit = item
                by_part: dict[int, list] = {}
                for zid in zones:
                    by_part.setdefault(zone_partition(zid, self.s.partitions), []).append(zid)
                for q, zl in by_part.items():
                    arrivals.setdefault(q, []).append([KIND_ARRIVAL, call_id, call_ts, zl, 0, 0, response_s, unit])
        return enriched, sla, arrivals

    async def rebuild(self, p: int, upto: int) -> PartitionState:
        """State of partition p from its log up to (excluding) offset `upto`."""
        st = self.new_state(p)
        # versions must keep increasing across owners, so they come from Redis
        versions = await until_redis_answers(f"read the zone versions of partition {p}",
                                             lambda: self.writer.current_versions(st.zones))
        for zid, v in versions.items():
            st.zones[zid].version = v
        started = time.monotonic()
        replayed = 0
        if upto > 0:
            tp = TopicPartition(self.s.internal_zone_events, p)
            c = AIOKafkaConsumer(bootstrap_servers=self.s.kafka, enable_auto_commit=False,
                                 group_id=None, client_id=f"{self.s.app_id}-rebuild",
                                 max_partition_fetch_bytes=8 << 20, **aiokafka_kwargs(self.s))
            await c.start()
            try:
                c.assign([tp])
                await c.seek_to_beginning(tp)
                while await c.position(tp) < upto:
                    got = await c.getmany(tp, timeout_ms=1000, max_records=2000)
                    for m in got.get(tp, ()):
                        if m.offset >= upto:
                            break
                        self.apply_batch(st, m.value, live=False)
                        st.incidents.take_output()  # already emitted by the previous owner
                        replayed += 1
            finally:
                await c.stop()
        st.dirty.clear()
        await self.reconcile_incidents(p, st)
        log.info("partition %d: state rebuilt from %d batches in %.2fs (clock %d)",
                 p, replayed, time.monotonic() - started, st.clock)
        return st

    async def reconcile_incidents(self, p: int, st: PartitionState) -> None:
        """Make zw:incidents agree with the rebuilt state of partition p: a previous owner may have
        died between deciding an arrival and writing it. Open incidents are rewritten (keeping
        the dispatch recommendations Redis has: they are not in the log), and entries of this
        partition that are no longer open are closed."""
        st.incidents.take_board()  # the replay's changes; the state itself is what counts
        existing = await until_redis_answers(f"read zw:incidents for partition {p}", self.writer.open_incidents)
        board = st.incidents.board
        for inc in st.incidents.open_incidents():
            old = existing.get(inc.call_id)
            if old and old.get("nearest_units") and not inc.record.get("nearest_units"):
                inc.record["nearest_units"] = old["nearest_units"]
            board[inc.call_id] = inc
        for cid, doc in existing.items():
            if doc.get("partition") != p or cid in board:
                continue
            inc = st.incidents.incidents.get(cid)
            if inc is not None:
                board[cid] = inc  # arrived meanwhile
            else:  # forgotten already: how it ended is no longer known here
                self.pending_board.append({**doc, "status": "closed", "clock": st.clock})

    def drop(self, partitions) -> None:
        for p in partitions:
            self.states.pop(p, None)
            self.flushed_clock.pop(p, None)
            self.last_heartbeat.pop(p, None)

    def rewrite_all(self) -> int:
        """Make the next flush write every zone of every held partition (Redis lost them)."""
        n = 0
        for st in self.states.values():
            for zid, agg in st.zones.items():
                agg.last_figures = None
                st.dirty.add(zid)
                n += 1
            for inc in st.incidents.open_incidents():
                st.incidents.board[inc.call_id] = inc
        self.wake.set()
        return n

    async def flush(self) -> None:
        docs, board = [], []
        now = time.monotonic()
        for p, st in list(self.states.items()):
            moved = st.clock != self.flushed_clock.get(p)
            # Clock-only rewrites (figures unchanged) when input pauses, and as a heartbeat for
            # wall displays at most every HEARTBEAT_S during a busy stream.
            heartbeat = now - self.last_heartbeat.get(p, 0.0) >= HEARTBEAT_S
            refresh = not moved or heartbeat
            if refresh:
                self.last_heartbeat[p] = now
            docs.extend(st.changed_documents(all_zones=moved, refresh_clock=refresh))
            self.flushed_clock[p] = st.clock
            changed = st.incidents.take_board()
            if changed:
                board.extend(st.incidents.board_doc(inc, p) for inc in changed.values())
        if self.pending_board:
            board.extend(self.pending_board)
            self.pending_board = []
        pending = self.pending_e2e
        self.pending_e2e = {"calls": [], "gps": [], "alerts": []}
        if not docs and not board:
            return
        encoded, ids = await self.writer.write(docs, board)
        now_ms = time.time() * 1000
        for src, kts in pending.items():
            if kts:
                metrics.observe_many(metrics.E2E.labels(src), [(now_ms - t) / 1000.0 for t in kts])
        if docs and self.writer.on_written is not None:
            await self.writer.on_written(encoded, ids)


def _watch(fut) -> None:
    """Log a failed delivery (the next commit's flush would otherwise hide it)."""
    def done(f):
        if not f.cancelled() and f.exception() is not None:
            metrics.OUTPUT_ERRORS.inc()
            log.error("output delivery failed: %s", f.exception())
    fut.add_done_callback(done)


class OutputSender:
    """incidents.enriched, sla.events, zones.state and arrival records for zone partitions."""

    def __init__(self, settings: Settings, app: faust.App, redis):
        self.s = settings
        self.app = app
        self.redis = redis
        self.t_incidents = settings.topic(contract.INCIDENTS)
        self.t_sla = settings.topic(contract.SLA)
        self.t_zones = settings.topic(contract.ZONES_STATE)

    async def send(self, enriched: list, sla: list, arrivals: dict, clock: int) -> None:
        """Queue the outputs of one batch on Faust's producer without waiting for the acks:
        Faust flushes its producer before it commits the offsets of the batch, so an output is
        acknowledged by Kafka before its input counts as processed (at-least-once), while the
        agent goes on with the next batch."""
        producer = self.app.producer
        new = [r for r in enriched if "processed_at" not in r]
        if new:
            await self.recommend(new)
        now = int(time.time() * 1000)
        for rec in enriched:
            rec["processed_at"] = now
            _watch(await producer.send(self.t_incidents, rec["call_id"].encode(), orjson.dumps(rec),
                                       None, None, None))
        for ev in sla:
            _watch(await producer.send(self.t_sla, ev["call_id"].encode(), orjson.dumps(ev), None, None, None))
        for q, recs in arrivals.items():
            _watch(await producer.send(self.s.internal_zone_events, None,
                                       orjson.dumps({"clock": clock, "ev": recs}), q, None, None))

    async def zone_states(self, docs: list[bytes], ids: list[str]) -> None:
        """The compacted `zones.state` topic: the same documents as Redis, key zone_id."""
        producer = self.app.producer
        for zid, js in zip(ids, docs):
            _watch(await producer.send(self.t_zones, zid.encode(), js, None, None, None))

    async def recommend(self, records: list[dict]) -> None:
        """Up to 3 nearest available units per call: GEOSEARCH over `zw:units:available`, a
        global index of live positions written by every worker's ingest, then freshness and kind
        from `zw:unit-info`."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for r in records:
                pipe.geosearch("zw:units:available", longitude=r["lon"], latitude=r["lat"],
                               radius=RECOMMEND_RADIUS_M, unit="m", sort="ASC", count=RECOMMEND_CANDIDATES,
                               withdist=True)
            found = await pipe.execute()
            units = sorted({u[0] for hits in found for u in hits})
            info = dict(zip(units, await self.redis.hmget("zw:unit-info", units))) if units else {}
        except Exception as exc:  # no recommendation beats no enriched record
            metrics.REDIS_ERRORS.inc()
            log.warning("dispatch recommendation failed: %s", exc)
            return
        for r, hits in zip(records, found):
            out = []
            for unit, dist in hits:
                raw = info.get(unit)
                if raw is None:
                    continue
                meta = orjson.loads(raw)
                if meta["status"] != "available" or meta["ts"] < r["ts"] - self.s.unit_stale_ms:
                    continue
                out.append({"unit_id": unit.decode(), "kind": meta["kind"], "distance_m": round(dist, 1),
                            "eta_s": eta_s(dist, meta["kind"])})
                if len(out) == 3:
                    break
            r["nearest_units"] = out


def create_app(settings: Settings, web_port: int = 6066) -> faust.App:
    """Build the Faust app for these settings (zones are loaded and indexed here)."""
    load_rules(settings.rules)  # a bad rules file is refused before anything starts
    zones = load_zones(settings.zones)
    index = ZoneIndex(zones, settings.h3_resolution)
    datadir = os.environ.get("ZONEWATCH_DATADIR", os.path.join(".zonewatch", settings.app_id))
    os.makedirs(datadir, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(settings), broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=web_port or 6066,
        web_enabled=web_port != 0,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=64,
        # after a broker restart a topic can look missing for a moment; refresh metadata often so
        # the partitions come back in seconds rather than after the 5-minute default
        consumer_metadata_max_age_ms=10_000,
        producer_metadata_max_age_ms=10_000,
    )
    zone_events = app.topic(settings.internal_zone_events, value_serializer="raw", key_serializer="raw",
                            partitions=settings.partitions)
    redis = aioredis.from_url(settings.redis)
    writer = StateWriter(redis)
    stage = ZoneStateStage(settings, zones, writer)
    app.zonewatch_stage = stage  # for tests and the CLI

    outputs = OutputSender(settings, app, redis)
    writer.on_written = outputs.zone_states

    @app.agent(zone_events)
    async def zone_state(stream):
        async for event in stream.events():
            msg = event.message
            p = msg.partition
            st = stage.states.get(p)
            if st is None:
                st = stage.states[p] = await stage.rebuild(p, msg.offset)
            stage.apply_batch(st, event.value)
            enriched, sla, arrivals = stage.take_outputs(st)
            if enriched or sla or arrivals:
                new = [r["call_id"] for r in enriched if "processed_at" not in r]
                await outputs.send(enriched, sla, arrivals, st.clock)
                for call_id in new:  # the wall shows the recommendations send() added
                    st.incidents.touch(call_id)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs):
        stage.drop(tp.partition for tp in revoked if tp.topic == settings.internal_zone_events)

    async def restore_if_redis_lost() -> None:
        """A Redis restart without persistence or a FLUSHDB loses the zone documents and unit
        positions; the worker holds both, so it writes them again (no replay needed)."""
        try:
            if await redis.exists(ZONES_SET):
                return
        except Exception:
            return  # Redis unreachable: the writer's retries report it
        try:
            await writer.register_zones([z.zone_id for z in zones])
        except Exception:
            return  # down again: the next check retries
        n_zones = stage.rewrite_all()
        ing = getattr(app, "zonewatch_ingest", None)
        n_units = await ing.restore_positions() if ing is not None else 0
        log.warning("Redis had lost the zone state (restart or flush): rewriting %d zones and %d unit "
                    "positions held by this worker", n_zones, n_units)

    @app.task
    async def flusher():
        # Woken by the agent as soon as a batch changed something; the write itself and a
        # minimum gap of ZONEWATCH_FLUSH_MS between writes are what coalesce events under load.
        # Without input it still runs every IDLE_FLUSH_S so clock-only refreshes happen.
        # Redis may be down at start: wait for it rather than crash the worker
        await until_redis_answers("register the zones", lambda: writer.register_zones([z.zone_id for z in zones]))
        gap = settings.flush_interval_ms / 1000.0
        last_check = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(stage.wake.wait(), IDLE_FLUSH_S)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() - last_check >= REDIS_CHECK_S:
                last_check = time.monotonic()
                await restore_if_redis_lost()
            stage.wake.clear()
            try:
                await stage.flush()
            except Exception:
                log.exception("flush failed")
            await asyncio.sleep(gap)

    @app.task
    async def ingest():
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=8 << 20,
                                    client_id=f"{settings.app_id}-ingest", **aiokafka_kwargs(settings))
        await producer.start()
        st = IngestStage(settings, index, redis, producer)
        await st.start()
        app.zonewatch_ingest = st
        probe = asyncio.ensure_future(probe_forever(producer.client, redis))
        try:
            await st.run()
        finally:
            probe.cancel()
            await st.stop()
            await producer.stop()

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(metrics.render(), content_type="text/plain")

    return app


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="run one Faust worker (start more for more throughput)")
    p.add_argument("--web-port", type=int, default=int(os.environ.get("ZONEWATCH_WEB_PORT", 6066)),
                   help="port of /metrics (default 6066)")
    p.add_argument("--kafka", help="bootstrap servers (default ZONEWATCH_KAFKA)")
    p.add_argument("--redis", help="Redis URL (default ZONEWATCH_REDIS)")
    p.add_argument("--zones", help="zones GeoJSON (default ZONEWATCH_ZONES, the bundled demo)")
    p.add_argument("--partitions", type=int, help="partitions of the internal zone-events topic")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from zonewatch.topics import ensure_topics

    s = Settings.from_env().with_(kafka=args.kafka, redis=args.redis,
                                  zones=Path(args.zones) if args.zones else None,
                                  partitions=args.partitions)
    s.check()
    load_rules(s.rules)   # refuse a bad rules or zones file before touching Kafka
    load_zones(s.zones)
    ensure_topics(s)
    app = create_app(s, web_port=args.web_port)
    sys.argv = ["zonewatch", "worker", "-l", args.loglevel, "--web-port", str(args.web_port),
                "--web-host", "127.0.0.1", "--web-bind", "127.0.0.1", "--without-web" if args.web_port == 0 else "--with-web"]
    app.main()
    return 0
