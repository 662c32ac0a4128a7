"""The duty plan file (CONTRACT §10): the contract's own example loads as written, times without an
offset are local to the plan's time zone, and every bad plan is refused naming the entry and the
reason. Expected instants are written out in UTC by hand (Asia/Shanghai is UTC+8, no DST)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.errors import PlanError
from contract.plan import DEFAULT_ON_SCENE, load_plan, parse_plan, split_statements

EXAMPLE = Path(__file__).parent / "plan_contract_example.toml"


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_the_contracts_example_loads_as_written():
    plan = load_plan(EXAMPLE)
    assert plan.timezone == "Asia/Shanghai"
    # 05:00 / 07:30 / 13:30 in Shanghai are 21:00 (the day before), 23:30 and 05:30 UTC
    assert [(p.name, p.start, p.end) for p in plan.phases] == [
        ("临战", utc_ms(2026, 5, 9, 21, 0), utc_ms(2026, 5, 9, 23, 30)),
        ("决战", utc_ms(2026, 5, 9, 23, 30), utc_ms(2026, 5, 10, 5, 30))]
    (post,) = plan.posts
    assert (post.post_id, post.name, post.lat, post.lon, post.radius_m) == ("gate-3", "3号门", 36.06, 103.83, 50.0)
    assert post.required == {"临战": 2, "决战": 4}
    assert post.forces == ("auxiliary", "police")
    (cp,) = plan.checkpoints
    assert (cp.checkpoint_id, cp.name, cp.radius_m, cp.every_s) == ("cp-12", "12号桥", 80.0, {"决战": 900})
    assert plan.tier_requirement("course/3") == (1, 2, 3)
    assert plan.max_radius_m == 80.0


def test_an_offset_wins_over_the_plans_zone():
    plan = parse_plan('timezone = "Europe/Berlin"\n[[phase]]\nname = "a"\nfrom = "2026-05-10T05:00+00:00"\n'
                      'to = 2026-05-10T09:00:00\n')
    assert (plan.phases[0].start, plan.phases[0].end) == (utc_ms(2026, 5, 10, 5, 0), utc_ms(2026, 5, 10, 7, 0))


def test_local_times_follow_the_default_zone():
    plan = parse_plan('[[phase]]\nname = "a"\nfrom = "2026-05-10T05:00"\nto = 2026-05-10T09:00:00\n'
                      '[[post]]\nid = "p"\nlat = 1\nlon = 2\n[[checkpoint]]\nid = "c"\nlat = 1.5\nlon = 2.5\n'
                      '[[tiers]]\nzones = "gate-*"\non_scene = [2, 3, 4]\n[[tiers]]\nzones = "gate-1"\n'
                      'on_scene = [9, 9, 9]\n', default_tz="Europe/Berlin")
    assert (plan.phases[0].start, plan.phases[0].end) == (utc_ms(2026, 5, 10, 3, 0), utc_ms(2026, 5, 10, 7, 0))
    post, cp = plan.posts[0], plan.checkpoints[0]
    assert (post.name, post.radius_m, post.required, post.forces) == \
        ("p", 100.0, {}, ("auxiliary", "police", "security", "volunteer"))
    assert (cp.name, cp.radius_m, cp.every_s) == ("c", 100.0, {})
    assert plan.tier_requirement("gate-1") == (2, 3, 4)      # the first matching entry wins
    assert plan.tier_requirement("course/1") == DEFAULT_ON_SCENE


def test_statements_split_at_semicolons_outside_strings_and_brackets():
    text = 'a = "x; y"; b = 1 # c; d\ne = [1, 2]; f = { g = 1 }\nh = """m;\nn"""; i = 2\n'
    split, lines = split_statements(text)
    assert split == 'a = "x; y"\n b = 1 # c; d\ne = [1, 2]\n f = { g = 1 }\nh = """m;\nn"""\n i = 2\n'
    assert lines == [1, 1, 2, 2, 3, 4, 4, 5]


GOOD_PHASE = '[[phase]]\nname = "决战"\nfrom = "2026-05-10T07:30"\nto = "2026-05-10T13:30"\n'
POST = '[[post]]\nid = "gate-3"\nlat = 36.06\nlon = 103.83\n'
CP = '[[checkpoint]]\nid = "cp-12"\nlat = 36.07\nlon = 103.85\n'


@pytest.mark.parametrize("text, message", [
    ('a = 1\nb = = 2\n', "not valid TOML"),
    ('x = 1; y =\n', "(line 1)"),                                  # the line of the file, not of the split text
    ('phases = []\n', "unknown key 'phases'"),
    ('timezone = "Mars/Olympus"\n', "timezone 'Mars/Olympus' is not an IANA time zone"),
    ('timezone = 8\n', "timezone must be a string"),
    ('[phase]\nname = "a"\n', "`phase` must be an array of tables"),
    ('[[phase]]\nfrom = "2026-05-10T05:00"\nto = "2026-05-10T06:00"\n', "[[phase]] #1: name must be"),
    ('[[phase]]\nname = "a"\nto = "2026-05-10T06:00"\n', "phase 'a': missing `from`"),
    ('[[phase]]\nname = "a"\nfrom = "tomorrow"\nto = "2026-05-10T06:00"\n', "phase 'a': `from` = 'tomorrow' is not"),
    ('[[phase]]\nname = "a"\nfrom = 2026-05-10\nto = "2026-05-10T06:00"\n',
     "phase 'a': `from` is a date without a time"),
    ('[[phase]]\nname = "a"\nfrom = "2026-05-10T06:00"\nto = "2026-05-10T06:00"\n', "phase 'a': `to`"),
    ('[[phase]]\nname = "a"\nfrom = "2026-05-10T05:00"\nto = "2026-05-10T07:00"\nuntil = 1\n',
     "phase 'a': unknown key 'until'"),
    (GOOD_PHASE + '[[phase]]\nname = "临战"\nfrom = "2026-05-10T05:00"\nto = "2026-05-10T07:31"\n',
     "phase '决战' (from 2026-05-10T07:30+08:00) overlaps phase '临战'"),
    (POST.replace('id = "gate-3"', 'id = " gate-3"'), "post ' gate-3': id must be"),
    (POST.replace('id = "gate-3"', 'id = 3'), "[[post]] #1: id must be"),
    (POST.replace('lat = 36.06\n', ''), "post 'gate-3': missing lat"),
    (POST.replace('lat = 36.06', 'lat = 91'), "post 'gate-3': lat 91 out of range"),
    (POST.replace('lon = 103.83', 'lon = "103"'), "post 'gate-3': lon must be a number"),
    (POST.replace('lon = 103.83', 'lon = nan'), "post 'gate-3': lon must be a number"),
    (POST + 'radius_m = 0\n', "post 'gate-3': radius_m 0 must be more than 0"),
    (POST + 'radius_m = 1500\n', "post 'gate-3': radius_m 1500 must be more than 0 and at most 1000"),
    (GOOD_PHASE + POST + 'required = { "临战" = 2 }\n', "post 'gate-3': required names phase '临战', which no"),
    (GOOD_PHASE + POST + 'required = { "决战" = -1 }\n', "post 'gate-3': required.决战 = -1 must be"),
    (GOOD_PHASE + POST + 'required = { "决战" = true }\n', "post 'gate-3': required.决战 = True must be"),
    (GOOD_PHASE + POST + 'required = { "决战" = 2.0 }\n', "post 'gate-3': required.决战 = 2.0 must be"),
    (GOOD_PHASE + POST + 'required = 4\n', "post 'gate-3': required must be a table"),
    (POST + 'force = ["police", "army"]\n', "post 'gate-3': force 'army' is not one of"),
    (POST + 'force = []\n', "post 'gate-3': force must be a non-empty list"),
    (POST + 'force = "police"\n', "post 'gate-3': force must be a non-empty list"),
    (POST + 'name = ""\n', "post 'gate-3': name must be"),
    (POST + 'staff = 3\n', "post 'gate-3': unknown key 'staff'"),
    (POST + POST, "post 'gate-3': the id is used by another post"),
    (POST + CP.replace("cp-12", "gate-3"), "checkpoint 'gate-3': the id is used by another post"),
    (GOOD_PHASE + CP + 'every_s = { "决战" = 0 }\n', "checkpoint 'cp-12': every_s.决战 = 0 must be"),
    (GOOD_PHASE + CP + 'every_s = { "一级" = 60 }\n', "checkpoint 'cp-12': every_s names phase '一级'"),
    (CP + 'radius_m = -5\n', "checkpoint 'cp-12': radius_m -5 must be"),
    ('[[tiers]]\non_scene = [1, 2, 3]\n', "[[tiers]] #1: zones must be"),
    ('[[tiers]]\nzones = "course/*"\non_scene = [1, 2]\n', "tiers 'course/*': on_scene must be three"),
    ('[[tiers]]\nzones = "course/*"\non_scene = [1, 2, -3]\n', "tiers 'course/*': on_scene must be three"),
])
def test_a_bad_plan_is_refused_naming_the_entry_and_the_reason(text, message):
    with pytest.raises(PlanError) as err:
        parse_plan(text, source="p.toml")
    assert message in str(err.value), str(err.value)
    assert str(err.value).startswith("plan p.toml: ")


def test_an_unreadable_file_is_refused(tmp_path):
    with pytest.raises(PlanError, match="cannot read it"):
        load_plan(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b'[[post]]\nid = "caf\xe9"\n')
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(tmp_path / "latin1.toml")
