"""The wall page in a real headless browser (Debian's chromium driven by Playwright) during a replay.

Real path: `zonewatch replay` -> Kafka -> worker -> Redis -> gateway (SSE) -> the page. The browser is
/usr/bin/chromium, installed by deploy/install-browser.sh (Playwright's own browser download is
never used). Screenshots: test-artifacts/wall.png (1920x1080) and test-artifacts/wall-laptop.png.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from contract import topics
from tests import scenario
from tests.integration.conftest import REPO, wait_until
from tests.integration.test_gateway import TOKEN, GatewayProcess

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"


@contextmanager
def wall_page(errors: list[str], console: bool = True) -> Iterator:
    """A 1920x1080 page in Debian's chromium, closed afterwards; script errors (and, with `console`,
    console errors with the URL they came from) go into `errors`."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            if console:
                page.on("console", lambda m: errors.append(f"{m.text} ({m.location.get('url')})")
                        if m.type == "error" else None)
            yield page
        finally:
            browser.close()
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
                page.wait_for_function("() => window.__seen.calls.some(t => t !== '0')", timeout=30_000)
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


# --- issue 13 and 14 on the wall: health, reach, the course, timelines, nearest units ------------

REACH_RED = "#e5383b"
ROUTE = [[113.64, 34.692], [113.667, 34.692]]     # 2.5 km east-west between B and the venue
POINT = (34.692, 113.68)                          # an emergency point, 100 m


def wall_zones(tmp_path) -> Path:
    doc = orjson.loads(scenario.ZONES_FILE.read_bytes())
    doc["features"] += [
        {"type": "Feature", "id": "run", "properties": {"name": "Run", "segment_m": 1000, "buffer_m": 60},
         "geometry": {"type": "LineString", "coordinates": ROUTE}},
        {"type": "Feature", "id": "ep1", "properties": {"name": "Emergency point 1", "radius_m": 100},
         "geometry": {"type": "Point", "coordinates": [POINT[1], POINT[0]]}},
    ]
    path = tmp_path / "wall_zones.geojson"
    path.write_bytes(orjson.dumps(doc))
    return path


def km_label(m: float) -> str:
    return f"{m / 1000:.3f}".rstrip("0").rstrip(".")


def test_wall_health_reach_course_timeline_and_nearest_units(deployment, tmp_path):
    """Health marks, the reach column and layer, the course with its km marks and a point zone;
    a click on an incident opens its timeline (its cameras and recommended units on the map); a
    click on the map lists the nearest available units with their ETA. Events go in by POST /ingest."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")
    import httpx
    from playwright.sync_api import sync_playwright

    from tests.integration.test_intake import IAUTH, INGEST_TOKEN

    dep = deployment(wall_zones(tmp_path), partitions=2)
    wport = dep.start_worker()
    gw = GatewayProcess(dep, wport, env={"ZONEWATCH_INGEST_TOKENS": INGEST_TOKEN})

    def ingest(source, records):
        r = httpx.post(f"{gw.url}/ingest/{source}", content=orjson.dumps(records), timeout=30,
                       headers={**IAUTH, "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["accepted"] == len(records), r.text

    now = int(time.time() * 1000)
    a, b = scenario.PA, scenario.PB
    seg1 = (34.692, 113.655)   # on the course, 1.4 km from its start: segment run/1
    try:
        # zone A: a camera that reported 40 min ago and never since (silent) -> not trustworthy;
        # B: a unit present, nothing silent -> fine
        ingest("status", [{"camera_id": "cam-a", "ts": now - 40 * 60_000, "lat": a[0], "lon": a[1]}])
        ingest("gps", [{"unit_id": "w-car", "ts": now - 6000, "lat": b[0], "lon": b[1], "kind": "car"},
                       {"unit_id": "w-foot", "ts": now - 5000, "lat": b[0] + 0.002, "lon": b[1], "kind": "foot"},
                       {"unit_id": "w-run", "ts": now - 5000, "lat": seg1[0], "lon": seg1[1], "kind": "motorcycle"}])
        ingest("alerts", [{"alert_id": "w-al", "camera_id": "cam-b", "ts": now - 60_000, "lat": b[0] + 0.0009,
                           "lon": b[1], "type": "fight", "confidence": 0.9}])
        ingest("calls", [{"call_id": "w-call", "ts": now - 3000, "lat": b[0] + 0.0005, "lon": b[1],
                          "category": "violent", "priority": 1, "caller": "13700000000"}])
        zone_ids = {"A", "B", "outer", "inner", "core", "run/0", "run/1", "run/2", "ep1"}
        docs = wait_until(lambda: (d := dep.zone_docs()) and set(d) == zone_ids
                          and d["A"]["health"]["cameras_silent"] == 1 and d["B"]["open_incidents"] == 1 and d,
                          timeout=60, what="every zone in Redis, A with its silent camera, B with its call")
        assert all("reach" in d for d in docs.values()), "the worker writes no `reach` in the zone documents"
        timeline = wait_until(lambda: (r := gw.get("/incidents/w-call")).status_code == 200
                              and r.json()["nearest_units"] and r.json(), timeout=30, what="w-call's timeline")
        geo = gw.get("/zones.geojson").json()
        segs = sorted((f["properties"] for f in geo["features"] if f["properties"].get("route_id") == "run"),
                      key=lambda p: p["segment"])
        assert [p["segment"] for p in segs] == [0, 1, 2]

        ARTIFACTS.mkdir(exist_ok=True)
        errors: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{gw.url}/?token={TOKEN}")
                page.wait_for_selector('tr[data-zone="A"][data-trust="untrusted"]', timeout=30_000)
                page.wait_for_selector('#inc-list li[data-call="w-call"]', state="attached", timeout=30_000)
                docs = dep.zone_docs()

                # health: A marked on the map and in the table, its figures on hover; B not marked
                assert page.locator('path.zone[data-zone="A"]').get_attribute("data-trust") == "untrusted"
                assert page.locator('text.lbl[data-zone="A"] .warn').text_content().strip() == "⚠"
                assert page.locator('tr[data-zone="B"]').get_attribute("data-trust") == "ok"
                assert page.locator('path.zone[data-zone="B"]').get_attribute("data-trust") == "ok"
                h = docs["A"]["health"]
                cell = page.locator('tr[data-zone="A"] .c-health')
                assert cell.text_content() == f"⚠ {h['cameras_silent']}/{h['cameras_known']} · {h['units_quiet']}"
                hover = cell.get_attribute("title")
                assert f"{h['cameras_known']} known, {h['cameras_silent']} silent" in hover
                assert "cameras silent" in hover
                assert "1 silent" in page.locator('path.zone[data-zone="A"] title').text_content()

                # reach: each zone's share as its document says; the layer shades by it
                for zid, d in docs.items():
                    want = f"{round(d['reach']['within_3m'] * 100)}%"
                    assert page.locator(f'tr[data-zone="{zid}"] .c-reach').text_content() == want, zid
                page.click("#layer-reach")
                assert page.evaluate("window.__zw.layer") == "reach"
                bpath = page.locator('path.zone[data-zone="B"]')
                page.wait_for_function(f"""() => document.querySelector('path.zone[data-zone="B"]')
                                           .getAttribute('fill') === '{REACH_RED}'""", timeout=5_000)
                r3 = docs["B"]["reach"]["within_3m"]
                assert abs(float(bpath.evaluate("e => e.style.fillOpacity")) - (0.05 + 0.8 * (1 - r3))) < 1e-3

                # the course: one line per segment coloured by level, km marks at 0, 1, 2 and the
                # finish; the emergency point as a circle
                assert page.locator('path.course-seg[data-route="run"]').count() == 3
                marks = page.locator('g.km[data-route="run"] text').all_text_contents()
                assert marks == [f"{km_label(p['start_m'])} km" for p in segs] + [f"{km_label(segs[-1]['end_m'])} km"]
                assert marks[:3] == ["0 km", "1 km", "2 km"]
                assert page.locator('circle.zone.point[data-zone="ep1"]').count() == 1
                page.wait_for_timeout(500)
                page.screenshot(path=str(ARTIFACTS / "wall-health-reach.png"))
                page.click("#layer-reach")
                assert page.evaluate("window.__zw.layer") == "level"
                level_fill = {"green": GREEN, "yellow": "#e8c21f", "orange": ORANGE, "red": RED}
                b_fill = level_fill[dep.zone_docs()["B"]["level"]]   # back to the level colours
                page.wait_for_function(f"""() => document.querySelector('path.zone[data-zone="B"]')
                                           .getAttribute('fill') === '{b_fill}'""", timeout=5_000)

                # a click on an incident: its timeline, its camera and its recommended units
                page.click('#inc-list li[data-call="w-call"]')
                page.wait_for_selector('#detail.open[data-kind="timeline"]', timeout=10_000)
                detail = page.locator("#detail")
                assert "w-call" in detail.locator("h3").text_content()
                assert detail.locator("ol.events li").count() == len(timeline["events"])
                assert [li.get_attribute("data-unit") for li in detail.locator("ul.rec li[data-unit]").all()] == \
                    [u["unit_id"] for u in timeline["nearest_units"]]
                assert detail.locator('ul.alerts li[data-alert="w-al"]').count() == 1
                assert "13700000000" not in detail.inner_text()
                page.wait_for_selector('#g-focus [data-alert="w-al"]', state="attached", timeout=5_000)
                page.wait_for_selector('#g-focus circle.rec[data-unit="w-car"]', state="attached", timeout=10_000)
                assert page.locator('circle.inc[data-call="w-call"]').get_attribute("class").split()[-1] == "sel"
                page.screenshot(path=str(ARTIFACTS / "wall-timeline.png"))
                page.click("#detail .close")
                assert page.locator("#detail.open").count() == 0
                # ...also from its marker on the map
                page.locator('circle.inc[data-call="w-call"]').dispatch_event("click")
                page.wait_for_selector('#detail.open[data-kind="timeline"]', timeout=10_000)
                page.click("#detail .close")

                # a click on the map near B: the nearest available units with their ETA
                x, y = page.evaluate(f"""() => {{
                    const [sx, sy] = window.__zw.project({b[1] + 0.003}, {b[0] - 0.003});
                    const m = document.getElementById('map'), p = m.createSVGPoint();
                    p.x = sx; p.y = sy;
                    const q = p.matrixTransform(m.getScreenCTM());
                    return [q.x, q.y]; }}""")
                page.mouse.click(x, y)
                page.wait_for_selector('#detail.open[data-kind="units"] li[data-unit]', timeout=10_000)
                probe = page.evaluate("window.__zw.lastProbe")
                assert abs(probe["lat"] - (b[0] - 0.003)) < 2e-4 and abs(probe["lon"] - (b[1] + 0.003)) < 2e-4
                api = gw.get(f"/units?near={probe['lat']},{probe['lon']}&radius=5000&status=available&limit=200").json()
                want = sorted(api, key=lambda u: (u["eta_s"], u["distance_m"]))[:8]
                shown = [(li.get_attribute("data-unit"), int(li.get_attribute("data-eta")))
                         for li in page.locator("#detail ol.units li[data-unit]").all()]
                assert shown == [(u["unit_id"], u["eta_s"]) for u in want]
                assert {"w-car", "w-foot", "w-run"} <= {u for u, _ in shown}
                eta = next(e for u, e in shown if u == "w-car")
                assert page.locator('#detail li[data-unit="w-car"] .eta').text_content() == \
                    f"ETA {eta // 60}:{eta % 60:02d}"
                assert page.locator("#g-focus g.probe line").count() == len(shown)
                page.screenshot(path=str(ARTIFACTS / "wall-units.png"))
            finally:
                browser.close()
        assert not errors, errors
    finally:
        gw.stop()


# --- issue 24: hostile values in every field the wall renders; its Content-Security-Policy ----------

# every field gets one: markup that would run script (an inline handler, a script element, an svg
# onload) if the page put it into HTML as markup, and quotes/backticks that would leave an attribute
def evil(field: str) -> str:
    return (f'"><img src=x onerror="window.__pwned.push(\'{field}\')"><script>window.__pwned.push("{field}")'
            f"</script><svg onload=\"alert('{field}')\"></svg>'`{field}")


WATCH = """() => {
  window.__pwned = [];
  window.__violations = [];
  window.alert = (m) => window.__pwned.push('alert ' + m);
  document.addEventListener('securitypolicyviolation',
    (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
}"""
# nothing the data could have made: no image, no inline script, no frame, no handler attribute
INJECTED = """() => [...document.querySelectorAll('*')].filter((el) =>
    ['IMG', 'IFRAME', 'OBJECT', 'EMBED'].includes(el.tagName.toUpperCase()) ||
    (el.tagName.toUpperCase() === 'SCRIPT' && !el.src) ||
    [...el.attributes].some((a) => a.name.toLowerCase().startsWith('on'))).map((el) => el.outerHTML.slice(0, 120))"""


def check_csp(headers: dict) -> None:
    """The wall's header: strict (no inline script or style, nothing from elsewhere, Trusted Types)."""
    csp = {d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split(";") if d.strip()}
    assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["require-trusted-types-for"] == ["'script'"] and csp["trusted-types"] == ["zw-html"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert not any("unsafe" in v or "*" in v for vals in csp.values() for v in vals), csp
    assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"


def hostile_data() -> dict:
    """What the gateway's endpoints would answer if every value were hostile (the page is tested on
    its own here: the gateway, which would refuse most of this, is bypassed with page.route)."""
    from contract.zones import load_zones, zones_geojson

    now = int(time.time() * 1000)
    geo = zones_geojson(load_zones(scenario.ZONES_FILE))
    for f in geo["features"]:
        f["properties"]["name"] = evil("zone name") + " / " + evil("zone name en")
    docs = []
    for zid in (f["id"] for f in geo["features"]):
        docs.append({"zone_id": zid, "version": 1, "clock": now, "level": evil("level"), "ring": evil("ring"),
                     "name": evil("name"), "kind": evil("kind"),
                     "today": {"calls": evil("today.calls"), "alerts": evil("today.alerts")},
                     "windows": {"5m": {"calls": evil("5m.calls"), "alerts": evil("5m.alerts")}},
                     "units": {"present": evil("units.present"), "available": evil("units.available")},
                     "open_incidents": evil("open_incidents"),
                     "reach": {"within_3m": 0.2, "within_5m": evil("reach.within_5m")},
                     "health": {"cameras_known": evil("cameras_known"), "cameras_silent": evil("cameras_silent"),
                                "units_quiet": evil("units_quiet"),
                                "last_event_age_s": {"calls": evil("age.calls"), "gps": 99999,
                                                     "alerts": evil("age.alerts")}}})
    incident = {"call_id": evil("call_id"), "status": evil("status"), "ts": evil("ts"), "priority": evil("priority"),
                "category": evil("category"), "zones": [evil("zones")], "ring": evil("inc.ring"),
                "lat": scenario.PA[0], "lon": scenario.PA[1], "unit_id": evil("unit_id"),
                "response_s": evil("response_s"),
                "nearest_units": [{"unit_id": evil("near.unit_id"), "kind": evil("near.kind"),
                                   "distance_m": evil("near.distance_m"), "eta_s": evil("near.eta_s")}]}
    arrived = dict(incident, call_id=evil("arrived.call_id"), status="arrived")
    timeline = {"call_id": evil("tl.call_id"), "status": evil("tl.status"), "ring": evil("tl.ring"),
                "zones": [evil("tl.zones")],
                "call": {"priority": evil("call.priority"), "category": evil("call.category"), "ts": now,
                         "lang": evil("call.lang"), "text": evil("call.text"), "lat": scenario.PA[0],
                         "lon": scenario.PA[1]},
                "arrival": {"unit_id": evil("arrival.unit_id"), "response_s": evil("arrival.response_s"),
                            "ts": evil("arrival.ts")},
                "nearest_units": [{"unit_id": evil("tl.unit_id"), "kind": evil("tl.kind"),
                                   "distance_m": evil("tl.distance_m"), "eta_s": evil("tl.eta_s")}],
                "corroborating_alerts": [{"alert_id": evil("alert_id"), "type": evil("alert.type"),
                                          "distance_m": evil("alert.distance_m"), "dt_s": evil("alert.dt_s")}],
                "events": [{"ts": now, "what": evil("what")},
                           {"ts": now, "what": "alert", "alert_id": evil("ev.alert_id"), "type": evil("ev.type"),
                            "distance_m": 5},
                           {"ts": now, "what": "recommended", "unit_ids": [evil("ev.unit_ids")]},
                           {"ts": now, "what": "arrived", "unit_id": evil("ev.unit_id"), "response_s": 3}]}
    units = [{"unit_id": evil("units.unit_id"), "kind": evil("units.kind"), "status": evil("units.status"),
              "lat": scenario.PA[0], "lon": scenario.PA[1], "distance_m": evil("units.distance_m"),
              "eta_s": evil("units.eta_s"), "ts": now}]
    stats = {"tz": evil("tz"), "e2e": {"p50_ms": evil("p50"), "p99_ms": evil("p99"), "window_s": evil("window"),
                                       "error": evil("e2e.error")}}
    sse = (b"retry: 600000\n\nid: 1-0\nevent: snapshot\ndata: " + orjson.dumps(docs) + b"\n\n"
           b"event: incidents\ndata: " + orjson.dumps([incident]) + b"\n\n"
           b"event: incident\ndata: " + orjson.dumps(dict(arrived, status="open")) + b"\n\n"
           b"event: incident\ndata: " + orjson.dumps(arrived) + b"\n\n")
    return {"geo": geo, "sse": sse, "timeline": timeline, "units": units, "stats": stats}


def test_the_wall_shows_hostile_values_as_text_and_runs_no_script(deployment):
    """Every field the wall renders (zone table, map labels and titles, header, incident list and
    its attributes, a timeline, nearest units, the latency badge) holding markup that would run
    script: the page shows it as text, no element or handler attribute comes of it, no script runs,
    and the browser reports no CSP violation (the CSP would block an inline handler, and report it)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")
    from playwright.sync_api import sync_playwright

    dep = deployment(scenario.ZONES_FILE, partitions=1)
    data = hostile_data()
    zone_ids = [f["id"] for f in data["geo"]["features"]]
    errors: list[str] = []
    dialogs: list[str] = []
    gw = GatewayProcess(dep)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.add_init_script(f"({WATCH})()")

                def fulfil(route, body, content_type="application/json"):
                    route.fulfill(status=200, body=body, headers={"content-type": content_type})

                page.route("**/zones.geojson", lambda r: fulfil(r, orjson.dumps(data["geo"])))
                page.route("**/stream?*", lambda r: fulfil(r, data["sse"], "text/event-stream"))
                page.route("**/stats", lambda r: fulfil(r, orjson.dumps(data["stats"])))
                page.route("**/units?*", lambda r: fulfil(r, orjson.dumps(data["units"])))
                page.route("**/incidents/*", lambda r: fulfil(r, orjson.dumps(data["timeline"])))
                response = page.goto(f"{gw.url}/?token={TOKEN}")
                check_csp(response.headers)
                page.wait_for_function("() => document.querySelectorAll('#rows tr').length === "
                                       f"{len(zone_ids)} && document.querySelector('#rows').textContent"
                                       ".includes('today.calls')", timeout=30_000)
                page.wait_for_selector("#inc-list li[data-call]", state="attached", timeout=30_000)
                assert page.evaluate(INJECTED) == []          # the table, the header, the incident list
                assert page.evaluate("window.__violations") == []
                page.wait_for_selector("#inc-list li.arrived", state="attached", timeout=30_000)
                page.wait_for_function("() => document.querySelector('#e2e .v').textContent.includes('p50')",
                                       timeout=15_000)
                page.wait_for_selector("circle.unit", state="attached", timeout=15_000)
                # the values are there, as text
                rows = page.locator("#rows").inner_text()
                for field in ("today.calls", "today.alerts", "5m.calls", "units.present", "open_incidents",
                              "cameras_silent", "zone name"):
                    assert evil(field) in rows or f"onerror=\"window.__pwned.push('{field}')" in rows, field
                incidents = page.locator("#inc-list").inner_text()
                for field in ("call_id", "category", "priority", "zones", "near.unit_id", "unit_id"):
                    assert f"window.__pwned.push('{field}')" in incidents, field
                li = page.locator("#inc-list li[data-call]").first
                assert li.get_attribute("data-call") == evil("call_id") and li.get_attribute("data-status") == \
                    evil("status")
                assert page.locator("#inc-list .timer[data-ts]").first.get_attribute("data-ts") == evil("ts")
                # a timeline and the nearest units
                page.locator("#inc-list li[data-call]").first.dispatch_event("click")
                page.wait_for_selector('#detail.open[data-kind="timeline"]', timeout=10_000)
                detail = page.locator("#detail").inner_text()
                for field in ("tl.call_id", "call.text", "call.lang", "arrival.unit_id", "tl.unit_id", "alert_id",
                              "alert.type", "what", "ev.unit_ids", "ev.unit_id", "tl.ring"):
                    assert f"window.__pwned.push('{field}')" in detail, field
                page.locator("#detail .close").click()
                box = page.locator("#map").bounding_box()
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.wait_for_selector('#detail.open[data-kind="units"] li[data-unit]', timeout=10_000)
                assert "units.unit_id" in page.locator("#detail").inner_text()
                # and nothing of it became markup or ran
                page.wait_for_timeout(500)
                assert page.evaluate(INJECTED) == []
                assert page.evaluate("window.__pwned") == [] and dialogs == []
                assert page.evaluate("window.__violations") == []
            finally:
                browser.close()
        assert not [e for e in errors if "pwned" in e or "alert" in e], errors
    finally:
        gw.stop()


def test_hostile_records_in_redis_are_skipped_and_the_wall_keeps_its_picture(deployment):
    """Through the real gateway: zone documents, incident entries and zone updates written straight
    into Redis with hostile values (script in enum and number fields, ts of two types, a multi-line
    state that would forge a `snapshot` event) are skipped and counted; hostile text in free fields
    (an incident's call id) reaches the wall as text; the wall keeps every valid zone and incident."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")
    from playwright.sync_api import sync_playwright

    from contract import keys, schemas
    from contract.zones import load_zones

    dep = deployment(scenario.ZONES_FILE, partitions=1)
    now = int(time.time() * 1000)
    zone_ids = [z.zone_id for z in load_zones(scenario.ZONES_FILE)]
    r = dep.redis
    for zid in zone_ids:
        r.sadd(keys.ZONES, zid)
        r.set(keys.zone(zid), orjson.dumps(schemas.example("zone", zone_id=zid, clock=now, level="green")))
    r.set(keys.zone("A"), orjson.dumps(schemas.example("zone", zone_id="A", clock=now, level=evil("level"))))
    r.set(keys.zone("B"), orjson.dumps(schemas.example("zone", zone_id="B", clock=now,
                                                       today=dict(schemas.example("zone")["today"],
                                                                  calls=evil("calls")))))
    call_id = "\"'><img src=x onerror=alert(1)>`"     # ids are free text up to 64 characters
    good = schemas.example("incident", call_id=call_id, ts=now - 5000, status="open", zones=["core"])
    r.hset(keys.INCIDENTS, mapping={
        "good": orjson.dumps(good),
        "ts-str": orjson.dumps(schemas.example("incident", call_id="ts-str", ts=str(now), status="open")),
        "status": orjson.dumps(schemas.example("incident", call_id="evil-status", ts=now, status=evil("status")))})
    gw = GatewayProcess(dep)
    errors: list[str] = []
    try:
        before = gw.metric("zonewatch_gateway_bad_records_total")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.add_init_script(f"({WATCH})()")
                page.goto(f"{gw.url}/?token={TOKEN}")
                page.wait_for_selector('tr[data-zone="core"][data-level="green"]', timeout=30_000)
                page.wait_for_selector("#inc-list li[data-call]", state="attached", timeout=30_000)
                # A and B are skipped (no data), the rest shown; one incident, its call id as text
                assert page.locator('tr[data-zone="A"]').get_attribute("data-level") == "none"
                assert page.locator('tr[data-zone="B"]').get_attribute("data-level") == "none"
                assert page.locator("#inc-list li[data-call]").count() == 1
                assert page.locator("#inc-list li[data-call]").get_attribute("data-call") == call_id
                assert call_id in page.locator("#inc-list").inner_text()
                # a zone update whose state is several lines (it would forge an empty snapshot and a
                # day-long retry), then a valid one: the first is skipped, the second arrives
                forged = (b'{"zone_id": "core"}\n\nretry: 86400000\nid: 9-9\nevent: snapshot\ndata: []')
                r.xadd(keys.ZONE_UPDATES, {"zone_id": "core", "version": 2, "state": forged})
                r.xadd(keys.ZONE_UPDATES, {"zone_id": "core", "version": 3, "state": orjson.dumps(
                    schemas.example("zone", zone_id="core", clock=now, version=1000, level="red"),
                    option=orjson.OPT_INDENT_2)})
                page.wait_for_selector('tr[data-zone="core"][data-level="red"]', timeout=30_000)
                assert page.locator('tr[data-zone="inner"]').get_attribute("data-level") == "green"   # not cleared
                assert page.locator("#conn").get_attribute("data-state") == "live"
                assert page.evaluate(INJECTED) == [] and page.evaluate("window.__pwned") == []
                assert page.evaluate("window.__violations") == []
            finally:
                browser.close()
        assert gw.metric("zonewatch_gateway_bad_records_total") >= before + 5   # 2 zones, 2 incidents, 1 update
        assert gw.metric('zonewatch_gateway_bad_records_total{kind="incident"}') >= 2
        assert gw.get("/incidents").status_code == 200
        assert not errors, errors
    finally:
        gw.stop()
