"""Configuration from the environment (CONTRACT §7). Every command reads this; CLI flags override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
DEMO_ZONES = DATA_DIR / "demo_zones.geojson"


class ConfigError(ValueError):
    """A configuration value is unusable; the message says which variable and why."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


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
    redis: str = "redis://127.0.0.1:6379/0"
    zones: Path = DEMO_ZONES
    tz: str = "Asia/Shanghai"
    caller_secret: str = ""
    topic_prefix: str = ""
    app_id: str = "zonewatch"
    gateway_tokens: tuple[str, ...] = ()
    # Not in the contract's list, documented in the README.
    partitions: int = 4               # partitions of the internal zone-events topic
    future_tolerance_ms: int = 300_000  # how far past the host clock a ts may lie
    h3_resolution: int = 9
    flush_interval_ms: int = 20       # minimum gap between two state writes (contract: <= 250 ms)
    unit_stale_ms: int = 120_000
    rules: Path | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        tokens = tuple(t.strip() for t in _env("ZONEWATCH_GATEWAY_TOKENS", "").split(",") if t.strip())
        rules = os.environ.get("ZONEWATCH_RULES")
        s = cls(
            kafka=_env("ZONEWATCH_KAFKA", cls.kafka),
            redis=_env("ZONEWATCH_REDIS", cls.redis),
            zones=Path(_env("ZONEWATCH_ZONES", str(DEMO_ZONES))),
            tz=_env("ZONEWATCH_TZ", cls.tz),
            caller_secret=_env("ZONEWATCH_CALLER_SECRET", ""),
            topic_prefix=os.environ.get("ZONEWATCH_TOPIC_PREFIX", ""),
            app_id=_env("ZONEWATCH_APP_ID", cls.app_id),
            gateway_tokens=tokens,
            partitions=_env_int("ZONEWATCH_PARTITIONS", cls.partitions),
            future_tolerance_ms=_env_int("ZONEWATCH_FUTURE_TOLERANCE_MS", cls.future_tolerance_ms),
            h3_resolution=_env_int("ZONEWATCH_H3_RESOLUTION", cls.h3_resolution),
            flush_interval_ms=_env_int("ZONEWATCH_FLUSH_MS", cls.flush_interval_ms),
            rules=Path(rules) if rules else None,
        )
        s.check()
        return s

    def check(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigError(f"ZONEWATCH_PARTITIONS={self.partitions} must be 1..1024")
        if not 0 <= self.h3_resolution <= 15:
            raise ConfigError(f"ZONEWATCH_H3_RESOLUTION={self.h3_resolution} must be 0..15")
        if not 1 <= self.flush_interval_ms <= 250:
            raise ConfigError(f"ZONEWATCH_FLUSH_MS={self.flush_interval_ms} must be 1..250 (contract §3)")
        if not self.zones.is_file():
            raise ConfigError(f"ZONEWATCH_ZONES={self.zones} does not exist or is not a file")

    def with_(self, **changes) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    # Topic names (CONTRACT §1, §4): every public topic carries the prefix.
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def internal_zone_events(self) -> str:
        """Internal repartition topic: batches of normalised events per zone partition."""
        return f"{self.topic_prefix}{self.app_id}-zone-events"
