"""The workers' end-to-end latency for the wall's badge: their own `zonewatch_e2e_latency_seconds`
histogram, scraped on demand from their /metrics and read with `gateway.promtext`."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

from contract import metrics
from gateway import promtext
from gateway.promtext import histogram_quantile

DEFAULT_WORKER_METRICS = "http://127.0.0.1:6066/metrics"
E2E_WINDOW_S = 30.0
STATS_MIN_INTERVAL_S = 2.0
SCRAPE_TIMEOUT_S = 1.5


def parse_e2e_buckets(text: str) -> dict[float, float]:
    """zonewatch_e2e_latency_seconds buckets summed over sources: {upper bound: cumulative count}."""
    return promtext.buckets(text, metrics.E2E_LATENCY)


class WorkerStats:
    """Scrapes the workers' /metrics on demand (at most every 2 s) and keeps 30 s+ of history."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.history: deque[tuple[float, dict[float, float]]] = deque(maxlen=64)
        self.last_try = 0.0
        self.error: str | None = None
        self.lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if now - self.last_try < STATS_MIN_INTERVAL_S:
                return
            self.last_try = now
            total: dict[float, float] = {}
            errors = []
            for url in self.urls:
                try:
                    text = await asyncio.to_thread(promtext.fetch, url, SCRAPE_TIMEOUT_S)
                    for le, c in parse_e2e_buckets(text).items():
                        total[le] = total.get(le, 0.0) + c
                except Exception as exc:  # unreachable worker: reported, not fatal
                    errors.append(f"{url}: {exc}")
            self.error = "; ".join(errors) if errors else None
            if len(errors) == len(self.urls):
                return
            if self.history and sum(total.values()) < sum(self.history[-1][1].values()):
                self.history.clear()  # a worker restarted: its counters began again
            self.history.append((now, total))

    def summary(self) -> dict:
        out: dict[str, Any] = {"metric": metrics.E2E_LATENCY, "what": "Kafka producer timestamp -> Redis write",
               "p50_ms": None, "p99_ms": None, "events": 0, "window_s": None, "error": self.error}
        if not self.history:
            return out
        now_t, now_b = self.history[-1]
        base = None
        for t, b in self.history:
            if now_t - t >= E2E_WINDOW_S:
                base = (t, b)
        if base is None and len(self.history) > 1:
            base = self.history[0]
        if base is not None:
            window = now_t - base[0]
            diff = {le: now_b.get(le, 0.0) - base[1].get(le, 0.0) for le in now_b}
            if diff.get(math.inf, 0.0) > 0:
                cur = diff
                out["window_s"] = round(window, 1)
            else:
                cur = None
        else:
            cur = now_b  # a single sample: since the worker started
        if not cur or cur.get(math.inf, 0.0) <= 0:
            return out
        buckets = sorted(cur.items())
        p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
        out.update(p50_ms=None if p50 is None else round(p50 * 1000, 1),
                   p99_ms=None if p99 is None else round(p99 * 1000, 1), events=int(cur[math.inf]))
        return out
