"""Bearer tokens (ZONEWATCH_GATEWAY_TOKENS): `Authorization: Bearer <token>` on every data
endpoint, `?token=` also on /stream and /ws (browsers cannot set headers there). Constant-time
comparison; the header wins over the query."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from contract.errors import ConfigError

#: shortest accepted token: 16 characters of `secrets.token_urlsafe` are 96 random bits
MIN_TOKEN_LENGTH = 16


class Tokens:
    """The accepted tokens; `insecure` (no tokens at all) only when none are configured."""

    def __init__(self, tokens: Iterable[str], insecure: bool = False):
        tokens = list(tokens)
        short = [f"#{i} has {len(t)}" for i, t in enumerate(tokens, 1) if len(t) < MIN_TOKEN_LENGTH]
        if short:   # never name the token itself: this message goes to logs
            raise ConfigError(f"ZONEWATCH_GATEWAY_TOKENS: every token needs at least {MIN_TOKEN_LENGTH} characters; "
                              f"token {', '.join(short)} (make one with: python3 -c "
                              "'import secrets; print(secrets.token_urlsafe(24))')")
        self._tokens = [t.encode() for t in tokens]
        self.insecure = insecure and not self._tokens   # tokens, when configured, are always required
        if not self._tokens and not self.insecure:
            raise ConfigError("ZONEWATCH_GATEWAY_TOKENS is not set: give the gateway its bearer tokens "
                              "(comma-separated) or start it with --insecure")

    def allows(self, conn, query_ok: bool = False) -> bool:
        """True when the request (or WebSocket) `conn` carries a valid token."""
        if self.insecure:
            return True
        given = None
        auth = conn.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query_ok:
            given = conn.query_params.get("token")
        if not given:
            return False
        g = given.encode()
        return any(hmac.compare_digest(g, t) for t in self._tokens)


def unauthorized():
    from starlette.responses import JSONResponse

    return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="zonewatch"'})
