"""streams/app.py builds each process from its TOPOLOGY table: per `--role`, the Faust app runs
exactly the steps written here by hand (tasks for the life of the process, timers every so often),
each bound to the process's one Worker. No Kafka or Redis: building the app connects to nothing."""

from __future__ import annotations

import inspect

import pytest

from contract.settings import Settings
from streams.app import create_app
from tests import scenario

# role -> {step: "task" | "timer"}, written apart from the table
EXPECTED = {
    "all": {"ingest": "task", "forget": "timer", "zone_state": "task", "flusher": "task", "tick": "timer",
            "lag": "timer"},
    "ingest": {"ingest": "task", "forget": "timer", "lag": "timer"},
    "state": {"zone_state": "task", "flusher": "task", "tick": "timer", "lag": "timer"},
}


def steps(app) -> dict[str, str]:
    """The app's tasks by name: a task wraps the Worker's bound method itself, a timer wraps Faust's
    loop around it."""
    out = {}
    for wrapped in app._app_tasks:
        inner = wrapped.__wrapped__
        kind = "task" if inspect.ismethod(inner) else "timer"
        out[wrapped.__qualname__.removeprefix("Worker.")] = kind
    return out


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_runs_its_steps_and_no_other(role, tmp_path, monkeypatch):
    monkeypatch.setenv("ZONEWATCH_DATADIR", str(tmp_path))
    app = create_app(Settings(zones=scenario.ZONES_FILE), web_port=0, role=role)
    assert steps(app) == EXPECTED[role]
    workers = {w.__wrapped__.__self__ for w in app._app_tasks if inspect.ismethod(w.__wrapped__)}
    assert len(workers) == 1 and app.zonewatch_stage is next(iter(workers)).stage


def test_an_unknown_role_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZONEWATCH_DATADIR", str(tmp_path))
    with pytest.raises(ValueError, match="role 'both'"):
        create_app(Settings(zones=scenario.ZONES_FILE), web_port=0, role="both")
