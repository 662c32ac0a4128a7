"""The gateway app's assembly: Redis connections (no Redis needed to build them), the zones it
serves, the limits from flags and environment."""

from __future__ import annotations

import argparse

import orjson
import pytest

from contract.errors import ConfigError, ZonesFileError
from contract.settings import Settings
from gateway.app import add_parser, create_app, limits_from
from gateway.feed import READ_BLOCK_MS
from gateway.server import Limits
from tests import scenario

TOKEN = "t" * 16


def test_the_readers_socket_timeout_outlasts_its_xread_block():
    # redis-py's default socket timeout (5 s) equals the 5 s XREAD BLOCK: an idle feed then ends
    # reads in timeouts; also a URL that asks for 5 s does not shorten the reader's
    for url in ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0?socket_timeout=5"):
        app = create_app(Settings(redis=url, gateway_tokens=(TOKEN,), zones=scenario.ZONES_FILE))
        hub = app.state.gw.hub
        assert hub.reader is not hub.redis
        assert hub.reader.connection_pool.connection_kwargs["socket_timeout"] > READ_BLOCK_MS / 1000
        assert hub.reader.connection_pool.max_connections + hub.redis.connection_pool.max_connections == 16


def test_zones_come_from_the_contracts_reader(tmp_path):
    app = create_app(Settings(gateway_tokens=(TOKEN,), zones=scenario.ZONES_FILE))
    gj = orjson.loads(app.state.gw.geojson)
    assert [f["id"] for f in gj["features"]] == ["A", "B", "outer", "inner", "core"]
    assert all(set(f["properties"]) == {"name", "kind", "ring"} for f in gj["features"])
    bad = tmp_path / "dup.geojson"
    doc = orjson.loads(scenario.ZONES_FILE.read_bytes())
    doc["features"].append(doc["features"][0])
    bad.write_bytes(orjson.dumps(doc))
    with pytest.raises(ZonesFileError, match="duplicate zone id"):   # refused as the worker refuses it
        create_app(Settings(gateway_tokens=(TOKEN,), zones=bad))


def test_short_tokens_stop_the_app_from_being_built():
    with pytest.raises(ConfigError, match="ZONEWATCH_GATEWAY_TOKENS"):
        create_app(Settings(gateway_tokens=("test-token",), zones=scenario.ZONES_FILE))


def _args(*argv):
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    return p.parse_args(["gateway", *argv])


def test_limits_flag_over_environment_over_default(monkeypatch):
    for var in ("ZONEWATCH_GATEWAY_HEADER_TIMEOUT_S", "ZONEWATCH_GATEWAY_KEEPALIVE_S",
                "ZONEWATCH_GATEWAY_WRITE_TIMEOUT_S", "ZONEWATCH_GATEWAY_MAX_CONNECTIONS"):
        monkeypatch.delenv(var, raising=False)
    assert limits_from(_args()) == Limits()
    monkeypatch.setenv("ZONEWATCH_GATEWAY_HEADER_TIMEOUT_S", "3.5")
    monkeypatch.setenv("ZONEWATCH_GATEWAY_MAX_CONNECTIONS", "200")
    assert limits_from(_args()) == Limits(header_timeout_s=3.5, max_connections=200)
    assert limits_from(_args("--max-connections", "50", "--write-timeout", "7")) == \
        Limits(header_timeout_s=3.5, max_connections=50, write_timeout_s=7)
    monkeypatch.setenv("ZONEWATCH_GATEWAY_MAX_CONNECTIONS", "lots")
    with pytest.raises(ConfigError, match="ZONEWATCH_GATEWAY_MAX_CONNECTIONS"):
        limits_from(_args())
    with pytest.raises(ConfigError, match="--keepalive"):
        limits_from(_args("--max-connections", "5", "--keepalive", "0"))


def test_ingest_tokens_come_from_their_own_variable(monkeypatch):
    monkeypatch.setenv("ZONEWATCH_GATEWAY_TOKENS", "r" * 20)
    monkeypatch.setenv("ZONEWATCH_INGEST_TOKENS", f" {'i' * 20} ,, {'j' * 20} ")
    monkeypatch.setenv("ZONEWATCH_ZONES", str(scenario.ZONES_FILE))
    s = Settings.from_env()
    assert s.gateway_tokens == ("r" * 20,) and s.ingest_tokens == ("i" * 20, "j" * 20)
    assert "i" * 20 not in repr(s)          # never printed
    app = create_app(s)
    assert app.state.gw.intake is not None and app.state.gw.tokens.intake
    monkeypatch.delenv("ZONEWATCH_INGEST_TOKENS")
    assert create_app(Settings.from_env()).state.gw.intake is None   # unset: intake off


def test_intake_options_flag_over_environment_over_default(monkeypatch):
    from gateway.app import intake_from

    for var in ("ZONEWATCH_INGEST_TIMEOUT_S", "ZONEWATCH_INGEST_BODY_TIMEOUT_S", "ZONEWATCH_INGEST_CONCURRENCY"):
        monkeypatch.delenv(var, raising=False)
    assert intake_from(_args()) == {"produce_timeout_s": 5.0, "body_timeout_s": 60.0, "concurrency": 4}
    monkeypatch.setenv("ZONEWATCH_INGEST_CONCURRENCY", "2")
    assert intake_from(_args("--ingest-timeout", "3"))["concurrency"] == 2
    assert intake_from(_args("--ingest-timeout", "3"))["produce_timeout_s"] == 3.0
    with pytest.raises(ConfigError, match="--ingest-body-timeout"):
        intake_from(_args("--ingest-body-timeout", "0"))
    monkeypatch.setenv("ZONEWATCH_INGEST_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="ZONEWATCH_INGEST_CONCURRENCY"):
        intake_from(_args())


def test_forwarded_allow_ips_default_to_nobody_and_take_addresses_or_networks(monkeypatch):
    from gateway.app import forwarded_allow_ips

    monkeypatch.delenv("ZONEWATCH_GATEWAY_FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")            # uvicorn's variable: not ours, ignored
    assert forwarded_allow_ips(_args()) == ()
    monkeypatch.setenv("ZONEWATCH_GATEWAY_FORWARDED_ALLOW_IPS", "10.0.0.5, 192.168.0.0/16")
    assert forwarded_allow_ips(_args()) == ("10.0.0.5", "192.168.0.0/16")
    assert forwarded_allow_ips(_args("--forwarded-allow-ips", "::1")) == ("::1",)
    assert forwarded_allow_ips(_args("--forwarded-allow-ips", "")) == ()
    for bad in ("*", "proxy.local", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="forwarded-allow-ips"):
            forwarded_allow_ips(_args("--forwarded-allow-ips", bad))
