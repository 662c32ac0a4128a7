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
    w.observe([[0, CLOCK - 3_000, 20_000]], wall=20_000)     # (the stream goes on: no pause)
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


def test_after_a_global_pause_the_first_to_resume_does_not_decide_alone():
    """Every partition silent past the idle bound (the watermark is the clock), then ingest A
    resumes: B's partition, live when the stream stopped, holds the watermark at its mark until B
    is heard again or the idle bound has passed since the resumption."""
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    w.observe([[0, CLOCK - 60_000, 1_000], [1, CLOCK - 50_000, 1_100]], wall=1_100)      # A, B
    w.observe([], wall=36_000)                                                       # the pause
    assert w.value(CLOCK - 50_000) == CLOCK - 50_000                                 # all idle: the clock
    w.observe([[0, CLOCK, 40_000]], wall=40_000)                                     # A resumes
    assert w.value(CLOCK) == CLOCK - 50_000                                          # B still counts
    w.observe([], wall=70_000)
    assert w.value(CLOCK) == CLOCK - 50_000                                          # at the bound
    w.observe([[1, CLOCK - 10_000, 70_001]], wall=70_001)                            # B is heard
    assert w.value(CLOCK) == CLOCK - 10_000


def test_a_feed_that_stopped_at_the_pause_holds_back_at_most_the_idle_bound_after_it():
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    w.observe([[0, CLOCK - 60_000, 1_000], [1, CLOCK - 50_000, 1_000]], wall=1_000)
    w.observe([[0, CLOCK - 5_000, 40_000]], wall=40_000)       # A resumes, B never does
    assert w.value(CLOCK) == CLOCK - 50_000
    w.observe([[0, CLOCK - 1_000, 70_000]], wall=70_000)
    assert w.value(CLOCK) == CLOCK - 50_000
    w.observe([[0, CLOCK - 1_000, 70_001]], wall=70_001)       # the bound passed since A resumed
    assert w.value(CLOCK) == CLOCK - 1_000


def test_the_grace_does_not_carry_over_to_the_next_pause():
    """A sparse feed (every delivery follows a silence longer than the idle bound) does not keep a
    partition that stopped long ago live: the grace goes to partitions that really delivered
    within the idle bound before the stream stopped, never to those live by a grace."""
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    w.observe([[0, CLOCK - 90_000, 1_000], [2, CLOCK - 80_000, 1_000]], wall=1_000)   # 2 stops here
    w.observe([[0, CLOCK - 50_000, 40_000]], wall=40_000)      # first resumption: 2 gets the grace
    assert w.value(CLOCK) == CLOCK - 80_000
    w.observe([[0, CLOCK - 10_000, 80_000]], wall=80_000)      # next: 2 had not delivered before it
    assert w.value(CLOCK) == CLOCK - 10_000


def test_a_shorter_pause_changes_nothing():
    """A silence within the idle bound is no pause: B, silent longer than A, idles out as before."""
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    w.observe([[0, CLOCK - 60_000, 20_000], [1, CLOCK - 50_000, 1_000]], wall=20_000)
    w.observe([[0, CLOCK, 45_000]], wall=45_000)               # 25 s after A's last delivery
    assert w.value(CLOCK) == CLOCK


def test_a_takeover_during_the_grace_continues_it():
    live = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    live.observe([[0, CLOCK - 60_000, 1_000], [1, CLOCK - 50_000, 1_000]], wall=1_000)
    live.observe([[0, CLOCK, 40_000]], wall=40_000)
    taken = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    taken.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(live.snapshot())))
    for wall in (50_000, 70_000, 70_001):
        for w in (live, taken):
            w.observe([[0, CLOCK, wall]], wall=wall)
        assert taken.value(CLOCK) == live.value(CLOCK) == (CLOCK - 50_000 if wall <= 70_000 else CLOCK)
    older = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    older.restore(live.snapshot()[:2])   # a snapshot written before it carried the grace
    assert older.marks == live.marks and older.latest == 70_001
