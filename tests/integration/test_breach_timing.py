"""Breaches on live feeds (issue 22 item 3), through real Kafka and a real worker: an unanswered
call's `breach` comes once the patrol.gps watermark has passed its deadline — with current feeds,
and with a GPS feed 20 s behind the stream clock (the clock then runs on the camera feed) — never
before it, and never an `arrived` for a call no unit came near.

What is checked is causality, not speed: each breach record's Kafka timestamp is at or after the
moment the feeder's fixes with ts >= the deadline were in Kafka on every patrol.gps partition
(bench/breach_latency.py measures the same interval as a figure: docs/BENCHMARKS.md "Breach latency").
The contract's default watermark bounds (idle 30 s, max lag 60 s) are used, not the replays' ones.
"""

from __future__ import annotations

import pytest

from bench import breach_latency

pytestmark = pytest.mark.integration

CALLS = 8
UNITS = 12   # every one of the 4 patrol.gps partitions gets fixes (checked below)
CLOCK_SKEW_S = 0.05   # the breach record's timestamp and the feeder's acks come from two clocks of one host


@pytest.mark.parametrize("lag_s", [0.0, 20.0])
def test_a_breach_comes_after_the_watermark_passed_its_deadline(deployment, lag_s):
    from pathlib import Path

    d = deployment(Path(__file__).parents[1] / "zones_test.geojson", partitions=4)
    d.start_worker(env={"ZONEWATCH_WATERMARK_IDLE_MS": "30000", "ZONEWATCH_WATERMARK_MAX_LAG_MS": "60000"})
    got = breach_latency.measure(d.settings, lag_s, CALLS, UNITS, settle_s=10.0)
    assert got["gps_partitions"] == 4, got
    assert got["arrivals"] == 0, f"no unit came near these calls, yet: {got}"
    assert got["breaches"] == CALLS, f"every unanswered call breaches once the feed passes it: {got}"
    assert got["measured"] == CALLS, got
    early = [x for x in got["latencies"] if x < -CLOCK_SKEW_S]
    assert not early, f"breaches decided before the GPS feed had passed their deadline (s): {early}"
