"""gateway.promtext, the one Prometheus text reader: PromQL's `histogram_quantile` and bucket sums,
as the wall's latency badge (gateway.stats), `zonewatch watch` and the bench use them."""

from __future__ import annotations

import math

import pytest

from gateway import promtext
from gateway.promtext import histogram_quantile
from gateway.stats import parse_e2e_buckets

INF = math.inf
# 50 observations <= 0.1 s, 40 in (0.1, 0.2], 10 in (0.2, 0.5]
BUCKETS = [(0.1, 50), (0.2, 90), (0.5, 100), (INF, 100)]


@pytest.mark.parametrize("q,expected", [
    (0.5, 0.1),                          # rank 50 ends the first bucket exactly
    (0.25, 0.05),                        # first bucket interpolates from 0
    (0.75, 0.1 + 0.1 * 25 / 40),         # rank 75: 25 of the 40 in (0.1, 0.2]
    (0.9, 0.2),
    (0.99, 0.2 + 0.3 * 9 / 10),          # rank 99: 9 of the 10 in (0.2, 0.5]
    (0.0, 0.0),
    (1.0, 0.5),
])
def test_histogram_quantile_interpolates_like_prometheus(q, expected):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_edge_cases():
    # a rank in the +Inf bucket gives the largest finite bound
    assert histogram_quantile(0.5, [(0.1, 1), (INF, 10)]) == pytest.approx(0.1)
    # order of the pairs does not matter
    assert histogram_quantile(0.99, list(reversed(BUCKETS))) == pytest.approx(0.47)
    # no observations, no +Inf bucket, a single bucket: NaN in Prometheus, None here
    assert histogram_quantile(0.5, [(0.1, 0), (INF, 0)]) is None
    assert histogram_quantile(0.5, [(0.1, 5), (0.2, 10)]) is None
    assert histogram_quantile(0.5, [(INF, 10)]) is None
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    # a non-monotonic scrape is repaired, not a crash: (0.2, 80) counts as 90
    assert histogram_quantile(0.9, [(0.1, 90), (0.2, 80), (INF, 100)]) == pytest.approx(0.1)


METRICS = """\
# HELP zonewatch_e2e_latency_seconds Kafka message timestamp ...
# TYPE zonewatch_e2e_latency_seconds histogram
zonewatch_e2e_latency_seconds_bucket{le="0.1",source="calls"} 10.0
zonewatch_e2e_latency_seconds_bucket{le="0.2",source="calls"} 20.0
zonewatch_e2e_latency_seconds_bucket{le="+Inf",source="calls"} 20.0
zonewatch_e2e_latency_seconds_count{source="calls"} 20.0
zonewatch_e2e_latency_seconds_sum{source="calls"} 2.5
zonewatch_e2e_latency_seconds_bucket{le="0.1",source="gps"} 40.0
zonewatch_e2e_latency_seconds_bucket{le="0.2",source="gps"} 70.0
zonewatch_e2e_latency_seconds_bucket{le="+Inf",source="gps"} 80.0
zonewatch_event_age_seconds_bucket{le="0.1",source="gps"} 999.0
"""


def test_parse_e2e_buckets_sums_over_sources():
    assert parse_e2e_buckets(METRICS) == {0.1: 50.0, 0.2: 90.0, INF: 100.0}
    assert promtext.buckets(METRICS, "zonewatch_e2e_latency_seconds") == {0.1: 50.0, 0.2: 90.0, INF: 100.0}
