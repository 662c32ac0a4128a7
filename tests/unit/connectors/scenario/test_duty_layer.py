"""The simulator's duty layer (connectors/scenario/duty.py, issue 26): units that keep the bundled
plan's posts and leave them, sweeps that pass checkpoints late, an operator's phase change mid-run,
auxiliary and volunteer units — checked through the real in-process pipeline with the plan — and
the scenario's own events untouched."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import orjson
import pytest

from connectors.scenario import scenario_events
from connectors.scenario.plans import BUNDLED_START_MS
from contract import topics
from contract.plan import load_plan
from contract.settings import DATA_DIR, DEMO_ZONES, Settings
from streams.testing import Msg, Pipeline

PLAN = DATA_DIR / "plans" / "demo.toml"
START = BUNDLED_START_MS["demo"]
PARAMS = {"scenario": "demo", "units": 10, "cameras": 5, "calls_per_min": 0.5, "alerts_per_min": 1.0,
          "start_ms": START, "duration_s": 2.5 * 3600}


def _events(plan=None):
    return list(scenario_events(11, **PARAMS, plan=plan))


def _layer(topic: str, ev) -> bool:
    return topic == topics.PLAN_COMMANDS or str(ev.get("unit_id", "")).startswith(("DUTY-", "SWEEP-"))


@pytest.fixture(scope="module")
def run():
    plan = load_plan(PLAN)
    evs = _events(plan)
    s = Settings(zones=DEMO_ZONES, partitions=3, future_tolerance_ms=10 ** 13, plan=PLAN)
    pipe = Pipeline(s)
    pipe.feed([Msg(s.topic(t), 0, i, None, orjson.dumps(e), 1) for i, (t, e) in enumerate(evs)], batch=400)
    pipe.finish()
    return plan, evs, pipe


def test_the_layer_adds_to_the_scenario_and_changes_nothing_of_it(run):
    _plan, evs, _pipe = run
    assert [e for e in evs if not _layer(*e)] == _events()
    assert all(a[1]["ts"] <= b[1]["ts"] for a, b in zip(evs, evs[1:], strict=False))
    assert evs == _events(load_plan(PLAN))   # deterministic
    forces = Counter(e.get("force") for t, e in evs if _layer(t, e) and t == topics.GPS)
    assert forces["auxiliary"] > 100 and forces["volunteer"] > 100 and forces["security"] > 100


def test_posts_are_kept_left_and_kept_again_checkpoints_go_overdue_and_the_operator_changes_the_phase(run):
    plan, _evs, pipe = run
    assert not pipe.dead
    statuses = Counter(e["status"] for e in pipe.duty if e["type"] == "post_status")
    assert statuses["manned"] >= 20 and statuses["understaffed"] >= 20 and statuses["empty"] >= 1, statuses
    per_post = {}
    for e in pipe.duty:
        if e["type"] == "post_status":
            per_post.setdefault(e["post_id"], []).append(e["status"])
    # a post left empty and manned again later
    assert any("empty" in s and "manned" in s[s.index("empty"):] for s in per_post.values()), per_post
    overdue = [e for e in pipe.duty if e["type"] == "checkpoint_overdue"]
    assert overdue
    visits = [e for e in pipe.duty if e["type"] == "checkpoint_visited"]
    assert any(v["checkpoint_id"] == o["checkpoint_id"] and v["ts"] > o["ts"] for o in overdue for v in visits)
    phases = [(e["source"], e["by"]) for e in pipe.duty if e["type"] == "phase"]
    assert ("operator", "模拟值班长") in phases and ("schedule", "模拟值班长") in phases, phases
    # volunteers stand at posts that do not count them: never in a post's units
    posts, _cps, _phase = pipe.duty_documents()
    volunteers = {e["unit_id"] for t, e in run[1] if t == topics.GPS and e.get("force") == "volunteer"}
    assert volunteers and not any(set(d["unit_ids"]) & volunteers for d in posts.values())
    assert all(p.post_id in posts for p in plan.posts)


def test_write_plan_writes_the_scenarios_plan_for_the_runs_start(tmp_path):
    out = tmp_path / "plan.toml"
    subprocess.run([sys.executable, "-m", "connectors.simulate", "--write-plan", str(out), "--start",
                    "2026-05-10T00:00:00+00:00"], check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == PLAN.read_text(encoding="utf-8")
