"""Connection security by configuration alone: Kafka TLS / SASL (SCRAM) and secret hygiene.

Every Kafka client of zonewatch is built with the keyword arguments of this module, so one set
of `ZONEWATCH_KAFKA_*` variables (contract/settings.py, docs/SECURITY.md) secures the worker,
the connectors, `zonewatch topics`, the benchmark and the tests alike:

    aiokafka_kwargs(s)            -> AIOKafkaProducer / AIOKafkaConsumer keyword arguments
    kafka_python_kwargs(s)        -> kafka-python KafkaAdminClient / KafkaProducer / KafkaConsumer
    faust_broker_url(s)           -> faust.App(broker=...)
    faust_broker_credentials(s)   -> faust.App(broker_credentials=...)  (None for PLAINTEXT)

With the default `ZONEWATCH_KAFKA_SECURITY_PROTOCOL=PLAINTEXT` every helper returns nothing
extra, so a plaintext deployment builds exactly the clients it built before.

Redis needs nothing here: the URL carries it all (`rediss://user:password@host:port/0?ssl_ca_certs=
/path/ca.pem`, which redis-py and redis.asyncio both honour), and `ZONEWATCH_REDIS_PASSWORD_FILE`
puts a password from a file into that URL (settings.py). Anything that prints a URL prints
`redacted_url(url)`.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from .errors import ConfigError

if TYPE_CHECKING:  # settings imports this module; no import back
    from faust.types.auth import CredentialsT

    from .settings import Settings

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


# ---------------------------------------------------------------------------------------- kafka


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

