"""The bundled scenarios as pure event generators (no Kafka, no clock): `scenario_events(seed,
scenario=...)` yields (topic, record) pairs in non-decreasing `ts` order, a pure function of the
seed, the scenario, its parameters and the start time.

    engine.py     what every scenario shares: frame, units and their legs, dispatch, alerts, the loop
    venue.py      `demo` (the default): the Zhengzhou Olympic Sports Center and its patrol grid
    marathon.py   `marathon`: the Lanzhou marathon course along the Yellow River
    health.py     camera status reports, cameras that go silent or offline, units that go quiet
    duty.py       with a duty plan: units keeping its posts, sweeps past its checkpoints, an operator
    plans.py      the duty plans of the bundled scenarios (contract/data/plans/)

`zonewatch simulate` (connectors/simulate.py) paces these events onto Kafka and tells the story;
the benchmark and the chaos runs use them directly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from contract.plan import Plan

from .duty import DutyLayer
from .engine import Simulation, malformed
from .health import Health
from .marathon import MarathonScenario, write_marathon_zones
from .venue import VenueScenario, write_demo_zones

#: --scenario NAME -> the scenario
SCENARIOS: dict[str, type[Simulation]] = {"demo": VenueScenario, "marathon": MarathonScenario}
#: scenarios whose camera status reports, silences and quiet units are on unless asked otherwise;
#: the demo's events stay exactly what they were before the health reports existed
HEALTH_BY_DEFAULT = {"demo": False, "marathon": True}
#: --write-zones: the zones file of each scenario
ZONES_WRITERS = {"demo": write_demo_zones, "marathon": write_marathon_zones}

__all__ = ["SCENARIOS", "HEALTH_BY_DEFAULT", "ZONES_WRITERS", "Health", "MarathonScenario", "Simulation",
           "VenueScenario", "make", "scenario_events", "write_demo_zones", "write_marathon_zones"]


def make(seed: int = 7, *, scenario: str = "demo", **params) -> Simulation:
    """The scenario `scenario` (see SCENARIOS) with `params` (units, cameras, calls_per_min,
    alerts_per_min, start_ms, duration_s; None = the scenario's default)."""
    try:
        cls = SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}") from None
    return cls(seed, **params)


def scenario_events(seed: int = 7, *, scenario: str = "demo", units: int | None = None,
                    cameras: int | None = None, calls_per_min: float | None = None,
                    alerts_per_min: float | None = None, start_ms: int | None = None,
                    duration_s: float | None = None, bad_rate: float = 0.0, health: bool | None = None,
                    plan: Plan | None = None, phase_after_s: float | None = None,
                    ) -> Iterator[tuple[str, dict | bytes]]:
    """The scenario as (topic, record) pairs in non-decreasing `ts` order (topic names unprefixed).

    Deterministic for (seed, scenario, start_ms, parameters). `duration_s=None` never ends. With
    `health` (default: HEALTH_BY_DEFAULT), camera status reports join the stream and some cameras go
    silent or report themselves offline, and some units go quiet (health.py). With `bad_rate` > 0,
    after an event and with that probability, a malformed copy follows (a dict with a missing /
    out-of-range / mistyped field, or `bytes` that are not valid JSON). Health and malformed
    messages use random streams of their own, so the scenario's own events are the same with or
    without them (less those a silent camera or a quiet unit does not send). With a duty `plan`,
    units keeping its posts, sweeps past its checkpoints and an operator's phase change mid-run
    (`phase_after_s` after the start) join the stream (duty.py; plan.commands records among them).
    """
    sim = make(seed, scenario=scenario, units=units, cameras=cameras, calls_per_min=calls_per_min,
               alerts_per_min=alerts_per_min, start_ms=start_ms, duration_s=duration_s)
    evs = sim.events()
    if HEALTH_BY_DEFAULT[scenario] if health is None else health:
        evs = Health(sim).apply(evs)
    if plan is not None:
        evs = DutyLayer(sim, plan, phase_after_s).apply(evs)
    if not bad_rate > 0:
        yield from evs
        return
    bad_rng = random.Random(f"bad-{seed}")
    for topic, ev in evs:
        yield topic, ev
        if bad_rng.random() < bad_rate:
            yield topic, malformed(bad_rng, topic, ev)
