"""Camera status reports, silent and offline cameras, quiet units (connectors/scenario/health.py),
laid over the demo scenario: what the layer adds and drops, read from the events alone."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import pairwise

import pytest

from connectors.scenario import health, scenario_events
from connectors.scenario.health import Episodes
from contract import events, topics

START = 1_700_000_000_000
HOURS = 4
FAR_FUTURE = 2**62
PARAMS = dict(units=60, cameras=80, calls_per_min=3.0, alerts_per_min=40.0, start_ms=START,
              duration_s=HOURS * 3600)


@pytest.fixture(scope="module")
def runs():
    """The same demo run with and without the health layer."""
    with_h = list(scenario_events(4, health=True, **PARAMS))
    without = list(scenario_events(4, health=False, **PARAMS))
    return with_h, without


def by_key(evs, topic, key):
    out = defaultdict(list)
    for t, e in evs:
        if t == topic:
            out[e[key]].append(e)
    return out


def gaps(evs, topic, key) -> list[tuple[int, str, int]]:
    """(gap, id, ts before the gap) between consecutive events of each id."""
    out = []
    for ident, es in by_key(evs, topic, key).items():
        ts = [e["ts"] for e in es]
        out += [(b - a, ident, a) for a, b in pairwise(ts)]
    return out


def test_reports_are_valid_and_in_time_order(runs):
    evs, _ = runs
    ts = [e["ts"] for _, e in evs]
    assert all(a <= b for a, b in pairwise(ts)) and ts[-1] <= START + HOURS * 3_600_000
    status = [e for t, e in evs if t == topics.STATUS]
    for e in status:
        assert events.validate_status(e, FAR_FUTURE) == e   # already normalised: online always given
    # about one report per camera per 5 min, less the silent time
    assert 0.85 * 80 * HOURS * 12 < len(status) <= 80 * HOURS * 12 * 1.12


def test_the_layer_only_adds_reports_and_drops_what_silence_hides(runs):
    with_h, without = runs
    kept = [(t, e) for t, e in with_h if t != topics.STATUS]
    it = iter(without)
    dropped = []
    for t, e in kept:          # `kept` is `without` with some events taken out, order unchanged
        for t2, e2 in it:
            if (t2, e2) == (t, e):
                break
            dropped.append((t2, e2))
        else:
            pytest.fail(f"{t} {e} is not in the run without health")
    dropped += list(it)
    assert dropped and {t for t, _ in dropped} == {topics.GPS, topics.ALERTS}
    assert sum(t == topics.CALLS for t, _ in kept) == sum(t == topics.CALLS for t, _ in without)


def test_cameras_go_silent_and_come_back(runs):
    evs, _ = runs
    between = gaps(evs, topics.STATUS, "camera_id")
    usual = sorted(g for g, _, _ in between)[len(between) // 2]
    assert 270_000 <= usual <= 330_000                       # every 5 min ± 10 %
    silences = [(g, cam, a) for g, cam, a in between if g > 30 * 60_000]
    assert len(silences) >= 3                                # silent past the worker's 30 min, then back
    assert all(g <= 95 * 60_000 for g, _, _ in silences)    # 35-90 min plus the report period
    # a silent camera raises no alerts either
    alerts = by_key(evs, topics.ALERTS, "camera_id")
    for g, cam, a in silences:
        assert not [x for x in alerts.get(cam, ()) if a + 330_000 < x["ts"] < a + g - 330_000]


def test_cameras_reported_offline_raise_no_alerts(runs):
    evs, without = runs
    offline = [(e["camera_id"], e["ts"]) for t, e in evs if t == topics.STATUS and not e["online"]]
    assert len({cam for cam, _ in offline}) >= 2
    alerts = by_key(evs, topics.ALERTS, "camera_id")
    for cam, t in offline:
        assert not [a for a in alerts.get(cam, ()) if a["ts"] == t]
    # and some alert of the run without health came from a camera while it was reported offline
    raw = by_key(without, topics.ALERTS, "camera_id")
    reports = by_key(evs, topics.STATUS, "camera_id")
    hidden = 0
    for cam, rs in reports.items():
        spans = [(a["ts"], b["ts"]) for a, b in pairwise(rs) if not a["online"] and not b["online"]]
        hidden += sum(1 for x in raw.get(cam, ()) for lo, hi in spans if lo <= x["ts"] <= hi)
    assert hidden > 0


def test_units_go_quiet_for_a_while(runs):
    evs, _ = runs
    quiet = [g for g, _unit, _t in gaps(evs, topics.GPS, "unit_id") if g > 120_000]
    assert len(quiet) >= 10
    # 3-20 min quiet (between the 120 s after which a unit is no longer present and the 30 min of
    # `units_quiet`), plus at most a fix interval (<= 10.3 s) on either side
    assert all(3 * 60_000 <= q <= 20 * 60_000 + 2 * 10_300 for q in quiet)


def test_deterministic_and_seed_dependent():
    a = list(scenario_events(9, health=True, **PARAMS | {"duration_s": 1800}))
    assert a == list(scenario_events(9, health=True, **PARAMS | {"duration_s": 1800}))
    b = list(scenario_events(10, health=True, **PARAMS | {"duration_s": 1800}))
    assert [e for t, e in a if t == topics.STATUS] != [e for t, e in b if t == topics.STATUS]


def test_episodes_do_not_depend_on_when_they_are_asked():
    """`down(t)` is a function of t alone: asking often or rarely gives the same answers."""
    def ep():
        return Episodes(random.Random("x"), 0, 3_600_000, 60_000, 600_000)

    dense, sparse = ep(), ep()
    times = list(range(0, 48 * 3_600_000, 5_000))
    answers = [dense.down(t) for t in times]
    picked = times[::97]
    assert [sparse.down(t) for t in picked] == answers[::97]
    assert 0 < sum(answers) < len(answers)   # some down time, not all


def test_the_periods_are_the_contracts():
    # silent longer than ZONEWATCH_CAMERA_SILENT_S (1800 s); quiet between 120 s and 30 min (CONTRACT §3)
    assert health.SILENT[1] > 1_800_000
    assert 120_000 < health.QUIET[1] < health.QUIET[2] < 1_800_000
    assert health.STATUS_EVERY_S * 1000 * (1 + health.STATUS_JITTER) < 1_800_000
