"""Integration fixtures: the real Kafka and Redis of deploy/stack.py, and real worker processes.

The stack runs on its own ports and state folder (.stack/test) so a running demo is untouched.
If Kafka or Redis cannot be started or reached the fixture raises: the tests fail, never skip.
Each test gets its own topic prefix, app id (consumer groups) and Redis database.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from contract import topics
from contract.settings import Settings
from contract.security import kafka_python_kwargs
from contract.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
KAFKA_PORT = int(os.environ.get("ZONEWATCH_TEST_KAFKA_PORT", 19092))
REDIS_PORT = int(os.environ.get("ZONEWATCH_TEST_REDIS_PORT", 16379))
_db_counter = itertools.count(1)


def _load_stack():
    spec = importlib.util.spec_from_file_location("zonewatch_stack", REPO / "deploy" / "stack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def stack():
    mod = _load_stack()
    state = REPO / ".stack" / "test"
    endpoints = mod.up(kafka_port=KAFKA_PORT, redis_port=REDIS_PORT, state_dir=state)
    yield endpoints
    mod.down(state_dir=state)


def free_port() -> int:
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


class Deployment:
    """One isolated zonewatch deployment: prefix, app id, Redis db, worker processes."""

    def __init__(self, stack: dict, zones: Path, partitions: int = 4, name: str | None = None):
        tag = name or uuid.uuid4().hex[:8]
        self.db = next(_db_counter) % 16
        self.env = dict(os.environ)
        self.env.update({
            "ZONEWATCH_KAFKA": stack["kafka"],
            "ZONEWATCH_REDIS": f"redis://127.0.0.1:{REDIS_PORT}/{self.db}",
            "ZONEWATCH_ZONES": str(zones),
            "ZONEWATCH_TOPIC_PREFIX": f"t-{tag}.",
            "ZONEWATCH_APP_ID": f"zw-{tag}",
            "ZONEWATCH_PARTITIONS": str(partitions),
            "ZONEWATCH_DATADIR": str(REPO / ".stack" / "test" / "faust" / tag),
            "ZONEWATCH_CALLER_SECRET": "test-secret",
            # a quiet patrol.gps partition stops holding the watermark back after 2 s, not 30 s,
            # so a test's final decisions come seconds after its input ends
            "ZONEWATCH_WATERMARK_IDLE_MS": "2000",
        })
        self.settings = Settings(kafka=stack["kafka"], redis=self.env["ZONEWATCH_REDIS"], zones=zones,
                                 topic_prefix=self.env["ZONEWATCH_TOPIC_PREFIX"],
                                 app_id=self.env["ZONEWATCH_APP_ID"], partitions=partitions)
        self.redis = redis.Redis(port=REDIS_PORT, db=self.db)
        self.redis.flushdb()
        ensure_topics(self.settings)
        self.workers: list[tuple[subprocess.Popen, int, Path]] = []

    def start_worker(self) -> int:
        port = free_port()
        log = REPO / ".stack" / "test" / f"worker-{self.settings.app_id}-{port}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "zonewatch.cli", "worker", "--web-port", str(port), "--loglevel", "info"],
            env=self.env, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append((proc, port, log))
        wait_until(lambda: self._metrics_up(port) or proc.poll() is not None, 60, what="worker /metrics")
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
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
        """Parsed zonewatch_events_total of one worker (or the sum over all workers)."""
        import urllib.request

        total: dict[tuple, float] = {}
        for _proc, p, _log in self.workers:
            if port is not None and p != port:
                continue
            text = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith("zonewatch_events_total{"):
                    labels, value = line[len("zonewatch_events_total{"):].split("} ")
                    kv = dict(x.split("=") for x in labels.split(","))
                    key = (kv["source"].strip('"'), kv["outcome"].strip('"'))
                    total[key] = total.get(key, 0) + float(value)
        return total

    def metrics_text(self, port: int) -> str:
        import urllib.request

        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    def zone_docs(self) -> dict[str, dict]:
        ids = [z.decode() for z in self.redis.smembers("zw:zones")]
        vals = self.redis.mget([f"zw:zone:{z}" for z in ids]) if ids else []
        return {z: orjson.loads(v) for z, v in zip(ids, vals) if v}

    def consume_all(self, topic: str, expect: int, timeout: float = 30.0) -> list:
        from kafka import KafkaConsumer

        c = KafkaConsumer(self.settings.topic(topic), bootstrap_servers=self.settings.kafka,
                          auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                          consumer_timeout_ms=1000, **kafka_python_kwargs(self.settings))
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(c)
        c.close()
        return out

    def kill_worker(self, index: int = 0, sig=signal.SIGTERM) -> None:
        proc = self.workers[index][0]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def close(self) -> None:
        for i in range(len(self.workers)):
            self.kill_worker(i)
        self.redis.flushdb()
        self.redis.close()


@pytest.fixture
def deployment(stack):
    made = []

    def make(zones: Path, partitions: int = 4, name: str | None = None) -> Deployment:
        d = Deployment(stack, zones, partitions, name)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
