"""The watermark of patrol.gps (CONTRACT §3 "Decision time"): when breaches are decided.

The smallest, over the patrol.gps partitions that delivered data in the last `idle_ms`, of the
largest `ts` accepted from each; never more than `max_lag_ms` behind the stream clock; the stream
clock when no partition delivered in that window; never decreasing. Every ingest reports its
partitions' marks in each zone-events batch, to every zone-events partition, so with several
workers every partition state sees every ingest's marks. Each partition state keeps its own
Watermark of the marks its own batches carried: a mark comes in the same message as, or after,
every record routed to that partition before it, so no decision on it precedes a fix it covers
(a watermark shared by the partitions of a worker could run ahead of a batch still queued for one
of them).

"In the last idle_ms" is measured on the ingests' clock, not the state's: `now` is the newest
wall time a batch was sent at (every ingest sends a marks-only batch at least every second while
it has nothing to route). So the watermark is a pure function of the partition's log — a replay
or a takeover (the marks are in the snapshot) decides what the live run decided — and an outage
between the ingests and the state (a broker down or frozen, a state worker far behind) stops
time instead of making every feed look idle and deciding without the fixes still on their way.
"""

from __future__ import annotations


class Watermark:
    def __init__(self, idle_ms: int = 30_000, max_lag_ms: int = 60_000):
        self.idle_ms = idle_ms
        self.max_lag_ms = max_lag_ms
        self.marks: dict[int, tuple[int, int]] = {}  # gps partition -> (largest ts, wall ms of last delivery)
        self.now = 0   # the newest wall time (ms) a batch of this partition was sent at

    def observe(self, marks, wall: int = 0) -> None:
        """Merge [partition, largest ts, wall ms] marks from a zone-events batch sent at `wall`."""
        for p, ts, w in marks:
            old = self.marks.get(p)
            if old is None:
                self.marks[p] = (ts, w)
            elif ts > old[0] or w > old[1]:
                self.marks[p] = (max(ts, old[0]), max(w, old[1]))
            if w > self.now:
                self.now = w
        if wall > self.now:
            self.now = wall

    def value(self, clock: int) -> int:
        """The watermark for a partition whose stream clock is `clock`."""
        now = self.now
        live = [ts for ts, w in self.marks.values() if now - w <= self.idle_ms]
        wm = min(live) if live else clock
        return min(clock, max(wm, clock - self.max_lag_ms))

    def snapshot(self) -> list:
        return [self.now, [[p, ts, w] for p, (ts, w) in self.marks.items()]]

    def restore(self, snap: list | None) -> None:
        """Load `snapshot()`'s data (None: a snapshot written before it carried the marks)."""
        if snap:
            self.now = snap[0]
            self.marks = {p: (ts, w) for p, ts, w in snap[1]}
