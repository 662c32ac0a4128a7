"""No token in the gateway's log lines: uvicorn's access log and WebSocket handshake lines, and the
websockets library's debug lines with request headers (issue 16)."""

from __future__ import annotations

import io
import logging

from uvicorn.logging import AccessFormatter, DefaultFormatter

from gateway.logs import RedactSecrets, redact

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
