"""The gateway's log lines: no secret, no caller, and no flood of lines a client can trigger
(docs/SECURITY.md: secrets are never logged).

uvicorn writes the path with its query string in every access-log line (`--access-log`) and, access
log or not, in its WebSocket handshake lines (`"WebSocket /ws?token=…" [accepted]`); with
`--log-level debug` the websockets library logs request headers, `Authorization` included.
`RedactSecrets` rewrites every record on its way out:

 * the value of a parameter named `token` or `access_token`, however spelled (`?TOKEN=`, `;token=`
   in the path, which uvicorn logs as `%3Btoken%3D`, `?%74oken=`, twice percent-encoded, `token[]`,
   a value in quotes), and of one naming a caller (`caller`, `caller_ref`, ...: CONTRACT §6, no
   number in a log) becomes `***`;
 * every configured token (`known_secrets`), wherever it stands and percent-encoded or not;
 * anything after `Bearer ` and an `Authorization` header's value.

`RateLimit` lets at most LOG_BURST warnings or errors of one kind (logger, message, exception type)
through per LOG_WINDOW_S: a client that sends malformed requests, floods a WebSocket or keeps a bad
record in Redis costs a few lines, not a disk (zonewatch_gateway_log_lines_suppressed_total counts
the rest; the next line of that kind says how many).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from urllib.parse import unquote_plus

from gateway.metrics import LOG_LINES_SUPPRESSED

SECRET_PARAMS = frozenset({"token", "access_token", "accesstoken"})
PERSONAL_WORD = "caller"       # a parameter whose name holds it carries a caller (caller, caller_ref, callerid)
MASK = "***"
LOG_BURST = 5                  # lines of one kind per window: enough to see what happens
LOG_WINDOW_S = 10.0
RATE_KEYS = 1000               # kinds remembered; past it the memory starts afresh
# a parameter: a separator (or a quote, the start), a name, `=`, a value up to the next separator;
# separators percent-encoded too (uvicorn logs a path quoted: /stream;token=x is /stream%3Btoken%3Dx)
_PARAM = re.compile(r"(^|[?&;\s\"'(\[,]|%3[bBfF]|%26)"
                    r"((?:[^=&;\s?#%]|%(?!3[dDbBfF]|26)[0-9a-fA-F]{2})+)"
                    r"(=|%3[dD])"
                    r"((?:[^&;\s#%]|%(?!3[bB]|26))*)")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*:\s*)\S.*")
_KNOWN: list[re.Pattern] = []  # the configured tokens, each character as itself or percent-encoded


def param_name(raw: str) -> str:
    """A query parameter's name as its sender meant it: percent-decoded (also twice encoded), lower
    case, only letters, digits and underscores (`%74oken`, ` Token`, `'token'`, `token[]`: token)."""
    name = raw
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return re.sub(r"[^a-z0-9_]", "", name.lower())


def is_secret(name: str) -> bool:
    return param_name(name) in SECRET_PARAMS


def is_personal(name: str) -> bool:
    return PERSONAL_WORD in param_name(name)


def known_secrets(secrets: Iterable[str]) -> None:
    """Mask these strings (the gateway's read and ingest tokens) in every line from now on, also
    with any of their characters percent-encoded."""
    def pattern(secret: str) -> str:
        return "".join(f"(?:{re.escape(ch)}|(?i:{''.join(f'%{b:02x}' for b in ch.encode())}))" for ch in secret)

    given = sorted({s for s in secrets if s}, key=len, reverse=True)
    _KNOWN[:] = [re.compile("|".join(pattern(s) for s in given))] if given else []


def _param(m: re.Match) -> str:
    if not (is_secret(m[2]) or is_personal(m[2])):
        return m[0]
    value = m[4]
    kept = len(value) - len(value.rstrip("\"'"))      # a closing quote of the line stays
    return f"{m[1]}{m[2]}{m[3]}{MASK}{value[len(value) - kept:]}"


def redact(text: str) -> str:
    """`text` with secrets and callers masked."""
    for known in _KNOWN:
        text = known.sub(MASK, text)
    if "=" in text or "%3" in text:
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


class RateLimit(logging.Filter):
    """At most `burst` warnings and errors of one kind per `window_s`; lines below WARNING pass."""

    def __init__(self, burst: int = LOG_BURST, window_s: float = LOG_WINDOW_S, clock=time.monotonic):
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self.kinds: dict[tuple, list] = {}      # kind -> [window start, lines let through, lines dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        decided = getattr(record, "zw_rate_limit", None)   # a record on several handlers counts once
        if decided is not None:
            return decided
        record.zw_rate_limit = passed = self._decide(record)
        return passed

    def _decide(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg)[:200], record.exc_info[0] if record.exc_info else None)
        now = self.clock()
        seen = self.kinds.get(kind)
        if seen is None or now - seen[0] >= self.window_s:
            if len(self.kinds) >= RATE_KEYS:
                self.kinds.clear()
            self.kinds[kind] = [now, 1, 0]
            if seen is not None and seen[2]:
                record.msg = f"{record.msg} [and {seen[2]} more like it in {self.window_s:g} s, not logged]"
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        LOG_LINES_SUPPRESSED.inc()
        return False


FILTER = RedactSecrets()
RATE_LIMIT = RateLimit()
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "zonewatch")


def redact_uvicorn() -> None:
    """Put the redaction on the loggers that may see a request (records logged on them) and on every
    handler they write to (records that propagate from anywhere); the rate limit on the handlers
    only (filters of a logger see only the records made on it)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
        for handler in logger.handlers:
            if FILTER not in handler.filters:
                handler.addFilter(FILTER)
            if RATE_LIMIT not in handler.filters:
                handler.addFilter(RATE_LIMIT)
