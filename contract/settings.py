"""Settings from the environment (CONTRACT §7, README "Extra settings"). Every command reads them;
CLI flags override. `Settings.check()` refuses unusable values naming the variable and the fix."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import topics
from .errors import ConfigError
from .security import PROTOCOLS, SASL_MECHANISMS, read_secret_file, redacted_url

DATA_DIR = Path(__file__).parent / "data"
DEMO_ZONES = DATA_DIR / "demo_zones.geojson"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _env_secret(name: str) -> str:
    """A secret from `NAME` or from the file named by `NAME_FILE` (not both)."""
    value, path = os.environ.get(name, ""), os.environ.get(f"{name}_FILE", "")
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    return read_secret_file(path, f"{name}_FILE") if path else value


def redis_url_from_env(default: str = "redis://127.0.0.1:6379/0") -> str:
    """ZONEWATCH_REDIS, with the password of ZONEWATCH_REDIS_PASSWORD_FILE put in when that is set."""
    url = _env("ZONEWATCH_REDIS", default)
    path = os.environ.get("ZONEWATCH_REDIS_PASSWORD_FILE")
    if path:
        url = _with_redis_password(url, read_secret_file(path, "ZONEWATCH_REDIS_PASSWORD_FILE"))
    return url


def _with_redis_password(url: str, password: str) -> str:
    """`url` with `password` in its userinfo (ZONEWATCH_REDIS_PASSWORD_FILE)."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError("ZONEWATCH_REDIS carries a password and ZONEWATCH_REDIS_PASSWORD_FILE is set; use one")
    hostport = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


def _tokens(name: str) -> tuple[str, ...]:
    """A comma-separated token list (blanks around and between commas ignored)."""
    return tuple(t.strip() for t in _env(name, "").split(",") if t.strip())


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc


@dataclass(frozen=True)
class Settings:
    """All runtime settings; defaults suit one local machine (`make up`)."""

    kafka: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"   # may carry a password: printed only via redacted_url
    zones: Path = DEMO_ZONES
    zone_id_property: str | None = None  # ZONEWATCH_ZONE_ID_PROPERTY: gives a feature without `id` its id
    tz: str = "Asia/Shanghai"
    caller_secret: str = field(default="", repr=False)
    topic_prefix: str = ""
    app_id: str = "zonewatch"
    gateway_tokens: tuple[str, ...] = field(default=(), repr=False)
    # CONTRACT §7: tokens allowed to POST /ingest/... (apart from the read tokens); () = intake off
    ingest_tokens: tuple[str, ...] = field(default=(), repr=False)
    # Connection security (docs/SECURITY.md); the defaults are the plaintext local stack.
    kafka_security_protocol: str = "PLAINTEXT"   # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # with SASL_*: SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    kafka_ca: Path | None = None                 # CA bundle (PEM) for SSL / SASL_SSL; None = system CAs
    kafka_cert: Path | None = None               # client certificate (PEM) for mutual TLS
    kafka_key: Path | None = None                # its private key (PEM)
    kafka_key_password: str = field(default="", repr=False)
    # Not in the contract's list, documented in the README.
    partitions: int = 4               # partitions of the internal zone-events topic
    future_tolerance_ms: int = 300_000  # how far past the host clock a ts may lie
    h3_resolution: int = 9
    flush_interval_ms: int = 25       # minimum gap between two state writes (contract: <= 250 ms)
    ingest_linger_ms: int = 5         # how long a small input batch waits for more
    unit_stale_ms: int = 120_000
    rules: Path | None = None
    plan: Path | None = None          # ZONEWATCH_PLAN (CONTRACT §10): the duty plan, None = no plan
    # A day of duty (README "Takeover, fencing, decisions"): the grace (CONTRACT §3, §7), the
    # watermark's bounds, how fast a dead worker's partitions move, state snapshots.
    grace_ms: int = 600_000                 # ZONEWATCH_GRACE_S
    watermark_idle_ms: int = 30_000         # a patrol.gps partition silent this long stops holding it back
    watermark_max_lag_ms: int = 60_000      # the watermark is never further behind the stream clock
    session_timeout_ms: int = 6_000         # consumer groups: a dead member leaves after this
    instance_id: str = ""                   # static group membership (a restarted worker keeps its partitions)
    snapshot_interval_ms: int = 10_000      # state snapshots per partition, at most this often
    unit_forget_ms: int = 24 * 3_600_000    # units silent this long leave zw:units* and memory
    camera_silent_ms: int = 1_800_000       # ZONEWATCH_CAMERA_SILENT_S (CONTRACT §3 "Health")
    # CONTRACT §7: replicas of every topic zonewatch creates (1 locally, 3 on a production cluster;
    # docs/OPERATIONS.md "Replication" explains min.insync.replicas with it).
    replication_factor: int = 1
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        tokens = _tokens("ZONEWATCH_GATEWAY_TOKENS")
        rules = os.environ.get("ZONEWATCH_RULES")
        s = cls(
            kafka=_env("ZONEWATCH_KAFKA", cls.kafka),
            redis=redis_url_from_env(),
            zones=Path(_env("ZONEWATCH_ZONES", str(DEMO_ZONES))),
            zone_id_property=os.environ.get("ZONEWATCH_ZONE_ID_PROPERTY") or None,
            tz=_env("ZONEWATCH_TZ", cls.tz),
            caller_secret=_env("ZONEWATCH_CALLER_SECRET", ""),
            topic_prefix=os.environ.get("ZONEWATCH_TOPIC_PREFIX", ""),
            app_id=_env("ZONEWATCH_APP_ID", cls.app_id),
            gateway_tokens=tokens,
            ingest_tokens=_tokens("ZONEWATCH_INGEST_TOKENS"),
            partitions=_env_int("ZONEWATCH_PARTITIONS", cls.partitions),
            future_tolerance_ms=_env_int("ZONEWATCH_FUTURE_TOLERANCE_MS", cls.future_tolerance_ms),
            h3_resolution=_env_int("ZONEWATCH_H3_RESOLUTION", cls.h3_resolution),
            flush_interval_ms=_env_int("ZONEWATCH_FLUSH_MS", cls.flush_interval_ms),
            ingest_linger_ms=_env_int("ZONEWATCH_INGEST_LINGER_MS", cls.ingest_linger_ms),
            rules=Path(rules) if rules else None,
            plan=_env_path("ZONEWATCH_PLAN"),
            grace_ms=_env_int("ZONEWATCH_GRACE_S", cls.grace_ms // 1000) * 1000,
            watermark_idle_ms=_env_int("ZONEWATCH_WATERMARK_IDLE_MS", cls.watermark_idle_ms),
            watermark_max_lag_ms=_env_int("ZONEWATCH_WATERMARK_MAX_LAG_MS", cls.watermark_max_lag_ms),
            session_timeout_ms=_env_int("ZONEWATCH_SESSION_TIMEOUT_MS", cls.session_timeout_ms),
            instance_id=_env("ZONEWATCH_INSTANCE_ID", ""),
            snapshot_interval_ms=_env_int("ZONEWATCH_SNAPSHOT_MS", cls.snapshot_interval_ms),
            unit_forget_ms=_env_int("ZONEWATCH_UNIT_FORGET_S", cls.unit_forget_ms // 1000) * 1000,
            camera_silent_ms=_env_int("ZONEWATCH_CAMERA_SILENT_S", cls.camera_silent_ms // 1000) * 1000,
            replication_factor=_env_int("ZONEWATCH_REPLICATION_FACTOR", cls.replication_factor),
            kafka_security_protocol=_env("ZONEWATCH_KAFKA_SECURITY_PROTOCOL", cls.kafka_security_protocol).upper(),
            kafka_sasl_mechanism=_env("ZONEWATCH_KAFKA_SASL_MECHANISM", cls.kafka_sasl_mechanism).upper(),
            kafka_username=_env("ZONEWATCH_KAFKA_USERNAME", ""),
            kafka_password=_env_secret("ZONEWATCH_KAFKA_PASSWORD"),
            kafka_ca=_env_path("ZONEWATCH_KAFKA_CA"),
            kafka_cert=_env_path("ZONEWATCH_KAFKA_CERT"),
            kafka_key=_env_path("ZONEWATCH_KAFKA_KEY"),
            kafka_key_password=_env_secret("ZONEWATCH_KAFKA_KEY_PASSWORD"),
        )
        s.check()
        return s

    def __repr__(self) -> str:
        """Like the dataclass repr, without secrets: passwords, tokens and the caller secret are
        left out and the Redis URL is redacted (docs/SECURITY.md: secrets are never logged)."""
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "redis":
                value = redacted_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def check(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigError(f"ZONEWATCH_PARTITIONS={self.partitions} must be 1..1024")
        if not 0 <= self.h3_resolution <= 15:
            raise ConfigError(f"ZONEWATCH_H3_RESOLUTION={self.h3_resolution} must be 0..15")
        if not 1 <= self.flush_interval_ms <= 250:
            raise ConfigError(f"ZONEWATCH_FLUSH_MS={self.flush_interval_ms} must be 1..250 (contract §3)")
        if not 0 <= self.grace_ms <= 24 * 3_600_000:
            raise ConfigError(f"ZONEWATCH_GRACE_S={self.grace_ms // 1000} must be 0..86400 seconds")
        if not 1_000 <= self.watermark_idle_ms <= 3_600_000:
            raise ConfigError(f"ZONEWATCH_WATERMARK_IDLE_MS={self.watermark_idle_ms} must be 1000..3600000")
        if not 0 <= self.watermark_max_lag_ms <= 3_600_000:
            raise ConfigError(f"ZONEWATCH_WATERMARK_MAX_LAG_MS={self.watermark_max_lag_ms} must be 0..3600000")
        if not 6_000 <= self.session_timeout_ms <= 300_000:
            raise ConfigError(f"ZONEWATCH_SESSION_TIMEOUT_MS={self.session_timeout_ms} must be 6000..300000 "
                              "(Kafka's group.min.session.timeout.ms is 6 s by default)")
        if not 60_000 <= self.camera_silent_ms <= 24 * 3_600_000:
            raise ConfigError(f"ZONEWATCH_CAMERA_SILENT_S={self.camera_silent_ms // 1000} must be 60..86400 seconds")
        if not 500 <= self.snapshot_interval_ms <= 3_600_000:
            raise ConfigError(f"ZONEWATCH_SNAPSHOT_MS={self.snapshot_interval_ms} must be 500..3600000")
        if self.replication_factor < 1:
            raise ConfigError(f"ZONEWATCH_REPLICATION_FACTOR={self.replication_factor} must be at least 1 "
                              "(1 for a single broker, 3 on a production cluster)")
        if not self.zones.is_file():
            raise ConfigError(f"ZONEWATCH_ZONES={self.zones} does not exist or is not a file")
        if self.plan is not None and not Path(self.plan).is_file():
            raise ConfigError(f"ZONEWATCH_PLAN={self.plan} does not exist or is not a file")
        self.check_security()

    def check_security(self) -> None:
        proto = self.kafka_security_protocol
        if proto not in PROTOCOLS:
            raise ConfigError(f"ZONEWATCH_KAFKA_SECURITY_PROTOCOL={proto!r} must be one of {', '.join(PROTOCOLS)}")
        if proto.startswith("SASL_"):
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"ZONEWATCH_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r} must be one "
                                  f"of {', '.join(SASL_MECHANISMS)}")
            if not self.kafka_username or not self.kafka_password:
                raise ConfigError(f"ZONEWATCH_KAFKA_SECURITY_PROTOCOL={proto} needs ZONEWATCH_KAFKA_USERNAME and "
                                  "ZONEWATCH_KAFKA_PASSWORD (or ZONEWATCH_KAFKA_PASSWORD_FILE)")
        for name, path in (("ZONEWATCH_KAFKA_CA", self.kafka_ca), ("ZONEWATCH_KAFKA_CERT", self.kafka_cert),
                           ("ZONEWATCH_KAFKA_KEY", self.kafka_key)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name}={path} does not exist or is not a file")
        if (self.kafka_cert is None) != (self.kafka_key is None):
            raise ConfigError("ZONEWATCH_KAFKA_CERT and ZONEWATCH_KAFKA_KEY go together (mutual TLS)")

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    # Topic names (CONTRACT §1, §4): every public topic carries the prefix.
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def internal_zone_events(self) -> str:
        """Internal repartition topic: batches of normalised events per zone partition."""
        return topics.internal(self.topic_prefix, self.app_id, topics.ZONE_EVENTS_SUFFIX)

    @property
    def internal_snapshots(self) -> str:
        """Internal compacted topic: state snapshots per zone-events partition."""
        return topics.internal(self.topic_prefix, self.app_id, topics.SNAPSHOTS_SUFFIX)
