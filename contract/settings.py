"""Settings from the environment (CONTRACT §7, docs/OPERATIONS.md "Settings"). Every command reads
them; CLI flags override. Each is declared once, as a field of `Settings` with its variable,
default, range and meaning (`setting(...)`); `Settings.check()` refuses unusable values naming the
variable and the fix, and `table()` is the documentation."""

from __future__ import annotations

import os
from collections.abc import Callable
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


# --- each setting declared once -----------------------------------------------------------------
# How a setting is read from its variable: reader(variable, the field's default, unit).

def _read_text(name: str, default: Any, _unit: int) -> str:
    return _env(name, default)


def _read_upper(name: str, default: Any, _unit: int) -> str:
    return _env(name, default).upper()


def _read_int(name: str, default: Any, unit: int) -> int:
    """An integer in the variable's unit (seconds for *_S), held in the field's (ms): x unit."""
    return _env_int(name, default // unit) * unit


def _read_optional_text(name: str, _default: Any, _unit: int) -> str | None:
    return os.environ.get(name) or None


def _read_file(name: str, default: Any, _unit: int) -> Path:
    return Path(_env(name, str(default)))


def _read_optional_file(name: str, _default: Any, _unit: int) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _read_user_file(name: str, _default: Any, _unit: int) -> Path | None:
    return _env_path(name)


def _read_tokens(name: str, _default: Any, _unit: int) -> tuple[str, ...]:
    return _tokens(name)


def _read_secret(name: str, _default: Any, _unit: int) -> str:
    return _env_secret(name)


def _read_redis(_name: str, default: Any, _unit: int) -> str:
    return redis_url_from_env(default)


@dataclass(frozen=True)
class Declared:
    """What a setting is beyond its field: its variable, meaning, how it is read and its range (in
    the variable's unit, bounds included; None = open)."""

    env: str
    doc: str
    read: Callable[[str, Any, int], Any] = _read_text
    unit: int = 1                  # field value = variable value x unit (ms held, seconds set)
    lo: int | None = None
    hi: int | None = None
    why: str = ""                  # added to the message refusing a value out of range

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables that set it: its own, and NAME_FILE for a secret that may come from a file."""
        return (self.env, f"{self.env}_FILE") if self.read is _read_secret else (self.env,)

    def refusal(self, value: int) -> str | None:
        """The message refusing `value` (the field's), None when it is in range."""
        shown = value // self.unit
        if (self.lo is None or shown >= self.lo) and (self.hi is None or shown <= self.hi):
            return None
        seconds = " seconds" if self.unit == 1000 else ""
        bounds = f"at least {self.lo}" if self.hi is None else f"{self.lo}..{self.hi}{seconds}"
        return f"{self.env}={shown} must be {bounds}{self.why}"


def setting(default: Any, env: str, doc: str, *, secret: bool = False, **declared: Any) -> Any:
    """A field of Settings read from the variable `env` (faust's settings are declared so too)."""
    return field(default=default, repr=not secret, metadata={"setting": Declared(env, doc, **declared)})


def declared() -> list[tuple[str, Declared, Any]]:
    """(field name, declaration, default) of every setting read from the environment, in order."""
    return [(f.name, f.metadata["setting"], f.default) for f in fields(Settings) if "setting" in f.metadata]


@dataclass(frozen=True)
class Settings:
    """All runtime settings; defaults suit one local machine (`make up`). Every field but
    `unit_stale_ms` and `extra` is a `ZONEWATCH_*` variable: `from_env` reads them, `check`
    refuses values out of range, and `table()` is their documentation (docs/OPERATIONS.md)."""

    kafka: str = setting("127.0.0.1:9092", "ZONEWATCH_KAFKA", "Kafka bootstrap servers, comma-separated")
    redis: str = setting("redis://127.0.0.1:6379/0", "ZONEWATCH_REDIS",   # printed only via redacted_url
                         "Redis URL (`redis+sentinel://` for Sentinel); `ZONEWATCH_REDIS_PASSWORD_FILE` "
                         "puts a password from a file into it", read=_read_redis)
    zones: Path = setting(DEMO_ZONES, "ZONEWATCH_ZONES", "the zones GeoJSON file", read=_read_file)
    zone_id_property: str | None = setting(None, "ZONEWATCH_ZONE_ID_PROPERTY",
                                           "the property that gives a feature without `id` its id (e.g. "
                                           "`adcode`)", read=_read_optional_text)
    tz: str = setting("Asia/Shanghai", "ZONEWATCH_TZ", "IANA time zone of the local day (`today`, zones.daily)")
    caller_secret: str = setting("", "ZONEWATCH_CALLER_SECRET", "key of the callers' `caller_ref` hashes; "
                                 "unset: numbers are dropped", secret=True)
    topic_prefix: str = setting("", "ZONEWATCH_TOPIC_PREFIX", "prefix of every topic name")
    app_id: str = setting("zonewatch", "ZONEWATCH_APP_ID", "consumer groups and internal topics are named by it")
    gateway_tokens: tuple[str, ...] = setting((), "ZONEWATCH_GATEWAY_TOKENS", "the gateway's read tokens, "
                                              "comma-separated", secret=True, read=_read_tokens)
    # CONTRACT §7: tokens allowed to POST /ingest/... (apart from the read tokens); () = intake off
    ingest_tokens: tuple[str, ...] = setting((), "ZONEWATCH_INGEST_TOKENS", "tokens that may POST /ingest "
                                             "(unset: intake off), comma-separated", secret=True,
                                             read=_read_tokens)
    # Connection security (docs/SECURITY.md); the defaults are the plaintext local stack.
    kafka_security_protocol: str = setting("PLAINTEXT", "ZONEWATCH_KAFKA_SECURITY_PROTOCOL",
                                           "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", read=_read_upper)
    kafka_sasl_mechanism: str = setting("SCRAM-SHA-512", "ZONEWATCH_KAFKA_SASL_MECHANISM",
                                        "with SASL_*: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", read=_read_upper)
    kafka_username: str = setting("", "ZONEWATCH_KAFKA_USERNAME", "SASL user")
    kafka_password: str = setting("", "ZONEWATCH_KAFKA_PASSWORD", "SASL password (or `_FILE`: from a file)",
                                  secret=True, read=_read_secret)
    kafka_ca: Path | None = setting(None, "ZONEWATCH_KAFKA_CA", "CA bundle (PEM) for SSL / SASL_SSL; unset: "
                                    "the system's", read=_read_user_file)
    kafka_cert: Path | None = setting(None, "ZONEWATCH_KAFKA_CERT", "client certificate (PEM) for mutual TLS",
                                      read=_read_user_file)
    kafka_key: Path | None = setting(None, "ZONEWATCH_KAFKA_KEY", "its private key (PEM)", read=_read_user_file)
    kafka_key_password: str = setting("", "ZONEWATCH_KAFKA_KEY_PASSWORD", "the key's password (or `_FILE`)",
                                      secret=True, read=_read_secret)
    # Not in the contract's list, documented in docs/OPERATIONS.md "Settings".
    partitions: int = setting(4, "ZONEWATCH_PARTITIONS", "partitions of the internal zone-events topic",
                              read=_read_int, lo=1, hi=1024)
    future_tolerance_ms: int = setting(300_000, "ZONEWATCH_FUTURE_TOLERANCE_MS",
                                       "how far past the host clock a `ts` may lie", read=_read_int)
    h3_resolution: int = setting(9, "ZONEWATCH_H3_RESOLUTION", "H3 resolution of the zone index",
                                 read=_read_int, lo=0, hi=15)
    flush_interval_ms: int = setting(25, "ZONEWATCH_FLUSH_MS", "minimum gap between two state writes",
                                     read=_read_int, lo=1, hi=250, why=" (contract §3)")
    ingest_linger_ms: int = setting(5, "ZONEWATCH_INGEST_LINGER_MS", "how long a small input batch waits "
                                    "for more", read=_read_int)
    unit_stale_ms: int = 120_000      # CONTRACT §3: a fix older than this makes a unit absent (no variable)
    rules: Path | None = setting(None, "ZONEWATCH_RULES", "a level rules file (unset: the default rules)",
                                 read=_read_optional_file)
    plan: Path | None = setting(None, "ZONEWATCH_PLAN", "the duty plan (CONTRACT §10; docs/DUTY.md), a TOML "
                                "file (unset: no plan)", read=_read_user_file)
    # A day of duty (docs/DESIGN.md): the grace (CONTRACT §3, §7), the watermark's bounds, how fast
    # a dead worker's partitions move, state snapshots.
    grace_ms: int = setting(600_000, "ZONEWATCH_GRACE_S", "how late a call may be read and still have its "
                            "response decided from the fixes read before it (CONTRACT §3)",
                            read=_read_int, unit=1000, lo=0, hi=86_400)
    watermark_idle_ms: int = setting(30_000, "ZONEWATCH_WATERMARK_IDLE_MS", "a patrol.gps partition silent "
                                     "this long stops holding the watermark back",
                                     read=_read_int, lo=1_000, hi=3_600_000)
    watermark_max_lag_ms: int = setting(60_000, "ZONEWATCH_WATERMARK_MAX_LAG_MS", "the watermark is never "
                                        "further behind the stream clock", read=_read_int, lo=0, hi=3_600_000)
    session_timeout_ms: int = setting(6_000, "ZONEWATCH_SESSION_TIMEOUT_MS", "a dead worker keeps its "
                                      "partitions this long (consumer groups)", read=_read_int, lo=6_000,
                                      hi=300_000, why=" (Kafka's group.min.session.timeout.ms is 6 s by default)")
    instance_id: str = setting("", "ZONEWATCH_INSTANCE_ID", "static group membership: a restarted worker "
                               "keeps its partitions")
    snapshot_interval_ms: int = setting(10_000, "ZONEWATCH_SNAPSHOT_MS", "state snapshots per partition, at "
                                        "most this often", read=_read_int, lo=500, hi=3_600_000)
    unit_forget_ms: int = setting(24 * 3_600_000, "ZONEWATCH_UNIT_FORGET_S", "units and cameras silent this "
                                  "long leave `zw:units*`, `zw:unit-info` and memory", read=_read_int, unit=1000)
    camera_silent_ms: int = setting(1_800_000, "ZONEWATCH_CAMERA_SILENT_S", "a camera this long without a "
                                    "report is silent (CONTRACT §3 \"Health\")", read=_read_int, unit=1000,
                                    lo=60, hi=86_400)
    # CONTRACT §7: replicas of every topic zonewatch creates (1 locally, 3 on a production cluster;
    # docs/OPERATIONS.md "Replication and min.insync.replicas" explains min.insync.replicas with it).
    replication_factor: int = setting(1, "ZONEWATCH_REPLICATION_FACTOR", "replicas of every topic zonewatch "
                                      "creates (3 on a production cluster)", read=_read_int, lo=1,
                                      why=" (1 for a single broker, 3 on a production cluster)")
    # CONTRACT §11: the rewind's reach, a minute to a leap year (zones.state's min.compaction.lag.ms)
    rewind_retention_ms: int = setting(7 * 24 * 3_600_000, "ZONEWATCH_REWIND_RETENTION_MS",
                                       "how long `zones.state` keeps every record (its `min.compaction.lag.ms`) "
                                       "and how far back `GET /zones?at=` reaches (CONTRACT §11)",
                                       read=_read_int, lo=60_000, hi=366 * 24 * 3_600_000,
                                       why=" (a minute to 366 days)")
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        s = cls(**{name: d.read(d.env, default, d.unit) for name, d, default in declared()})
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
        for name, d, _default in declared():
            if d.lo is not None or d.hi is not None:
                refused = d.refusal(getattr(self, name))
                if refused:
                    raise ConfigError(refused)
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


def table() -> str:
    """The settings as a Markdown table: docs/OPERATIONS.md "Settings" (tests/unit/contract/test_settings.py
    keeps the two equal)."""
    rows = ["| variable | default | range | meaning |", "|---|---|---|---|"]
    for _name, d, default in declared():
        if d.read is _read_int:
            shown = f"{default // d.unit}"
        elif isinstance(default, Path):   # the bundled zones, from the repository's root
            shown = str(default.relative_to(DATA_DIR.parent.parent))
        elif default in ((), None, ""):
            shown = "unset"
        else:
            shown = str(default)
        if d.lo is None and d.hi is None:
            bounds = ""
        elif d.hi is None:
            bounds = f"≥ {d.lo}"
        else:
            bounds = f"{d.lo}..{d.hi}"
        rows.append(f"| `{d.env}` | {shown if shown == 'unset' else f'`{shown}`'} | {bounds} | {d.doc} |")
    return "\n".join(rows) + "\n"
