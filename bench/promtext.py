"""Parse the Prometheus text format of /metrics and compute histogram quantiles.

Quantiles interpolate linearly inside a bucket exactly like PromQL's `histogram_quantile`: the
lower edge of the first bucket is 0, and a quantile falling into the +Inf bucket is reported as
the largest finite bucket bound.
"""

from __future__ import annotations

import urllib.request

from zonewatch.watch import histogram_quantile


def fetch(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.read().decode()


def _labels(s: str) -> dict[str, str]:
    out = {}
    i = 0
    while i < len(s):
        eq = s.index("=", i)
        name = s[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # skip ="
        val = []
        while s[j] != '"':
            if s[j] == "\\":
                j += 1
            val.append(s[j])
            j += 1
        out[name] = "".join(val)
        i = j + 1
        while i < len(s) and s[i] in ", ":
            i += 1
    return out


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """[(sample name, labels, value)] of every sample line."""
    rows = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            name, _, rest = head.partition("{")
            labels = _labels(rest.rstrip("}"))
        else:
            name, labels = head, {}
        rows.append((name, labels, float(value)))
    return rows


def counter_sum(rows, name: str, by: str | None = None):
    """Sum of a counter over all series, or a dict keyed by one label."""
    if by is None:
        return sum(v for n, _l, v in rows if n == name)
    out: dict[str, float] = {}
    for n, lab, v in rows:
        if n == name:
            out[lab.get(by, "")] = out.get(lab.get(by, ""), 0.0) + v
    return out


class Histogram:
    """A histogram summed over every label except `le` (cumulative bucket counts)."""

    def __init__(self, buckets: dict[float, float], total: float, count: float):
        self.buckets = dict(sorted(buckets.items()))
        self.sum = total
        self.count = count

    @classmethod
    def from_rows(cls, rows, name: str) -> "Histogram":
        b: dict[float, float] = {}
        s = c = 0.0
        for n, lab, v in rows:
            if n == name + "_bucket":
                le = float(lab["le"])  # "+Inf" parses to inf
                b[le] = b.get(le, 0.0) + v
            elif n == name + "_sum":
                s += v
            elif n == name + "_count":
                c += v
        return cls(b, s, c)

    def __sub__(self, other: "Histogram") -> "Histogram":
        return Histogram({le: v - other.buckets.get(le, 0.0) for le, v in self.buckets.items()},
                         self.sum - other.sum, self.count - other.count)

    def quantile(self, q: float) -> float | None:
        """PromQL `histogram_quantile` (the implementation `zonewatch watch` and the wall use)."""
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
