"""The zonewatch worker's topology, top to bottom. Each stage is a module of its own.

    calls.110 ─┐  ingest (task; aiokafka batches,       ┌─► {prefix}{app_id}-zone-events ──┐
    patrol.gps ├─► group {app_id}-ingest): validate ────┤    (partitioned by zone / by    │
    camera.alerts┘  ─► H3 cell ─► zones ─► partitions   │     geo cell; one msg = a batch)│
                    │ (routing.py, partitioning.py)     │                                  │
                    ├─► ingest.deadletter               │                                  ▼
                    └─► zw:units, zw:units:available,   │   zone_state agent (Faust, group {app_id}):
                        zw:unit-info (store.py)         │     per partition a PartitionState
                                                        │     (zone_state.py) holding the zones'
                           Arrival records ◄────────────┼──── counters and an IncidentState
                           (the arrival loop: the       │     (incidents.py); on assignment the
                           incidents stage tells the    │     state is rebuilt from the log
                           zones' partitions)           │     (recovery.py)
                                                        │          │             │
                  incidents.enriched, sla.events ◄──────┴──────────┘             │ flusher (task), every
                  (outputs.py; nearest units beyond the                          │ ZONEWATCH_FLUSH_MS:
                  exact reach: dispatch.py)                                      ▼
                                         store.py: SET zw:zone:{id} + XADD zw:zone-updates + PUBLISH,
                                         HSET/HDEL zw:incidents + XADD zw:incident-updates (one
                                         pipeline) ─► zones.state (compacted, outputs.py)

Every zone-events batch carries the patrol.gps marks and the ingest's wall time, and an ingest with
nothing to route sends a marks-only batch to every partition each second: each partition state's
watermark moves on those alone (watermark.py). Topic schemas: inputs and ingest.deadletter are
contract.events (CONTRACT §1, §4); zone-events is streams/records.py; the outputs are CONTRACT §4.
Redis keys are contract.keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.tables import TableManager

from contract import redisurl
from contract.security import aiokafka_kwargs, faust_broker_credentials, faust_broker_url
from contract.settings import Settings
from contract.topics import SNAPSHOT_MAX_BYTES
from contract.zones import load_zones

from . import geocache, metrics, recovery
from .dispatch import Dispatcher
from .health import probe_forever
from .ingest import IngestStage
from .outputs import OutputSender
from .rules import load_rules
from .state_stage import Held, StateStage
from .store import RedisStore, until_redis_answers

log = logging.getLogger("zonewatch.worker")

if TYPE_CHECKING:
    class _App(faust.App):
        """The app with the handles create_app hangs on it (for tests, the CLI and the timers)."""
        zonewatch_stage: StateStage
        zonewatch_ingest: IngestStage | None

IDLE_FLUSH_S = 0.25
TICK_S = 0.25
LAG_S = 5.0
DAILY_S = 10.0
FORGET_S = 300.0
REDIS_TIMEOUT_S = 5.0   # a hung Redis (SIGSTOP) must not block the worker forever


class NoTableWait(TableManager):
    """Faust's table manager without its 1 s sleep at start (left for tables declared late):
    zonewatch declares no Faust table (its state and snapshots are its own, streams/recovery.py),
    and the sleep came before the group join, so before every takeover of a (re)started worker."""

    async def on_start(self) -> None:
        if len(self):
            await super().on_start()
            return
        await self._update_channels()
        await self.recovery.start()


def create_app(settings: Settings, web_port: int = 6066, web_bind: str = "127.0.0.1") -> faust.App:
    """Build the Faust app for these settings (zones are loaded and indexed here)."""
    load_rules(settings.rules)  # a bad rules file is refused before anything starts
    zones = load_zones(settings.zones, id_property=settings.zone_id_property)
    zone_ids = [z.zone_id for z in zones]
    datadir = os.environ.get("ZONEWATCH_DATADIR", os.path.join(".zonewatch", settings.app_id))
    os.makedirs(datadir, exist_ok=True)
    # the zone index and the reach cells, from the data folder when a previous start saved them
    index, cells = geocache.prepare(zones, settings.h3_resolution,
                                    geocache.cache_path(datadir, settings.zones, settings.h3_resolution,
                                                        settings.zone_id_property))
    app = cast("_App", faust.App(
        settings.app_id,
        broker=faust_broker_url(settings), broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_host=web_bind if web_bind not in ("0.0.0.0", "::") else "127.0.0.1",
        web_bind=web_bind,
        web_port=web_port or 6066,
        web_enabled=web_port != 0,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # snapshots and split zone-events batches are up to several MB (the topics allow them)
        producer_max_request_size=SNAPSHOT_MAX_BYTES,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=64,
        # a dead worker's partitions move after the session timeout (6 s by default), or at once
        # to a restarted worker with the same ZONEWATCH_INSTANCE_ID (static membership)
        broker_session_timeout=settings.session_timeout_ms / 1000.0,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_ms / 6000.0),
        consumer_group_instance_id=settings.instance_id or None,
        # after a broker restart a topic can look missing for a moment; refresh metadata often so
        # the partitions come back in seconds rather than after the 5-minute default
        consumer_metadata_max_age_ms=10_000,
        producer_metadata_max_age_ms=10_000,
        TableManager=NoTableWait,
    ))

    # -- the topics and the stages ----------------------------------------------------------------
    zone_events = app.topic(settings.internal_zone_events, value_serializer="raw", key_serializer="raw",
                            partitions=settings.partitions)   # schema: streams/records.py
    redis = redisurl.async_client(settings.redis, socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=10)
    store = RedisStore(redis)
    stage = StateStage(settings, zones, store, reach_cells=cells)
    outputs = OutputSender(settings, app, Dispatcher(settings, store))
    stage.on_written = outputs.zone_states
    app.zonewatch_stage = stage  # for tests and the CLI
    metrics.set_build_info()
    metrics.watch_gc()
    app.zonewatch_ingest = None
    taking: dict[int, asyncio.Future] = {}   # partition -> takeover in progress or done

    async def emit(st) -> None:
        """Send what a partition's state decided, acknowledged; Arrival records loop back."""
        enriched, sla, arrivals = stage.take_outputs(st)
        fallback = st.incidents.take_fallback()
        if enriched or sla or arrivals:
            await outputs.send(enriched, sla, arrivals, st.clock, stage.last_wall, fallback)
            for call_id in fallback:  # the wall shows the units send() added from Redis
                st.incidents.touch(call_id)
        duty_events = stage.duty.records(st)   # duty.events (streams/duty.py), acknowledged too
        if duty_events:
            await outputs.deliver(duty_events)

    async def take_over(p: int) -> Held:
        while True:
            try:
                held = await recovery.restore(stage, p, emit)
                stage.held[p] = held
                stage.wake.set()
                return held
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking partition %d over failed; retrying", p)
                await asyncio.sleep(1.0)

    def fenced(partitions) -> None:
        """A write found these partitions owned by another worker. Still assigned them (the
        other writer was a zombie, or won a race after Redis lost the fences): take them over
        again, which fences it; otherwise they are gone."""
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.internal_zone_events}
        for p in partitions:
            taking.pop(p, None)
            if p in assigned:
                held_or_taking(p)

    stage.on_fenced = fenced

    def held_or_taking(p: int) -> asyncio.Future:
        fut = taking.get(p)
        if fut is None:
            fut = taking[p] = asyncio.ensure_future(take_over(p))
        return fut

    # -- stage 1: input topics -> zone-events (a plain aiokafka consumer, see ingest.py) -------
    @app.task
    async def ingest():
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=8 << 20,
                                    client_id=f"{settings.app_id}-ingest", **aiokafka_kwargs(settings))
        await producer.start()
        st = IngestStage(settings, index, store, producer, cells)
        await st.start()
        app.zonewatch_ingest = st
        probe = asyncio.ensure_future(probe_forever(producer.client, redis))
        try:
            await st.run()
        finally:
            probe.cancel()
            await st.stop()
            await producer.stop()

    # -- stage 2: zone-events -> per-partition state -> outputs and the arrival loop ------------
    @app.agent(zone_events)
    async def zone_state(stream):
        async for event in stream.events():
            msg = event.message
            p = msg.partition
            held = stage.held.get(p) or await held_or_taking(p)
            if stage.held.get(p) is not held or msg.offset < held.applied_upto:
                continue  # revoked meanwhile, or already in the restored state
            async with held.lock:
                stage.apply_batch(held.state, event.value)
                stage.applied(p, msg.offset)
                # arrivals go back into zone-events, to the partitions of the call's zones
                await emit(held.state)


    # faust types receivers as (sender, *args, signal=...); it calls them (app, assigned, signal=...)
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app_, assigned, **kwargs):
        # restore at once, not on the partition's first new message: the wall must be right
        # after a crash even while input is quiet
        for tp in assigned:
            if tp.topic == settings.internal_zone_events:
                held_or_taking(tp.partition)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # as above
    async def on_revoked(app_, revoked, **kwargs):
        gone = [tp.partition for tp in revoked if tp.topic == settings.internal_zone_events]
        for p in gone:
            fut = taking.pop(p, None)
            if fut is not None and not fut.done():
                fut.cancel()
        stage.drop(gone)

    daily_last = [0.0]

    @app.timer(TICK_S)
    async def tick():
        """Outputs decided since the last batch, zones.daily, snapshots (the watermark itself moves
        only with the batches: streams/watermark.py)."""
        for p in stage.tick():
            held = stage.held.get(p)
            if held is not None:
                async with held.lock:
                    await emit(held.state)
        if time.monotonic() - daily_last[0] >= DAILY_S:  # zones.daily, at most every DAILY_S per zone-day
            daily_last[0] = time.monotonic()
            for held in list(stage.held.values()):
                if not held.generation:
                    continue
                async with held.lock:
                    docs = held.state.daily_docs(settings.grace_ms)
                    if docs:
                        await outputs.daily(docs)
                        held.state.daily_taken(docs)
        # quiet partitions too; at most one a tick, so snapshots of several partitions do not
        # stall the loop together
        due = [p for p in stage.held if stage.snapshot_due(p)]
        if due:
            held = stage.held.get(due[0])
            if held is not None:
                async with held.lock:
                    await outputs.snapshot(due[0], stage.snapshot(due[0]))
        metrics.observe_clocks(stage)

    # -- stage 3: states -> Redis (store.py) and zones.state -------------------------------------
    @app.task
    async def flusher():
        # Woken by the agent as soon as a batch changed something; the write itself and a
        # minimum gap of ZONEWATCH_FLUSH_MS between writes are what coalesce events under load.
        # Without input it still runs every IDLE_FLUSH_S so clock-only refreshes happen.
        # Redis may be down at start: wait for it rather than crash the worker
        await until_redis_answers("register the zones", lambda: store.register_zones(zone_ids))
        gap = settings.flush_interval_ms / 1000.0
        last_check = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(stage.wake.wait(), IDLE_FLUSH_S)
            except TimeoutError:
                pass
            if time.monotonic() - last_check >= recovery.REDIS_CHECK_S:
                last_check = time.monotonic()
                await recovery.restore_if_redis_lost(stage, store, zone_ids, app.zonewatch_ingest)
            stage.wake.clear()
            try:
                await stage.flush()
            except Exception:
                log.exception("flush failed")
            await asyncio.sleep(gap)

    @app.timer(LAG_S)
    async def lag() -> None:
        """zonewatch_consumer_lag: how far each group of this worker is behind the log ends."""
        state_group, ingest_group = settings.app_id, f"{settings.app_id}-ingest"
        by: dict[tuple[str, str], int] = {}
        try:
            for tp in app.consumer.assignment():
                pos = await app.consumer.position(tp)
                if pos is not None:
                    key = (state_group, tp.topic)
                    by[key] = by.get(key, 0) + max(0, app.consumer.highwater(tp) - pos)
        except Exception:  # rebalancing: the next round reports
            pass
        ing = app.zonewatch_ingest
        if ing is not None:
            for (topic, n) in (await ing.lag()).items():
                by[(ingest_group, topic)] = n
        for (group, topic), n in by.items():
            metrics.CONSUMER_LAG.labels(group, topic).set(n)

    @app.timer(FORGET_S)
    async def forget():
        """Units (and cameras) silent for ZONEWATCH_UNIT_FORGET_S leave Redis and ingest's memory."""
        ing = app.zonewatch_ingest
        if ing is None or not ing.router.clock:
            return
        before = ing.router.clock - settings.unit_forget_ms
        ing.router.forget(before)
        try:
            n = await store.forget_units(before)
        except Exception as exc:  # Redis down: the next round does it
            log.warning("forgetting silent units failed: %s", exc)
            return
        if n:
            log.info("forgot %d units silent since before %d", n, before)

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(metrics.render(), content_type="text/plain")

    return app
