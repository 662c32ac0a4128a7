"""Connection security that needs no settings: the Kafka security protocols and SASL mechanisms
zonewatch accepts, secrets read from files, and URLs with their passwords redacted.

The Kafka clients are built from the settings by contract/kafka_settings.py; Redis needs nothing
there: the URL carries it all (`rediss://user:password@host:port/0?ssl_ca_certs=/path/ca.pem`,
which redis-py and redis.asyncio both honour), and `ZONEWATCH_REDIS_PASSWORD_FILE` puts a password
from a file into that URL (settings.py). Anything that prints a URL prints `redacted_url(url)`.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

from .errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
REDACTED = "***"


# ------------------------------------------------------------------------------------ redaction


def redacted_url(url: str) -> str:
    """`url` with its password (and any `password=` query value) replaced by ***; for messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return REDACTED if "@" in url else url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            pairs.append(f"{name}={REDACTED}" if eq and "password" in name.lower() else item)
        query = "&".join(pairs)
    if netloc == parts.netloc and query == parts.query:
        return url
    out = f"{parts.scheme}://{netloc}{parts.path}" if "://" in url else urlunsplit(
        SplitResult(parts.scheme, netloc, parts.path, "", ""))
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def read_secret_file(path: str, variable: str) -> str:
    """The secret in a file (one line; the trailing newline is not part of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read it ({exc.strerror})") from exc
    if not value:
        raise ConfigError(f"{variable}={path}: the file is empty")
    return value
