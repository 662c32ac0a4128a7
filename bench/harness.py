"""A zonewatch deployment on a running stack, for the chaos runs and the integration tests.

`Deployment` is one isolated deployment on a shared Kafka and Redis (deploy/stack.py): its own
topic prefix, app id (consumer groups) and Redis database, and real worker processes started,
stopped, killed, frozen (SIGSTOP) and resumed with deploy/procs.py. tests/integration/conftest.py
wraps it in fixtures; bench/chaos.py drives it directly (nothing outside tests/ imports tests).

Fault helpers shared by both: `UpdatesReader` (zw:zone-updates read the way a wall reads it, to
check that versions only increase and that no zone freezes), `frozen` (SIGSTOP a server of the
stack, SIGCONT on leaving, whatever happens) and `refused_sends` (the broker refuses every record
sent to some topics, for as long as the block lasts).

Every record `consume_all` reads and every zone document `zone_docs` returns is checked against its
published JSON Schema (contract/schemas.py, docs/schemas/): the first one that does not match
raises an AssertionError naming the topic, the record's position, the failing field and the rule,
so every integration test that reads records checks them against the contract for free.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from functools import cache
from pathlib import Path

import orjson
import redis

from contract import keys, metrics, redisurl, schemas, topics
from contract.kafka_settings import ensure_topics, kafka_python_kwargs
from contract.settings import Settings
from deploy import procs
from deploy import stack as stack_module
from deploy.procs import Child, free_port
from gateway import promtext

REPO = Path(__file__).resolve().parents[1]
#: worker logs and Faust data of the deployments
STATE_DIR = REPO / ".stack" / "test"
WORKER_STOP_GRACE_S = 20.0
_db_counter = itertools.count(1)


def wait_until(check, timeout: float = 90.0, interval: float = 0.2, what: str = "condition"):
    """Poll `check()` until it returns a truthy value; a liveness bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schemas.schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_schema(name: str, doc, where: str) -> None:
    """AssertionError when `doc` does not match the schema `name` (docs/schemas/{name}.json)."""
    from jsonschema.exceptions import best_match

    err = best_match(_validator(name).iter_errors(doc))  # the deepest, most telling error (into oneOf)
    if err is not None:
        path = "/".join(map(str, err.absolute_path)) or "(the document)"
        shown = orjson.dumps(doc).decode(errors="replace")
        raise AssertionError(f"{where} does not match docs/schemas/{name}.json at {path}: {err.message} "
                             f"(rule: {'/'.join(map(str, err.absolute_schema_path))}); document: {shown[:600]}")


def check_record(topic: str, msg) -> None:
    """A consumed Kafka record of `topic` (unprefixed) against its topic's schema, and its key
    against the key rule of an output topic (contract.schemas.record_key)."""
    where = f"{topic} record (partition {msg.partition}, offset {msg.offset})"
    if msg.value is None:
        raise AssertionError(f"{where} has no value (a tombstone): zonewatch never writes one")
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError as exc:
        raise AssertionError(f"{where} is not JSON ({exc}): {msg.value[:200]!r}") from None
    check_schema(topic, doc, where)
    want = schemas.record_key(topic, doc) if topic in topics.OUTPUT_TOPICS else None
    if want is not None and msg.key != want.encode():
        raise AssertionError(f"{where} has key {msg.key!r}; the contract's key is {want!r}")


#: The watermark's bounds for replays (CONTRACT §3; both configurable). A quiet patrol.gps partition
#: stops holding the watermark back after 12 s, not 30 s, so a run's final decisions come soon after
#: its input ends; still longer than a takeover (6 s session timeout + the rebalance), during which a
#: dead or moving worker's patrol.gps partitions deliver nothing: a shorter bound would decide breaches
#: and arrivals while their fixes wait in Kafka (the chaos runs saw exactly that with 2 s). The max lag
#: behind the stream clock (60 s of event time by default, meant for live feeds) is raised to the hour:
#: tests publish their events at full speed, so a takeover's few seconds of wall time are minutes of
#: event time, and the other workers' partitions would drive the watermark past fixes still waiting in
#: the stalled partition (call 17 of the chaos set got a later arrival that way). With it the idle
#: bound alone limits how long a stall holds decisions back.
WATERMARK_ENV = {"ZONEWATCH_WATERMARK_IDLE_MS": "12000", "ZONEWATCH_WATERMARK_MAX_LAG_MS": "3600000"}


class Deployment:
    """One isolated zonewatch deployment: prefix, app id, Redis db, worker processes.

    `workers` holds (child, metrics port, log path) per started worker, in start order (dead ones
    stay, so indices never move); `paused` the indices of workers stopped with SIGSTOP."""

    def __init__(self, stack: dict, zones: Path, partitions: int = 4, name: str | None = None):
        tag = name or uuid.uuid4().hex[:8]
        self.db = next(_db_counter) % 16
        self.env = dict(os.environ)
        self.env.update({
            "ZONEWATCH_KAFKA": stack["kafka"],
            # the stack's Redis (a single server or a sentinel URL), on a database of its own
            "ZONEWATCH_REDIS": redisurl.with_db(stack["redis"], self.db),
            "ZONEWATCH_ZONES": str(zones),
            "ZONEWATCH_TOPIC_PREFIX": f"t-{tag}.",
            "ZONEWATCH_APP_ID": f"zw-{tag}",
            "ZONEWATCH_PARTITIONS": str(partitions),
            "ZONEWATCH_DATADIR": str(STATE_DIR / "faust" / tag),
            "ZONEWATCH_CALLER_SECRET": "test-secret",
            **WATERMARK_ENV,
        })
        self.settings = Settings(kafka=stack["kafka"], redis=self.env["ZONEWATCH_REDIS"], zones=zones,
                                 topic_prefix=self.env["ZONEWATCH_TOPIC_PREFIX"],
                                 app_id=self.env["ZONEWATCH_APP_ID"], partitions=partitions)
        self.redis = redisurl.sync_client(self.env["ZONEWATCH_REDIS"], socket_timeout=10)
        self.redis.flushdb()
        ensure_topics(self.settings)
        self.workers: list[tuple[Child, int, Path]] = []
        self.paused: set[int] = set()
        self.reader: UpdatesReader | None = None   # set by whoever follows zw:zone-updates

    def start_worker(self, env: dict | None = None) -> int:
        """Start a worker (`env` added to the deployment's) and wait for its /metrics; its port."""
        port = free_port()
        log = STATE_DIR / f"worker-{self.settings.app_id}-{port}.log"
        child = Child("worker", [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port),
                                 "--loglevel", "info"], log, env={**self.env, **(env or {})}, cwd=REPO,
                      append=False).start()
        self.workers.append((child, port, log))
        wait_until(lambda: self._metrics_up(port) or child.poll() is not None, 60, what="worker /metrics")
        if child.poll() is not None:
            raise AssertionError(f"worker exited with {child.returncode}:\n{log.read_text()[-3000:]}")
        return port

    def group_members(self) -> dict[str, int]:
        """Members of the Faust group and of the ingest group, as the broker sees them."""
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        groups = [self.settings.app_id, f"{self.settings.app_id}-ingest"]
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka, **kafka_python_kwargs(self.settings))
        try:
            described = admin.describe_groups(groups)
        except KafkaError:  # e.g. no group coordinator yet on a freshly formatted broker
            return {g: -1 for g in groups}
        finally:
            admin.close()
        out = {}
        for g in groups:
            d = described.get(g) if isinstance(described, dict) else None
            if d is None and not isinstance(described, dict):
                d = next((x for x in described if getattr(x, "group", None) == g), None)
            members = (d.get("members") if isinstance(d, dict) else getattr(d, "members", None)) or []
            state = d.get("group_state") if isinstance(d, dict) else getattr(d, "state", None)
            out[g] = len(members) if state == "Stable" else -1
        return out

    def ingest_committed(self) -> dict[str, int]:
        """Input offsets the ingest group has committed, summed per (unprefixed) topic: on fresh topics
        written by `produce`, the messages ingest will not read again after a restart."""
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka, **kafka_python_kwargs(self.settings))
        group = f"{self.settings.app_id}-ingest"
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError:   # no coordinator yet: nothing known to be committed
            return {}
        finally:
            admin.close()
        prefix = self.settings.topic_prefix
        out: dict[str, int] = {}
        for tp, meta in offsets.items():
            if meta.offset >= 0:
                name = tp.topic.removeprefix(prefix)
                out[name] = out.get(name, 0) + meta.offset
        return out

    def live(self) -> list[int]:
        """Indices of the workers that run and are not frozen."""
        return [i for i, (c, _p, _l) in enumerate(self.workers) if c.poll() is None and i not in self.paused]

    def wait_workers_joined(self, timeout: float = 90.0) -> None:
        """Block until every live worker (running, not frozen) is a member of both consumer groups
        and they are stable."""
        n = len(self.live())
        wait_until(lambda: set(self.group_members().values()) == {n}, timeout=timeout,
                   what=f"{n} workers in both groups")

    def pause_worker(self, index: int) -> None:
        """SIGSTOP worker `index` (its whole process group): it neither heartbeats nor writes
        until `resume_worker`; kept past the session timeout it comes back as a zombie."""
        self.workers[index][0].signal_group(signal.SIGSTOP)
        self.paused.add(index)

    def resume_worker(self, index: int) -> None:
        self.workers[index][0].signal_group(signal.SIGCONT)
        self.paused.discard(index)

    def worker_metric(self, index: int, name: str, by: str | None = None):
        """A metric of worker `index` (summed over series, or a dict by one label); None when
        its /metrics does not answer."""
        try:
            rows = promtext.parse(promtext.fetch(f"http://127.0.0.1:{self.workers[index][1]}/metrics", timeout=3.0))
        except OSError:
            return None
        return promtext.counter_sum(rows, name, by=by)

    def worker_log(self, index: int) -> str:
        return self.workers[index][2].read_text(errors="replace")

    def takeovers(self) -> list[tuple[int, int, float, int]]:
        """(worker index, partition, seconds, generation) of every "took over" line of every worker."""
        out = []
        for i in range(len(self.workers)):
            for p, secs, gen in TAKEOVER_LINE.findall(self.worker_log(i)):
                out.append((i, int(p), float(secs), int(gen)))
        return out

    @staticmethod
    def _metrics_up(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def produce(self, topic: str, values, key_field: str | None = None) -> None:
        """Publish dicts (as JSON) or raw bytes to an input topic, acks=all, in order."""
        from kafka import KafkaProducer

        prod = KafkaProducer(bootstrap_servers=self.settings.kafka, acks="all", linger_ms=5,
                             **kafka_python_kwargs(self.settings))
        key_field = key_field or topics.KEY_FIELD.get(topic)
        for v in values:
            if isinstance(v, dict):
                key = str(v.get(key_field, "")).encode() or None
                prod.send(self.settings.topic(topic), orjson.dumps(v), key=key)
            else:
                prod.send(self.settings.topic(topic), v, key=None)
        prod.flush()
        prod.close()

    def metrics(self, port: int | None = None) -> dict[tuple, float]:
        """zonewatch_events_total of one worker (or the sum over all workers) by (source, outcome)."""
        total: dict[tuple, float] = {}
        for _proc, p, _log in self.workers:
            if port is not None and p != port:
                continue
            for name, labels, value in promtext.parse(self.metrics_text(p)):
                if name == metrics.EVENTS:
                    key = (labels["source"], labels["outcome"])
                    total[key] = total.get(key, 0) + value
        return total

    def metrics_text(self, port: int) -> str:
        return promtext.fetch(f"http://127.0.0.1:{port}/metrics")

    def zone_docs(self) -> dict[str, dict]:
        """Every zone document in Redis, by zone id, each checked against docs/schemas/zone.json."""
        ids = [z.decode() for z in self.redis.smembers(keys.ZONES)]
        vals = self.redis.mget([keys.zone(z) for z in ids]) if ids else []
        docs = {z: orjson.loads(v) for z, v in zip(ids, vals, strict=True) if v}
        for z, doc in docs.items():
            check_schema("zone", doc, f"Redis {keys.zone(z)}")
        return docs

    def read_topic(self, topic: str, timeout: float = 60.0) -> list:
        """Every record of an output topic, from the beginning up to its end offsets as they are
        now (no waiting for records that may still come: callers settle first)."""
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.settings.kafka, enable_auto_commit=False, group_id=None,
                          isolation_level="read_committed", **kafka_python_kwargs(self.settings))
        try:
            name = self.settings.topic(topic)
            tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name) or ())]
            ends = c.end_offsets(tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            c.assign(tps)
            c.seek_to_beginning(*tps)
            out = []
            deadline = time.monotonic() + timeout
            while todo:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name}: not read to its end offsets within {timeout:.0f} s")
                for tp, msgs in c.poll(timeout_ms=500).items():
                    out.extend(m for m in msgs if m.offset < ends[tp])
                todo = {tp for tp in todo if c.position(tp) < ends[tp]}
            return out
        finally:
            c.close()

    def consume_all(self, topic: str, expect: int, timeout: float = 30.0, validate: bool = True) -> list:
        """Records of `topic` (unprefixed) from the start, until `expect` or `timeout`; each checked
        against its topic's schema unless validate=False (a test reading deliberately broken input)."""
        from kafka import KafkaConsumer

        c = KafkaConsumer(self.settings.topic(topic), bootstrap_servers=self.settings.kafka,
                          auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                          consumer_timeout_ms=1000, isolation_level="read_committed",
                          **kafka_python_kwargs(self.settings))
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(c)
        c.close()
        if validate:
            for m in out:
                check_record(topic, m)
        return out

    def kill_worker(self, index: int = 0, sig=signal.SIGTERM) -> None:
        """Stop worker `index`: `sig` to its process group (SIGKILL = kill -9), then SIGKILL after a grace."""
        self.workers[index][0].stop(grace=WORKER_STOP_GRACE_S, sig=sig)

    def close(self) -> None:
        for i in list(self.paused):  # a frozen process cannot act on SIGTERM
            self.resume_worker(i)
        for i in range(len(self.workers)):
            self.kill_worker(i)
        self.redis.flushdb()
        self.redis.close()


#: streams/recovery.py's log line after a takeover
TAKEOVER_LINE = re.compile(r"partition (\d+): took over in ([0-9.]+)s \(generation (\d+)")


class UpdatesReader(threading.Thread):
    """zw:zone-updates read as a wall reads it: XREAD from the start, blocking, for the whole run.

    Keeps each zone's versions in stream order and, like the wall, the document of the highest
    version seen (an update whose version is not above the one held is dropped). `problems()`
    lists every version that is not above its zone's previous one; `wall` is what a wall that
    read this stream shows. Connection errors (Redis frozen or restarted) are counted and retried;
    a stream deleted by FLUSHDB is read on from the last id (new ids are larger)."""

    def __init__(self, dep: Deployment):
        super().__init__(daemon=True, name="zone-updates-reader")
        self.client = redisurl.sync_client(dep.env["ZONEWATCH_REDIS"], socket_timeout=5.0,
                                           socket_connect_timeout=5.0)
        self.versions: dict[str, list[int]] = {}
        self.last: dict[str, tuple[bytes, bytes]] = {}   # zone -> (entry id, state) of its last entry
        self.repeats: list[dict] = []                     # every entry whose version is not above the last
        self.wall: dict[str, dict] = {}
        self.entries = 0
        self.errors = 0
        self.last_id = b"0-0"
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                got = self.client.xread({keys.ZONE_UPDATES: self.last_id}, count=2000, block=500)
            except redis.RedisError:
                self.errors += 1
                self._halt.wait(0.5)
                continue
            for _stream, entries in got or ():
                for eid, fields in entries:
                    self.last_id = eid
                    self.entries += 1
                    zid = fields[b"zone_id"].decode()
                    v = int(fields[b"version"])
                    seq = self.versions.setdefault(zid, [])
                    if seq and v <= seq[-1]:
                        prev_id, prev_state = self.last[zid]
                        self.repeats.append({"zone": zid, "previous": seq[-1], "version": v,
                                             "previous_id": prev_id.decode(), "id": eid.decode(),
                                             "same_document": prev_state == fields[b"state"]})
                    seq.append(v)
                    self.last[zid] = (eid, fields[b"state"])
                    held = self.wall.get(zid)
                    if held is None or v > held["version"]:
                        self.wall[zid] = orjson.loads(fields[b"state"])

    def catch_up(self, timeout: float = 30.0) -> None:
        """Wait until everything now in the stream has been read."""
        target = wait_until(lambda: self._last_in_stream(), timeout=timeout, what=f"the last id of {keys.ZONE_UPDATES}")
        wait_until(lambda: _id_tuple(self.last_id) >= target, timeout=timeout, what="the reader at the stream's end")

    def _last_in_stream(self):
        try:
            last = self.client.xrevrange(keys.ZONE_UPDATES, count=1)
        except redis.RedisError:
            return None
        return _id_tuple(last[0][0]) if last else (0, 0)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.client.close()

    def problems(self) -> list[tuple[str, int, int]]:
        """(zone, previous version, next version) wherever a version is not above the previous."""
        out = []
        for zid, vs in sorted(self.versions.items()):
            out.extend((zid, a, b) for a, b in zip(vs, vs[1:], strict=False) if b <= a)
        return out

    def frozen(self, docs: dict[str, dict], clock: int) -> list[str]:
        """Zones the wall shows wrongly at the end: not at the final clock, or not the document
        Redis holds (an update the wall dropped because its version was not higher)."""
        return sorted(z for z, d in docs.items()
                      if self.wall.get(z) is None or self.wall[z].get("clock") != clock or self.wall[z] != d)


def _id_tuple(eid) -> tuple[int, int]:
    ms, _, seq = (eid.decode() if isinstance(eid, bytes) else eid).partition("-")
    return int(ms), int(seq or 0)


def server_pid(state_dir: Path, service: str) -> int:
    """The pid of the stack's `service` (kafka | redis) started for `state_dir`, checked to be ours."""
    pid = procs.read_pid(Path(state_dir) / f"{service}.pid")
    if not procs.ours(pid, stack_module.SERVICES[service][0]):
        raise AssertionError(f"{service} of {state_dir} is not running (pid file: {pid})")
    return pid


@contextlib.contextmanager
def frozen(state_dir: Path, service: str):
    """SIGSTOP the stack's `service` for the duration of the block (a hung server: connections
    stay open, nothing answers); SIGCONT on leaving, also on an exception."""
    pid = server_pid(state_dir, service)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


#: below any record batch zonewatch writes (an sla.events record alone is ~250 bytes with its batch),
#: above a transaction marker (~80): with less the broker cannot write the abort marker of a refused
#: transaction and leaves its transactional id stuck for good (streams/kafka_fence.py)
REFUSING_MAX_BYTES = 120


@contextlib.contextmanager
def refused_sends(dep: Deployment, topic_names):
    """The broker refuses every record sent to these topics while the block runs: their
    `max.message.bytes` is set below the size of any record batch zonewatch writes
    (MESSAGE_TOO_LARGE, which the producer does not retry by itself), and put back as it was on
    leaving."""
    from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=dep.settings.kafka, **kafka_python_kwargs(dep.settings))
    names = [dep.settings.topic(t) for t in topic_names]
    try:
        # the topic's own setting (only settings that differ from the broker's defaults are listed)
        before = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])["topic"]
        restore = {}
        for n in names:
            entry = (before.get(n) or {}).get("max.message.bytes")
            restore[n] = (AlterConfigOp.SET, entry["value"]) if entry else (AlterConfigOp.DELETE, None)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, n, {"max.message.bytes": str(REFUSING_MAX_BYTES)})
                             for n in names], raise_on_unknown=False)
        try:
            yield names
        finally:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, n, {"max.message.bytes": restore[n]})
                                 for n in names], raise_on_unknown=False)
    finally:
        admin.close()
