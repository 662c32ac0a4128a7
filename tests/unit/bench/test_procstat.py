"""bench/procstat.py: parsing /proc and CPU arithmetic (no real processes needed)."""

from __future__ import annotations

import os

import pytest

from bench.procstat import CpuWatch, cores_between, descendants, parse_net_tcp, parse_proc_stat_total, parse_stat


def test_parse_stat_with_spaces_and_parentheses_in_the_name():
    text = "4242 (python (w) x) S 17 4242 4242 0 -1 4194560 1 0 0 0 150 25 3 4 20 0 3 0 100 1 1 0\n"
    assert parse_stat(text) == ("python (w) x", 17, 175)


def test_parse_proc_stat_total_counts_iowait_as_idle():
    text = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n"
    busy, total = parse_proc_stat_total(text)
    assert total == 100 + 5 + 50 + 800 + 40 + 3 + 2 + 0
    assert busy == total - 800 - 40


def test_parse_net_tcp():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 0100007F:42BF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1\n"
            "   1: 0100007F:D6F2 0100007F:42BF 01 00000000:00000000 00:00000000 00000000     0        0 9002 1\n")
    assert parse_net_tcp(text) == [(17087, 0, "0A", 9001), (55026, 17087, "01", 9002)]


def test_descendants():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1}
    assert descendants(10, parents) == {10, 11, 12, 13}
    assert descendants(20, parents) == {20}


def test_cores_between_and_other():
    c = cores_between({"worker": 100, "kafka": 50}, {"worker": 300, "kafka": 100}, (1000, 5000), (1500, 5800),
                      2.0, 100)
    assert c["cores"] == {"worker": 1.0, "kafka": 0.25}
    assert c["machine_busy"] == 2.5
    assert c["other"] == pytest.approx(1.25)


def test_cpu_watch_on_this_process():
    w = CpuWatch({"me": (os.getpid(), False), "nobody": (None, True)})
    t0 = w.sample()
    sum(i * i for i in range(200_000))
    t1 = w.sample()
    out = w.between(t0, t1)
    assert set(out["cores"]) == {"me"}
    assert out["cores"]["me"] >= 0.0 and out["seconds"] > 0
    assert w.pids("me") == {os.getpid()}
