"""requirements.lock is in step with pyproject.toml: every pinned direct dependency (runtime and the
test extra) has the same version in the lock, and the lock pins everything it lists. After editing
pyproject.toml's dependencies run `make lock` (docs/OPERATIONS.md "What ships, and how it is checked")."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.conftest import REPO

LOCK = REPO / "requirements.lock"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)(\s*;.*)?", line)
        assert m, f"requirements.lock: {line!r} is not an exact pin"
        pins[_norm(m.group(1).split("[")[0])] = m.group(2)
    return pins


def test_every_direct_dependency_is_locked_at_its_pinned_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + project["optional-dependencies"]["test"]
    locked = _locked()
    for req in direct:
        name, _, version = req.partition("==")
        assert version, f"{req}: pin direct dependencies exactly"
        got = locked.get(_norm(name))
        assert got == version.strip(), f"{name}: pyproject {version}, lock {got}"


def test_the_lock_covers_the_transitive_dependencies():
    locked = _locked()
    # Faust's own dependencies float unless locked (issue 15): a few of them, by name
    assert {"mode-streaming", "aiohttp", "yarl", "croniter"} <= set(locked)
    assert "--extra test" in LOCK.read_text().splitlines()[1]
