"""The bundled duty plans (contract/data/plans/): each is the generator's output for its fixed start,
loads as a valid plan, and puts its posts where the scenario's zones say they are."""

from __future__ import annotations

import pytest
from shapely.geometry import Point

from connectors.scenario.plans import BUNDLED_START_MS, plan_toml
from contract.plan import load_plan, parse_plan
from contract.settings import DATA_DIR, DEMO_ZONES
from contract.zones import load_zones

PLANS = DATA_DIR / "plans"


@pytest.mark.parametrize("scenario", ["demo", "marathon"])
def test_the_bundled_plan_is_the_generators_output(scenario):
    assert (PLANS / f"{scenario}.toml").read_text(encoding="utf-8") == plan_toml(scenario, BUNDLED_START_MS[scenario])


def test_the_marathon_plan_posts_the_27_emergency_points_and_sweeps_the_course():
    plan = load_plan(PLANS / "marathon.toml")
    zones = {z.zone_id: z for z in load_zones(DATA_DIR / "marathon_zones.geojson")}
    aid = [p for p in plan.posts if p.post_id.startswith("aid-")]
    assert len(aid) == 27
    for p in aid:  # the post is the emergency point zone's centre, to the metre
        z = zones[p.post_id]
        assert z.center is not None
        assert abs(z.center[0] - p.lat) < 1e-5 and abs(z.center[1] - p.lon) < 1e-5, p.post_id
    assert {p.post_id for p in plan.posts} >= {f"gate-{k}" for k in range(1, 5)}
    assert len([c for c in plan.checkpoints if c.checkpoint_id.startswith("sweep-")]) == 14
    course = [z for z in zones.values() if z.route_id == "course"]
    for c in plan.checkpoints:   # on the course
        assert any(z.geometry.contains(Point(c.lon, c.lat)) for z in course), c.checkpoint_id
    # the gun at 07:30 local (23:30 UTC the day before): the race is 决战
    assert [(p.name, p.start) for p in plan.phases][1] == ("决战", 1_778_369_400_000)


def test_the_demo_plan_puts_gates_on_the_venue_ring():
    plan = load_plan(PLANS / "demo.toml")
    zones = {z.zone_id: z for z in load_zones(DEMO_ZONES)}
    for p in plan.posts:
        if p.post_id.startswith("gate-"):
            pt = Point(p.lon, p.lat)
            assert zones["venue-inner"].geometry.contains(pt) and not zones["venue-core"].geometry.contains(pt)


def test_a_plan_for_any_start_is_valid():
    for scenario in ("demo", "marathon"):
        plan = parse_plan(plan_toml(scenario, 1_700_000_000_000))
        assert plan.phases and plan.posts and plan.checkpoints
