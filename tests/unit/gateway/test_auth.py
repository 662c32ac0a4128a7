"""Gateway tokens: a minimum length at start, constant-time check, header over query."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from contract.errors import ConfigError
from gateway.auth import MIN_TOKEN_LENGTH, Tokens

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
