from __future__ import annotations

import pytest

from contract.errors import RulesError
from streams.rules import load_rules, parse_rules


def doc(ring=None, calls15=0, p1=0, alerts5=0, types5=None):
    w5 = {"calls": 0, "calls_p1": 0, "alerts": alerts5, "alerts_by_type": types5 or {}}
    w15 = {"calls": calls15, "calls_p1": p1, "alerts": 0, "alerts_by_type": {}}
    return {"ring": ring, "windows": {"5m": w5, "15m": w15, "60m": w15}, "open_incidents": 0}


@pytest.mark.parametrize("d,level", [
    (doc(), "green"), (doc(calls15=3), "yellow"), (doc(alerts5=10), "yellow"), (doc(p1=1), "orange"),
    (doc(calls15=10), "orange"), (doc(p1=3), "red"), (doc(alerts5=60), "red"),
    (doc(types5={"fight": 1}), "orange"),
])
def test_default_rules(d, level):
    assert load_rules(None).level(d) == level


def test_core_ring_escalation_only_in_core():
    rules = load_rules(None)
    assert rules.level(doc("core", types5={"face_watchlist": 1}, alerts5=1)) == "orange"
    assert rules.level(doc("core", types5={"fence_intrusion": 1}, alerts5=1)) == "orange"
    assert rules.level(doc("inner", types5={"face_watchlist": 1}, alerts5=1)) == "green"
    assert rules.level(doc("core", p1=3)) == "red"  # escalation never lowers a level


def test_a_drone_raises_any_ringed_zone_to_yellow_and_core_to_orange():
    rules = load_rules(None)
    drone = {"drone": 1}
    assert rules.level(doc("core", types5=drone, alerts5=1)) == "orange"
    assert rules.level(doc("inner", types5=drone, alerts5=1)) == "yellow"
    assert rules.level(doc("outer", types5=drone, alerts5=1)) == "yellow"
    assert rules.level(doc(None, types5=drone, alerts5=1)) == "green"          # a grid: no ring
    assert rules.level(doc("outer", types5=drone, alerts5=1, p1=1)) == "orange"  # never lowers


@pytest.mark.parametrize("text,msg", [
    ("not toml [", "not valid TOML"),
    ("x = 1", "at least one"),
    ('[[level]]\nname = "purple"\nany = ["a >= 1"]', "name must be"),
    ('[[level]]\nname = "red"\nany = ["windows.5m.calls ~ 1"]', "expected"),
    ('[[level]]\nname = "red"\nany = ["windows.5m.calls >= many"]', "not a number"),
])
def test_bad_rules_are_refused_clearly(text, msg):
    with pytest.raises(RulesError, match=msg):
        parse_rules(text)


def test_custom_rules_file(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[[level]]\nname = "yellow"\nany = ["windows.15m.calls >= 1"]\n')
    assert load_rules(p).level(doc(calls15=1)) == "yellow"
    assert load_rules(p).level(doc(p1=0, calls15=0)) == "green"


def test_worker_refuses_a_bad_rules_file_at_start_with_a_clear_message(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "rules.toml"
    bad.write_text('[[level]]\nname = "purple"\nany = ["windows.5m.calls >= 1"]\n')
    env = {"ZONEWATCH_RULES": str(bad), "ZONEWATCH_KAFKA": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "zonewatch.cli", "worker"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "level #1 name must be yellow, orange or red, got 'purple'" in out.stderr
    assert "Traceback" not in out.stderr
