"""Local dates of the stream clock in any IANA time zone, exactly and cheaply.

`date_of(ts)` is the local date of an epoch-ms instant in the configured zone. The answer is
cached per UTC quarter hour: since 1979 every UTC offset and every transition of every IANA zone
is a whole number of quarter hours (Asia/Kathmandu +05:45, Australia/Lord_Howe's 30-minute DST,
Australia/Eucla +08:45, Asia/Kolkata +05:30), so the local date cannot change inside one. A
property test checks this against zoneinfo for every zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

QUARTER_MS = 900_000


class LocalDays:
    def __init__(self, tz: str):
        self.tz = ZoneInfo(tz)
        self._dates: dict[int, tuple[str, int]] = {}
        self._midnights: dict[str, int] = {}

    def date_of(self, ts: int) -> str:
        return self._local(ts)[0]

    def hour_of(self, ts: int) -> int:
        """Local hour 0..23 of ts (the hourly counts of zones.daily)."""
        return self._local(ts)[1]

    def _local(self, ts: int) -> tuple[str, int]:
        q = ts // QUARTER_MS
        d = self._dates.get(q)
        if d is None:
            local = datetime.fromtimestamp(q * 900, tz=UTC).astimezone(self.tz)
            d = (local.date().isoformat(), local.hour)
            if len(self._dates) > 100_000:
                self._dates.clear()
            self._dates[q] = d
        return d

    def next_midnight(self, ts: int) -> int:
        """Epoch ms of the first instant of the local day after the one holding ts."""
        return self.end_of(self.date_of(ts))

    def start_of(self, day: str) -> int:
        """Epoch ms of the first instant of the local day `day` (YYYY-MM-DD)."""
        return self.end_of((date.fromisoformat(day) - timedelta(days=1)).isoformat())

    def end_of(self, day: str) -> int:
        """Epoch ms of the first instant of the local day after `day` (YYYY-MM-DD)."""
        nm = self._midnights.get(day)
        if nm is None:
            nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
            # the first quarter hour whose local date is the next day (a midnight can fall in a
            # DST gap, so search rather than construct 00:00)
            guess = datetime.fromisoformat(nxt).replace(tzinfo=self.tz)
            q = int(guess.timestamp() * 1000) // QUARTER_MS - 16
            while self.date_of(q * QUARTER_MS) < nxt:
                q += 1
            nm = self._midnights[day] = q * QUARTER_MS
            if len(self._midnights) > 10_000:
                self._midnights.clear()
        return nm
