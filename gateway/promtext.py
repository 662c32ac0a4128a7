"""The one reader of Prometheus text (`/metrics`): samples, counters, histograms and PromQL's
`histogram_quantile`. The wall's latency badge, `zonewatch watch` and the bench all use it.

Parsing is prometheus_client's own parser; quantiles interpolate linearly inside a bucket exactly
like PromQL: the lower edge of the first bucket is 0, and a quantile falling into the +Inf bucket
is reported as the largest finite bucket bound.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

Row = tuple[str, dict[str, str], float]


def fetch(url: str, timeout: float = 5.0) -> str:
    """The text of a /metrics URL."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
        return resp.read().decode("utf-8", "replace")


def parse(text: str) -> list[Row]:
    """[(sample name, labels, value)] of every sample."""
    return [(s.name, s.labels, float(s.value))
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def counter_sum(rows: Iterable[Row], name: str, by: str | None = None):
    """Sum of a counter (or gauge) over all series, or a dict keyed by one label."""
    if by is None:
        return sum(v for n, _l, v in rows if n == name)
    out: dict[str, float] = {}
    for n, lab, v in rows:
        if n == name:
            out[lab.get(by, "")] = out.get(lab.get(by, ""), 0.0) + v
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram, as Prometheus' `histogram_quantile` computes it.

    `buckets` are (upper bound `le`, cumulative count) pairs, in any order, one of them `+Inf`.
    Linear interpolation inside the bucket holding the rank (the first bucket starts at 0); a rank
    in the `+Inf` bucket gives the largest finite bound. None where Prometheus says NaN: no
    observations, no `+Inf` bucket, fewer than two buckets.
    """
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted((float(le), float(c)) for le, c in buckets)
    if len(bs) < 2 or not math.isinf(bs[-1][0]):
        return None
    # counts must be monotonic; scrape races or float sums can break that slightly
    fixed, top = [], 0.0
    for le, c in bs:
        top = max(top, c)
        fixed.append((le, top))
    bs = fixed
    total = bs[-1][1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, (_, c) in enumerate(bs) if c >= rank)
    if b == len(bs) - 1:
        return bs[-2][0]
    if b == 0 and bs[0][0] <= 0:
        return bs[0][0]
    start, end, count = 0.0, bs[b][0], bs[b][1]
    if b > 0:
        start = bs[b - 1][0]
        count -= bs[b - 1][1]
        rank -= bs[b - 1][1]
    return start + (end - start) * (rank / count)


class Histogram:
    """A histogram summed over every label except `le` (cumulative bucket counts)."""

    def __init__(self, buckets: dict[float, float], total: float = 0.0, count: float = 0.0):
        self.buckets = dict(sorted(buckets.items()))
        self.sum = total
        self.count = count

    @classmethod
    def from_rows(cls, rows: Iterable[Row], name: str, where: dict[str, str] | None = None) -> Histogram:
        """The series of `name` summed; only those whose labels include `where`, when given."""
        b: dict[float, float] = {}
        s = c = 0.0
        for n, lab, v in rows:
            if where and any(lab.get(k) != want for k, want in where.items()):
                continue
            if n == name + "_bucket":
                le = float(lab["le"])  # "+Inf" parses to inf
                b[le] = b.get(le, 0.0) + v
            elif n == name + "_sum":
                s += v
            elif n == name + "_count":
                c += v
        return cls(b, s, c)

    @classmethod
    def from_text(cls, text: str, name: str) -> Histogram:
        return cls.from_rows(parse(text), name)

    def __sub__(self, other: Histogram) -> Histogram:
        return Histogram({le: v - other.buckets.get(le, 0.0) for le, v in self.buckets.items()},
                         self.sum - other.sum, self.count - other.count)

    def quantile(self, q: float) -> float | None:
        """PromQL `histogram_quantile`."""
        return histogram_quantile(q, self.buckets.items())

    def beyond_last_bucket(self, q: float) -> bool:
        """True when quantile q falls into the +Inf bucket (quantile() then returns a lower bound)."""
        items = list(self.buckets.items())
        if len(items) < 2 or items[-1][1] <= 0:
            return False
        return items[-2][1] < q * items[-1][1]

    def max_bound(self) -> tuple[float | None, float | None]:
        """(lower, upper) edge of the highest non-empty bucket: the maximum lies in it."""
        prev_le, prev_c = 0.0, 0.0
        hi = None
        for le, c in self.buckets.items():
            if c > prev_c:
                hi = (prev_le, le)
            prev_le, prev_c = le, c
        return hi if hi else (None, None)

    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None


def buckets(text: str, metric: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram `metric` by `le`, summed over all other labels."""
    return Histogram.from_text(text, metric).buckets
