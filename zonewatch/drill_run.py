"""The drill's machinery (CONTRACT §11; docs/DRILL.md): the recorded input of a period, replayed at
full speed through isolated deployments on the live cluster, and what each of them wrote.

    recorded input   from the live input topics (offsets_for_times, then read forward), or a JSONL
                     file of §1 records with a `topic` field; kept as the raw values, in `ts` order
    Isolated         one deployment beside the live one: its own topic prefix, app id (consumer
                     groups, internal topics), Redis database and Faust data folder, one worker
                     process (deploy/procs.py); `teardown` deletes all of it unless asked to keep
    publish          the recording into every deployment's input topics at once (aiokafka batches)
    run              both deployments at once, a progress line, their records -> reports.drill

The live deployment's topics are only read (a group-less consumer, no commit), its groups and its
Redis database never touched: every name the drill writes carries its own prefix and app id, and
its databases are chosen among the empty ones other than the live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from contract import topics
from contract.errors import ConfigError, KafkaUnavailable
from contract.events import parse_ts
from contract.kafka_settings import aiokafka_kwargs, ensure_topics, kafka_python_kwargs
from contract.plan import load_plan
from contract.redisurl import sync_client, with_db
from contract.settings import Settings
from contract.zones import load_zones
from deploy.procs import Child, free_port

log = logging.getLogger("zonewatch.drill")

#: the topics a recording holds: §1's inputs and the operators' phase commands (§10), both replayed
RECORDED = (*topics.INPUT_TOPICS, topics.PLAN_COMMANDS)
#: input before `from` replayed too: units' positions, posts and reach need the minutes before it
LEAD_MS = 30 * 60_000
#: input after `to` replayed too: a call of the period is decided up to 300 s later (breach,
#: tiers) and a late arrival is recorded up to 60 min after the call (CONTRACT §3)
TAIL_MS = 60 * 60_000 + 300_000
#: a record produced this long after `to + TAIL_MS` (by its Kafka timestamp) ends a partition's
#: read once its event `ts` is past as well: late input within the hour is still found
LATE_SLACK_MS = 60 * 60_000
#: the watermark bounds of a full-speed replay (bench/harness.py WATERMARK_ENV, the same reasons):
#: a quiet patrol.gps partition stops holding decisions back after 12 s of wall time
WATERMARK_ENV = {"ZONEWATCH_WATERMARK_IDLE_MS": "12000", "ZONEWATCH_WATERMARK_MAX_LAG_MS": "3600000"}
#: after everything is consumed, how long the outputs must stay unchanged: the watermark's idle
#: bound (the last decisions come then) plus margin for their writes
QUIET_S = 12 + 6
WORKER_UP_S = 120.0
#: a produced batch's size: well under the input topics' max.message.bytes (contract.topics
#: MAX_INPUT_BYTES), large enough that the per-batch cost (a request, a CRC) vanishes
PUBLISH_BATCH_BYTES = 1 << 20
STOP_GRACE_S = 20.0
REDIS_DBS = 16


@dataclass
class Recording:
    """Raw input records (topic, key, value bytes, event ts) in event-time order."""
    records: list[tuple[str, bytes | None, bytes, int]] = field(default_factory=list)

    def sort(self) -> Recording:
        self.records.sort(key=lambda r: r[3])
        return self

    @property
    def span_ms(self) -> int:
        return self.records[-1][3] - self.records[0][3] if self.records else 0


def _event_ts(value: bytes) -> int | None:
    try:
        rec = orjson.loads(value)
        return parse_ts(rec["ts"]) if isinstance(rec, dict) else None
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None


def read_file(path: Path, start: int, end: int) -> Recording:
    """The records of a JSONL file (§1 records with a `topic` field) whose `ts` lies in
    [start − LEAD_MS, end + TAIL_MS); a line that is no such record is refused with its number."""
    out = Recording()
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"--input {path}: cannot read it ({exc.strerror})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            topic = rec.pop("topic")
            ts = parse_ts(rec["ts"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
            raise ConfigError(f"--input {path}:{n}: not a JSON record with `topic` and `ts`") from None
        if topic not in RECORDED:
            raise ConfigError(f"--input {path}:{n}: topic {topic!r} is none of {', '.join(RECORDED)}")
        if start - LEAD_MS <= ts < end + TAIL_MS:
            key = rec.get(topics.KEY_FIELD.get(topic, ""))
            # an exact-size copy: orjson's bytes keep the ~4 KB buffer they were written into
            # (tracemalloc: 4,097 bytes held per record instead of ~180), and a drill holds them all
            value = memoryview(orjson.dumps(rec)).tobytes()
            out.records.append((topic, str(key).encode() if key is not None else None, value, ts))
    return out.sort()


def read_topics(live: Settings, start: int, end: int, timeout_s: float = 600.0,
                progress: Callable[[str, float], None] | None = None) -> Recording:
    """The live deployment's recorded input of [start − LEAD_MS, end + TAIL_MS) by event `ts`: each
    partition from the first record whose Kafka timestamp is at or after the start (offsets_for_times)
    to its end offset as of now, stopping early once both the record's timestamp and its `ts` are
    well past the end. A consumer without a group: nothing of the live deployment's changes."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    lo, hi = start - LEAD_MS, end + TAIL_MS
    out = Recording()
    try:
        c = KafkaConsumer(bootstrap_servers=live.kafka, group_id=None, enable_auto_commit=False,
                          client_id=f"{live.app_id}-drill-read", check_crcs=False,
                          max_partition_fetch_bytes=8 << 20, **kafka_python_kwargs(live))
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {live.kafka} ({exc})") from exc
    try:
        names = {live.topic(t): t for t in RECORDED}
        existing = set(c.topics())
        tps = [TopicPartition(n, p) for n in names if n in existing for p in sorted(c.partitions_for_topic(n) or ())]
        if not tps:
            raise ConfigError(f"no input topics with prefix {live.topic_prefix!r} on {live.kafka}")
        ends = c.end_offsets(tps)
        found = c.offsets_for_times({tp: max(0, lo) for tp in tps})
        c.assign(tps)
        begin = {}
        for tp in tps:
            at = found.get(tp)
            begin[tp] = at.offset if at is not None else ends[tp]
            c.seek(tp, begin[tp])
        todo = {tp for tp in tps if begin[tp] < ends[tp]}
        total = sum(ends[tp] - begin[tp] for tp in todo) or 1
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read the recorded input within {timeout_s:g} s")
            for tp, msgs in c.poll(timeout_ms=500, max_records=20_000).items():
                if tp not in todo:
                    continue
                for m in msgs:
                    if m.offset >= ends[tp]:
                        todo.discard(tp)
                        break
                    ts = _event_ts(m.value) if m.value is not None else None
                    if ts is not None and lo <= ts < hi:
                        out.records.append((names[tp.topic], m.key, m.value, ts))
                    elif ts is not None and ts >= hi and m.timestamp >= hi + LATE_SLACK_MS:
                        todo.discard(tp)
                        c.pause(tp)
                        break
            todo = {tp for tp in todo if c.position(tp) < ends[tp]}
            if progress:
                done = sum(min(c.position(tp), ends[tp]) - begin[tp] for tp in tps if begin[tp] < ends[tp])
                progress("reading the recorded input", min(1.0, done / total))
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading the recorded input from {live.kafka} failed ({exc})") from exc
    finally:
        c.close()
    return out.sort()


def _db_of(client) -> int:
    return int(client.connection_pool.connection_kwargs.get("db", 0))


def empty_dbs(live: Settings, n: int) -> list[int]:
    """`n` Redis databases other than the live one that hold no key now (highest first)."""
    client = sync_client(live.redis, socket_timeout=10)
    try:
        live_db = _db_of(client)
    finally:
        client.close()
    out = []
    for db in range(REDIS_DBS - 1, -1, -1):
        if db == live_db:
            continue
        c = sync_client(with_db(live.redis, db), socket_timeout=10)
        try:
            if c.dbsize() == 0:
                out.append(db)
        finally:
            c.close()
        if len(out) == n:
            return out
    raise ConfigError(f"the drill needs {n} empty Redis databases besides the live one ({live_db}); found {out}")


class Isolated:
    """One deployment of the drill beside the live one (see the module docstring)."""

    def __init__(self, live: Settings, role: str, tag: str, db: int, *, zones: Path | None = None,
                 plan: Path | None = None, rules: Path | None = None, workdir: Path | None = None):
        self.role = role
        self.settings = live.with_(
            topic_prefix=f"{live.topic_prefix}drill-{tag}-{role}.", app_id=f"{live.app_id}-drill-{tag}-{role}",
            redis=with_db(live.redis, db), zones=zones, plan=plan, rules=rules)
        self.db = db
        self.workdir = Path(tempfile.mkdtemp(prefix=f"zonewatch-drill-{tag}-{role}-", dir=workdir))
        self.worker: Child | None = None
        self.port = 0
        s = self.settings
        self.env = {**os.environ, **WATERMARK_ENV,
                    "ZONEWATCH_KAFKA": s.kafka, "ZONEWATCH_REDIS": s.redis, "ZONEWATCH_ZONES": str(s.zones),
                    "ZONEWATCH_TOPIC_PREFIX": s.topic_prefix, "ZONEWATCH_APP_ID": s.app_id,
                    "ZONEWATCH_PARTITIONS": str(s.partitions), "ZONEWATCH_DATADIR": str(self.workdir / "data")}
        for name, path in (("ZONEWATCH_PLAN", s.plan), ("ZONEWATCH_RULES", s.rules)):
            if path is None:
                self.env.pop(name, None)
            else:
                self.env[name] = str(path)
        self.published = 0
        self.started_at = time.monotonic()

    @property
    def groups(self) -> list[str]:
        return [self.settings.app_id, f"{self.settings.app_id}-ingest"]

    def create_topics(self) -> None:
        ensure_topics(self.settings, said=log.debug)

    def launch(self) -> None:
        """Start its worker process (`wait_up` waits for it). After `publish`: the worker then finds
        the whole recording in every partition, as a backlog, and ingest's frontier orders it by
        event time; started first, a worker racing a publisher on a busy machine read a calls
        partition more than the grace (10 min of event time, seconds at full speed) behind the
        clock, and an arrival was lost (seen once in tests/integration/test_drill.py)."""
        self.port = free_port()
        self.worker = Child(f"drill-{self.role}", [sys.executable, "-m", "zonewatch.cli", "worker",
                                                   "--web-port", str(self.port)],
                            self.workdir / "worker.log", env=self.env, append=False).start()

    def wait_up(self) -> None:
        """Until its worker's /metrics answers (a worker builds its zone index first: seconds)."""
        assert self.worker is not None, "launch() first"
        deadline = time.monotonic() + WORKER_UP_S
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise ConfigError(f"the drill's {self.role} worker exited with {self.worker.returncode}:\n"
                                  + "\n".join(self.worker.tail(30)))
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.2)
        raise ConfigError(f"the drill's {self.role} worker did not come up in {WORKER_UP_S:g} s")

    def consumed(self, admin, consumer) -> tuple[int, int]:
        """(records consumed by its ingest and state groups, records to consume): committed offsets
        of its two groups against the end offsets of the input and zone-events topics."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        done = todo = 0
        for group, names in ((self.groups[1], [self.settings.topic(t) for t in RECORDED]),
                             (self.groups[0], [self.settings.internal_zone_events])):
            try:
                committed = admin.list_group_offsets(group)
                committed = committed.get(group, committed)  # kafka-python 3 nests by group id
            except KafkaError:    # no such group yet: its worker has not committed anything
                committed = {}
            tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or ())]
            ends = consumer.end_offsets(tps)
            for tp in tps:
                at = committed.get(tp)
                done += min(at.offset if at is not None and at.offset >= 0 else 0, ends[tp])
                todo += ends[tp]
        return done, todo

    def outputs_mark(self, consumer) -> tuple:
        """End offsets of its output topics and the length of its updates stream: unchanged = quiet."""
        from kafka import TopicPartition

        from contract import keys

        tps = [TopicPartition(self.settings.topic(t), p) for t in topics.OUTPUT_TOPICS
               for p in sorted(consumer.partitions_for_topic(self.settings.topic(t)) or ())]
        client = sync_client(self.settings.redis, socket_timeout=10)
        try:
            updates = client.xlen(keys.ZONE_UPDATES)
        finally:
            client.close()
        return tuple(sorted(consumer.end_offsets(tps).items())), updates

    def read(self, topic: str) -> list[dict]:
        """Every record of one of its output topics (decoded JSON objects), start to end."""
        from kafka import KafkaConsumer, TopicPartition

        name = self.settings.topic(topic)
        # read_committed: a fenced owner's aborted transaction is not an output (streams/kafka_fence.py)
        c = KafkaConsumer(bootstrap_servers=self.settings.kafka, group_id=None, enable_auto_commit=False,
                          check_crcs=False, max_partition_fetch_bytes=8 << 20, isolation_level="read_committed",
                          **kafka_python_kwargs(self.settings))
        out: list[dict] = []
        try:
            tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name) or ())]
            ends = c.end_offsets(tps)
            c.assign(tps)
            c.seek_to_beginning(*tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            while todo:
                for tp, msgs in c.poll(timeout_ms=500, max_records=50_000).items():
                    for m in msgs:
                        if m.offset < ends[tp] and m.value:
                            with contextlib.suppress(orjson.JSONDecodeError):
                                doc = orjson.loads(m.value)
                                if isinstance(doc, dict):
                                    out.append(doc)
                todo = {tp for tp in todo if c.position(tp) < ends[tp]}
        finally:
            c.close()
        return out

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(grace=STOP_GRACE_S)

    def teardown(self, keep: bool) -> list[str]:
        """Stop its worker; unless `keep`, delete its topics, groups, Redis database and files.
        Returns what was deleted or kept, for the report on stderr."""
        self.stop_worker()
        s = self.settings
        if keep:
            return [f"{self.role}: kept topics {s.topic_prefix}*, groups {', '.join(self.groups)}, "
                    f"Redis db {self.db}, {self.workdir}"]
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=s.kafka, client_id=f"{s.app_id}-admin",
                                 **kafka_python_kwargs(s))
        try:
            mine = [t for t in admin.list_topics() if t.startswith(s.topic_prefix) or t.startswith(f"{s.app_id}-")]
            if mine:
                admin.delete_topics(mine)
            with contextlib.suppress(Exception):  # a group never joined does not exist
                admin.delete_groups(self.groups)
        finally:
            admin.close()
        client = sync_client(s.redis, socket_timeout=10)
        try:
            client.flushdb()
        finally:
            client.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return [f"{self.role}: deleted {len(mine)} topics, groups {', '.join(self.groups)}, Redis db {self.db}"]


def start_workers(deps: list[Isolated]) -> None:
    """Every deployment's worker, started together (each builds its zone index on its own core)."""
    for d in deps:
        d.launch()
    for d in deps:
        d.wait_up()


def stop_workers(deps: list[Isolated]) -> None:
    """SIGTERM to every worker at once, then each waited for (STOP_GRACE_S, then SIGKILL)."""
    for d in deps:
        if d.worker is not None and d.worker.poll() is None:
            d.worker.signal_group(signal.SIGTERM)
    for d in deps:
        d.stop_worker()


def publish(deps: list[Isolated], rec: Recording, progress: Callable[[float], None] | None = None) -> None:
    """The recording into the input topics of every deployment at once (see `_publish`)."""
    asyncio.run(_publish(deps, rec, progress))


async def _publish(deps: list[Isolated], rec: Recording, progress: Callable[[float], None] | None) -> None:
    """Each record to the partition the default partitioner gives its key (murmur2, as every
    producer of the live input: a unit's fixes stay in one partition, in `ts` order), in batches
    built by aiokafka's C record builder and sent one batch per partition at a time (so in order;
    idempotent, so a retry neither reorders nor doubles). kafka-python's `send` per record spent a
    quarter of the drill's own samples in its pure-Python CRC32C and as much again in `send` (a
    py-spy profile, docs/DRILL.md "Speed (measured)")."""
    from aiokafka import AIOKafkaProducer
    from kafka.partitioner.default import murmur2

    s = deps[0].settings
    prod = AIOKafkaProducer(bootstrap_servers=s.kafka, acks="all", enable_idempotence=True,
                            max_batch_size=PUBLISH_BATCH_BYTES, max_request_size=topics.MAX_INPUT_BYTES + (64 << 10),
                            request_timeout_ms=120_000, **aiokafka_kwargs(s))
    await prod.start()
    try:
        counts = {t: len(await prod.partitions_for(s.topic(t))) for t in {r[0] for r in rec.records}}
        for d in deps[1:]:
            for t, n in counts.items():
                if len(await prod.partitions_for(d.settings.topic(t))) != n:
                    raise ConfigError(f"the drill's {d.role} topic {t} has another partition count than {n}")
        homes: dict[tuple[str, bytes], int] = {}
        spread = 0
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for topic, key, value, _ts in rec.records:
            if key is None:     # the default partitioner spreads unkeyed records; so does this
                part, spread = spread % counts[topic], spread + 1
            else:
                part = homes.get((topic, key), -1)
                if part < 0:
                    part = homes[(topic, key)] = (murmur2(key) & 0x7FFFFFFF) % counts[topic]
            by_partition.setdefault((topic, part), []).append((key, value))
        total, done = max(1, len(rec.records) * len(deps)), [0]

        async def one(name: str, part: int, records: list[tuple[bytes | None, bytes]]) -> None:
            batch, sent = prod.create_batch(), []
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    sent.append(await prod.send_batch(batch, name, partition=part))
                    done[0] += batch.record_count()
                    if progress:
                        progress(done[0] / total)
                    batch = prod.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ConfigError(f"a record of {len(value)} bytes does not fit a batch for {name}")
            if batch.record_count():
                sent.append(await prod.send_batch(batch, name, partition=part))
                done[0] += batch.record_count()
            await asyncio.gather(*sent)

        await asyncio.gather(*(one(d.settings.topic(topic), part, records) for d in deps
                               for (topic, part), records in by_partition.items()))
    finally:
        await prod.stop()
    for d in deps:
        d.published = len(rec.records)


def wait_done(deps: list[Isolated], progress: Callable[[str, float], None] | None = None,
              timeout_s: float = 3600.0) -> tuple[float, float]:
    """Until every deployment consumed everything and its outputs stayed unchanged for QUIET_S.
    Returns two instants (time.monotonic): the last one at which a deployment's groups had not yet
    committed everything (the workers' reading, to within a poll), and the last one at which an
    output changed (the last decisions come a watermark idle bound after the last input); the rest
    was the quiet wait."""
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient

    s = deps[0].settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka, client_id=f"{s.app_id}-watch", **kafka_python_kwargs(s))
    consumer = KafkaConsumer(bootstrap_servers=s.kafka, group_id=None, **kafka_python_kwargs(s))
    deadline = time.monotonic() + timeout_s
    marks: dict[str, tuple] = {}
    quiet_since: dict[str, float] = {}
    behind = {d.role: time.monotonic() for d in deps}
    try:
        while True:
            done_all = todo_all = 0
            settled = True
            for d in deps:
                if d.worker is not None and d.worker.poll() is not None:
                    raise ConfigError(f"the drill's {d.role} worker exited with {d.worker.returncode}:\n"
                                      + "\n".join(d.worker.tail(30)))
                done, todo = d.consumed(admin, consumer)
                done_all, todo_all = done_all + done, todo_all + todo
                mark = d.outputs_mark(consumer)
                now = time.monotonic()
                if done < todo:
                    behind[d.role] = now
                if done < todo or marks.get(d.role) != mark:
                    marks[d.role], quiet_since[d.role] = mark, now
                    settled = False
                elif now - quiet_since[d.role] < QUIET_S:
                    settled = False
            if progress:
                progress("replaying", done_all / todo_all if todo_all else 1.0)
            if settled:
                return max(behind.values()), max(quiet_since.values())
            if time.monotonic() > deadline:
                raise ConfigError(f"the drill's deployments did not finish within {timeout_s:g} s")
            time.sleep(1.0)
    finally:
        consumer.close()
        admin.close()


def places(zones_path: Path, plan_path: Path | None, tz: str, id_property: str | None) -> tuple[list, dict]:
    """(the zones, post or checkpoint id -> ids of the zones holding its position)."""
    import shapely

    zones = load_zones(zones_path, id_property)
    out: dict[str, tuple[str, ...]] = {}
    if plan_path is not None:
        plan = load_plan(plan_path, tz)
        for pid, lat, lon in [(p.post_id, p.lat, p.lon) for p in plan.posts] + \
                             [(c.checkpoint_id, c.lat, c.lon) for c in plan.checkpoints]:
            out[pid] = tuple(z.zone_id for z in zones if shapely.contains_xy(z.geometry, lon, lat))
    return zones, out


def collect(dep: Isolated, start: int, end: int, units: list | None = None) -> tuple[dict, dict, dict, dict | None]:
    """(F, the hourly curve, zone id -> name, the `--deploy` estimate F or None) of what `dep` wrote."""
    from reports import drill, whatif

    s = dep.settings
    zones, where = places(s.zones, s.plan, s.tz, s.zone_id_property)
    enriched, sla = dep.read(topics.INCIDENTS), dep.read(topics.SLA)
    duty = dep.read(topics.DUTY) if s.plan is not None else []
    states = dep.read(topics.ZONES_STATE)
    ids = [z.zone_id for z in zones]
    fig = drill.figures(start, end, ids, enriched, sla, duty, states, where)
    est = whatif.estimate(start, end, ids, units, enriched, sla) if units else None
    return fig, drill.hourly(start, end, enriched, sla), {z.zone_id: z.name for z in zones}, est
