"""`zonewatch plan check FILE` (CONTRACT §8): prints the plan, or refuses it with exit 2 and the
entry and the reason on stderr."""

from __future__ import annotations

from pathlib import Path

from zonewatch.cli import main

EXAMPLE = Path(__file__).parents[1] / "contract" / "plan_contract_example.toml"


def test_check_prints_phases_posts_checkpoints_and_tiers(capsys):
    assert main(["plan", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"plan {EXAMPLE}: OK (timezone Asia/Shanghai)"
    assert out[1:4] == ["phases (2):", "  临战       2026-05-10 05:00 -> 2026-05-10 07:30",
                        "  决战       2026-05-10 07:30 -> 2026-05-10 13:30"]
    assert out[4] == "posts (1):"
    assert out[5] == ("  gate-3         3号门  (36.060000, 103.830000) r 50 m; required: 临战 2, 决战 4; "
                      "forces: auxiliary, police")
    assert out[6:8] == ["checkpoints (1):",
                        "  cp-12          12号桥  (36.070000, 103.850000) r 80 m; every: 决战 900 s"]
    assert out[8:] == ["tiers (1; elsewhere 1/2/3):", "  course/*       on scene by 1/3/5 min: 1/2/3"]


def test_a_bad_plan_exits_2_naming_the_entry(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace('"决战" = 4', '"决战" = -4'), encoding="utf-8")
    assert main(["plan", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"zonewatch plan: plan {bad}: post 'gate-3': required.决战 = -4 must be a whole number 0..10000\n"
