"""ZONEWATCH_REPLICATION_FACTOR against the real single-broker stack: a factor above the number of
brokers is refused with a message naming the variable (docs/OPERATIONS.md
"Replication and min.insync.replicas"), and the
topics zonewatch creates carry the configured factor."""

from __future__ import annotations

import uuid

import pytest

from contract.errors import ConfigError
from contract.kafka_settings import ensure_topics, kafka_python_kwargs, topic_specs
from contract.settings import Settings
from tests.scenario import ZONES_FILE

pytestmark = pytest.mark.integration


def _settings(stack, rf: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(kafka=stack["kafka"], zones=ZONES_FILE, topic_prefix=f"rf-{tag}.", app_id=f"zw-rf-{tag}",
                    partitions=1, replication_factor=rf)


def test_a_factor_above_the_broker_count_is_refused_naming_the_variable(stack):
    s = _settings(stack, 2)
    with pytest.raises(ConfigError, match=r"ZONEWATCH_REPLICATION_FACTOR=2: Kafka at .* refused .* number of brokers"):
        ensure_topics(s, timeout_s=30)


def test_created_topics_have_the_configured_factor(stack):
    from kafka.admin import KafkaAdminClient

    s = _settings(stack, 1)
    created = ensure_topics(s, timeout_s=30)
    assert sorted(created) == sorted(t.name for t in topic_specs(s, s.partitions))
    admin = KafkaAdminClient(bootstrap_servers=s.kafka, **kafka_python_kwargs(s))
    try:
        described = admin.describe_topics(created)
    finally:
        admin.close()
    for topic in described:
        assert topic["partitions"], topic
        assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {1}, topic["name"]
