"""zones.daily through the real pipeline (issue 14): a day replayed across midnight, once with one
worker, once with the worker killed (-9) mid-day and replaced; both equal the hand-computed records
of tests/unit/streams/test_daily.py; then `zonewatch briefing` renders md, html and json from them.

The events are the scenario's without its deliberately late call c7 (whose counting depends on
whether it is read before or after the 11th is final), published in time order.
"""

from __future__ import annotations

import signal

import orjson
import pytest

from contract import topics
from contract.events import parse_ts
from tests import scenario
from tests.integration.conftest import wait_until
from tests.integration.test_briefing import ARTIFACTS, briefing_json, check_html_in_chromium, run_briefing
from tests.unit.streams.test_daily import APART, EXPECTED

pytestmark = pytest.mark.integration

CALLS = [c for c in scenario.CALLS if c["call_id"] != "c7"]
# without c7, zone A's 12th has c6's breach and on-scene tiers only
WANT = {k: v for k, v in EXPECTED.items()}
WANT["2023-06-12|A"] = {**EXPECTED["2023-06-12|A"],
                        "response": {**EXPECTED["2023-06-12|A"]["response"], "breaches": 1, "tiers_decided": 1}}


def _events():
    evs = [(topics.CALLS, c) for c in CALLS] + [(topics.ALERTS, a) for a in scenario.ALERTS] \
        + [(topics.GPS, f) for f in scenario.FIXES]
    return sorted(evs, key=lambda te: parse_ts(te[1]["ts"]))


def _publish(dep, events):
    for topic, ev in events:
        dep.produce(topic, [ev])


def _daily(dep) -> dict:
    """The latest zones.daily record per key (the compacted topic as a consumer reads it)."""
    out = {}
    for m in dep.consume_all(topics.ZONES_DAILY, expect=10 ** 6, timeout=8):
        out[m.key.decode()] = orjson.loads(m.value)
    return out


def _settled(dep):
    got = _daily(dep)
    return got if {k: {f: v for f, v in d.items() if f not in APART} for k, d in got.items()} == WANT else False


@pytest.mark.parametrize("kill_midway", [False, True], ids=["one-worker", "killed-mid-day"])
def test_zones_daily_across_midnight_through_kafka(deployment, kill_midway, tmp_path):
    dep = deployment(scenario.ZONES_FILE, partitions=3)
    dep.start_worker()
    dep.wait_workers_joined()
    events = _events()
    half = len(events) // 2
    _publish(dep, events[:half])
    if kill_midway:
        wait_until(lambda: sum(dep.metrics().values()) >= half, what="first half counted")
        dep.kill_worker(0, sig=signal.SIGKILL)
        dep.start_worker()
    _publish(dep, events[half:])
    try:
        got = wait_until(lambda: _settled(dep), timeout=120, what="zones.daily settled")
    except AssertionError:
        got = _daily(dep)
        assert {k: {f: v for f, v in d.items() if f not in APART} for k, d in got.items()} == WANT
        raise
    assert all(d["tz"] == "Asia/Shanghai" for d in got.values())
    assert got["2023-06-11|A"]["final"] and not got["2023-06-12|A"]["final"]
    # the briefing of the 11th (final) and of the 12th, from what the worker wrote
    b11 = briefing_json(dep.env, "2023-06-11")
    assert b11["date"] == "2023-06-11"
    assert orjson.dumps(b11).count(b"breach") >= 1
    # overall, each call and alert once (tests/unit/streams/test_daily.py ONCE, without c7): the 11th
    # c1 and c2 (in A and B), both breached; the 12th c3, c4 (in the three rings), c6 (A and B) and
    # a1-a3, c4 reached after 120 s, c3 and c6 breached
    assert (b11["totals"]["calls"], b11["response"]["breaches"], b11["notes"]) == (2, 2, ["counted_once"])
    b12 = briefing_json(dep.env, "2023-06-12")
    r12 = b12["response"]
    assert (b12["totals"]["calls"], b12["totals"]["alerts"]) == (3, 3)
    assert (r12["arrived"], r12["within_3m"], r12["breaches"], r12["p50_s"], r12["p90_s"]) == (1, 1, 2, 120, 120)
    assert sum(z["calls"] for z in b12["zones"]) == 6    # the zones' own figures count c4 thrice, c6 twice
    for fmt in ("md", "html"):
        out = tmp_path / f"briefing.{fmt}"
        res = run_briefing(dep.env, "--date", "2023-06-12", "--format", fmt, "--out", str(out))
        assert res.returncode == 0, res.stderr
        assert out.stat().st_size > 500
    if not kill_midway:
        shown = check_html_in_chromium(tmp_path / "briefing.html", ARTIFACTS / "briefing-e2e.png")
        assert sum(shown["bars"]) > 0 and shown["status"] != "final"
        assert "2:00 / 2:00" in shown["percentiles"], shown["percentiles"]
