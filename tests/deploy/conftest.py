"""Fixtures of the operations tests: the tools of deploy/tools.py (built once into the stack cache,
ZONEWATCH_STACK_CACHE) and the real Kafka + Redis stack of the integration tests.

A tool that cannot be built is a failure with the build's message, never a skip.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import deployment, stack  # noqa: F401  (the shared real stack)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def load_tools():
    """deploy/tools.py (stdlib, not a package), loaded by path once."""
    if "zonewatch_tools" not in sys.modules:
        spec = importlib.util.spec_from_file_location("zonewatch_tools", DEPLOY / "tools.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
    return sys.modules["zonewatch_tools"]


def tool(name: str) -> Path:
    """The cached binary of `name`; builds it if needed; fails the test (with why) if it cannot."""
    tools = load_tools()
    try:
        return tools.ensure(name, quiet=True)
    except tools.ToolError as exc:
        pytest.fail(f"cannot build {name}: {exc}", pytrace=False)


def promql_signals(exprs: list[str]) -> list[dict]:
    """deploy/tools/promsignals on `exprs`: per expression its signals and selectors (or error)."""
    out = subprocess.run([str(tool("promsignals"))], input=json.dumps(exprs), capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def load_yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


PACKAGES = ("contract", "connectors", "streams", "gateway", "zonewatch")


def project_env_vars() -> set[str]:
    """Every ZONEWATCH_* name the project's code mentions (contract/settings.py reads most; the worker
    and gateway read a few themselves), plus NAME_FILE for each secret that may come from a file."""
    import re

    from contract import settings

    names: set[str] = {v for _name, d, _default in settings.declared() for v in d.variables}
    for pkg in PACKAGES:
        for py in (REPO / pkg).rglob("*.py"):
            text = py.read_text()
            names |= set(re.findall(r"\bZONEWATCH_[A-Z0-9_]*[A-Z0-9]\b", text))
    return names


def unknown_env_vars(names) -> list[str]:
    known = project_env_vars()
    return sorted(n for n in names if n.startswith("ZONEWATCH_") and n not in known)


def cli_refusal(argv: list[str]) -> str | None:
    """None when `zonewatch <argv>` parses with the real command table; else argparse's message."""
    import contextlib
    import io

    from zonewatch.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "refused"
    return None


def load_stack():
    """deploy/stack.py, loaded by path (stdlib, like the integration fixtures do)."""
    if "zonewatch_stack_for_deploy_tests" not in sys.modules:
        spec = importlib.util.spec_from_file_location("zonewatch_stack_for_deploy_tests", DEPLOY / "stack.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["zonewatch_stack_for_deploy_tests"]
