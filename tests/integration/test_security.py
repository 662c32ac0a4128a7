"""The pipeline over a locked-down stack: Kafka SASL_SSL (SCRAM-SHA-512, TLS, ACLs) and Redis over
TLS with ACL users, configured through the ZONEWATCH_* environment alone (docs/SECURITY.md).

The secured stack is deploy/stack.py's `up(secure=True)` on its own ports and state folder
(.stack/test-secure, wiped at the start so certificates, users and ACLs are fresh). If it cannot
start, the module's tests fail with the stack's message; nothing is skipped.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis

from bench.harness import WATERMARK_ENV
from contract import topics
from contract.kafka_settings import ensure_topics, kafka_python_kwargs
from contract.settings import Settings
from tests import scenario
from tests.integration.conftest import REPO, Deployment, _load_stack
from tests.integration.test_zone_state_e2e import check_final_state, publish_scenario, wait_final_state

pytestmark = pytest.mark.integration

KAFKA_PORT = int(os.environ.get("ZONEWATCH_TEST_SECURE_KAFKA_PORT", 19192))
REDIS_PORT = int(os.environ.get("ZONEWATCH_TEST_SECURE_REDIS_PORT", 16479))
STATE = REPO / ".stack" / "test-secure"
TOPIC_PREFIX = "t-sec-"   # the zonewatch Kafka user may use topics and groups with these prefixes only
APP_PREFIX = "zw-sec-"


class SecureStack:
    def __init__(self, mod, endpoints: dict):
        self.mod = mod
        self.ep = endpoints
        self.ca = endpoints["ca"]
        self.kafka = endpoints["kafka"]
        self.pw = {name: Path(p).read_text().strip() for name, p in endpoints["password_files"].items()}

    def redis_url(self, user: str, password: str | None = None, db: int = 0) -> str:
        pw = self.pw[f"redis-{user}"] if password is None else password
        return f"rediss://{user}:{pw}@127.0.0.1:{REDIS_PORT}/{db}?ssl_ca_certs={self.ca}"

    def redis(self, user: str, password: str | None = None, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url(user, password, db), socket_timeout=5)

    def kafka_env(self, password: str | None = None) -> dict[str, str]:
        return {
            "ZONEWATCH_KAFKA": self.kafka,
            "ZONEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ZONEWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ZONEWATCH_KAFKA_USERNAME": "zonewatch",
            "ZONEWATCH_KAFKA_PASSWORD": self.pw["kafka-zonewatch"] if password is None else password,
            "ZONEWATCH_KAFKA_CA": self.ca,
        }


@pytest.fixture(scope="module")
def secure_stack():
    mod = _load_stack()
    mod.down(state_dir=STATE, wipe=True)  # fresh CA, passwords, SCRAM users and ACLs every run
    try:
        endpoints = mod.up(kafka_port=KAFKA_PORT, redis_port=REDIS_PORT, state_dir=STATE, secure=True,
                           acl_prefixes=[TOPIC_PREFIX, APP_PREFIX])
    except BaseException:
        mod.down(state_dir=STATE)
        raise
    try:
        yield SecureStack(mod, endpoints)
    finally:
        mod.down(state_dir=STATE)


class SecureDeployment(Deployment):
    """Deployment (conftest) whose worker, producer, consumer and admin clients go through
    SASL_SSL as the `zonewatch` Kafka user and whose Redis is the TLS one with ACL users: the
    worker writes as `zonewatch`, the test reads as `zonewatch-read`."""

    def __init__(self, st: SecureStack, zones: Path, partitions: int = 4):
        tag = uuid.uuid4().hex[:8]
        self.st = st
        self.db = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ZONEWATCH_")}
        self.env.update(st.kafka_env())
        self.env.update({
            "ZONEWATCH_REDIS": st.redis_url("zonewatch", db=self.db),
            "ZONEWATCH_ZONES": str(zones),
            "ZONEWATCH_TOPIC_PREFIX": f"{TOPIC_PREFIX}{tag}.",
            "ZONEWATCH_APP_ID": f"{APP_PREFIX}{tag}",
            "ZONEWATCH_PARTITIONS": str(partitions),
            "ZONEWATCH_DATADIR": str(STATE / "faust" / tag),
            "ZONEWATCH_CALLER_SECRET": "test-secret",
            **WATERMARK_ENV,
        })
        self.settings = Settings(
            kafka=st.kafka, redis=self.env["ZONEWATCH_REDIS"], zones=zones,
            topic_prefix=self.env["ZONEWATCH_TOPIC_PREFIX"], app_id=self.env["ZONEWATCH_APP_ID"],
            partitions=partitions, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_username="zonewatch", kafka_password=st.pw["kafka-zonewatch"], kafka_ca=Path(st.ca))
        self.admin_redis = st.redis("admin", db=self.db)
        self.admin_redis.flushdb()
        self.admin_redis.acl_log_reset()
        self.redis = st.redis("zonewatch-read", db=self.db)
        ensure_topics(self.settings)
        self.workers = []
        self.paused: set[int] = set()   # Deployment's bookkeeping (no worker is frozen here)
        self.reader = None

    def close(self) -> None:
        for i in range(len(self.workers)):
            self.kill_worker(i)
        self.redis.close()
        self.admin_redis.flushdb()
        self.admin_redis.close()


@pytest.fixture
def secure_deployment(secure_stack):
    made = []

    def make(zones: Path = scenario.ZONES_FILE, partitions: int = 4) -> SecureDeployment:
        d = SecureDeployment(secure_stack, zones, partitions)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_scenario_over_sasl_ssl_and_redis_acl_users(secure_stack, secure_deployment):
    dep = secure_deployment(partitions=3)
    dep.start_worker()
    # calls before the fixes that carry the final clock (see test_zone_state_e2e); describe_groups
    # as `zonewatch` is allowed by the ACL on its group prefix
    dep.wait_workers_joined()
    publish_scenario(dep)  # kafka-python producer over SASL_SSL as `zonewatch`
    docs = wait_final_state(dep, what="scenario settled in the TLS Redis")
    check_final_state(dep, docs)  # read back as `zonewatch-read`
    assert dep.metrics() == {k: float(v) for k, v in scenario.EXPECTED_COUNTS.items()}

    # the dead letters went through the secured producer
    dead = dep.consume_all(topics.DEADLETTER, 3)
    assert sorted(orjson.loads(m.value)["reason"].split(":")[0] for m in dead) == [
        "invalid JSON", "lat 91.0 out of range -90..90", "missing field category"]

    # the gateway as the read-only Redis user, over TLS: zones, the wall's incidents and the feed
    from types import SimpleNamespace

    from tests.integration.test_gateway import AUTH, GatewayProcess, SSEClient

    gw = GatewayProcess(SimpleNamespace(env=dict(dep.env, ZONEWATCH_REDIS=secure_stack.redis_url("zonewatch-read",
                                                                                                  db=dep.db)),
                                        settings=dep.settings))
    try:
        assert {d["zone_id"]: d for d in gw.get("/zones").json()} == docs
        incidents = {k.decode(): orjson.loads(v) for k, v in dep.admin_redis.hgetall("zw:incidents").items()}
        assert incidents and {i["call_id"]: i for i in gw.get("/incidents").json()} == incidents
        c = SSEClient(gw.url, headers=AUTH, incidents=True)
        try:
            assert c.next_event()["event"] == "snapshot"
            assert c.next_event()["event"] == "incidents"
        finally:
            c.close()
    finally:
        gw.stop()

    # the worker and the gateway needed no command or key outside their Redis ACLs: nothing was denied
    assert dep.admin_redis.acl_log() == []

    # no secret in the worker's log (it logs at info level here)
    log = dep.workers[0][2].read_text(errors="replace")
    assert "took over" in log, log[-2000:]
    for name in ("kafka-zonewatch", "redis-zonewatch"):
        assert secure_stack.pw[name] not in log, f"the {name} password is in the worker log"
    for bad in ("NOPERM", "NoPermission", "AuthorizationFailed", "AuthenticationFailed"):
        assert bad not in log, bad


def test_kafka_refuses_plaintext_wrong_passwords_and_foreign_topics(secure_stack):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAuthorizationFailedError

    mod, port = secure_stack.mod, KAFKA_PORT
    # TLS on the client port: a plaintext Kafka request gets no answer, a TLS one does
    assert mod.kafka_api_versions_ok(port, ca=Path(secure_stack.ca))
    assert not mod.kafka_api_versions_ok(port)
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=secure_stack.kafka, request_timeout_ms=3000,
                         api_version_auto_timeout_ms=3000)

    base = Settings(kafka=secure_stack.kafka, kafka_security_protocol="SASL_SSL", kafka_username="zonewatch",
                    kafka_password=secure_stack.pw["kafka-zonewatch"], kafka_ca=Path(secure_stack.ca))
    # a wrong SCRAM password; the system's CAs only (the broker's throwaway CA is not among them)
    for bad in (base.with_(kafka_password="not-the-password"), replace(base, kafka_ca=None)):
        with pytest.raises(KafkaError):
            KafkaAdminClient(bootstrap_servers=bad.kafka, request_timeout_ms=3000,
                             api_version_auto_timeout_ms=3000, **kafka_python_kwargs(bad))

    # the zonewatch user may create topics under its prefixes only (ACLs)
    admin = KafkaAdminClient(bootstrap_servers=base.kafka, request_timeout_ms=10_000, **kafka_python_kwargs(base))
    try:
        name = f"{TOPIC_PREFIX}{uuid.uuid4().hex[:8]}.probe"
        admin.create_topics([NewTopic(name, 1, 1)])
        assert name in admin.list_topics()
        with pytest.raises(TopicAuthorizationFailedError):
            admin.create_topics([NewTopic("other.probe", 1, 1)])
    finally:
        admin.close()


def test_redis_acl_users_are_confined_to_zw_keys_and_their_commands(secure_stack):
    st = secure_stack
    worker = st.redis("zonewatch")
    reader = st.redis("zonewatch-read")
    admin = st.redis("admin")
    try:
        assert worker.set("zw:probe", "1") and worker.get("zw:probe") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.set("other", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.get("other")
        for command in (("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "requirepass"), ("DEL", "zw:probe"),
                        ("ACL", "LIST")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                worker.execute_command(*command)
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.publish("other", "x")
        # the read-only user of the gateway and `zonewatch watch`
        assert reader.get("zw:probe") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("zw:probe", "2")
        assert not admin.exists("other")
        admin.delete("zw:probe")
    finally:
        for c in (worker, reader, admin):
            c.close()

    # no anonymous access, no wrong password, no plaintext, no unknown CA
    anonymous = redis.Redis.from_url(f"rediss://127.0.0.1:{REDIS_PORT}/0?ssl_ca_certs={st.ca}", socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        st.redis("zonewatch", password="not-the-password").ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=REDIS_PORT, socket_timeout=3, username="zonewatch",
                    password=st.pw["redis-zonewatch"]).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(f"rediss://zonewatch:{st.pw['redis-zonewatch']}@127.0.0.1:{REDIS_PORT}/0",
                             socket_timeout=5).ping()  # system CAs only: the throwaway CA is not among them
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=3) as s:  # no plaintext protocol
        s.settimeout(3)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        try:
            answer = s.recv(64)
        except (TimeoutError, ConnectionResetError):
            answer = b""
        assert not answer.startswith((b"+PONG", b"-NOAUTH"))
