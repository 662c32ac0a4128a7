"""The wall's duty layer (gateway/static/duty.js) in headless Chromium on the real path (Kafka ->
worker -> Redis -> gateway): the gate of test_duty_e2e's plan as a mark with its count, the phase
banner, and the mark turning red when its units leave. Screenshot: test-artifacts/wall-duty.png."""

from __future__ import annotations

import pytest

from contract import topics
from tests import scenario
from tests.integration.conftest import wait_until
from tests.integration.test_duty_e2e import PLAN, T0, fixes
from tests.integration.test_gateway import TOKEN, GatewayProcess
from tests.integration.test_wall_browser import ARTIFACTS, CHROMIUM, wall_page

pytestmark = pytest.mark.integration

GREEN, RED = "#2fa864", "#e5383b"
GATE = 'circle.duty-post[data-id="gate"]'


def test_the_wall_shows_posts_the_phase_and_a_post_turning_red(deployment, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")

    dep = deployment(scenario.ZONES_FILE, partitions=2)
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    dep.env["ZONEWATCH_PLAN"] = str(plan)
    dep.start_worker()
    gw = GatewayProcess(dep, env={"ZONEWATCH_PLAN": str(plan)})
    day = fixes()
    # up to 700 s: u1 and u2 at the gate in 决战 (2 of 2: manned); then to 1050 s (the last fixes at
    # 1020 s): u1 gone at 780 s, u2 silent after 840 s (stale after 960 s): empty, 0 of 2
    first = [f for f in day if f["ts"] <= T0 + 700_000]
    rest = [f for f in day if T0 + 700_000 < f["ts"] <= T0 + 1_050_000]
    try:
        dep.produce(topics.GPS, first)
        errors: list[str] = []
        with wall_page(errors, console=False) as page:
            page.goto(f"{gw.url}/?token={TOKEN}")
            page.wait_for_selector(GATE, state="attached", timeout=60_000)
            page.wait_for_function(f"() => document.querySelector('{GATE}').getAttribute('fill') === '{GREEN}'",
                                   timeout=60_000)
            assert page.locator("text.duty-count").first.text_content() == "2/2"
            banner = page.locator("#duty-phase")
            assert banner.inner_text() == "勤务阶段 Phase: 决战 · 按计划 schedule"
            assert banner.is_visible()   # shown (duty.js clears `hidden`; wall.css styles it)
            assert "manned" in page.locator(GATE).get_attribute("class")
            page.screenshot(path=str(ARTIFACTS / "wall-duty.png"))

            dep.produce(topics.GPS, rest)
            page.wait_for_function(f"() => document.querySelector('{GATE}').getAttribute('fill') === '{RED}'",
                                   timeout=60_000)
            assert page.locator("text.duty-count").first.text_content() == "0/2"
            assert "empty" in page.locator(GATE).get_attribute("class")
            wait_until(lambda: page.locator('rect.duty-checkpoint[data-id="bridge"]').count() == 1,
                       timeout=10, what="the bridge's mark")
            page.screenshot(path=str(ARTIFACTS / "wall-duty-empty.png"))
        assert not errors, errors
    finally:
        gw.stop()
