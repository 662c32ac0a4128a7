"""connectors/pacing.py: the one paced send loop, on a fake clock (no Kafka, no real sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from connectors import pacing
from contract import topics


class Clock:
    """monotonic() and sleep() for pacing: sleeping advances the clock by exactly the delay."""

    def __init__(self):
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class Producer:
    """Stands in for EventProducer: records (topic, record, clock time) and the checks."""

    def __init__(self, clock: Clock):
        self.clock, self.sent, self.checks = clock, [], 0

    async def send(self, topic, rec):
        self.sent.append((topic, rec, self.clock.t))

    def check(self):
        self.checks += 1


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(pacing, "monotonic", c.monotonic)
    monkeypatch.setattr(pacing, "sleep", c.sleep)
    return c


def run(clock, records, speed, **kw):
    p = Producer(clock)
    n = asyncio.run(pacing.send_paced(p, records, speed, **kw))
    return n, p


def pairs(ts_list):
    return [(topics.GPS, {"unit_id": "u", "ts": ts}) for ts in ts_list]


def test_without_speed_nothing_waits(clock):
    recs = pairs([1_000, 900_000, 5_000_000])
    n, p = run(clock, recs, None)
    assert n == 3 and [(t, r) for t, r, _ in p.sent] == recs
    assert clock.sleeps == [] and p.checks == 0


def test_speed_keeps_event_time_at_n_times_the_wall_clock(clock):
    # ts 0, +2 s, +2 s, +6 s at speed 2 -> sent 1 s, 1 s and 3 s apart
    n, p = run(clock, pairs([10_000, 12_000, 14_000, 20_000]), 2.0)
    assert n == 4
    assert [t - 1000.0 for _, _, t in p.sent] == [0.0, 1.0, 2.0, 5.0]
    assert p.checks == 3   # the producer is checked for failed deliveries while waiting


def test_origin_is_the_simulated_start(clock):
    _, p = run(clock, pairs([65_000, 70_000]), 10.0, origin_ms=60_000)
    assert [t - 1000.0 for _, _, t in p.sent] == [0.5, 1.0]


def test_only_positive_gaps_count_and_records_without_ts_never_wait(clock):
    recs = [(topics.CALLS, {"call_id": "a", "ts": 1_000}), (topics.CALLS, {"call_id": "b", "ts": 3_000}),
            (topics.CALLS, {"call_id": "c", "ts": 2_000}),      # a step back: sent at once
            (topics.CALLS, b"{not json"), (topics.CALLS, {"call_id": "d", "ts": "yesterday"}),
            (topics.CALLS, {"call_id": "e", "ts": 4_000}),      # +2 s after the step back
            (topics.CALLS, {"call_id": "f", "ts": "1970-01-01T00:00:06+00:00"})]  # RFC 3339: +2 s
    n, p = run(clock, recs, 1.0)
    assert n == 7 and [r for _, r, _ in p.sent] == [r for _, r in recs]   # order kept
    assert [t - 1000.0 for _, _, t in p.sent] == [0.0, 2.0, 2.0, 2.0, 2.0, 4.0, 6.0]


def test_a_late_sender_does_not_sleep(clock):
    """When sending fell behind (the clock moved on), the next record goes out at once."""
    class Slow(Producer):
        async def send(self, topic, rec):
            await super().send(topic, rec)
            self.clock.t += 5.0   # every send takes 5 s of wall time

    p = Slow(clock)
    asyncio.run(pacing.send_paced(p, pairs([0, 1_000, 2_000]), 1.0))
    assert clock.sleeps == []


def test_callbacks(clock):
    sent, progress = [], []
    n, _ = run(clock, pairs(range(0, 10_000, 1_000)), None, on_send=lambda t, r: sent.append(r["ts"]),
               on_progress=progress.append, every=4)
    assert n == 10 and sent == list(range(0, 10_000, 1_000)) and progress == [4, 8]
    progress.clear()
    run(clock, pairs([0, 0, 1_000]), 1.0, on_progress=progress.append, every=100)
    assert progress == [2]   # before waiting for the third record


def test_record_ts():
    assert pacing.record_ts({"ts": 5}) == 5
    assert pacing.record_ts({"ts": "2024-01-01T00:00:00+00:00"}) == 1_704_067_200_000
    assert pacing.record_ts({"ts": "2024-01-01T00:00:00"}) is None   # no offset: not the contract's
    assert pacing.record_ts({}) is None and pacing.record_ts(b"{}") is None


def test_speed_must_be_positive(clock):
    with pytest.raises(ValueError):
        run(clock, pairs([0]), 0.0)
