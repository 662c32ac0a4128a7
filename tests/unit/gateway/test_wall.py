"""The wall page's rules (issue 24): its Content-Security-Policy, and the source it is built from —
no inline script or style, no handler attribute, and no way into innerHTML but html.js's setHTML
(which the CSP's Trusted Types enforce in Chromium: tests/integration/test_wall_browser.py shows
hostile values in every field rendered as text)."""

from __future__ import annotations

import re

from gateway.app import STATIC_DIR
from gateway.rest import STATIC_TYPES, WALL_CSP
from tests.unit.gateway.test_rest import FakeRedis, client


def test_the_page_comes_with_its_policy_and_its_files_with_their_types():
    c = client(FakeRedis())
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-security-policy"] == WALL_CSP
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["x-frame-options"] == "DENY"
    for name, media in STATIC_TYPES.items():
        f = c.get(f"/static/{name}")
        assert f.status_code == 200 and f.headers["content-type"] == media
        assert f.content == (STATIC_DIR / name).read_bytes()
        assert f.headers["x-content-type-options"] == "nosniff"
    for other in ("index.html", "..%2Fapp.py", "nope.js"):
        assert c.get(f"/static/{other}").status_code == 404


def test_the_policy_allows_no_inline_script_or_style_and_nothing_from_elsewhere():
    csp = dict(d.strip().split(" ", 1) for d in WALL_CSP.split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert "unsafe" not in WALL_CSP and "*" not in WALL_CSP
    assert csp["require-trusted-types-for"] == "'script'" and csp["trusted-types"] == "zw-html"


def test_the_page_has_no_inline_script_style_or_handler():
    page = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/html.js">', '<script src="/static/wall.js">',
                                                 '<script src="/static/rewind.js">',
                                                 '<script src="/static/duty.js">']   # the duty plan's layer
    assert "</script>" in page and not re.search(r"<script[^>]*>[^<]", page)       # every script element empty
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+\s*=", page, re.IGNORECASE)
    assert "javascript:" not in page.lower()


def test_only_html_js_writes_markup():
    for script in ("wall.js", "rewind.js", "duty.js"):
        source = (STATIC_DIR / script).read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "setAttribute(\"style\"", "setAttribute('style'", "srcdoc"):
            assert sink not in source, (script, sink)
    # their look is wall.css's (#rewind-*, #duty-phase): they set no style of their own (text through textContent)
    for script in ("rewind.js", "duty.js"):
        assert ".style" not in (STATIC_DIR / script).read_text(), script
    helper = (STATIC_DIR / "html.js").read_text()
    assert helper.count("innerHTML =") == 1 and "policy.createHTML" in helper
