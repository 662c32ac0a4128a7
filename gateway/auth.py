"""Bearer tokens. Two kinds, kept apart (docs/GATEWAY.md "Intake"):

* read tokens (ZONEWATCH_GATEWAY_TOKENS): `Authorization: Bearer <token>` on every data endpoint,
  `?token=` also on /stream and /ws (browsers cannot set headers there);
* ingest tokens (ZONEWATCH_INGEST_TOKENS): `POST /ingest/...` only, and only in the header.

A token grants what the lists it is in grant: an ingest-only token reads nothing (403 on the read
endpoints), a read-only token ingests nothing (403 on /ingest). Constant-time comparison; the header
wins over the query.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from contract.errors import ConfigError

#: shortest accepted token: 16 characters of `secrets.token_urlsafe` are 96 random bits
MIN_TOKEN_LENGTH = 16
OK, MISSING, FORBIDDEN = 200, 401, 403


def _checked(tokens: Iterable[str], variable: str) -> list[bytes]:
    tokens = list(tokens)
    short = [f"#{i} has {len(t)}" for i, t in enumerate(tokens, 1) if len(t) < MIN_TOKEN_LENGTH]
    if short:   # never name the token itself: this message goes to logs
        raise ConfigError(f"{variable}: every token needs at least {MIN_TOKEN_LENGTH} characters; "
                          f"token {', '.join(short)} (make one with: python3 -c "
                          "'import secrets; print(secrets.token_urlsafe(24))')")
    return [t.encode() for t in tokens]


def _match(given: bytes, tokens: list[bytes]) -> bool:
    found = False
    for t in tokens:   # no early exit: the time taken does not tell which token matched
        found |= hmac.compare_digest(given, t)
    return found


class Tokens:
    """The accepted tokens; `insecure` (reads without any token) only when no read tokens are
    configured. Intake never runs without ingest tokens, --insecure or not."""

    def __init__(self, tokens: Iterable[str], insecure: bool = False, ingest: Iterable[str] = ()):
        self._tokens = _checked(tokens, "ZONEWATCH_GATEWAY_TOKENS")
        self._ingest = _checked(ingest, "ZONEWATCH_INGEST_TOKENS")
        self.insecure = insecure and not self._tokens   # tokens, when configured, are always required
        if not self._tokens and not self.insecure:
            raise ConfigError("ZONEWATCH_GATEWAY_TOKENS is not set: give the gateway its bearer tokens "
                              "(comma-separated) or start it with --insecure")

    @property
    def intake(self) -> bool:
        """Whether POST /ingest is on (ZONEWATCH_INGEST_TOKENS is set)."""
        return bool(self._ingest)

    @staticmethod
    def _given(conn, query_ok: bool) -> bytes | None:
        auth = conn.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query_ok:
            given = conn.query_params.get("token")
        else:
            given = None
        return given.encode() if given else None

    def read(self, conn, query_ok: bool = False) -> int:
        """OK, MISSING (no token, or an unknown one) or FORBIDDEN (an ingest-only token)."""
        if self.insecure:
            return OK
        given = self._given(conn, query_ok)
        if given is None:
            return MISSING
        if _match(given, self._tokens):
            return OK
        return FORBIDDEN if _match(given, self._ingest) else MISSING

    def ingest(self, conn) -> int:
        """OK, MISSING (no token, or an unknown one) or FORBIDDEN (a read-only token); header only."""
        given = self._given(conn, False)
        if given is None:
            return MISSING
        if _match(given, self._ingest):
            return OK
        return FORBIDDEN if _match(given, self._tokens) else MISSING

    def allows(self, conn, query_ok: bool = False) -> bool:
        """True when the request (or WebSocket) `conn` carries a valid read token."""
        return self.read(conn, query_ok) == OK


def unauthorized():
    from starlette.responses import JSONResponse

    return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="zonewatch"'})


def forbidden(what: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": f"this token may not {what}"}, status_code=403)


def refusal(status: int, what: str):
    """The answer for a MISSING or FORBIDDEN check."""
    return unauthorized() if status == MISSING else forbidden(what)


def personal_query(query_string: bytes, path: str = "") -> bool:
    """Whether a query string, or a `;name=value` parameter in the path, names a caller
    (`?caller=…`, `;caller_ref=…`, `?%63aller=…`: any spelling gateway/logs.py masks)."""
    from gateway.logs import is_personal

    parts = query_string.decode("latin-1").replace(";", "&").split("&") + path.split(";")[1:]
    return any(is_personal(part.split("=", 1)[0]) for part in parts if "=" in part)


class NoCallerInURLs:
    """ASGI middleware: a request or WebSocket whose URL names a caller is refused (400;
    a WebSocket handshake 403) before any route sees it. No endpoint takes a caller, and a number in a
    URL lands in proxies' and browsers' histories (CONTRACT §6); the logs mask it as well."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and personal_query(scope.get("query_string", b""),
                                                                     scope.get("path", "")):
            if scope["type"] == "http":
                body = b'{"error":"no caller in a URL: the gateway takes none, and URLs are logged and kept"}'
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
