"""Each zone's response on the wall and in `zonewatch watch`, and the incident map, through the real
path: Kafka -> worker -> Redis -> gateway -> the page in Debian's chromium (as test_wall_browser.py).

Zone A gets two calls (tests/scenario.py points): r2 at PA2 is reached after 90 s; r1 at PA after
350 s, so it breached first. Over the last 60 minutes A has 2 decided calls (1 within 5 min, 1
breach): 0 % / 50 % / 50 % within 1/3/5 min, 1 breach, p50 1:30 and p90 5:50 (nearest rank of 90 and
350 s). Zone B has r3 at PB2, never reached: 1 decided, 0 arrived, 0 % / 0 % / 0 %.

B also gets m-call, with a camera alert 150 m east of it and two available units: m-car 500 m north
30 s before the call (it drives 1 km further north after it) and m-foot 800 m south; m-far, 2.5 km
north, is beyond the exact search (2,077 m), so the worker adds it from Redis's latest positions and
its position at the call is not known (the units of A are busy: not recommended). The timeline's
map must show the camera where it is and m-car where it was at the call, not where it is now, and
leave m-far off the map, saying why.

Screenshots: test-artifacts/wall-response.png, test-artifacts/wall-incident-map.png.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from contract import topics
from tests import scenario
from tests.integration.conftest import REPO, wait_until
from tests.integration.test_gateway import TOKEN, GatewayProcess
from tests.integration.test_wall_browser import ARTIFACTS, CHROMIUM, wall_page

pytestmark = pytest.mark.integration

M_PER_DEG = 111_320.0
CALL_B = (scenario.PB[0] + 0.0005, scenario.PB[1])


def north(m: float, of=CALL_B) -> tuple[float, float]:
    return (round(of[0] + m / M_PER_DEG, 7), of[1])


def east(m: float, of=CALL_B) -> tuple[float, float]:
    import math

    return (of[0], round(of[1] + m / (M_PER_DEG * math.cos(math.radians(of[0]))), 7))


def fix(unit, ts, where, kind="car", status="available"):
    return {"unit_id": unit, "ts": ts, "lat": where[0], "lon": where[1], "kind": kind, "status": status}


def screen_xy(page, where) -> tuple[float, float]:
    """The SVG user-space point the wall projects a position to."""
    return tuple(page.evaluate(f"() => window.__zw.project({where[1]}, {where[0]})"))


def test_zone_response_and_incident_map_on_the_wall_and_in_watch(deployment):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")

    dep = deployment(scenario.ZONES_FILE, partitions=2)
    wport = dep.start_worker()
    gw = GatewayProcess(dep, wport)
    now = int(time.time() * 1000)
    pa, pa2 = scenario.PA, scenario.PA2
    camera = east(150)
    try:
        dep.produce(topics.CALLS, [
            {"call_id": "r1", "ts": now - 400_000, "lat": pa[0], "lon": pa[1], "category": "theft", "priority": 2},
            {"call_id": "r2", "ts": now - 200_000, "lat": pa2[0], "lon": pa2[1], "category": "theft", "priority": 2},
            {"call_id": "r3", "ts": now - 500_000, "lat": scenario.PB2[0], "lon": scenario.PB2[1], "category": "theft",
             "priority": 3},
        ])
        dep.produce(topics.ALERTS, [{"alert_id": "m-al", "camera_id": "cam-m", "ts": now - 60_000,
                                     "lat": camera[0], "lon": camera[1], "type": "fight", "confidence": 0.9}])
        dep.produce(topics.GPS, [fix("m-car", now - 30_000, north(500)),
                                 fix("m-foot", now - 20_000, north(-800), "foot"),
                                 fix("m-far", now - 40_000, north(2500))])
        dep.produce(topics.CALLS, [{"call_id": "m-call", "ts": now - 10_000, "lat": CALL_B[0], "lon": CALL_B[1],
                                    "category": "violent", "priority": 1}])
        dep.produce(topics.GPS, [fix("r-u1", now - 110_000, pa2, status="busy"),
                                 fix("r-u2", now - 50_000, pa, status="busy"),
                                 fix("m-car", now - 2_000, north(1500))])
        # r1's on-scene tiers are decided with its breach (call ts + 300 s, nobody there: not met), r2's later
        want_a = {"arrived": 2, "within_1m": 0, "within_3m": 1, "within_5m": 1, "breaches": 1, "p50_s": 90,
                  "p90_s": 350, "tiers_met": 0, "tiers_decided": 1}
        wait_until(lambda: (d := dep.zone_docs()).get("A") and d["A"]["response"] == want_a
                   and d["B"]["response"]["breaches"] == 1, timeout=60,
                   what="zone A's response: r2 after 90 s, r1 breached and reached after 350 s; B's r3 breached")
        timeline = wait_until(lambda: (r := gw.get("/incidents/m-call")).status_code == 200
                              and len(r.json()["nearest_units"]) == 3 and r.json(), timeout=60,
                              what="m-call's timeline with its three units")
        units = {u["unit_id"]: u for u in timeline["nearest_units"]}
        assert list(units) == ["m-car", "m-foot", "m-far"] and "lat" not in units["m-far"]
        assert (units["m-car"]["lat"], units["m-car"]["lon"], units["m-car"]["ts"]) == (*north(500), now - 30_000)
        assert (units["m-foot"]["lat"], units["m-foot"]["lon"]) == north(-800)
        assert [(a["alert_id"], a["lat"], a["lon"]) for a in timeline["corroborating_alerts"]] == \
            [("m-al", *camera)]

        # zonewatch watch: the same figures in A's row
        out = subprocess.run([sys.executable, "-m", "zonewatch.cli", "watch", "--once", "--interval", "0.2"],
                             env={**dep.env, "COLUMNS": "260"}, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if line.split() and line.split()[0] == "A")
        assert "0% / 50% / 50%" in row and "1:30 / 5:50" in row, row

        errors: list[str] = []
        with wall_page(errors) as page:
            page.goto(f"{gw.url}/?token={TOKEN}")
            page.wait_for_function("""() => { const c = document.querySelector('tr[data-zone="A"] .c-135');
                                              return c && c.textContent.includes('%'); }""", timeout=30_000)
            row_a = page.locator('tr[data-zone="A"]')
            assert row_a.locator(".c-135").text_content() == "0% / 50% / 50%"
            assert row_a.locator(".c-135").get_attribute("data-decided") == "2"
            assert row_a.locator(".c-breach").text_content() == "1"
            assert "bad" in row_a.locator(".c-breach").get_attribute("class").split()
            assert row_a.locator(".c-p50").text_content() == "1:30 / 5:50"
            row_b = page.locator('tr[data-zone="B"]')
            assert (row_b.locator(".c-135").text_content(), row_b.locator(".c-breach").text_content(),
                    row_b.locator(".c-p50").text_content()) == ("0% / 0% / 0%", "1", "– / –")
            # every zone's cells are its document's figures (the venue rings: nothing decided)
            for zid, d in dep.zone_docs().items():
                r = d["response"]
                decided = r["within_5m"] + r["breaches"]
                want = " / ".join(f"{round(100 * r[k] / decided)}%" if decided else "–"
                                  for k in ("within_1m", "within_3m", "within_5m"))
                assert page.locator(f'tr[data-zone="{zid}"] .c-135').text_content() == want, zid
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "wall-response.png"))

            # the incident map: the camera at its position, m-car where it was at the call
            page.wait_for_selector('circle.unit[data-unit="m-car"]', state="attached", timeout=15_000)
            page.click('#inc-list li[data-call="m-call"]')
            page.wait_for_selector('#detail.open[data-kind="timeline"]', timeout=10_000)
            rec = page.locator('#g-focus circle.rec[data-unit="m-car"]')
            rec.wait_for(state="attached", timeout=10_000)
            assert rec.get_attribute("data-at") == "call"
            x, y = screen_xy(page, north(500))
            assert abs(float(rec.get_attribute("cx")) - x) < 0.2 and abs(float(rec.get_attribute("cy")) - y) < 0.2
            live = page.locator('circle.unit[data-unit="m-car"]')    # where /units has it now
            lx, ly = screen_xy(page, north(1500))
            assert abs(float(live.get_attribute("cy")) - ly) < 0.2 and abs(float(rec.get_attribute("cy")) - ly) > 5
            cam = page.locator('#g-focus circle.cam[data-alert="m-al"]')
            cx, cy = screen_xy(page, camera)
            assert abs(float(cam.get_attribute("cx")) - cx) < 0.2 and abs(float(cam.get_attribute("cy")) - cy) < 0.2
            assert page.locator('#g-focus circle.rec[data-unit="m-foot"]').count() == 1
            # the list says where each unit's position comes from
            assert "at the call" in page.locator('#detail ul.rec li[data-unit="m-car"] .at-call').text_content()
            shown = {li.get_attribute("data-unit") for li in page.locator("#detail ul.rec li[data-unit]").all()}
            assert shown == set(units)
            # m-far, added beyond the exact search: no position at the call, not on the map
            assert "unknown" in page.locator('#detail ul.rec li[data-unit="m-far"] .at-call').text_content()
            assert page.locator('#g-focus circle.rec[data-unit="m-far"]').count() == 0
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "wall-incident-map.png"))
        assert not errors, errors
    finally:
        gw.stop()
