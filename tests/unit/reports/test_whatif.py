"""`--deploy` (reports/whatif.py, CONTRACT §11): the estimate of a hand-made day, computed by hand.

Units: F (foot, 1.4 m/s) 0.001° north of the point P = (34.70, 113.60), from S to S+60 min; C (car,
8.3 m/s) 0.01° north of P, all day. Along a meridian the distance is R·Δφ (R = 6,372,797.56 m, the
radius Redis GEO uses): F 111.226 m -> 111.226 × 1.3 / 1.4 = 103.28 -> 103 s; C 1,112.26 m ->
174.21 -> 174 s; a call 1° north of P is 0.99° from C: 110,114.0 m -> 17,246.78 -> 17,247 s.
Calls (recorded): k1 at S+1 min at P (zone A), arrived after 400 s and breached -> min(400, 103) =
103; k2 at S+70 min at P (A, B; F off duty), arrived 30 s -> 30; k3 at S+80 min at P (B), breached,
nobody came -> 174 (no longer a breach); k4 at S+90 min 1° north (no zone), breached -> 17,247 (still a
breach); k0 before the period: left out.
Overall: 4 calls, 4 estimated arrivals (30, 103, 174, 17247 s), within 1/3/5 min 1/3/3, 1 breach,
p50 rank ⌈2⌉ = 103 s, p90 rank ⌈3.6⌉ = 4th = 17,247 s. A: k1, k2 -> (30, 103): 1/2/2, p50 30, p90 103.
B: k2, k3 -> (30, 174): 1/2/2, p50 30, p90 174.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from contract.errors import ConfigError
from reports.drill import FIG_FIELDS
from reports.whatif import Unit, estimate, parse_units

S = int(datetime(2026, 5, 10, 8, 0, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)
M = 60_000
E = S + 120 * M
P = (34.70, 113.60)
UNITS = [Unit("F", "foot", 34.701, 113.60, S, S + 60 * M), Unit("C", "car", 34.71, 113.60, S, E)]


def _call(cid, ts, lat, zones):
    return {"call_id": cid, "ts": ts, "lat": lat, "lon": 113.60, "zones": zones}


ENRICHED = [_call("k0", S - 1, 34.70, ["A"]), _call("k1", S + M, 34.70, ["A"]),
            _call("k2", S + 70 * M, 34.70, ["A", "B"]), _call("k3", S + 80 * M, 34.70, ["B"]),
            _call("k4", S + 90 * M, 35.70, [])]
SLA = [{"type": "breach", "call_id": "k1"}, {"type": "arrived", "call_id": "k1", "response_s": 400},
       {"type": "arrived", "call_id": "k2", "response_s": 30}, {"type": "breach", "call_id": "k3"},
       {"type": "breach", "call_id": "k4"}, {"type": "breach", "call_id": "k0"}]


def fig(**kw):
    return {**dict.fromkeys(FIG_FIELDS), **kw}


WANT = {
    "overall": fig(calls=4, arrived=4, within_1m=1, within_3m=3, within_5m=3, breaches=1, p50_s=103, p90_s=17247),
    "zones": {"A": fig(calls=2, arrived=2, within_1m=1, within_3m=2, within_5m=2, breaches=0, p50_s=30, p90_s=103),
              "B": fig(calls=2, arrived=2, within_1m=1, within_3m=2, within_5m=2, breaches=0, p50_s=30, p90_s=174),
              "C": fig(calls=0, arrived=0, within_1m=0, within_3m=0, within_5m=0, breaches=0)},
}


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_estimate_equals_the_hand_computed_figures(seed):
    enriched, sla, units = list(ENRICHED), list(SLA), list(UNITS)
    if seed is not None:
        rnd = random.Random(seed)
        for x in (enriched, sla, units):
            rnd.shuffle(x)
    assert estimate(S, E, ["A", "B", "C"], units, enriched, sla) == WANT


def test_the_deploy_file_reads_local_times_and_refuses_what_it_cannot_use():
    units = parse_units('timezone = "Asia/Shanghai"\n[[unit]]\nid = "F"; kind = "foot"; lat = 34.701; lon = 113.60\n'
                        'from = "2026-05-10T08:00"; to = "2026-05-10T09:00"\n'
                        '[[unit]]\nid = "C"; lat = 34.71; lon = 113.60; from = 2026-05-10T08:00:00+08:00\n'
                        'to = "2026-05-10T10:00+08:00"\n')
    assert units == [UNITS[0], Unit("C", "car", 34.71, 113.60, S, E)]
    for bad in ('[[unit]]\nid = "x"; kind = "horse"; lat = 1; lon = 1; from = 0; to = 1\n',
                '[[unit]]\nid = "x"; lat = 1; lon = 1; from = 5; to = 1\n', '[[unit]]\nid = "x"\n', ""):
        with pytest.raises(ConfigError):
            parse_units(bad)
