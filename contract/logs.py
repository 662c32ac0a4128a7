"""One way to configure logs for every command: `--log-level` and `--log-format text|json`
(env ZONEWATCH_LOG_LEVEL, ZONEWATCH_LOG_FORMAT). JSON lines carry ts, level, logger, message
and pid, for log shippers; secrets never reach a log (docs/SECURITY.md)."""

from __future__ import annotations

import logging
import logging.config
import os
import time

import orjson

from .errors import ConfigError

LEVELS = ("critical", "error", "warning", "info", "debug")
FORMATS = ("text", "json")
_ALIASES = {"crit": "critical", "warn": "warning", "fatal": "critical"}
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def level_name(value: str | None, default: str = "warning") -> str:
    raw = (value or os.environ.get("ZONEWATCH_LOG_LEVEL") or default).lower()
    name = _ALIASES.get(raw, raw)
    if name not in LEVELS:
        raise ConfigError(f"log level {raw!r} must be one of {', '.join(LEVELS)} (--log-level / ZONEWATCH_LOG_LEVEL)")
    return name


def format_name(value: str | None) -> str:
    name = (value or os.environ.get("ZONEWATCH_LOG_FORMAT") or "text").lower()
    if name not in FORMATS:
        raise ConfigError(f"log format {name!r} must be text or json (--log-format / ZONEWATCH_LOG_FORMAT)")
    return name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
               "pid": record.process}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def dict_config(level: str, fmt: str) -> dict:
    """A logging.config.dictConfig for stderr at `level` in `fmt` (Faust's worker takes it too)."""
    formatter = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"zonewatch": formatter},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "zonewatch",
                                    "stream": "ext://sys.stderr"}},
            "root": {"level": level.upper(), "handlers": ["stderr"]}}


def configure(level: str | None = None, fmt: str | None = None) -> None:
    logging.config.dictConfig(dict_config(level_name(level), format_name(fmt)))
