"""The drill's figures (reports/drill.py, CONTRACT §11) on a hand-made set of records whose FIG
was computed by hand below, read in several orders; and its renderers (reports/drill_render.py).

Records (S = start, M = a minute; period [S, S + 120 M)):
  calls   c1 at S (zones A, B), c2 at S+10M (A), c3 at S+20M (no zone); c4 at S−1 ms and c5 at the
          end are outside; c1's enriched record is there twice (delivered twice)
  sla     c1 arrived 50.4 s (twice), c2 arrived 200 s, c3 breach then arrived 400 s (late);
          tiers c1 met, c2 not met; c4 breach and tiers: outside the period
  duty    post P1 (zone A): understaffed S−10M, empty S+5M, manned S+15M, understaffed at end+1M
          (open) -> understaffed 5 min, empty 10 min; post P2 (zones A, B): empty S+110M, manned
          end+10M -> empty 10 min (clipped at the end); checkpoint K1 (zone B) overdue S+30M (twice),
          S−1 ms and end+1 ms (outside) -> 1 miss
  reach   A: 0.5 from S−5M, 1.0 from S+30M (an older version of that clock said 0.9), 0.0 from S+90M
          -> (0.5·30 + 1.0·60 + 0·30)/120 = 0.625; B: 0.4 from S+60M -> 0.4; C: none
By hand, overall: calls 3 (c1, c2, c3), arrived 3 (50.4, 200, 400 s), within 1/3/5 min 1/1/2,
breaches 1, p50 = rank ⌈1.5⌉ = 2nd = 200 s, p90 = rank ⌈2.7⌉ = 3rd = 400 s, tiers 1 of 2,
post-minutes understaffed 5 and empty 20 (P1 10 + P2 10, each post once), misses 1,
reach (0.625 + 0.4) / 2 = 0.5125.
"""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import orjson
import pytest

from reports.drill import FIG_FIELDS, difference, figures, hourly, report
from reports.drill_render import render

S = 1_686_000_000_000
M = 60_000
E = S + 120 * M

ENRICHED = [
    {"call_id": "c1", "ts": S, "zones": ["A", "B"]},
    {"call_id": "c1", "ts": S, "zones": ["A", "B"]},
    {"call_id": "c2", "ts": S + 10 * M, "zones": ["A"]},
    {"call_id": "c3", "ts": S + 20 * M, "zones": []},
    {"call_id": "c4", "ts": S - 1, "zones": ["A"]},
    {"call_id": "c5", "ts": E, "zones": ["A", "B"]},
]
SLA = [
    {"type": "arrived", "call_id": "c1", "zone_ids": ["A", "B"], "unit_id": "u1", "response_s": 50.4, "ts": S},
    {"type": "arrived", "call_id": "c1", "zone_ids": ["A", "B"], "unit_id": "u1", "response_s": 50.4, "ts": S},
    {"type": "arrived", "call_id": "c2", "zone_ids": ["A"], "unit_id": "u2", "response_s": 200, "ts": S},
    {"type": "breach", "call_id": "c3", "zone_ids": [], "unit_id": None, "response_s": None, "ts": S},
    {"type": "arrived", "call_id": "c3", "zone_ids": [], "unit_id": "u3", "response_s": 400, "ts": S},
    {"type": "tiers", "call_id": "c1", "zone_ids": ["A", "B"], "on_scene": {}, "met": True, "ts": S},
    {"type": "tiers", "call_id": "c2", "zone_ids": ["A"], "on_scene": {}, "met": False, "ts": S},
    {"type": "breach", "call_id": "c4", "zone_ids": ["A"], "unit_id": None, "response_s": None, "ts": S},
    {"type": "tiers", "call_id": "c4", "zone_ids": ["A"], "on_scene": {}, "met": True, "ts": S},
]


def _post(pid, status, ts):
    return {"type": "post_status", "post_id": pid, "status": status, "previous": None, "required": 2,
            "present": 0, "ts": ts}


def _cp(kind, ts):
    return {"type": kind, "checkpoint_id": "K1", "unit_id": None, "ts": ts}


DUTY = [
    _post("P1", "understaffed", S - 10 * M), _post("P1", "empty", S + 5 * M), _post("P1", "manned", S + 15 * M),
    _post("P1", "understaffed", E + M),
    _post("P2", "empty", S + 110 * M), _post("P2", "manned", E + 10 * M),
    _cp("checkpoint_overdue", S + 30 * M), _cp("checkpoint_overdue", S + 30 * M), _cp("checkpoint_overdue", S - 1),
    _cp("checkpoint_overdue", E + 1), _cp("checkpoint_visited", S + 40 * M),
    {"type": "phase", "name": "决战", "previous": None, "source": "schedule", "by": None, "ts": S},
]
PLACES = {"P1": ("A",), "P2": ("A", "B"), "K1": ("B",)}


def _doc(zid, version, clock, within_3m):
    return {"zone_id": zid, "version": version, "clock": clock, "reach": {"within_3m": within_3m}}


STATES = [_doc("A", 1, S - 5 * M, 0.5), _doc("A", 2, S + 30 * M, 0.9), _doc("A", 3, S + 30 * M, 1.0),
          _doc("A", 4, S + 90 * M, 0.0), _doc("B", 1, S + 60 * M, 0.4)]


def fig(**kw):
    out = {"calls": 0, "arrived": 0, "within_1m": 0, "within_3m": 0, "within_5m": 0, "breaches": 0,
           "p50_s": None, "p90_s": None, "tiers_met": 0, "tiers_decided": 0, "post_minutes_understaffed": 0.0,
           "post_minutes_empty": 0.0, "checkpoint_misses": 0, "reach_3m_mean": None}
    out.update(kw)
    return out


WANT = {
    "overall": fig(calls=3, arrived=3, within_1m=1, within_3m=1, within_5m=2, breaches=1, p50_s=200, p90_s=400,
                   tiers_met=1, tiers_decided=2, post_minutes_understaffed=5.0, post_minutes_empty=20.0,
                   checkpoint_misses=1, reach_3m_mean=0.5125),
    "zones": {
        "A": fig(calls=2, arrived=2, within_1m=1, within_3m=1, within_5m=2, p50_s=50, p90_s=200, tiers_met=1,
                 tiers_decided=2, post_minutes_understaffed=5.0, post_minutes_empty=20.0, reach_3m_mean=0.625),
        "B": fig(calls=1, arrived=1, within_1m=1, within_3m=1, within_5m=1, p50_s=50, p90_s=50, tiers_met=1,
                 tiers_decided=1, post_minutes_empty=10.0, checkpoint_misses=1, reach_3m_mean=0.4),
        "C": fig(),
    },
}


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5])
def test_figures_equal_the_hand_computed_ones_in_any_read_order(seed):
    lists = [list(x) for x in (ENRICHED, SLA, DUTY, STATES)]
    if seed is not None:   # records come from several partitions: their order among keys is arbitrary
        rnd = random.Random(seed)
        for x in lists:
            rnd.shuffle(x)
    got = figures(S, E, ["A", "B", "C"], *lists, PLACES)
    assert got == WANT
    assert list(got["overall"]) == list(FIG_FIELDS)


def test_a_post_status_not_followed_by_another_counts_nothing():
    got = figures(S, E, ["A"], [], [], [_post("P1", "empty", S)], [], {"P1": ("A",)})
    assert got["zones"]["A"]["post_minutes_empty"] == 0.0


def test_hourly_curve_counts_calls_and_arrivals_within_3_minutes_by_hour_from_the_start():
    got = hourly(S, E, ENRICHED, SLA)
    assert got == {"calls": [3, 0], "within_3m": [1, 0]}   # c1 (50.4 s) within; c2 200 s, c3 400 s not


def test_difference_is_variant_minus_baseline():
    d = difference(WANT["zones"]["B"], WANT["zones"]["A"])
    assert (d["calls"], d["within_5m"], d["p50_s"], d["checkpoint_misses"]) == (1, 1, 0, -1)
    assert d["reach_3m_mean"] == 0.225
    assert difference(WANT["zones"]["C"], WANT["zones"]["A"])["p50_s"] is None


def _result():
    variant = {"overall": WANT["zones"]["A"], "zones": {"A": WANT["zones"]["A"], "B": WANT["zones"]["C"]}}
    return {"report": report(S, E, WANT, variant), "hourly": {"baseline": {"calls": [3, 0], "within_3m": [1, 0]},
                                                               "variant": {"calls": [2, 1], "within_3m": [0, 1]}},
            "names": {"A": "Zone A", "B": "Zone B"}}


def test_json_is_exactly_the_contract_object():
    got = orjson.loads(render(_result(), "json"))
    assert list(got) == ["from", "to", "baseline", "variant", "estimate"]
    assert (got["from"], got["to"], got["estimate"]) == (S, E, None)
    assert got["baseline"] == WANT
    for f in (got["baseline"], got["variant"]):
        assert set(f) == {"overall", "zones"}
        assert all(list(x) == list(FIG_FIELDS) for x in [f["overall"], *f["zones"].values()])


def test_markdown_shows_both_sides_and_the_difference():
    md = render(_result(), "md")
    row = next(line for line in md.splitlines() if line.startswith("| calls |"))
    assert row == "| calls | 3 | 2 | −1 |"
    p50 = next(line for line in md.splitlines() if line.startswith("| p50 |"))
    assert p50 == "| p50 | 3:20 | 0:50 | −2:30 |"
    zone_b = next(line for line in md.splitlines() if line.startswith("| Zone B (B) |"))
    assert zone_b.startswith("| Zone B (B) | 1 → 0 (−1) | 1 → 0 (−1) |")


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained_with_zone_bars_and_hourly_curves():
    page = render(_result(), "html")
    parser = Tags()
    parser.feed(page)
    names = [t for t, _a in parser.tags]
    assert "script" not in names and "link" not in names
    assert not re.search(r"(src|href)=\"https?:", page)
    bars = [(a["data-zone"], a["class"], a["data-value"]) for t, a in parser.tags if t == "rect"]
    assert bars == [("A", "bar base", "1"), ("A", "bar variant", "1"), ("B", "bar base", "1"),
                    ("B", "bar variant", "0"), ("C", "bar base", "0"), ("C", "bar variant", "0")]
    assert {a.get("id") for t, a in parser.tags if t == "svg"} >= {"zone-bars", "curve-calls", "curve-within-3m"}
    assert sum(1 for t, _a in parser.tags if t == "polyline") == 4
