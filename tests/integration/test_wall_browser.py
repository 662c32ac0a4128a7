"""The wall page in a real headless browser (Debian's chromium driven by Playwright) during a replay.

Real path: `zonewatch replay` -> Kafka -> worker -> Redis -> gateway (SSE) -> the page. The browser is
/usr/bin/chromium, installed by deploy/install-browser.sh (Playwright's own browser download is
never used). Screenshots: test-artifacts/wall.png (1920x1080) and test-artifacts/wall-laptop.png.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests import scenario
from tests.integration.conftest import REPO, wait_until
from tests.integration.test_gateway import TOKEN, GatewayProcess
from contract import topics

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
GREEN, ORANGE, RED = "#2fa864", "#f2861e", "#e5383b"
N_CALLS = 8

# records zone A's fill colour and "calls today" cell every 50 ms, so the test sees every step
RECORDER = """() => {
  window.__seen = {fill: [], calls: []};
  setInterval(() => {
    const p = document.querySelector('path.zone[data-zone="A"]');
    const c = document.querySelector('tr[data-zone="A"] .c-calls');
    const s = window.__seen, f = p && p.getAttribute('fill'), t = c && c.textContent;
    if (s.fill[s.fill.length - 1] !== f) s.fill.push(f);
    if (s.calls[s.calls.length - 1] !== t) s.calls.push(t);
  }, 50);
}"""


def a_calls(value: str) -> str:
    return f"""() => {{ const c = document.querySelector('tr[data-zone="A"] .c-calls');
                       return c && c.textContent === '{value}'; }}"""


def test_wall_follows_a_replay_live_and_reconnects(deployment, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")
    from playwright.sync_api import sync_playwright

    dep = deployment(scenario.ZONES_FILE, partitions=2)
    wport = dep.start_worker()
    gw = GatewayProcess(dep, wport)
    replay = None
    try:
        now = int(time.time() * 1000)
        # two units, so every zone gets a document (green) before the page opens
        dep.produce(topics.GPS, [
            {"unit_id": "wall-u1", "ts": now - 5000, "lat": scenario.PA[0], "lon": scenario.PA[1]},
            {"unit_id": "wall-u2", "ts": now - 4000, "lat": scenario.PCORE[0], "lon": scenario.PCORE[1]}])
        wait_until(lambda: len(dep.zone_docs()) == 5, what="all zones in Redis")

        # the replay file: priority-1 calls in zone A only, 1.5 s apart (A turns orange, then red)
        start = now + 4000
        calls = [{"call_id": f"wall-{i}", "ts": start + i * 1500, "lat": scenario.PA[0], "lon": scenario.PA[1],
                  "category": "violent", "priority": 1, "text": "wall test"} for i in range(N_CALLS)]
        replay_file = tmp_path / "calls.jsonl"
        replay_file.write_bytes(b"\n".join(orjson.dumps(c) for c in calls) + b"\n")

        ARTIFACTS.mkdir(exist_ok=True)
        errors: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda m: errors.append(f"{m.text} ({m.location.get('url')})")
                        if m.type == "error" else None)
                page.goto(f"{gw.url}/?token={TOKEN}")
                assert "token=" not in page.url          # kept in sessionStorage, not on screen
                page.wait_for_function(a_calls("0"), timeout=30_000)
                a = page.locator('path.zone[data-zone="A"]')
                assert a.get_attribute("fill") == GREEN
                assert page.locator("#conn").get_attribute("data-state") == "live"
                page.evaluate(RECORDER)

                replay = subprocess.Popen(
                    [sys.executable, "-m", "zonewatch.cli", "replay", str(replay_file), "--topic", topics.CALLS,
                     "--speed", "1", "-q"], env=dep.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                page.wait_for_function(f"() => window.__seen.calls.some(t => t !== '0')", timeout=30_000)
                during = replay.poll() is None            # the first change arrived while replaying
                page.wait_for_function(a_calls(str(N_CALLS)), timeout=60_000)
                out, _ = replay.communicate(timeout=60)
                assert replay.returncode == 0, out.decode()
                assert during, "the wall changed only after the replay had finished"

                # the recorder samples every 50 ms: let it catch the final state the page already shows
                page.wait_for_function(f"() => {{ const s = window.__seen; return s.calls[s.calls.length - 1] === "
                                       f"'{N_CALLS}' && s.fill[s.fill.length - 1] === '{RED}'; }}", timeout=10_000)
                seen = page.evaluate("window.__seen")
                fills, counts = seen["fill"], seen["calls"]
                assert fills[0] == GREEN and fills[-1] == RED, fills
                assert ORANGE in fills and fills.index(ORANGE) < fills.index(RED), fills
                assert counts[0] == "0" and counts[-1] == str(N_CALLS), counts
                assert len(counts) > 2, f"no intermediate count: the wall did not update live: {counts}"
                assert [int(c) for c in counts] == sorted(int(c) for c in counts), counts
                assert a.get_attribute("data-level") == "red"
                assert page.locator('text.lbl[data-zone="A"] .cnt').text_content() == f"{N_CALLS} | 0"
                assert page.locator('tr[data-zone="A"] .c-5m').text_content() == f"{N_CALLS} / 0"
                # B, beside A, had none of these calls
                assert page.locator('tr[data-zone="B"] .c-calls').text_content() == "0"
                assert page.locator('path.zone[data-zone="B"]').get_attribute("fill") == GREEN
                # unit markers from /units and the latency badge from /stats
                page.wait_for_selector('circle.unit[data-unit="wall-u1"]', state="attached", timeout=15_000)
                page.wait_for_function("() => document.querySelector('#e2e .v').textContent.includes('p50')",
                                       timeout=15_000)
                assert "紧急 Critical" in page.locator("#levels").inner_text()

                # the open incidents, each with its running response timer and a marker on the map
                # (wall-u1's fix came before the calls, so nobody has arrived)
                for i in range(N_CALLS):
                    page.wait_for_selector(f'#inc-list li[data-call="wall-{i}"][data-status="open"]',
                                           state="attached", timeout=15_000)
                    page.wait_for_selector(f'circle.inc[data-call="wall-{i}"]', state="attached", timeout=15_000)
                assert "P1" in page.locator('#inc-list li[data-call="wall-0"] .prio').inner_text()
                assert "暴力 Violent" in page.locator('#inc-list li[data-call="wall-0"]').inner_text()
                timer = '#inc-list li[data-call="wall-0"] .timer'
                t0 = page.locator(timer).inner_text()
                page.wait_for_function(f"() => document.querySelector('{timer}').textContent !== '{t0}'",
                                       timeout=10_000)      # it runs between updates
                assert page.locator(timer).inner_text() != t0
                page.wait_for_timeout(600)   # let the colour transition finish for the picture
                page.screenshot(path=str(ARTIFACTS / "wall.png"))

                # a unit reaches A 0.5 s after the last call: every incident leaves the open list
                # (shown as arrived with its response time for a while) and its marker goes
                dep.produce(topics.GPS, [{"unit_id": "wall-u3", "ts": calls[-1]["ts"] + 500,
                                            "lat": scenario.PA[0], "lon": scenario.PA[1]}])
                page.wait_for_selector('#inc-list li.arrived[data-call="wall-0"]', state="attached",
                                       timeout=30_000)
                response_0 = (calls[-1]["ts"] + 500 - calls[0]["ts"]) // 1000      # 11 s
                assert page.locator('#inc-list li[data-call="wall-0"] .timer').inner_text() == \
                    f"{response_0 // 60}:{response_0 % 60:02d}"
                page.wait_for_function("() => !document.querySelector('circle.inc[data-call^=\"wall-\"]')",
                                       timeout=30_000)
                assert page.evaluate("[...window.__zw.incidents.keys()].filter(k => k.startsWith('wall-'))") == []

                # the gateway goes away and comes back on the same port: the page reconnects by
                # itself, resumes from its last event id and shows what happened meanwhile
                gw.stop()
                page.wait_for_function(
                    "() => ['reconnecting', 'down'].includes(document.querySelector('#conn').dataset.state)",
                    timeout=20_000)
                dep.produce(topics.CALLS, [dict(calls[-1], call_id="wall-late", ts=calls[-1]["ts"] + 1000)])
                gw.start()
                page.wait_for_function(a_calls(str(N_CALLS + 1)), timeout=60_000)
                page.wait_for_function("() => document.querySelector('#conn').dataset.state === 'live'",
                                       timeout=20_000)
                # the call made while the gateway was away is on the list after the resume
                page.wait_for_selector('#inc-list li[data-call="wall-late"][data-status="open"]',
                                       state="attached", timeout=30_000)

                page.set_viewport_size({"width": 1366, "height": 768})
                page.wait_for_timeout(300)
                page.screenshot(path=str(ARTIFACTS / "wall-laptop.png"))
            finally:
                browser.close()
        # chromium logs the event stream cut by the gateway's stop and the refused reconnects
        real_errors = [e for e in errors if "/stream?" not in e and "ERR_CONNECTION_REFUSED" not in e]
        assert not real_errors, real_errors
    finally:
        if replay and replay.poll() is None:
            replay.kill()
            replay.wait(10)
        gw.stop()
