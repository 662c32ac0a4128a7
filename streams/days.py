"""Local dates of the stream clock in any IANA time zone, exactly and cheaply.

`date_of(ts)` is the local date of an epoch-ms instant in the configured zone, `hour_of(ts)` its
local hour. The answer is cached per UTC quarter hour whose UTC offset is one whole number of
quarter hours from its first to its last millisecond: local quarter hours then coincide with UTC
ones, so the local date and hour cannot change inside it. Since 1979 nearly every offset and
transition is such (Asia/Kathmandu +05:45, Australia/Lord_Howe's 30-minute DST, Australia/Eucla
+08:45), but not all: America/St_Johns changed its clocks at 00:01 until 2011 (the date went back
one minute after midnight), Antarctica/Casey and Asia/Gaza at 00:01 too, Pacific/Kiritimati was
-10:40 until 1979, and every zone had a local mean time once. Such quarters are answered exactly
from zoneinfo on each call. tests/unit/streams/test_days.py checks every zone against zoneinfo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

QUARTER_MS = 900_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LocalDays:
    def __init__(self, tz: str):
        self.tz = ZoneInfo(tz)
        self._dates: dict[int, tuple[str, int]] = {}   # quarter -> (date, hour), quarters of one offset
        self._exact: set[int] = set()                  # quarters answered from zoneinfo on each call
        self._midnights: dict[str, int] = {}

    def date_of(self, ts: int) -> str:
        return self._local(ts)[0]

    def hour_of(self, ts: int) -> int:
        """Local hour 0..23 of ts (the hourly counts of zones.daily)."""
        return self._local(ts)[1]

    def _at(self, ts: int) -> datetime:
        return (_EPOCH + timedelta(milliseconds=ts)).astimezone(self.tz)

    def _local(self, ts: int) -> tuple[str, int]:
        q = ts // QUARTER_MS
        d = self._dates.get(q)
        if d is not None:   # the hot path: as cheap as a dict lookup
            return d
        if q not in self._exact:
            first = self._at(q * QUARTER_MS)
            offset = first.utcoffset()
            if offset == self._at(q * QUARTER_MS + QUARTER_MS - 1).utcoffset() and offset is not None \
                    and offset % timedelta(milliseconds=QUARTER_MS) == timedelta(0):
                if len(self._dates) > 4096:   # 42 days of quarters: refilling costs two lookups each
                    self._dates.clear()
                d = self._dates[q] = (first.date().isoformat(), first.hour)
                return d
            if len(self._exact) > 4096:
                self._exact.clear()
            self._exact.add(q)
        local = self._at(ts)
        return local.date().isoformat(), local.hour

    def next_midnight(self, ts: int) -> int:
        """Epoch ms of the first instant of the local day after the one holding ts."""
        return self.end_of(self.date_of(ts))

    def start_of(self, day: str) -> int:
        """Epoch ms of the first instant of the local day `day` (YYYY-MM-DD)."""
        return self.end_of((date.fromisoformat(day) - timedelta(days=1)).isoformat())

    def end_of(self, day: str) -> int:
        """Epoch ms of the first instant whose local date is after `day` (YYYY-MM-DD)."""
        nm = self._midnights.get(day)
        if nm is None:
            nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
            # the first quarter hour whose local date is the next day (a midnight can fall in a
            # DST gap, so search rather than construct 00:00), from a quarter still on `day` or
            # before (4 h before that 00:00, or further back after a jump like Samoa's in 2011)
            guess = datetime.fromisoformat(nxt).replace(tzinfo=self.tz)
            q = int(guess.timestamp() * 1000) // QUARTER_MS - 16
            while self.date_of(q * QUARTER_MS) >= nxt:
                q -= 16
            while self.date_of(q * QUARTER_MS) < nxt:
                q += 1
            nm = q * QUARTER_MS
            if q - 1 in self._exact:
                # midnight may lie inside the quarter before (an odd offset): the first ms there
                lo = nm - QUARTER_MS
                while nm - lo > 1:
                    mid = (lo + nm) // 2
                    if self.date_of(mid) < nxt:
                        lo = mid
                    else:
                        nm = mid
            self._midnights[day] = nm
            if len(self._midnights) > 10_000:
                self._midnights.clear()
        return nm
