"""A zonewatch deployment on a running stack, for the chaos runs and the integration tests.

`Deployment` is one isolated deployment on a shared Kafka and Redis (deploy/stack.py): its own
topic prefix, app id (consumer groups) and Redis database, and real worker processes started and
stopped with deploy/procs.py. tests/integration/conftest.py wraps it in fixtures; bench/chaos.py
drives it directly (nothing outside tests/ imports tests).

Every record `consume_all` reads and every zone document `zone_docs` returns is checked against its
published JSON Schema (contract/schemas.py, docs/schemas/): the first one that does not match
raises an AssertionError naming the topic, the record's position, the failing field and the rule,
so every integration test that reads records checks them against the contract for free.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import time
import uuid
from functools import cache
from pathlib import Path

import orjson

from contract import keys, metrics, redisurl, schemas, topics
from contract.security import kafka_python_kwargs
from contract.settings import Settings
from contract.topics import ensure_topics
from deploy.procs import Child
from gateway import promtext

REPO = Path(__file__).resolve().parents[1]
#: worker logs and Faust data of the deployments
STATE_DIR = REPO / ".stack" / "test"
WORKER_STOP_GRACE_S = 20.0
_db_counter = itertools.count(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Deployment:
    """One isolated zonewatch deployment: prefix, app id, Redis db, worker processes.

    `workers` holds (child, metrics port, log path) per started worker, in start order."""

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
            # a quiet patrol.gps partition stops holding the watermark back after 2 s, not 30 s,
            # so a run's final decisions come seconds after its input ends
            "ZONEWATCH_WATERMARK_IDLE_MS": "2000",
        })
        self.settings = Settings(kafka=stack["kafka"], redis=self.env["ZONEWATCH_REDIS"], zones=zones,
                                 topic_prefix=self.env["ZONEWATCH_TOPIC_PREFIX"],
                                 app_id=self.env["ZONEWATCH_APP_ID"], partitions=partitions)
        self.redis = redisurl.sync_client(self.env["ZONEWATCH_REDIS"], socket_timeout=10)
        self.redis.flushdb()
        ensure_topics(self.settings)
        self.workers: list[tuple[Child, int, Path]] = []

    def start_worker(self) -> int:
        port = free_port()
        log = STATE_DIR / f"worker-{self.settings.app_id}-{port}.log"
        child = Child("worker", [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port),
                                 "--loglevel", "info"], log, env=self.env, cwd=REPO, append=False).start()
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

    def wait_workers_joined(self) -> None:
        """Block until every started worker is a member of both consumer groups (stable)."""
        n = len(self.workers)
        wait_until(lambda: set(self.group_members().values()) == {n}, what=f"{n} workers in both groups")

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

    def consume_all(self, topic: str, expect: int, timeout: float = 30.0, validate: bool = True) -> list:
        """Records of `topic` (unprefixed) from the start, until `expect` or `timeout`; each checked
        against its topic's schema unless validate=False (a test reading deliberately broken input)."""
        from kafka import KafkaConsumer

        c = KafkaConsumer(self.settings.topic(topic), bootstrap_servers=self.settings.kafka,
                          auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                          consumer_timeout_ms=1000, **kafka_python_kwargs(self.settings))
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
        for i in range(len(self.workers)):
            self.kill_worker(i)
        self.redis.flushdb()
        self.redis.close()
