"""Whether the worker's dependencies answer, for operators: metrics and a log line per outage.

aiokafka and redis-py retry by themselves, so an outage shows only as a pause in the figures.
This probe makes it visible: every PROBE_S the worker asks Kafka for metadata and pings Redis;
`zonewatch_dependency_up{dependency="kafka"|"redis"}` is 1 or 0, and
`zonewatch_dependency_outages_total{dependency}` counts outages. Going down logs a warning once;
coming back logs how long it lasted. Nothing here stops or slows the pipeline: at-least-once
processing and the retries in ingest and the state writer are what keep events from being lost.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import metrics

log = logging.getLogger("zonewatch.health")

PROBE_S = 2.0
PROBE_TIMEOUT_S = 3.0


class Dependency:
    """Up/down state of one dependency, fed by probe results."""

    def __init__(self, name: str, what: str):
        self.name, self.what = name, what
        self.up = True
        self.down_since: float | None = None
        self.gauge = metrics.DEPENDENCY_UP.labels(name)
        self.outages = metrics.DEPENDENCY_OUTAGES.labels(name)
        self.gauge.set(1)

    def report(self, ok: bool, detail: str = "") -> None:
        if ok and not self.up:
            lasted = time.monotonic() - (self.down_since or time.monotonic())
            log.warning("%s reachable again after %.1f s", self.what, lasted)
        elif not ok and self.up:
            self.down_since = time.monotonic()
            self.outages.inc()
            log.warning("%s unreachable%s; the worker keeps retrying and catches up when it is back",
                        self.what, f" ({detail})" if detail else "")
        self.up = ok
        self.gauge.set(1 if ok else 0)


async def _kafka_ok(client) -> tuple[bool, str]:
    try:
        ok = await asyncio.wait_for(client.force_metadata_update(), PROBE_TIMEOUT_S)
        return bool(ok), "" if ok else "no broker answered a metadata request"
    except TimeoutError:
        return False, f"no metadata within {PROBE_TIMEOUT_S:.0f} s"
    except Exception as exc:
        return False, str(exc)[:200]


async def _redis_ok(redis) -> tuple[bool, str]:
    try:
        await asyncio.wait_for(redis.ping(), PROBE_TIMEOUT_S)
        return True, ""
    except TimeoutError:
        return False, f"no PING reply within {PROBE_TIMEOUT_S:.0f} s"
    except Exception as exc:
        return False, str(exc)[:200]


async def probe_forever(kafka_client, redis, interval: float = PROBE_S) -> None:
    """Probe Kafka (through an aiokafka client's metadata) and Redis until cancelled."""
    kafka = Dependency("kafka", "Kafka")
    red = Dependency("redis", "Redis")
    while True:
        (k_ok, k_why), (r_ok, r_why) = await asyncio.gather(_kafka_ok(kafka_client), _redis_ok(redis))
        kafka.report(k_ok, k_why)
        red.report(r_ok, r_why)
        await asyncio.sleep(interval)
