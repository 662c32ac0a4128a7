"""Kafka from the settings: every Kafka client, Faust app and topic of zonewatch is made with the
functions of this module, so one set of `ZONEWATCH_KAFKA_*` variables (contract/settings.py,
docs/SECURITY.md) secures the worker, the connectors, `zonewatch topics`, the benchmark and the
tests alike, and one place says what each topic is created with:

    aiokafka_kwargs(s)            -> AIOKafkaProducer / AIOKafkaConsumer keyword arguments
    kafka_python_kwargs(s)        -> kafka-python KafkaAdminClient / KafkaProducer / KafkaConsumer
    faust_broker_url(s)           -> faust.App(broker=...)
    faust_broker_credentials(s)   -> faust.App(broker_credentials=...)  (None for PLAINTEXT)
    topic_specs(s, partitions)    -> every topic with its partitions, replicas and configuration
    ensure_topics(s)              -> create those missing (`zonewatch topics`, the worker) and set
                                     the configs that follow a setting on existing ones (align_configs)

With the default `ZONEWATCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT` the client helpers return nothing
extra, so a plaintext deployment builds exactly the clients it built before.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, KafkaUnavailable
from .settings import Settings
from .topics import (
    DEADLETTER,
    DEADLETTER_RETENTION_MS,
    DUTY,
    INCIDENTS,
    INPUT_TOPICS,
    MAX_INPUT_BYTES,
    PLAN_COMMANDS,
    SLA,
    SNAPSHOT_MAX_BYTES,
    ZONE_EVENTS_RETENTION_MS,
    ZONES_DAILY,
    ZONES_STATE,
    TopicSpec,
)

if TYPE_CHECKING:  # third-party types only
    from faust.types.auth import CredentialsT
    from kafka.admin import KafkaAdminClient

log = logging.getLogger("zonewatch.topics")
# ------------------------------------------------------------------------------------ clients


def uses_tls(s: Settings) -> bool:
    return s.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(s: Settings) -> bool:
    return s.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """A client TLS context: the CA bundle (or the system's), optional client certificate,
    hostname verification on. None unless the protocol uses TLS."""
    if not uses_tls(s):
        return None
    from aiokafka.helpers import create_ssl_context

    ctx: ssl.SSLContext = create_ssl_context(
        cafile=str(s.kafka_ca) if s.kafka_ca else None,
        certfile=str(s.kafka_cert) if s.kafka_cert else None,
        keyfile=str(s.kafka_key) if s.kafka_key else None,
        password=s.kafka_key_password or None,
    )
    return ctx


def aiokafka_kwargs(s: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer ({} for PLAINTEXT)."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if uses_tls(s):
        kw["ssl_context"] = ssl_context(s)
    if uses_sasl(s):
        kw.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_username,
                  sasl_plain_password=s.kafka_password)
    return kw


def kafka_python_kwargs(s: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient / KafkaProducer / KafkaConsumer."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if uses_tls(s):
        kw.update(ssl_check_hostname=True, ssl_cafile=str(s.kafka_ca) if s.kafka_ca else None,
                  ssl_certfile=str(s.kafka_cert) if s.kafka_cert else None,
                  ssl_keyfile=str(s.kafka_key) if s.kafka_key else None,
                  ssl_password=s.kafka_key_password or None)
        if not s.kafka_ca:  # no bundle given: the system's trust store (kafka-python needs a context)
            kw["ssl_context"] = ssl_context(s)
    if uses_sasl(s):
        kw.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_username,
                  sasl_plain_password=s.kafka_password)
    return kw


def faust_broker_url(s: Settings) -> str:
    """Faust's broker URL: `kafka://host:port` per bootstrap server (the aiokafka transport; the
    scheme does not select the security protocol, the credentials below do)."""
    return ";".join(f"kafka://{h.strip()}" for h in s.kafka.split(",") if h.strip())


def faust_broker_credentials(s: Settings) -> CredentialsT | None:
    """faust.SASLCredentials / faust.SSLCredentials for `broker_credentials`, None for PLAINTEXT."""
    proto = s.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    import faust

    if proto == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    # SASLCredentials turns SASL_PLAINTEXT into SASL_SSL when it is given a TLS context
    return faust.SASLCredentials(mechanism=s.kafka_sasl_mechanism, username=s.kafka_username,
                                 password=s.kafka_password, ssl_context=ssl_context(s))



# ------------------------------------------------------------------------------------- topics


def topic_specs(s: Settings, partitions: int) -> list[TopicSpec]:
    """Every topic zonewatch uses, with its partitions, replication factor and config."""
    big = {"max.message.bytes": str(MAX_INPUT_BYTES)}
    rf = s.replication_factor
    specs = [TopicSpec(s.topic(t), partitions, rf, topic_configs=dict(big)) for t in INPUT_TOPICS]
    specs += [
        TopicSpec(s.topic(INCIDENTS), partitions, rf),
        TopicSpec(s.topic(SLA), partitions, rf),
        # every record kept for the rewind retention (CONTRACT §11), found by its timestamp: the
        # document's stream clock as the worker sets it, never the broker's append time
        TopicSpec(s.topic(ZONES_STATE), partitions, rf,
                  topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": str(s.rewind_retention_ms),
                                 "message.timestamp.type": "CreateTime"},
                  kept=("min.compaction.lag.ms", "message.timestamp.type")),
        TopicSpec(s.topic(ZONES_DAILY), partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        TopicSpec(s.topic(DEADLETTER), 1, rf, topic_configs={"retention.ms": str(DEADLETTER_RETENTION_MS)}),
        TopicSpec(s.topic(DUTY), partitions, rf),
        # one partition: the commands of a day in one order (the worker orders them by ts anyway)
        TopicSpec(s.topic(PLAN_COMMANDS), 1, rf),
        TopicSpec(s.internal_zone_events, s.partitions, rf,
                  topic_configs={"retention.ms": str(ZONE_EVENTS_RETENTION_MS), **big}),
        # compacted quickly (small segments, any dirty ratio) so a takeover reads little
        TopicSpec(s.internal_snapshots, s.partitions, rf,
                  topic_configs={"cleanup.policy": "compact", "segment.ms": "60000",
                                 "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                                 "delete.retention.ms": "60000", "max.message.bytes": str(SNAPSHOT_MAX_BYTES)}),
    ]
    return specs


def ensure_topics(s: Settings, partitions: int | None = None, timeout_s: float = 60.0,
                  said: Callable[[str], None] = log.info) -> list[str]:
    """Create what is missing and set the `kept` configs of existing topics where they differ
    (each change told to `said`); returns the names created. Waits for Kafka up to `timeout_s`."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=s.kafka, client_id=f"{s.app_id}-admin",
                                     request_timeout_ms=10_000, **kafka_python_kwargs(s))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot reach Kafka at {s.kafka} ({exc}); is `make up` running?") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        specs = topic_specs(s, partitions or s.partitions)
        missing = [t for t in specs if t.name not in existing]
        for line in align_configs(admin, [t for t in specs if t.name in existing and t.kept]):
            said(line)
        created = []
        for spec in missing:  # one by one: a concurrent creator must not fail the others
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication,
                                              topic_configs=spec.topic_configs)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
            except InvalidReplicationFactorError as exc:
                raise ConfigError(f"ZONEWATCH_REPLICATION_FACTOR={spec.replication}: Kafka at {s.kafka} refused "
                                  f"to create {spec.name} ({exc}); it cannot exceed the number of brokers") from exc
        _wait_for_metadata(admin, [t.name for t in missing], deadline)
        return created
    finally:
        admin.close()


def align_configs(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Set each spec's `kept` configs on its existing topic where the broker holds another value
    (IncrementalAlterConfigs: the topic's other configs stay as they are); one sentence per change.
    A refusal (say, no ALTER_CONFIGS right) is a ConfigError naming the topic and the key."""
    from kafka.admin import ConfigResource, ConfigResourceType

    if not specs:
        return []
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t.name) for t in specs],
                                       config_filter="all")
    held_by_topic = described.get("topic", {})
    changes, said = [], []
    for spec in specs:
        held = held_by_topic.get(spec.name, {})
        diff = {}
        for key in spec.kept:
            now = (held.get(key) or {}).get("value")
            if now != spec.topic_configs[key]:
                diff[key] = spec.topic_configs[key]
                said.append(f"{spec.name}: {key} {now} -> {spec.topic_configs[key]}")
        if diff:
            changes.append(ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=diff))
    if changes:
        results = admin.alter_configs(changes).get("topic", {})
        refused = {name: result for name, result in results.items() if result != "OK"}
        if refused:
            raise ConfigError(f"Kafka refused to set {', '.join(sorted(refused))} configs "
                              f"({'; '.join(f'{n}: {r}' for n, r in sorted(refused.items()))}): {'; '.join(said)}")
    return said


def _wait_for_metadata(admin: KafkaAdminClient, names: list[str], deadline: float) -> None:
    while names:
        known = set(admin.list_topics())
        names = [n for n in names if n not in known]
        if not names or time.monotonic() > deadline:
            return
        time.sleep(0.2)
