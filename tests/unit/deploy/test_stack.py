"""deploy/stack.py runs as a script with the system python (no .venv, no site-packages) and imports
deploy/procs.py both that way and as the `deploy.stack` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deploy import procs, stack

REPO = Path(__file__).resolve().parents[3]


def test_stack_runs_as_a_script_without_site_packages(tmp_path):
    # -S: no site-packages (the installed project is not importable), -I: no PYTHONPATH, no cwd
    out = subprocess.run([sys.executable, "-S", "-I", str(REPO / "deploy" / "stack.py"), "status",
                          "--dir", str(tmp_path / "state")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.splitlines() == ["kafka: stopped", "redis: stopped"], out.stderr
    assert out.returncode == 3   # nothing running


def test_stack_imported_as_a_module_shares_the_process_helper():
    assert stack.procs is procs
    assert set(stack.SERVICES) == {"kafka", "redis"}


def test_stop_service_of_a_stopped_stack_only_removes_a_stale_pid_file(tmp_path, capsys):
    (tmp_path / "redis.pid").write_text("999999999\n")   # above pid_max: never a live process
    stack.stop_service("redis", tmp_path)
    assert not (tmp_path / "redis.pid").exists()
    assert capsys.readouterr().out == "redis: not running (stale pid file redis.pid)\n"
