"""The zonewatch worker's topology, top to bottom. Each stage is a module of its own.

    calls.110 ─┐  ingest (task; aiokafka batches,       ┌─► {prefix}{app_id}-zone-events ──┐
    patrol.gps ├─► group {app_id}-ingest): validate ────┤    (partitioned by zone / by    │
    camera.alerts┘  ─► H3 cell ─► zones ─► partitions   │     geo cell; one msg = a batch)│
                    │ (routing.py, partitioning.py)     │                                  │
                    ├─► ingest.deadletter               │                                  ▼
                    └─► zw:units, zw:units:available,   │   zone_state (task; ownership.py, group {app_id}):
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

Both stages read Kafka with aiokafka consumers of their own; what a zone-events partition decides
is written by its owner's transactional producer (kafka_fence.py). Faust is the app around them (its
web server, timers and tasks), and `--role ingest|state` runs one stage per process: `TOPOLOGY`
below is what each process runs, `Worker` the stages and one method per step.
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
from typing import TYPE_CHECKING, NamedTuple, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.app.base import BootStrategy

from contract import redisurl
from contract.kafka_settings import aiokafka_kwargs, faust_broker_credentials, faust_broker_url
from contract.settings import Settings
from contract.topics import SNAPSHOT_MAX_BYTES
from contract.zones import load_zones

from . import geocache, metrics, recovery
from .dispatch import Dispatcher
from .health import probe_forever
from .ingest import IngestStage
from .kafka_fence import KafkaFence
from .outputs import OutputSender
from .ownership import OwnedPartitions
from .rules import load_rules
from .state_stage import StateStage
from .store import RedisStore, until_redis_answers

log = logging.getLogger("zonewatch.worker")

if TYPE_CHECKING:
    class _App(faust.App):
        """The app with the handles create_app hangs on it (for tests, the CLI and the timers)."""
        zonewatch_stage: StateStage
        zonewatch_ingest: IngestStage | None
        zonewatch_owned: OwnedPartitions

IDLE_FLUSH_S = 0.25
TICK_S = 0.25
LAG_S = 5.0
DAILY_S = 10.0
FORGET_S = 300.0
REDIS_TIMEOUT_S = 5.0   # a hung Redis (SIGSTOP) must not block the worker forever


class WorkerBoot(BootStrategy):
    """Faust without its consumer, conductor and table manager: the state stage reads zone-events
    with a consumer of its own (streams/ownership.py) and zonewatch declares no Faust table, so
    Faust is the app around it (producer, web server, timers, tasks) and joins no group."""

    enable_kafka_consumer = False

    def tables(self):
        return []


class WorkerApp(faust.App):
    BootStrategy = WorkerBoot


ROLES = ("all", "ingest", "state")
INGEST_ROLES, STATE_ROLES = ("all", "ingest"), ("all", "state")


class Step(NamedTuple):
    """One entry of the topology: a `Worker` method, run for the process's life (`every_s` None) or
    every `every_s` seconds, in the processes of `roles`."""
    method: str
    every_s: float | None
    roles: tuple[str, ...]
    why: str


#: What a worker process runs, by role (`zonewatch worker --role`): one look shows the whole of it.
TOPOLOGY = (
    Step("ingest", None, INGEST_ROLES, "stage 1: input topics -> zone-events (ingest.py)"),
    Step("forget", FORGET_S, INGEST_ROLES, "units and cameras silent for ZONEWATCH_UNIT_FORGET_S leave"),
    Step("zone_state", None, STATE_ROLES, "stage 2: zone-events -> partition states -> outputs (ownership.py)"),
    Step("flusher", None, STATE_ROLES, "stage 3: states -> Redis and zones.state (state_stage.py)"),
    Step("tick", TICK_S, STATE_ROLES, "outputs decided between batches, zones.daily, snapshots"),
    Step("lag", LAG_S, ROLES, "zonewatch_consumer_lag of whichever groups this process has"),
)


def create_app(settings: Settings, web_port: int = 6066, web_bind: str = "127.0.0.1", role: str = "all") -> faust.App:
    """Build the Faust app for these settings (zones are loaded and indexed here). `role` runs both
    stages in one process (all), or one of them: an ingest process and a state process use two
    cores and no longer share one event loop (`zonewatch worker --role`)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    load_rules(settings.rules)  # a bad rules file is refused before anything starts
    zones = load_zones(settings.zones, id_property=settings.zone_id_property)
    datadir = os.environ.get("ZONEWATCH_DATADIR", os.path.join(".zonewatch", settings.app_id))
    os.makedirs(datadir, exist_ok=True)
    app = cast("_App", WorkerApp(
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
        # after a broker restart a topic can look missing for a moment; refresh metadata often so
        # the partitions come back in seconds rather than after the 5-minute default
        producer_metadata_max_age_ms=10_000,
    ))
    worker = Worker(settings, app, zones, datadir, role)
    for step in TOPOLOGY:
        if role in step.roles:
            method = getattr(worker, step.method)
            if step.every_s is None:
                app.task(method)
            else:
                app.timer(step.every_s)(method)

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(metrics.render(), content_type="text/plain")

    return app


class Worker:
    """The stages of one process and the steps of TOPOLOGY that run them."""

    def __init__(self, settings: Settings, app: _App, zones: list, datadir: str, role: str):
        self.settings, self.app = settings, app
        self.zone_ids = [z.zone_id for z in zones]
        self.ingesting, self.stating = role in INGEST_ROLES, role in STATE_ROLES
        # the zone index and the reach cells, from the data folder when a previous start saved them
        self.index, self.reach_cells = geocache.prepare(
            zones, settings.h3_resolution,
            geocache.cache_path(datadir, settings.zones, settings.h3_resolution, settings.zone_id_property))
        self.redis = redisurl.async_client(settings.redis, socket_timeout=REDIS_TIMEOUT_S,
                                           socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=10)
        self.store = RedisStore(self.redis)
        self.stage = StateStage(settings, zones, self.store, reach_cells=self.reach_cells)
        # each partition's Kafka writes by its owner alone, one transactional producer each (kafka_fence.py)
        self.fence = KafkaFence(settings, self.store.owns)
        self.owned = OwnedPartitions(settings, self.stage, OutputSender(settings, Dispatcher(settings, self.store),
                                                                         self.fence))
        self.stage.on_written = self.owned.zone_states   # zones.state, per partition behind its outputs
        self.daily_last = 0.0
        app.zonewatch_stage, app.zonewatch_owned, app.zonewatch_ingest = self.stage, self.owned, None  # tests, CLI
        metrics.set_build_info()
        metrics.watch_gc()

    async def ingest(self) -> None:
        """Stage 1: input topics -> zone-events, with a plain aiokafka consumer (ingest.py)."""
        settings = self.settings
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all",
                                    enable_idempotence=True, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=8 << 20,
                                    client_id=f"{settings.app_id}-ingest", **aiokafka_kwargs(settings))
        await producer.start()
        st = IngestStage(settings, self.index, self.store, producer, self.reach_cells)
        await st.start()
        self.app.zonewatch_ingest = st
        probe = asyncio.ensure_future(probe_forever(producer.client, self.redis))
        try:
            await st.run()
        finally:
            probe.cancel()
            await st.stop()
            await producer.stop()

    async def zone_state(self) -> None:
        """Stage 2: zone-events -> per-partition state -> outputs and the arrival loop."""
        owned = self.owned
        await owned.start()
        # an ingest of the same process probes the dependencies already
        probe = None if self.ingesting else asyncio.ensure_future(probe_forever(owned.consumer._client, self.redis))
        try:
            await owned.run()
        finally:
            if probe is not None:
                probe.cancel()
            await owned.stop()

    async def tick(self) -> None:
        """Outputs decided since the last batch, zones.daily, snapshots (the watermark itself moves
        only with the batches: streams/watermark.py)."""
        stage, owned = self.stage, self.owned
        for p in stage.tick():
            held = stage.held.get(p)
            if held is not None:
                owned.emit(p, held.state)
        if time.monotonic() - self.daily_last >= DAILY_S:  # zones.daily, at most every DAILY_S per zone-day
            self.daily_last = time.monotonic()
            for p, held in list(stage.held.items()):
                if held.generation:
                    docs = held.state.daily_docs(self.settings.grace_ms)
                    if docs:
                        owned.queue_daily(p, docs)
        # quiet partitions too; at most one a tick, so snapshots of several partitions do not
        # stall the loop together
        due = [p for p in stage.held if stage.snapshot_due(p)]
        if due:
            owned.queue_snapshot(due[0])
        metrics.observe_clocks(stage)

    async def flusher(self) -> None:
        """Stage 3: states -> Redis (store.py) and zones.state.

        Woken by the state stage as soon as a batch changed something, it writes at once unless the
        last write started less than ZONEWATCH_FLUSH_MS ago: the write itself and that minimum gap
        are what coalesce events under load, and an event arriving on a quiet stream waits for
        neither. Without input it still runs every IDLE_FLUSH_S so clock-only refreshes happen."""
        stage, store = self.stage, self.store
        # Redis may be down at start: wait for it rather than crash the worker
        await until_redis_answers("register the zones", lambda: store.register_zones(self.zone_ids))
        gap = self.settings.flush_interval_ms / 1000.0
        last_check = last_start = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(stage.wake.wait(), IDLE_FLUSH_S)
            except TimeoutError:
                pass
            wait = last_start + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - last_check >= recovery.REDIS_CHECK_S:
                last_check = time.monotonic()
                await recovery.restore_if_redis_lost(stage, store, self.zone_ids, self.app.zonewatch_ingest, self.fence)
            stage.wake.clear()
            last_start = time.monotonic()
            try:
                await stage.flush()
            except Exception:
                log.exception("flush failed")

    async def lag(self) -> None:
        """zonewatch_consumer_lag: how far each group of this worker is behind the log ends."""
        settings = self.settings
        state_group, ingest_group = settings.app_id, f"{settings.app_id}-ingest"
        by: dict[tuple[str, str], int] = {}
        if self.stating:
            by[(state_group, settings.internal_zone_events)] = await self.owned.lag()
        ing = self.app.zonewatch_ingest
        if ing is not None:
            for (topic, n) in (await ing.lag()).items():
                by[(ingest_group, topic)] = n
        for (group, topic), n in by.items():
            metrics.CONSUMER_LAG.labels(group, topic).set(n)

    async def forget(self) -> None:
        """Units (and cameras) silent for ZONEWATCH_UNIT_FORGET_S leave Redis and ingest's memory."""
        ing = self.app.zonewatch_ingest
        if ing is None or not ing.router.clock:
            return
        try:
            before, n = await ing.forget_silent()
        except Exception as exc:  # Redis down: the next round does it
            log.warning("forgetting silent units failed: %s", exc)
            return
        if n:
            log.info("forgot %d units silent since before %d", n, before)
