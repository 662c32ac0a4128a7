"""Prometheus metrics of CONTRACT §5. Labels are bounded: never a zone or unit id."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as _Tally

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from contract import metrics as names

disable_created_metrics()  # the *_created series only add noise for dashboards

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)   # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)

# e2e spans producer -> Kafka -> ingest -> repartition -> state -> Redis: ms to seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                   1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# a stage can take well under a millisecond: finer buckets at the low end than e2e's
STAGE_BUCKETS = (0.0005, 0.001, 0.0025) + LATENCY_BUCKETS
AGE_BUCKETS = (0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86400.0)

EVENTS = Counter(names.EVENTS, "Input events by source and outcome",
                 ["source", "outcome"], registry=REGISTRY)
E2E = Histogram(names.E2E_LATENCY,
                "Kafka message timestamp (set by the connector) to completion of the Redis write "
                "that reflects the event", ["source"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
STAGE = Histogram(names.STAGE,
                  "Seconds an event spends in each stage of the hot path: ingest (input message timestamp "
                  "to its zone-events send), hop (send to the state's apply), apply, flush (apply to the Redis "
                  "write completed); beyond the contract: fetch (the part of ingest until the input message was "
                  "fetched) and outputs (per batch with output records: decided to acknowledged, off the apply "
                  "path)",
                  ["stage"], buckets=STAGE_BUCKETS, registry=REGISTRY)
FETCH_PAUSES = Counter(names.FETCH_PAUSES,
                       "Times the state stage stopped reading a zone-events partition: takeover (assigned, "
                       "paused until its state is restored), outputs_full (its outputs waited for Kafka)",
                       ["reason"], registry=REGISTRY)
AGE = Histogram(names.EVENT_AGE, "Stream clock minus event ts at processing",
                ["source"], buckets=AGE_BUCKETS, registry=REGISTRY)
ZONE_WRITES = Counter(names.ZONE_WRITES, "Zone state writes to Redis", registry=REGISTRY)
DEADLETTERS = Counter(names.DEADLETTERS, "Messages sent to the dead-letter topic, by reason class",
                      ["source", "reason"], registry=REGISTRY)
OUTPUT_ERRORS = Counter(names.OUTPUT_ERRORS, "Output records Kafka did not accept",
                        registry=REGISTRY)
REDIS_ERRORS = Counter(names.REDIS_WRITE_ERRORS, "Failed Redis pipeline writes (retried)",
                       registry=REGISTRY)
DEPENDENCY_UP = Gauge(names.DEPENDENCY_UP, "1 when the dependency answered the last probe (every 2 s)",
                      ["dependency"], registry=REGISTRY)
DEPENDENCY_OUTAGES = Counter(names.DEPENDENCY_OUTAGES, "Times a dependency stopped answering probes",
                             ["dependency"], registry=REGISTRY)

CONSUMER_LAG = Gauge(names.CONSUMER_LAG, "Messages between a consumer group's position and the log end",
                     ["group", "topic"], registry=REGISTRY)
WATERMARK = Gauge(names.WATERMARK, "Watermark of patrol.gps (epoch ms): breaches are decided on it",
                  registry=REGISTRY)
STREAM_CLOCK = Gauge(names.STREAM_CLOCK, "Stream clock (epoch ms): the largest accepted ts", registry=REGISTRY)
WATERMARK_LAG = Gauge(names.WATERMARK_LAG, "Stream clock minus watermark (s)", registry=REGISTRY)
REBUILD_IN_PROGRESS = Gauge(names.REBUILD_IN_PROGRESS, "1 while a partition's state is being restored",
                            registry=REGISTRY)
TAKEOVER = Histogram(names.TAKEOVER, "Partition assignment to state ready (snapshot + log tail)",
                     buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120, 300), registry=REGISTRY)
SLA_DECISIONS = Counter(names.SLA_DECISIONS, "Decisions emitted to sla.events", ["type"], registry=REGISTRY)
BREACHES = Counter(names.BREACHES, "Breaches decided (final)", registry=REGISTRY)
SNAPSHOT_BYTES = Gauge(names.SNAPSHOT_BYTES, "Size of the last state snapshot of a partition", registry=REGISTRY)
FENCED = Counter(names.FENCED, "Partitions found owned by another worker at a write", registry=REGISTRY)
OUTPUT_RETRIES = Counter(names.OUTPUT_RETRIES, "Output records sent again after a failed send", registry=REGISTRY)
LAYOUT_MISMATCH = Counter(names.LAYOUT_MISMATCH, "Zone-events batches (and snapshots) routed by a partitioning "
                          "other than this worker's (another zones file or partition count, or an older ingest)",
                          registry=REGISTRY)

BUILD_INFO = Gauge(names.BUILD_INFO, "zonewatch version (value 1)", ["version"], registry=REGISTRY)

# Pre-create every labelled child so each series is exported (as 0) from the start.
for _s in names.SOURCES:
    for _o in names.OUTCOMES:
        EVENTS.labels(_s, _o)
    E2E.labels(_s)
    AGE.labels(_s)
for _t in ("arrived", "breach"):
    SLA_DECISIONS.labels(_t)
for _d in ("kafka", "redis"):
    DEPENDENCY_OUTAGES.labels(_d)
for _st in names.STAGES:
    STAGE.labels(_st)
for _r in ("takeover", "outputs_full"):
    FETCH_PAUSES.labels(_r)


def observe_many(hist_child, values) -> None:
    """Observe many values at once: one bucket increment per bucket, not per value.

    prometheus_client walks the bucket list per `observe`; on the hot path we tally first.
    """
    if not values:
        return
    bounds = hist_child._upper_bounds
    tally = _Tally(bisect_left(bounds, v) for v in values)
    for i, n in tally.items():
        hist_child._buckets[i].inc(n)
    hist_child._sum.inc(sum(values))


def observe_weighted(hist_child, value: float, n: int) -> None:
    """Observe `value` n times (a batch whose n events all spent `value` in a stage)."""
    if n <= 0:
        return
    hist_child._buckets[bisect_left(hist_child._upper_bounds, value)].inc(n)
    hist_child._sum.inc(value * n)


def observe_array(hist_child, values: np.ndarray) -> None:
    """Observe a numpy array of values: one searchsorted and one bincount, no per-value Python."""
    if not len(values):
        return
    bounds = hist_child._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts):
        hist_child._buckets[i].inc(int(counts[i]))
    hist_child._sum.inc(float(values.sum()))


def render() -> bytes:
    return generate_latest(REGISTRY)


def reason_class(reason: str) -> str:
    """Bounded label for a dead-letter reason (the full reason is in the record)."""
    if reason.startswith("invalid JSON") or reason.startswith("message is not"):
        return "decode"
    if reason.startswith("missing field"):
        return "missing_field"
    if "out of range" in reason or reason.startswith("ts "):
        return "out_of_range"
    if "must be" in reason or "longer than" in reason or "control characters" in reason:
        return "wrong_type"
    if reason.startswith("empty"):
        return "empty"
    return "other"


def observe_clocks(stage) -> None:
    """Stream clock, watermark and their gap, over the partitions this worker holds."""
    states = [h.state for h in stage.held.values()]
    if not states:
        return
    clock = max(st.clock for st in states)
    wm = min(st.wm for st in states)
    STREAM_CLOCK.set(clock)
    WATERMARK.set(wm)
    WATERMARK_LAG.set(max(0.0, (clock - wm) / 1000.0))


def set_build_info() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("zonewatch")
    except PackageNotFoundError:
        v = "0+unknown"
    BUILD_INFO.labels(v).set(1)


GC_PAUSE = Histogram(names.GC_PAUSE, "Python garbage collector pauses, by generation",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                     registry=REGISTRY)


def watch_gc() -> None:
    """Time every garbage collection and make them rarer. With Python's defaults (700, 10, 10) the
    collector took ~35 us per event of the worker's flow (in-process, demo zones: 13.4k -> 18.4k
    events/s CPU with these settings); a full collection over a district's state took 0.3 s. The
    heap built at start (zones, index, geometry) is frozen out of every scan; gen0 runs every
    10,000 allocations (pauses of ~10-20 ms), gen2 only after 1,000 gen1 runs."""
    import gc
    import time as _time

    started: dict[int, float] = {}

    def callback(phase, info):
        gen = info.get("generation", 0)
        if phase == "start":
            started[gen] = _time.perf_counter()
        elif gen in started:
            GC_PAUSE.labels(str(gen)).observe(_time.perf_counter() - started.pop(gen))

    gc.callbacks.append(callback)
    gc.set_threshold(10_000, 50, 1_000)
    gc.freeze()
