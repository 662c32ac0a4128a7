"""Redis clients from one URL: a single Redis, or a primary found through Redis Sentinel
(docs/OPERATIONS.md "Redis high availability (Sentinel)"). Every Redis client of zonewatch is built here, so
`ZONEWATCH_REDIS` alone decides whether Redis is one server or a Sentinel-managed pair.

    redis://[[user]:password@]host[:port][/db][?option=value&...]      one server (redis-py from_url)
    rediss://...                                                       the same over TLS
    redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/master[/db][?option=value&...]
    rediss+sentinel://...                                              TLS to Redis and to the sentinels

In a sentinel URL the hosts are the sentinels (port 26379 when left out), `master` is the name
they monitor (`sentinel monitor <master> ...`), `db` is 0 when left out. `user:password` log in to
the primary and its replicas; the sentinels log in with the query options `sentinel_username` and
`sentinel_password` (none by default) and `min_other_sentinels` (0) is the number of peers a
sentinel must see to be believed. Every other query option is a redis-py connection option as in
`from_url` (socket_timeout, socket_connect_timeout, health_check_interval, ssl_ca_certs, ...); the
socket and TLS options apply to the sentinels too. A URL option wins over a keyword of the code,
as with `from_url`.

A client asks the sentinels for the current primary whenever it opens a connection, so after a
failover it reconnects to the promoted replica by itself: commands fail (ConnectionError) until
the sentinels agree on the new primary, then succeed again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.sentinel import Sentinel

from .errors import ConfigError
from .security import redacted_url

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
FORM = "redis+sentinel://[user:password@]host1:port1,host2:port2/mastername/db"
_SENTINEL_ONLY = {"sentinel_username": str, "sentinel_password": str, "min_other_sentinels": int}
_HOST = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed sentinel URL: where the sentinels are, the master's name, and the options."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    tls: bool = False
    connection: dict[str, Any] = field(default_factory=dict)   # primary/replica connection options
    sentinel: dict[str, Any] = field(default_factory=dict)     # sentinel connection options
    min_other_sentinels: int = 0


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"ZONEWATCH_REDIS={redacted_url(url)} is not a valid Sentinel URL: {why}; the form is {FORM}")


def parse_sentinel(url: str) -> SentinelTarget:
    """Parse a redis+sentinel:// or rediss+sentinel:// URL; ConfigError naming what to fix."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES:
        raise _bad(url, f"the scheme must be one of {', '.join(s + '://' for s in SENTINEL_SCHEMES)}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        m = _HOST.match(item.strip())
        if not m:
            raise _bad(url, f"{item!r} is not host or host:port")
        port = int(m["port"]) if m["port"] else SENTINEL_PORT
        if not 0 < port < 65536:
            raise _bad(url, f"port {port} of {item!r} is out of range")
        sentinels.append((m["v6"] or m["host"], port))
    path = [unquote(p) for p in parts.path.strip("/").split("/")] if parts.path.strip("/") else []
    if not path or not path[0]:
        raise _bad(url, "the master name is missing (the path's first segment)")
    if len(path) > 2:
        raise _bad(url, f"the path has {len(path)} segments; it is /mastername or /mastername/db")
    conn: dict[str, Any] = {}
    sent: dict[str, Any] = {}
    min_other = 0
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        value = values[-1]
        if name in _SENTINEL_ONLY:
            try:
                parsed = _SENTINEL_ONLY[name](value)
            except ValueError:
                raise _bad(url, f"{name}={value!r} is not a number") from None
            if name == "min_other_sentinels":
                min_other = int(parsed)
            else:
                sent[name.removeprefix("sentinel_")] = parsed
            continue
        parser: Callable[[str], Any] | None = URL_QUERY_ARGUMENT_PARSERS.get(name)  # type: ignore[assignment]
        try:
            conn[name] = parser(value) if parser else value
        except (TypeError, ValueError):
            raise _bad(url, f"invalid value for {name!r}") from None
    db_text = conn.pop("db", None)
    if db_text is None and len(path) == 2:
        db_text = path[1]
    try:
        db = int(db_text) if db_text is not None else 0
    except ValueError:
        raise _bad(url, f"the db {db_text!r} is not a number") from None
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            conn["username"] = unquote(user)
        if colon:
            conn["password"] = unquote(password)
    tls = scheme == "rediss+sentinel"
    for k, v in conn.items():  # socket and TLS options reach the sentinels too
        if k.startswith("socket_") or (tls and k.startswith("ssl")):
            sent.setdefault(k, v)
    if tls:
        conn["ssl"] = sent["ssl"] = True
    return SentinelTarget(tuple(sentinels), path[0], db, tls, conn, sent, min_other)


def with_db(url: str, db: int) -> str:
    """The same URL on database `db` (tests and the bench give each deployment a database)."""
    parts = urlsplit(url)
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
    if is_sentinel(url):
        master = parts.path.strip("/").split("/")[0]
        return urlunsplit(parts._replace(path=f"/{master}/{db}", query=query))
    return urlunsplit(parts._replace(path=f"/{db}", query=query))


def sentinel_url(sentinels: list[tuple[str, int]], master: str, db: int = 0, *, user: str = "",
                 password: str = "", tls: bool = False) -> str:
    """Compose a sentinel URL (deploy/sentinel.py prints one, tests build one)."""
    auth = ""
    if user or password:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in sentinels)
    return f"{'rediss' if tls else 'redis'}+sentinel://{auth}{hosts}/{quote(master, safe='')}/{db}"


# ------------------------------------------------------------------------------------ clients


class _AsyncBlockingSentinelPool(AsyncSentinelPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection (as BlockingConnectionPool does)."""


class AsyncSentinelRedis(aioredis.Redis):
    """The primary's client; closing it also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            await manager.aclose()


class SentinelRedis(redis.Redis):
    """The primary's client (sync); closing it also closes its connections to the sentinels."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            manager.close()


def async_client(url: str, *, pool_timeout: float | None = None, **kw: Any) -> aioredis.Redis:
    """A redis.asyncio client for `url` with connection options `kw` (socket_timeout, ...).

    pool_timeout: a bounded pool of `max_connections` that waits up to this many seconds for a
    free connection (BlockingConnectionPool) instead of failing at once."""
    if not is_sentinel(url):
        if pool_timeout is None:
            return aioredis.from_url(url, **kw)
        return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(url, timeout=pool_timeout, **kw))
    t = parse_sentinel(url)
    conn = {**kw, **t.connection, "db": t.db}
    sentinel_kw = {**{k: v for k, v in kw.items() if k.startswith("socket_")}, **t.sentinel}
    manager = AsyncSentinel(list(t.sentinels), min_other_sentinels=t.min_other_sentinels,
                            sentinel_kwargs=sentinel_kw)
    if pool_timeout is not None:
        conn.update(connection_pool_class=_AsyncBlockingSentinelPool, timeout=pool_timeout)
    client: aioredis.Redis = manager.master_for(t.master, redis_class=AsyncSentinelRedis, **conn)
    return client


def sync_client(url: str, **kw: Any) -> redis.Redis:
    """A redis-py (synchronous) client for `url` with connection options `kw`."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kw)
    t = parse_sentinel(url)
    conn = {**kw, **t.connection, "db": t.db}
    sentinel_kw = {**{k: v for k, v in kw.items() if k.startswith("socket_")}, **t.sentinel}
    manager = Sentinel(list(t.sentinels), min_other_sentinels=t.min_other_sentinels, sentinel_kwargs=sentinel_kw)
    client: redis.Redis = manager.master_for(t.master, redis_class=SentinelRedis, **conn)
    return client


def check(url: str) -> None:
    """ConfigError when `url` cannot give a client (a bad sentinel URL, an unknown scheme)."""
    if is_sentinel(url):
        parse_sentinel(url)
        return
    try:
        redis.connection.parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"ZONEWATCH_REDIS={redacted_url(url)}: {exc} (or {FORM})") from None
