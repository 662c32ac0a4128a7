"""The dependency probe: gauges, outage counters and one log line per transition."""

from __future__ import annotations

import asyncio
import logging

from streams import health, metrics


def value(metric, dep: str) -> float:
    return metric.labels(dep)._value.get()


def test_one_warning_per_outage_and_one_when_back(caplog):
    d = health.Dependency("kafka", "Kafka")
    before = value(metrics.DEPENDENCY_OUTAGES, "kafka")
    with caplog.at_level(logging.WARNING, logger="zonewatch.health"):
        d.report(True)
        assert caplog.records == [] and value(metrics.DEPENDENCY_UP, "kafka") == 1
        d.report(False, "connection refused")
        d.report(False, "connection refused")
        assert value(metrics.DEPENDENCY_UP, "kafka") == 0
        assert value(metrics.DEPENDENCY_OUTAGES, "kafka") == before + 1
        d.report(True)
        assert value(metrics.DEPENDENCY_UP, "kafka") == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("Kafka unreachable (connection refused)")
    assert msgs[1].startswith("Kafka reachable again after")


class FakeKafkaClient:
    def __init__(self, answers):
        self.answers = list(answers)

    def force_metadata_update(self):
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self.answers.pop(0) if self.answers else True)
        return fut


class FakeRedis:
    def __init__(self, answers):
        self.answers = list(answers)

    async def ping(self):
        if self.answers and not self.answers.pop(0):
            raise ConnectionError("Connection refused")
        return True


def test_probe_reports_both_dependencies():
    seen = []

    async def run():
        task = asyncio.ensure_future(health.probe_forever(FakeKafkaClient([True, False, True]),
                                                          FakeRedis([False, True, True]), interval=0.01))
        for _ in range(200):
            await asyncio.sleep(0.01)
            seen.append((value(metrics.DEPENDENCY_UP, "kafka"), value(metrics.DEPENDENCY_UP, "redis")))
            if len(seen) > 10 and seen[-1] == (1, 1):
                break
        task.cancel()

    k0, r0 = value(metrics.DEPENDENCY_OUTAGES, "kafka"), value(metrics.DEPENDENCY_OUTAGES, "redis")
    asyncio.run(run())
    assert value(metrics.DEPENDENCY_OUTAGES, "kafka") == k0 + 1
    assert value(metrics.DEPENDENCY_OUTAGES, "redis") == r0 + 1
    assert seen[-1] == (1, 1)
    assert b'zonewatch_dependency_up{dependency="redis"} 1.0' in metrics.render()
