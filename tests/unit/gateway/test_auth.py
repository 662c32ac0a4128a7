"""Gateway tokens: a minimum length at start, constant-time check, header over query."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from contract.errors import ConfigError
from gateway.auth import FORBIDDEN, MIN_TOKEN_LENGTH, MISSING, OK, Tokens

GOOD = "a" * MIN_TOKEN_LENGTH


def conn(headers=None, query=None):
    return SimpleNamespace(headers=headers or {}, query_params=query or {})


def test_short_tokens_are_refused_at_start_without_showing_them():
    with pytest.raises(ConfigError) as exc:
        Tokens([GOOD, "test-token", "second-tok"])
    msg = str(exc.value)
    assert "ZONEWATCH_GATEWAY_TOKENS" in msg and str(MIN_TOKEN_LENGTH) in msg
    assert "#2 has 10" in msg and "#3 has 10" in msg
    assert "test-token" not in msg and "second-tok" not in msg
    with pytest.raises(ConfigError, match="ZONEWATCH_GATEWAY_TOKENS"):
        Tokens(["x" * (MIN_TOKEN_LENGTH - 1)])
    assert MIN_TOKEN_LENGTH == 16


def test_no_tokens_needs_insecure_and_tokens_win_over_it():
    with pytest.raises(ConfigError, match="--insecure"):
        Tokens([])
    assert Tokens([], insecure=True).allows(conn())
    t = Tokens([GOOD], insecure=True)
    assert not t.insecure and not t.allows(conn())


def test_bearer_everywhere_query_only_where_allowed():
    t = Tokens([GOOD, "b" * 20])
    assert t.allows(conn({"authorization": f"Bearer {GOOD}"}))
    assert t.allows(conn({"authorization": f"bearer {'b' * 20}"}))
    assert not t.allows(conn({"authorization": GOOD}))
    assert not t.allows(conn({"authorization": f"Bearer {GOOD}x"}))
    assert not t.allows(conn(query={"token": GOOD}))
    assert t.allows(conn(query={"token": GOOD}), query_ok=True)
    # a wrong header is not rescued by a right query token
    assert not t.allows(conn({"authorization": "Bearer wrong"}, {"token": GOOD}), query_ok=True)


READ, INGEST, BOTH = "r" * 20, "i" * 20, "both-kinds-token-0123"


def bearer(token):
    return conn({"authorization": f"Bearer {token}"})


def test_read_and_ingest_tokens_grant_only_their_own_kind():
    t = Tokens([READ, BOTH], ingest=[INGEST, BOTH])
    assert t.intake
    # reads: a read token yes, an ingest-only token 403, anything else 401
    assert [t.read(bearer(x)) for x in (READ, BOTH, INGEST, "nope" * 5)] == [OK, OK, FORBIDDEN, MISSING]
    assert t.read(conn()) == MISSING
    # ingest: an ingest token yes, a read-only token 403, anything else 401
    assert [t.ingest(bearer(x)) for x in (INGEST, BOTH, READ, "nope" * 5)] == [OK, OK, FORBIDDEN, MISSING]
    # never from the query string, even where reads may use it
    assert t.ingest(conn(query={"token": INGEST})) == MISSING
    assert t.read(conn(query={"token": INGEST}), query_ok=True) == FORBIDDEN


def test_intake_is_off_without_ingest_tokens_and_insecure_never_opens_it():
    t = Tokens([], insecure=True)
    assert not t.intake and t.read(conn()) == OK and t.ingest(conn()) == MISSING
    t = Tokens([], insecure=True, ingest=[INGEST])
    assert t.intake and t.ingest(conn()) == MISSING and t.ingest(bearer(INGEST)) == OK


def test_short_ingest_tokens_are_refused_naming_their_variable():
    with pytest.raises(ConfigError) as exc:
        Tokens([READ], ingest=[INGEST, "short-ingest"])
    assert "ZONEWATCH_INGEST_TOKENS" in str(exc.value) and "#2 has 12" in str(exc.value)
    assert "short-ingest" not in str(exc.value)
