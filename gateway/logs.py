"""No secret in the gateway's logs (docs/SECURITY.md: secrets are never logged).

uvicorn writes the path with its query string in every access-log line (`--access-log`) and, access
log or not, in its WebSocket handshake lines (`"WebSocket /ws?token=…" [accepted]`); with
`--log-level debug` the websockets library logs request headers, `Authorization` included. The
filter here rewrites every record on its way out: the value of any `token` / `access_token` query
parameter (also when its name is percent-encoded) and anything after `Bearer ` become `***`.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SECRET_PARAMS = frozenset({"token", "access_token"})
MASK = "***"
_PARAM = re.compile(r"(^|[?&;\s])([^=&;\s?#\"']+)=([^&;\s#\"']*)")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*:\s*)\S.*")


def _param(m: re.Match) -> str:
    if unquote_plus(m[2]).strip().lower() in SECRET_PARAMS:
        return f"{m[1]}{m[2]}={MASK}"
    return m[0]


def redact(text: str) -> str:
    """`text` with token query values and bearer credentials masked."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    if ":" in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{MASK}", text)
    return text


class RedactSecrets(logging.Filter):
    """Masks secrets in a record's message and in its string arguments (the arguments keep their
    shape: uvicorn's access formatter unpacks them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            out = [redact(a) if isinstance(a, str) else a for a in args]
            for i in range(1, len(out)):   # ("< %s: %s", "Authorization", value): a header logged in parts
                prev = out[i - 1]
                if isinstance(prev, str) and prev.strip().lower() == "authorization":
                    out[i] = MASK
            record.args = tuple(out)
        elif isinstance(args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


FILTER = RedactSecrets()
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "zonewatch")


def redact_uvicorn() -> None:
    """Put the filter on the loggers that may see a request (records logged on them) and on every
    handler they write to (records that propagate from anywhere)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
        for handler in logger.handlers:
            if FILTER not in handler.filters:
                handler.addFilter(FILTER)
