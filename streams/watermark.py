"""The watermark of patrol.gps (CONTRACT §3 "Decision time"): when breaches are decided.

The smallest, over the patrol.gps partitions that delivered data in the last `idle_ms` of wall
time, of the largest `ts` accepted from each; never more than `max_lag_ms` behind the stream
clock; the stream clock when no partition delivered in that window; never decreasing. Every
ingest reports its partitions' marks in each zone-events batch, to every zone-events partition, so
with several workers every partition state sees every ingest's marks. Each partition state keeps
its own Watermark of the marks its own batches carried: a mark comes in the same message as, or
after, every record routed to that partition before it, so no decision on it precedes a fix it
covers (a watermark shared by the partitions of a worker could run ahead of a batch still queued
for one of them).
"""

from __future__ import annotations


class Watermark:
    def __init__(self, idle_ms: int = 30_000, max_lag_ms: int = 60_000):
        self.idle_ms = idle_ms
        self.max_lag_ms = max_lag_ms
        self.marks: dict[int, tuple[int, int]] = {}  # gps partition -> (largest ts, wall ms of last delivery)
        self.held_since: int | None = None   # wall ms of a takeover (hold)

    def hold(self, now_ms: int) -> None:
        """A takeover at wall time now_ms: the new owner has seen no live mark yet, which does not
        mean the feeds are idle. Until a mark arrives or idle_ms passes, the watermark stays where
        the state's own left it (the snapshot's) instead of jumping to the stream clock, which would
        decide pending calls before fixes still on their way to this partition."""
        self.held_since = now_ms

    def observe(self, marks) -> None:
        """Merge [partition, largest ts, wall ms] marks (from zone-events batches)."""
        for p, ts, wall in marks:
            old = self.marks.get(p)
            if old is None:
                self.marks[p] = (ts, wall)
            elif ts > old[0] or wall > old[1]:
                self.marks[p] = (max(ts, old[0]), max(wall, old[1]))

    def value(self, clock: int, now_ms: int) -> int:
        """The watermark for a partition whose stream clock is `clock`, at wall time now_ms."""
        live = [ts for ts, wall in self.marks.values() if now_ms - wall <= self.idle_ms]
        if live:
            wm = min(live)
        elif self.held_since is not None and now_ms - self.held_since <= self.idle_ms:
            wm = -1   # no advance (the caller keeps the larger of this and the state's watermark)
        else:
            wm = clock
        return min(clock, max(wm, clock - self.max_lag_ms))
