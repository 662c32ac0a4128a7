"""The one paced send loop of the connectors (`zonewatch replay`, `zonewatch simulate`).

`send_paced` hands (topic, record) pairs to a started `EventProducer` in the given order. Without a
speed it sends as fast as Kafka takes them. With `speed=N` it keeps event time at N times the wall
clock: before a record whose `ts` lies ahead of the previous record's, it sleeps until
`wall0 + elapsed / N`, where `elapsed` is the sum of the positive gaps between consecutive records'
`ts` since `origin_ms` (the simulated start) or, without it, since the first record. For records in
time order that is simply `ts - origin`; a record out of order is sent at once and a record without
a readable `ts` (a malformed one, sent anyway so the pipeline dead-letters it) is never waited for.

While it waits it checks the producer for failed deliveries (so an outage surfaces during a slow
replay, not at the end) and calls `on_progress(sent)`, which is also called every `every` records.
"""

from __future__ import annotations

from asyncio import sleep
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from contract import errors, events

#: a shorter wait is not worth a trip through the event loop
MIN_SLEEP_S = 0.002


def record_ts(rec: Any) -> int | None:
    """A record's `ts` as epoch ms, or None when it has none that the contract accepts."""
    if not isinstance(rec, dict):
        return None
    try:
        return events.parse_ts(rec.get("ts"))
    except errors.Rejected:
        return None


async def send_paced(producer: Any, records: Iterable[tuple[str, Any]], speed: float | None = None, *,
                     origin_ms: int | None = None, on_send: Callable[[str, Any], None] | None = None,
                     on_progress: Callable[[int], None] | None = None, every: int = 2000) -> int:
    """Send `records` ((topic, record) pairs, topics unprefixed) through `producer`; returns the count.

    `on_send(topic, record)` is called after each record is handed over. Does not flush: the
    caller flushes (or leaves the producer's `async with`), then reports."""
    if speed is not None and not speed > 0:
        raise ValueError("speed must be > 0")
    send = producer.send
    wall0 = monotonic()
    elapsed_ms = 0.0
    prev_ts = origin_ms
    n = 0
    for topic, rec in records:
        if speed is not None:
            ts = record_ts(rec)
            if ts is not None:
                if prev_ts is not None and ts > prev_ts:
                    elapsed_ms += ts - prev_ts
                    delay = wall0 + elapsed_ms / speed / 1000.0 - monotonic()
                    if delay > MIN_SLEEP_S:
                        producer.check()
                        if on_progress is not None:
                            on_progress(n)
                        await sleep(delay)
                prev_ts = ts
        await send(topic, rec)
        n += 1
        if on_send is not None:
            on_send(topic, rec)
        if on_progress is not None and n % every == 0:
            on_progress(n)
    return n
