"""bench/run.py's summary over runs and bench/report.py's renderings, on made-up results."""

from __future__ import annotations

from bench.report import render_markdown, render_text
from bench.run import summarize


def _unit(run, w, p99, kept, sse_p99=None):
    return {"zone_set": "demo", "run": run,
            "baseline_a": {"events_per_s": 600_000.0}, "baseline_b": {"events_per_s": 10_000.0},
            "worker": {"events_per_s": w, "completed": w is not None}, "ratio_a": w / 600_000.0 if w else None,
            "ratio_b": w / 10_000.0 if w else None,
            "latency": {"e2e": {"p50_s": 0.05, "p99_s": p99}, "kept_up": kept, "achieved_rate": 5000.0,
                        "redis": {"commands_per_event_all": 0.2, "top_level_per_event": 0.02,
                                  "zone_writes_per_event": 0.01}},
            "latency_sse": {"e2e": {"p50_s": 0.06, "p99_s": sse_p99}, "kept_up": kept} if sse_p99 else None}


ONE = {"events_per_s": 20_000.0, "events_per_s_to_final_state": 20_000.0,
       "cpu": {"cores": {"worker": 0.9, "kafka": 0.3}, "machine_busy": 1.5, "other": 0.3}}
TWO = {"events_per_s": 30_000.0, "events_per_s_to_final_state": 30_000.0,
       "cpu": {"cores": {"worker 1": 0.7, "worker 2": 0.7, "kafka": 0.4}, "machine_busy": 2.0, "other": 0.2}}


def _result(units):
    return {"run_id": "abc123", "started_at": "2026-11-29T22:00:00+00:00", "duration_s": 600.0,
            "command": "python -m bench.run --runs 3",
            "machine": {"commit": "f00", "cpus": 2, "cpu": "CPU", "python": "3.11", "kafka": "4.4.0",
                        "redis": "7.0.15", "packages": {}, "loadavg_start": [1.0, 1.0, 1.0]},
            "config": {"runs": len(units), "zone_sets": [{"name": "demo", "what": "demo zones"}], "stress": False,
                       "events": 1000, "partitions": 4, "units": 50, "cameras": 10, "stream_rate": 740.0,
                       "rate": 5000, "seconds": 20.0, "sse_clients": 200, "dup_rate": 0.005, "invalid_rate": 0.001,
                       "mix": {"gps": 0.85, "alerts": 0.145, "calls": 0.005}},
            "units": units, "summary": summarize(units, ["demo"]),
            "scaling": [{"zone_set": "demo", "events": 1000, "partitions": 4, "ratio": 1.5,
                         "ratio_to_final_state": 1.5, "one": ONE, "two": TWO}]}


def test_summary_is_min_median_max_over_runs():
    units = [_unit(1, 20_000.0, 0.120, True, 0.150), _unit(2, None, 2.0, False, 3.0),
             _unit(3, 30_000.0, 0.080, True, 0.100), _unit(4, 40_000.0, 0.090, True)]
    s = summarize(units, ["demo"])["demo"]
    assert (s["w"]["min"], s["w"]["median"], s["w"]["max"], s["w"]["n"]) == (20_000.0, 30_000.0, 40_000.0, 3)
    assert s["p99"]["median"] == (0.090 + 0.120) / 2
    assert (s["kept_up"]["yes"], s["kept_up"]["of"]) == (3, 4)
    assert s["sse_cost"]["n"] == 3
    assert round(s["sse_cost"]["min"]) == 25 and round(s["sse_cost"]["max"]) == 50


def test_renderings_carry_the_figures():
    r = _result([_unit(1, 20_000.0, 0.120, True, 0.150), _unit(2, 30_000.0, 0.080, True, 0.100)])
    md, text = render_markdown(r), render_text(r)
    assert "| W: zonewatch worker, backlog events/s | 20,000 | 25,000 | 30,000 |" in md
    assert "| worker kept up at the offered load | 2 of 2 | | |" in md
    assert "ratio 1.500" in md and "| 2 workers | 30,000 |" in md
    assert "100.0 ms" in text and "2 of 2" in text
