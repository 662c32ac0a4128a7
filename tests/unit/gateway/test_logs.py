"""No token and no caller in the gateway's log lines: uvicorn's access log and WebSocket handshake
lines, and the websockets library's debug lines with request headers (issue 16), whatever the
spelling of the parameter (issue 24); and no flood of the lines a client can trigger (issue 24)."""

from __future__ import annotations

import io
import logging

import pytest
from uvicorn.logging import AccessFormatter, DefaultFormatter

from gateway import logs
from gateway.logs import RateLimit, RedactSecrets, redact

TOKEN = "tok_9f8e7d6c5b4a3210"


def _emit(formatter, msg, *args) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger(f"test.redact.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.info(msg, *args)
    return out.getvalue()


def test_access_log_lines_keep_their_shape_and_lose_the_token():
    line = _emit(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False),
                 '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                 f"/stream?last_event_id=1-0&token={TOKEN}", "1.1", 200)
    assert TOKEN not in line
    assert '127.0.0.1:5000 - "GET /stream?last_event_id=1-0&token=*** HTTP/1.1" 200' in line


def test_websocket_handshake_and_debug_header_lines():
    fmt = DefaultFormatter("%(message)s", use_colors=False)
    for msg, args in (('%s - "WebSocket %s" [accepted]', ("127.0.0.1:1", f"/ws?token={TOKEN}")),
                      ('%s - "WebSocket %s" 403', ("127.0.0.1:1", f"/ws?%74oken={TOKEN}")),
                      ("< GET %s HTTP/1.1", (f"/ws?a=1&token={TOKEN}",)),
                      ("< %s: %s", ("Authorization", f"Bearer {TOKEN}")),
                      ("< %s: %s", ("authorization", TOKEN)),
                      (f"Authorization: Bearer {TOKEN}", ())):
        line = _emit(fmt, msg, *args)
        assert TOKEN not in line, line
        assert "***" in line, line


def test_redact_leaves_everything_else():
    assert redact("GET /zones?near=1,2&radius=5 HTTP/1.1") == "GET /zones?near=1,2&radius=5 HTTP/1.1"
    assert redact("tokens=5 and token_count=3") == "tokens=5 and token_count=3"
    assert redact("?TOKEN=abc&access_token=def") == "?TOKEN=***&access_token=***"


SPELLINGS = ["?token={t}", "?token='{t}'", '?token="{t}"', ";token={t}", "?a=1;token={t}", "?%74oken={t}",
             "?%2574oken={t}", "?TOKEN={t}", "?Token={t}&x=1", "?+token={t}", "?token%20={t}", "?token[]={t}",
             "?access_token={t}", "?ACCESS%5FTOKEN={t}", "?x=1&&token={t}#frag", "?token=%27{t}%27",
             "?caller={t}", "?caller_ref={t}", "?Caller%4Eumber={t}", ";%63aller={t}",
             "%3Btoken%3D{t}", "%3Ftoken%3D{t}%26x%3D1", "%26TOKEN%3D{t}", "%3Bcaller%3D{t}"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_a_token_or_caller_parameter_is_masked(spelling):
    secret = "S3cr3t-v4lue-0123456789"                  # not a configured token: the name alone masks it
    fmt = DefaultFormatter("%(message)s", use_colors=False)
    for msg, args in (('%s - "GET %s HTTP/1.1" 200', ("127.0.0.1:1", "/stream" + spelling.format(t=secret))),
                      ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:1", "/ws" + spelling.format(t=secret)))):
        line = _emit(fmt, msg, *args)
        assert secret not in line and "***" in line, line
    assert redact(f'"WebSocket /ws?token={secret}" [accepted]') == '"WebSocket /ws?token=***" [accepted]'


def test_a_configured_token_is_masked_wherever_it_stands():
    token = "Conf1gured_tok3n-0123456789+/"
    logs.known_secrets([token])
    try:
        for text in (f"/stream/{token}", f"?t={token}", f"Cookie: a={token}",
                     f"?t={token.replace('+', '%2B').replace('/', '%2F')}", f"?t={token.replace('/', '%2F')}"):
            assert "***" in redact(text) and "0123456789" not in redact(text), text
    finally:
        logs.known_secrets([])
    assert redact(f"/stream/{token}") == f"/stream/{token}"      # forgotten again


def test_the_rate_limit_lets_a_few_lines_of_a_kind_through_then_says_how_many_it_dropped():
    now = [0.0]
    limit = RateLimit(burst=3, window_s=10, clock=lambda: now[0])

    def record(msg, level=logging.WARNING, name="uvicorn.error", exc=None):
        r = logging.LogRecord(name, level, __file__, 1, msg, (), exc)
        return limit.filter(r), r

    assert [record("Invalid HTTP request received.")[0] for _ in range(10)] == [True] * 3 + [False] * 7
    assert record("another kind")[0] and record("x", level=logging.INFO)[0]     # others, and info, pass
    assert all(record("Exception in ASGI application", level=logging.ERROR,
                      exc=(ValueError, ValueError(), None))[0] for _ in range(3))
    assert record("Exception in ASGI application", level=logging.ERROR, exc=(KeyError, KeyError(), None))[0]
    now[0] = 10.0
    passed, r = record("Invalid HTTP request received.")
    assert passed and r.getMessage() == "Invalid HTTP request received. [and 7 more like it in 10 s, not logged]"


def test_the_filters_sit_on_the_handlers_so_a_line_is_counted_once(monkeypatch):
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger("")
    root.addHandler(handler)
    try:
        logs.redact_uvicorn()
        assert logs.RATE_LIMIT in handler.filters and logs.FILTER in handler.filters
        assert logs.RATE_LIMIT not in root.filters
    finally:
        root.removeHandler(handler)


def test_a_record_written_by_several_handlers_is_counted_once():
    limit = RateLimit(burst=2, window_s=10, clock=lambda: 0.0)
    outs = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger("test.ratelimit.handlers")
    logger.propagate = False
    for out in outs:
        handler = logging.StreamHandler(out)
        handler.addFilter(limit)
        logger.addHandler(handler)
    for i in range(4):
        logger.warning("the same kind %d", i)
    assert [out.getvalue().count("the same kind") for out in outs] == [2, 2]
