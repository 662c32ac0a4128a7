"""ZONEWATCH_REPLICATION_FACTOR (CONTRACT §7): read from the environment, checked, and given to every
topic zonewatch creates."""

from __future__ import annotations

import pytest

from contract import topics
from contract.errors import ConfigError
from contract.kafka_settings import topic_specs
from contract.settings import Settings


def test_default_is_one_for_a_single_local_broker(clean_env):
    s = Settings.from_env()
    assert s.replication_factor == 1
    assert {t.replication for t in topic_specs(s, 4)} == {1}


def test_every_topic_gets_the_configured_factor(clean_env):
    clean_env.setenv("ZONEWATCH_REPLICATION_FACTOR", "3")
    s = Settings.from_env()
    specs = topic_specs(s, 6)
    names = {t.name for t in specs}
    # every public topic of CONTRACT §1/§4 and the internal one are there, each with 3 replicas
    assert set(topics.INPUT_TOPICS) | set(topics.OUTPUT_TOPICS) | {s.internal_zone_events} <= names
    assert [t.replication for t in specs] == [3] * len(specs)


def test_prefixed_deployment_keeps_the_factor(clean_env):
    clean_env.setenv("ZONEWATCH_REPLICATION_FACTOR", "2")
    clean_env.setenv("ZONEWATCH_TOPIC_PREFIX", "drill.")
    specs = topic_specs(Settings.from_env(), 1)
    assert all(t.name.startswith("drill.") and t.replication == 2 for t in specs)


@pytest.mark.parametrize("raw", ["0", "-1"])
def test_factor_below_one_is_refused_naming_the_variable(clean_env, raw):
    clean_env.setenv("ZONEWATCH_REPLICATION_FACTOR", raw)
    with pytest.raises(ConfigError, match=r"ZONEWATCH_REPLICATION_FACTOR=-?\d+ must be at least 1"):
        Settings.from_env()


def test_factor_not_an_integer_is_refused(clean_env):
    clean_env.setenv("ZONEWATCH_REPLICATION_FACTOR", "three")
    with pytest.raises(ConfigError, match="ZONEWATCH_REPLICATION_FACTOR='three' is not an integer"):
        Settings.from_env()


def test_explicit_settings_object_is_checked_too():
    with pytest.raises(ConfigError, match="ZONEWATCH_REPLICATION_FACTOR=0"):
        Settings(replication_factor=0).check()
