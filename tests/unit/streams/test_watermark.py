"""The watermark of patrol.gps (streams/watermark.py, CONTRACT §3): the smallest live mark, the
idle and max-lag bounds, and the hold after a takeover."""

from __future__ import annotations

from streams.watermark import Watermark

CLOCK = 10_000_000


def test_the_smallest_mark_of_the_partitions_that_delivered_within_the_idle_bound():
    w = Watermark(idle_ms=30_000, max_lag_ms=60_000)
    w.observe([[0, CLOCK - 5_000, 1_000], [1, CLOCK - 20_000, 1_000]])
    assert w.value(CLOCK, 1_000) == CLOCK - 20_000
    assert w.value(CLOCK, 31_000) == CLOCK - 20_000          # both still live at the bound
    w.observe([[0, CLOCK - 1_000, 31_500]])                  # partition 1 goes quiet
    assert w.value(CLOCK, 31_500 + 1) == CLOCK - 1_000       # ... and stops holding it back
    assert w.value(CLOCK, 100_000) == CLOCK                  # nobody delivers: the stream clock
    w.observe([[2, CLOCK - 200_000, 100_000]])               # a mark far behind: at most the max lag
    assert w.value(CLOCK, 100_000) == CLOCK - 60_000


def test_a_takeover_holds_until_a_mark_arrives_or_the_idle_bound_passes():
    w = Watermark(idle_ms=30_000, max_lag_ms=3_600_000)
    assert w.value(CLOCK, 5_000) == CLOCK                    # a state never taken over: feeds idle
    w.hold(5_000)
    # no live mark yet: not the clock (fixes may still be on their way); only the max lag bounds it
    assert w.value(CLOCK, 5_000) == w.value(CLOCK, 35_000) == CLOCK - 3_600_000
    assert w.value(CLOCK, 35_001) == CLOCK                   # nothing came for the idle bound
    w2 = Watermark(idle_ms=30_000, max_lag_ms=60_000)
    w2.hold(5_000)
    assert w2.value(CLOCK, 6_000) == CLOCK - 60_000          # the max lag still bounds it
    w2.observe([[3, CLOCK - 7_000, 6_000]])
    assert w2.value(CLOCK, 6_000) == CLOCK - 7_000           # a mark: as usual
