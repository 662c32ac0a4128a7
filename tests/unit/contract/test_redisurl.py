"""contract/redisurl.py: the Sentinel URL form, and the clients it builds (no server needed:
building a client connects nothing). The failover itself: tests/integration/test_sentinel.py."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from contract import redisurl
from contract.errors import ConfigError
from contract.security import redacted_url
from contract.settings import _with_redis_password


def test_full_sentinel_url():
    t = redisurl.parse_sentinel("redis+sentinel://zw:s%40cret@10.0.0.1:26379,10.0.0.2:26380,[::1]/zonewatch/3"
                                "?socket_timeout=2.5&sentinel_password=sp&min_other_sentinels=1&client_name=w1")
    assert t.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26379))
    assert (t.master, t.db, t.tls, t.min_other_sentinels) == ("zonewatch", 3, False, 1)
    assert t.connection == {"username": "zw", "password": "s@cret", "socket_timeout": 2.5, "client_name": "w1"}
    assert t.sentinel == {"password": "sp", "socket_timeout": 2.5}  # the primary's password is not the sentinels'


def test_minimal_sentinel_url_defaults_db_0_and_port_26379():
    t = redisurl.parse_sentinel("redis+sentinel://sentinel-a,sentinel-b:5000/mymaster")
    assert t.sentinels == (("sentinel-a", 26379), ("sentinel-b", 5000))
    assert (t.master, t.db, t.connection, t.sentinel) == ("mymaster", 0, {}, {})


def test_tls_reaches_redis_and_the_sentinels():
    t = redisurl.parse_sentinel("rediss+sentinel://:pw@h:1/m/0?ssl_ca_certs=/ca.pem")
    assert t.tls and t.connection == {"password": "pw", "ssl_ca_certs": "/ca.pem", "ssl": True}
    assert t.sentinel == {"ssl_ca_certs": "/ca.pem", "ssl": True}


@pytest.mark.parametrize("url,why", [
    ("redis+sentinel://h:1", "master name is missing"),
    ("redis+sentinel://h:1/", "master name is missing"),
    ("redis+sentinel://h:1/m/0/extra", "segments"),
    ("redis+sentinel://h:1/m/zero", "not a number"),
    ("redis+sentinel://h:99999/m", "out of range"),
    ("redis+sentinel://h:1,,h2:2/m", "is not host or host:port"),
    ("redis+sentinel://h:1/m?socket_timeout=soon", "socket_timeout"),
    ("redis+sentinel://h:1/m?min_other_sentinels=x", "not a number"),
])
def test_bad_sentinel_urls_name_what_to_fix(url, why):
    with pytest.raises(ConfigError, match=why) as exc:
        redisurl.parse_sentinel(url)
    assert redisurl.FORM in str(exc.value)


def test_the_error_never_shows_the_password():
    with pytest.raises(ConfigError) as exc:
        redisurl.parse_sentinel("redis+sentinel://zw:topsecret@h:1")
    assert "topsecret" not in str(exc.value)


def test_check_refuses_unknown_schemes():
    redisurl.check("redis://127.0.0.1:6379/0")
    redisurl.check("redis+sentinel://h/m")
    with pytest.raises(ConfigError, match="scheme"):
        redisurl.check("http://127.0.0.1:6379/0")


def test_with_db_and_sentinel_url_round_trip():
    url = redisurl.sentinel_url([("127.0.0.1", 26379), ("::1", 26380)], "zw master", 0, user="u", password="p@ss")
    assert url == "redis+sentinel://u:p%40ss@127.0.0.1:26379,[::1]:26380/zw%20master/0"
    t = redisurl.parse_sentinel(redisurl.with_db(url, 7))
    assert (t.master, t.db, t.connection["password"]) == ("zw master", 7, "p@ss")
    assert redisurl.with_db("redis://h:1/0?db=2&socket_timeout=1", 5) == "redis://h:1/5?socket_timeout=1"
    assert redisurl.with_db("rediss://u@h:1?ssl_ca_certs=/c", 4) == "rediss://u@h:1/4?ssl_ca_certs=/c"


def test_password_file_and_redaction_work_on_sentinel_urls():
    url = _with_redis_password("redis+sentinel://zonewatch@h1:1,h2:2/m/0", "pw/1")
    assert redisurl.parse_sentinel(url).connection == {"username": "zonewatch", "password": "pw/1"}
    assert redacted_url(url) == "redis+sentinel://zonewatch:***@h1:1,h2:2/m/0"
    assert "sp" not in redacted_url("redis+sentinel://h/m?sentinel_password=sp")


def test_plain_urls_build_plain_clients_with_the_keywords():
    c = redisurl.sync_client("redis://127.0.0.1:6399/2", socket_timeout=3.0)
    kw = c.connection_pool.connection_kwargs
    assert (kw["port"], kw["db"], kw["socket_timeout"]) == (6399, 2, 3.0)
    a = redisurl.async_client("redis://127.0.0.1:6399/2?socket_timeout=1", socket_timeout=3.0,
                              health_check_interval=10)
    assert type(a.connection_pool) is aioredis.ConnectionPool
    assert a.connection_pool.connection_kwargs["socket_timeout"] == 1.0  # the URL wins, as with from_url
    b = redisurl.async_client("redis://127.0.0.1:6399/2", max_connections=15, pool_timeout=30)
    assert isinstance(b.connection_pool, aioredis.BlockingConnectionPool)
    assert (b.connection_pool.max_connections, b.connection_pool.timeout) == (15, 30)


def test_sentinel_urls_build_sentinel_clients():
    url = "redis+sentinel://zw:pw@127.0.0.1:26391,127.0.0.1:26392/zonewatch/4?sentinel_password=sp"
    c = redisurl.sync_client(url, socket_timeout=2.0)
    assert isinstance(c, redis.Redis) and isinstance(c.connection_pool, SentinelConnectionPool)
    pool = c.connection_pool
    assert pool.service_name == "zonewatch" and pool.is_master
    assert pool.connection_kwargs["db"] == 4 and pool.connection_kwargs["password"] == "pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26391, 26392]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2.0
    c.close()

    a = redisurl.async_client(url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=10)
    assert isinstance(a.connection_pool, AsyncSentinelPool)
    kw = a.connection_pool.connection_kwargs
    assert (kw["db"], kw["socket_timeout"], kw["health_check_interval"]) == (4, 5.0, 10)
    b = redisurl.async_client(url, max_connections=15, pool_timeout=30)
    assert isinstance(b.connection_pool, AsyncSentinelPool)
    assert isinstance(b.connection_pool, aioredis.BlockingConnectionPool)
    assert (b.connection_pool.max_connections, b.connection_pool.timeout) == (15, 30)

    async def close():
        await a.aclose()
        await b.aclose()
    asyncio.run(close())


def test_a_sentinel_client_without_sentinels_fails_with_a_connection_error():
    """Nothing listens on these ports: the client says no master was found (a ConnectionError, which
    the worker's retry loops and the gateway's 503 handler treat as Redis being down)."""
    c = redisurl.sync_client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/zonewatch/0", socket_timeout=0.5,
                             socket_connect_timeout=0.5)
    with pytest.raises(redis.exceptions.ConnectionError, match="No master found"):
        c.ping()
    c.close()
