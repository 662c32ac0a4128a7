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

A pause of the whole stream is not the feeds stopping. When every partition has been silent past
`idle_ms` (the feeder paused, the broker was away) and one delivers again, the partitions that
were live when the stream stopped count as live, with their marks of before the pause, for
`idle_ms` from that first delivery: otherwise the first ingest to resume decides alone before the
other ingests' fixes of the same minutes arrive (issue 23: 3 workers, 793 breaches where 718 were
due). One that really stopped at the pause still stops holding the watermark `idle_ms` after the
stream resumed; the grace is given for real deliveries before the pause only, so it never carries
over from one pause to the next (a sparse feed whose every delivery follows a global silence does
not keep a dead partition live). Tests: tests/unit/streams/test_pause.py (3 ingests resuming in
any order) and test_watermark.py.
"""

from __future__ import annotations


class Watermark:
    def __init__(self, idle_ms: int = 30_000, max_lag_ms: int = 60_000):
        self.idle_ms = idle_ms
        self.max_lag_ms = max_lag_ms
        self.marks: dict[int, tuple[int, int]] = {}  # gps partition -> (largest ts, wall ms of last delivery)
        self.now = 0      # the newest wall time (ms) a batch of this partition was sent at
        self.latest = 0   # the newest delivery of any gps partition (the largest wall in marks)
        # the first delivery after every partition was silent past idle_ms, and the partitions
        # live just before that silence: they count as live until resumed_at + idle_ms
        self.resumed_at = 0
        self.resumed: frozenset[int] = frozenset()

    def observe(self, marks, wall: int = 0) -> None:
        """Merge [partition, largest ts, wall ms] marks from a zone-events batch sent at `wall`."""
        for p, ts, w in marks:
            old = self.marks.get(p)
            if old is None or w > old[1]:
                if w - self.latest > self.idle_ms:
                    self._resume(w)
                if w > self.latest:
                    self.latest = w
                self.marks[p] = (ts, w) if old is None else (max(ts, old[0]), w)
            elif ts > old[0]:
                self.marks[p] = (ts, old[1])
            if w > self.now:
                self.now = w
        if wall > self.now:
            self.now = wall

    def _resume(self, wall: int) -> None:
        """A delivery at `wall` after every partition was silent past idle_ms: the partitions
        that had delivered within idle_ms of the last delivery before it get the grace."""
        since = self.latest - self.idle_ms
        self.resumed = frozenset(p for p, (_ts, w) in self.marks.items() if w >= since)
        self.resumed_at = wall

    def value(self, clock: int) -> int:
        """The watermark for a partition whose stream clock is `clock`."""
        now, idle = self.now, self.idle_ms
        if self.resumed and now - self.resumed_at <= idle:
            resumed = self.resumed
            live = [ts for p, (ts, w) in self.marks.items() if now - w <= idle or p in resumed]
        else:
            live = [ts for ts, w in self.marks.values() if now - w <= idle]
        wm = min(live) if live else clock
        return min(clock, max(wm, clock - self.max_lag_ms))

    def snapshot(self) -> list:
        return [self.now, [[p, ts, w] for p, (ts, w) in self.marks.items()], self.resumed_at, sorted(self.resumed)]

    def restore(self, snap: list | None) -> None:
        """Load `snapshot()`'s data (None: a snapshot written before it carried the marks; two
        fields: before it carried the grace after a pause)."""
        if snap:
            self.now = snap[0]
            self.marks = {p: (ts, w) for p, ts, w in snap[1]}
            self.latest = max((w for _ts, w in self.marks.values()), default=0)
            if len(snap) > 2:
                self.resumed_at, self.resumed = snap[2], frozenset(snap[3])
