"""streams/days.py: the local date and hour of an instant, and the end of a local day, in every IANA
zone, against an oracle written here from zoneinfo alone (no quarter hours, no cache): instants
drawn anywhere from 1900 to 2100 and right at the zones' offset changes, including half-hour and
45-minute offsets (Asia/Kolkata, Asia/Kathmandu, Australia/Lord_Howe's 30-minute DST) and the
zones whose clocks changed at 00:01 (America/St_Johns until 2011: the date goes back one minute
after midnight)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.days import LocalDays

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LO = int((datetime(1900, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000)
HI = int((datetime(2100, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000)
ZONES = sorted(available_timezones())
NAMED = ("Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/Los_Angeles", "Europe/London",
         "America/St_Johns", "Australia/Eucla", "Pacific/Chatham", "Pacific/Kiritimati", "Asia/Gaza")
YEAR_MS = 366 * 24 * 3_600_000
STEP_MS = 6 * 3_600_000   # no zone changes its offset twice within 6 hours


# --- the oracle: zoneinfo at the instant itself ---------------------------------------------------

def local(zone: str, ts: int) -> datetime:
    return (EPOCH + timedelta(milliseconds=ts)).astimezone(ZoneInfo(zone))


def offset(zone: str, ts: int) -> timedelta | None:
    return local(zone, ts).utcoffset()


def next_change(zone: str, ts: int) -> int | None:
    """The first ms after ts at which the zone's UTC offset differs from the one at ts (within a
    year), by stepping and bisecting."""
    here = offset(zone, ts)
    t = ts
    while t < ts + YEAR_MS:
        if offset(zone, t + STEP_MS) != here:
            lo, hi = t, t + STEP_MS
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(zone, mid) == here else (lo, mid)
            return hi
        t += STEP_MS
    return None


def first_instant_of(zone: str, day: date) -> int:
    """The first ms whose local date is `day` or later: no instant before (day 00:00 UTC) - 14 h
    can have that date (no offset exceeds +14 h); minutes first, then the ms within the minute."""
    t = int((datetime(day.year, day.month, day.day, tzinfo=UTC) - EPOCH).total_seconds() * 1000) - 15 * 3_600_000
    while local(zone, t).date() < day:
        t += 60_000
    lo, hi = t - 60_000, t
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if local(zone, mid).date() < day else (lo, mid)
    return hi


@cache
def days(zone: str) -> LocalDays:
    # one per zone for the whole run: later examples are answered from what earlier ones cached
    return LocalDays(zone)


def check(zone: str, ts: int) -> None:
    want = local(zone, ts)
    d = days(zone)
    assert (d.date_of(ts), d.hour_of(ts)) == (want.date().isoformat(), want.hour), (zone, ts, want.isoformat())


def instants():
    """Anywhere in 1900-2100, or within 20 minutes of an offset change of the zone."""
    return st.tuples(st.integers(LO, HI), st.booleans(), st.integers(-1_200_000, 1_200_000))


def pick(zone: str, drawn: tuple[int, bool, int]) -> int:
    ts, near_change, delta = drawn
    if near_change:
        change = next_change(zone, ts)
        if change is not None:
            return change + delta
    return ts


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ZONES), instants())
@example("America/St_Johns", (1_289_044_800_000, True, 300_000))   # 2010-11-07 02:36 UTC: 23:06 NST of the 6th
@example("Pacific/Kiritimati", (283_996_800_000, False, 0))   # 1979: -10:40
def test_local_date_and_hour_in_every_zone(zone, drawn):
    check(zone, pick(zone, drawn))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMED), instants())
def test_local_date_and_hour_at_the_offset_changes_of_the_odd_zones(zone, drawn):
    check(zone, pick(zone, (drawn[0], True, drawn[2])))


def test_every_offset_change_of_the_named_zones_in_2023_and_2010():
    for zone in NAMED:
        for year in (2010, 2023):
            t = int((datetime(year, 1, 1, tzinfo=UTC) - EPOCH).total_seconds() * 1000)
            end = t + YEAR_MS
            while (change := next_change(zone, t)) is not None and change < end:
                for delta in (-900_000, -60_001, -1, 0, 1, 59_999, 60_000, 899_999, 900_000):
                    check(zone, change + delta)
                t = change


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES + list(NAMED) * 20), st.integers(LO + YEAR_MS, HI - YEAR_MS))
@example("Pacific/Kiritimati", 283_996_800_000)      # 1979-01-01: -10:40, midnight at 10:40 UTC
@example("Asia/Kathmandu", 504_921_600_000)          # 1986-01-01: +05:30 -> +05:45
@example("America/St_Johns", 1_289_001_600_000)      # 2010-11-05 local, two days before the 00:01 fall-back
@example("Pacific/Apia", 1_325_160_000_000)          # 2011-12-29 02:00 local: Samoa skipped the 30th
def test_end_of_a_day_is_the_first_instant_of_the_next(zone, ts):
    d = days(zone)
    day = date.fromisoformat(d.date_of(ts))
    want = first_instant_of(zone, day + timedelta(days=1))
    assert d.end_of(day.isoformat()) == want, (zone, day)
    assert d.next_midnight(ts) == want
