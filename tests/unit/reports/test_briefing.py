"""The briefing's pure core (reports.daily fold/decode, reports.briefing) on the fixture of
tests/golden/zones_daily.jsonl, every figure computed by hand from the fixture's zone records:

    zone   kind   calls P1 alerts | arrived ≤1m ≤3m ≤5m breaches p50 p90 | hours with calls
    A      grid    10    3   4    |    8     2   5   7     2     150 320 | 9:4 10:3 20:3
    B      grid     6    0   0    |    6     3   5   6     0      60 170 | 9:2 14:1 20:3
    C      grid     3    0  10    |    2     0   1   2     1     170 250 | 10:1 14:2
    D      grid     0    0   0    |    0     0   0   0     0       -   - |
    outer  venue    5    1  20    |    4     1   2   4     1     175 290 | 19:2 20:3
    inner  venue    3    1   8    |    3     1   3   3     0      90 140 | 20:3
    core   venue    2    2   3    |    1     0   0   0     2     400 400 | 20:2
    (E was tombstoned, X is not JSON, A's version 3 was superseded by version 60)
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from contract.errors import BriefingError, ZonewatchError
from reports import daily
from reports.briefing import briefing, dates
from reports.render import render_json
from tests.golden.daily import DATE, GOLDEN, messages


@pytest.fixture(scope="module")
def decoded():
    return daily.decode(daily.fold_latest(messages()))


@pytest.fixture(scope="module")
def report(decoded):
    records, unreadable = decoded
    return briefing(records, DATE, unreadable)


# ------------------------------------------------------------------------------ reading the topic


def test_fold_keeps_the_last_value_per_key_and_tombstones_remove():
    got = daily.fold_latest([(b"k1", b"1"), (b"k2", b"2"), (b"k1", b"3"), (None, b"keyless"),
                             (b"k2", None), (b"k3", None), (b"k4", b"4"), (b"k4", None), (b"k4", b"5")])
    assert got == {b"k1": b"3", b"k4": b"5"}


def test_fold_continues_into_an_existing_map():
    seen = daily.fold_latest([(b"a", b"1")])
    daily.fold_latest([(b"a", None), (b"b", b"2")], into=seen)
    assert seen == {b"b": b"2"}


def test_the_fixture_folds_to_the_latest_versions(decoded):
    records, unreadable = decoded
    keys = sorted(f"{r['date']}|{r['zone_id']}" for r in records)
    assert keys == ["2023-06-11|A", "2023-06-12|A", "2023-06-12|B", "2023-06-12|C", "2023-06-12|D",
                    "2023-06-12|core", "2023-06-12|inner", "2023-06-12|outer", "2023-06-13|A", "2023-06-13|B"]
    a = next(r for r in records if r["date"] == DATE and r["zone_id"] == "A")
    assert (a["version"], a["calls"], a["final"]) == (60, 10, True)
    assert unreadable == {"2023-06-12|X": "not JSON"}


@pytest.mark.parametrize("value, reason", [
    (b"[1, 2]", "not a JSON object"),
    (b'{"date": "2023-06-12", "zone_id": "A"}', "missing calls, alerts, hourly, response"),
    (b'{"date": "12.06.2023", "zone_id": "A", "calls": 0, "alerts": 0, "hourly": {}, "response": {}}',
     "date '12.06.2023' is not YYYY-MM-DD"),
    (b'{"date": "2023-06-12", "zone_id": 7, "calls": 0, "alerts": 0, "hourly": {}, "response": {}}',
     "date and zone_id must be strings"),
    (b'{"date": "2023-06-12", "zone_id": "A", "calls": 0, "alerts": 0, "hourly": {"calls": [0], "alerts": []},'
     b' "response": {}}', "hourly.calls and hourly.alerts must be 24 counts"),
    (b'{"date": "2023-06-12", "zone_id": "A", "calls": 0, "alerts": 0, "hourly": {"calls": [0] * 24}, '
     b'"response": {}}', "not JSON"),
    (b'{"date": "2023-06-12", "zone_id": "A", "calls": "3", "alerts": 0, "hourly": {}, "response": {}}',
     "calls and alerts must be counts"),
    (b'{"date": "2023-06-12", "zone_id": "A", "calls": 1, "alerts": 0, "hourly": {"calls": [0, 0, 0, 0, 0, 0, 0, '
     b'0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "1"], "alerts": []}, "response": {}}',
     "hourly.calls and hourly.alerts must be 24 counts"),
    (b'{"date": "2023-06-12", "zone_id": "A", "calls": 0, "alerts": 0, "hourly": {"calls": [0, 0, 0, 0, 0, 0, 0, '
     b'0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "alerts": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '
     b'0, 0, 0, 0, 0, 0, 0, 0, 0]}, "response": []}', "response must be an object"),
])
def test_values_that_are_no_zone_day_are_named_not_used(value, reason):
    records, unreadable = daily.decode({b"2023-06-12|A": value})
    assert records == [] and unreadable == {"2023-06-12|A": reason}


def test_other_dates_are_kept_slim_and_still_listed():
    """read_latest keeps only date, zone_id and final of other dates' records (the topic holds every
    day); decode accepts those for the listing and the asked date's records are still whole."""
    msgs = [(k, v if v is None or k.startswith(b"2023-06-12|") else daily.slim(v)) for k, v in messages()]
    latest = daily.fold_latest(msgs)
    assert orjson.loads(latest[b"2023-06-13|A"]) == {"date": "2023-06-13", "zone_id": "A", "final": False}
    assert daily.slim(b"not json {") == b"not json {" and daily.slim(b"[1]") == b"[1]"
    records, unreadable = daily.decode(latest, DATE)
    assert dates(records) == {"2023-06-11": True, "2023-06-12": True, "2023-06-13": False}
    assert unreadable == {"2023-06-12|X": "not JSON"}
    whole, _ = daily.decode(daily.fold_latest(messages()))
    assert briefing(records, DATE, unreadable) == briefing(whole, DATE, unreadable)
    # a slim record of the asked date is not a zone's day
    _, bad = daily.decode({b"2023-06-12|A": daily.slim(dict(messages())[b"2023-06-12|B"])}, DATE)
    assert bad == {"2023-06-12|A": "missing calls, alerts, hourly, response"}


@pytest.mark.parametrize("utc, expected", [
    ((2023, 6, 12, 15, 59), "2023-06-11"),   # 23:59 on the 12th in Shanghai
    ((2023, 6, 12, 16, 0), "2023-06-12"),    # 00:00 on the 13th
    ((2023, 6, 13, 3, 0), "2023-06-12"),
])
def test_default_date_is_yesterday_in_the_configured_zone(utc, expected):
    assert daily.default_date(datetime(*utc, tzinfo=UTC), "Asia/Shanghai") == expected


def test_default_date_in_another_zone_and_a_bad_zone():
    now = datetime(2023, 6, 12, 15, 59, tzinfo=UTC)
    assert daily.default_date(now, "Europe/Berlin") == "2023-06-11"   # 17:59 on the 12th
    assert daily.default_date(now, "Pacific/Kiritimati") == "2023-06-12"  # UTC+14: 05:59 on the 13th
    with pytest.raises(ZonewatchError, match="ZONEWATCH_TZ='Mars/Olympus'"):
        daily.default_date(now, "Mars/Olympus")


# ------------------------------------------------------------------------------------ the report


def test_status_and_clock(report):
    assert report["date"] == DATE and report["tz"] == "Asia/Shanghai"
    assert (report["status"], report["zones_final"], report["zones_total"]) == ("final", 7, 7)
    assert report["as_of"] == "2023-06-13T00:10:05+08:00"     # core's rewrite, the latest clock


def test_totals(report):
    t = report["totals"]
    assert t["calls"] == 10 + 6 + 3 + 0 + 5 + 3 + 2 == 29
    assert t["alerts"] == 4 + 0 + 10 + 0 + 20 + 8 + 3 == 45
    assert t["calls_by_priority"] == {"1": 3 + 1 + 1 + 2, "2": 7 + 2 + 4 + 2, "3": 4 + 3}
    assert list(t["calls_by_category"].items()) == [("disturbance", 8), ("theft", 8), ("violent", 5),
                                                    ("fraud", 4), ("traffic", 4)]
    assert list(t["alerts_by_type"].items()) == [("crowd_density", 41), ("drone", 2), ("face_watchlist", 1),
                                                 ("fence_intrusion", 1)]


def test_the_1_3_5_figures_overall(report):
    r = report["response"]
    assert (r["arrived"], r["within_1m"], r["within_3m"], r["within_5m"], r["breaches"]) == (24, 7, 16, 22, 6)
    assert r["decided"] == 22 + 6
    assert r["rates"] == {"within_1m": 0.25, "within_3m": 0.5714, "within_5m": 0.7857}  # 7/28, 16/28, 22/28
    # not combinable from per-zone percentiles: null, and the zones' spread instead
    assert r["p50_s"] is None and r["p90_s"] is None
    assert r["zone_p50_s"] == {"zones": 6, "min": 60, "median": 150, "max": 400}   # 60 90 [150] 170 175 400
    assert r["zone_p90_s"] == {"zones": 6, "min": 140, "median": 250, "max": 400}  # 140 170 [250] 290 320 400


def test_per_zone_figures(report):
    zones = {z["zone_id"]: z for z in report["zones"]}
    assert set(zones) == {"A", "B", "C", "D", "outer", "inner", "core"}
    a = zones["A"]
    assert (a["calls"], a["calls_p1"], a["alerts"], a["decided"]) == (10, 3, 4, 9)
    assert a["response"] == {"arrived": 8, "within_1m": 2, "within_3m": 5, "within_5m": 7, "breaches": 2,
                             "p50_s": 150, "p90_s": 320}
    assert a["rates"] == {"within_1m": 0.2222, "within_3m": 0.5556, "within_5m": 0.7778}  # 2/9 5/9 7/9
    assert zones["D"]["rates"] == {"within_1m": None, "within_3m": None, "within_5m": None}
    assert zones["core"]["ring"] == "core" and zones["core"]["kind"] == "venue"
    # attention first: most breaches, then most calls, then id
    assert [z["zone_id"] for z in report["zones"]] == ["A", "core", "outer", "C", "B", "inner", "D"]


def test_totals_by_kind(report):
    assert report["by_kind"] == [
        {"kind": "venue", "zones": 3, "calls": 10, "alerts": 31, "arrived": 8, "within_5m": 7, "breaches": 3},
        {"kind": "grid", "zones": 4, "calls": 19, "alerts": 14, "arrived": 16, "within_5m": 15, "breaches": 3}]


def test_worst_zones(report):
    # by breaches (zones without any are not "worst"): 2 (2 of 2), 2 (2 of 9), 1 (1 of 3), 1 (1 of 5)
    assert [(w["zone_id"], w["breaches"], w["decided"], w["breach_rate"]) for w in report["worst_by_breaches"]] == [
        ("core", 2, 2, 1.0), ("A", 2, 9, 0.2222), ("C", 1, 3, 0.3333), ("outer", 1, 5, 0.2)]
    # by median response, five of the six zones with arrivals (B, 60 s, is left out)
    assert [(w["zone_id"], w["p50_s"]) for w in report["worst_by_median"]] == [
        ("core", 400), ("outer", 175), ("C", 170), ("A", 150), ("inner", 90)]


def test_hours_and_languages(report):
    calls = [0] * 24
    calls[9], calls[10], calls[14], calls[19], calls[20] = 4 + 2, 3 + 1, 1 + 2, 2, 3 + 3 + 3 + 3 + 2
    assert report["hourly"]["calls"] == calls and sum(calls) == 29
    alerts = [0] * 24
    alerts[9], alerts[10], alerts[11], alerts[19], alerts[20], alerts[21] = 2, 5, 5, 10, 10 + 8 + 3, 2
    assert report["hourly"]["alerts"] == alerts
    assert report["peak_hours"] == [{"hour": 20, "calls": 14, "alerts": 21}, {"hour": 9, "calls": 6, "alerts": 2},
                                    {"hour": 10, "calls": 4, "alerts": 5}]
    assert report["calls_by_lang"] == [{"lang": "zh", "calls": 9 + 5 + 3 + 4 + 2 + 1}, {"lang": "en", "calls": 3},
                                       {"lang": "ug", "calls": 1}, {"lang": "und", "calls": 1}]


def test_notes_name_what_is_not_exact_and_what_was_skipped(report):
    assert report["notes"] == ["sums_over_zones", "overall_percentiles", "unreadable"]
    assert report["unreadable"] == {"2023-06-12|X": "not JSON"}


def test_a_day_in_progress(decoded):
    records, unreadable = decoded
    rep = briefing(records, "2023-06-13", unreadable)
    assert (rep["status"], rep["zones_final"], rep["zones_total"]) == ("in_progress", 1, 2)
    assert rep["totals"]["calls"] == 1 and rep["peak_hours"] == [{"hour": 7, "calls": 1, "alerts": 0}]
    assert rep["worst_by_breaches"] == [] and rep["worst_by_median"] == []
    assert rep["response"]["zone_p50_s"] == {"zones": 0, "min": None, "median": None, "max": None}
    assert "unreadable" not in rep["notes"]        # X belongs to the 12th


def test_a_date_not_in_the_topic_lists_the_dates_there(decoded):
    records, _ = decoded
    assert dates(records) == {"2023-06-11": True, "2023-06-12": True, "2023-06-13": False}
    with pytest.raises(BriefingError) as exc:
        briefing(records, "2023-06-10")       # tombstoned: gone
    assert str(exc.value) == ("no zones.daily records for 2023-06-10; the dates there are: 2023-06-11, "
                              "2023-06-12, 2023-06-13 (in progress) (pass one with --date)")
    assert isinstance(exc.value, ZonewatchError)
    with pytest.raises(BriefingError, match="holds no day yet"):
        briefing([], "2023-06-12")


def test_a_long_list_of_dates_is_shown_as_runs():
    days = [f"2023-01-{d:02d}" for d in range(1, 32)] + ["2023-02-02", "2023-02-03", "2023-02-05"]
    recs = [{"date": d, "zone_id": "A", "final": d != "2023-01-20"} for d in days]
    with pytest.raises(BriefingError) as exc:
        briefing(recs, "2023-03-01")
    assert str(exc.value).endswith(
        "the dates there are: 2023-01-01 … 2023-01-19 (19 days), 2023-01-20 (in progress), "
        "2023-01-21 … 2023-01-31 (11 days), 2023-02-02, 2023-02-03, 2023-02-05 (pass one with --date)")


def test_the_json_equals_the_golden_file(report):
    assert render_json(report) == GOLDEN.read_text(encoding="utf-8")
    assert orjson.loads(GOLDEN.read_bytes()) == report
