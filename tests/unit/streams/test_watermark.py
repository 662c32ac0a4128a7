"""The watermark of patrol.gps (streams/watermark.py, CONTRACT §3): the smallest live mark, the
idle and max-lag bounds, idleness on the ingests' clock, and the marks across a takeover."""

from __future__ import annotations

import msgspec

from streams.watermark import Watermark

CLOCK = 10_000_000


def test_the_smallest_mark_of_the_partitions_that_delivered_within_the_idle_bound():
    w = Watermark(idle_ms=30_000, max_lag_ms=60_000)
    w.observe([[0, CLOCK - 5_000, 1_000], [1, CLOCK - 20_000, 1_000]], wall=1_000)
    assert w.value(CLOCK) == CLOCK - 20_000
    w.observe([], wall=31_000)
    assert w.value(CLOCK) == CLOCK - 20_000                  # both still live at the bound
    w.observe([[0, CLOCK - 1_000, 31_500]], wall=31_501)     # partition 1 goes quiet
    assert w.value(CLOCK) == CLOCK - 1_000                   # ... and stops holding it back
    w.observe([], wall=100_000)
    assert w.value(CLOCK) == CLOCK                           # nobody delivers: the stream clock
    w.observe([[2, CLOCK - 200_000, 100_000]], wall=100_000)  # a mark far behind: at most the max lag
    assert w.value(CLOCK) == CLOCK - 60_000


def test_time_is_the_ingests_clock_so_an_outage_stops_it():
    """No batch (a broker down, a frozen ingest-to-state path) is no time passing: the feeds do
    not go idle for the state however long it waits; the first batch after it tells the truth."""
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    w.observe([[0, CLOCK - 50_000, 1_000], [1, CLOCK - 40_000, 1_000]], wall=1_000)
    assert w.value(CLOCK) == CLOCK - 50_000
    assert w.value(CLOCK) == CLOCK - 50_000                  # an hour of nothing: still held
    # after the outage: partition 0 delivered again (or has records waiting), 1 did not
    w.observe([[0, CLOCK - 45_000, 3_601_000], [1, CLOCK - 40_000, 1_000]], wall=3_601_000)
    assert w.value(CLOCK) == CLOCK - 45_000


def test_a_takeover_continues_the_previous_owners_watermark():
    """Ingests A (patrol.gps partitions 0, 1) and B (2, 3) send to this partition. After a
    takeover the marks come from the snapshot: A's next batch alone does not decide past B's
    partitions, which are not idle (the case `make chaos` found with 3 workers)."""
    live = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    live.observe([[0, CLOCK - 1_000, 5_000], [1, CLOCK - 2_000, 5_000]], wall=5_000)   # ingest A
    live.observe([[2, CLOCK - 30_000, 5_100], [3, CLOCK - 9_000, 5_100]], wall=5_100)  # ingest B
    taken = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    taken.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(live.snapshot())))
    assert taken.value(CLOCK) == live.value(CLOCK) == CLOCK - 30_000
    for w in (live, taken):
        w.observe([[0, CLOCK, 6_000], [1, CLOCK, 6_000]], wall=6_000)   # A's next batch only
    assert taken.value(CLOCK) == live.value(CLOCK) == CLOCK - 30_000
    for w in (live, taken):
        w.observe([], wall=35_101)   # B silent past the idle bound (A's heartbeat says so)
    assert taken.value(CLOCK) == live.value(CLOCK) == CLOCK
    fresh = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    fresh.restore(None)   # a snapshot written before it carried the marks
    assert fresh.marks == {} and fresh.value(CLOCK) == CLOCK
