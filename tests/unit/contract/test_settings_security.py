"""Security settings from the environment, the Kafka client arguments built from them, and that no
secret ever shows in a repr or a printed URL (docs/SECURITY.md)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest

from contract.errors import ConfigError
from contract.kafka_settings import aiokafka_kwargs, faust_broker_credentials, faust_broker_url, kafka_python_kwargs
from contract.security import redacted_url
from contract.settings import Settings, redis_url_from_env

KAFKA_PW = "kafka-S3cret-pw"
REDIS_PW = "redis-S3cret-pw"
SECRETS = (KAFKA_PW, REDIS_PW, "caller-S3cret", "tok-S3cret")


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")], check=True, capture_output=True)
    return d / "ca.pem"


def secure_env(env, tmp_path: Path, ca: Path) -> None:
    (tmp_path / "kafka.pw").write_text(KAFKA_PW + "\n")
    (tmp_path / "redis.pw").write_text(REDIS_PW + "\n")
    env.setenv("ZONEWATCH_KAFKA", "127.0.0.1:19192")
    env.setenv("ZONEWATCH_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    env.setenv("ZONEWATCH_KAFKA_USERNAME", "zonewatch")
    env.setenv("ZONEWATCH_KAFKA_PASSWORD_FILE", str(tmp_path / "kafka.pw"))
    env.setenv("ZONEWATCH_KAFKA_CA", str(ca))
    env.setenv("ZONEWATCH_REDIS", f"rediss://zonewatch@127.0.0.1:16479/0?ssl_ca_certs={ca}")
    env.setenv("ZONEWATCH_REDIS_PASSWORD_FILE", str(tmp_path / "redis.pw"))
    env.setenv("ZONEWATCH_CALLER_SECRET", "caller-S3cret")
    env.setenv("ZONEWATCH_GATEWAY_TOKENS", "tok-S3cret,other")


def test_defaults_are_plaintext_and_add_no_client_arguments(clean_env):
    s = Settings.from_env()
    assert s.kafka_security_protocol == "PLAINTEXT" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert aiokafka_kwargs(s) == {} and kafka_python_kwargs(s) == {}
    assert faust_broker_credentials(s) is None
    assert faust_broker_url(s) == "kafka://127.0.0.1:9092"
    assert faust_broker_url(s.with_(kafka="a:1, b:2")) == "kafka://a:1;kafka://b:2"


def test_secure_settings_from_env_and_client_arguments(clean_env, tmp_path, ca_file):
    secure_env(clean_env, tmp_path, ca_file)
    s = Settings.from_env()
    assert (s.kafka_security_protocol, s.kafka_username, s.kafka_password) == ("SASL_SSL", "zonewatch", KAFKA_PW)
    assert s.redis == f"rediss://zonewatch:{REDIS_PW}@127.0.0.1:16479/0?ssl_ca_certs={ca_file}"
    assert redis_url_from_env() == s.redis

    kw = aiokafka_kwargs(s)
    ctx = kw.pop("ssl_context")
    assert kw == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "zonewatch", "sasl_plain_password": KAFKA_PW}
    assert isinstance(ctx, ssl.SSLContext) and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED

    kp = kafka_python_kwargs(s)
    assert kp["security_protocol"] == "SASL_SSL" and kp["ssl_cafile"] == str(ca_file)
    assert kp["ssl_check_hostname"] is True and kp["sasl_plain_password"] == KAFKA_PW
    from kafka import KafkaProducer  # every key is a real kafka-python setting
    assert set(kp) <= set(KafkaProducer.DEFAULT_CONFIG)

    creds = faust_broker_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert KAFKA_PW not in repr(creds)

    plain_sasl = s.with_(kafka_security_protocol="SASL_PLAINTEXT")
    assert faust_broker_credentials(plain_sasl).protocol.value == "SASL_PLAINTEXT"
    assert "ssl_context" not in aiokafka_kwargs(plain_sasl)
    tls_only = s.with_(kafka_security_protocol="SSL")
    assert isinstance(faust_broker_credentials(tls_only), faust.SSLCredentials)
    assert set(aiokafka_kwargs(tls_only)) == {"security_protocol", "ssl_context"}


def test_no_secret_in_repr_str_or_printed_urls(clean_env, tmp_path, ca_file):
    secure_env(clean_env, tmp_path, ca_file)
    s = Settings.from_env()
    for text in (repr(s), str(s), f"{s}", f"{s!r}", redacted_url(s.redis)):
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    assert "rediss://zonewatch:***@127.0.0.1:16479/0" in repr(s)
    assert "zonewatch" in repr(s)  # the user name is not a secret


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("rediss://u:pw@h:6380/1?ssl_ca_certs=/ca.pem", "rediss://u:***@h:6380/1?ssl_ca_certs=/ca.pem"),
    ("redis://:pw@h/0", "redis://:***@h/0"),
    ("redis://u:p%40w@h/0", "redis://u:***@h/0"),
    ("redis://u:p@w@h/0", "redis://u:***@h/0"),
    ("redis://h/0?password=pw&db=2", "redis://h/0?password=***&db=2"),
    ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
])
def test_redacted_url(url, shown):
    assert redacted_url(url) == shown


@pytest.mark.parametrize("env, message", [
    ({"ZONEWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
    ({"ZONEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ZONEWATCH_KAFKA_USERNAME": "u"},
     "needs ZONEWATCH_KAFKA_USERNAME"),
    ({"ZONEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ZONEWATCH_KAFKA_USERNAME": "u",
      "ZONEWATCH_KAFKA_PASSWORD": "p", "ZONEWATCH_KAFKA_SASL_MECHANISM": "GSSAPI"}, "must be one of"),
    ({"ZONEWATCH_KAFKA_PASSWORD": "p", "ZONEWATCH_KAFKA_PASSWORD_FILE": "/x"}, "not both"),
    ({"ZONEWATCH_KAFKA_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read"),
    ({"ZONEWATCH_KAFKA_CA": "/nonexistent/ca.pem"}, "does not exist"),
    ({"ZONEWATCH_KAFKA_CERT": __file__}, "go together"),
    ({"ZONEWATCH_REDIS": "redis://u:pw@h/0", "ZONEWATCH_REDIS_PASSWORD_FILE": __file__}, "use one"),
])
def test_bad_security_settings_are_refused_with_the_variable_named(clean_env, env, message):
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_empty_password_file_is_refused(clean_env, tmp_path):
    (tmp_path / "pw").write_text("\n")
    clean_env.setenv("ZONEWATCH_KAFKA_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(ConfigError, match="empty"):
        Settings.from_env()
