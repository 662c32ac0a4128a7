"""Every `ZONEWATCH_*` setting of contract/settings.py: its variable, its default, how its value is
read and the range it must lie in, against a list written here by hand (the oracle), and the
documentation (docs/OPERATIONS.md "Settings") generated from the one declaration of each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.errors import ConfigError
from contract.settings import DEMO_ZONES, Settings

REPO = Path(__file__).resolve().parents[3]
ZONES = str(REPO / "tests" / "zones_test.geojson")
PLAN = str(REPO / "contract" / "data" / "plans" / "demo.toml")

#: field -> default, by hand from CONTRACT §7 and the README of the time
DEFAULTS = {
    "kafka": "127.0.0.1:9092", "redis": "redis://127.0.0.1:6379/0", "zones": DEMO_ZONES, "zone_id_property": None,
    "tz": "Asia/Shanghai", "caller_secret": "", "topic_prefix": "", "app_id": "zonewatch", "gateway_tokens": (),
    "ingest_tokens": (), "kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_username": "", "kafka_password": "", "kafka_ca": None, "kafka_cert": None, "kafka_key": None,
    "kafka_key_password": "", "partitions": 4, "future_tolerance_ms": 300_000, "h3_resolution": 9,
    "flush_interval_ms": 25, "ingest_linger_ms": 5, "unit_stale_ms": 120_000, "rules": None, "plan": None,
    "grace_ms": 600_000,
    "watermark_idle_ms": 30_000, "watermark_max_lag_ms": 60_000, "session_timeout_ms": 6_000, "instance_id": "",
    "snapshot_interval_ms": 10_000, "unit_forget_ms": 86_400_000, "camera_silent_ms": 1_800_000,
    "replication_factor": 1, "rewind_retention_ms": 604_800_000, "extra": {},
}

#: (variable, value set, field, value read)
READ = [
    ("ZONEWATCH_KAFKA", "k1:9092,k2:9092", "kafka", "k1:9092,k2:9092"),
    ("ZONEWATCH_REDIS", "redis://h:1/2", "redis", "redis://h:1/2"),
    ("ZONEWATCH_ZONES", ZONES, "zones", Path(ZONES)),
    ("ZONEWATCH_ZONE_ID_PROPERTY", "adcode", "zone_id_property", "adcode"),
    ("ZONEWATCH_TZ", "Asia/Kathmandu", "tz", "Asia/Kathmandu"),
    ("ZONEWATCH_CALLER_SECRET", "pepper", "caller_secret", "pepper"),
    ("ZONEWATCH_TOPIC_PREFIX", "city.", "topic_prefix", "city."),
    ("ZONEWATCH_APP_ID", "zw2", "app_id", "zw2"),
    ("ZONEWATCH_GATEWAY_TOKENS", " a-token-of-16-chars , , b-token-of-16-chars", "gateway_tokens",
     ("a-token-of-16-chars", "b-token-of-16-chars")),
    ("ZONEWATCH_INGEST_TOKENS", "i-token-of-16-chars", "ingest_tokens", ("i-token-of-16-chars",)),
    ("ZONEWATCH_KAFKA_SECURITY_PROTOCOL", "ssl", "kafka_security_protocol", "SSL"),
    ("ZONEWATCH_KAFKA_SASL_MECHANISM", "scram-sha-256", "kafka_sasl_mechanism", "SCRAM-SHA-256"),
    ("ZONEWATCH_KAFKA_USERNAME", "zw", "kafka_username", "zw"),
    ("ZONEWATCH_KAFKA_PASSWORD", "pw", "kafka_password", "pw"),
    ("ZONEWATCH_KAFKA_KEY_PASSWORD", "kpw", "kafka_key_password", "kpw"),
    ("ZONEWATCH_KAFKA_CA", ZONES, "kafka_ca", Path(ZONES)),
    ("ZONEWATCH_PARTITIONS", "7", "partitions", 7),
    ("ZONEWATCH_FUTURE_TOLERANCE_MS", "1000", "future_tolerance_ms", 1000),
    ("ZONEWATCH_H3_RESOLUTION", "8", "h3_resolution", 8),
    ("ZONEWATCH_FLUSH_MS", "100", "flush_interval_ms", 100),
    ("ZONEWATCH_INGEST_LINGER_MS", "0", "ingest_linger_ms", 0),
    ("ZONEWATCH_RULES", ZONES, "rules", Path(ZONES)),
    ("ZONEWATCH_PLAN", PLAN, "plan", Path(PLAN)),
    ("ZONEWATCH_GRACE_S", "240", "grace_ms", 240_000),
    ("ZONEWATCH_WATERMARK_IDLE_MS", "12000", "watermark_idle_ms", 12_000),
    ("ZONEWATCH_WATERMARK_MAX_LAG_MS", "0", "watermark_max_lag_ms", 0),
    ("ZONEWATCH_SESSION_TIMEOUT_MS", "10000", "session_timeout_ms", 10_000),
    ("ZONEWATCH_INSTANCE_ID", "worker-3", "instance_id", "worker-3"),
    ("ZONEWATCH_SNAPSHOT_MS", "5000", "snapshot_interval_ms", 5_000),
    ("ZONEWATCH_UNIT_FORGET_S", "3600", "unit_forget_ms", 3_600_000),
    ("ZONEWATCH_CAMERA_SILENT_S", "60", "camera_silent_ms", 60_000),
    ("ZONEWATCH_REPLICATION_FACTOR", "3", "replication_factor", 3),
    ("ZONEWATCH_REWIND_RETENTION_MS", "3600000", "rewind_retention_ms", 3_600_000),
]

#: (variable, lowest and highest accepted value (None: none), the message's tail when out of range)
RANGES = [
    ("ZONEWATCH_PARTITIONS", 1, 1024, "must be 1..1024"),
    ("ZONEWATCH_H3_RESOLUTION", 0, 15, "must be 0..15"),
    ("ZONEWATCH_FLUSH_MS", 1, 250, "must be 1..250 (contract §3)"),
    ("ZONEWATCH_GRACE_S", 0, 86400, "must be 0..86400 seconds"),
    ("ZONEWATCH_WATERMARK_IDLE_MS", 1000, 3600000, "must be 1000..3600000"),
    ("ZONEWATCH_WATERMARK_MAX_LAG_MS", 0, 3600000, "must be 0..3600000"),
    ("ZONEWATCH_SESSION_TIMEOUT_MS", 6000, 300000,
     "must be 6000..300000 (Kafka's group.min.session.timeout.ms is 6 s by default)"),
    ("ZONEWATCH_CAMERA_SILENT_S", 60, 86400, "must be 60..86400 seconds"),
    ("ZONEWATCH_SNAPSHOT_MS", 500, 3600000, "must be 500..3600000"),
    ("ZONEWATCH_REPLICATION_FACTOR", 1, None, "must be at least 1 (1 for a single broker, 3 on a production cluster)"),
    ("ZONEWATCH_REWIND_RETENTION_MS", 60000, 31622400000, "must be 60000..31622400000 (a minute to 366 days)"),
]


def test_the_defaults(clean_env):
    s = Settings.from_env()
    assert {k: getattr(s, k) for k in DEFAULTS} == DEFAULTS
    assert s == Settings()


@pytest.mark.parametrize("var, raw, name, value", READ, ids=[r[0] for r in READ])
def test_each_variable_is_read_into_its_setting(clean_env, var, raw, name, value):
    clean_env.setenv(var, raw)
    s = Settings.from_env()
    assert getattr(s, name) == value
    # and nothing else moved
    assert {k: v for k, v in vars(s).items() if k != name} == {k: v for k, v in DEFAULTS.items() if k != name}


@pytest.mark.parametrize("var", ["ZONEWATCH_KAFKA", "ZONEWATCH_TZ", "ZONEWATCH_PARTITIONS", "ZONEWATCH_GRACE_S",
                                 "ZONEWATCH_ZONES", "ZONEWATCH_KAFKA_SECURITY_PROTOCOL"])
def test_a_blank_variable_is_the_default(clean_env, var):
    clean_env.setenv(var, "")
    assert Settings.from_env() == Settings()


@pytest.mark.parametrize("var, lo, hi, message", RANGES, ids=[r[0] for r in RANGES])
def test_the_bounds_are_accepted_and_values_beyond_refused_naming_the_variable(clean_env, var, lo, hi, message):
    for ok in (lo, hi):
        if ok is not None:
            clean_env.setenv(var, str(ok))
            Settings.from_env()
    for bad in (lo - 1, None if hi is None else hi + 1):
        if bad is None:
            continue
        clean_env.setenv(var, str(bad))
        with pytest.raises(ConfigError) as refused:
            Settings.from_env()
        assert str(refused.value) == f"{var}={bad} {message}"


def test_a_number_that_is_not_one_is_refused(clean_env):
    clean_env.setenv("ZONEWATCH_GRACE_S", "ten")
    with pytest.raises(ConfigError, match=re.escape("ZONEWATCH_GRACE_S='ten' is not an integer")):
        Settings.from_env()


@pytest.mark.parametrize("var", ["ZONEWATCH_ZONES", "ZONEWATCH_PLAN"])
def test_a_file_that_is_not_there_is_refused_naming_the_variable(clean_env, tmp_path, var):
    clean_env.setenv(var, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=re.escape(f"{var}={tmp_path / 'missing.toml'} does not exist or is not "
                                                    "a file")):
        Settings.from_env()


def test_settings_built_in_code_are_checked_alike():
    with pytest.raises(ConfigError, match="ZONEWATCH_FLUSH_MS=300 must be 1..250"):
        Settings(flush_interval_ms=300).check()


def test_the_documented_table_is_the_declarations():
    from contract import settings

    text = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    assert settings.table() in text, "docs/OPERATIONS.md \"Settings\": paste `python -c 'from contract " \
                                     "import settings; print(settings.table())'`"
    variables = {d.env for _n, d, _default in settings.declared()}
    assert variables == {r[0] for r in READ} | {"ZONEWATCH_KAFKA_CERT", "ZONEWATCH_KAFKA_KEY"}
