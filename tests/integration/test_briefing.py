"""`zonewatch briefing` against a real zones.daily topic (the Kafka of deploy/stack.py).

The records are produced here in the documented shape (contract/topics.py DAILY_FIELDS; the fixture
tests/golden/zones_daily.jsonl: superseded versions, tombstones, an unreadable value, three closed
days and one in progress), over the 4 partitions of the compacted topic, so this test does not
depend on the worker. Kafka does not compact the active segment, so the old versions are really read
and must lose to the later ones.

The helpers take any deployment and any records: the end-to-end test that replays a day through the
worker skips `produce_daily` and calls `briefing_json(dep.env, date)` (and `check_html_in_chromium`)
on what the worker wrote to `{prefix}zones.daily`.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from contract import topics
from contract.kafka_settings import kafka_python_kwargs
from contract.settings import Settings
from tests import scenario
from tests.golden.daily import GOLDEN, messages
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"


# ------------------------------------------------------------------------- helpers (reusable)


def produce_daily(settings: Settings, msgs) -> set[int]:
    """Write (key, value) pairs to zones.daily in order (None = tombstone), acks=all; the partitions used."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=5, **kafka_python_kwargs(settings))
    try:
        futures = [prod.send(settings.topic(topics.ZONES_DAILY), value, key=key) for key, value in msgs]
        prod.flush()
        return {f.get(timeout=30).partition for f in futures}
    finally:
        prod.close()


def run_briefing(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`zonewatch briefing ARGS` as a separate process with the deployment's environment."""
    return subprocess.run([sys.executable, "-m", "zonewatch.cli", "briefing", *args], env=env, cwd=REPO,
                          capture_output=True, timeout=timeout)


def briefing_json(env: dict, date: str) -> dict:
    p = run_briefing(env, "--date", date, "--format", "json")
    assert p.returncode == 0, p.stderr.decode()
    return orjson.loads(p.stdout)


def check_html_in_chromium(page_file: Path, screenshot: Path) -> dict:
    """Open a briefing HTML file in Debian's chromium, save a full-page screenshot, and return what
    the page shows: bar values and peak hours of the calls chart, the rows of both worst-zone tables
    (zone ids), the status. Fails on a script error or on any request beyond the file itself."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/install-browser.sh (Debian's chromium) first")
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            chart = page.locator("#chart-calls")
            box = chart.bounding_box()
            assert chart.is_visible() and box and box["width"] > 500 and box["height"] > 100, box
            bars = page.locator("#chart-calls rect.bar")
            heights = [bars.nth(i).bounding_box() for i in range(bars.count())]
            shown = {
                "bars": [int(v) for v in bars.evaluate_all("els => els.map(e => e.dataset.value)")],
                "bar_heights_px": [round(b["height"]) if b else 0 for b in heights],
                "peaks": sorted(int(h) for h in page.locator("#chart-calls rect.peak")
                                .evaluate_all("els => els.map(e => e.dataset.hour)")),
                "worst_breaches": page.locator("#worst-breaches tbody tr")
                .evaluate_all("els => els.map(e => e.dataset.zone)"),
                "worst_median": page.locator("#worst-median tbody tr")
                .evaluate_all("els => els.map(e => e.dataset.zone)"),
                "worst_visible": page.locator("#worst-breaches").is_visible()
                and page.locator("#worst-median").is_visible(),
                "totals": page.locator("#totals").inner_text(),
                "percentiles": page.locator("#percentiles").inner_text(),
                "status": page.locator("#status").get_attribute("data-status"),
                "status_text": page.locator("#status").inner_text(),
            }
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert requests == [page_file.as_uri()], f"the page fetched more than itself: {requests}"
    return shown


def _yesterday(tz: str) -> str:
    return (datetime.now(ZoneInfo(tz)).date() - timedelta(days=1)).isoformat()


# ------------------------------------------------------------------------------------ the test


def test_briefing_from_a_real_zones_daily_topic(deployment, tmp_path):
    dep = deployment(scenario.ZONES_FILE, partitions=4)
    tz = dep.env.get("ZONEWATCH_TZ") or "Asia/Shanghai"
    before = _yesterday(tz)
    yesterday_rec = {"date": before, "zone_id": "A", "name": "Grid A", "kind": "grid", "ring": None, "tz": tz,
                     "final": True, "clock": 0, "version": 1, "calls": 2, "calls_by_category": {"theft": 2},
                     "calls_by_priority": {"2": 2}, "calls_by_lang": {"zh": 2}, "alerts": 0, "alerts_by_type": {},
                     "hourly": {"calls": [0] * 23 + [2], "alerts": [0] * 24},
                     "response": {"arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 0,
                                  "p50_s": None, "p90_s": None}}
    # and today, in progress: should the wall clock pass midnight during the test, the default date moves to it
    today = (datetime.fromisoformat(before) + timedelta(days=1)).date().isoformat()
    today_rec = dict(yesterday_rec, date=today, final=False, calls=1, calls_by_category={"theft": 1},
                     calls_by_priority={"2": 1}, calls_by_lang={"zh": 1},
                     hourly={"calls": [1] + [0] * 23, "alerts": [0] * 24})
    msgs = messages() + [(f"{before}|A".encode(), orjson.dumps(yesterday_rec)),
                         (f"{today}|A".encode(), orjson.dumps(today_rec))]
    parts = produce_daily(dep.settings, msgs)
    assert len(parts) > 1, f"all records landed on one partition {parts}: the test would not read several"

    # JSON: exactly the golden file (hand-checked in tests/unit/reports/test_briefing.py)
    out = tmp_path / "briefing.json"
    p = run_briefing(dep.env, "--date", "2023-06-12", "--format", "json", "--out", str(out))
    assert p.returncode == 0, p.stderr.decode()
    assert out.read_bytes() == GOLDEN.read_bytes()

    # HTML, in Chromium: the chart and the worst-zones tables as the figures say
    page_file = tmp_path / "briefing.html"
    p = run_briefing(dep.env, "--date", "2023-06-12", "--format", "html", "--lang", "zh", "--out", str(page_file))
    assert p.returncode == 0, p.stderr.decode()
    shown = check_html_in_chromium(page_file, ARTIFACTS / "briefing.png")
    golden = orjson.loads(GOLDEN.read_bytes())
    assert shown["bars"] == golden["hourly"]["calls"]
    assert shown["peaks"] == [9, 10, 20]
    heights = shown["bar_heights_px"]
    assert heights[20] == max(heights) > heights[9] > heights[10] > heights[14] > heights[19] > 0 == heights[0]
    assert shown["worst_breaches"] == ["core", "A", "C", "outer"]
    assert shown["worst_median"] == ["core", "outer", "C", "A", "inner"]
    assert shown["worst_visible"] and shown["status"] == "final" and "已定稿" in shown["status_text"]
    assert (ARTIFACTS / "briefing.png").stat().st_size > 10_000

    # Markdown in English on stdout
    p = run_briefing(dep.env, "--date", "2023-06-12", "--lang", "en")
    assert p.returncode == 0, p.stderr.decode()
    md = p.stdout.decode("utf-8")
    assert "| 29 | 7 | 45 | 24 | 7 (25.0%) | 16 (57.1%) | 22 (78.6%) | 6 | 28 | — | — |" in md

    # a day still being written
    rep = briefing_json(dep.env, "2023-06-13")
    assert (rep["status"], rep["zones_final"], rep["zones_total"]) == ("in_progress", 1, 2)

    # no --date: yesterday by the wall clock in ZONEWATCH_TZ
    p = run_briefing(dep.env, "--format", "json")
    after = _yesterday(tz)
    assert p.returncode == 0, p.stderr.decode()
    rep = orjson.loads(p.stdout)
    assert rep["date"] == after and rep["totals"]["calls"] == (2 if after == before else 1)
    assert rep["status"] == ("final" if after == before else "in_progress")

    # a date not there (2023-06-10 was tombstoned): exit 2 and the dates that are there
    p = run_briefing(dep.env, "--date", "2023-06-10")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert "no zones.daily records for 2023-06-10; the dates there are: 2023-06-11, 2023-06-12, " \
           "2023-06-13 (in progress)" in err and "Traceback" not in err

    # another deployment's prefix with no such topic
    env = dict(dep.env, ZONEWATCH_TOPIC_PREFIX=dep.env["ZONEWATCH_TOPIC_PREFIX"] + "nothing.")
    p = run_briefing(env, "--date", "2023-06-12")
    assert p.returncode == 2 and "does not exist" in p.stderr.decode(), p.stderr.decode()
