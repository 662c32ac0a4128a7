"""bench/measure.py: rates from sampled counters, min/median/max, Redis command arithmetic."""

from __future__ import annotations

import pytest

from bench.measure import (
    LUA,
    MonitorTally,
    calls_from_info,
    commands_delta,
    count_true,
    crossing,
    per,
    rate_between,
    script_calls,
    split_commands,
    spread,
    top_level_share,
)
from contract import keys


def test_crossing_interpolates_between_samples():
    samples = [(0.0, 0.0), (1.0, 100.0), (2.0, 300.0)]
    assert crossing(samples, 50) == pytest.approx(0.5)
    assert crossing(samples, 200) == pytest.approx(1.5)
    assert crossing(samples, 301) is None


def test_rate_between_5_and_95_percent():
    samples = [(float(t), 100.0 * t) for t in range(11)]   # 100 events/s, 1,000 in all
    assert rate_between(samples, 1000) == pytest.approx(100.0)
    assert rate_between(samples[:3], 1000) is None           # never reached 95 %


def test_spread_skips_missing_runs():
    s = spread([3.0, None, 1.0, 2.0, "x", True])
    assert (s["min"], s["median"], s["max"], s["n"], s["of"]) == (1.0, 2.0, 3.0, 3, 6)
    assert spread([None, None])["median"] is None
    assert spread([1, 2, 3, 10])["median"] == 2.5


def test_count_true_and_per():
    assert count_true([True, False, None, True]) == (2, 3)
    assert per(3, 4) == 0.75
    assert per(3, 0) is None and per(None, 2) is None


def test_calls_from_info_dict_and_text():
    parsed = {"cmdstat_set": {"calls": 7, "usec": 3}, "cmdstat_XINFO|stream": {"calls": 2}, "redis_version": "7"}
    assert calls_from_info(parsed) == {"set": 7, "xinfo|stream": 2}
    text = ("# Commandstats\r\ncmdstat_evalsha:calls=4,usec=90,usec_per_call=22.50,rejected_calls=0,failed_calls=0\r\n"
            "cmdstat_publish:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n")
    assert calls_from_info(text) == {"evalsha": 4, "publish": 12}


def test_commands_delta_subtracts_the_bench_own_calls():
    before = {"info": 10, "set": 5, "evalsha": 1}
    after = {"info": 11, "set": 9, "evalsha": 3, "geoadd": 2, "xinfo|stream": 1}
    d = commands_delta(before, after, {"info": 1, "xinfo|stream": 1})
    assert d == {"set": 4, "evalsha": 2, "geoadd": 2}


MONITOR = (b"+OK\r\n"
           b'+1795988314.069076 [9 127.0.0.1:55174] "evalsha" "abc" "4" "zw:fence"\r\n'
           b'+1795988314.069149 [9 lua] "set" "zw:zone:g01-02" "{\\"zone_id\\":\\"g01-02\\"}"\r\n'
           b'+1795988314.069150 [9 lua] "xadd" "zw:zone-updates" "MAXLEN" "~" "100000" "*"\r\n'
           b'+1795988314.069155 [9 lua] "publish" "zw:zone:g01-02" "{}"\r\n'
           b'+1795988314.069160 [9 lua] "set" "zw:incident:C-1" "{}" "EX" "86400"\r\n'
           b'+1795988314.095069 [9 127.0.0.1:55178] "GEOADD" "zw:units" "113.5" "34.7" "unit-00001"\r\n'
           b'+1795988314.095070 [9 127.0.0.1:60000] "xread" "BLOCK" "15000" "STREAMS"\r\n')


def test_monitor_tally_any_chunking():
    whole = MonitorTally(keys.zone(""))
    whole.feed(MONITOR)
    pieces = MonitorTally(keys.zone(""))
    for i in range(0, len(MONITOR), 7):
        pieces.feed(MONITOR[i:i + 7])
    assert whole.by_client == pieces.by_client
    assert whole.lines == 7 and whole.unparsed == 0
    assert whole.zone_sets == {LUA: 1}          # the incident timeline SET is not a zone document
    owners = {"127.0.0.1:55174": "worker", "127.0.0.1:55178": "worker", "127.0.0.1:60000": "gateway"}
    g = whole.grouped(owners)
    assert g == {"worker": {"evalsha": 1, "geoadd": 1}, LUA: {"set": 2, "xadd": 1, "publish": 1},
                 "gateway": {"xread": 1}}
    assert whole.grouped({})["other"] == {"evalsha": 1, "geoadd": 1, "xread": 1}
    assert whole.zone_sets_by(owners) == {LUA: 1}


def test_split_commands_with_a_sample_share():
    share = top_level_share({"worker": {"evalsha": 2, "set": 1}, LUA: {"set": 3, "xadd": 4}})
    assert share == {"evalsha": 1.0, "set": 0.25, "xadd": 0.0}
    sp = split_commands({"evalsha": 10, "set": 40, "xadd": 40, "geosearch": 5}, share)
    assert sp["top_level"] == pytest.approx(10 + 10 + 0 + 5)
    assert sp["in_scripts"] == pytest.approx(30 + 40)
    assert sp["unclassified"] == 5 and sp["all"] == 95


def test_script_calls_counts_only_script_invocations():
    assert script_calls({"evalsha": 3, "eval": 1, "set": 50, "fcall": 2}) == 6
