"""deploy/procs.py: real subprocesses started, polled, stopped with grace, killed, found by pid file."""

from __future__ import annotations

import os
import signal
import sys
import time

from deploy import procs
from deploy.procs import Child

PY = sys.executable
# a child that says it is ready, then sleeps; on SIGTERM it leaves with exit code 3
POLITE = ("import signal, sys, time\n"
          "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
          "print('ready', flush=True)\n"
          "time.sleep(600)\n")
# a child that ignores SIGTERM
STUBBORN = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")
# a child that starts a grandchild (same process group) and prints its pid
PARENT = ("import subprocess, sys, time\n"
          "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
          "print(g.pid, flush=True)\n"
          "time.sleep(600)\n")


def wait_for(check, timeout=30.0):
    """Liveness bound for a child to get going (not a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("child did not get going")


def test_child_runs_in_its_own_session_logs_and_stops_with_sigterm(tmp_path):
    log = tmp_path / "logs" / "polite.log"
    c = Child("polite", [PY, "-c", POLITE], log).start()
    try:
        assert c.poll() is None
        wait_for(lambda: c.tail(5) == ["ready"])
        assert os.getsid(c.pid) == c.pid and os.getpgid(c.pid) == c.pid   # own session and group
        assert os.getsid(c.pid) != os.getsid(0)
        assert procs.alive(c.pid)
    finally:
        rc = c.stop(grace=30)
    assert rc == 3 == c.returncode == c.stopped_rc   # it left by its SIGTERM handler
    assert not procs.alive(c.pid)
    assert c.stop() == 3   # stopping twice is harmless


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    c = Child("stubborn", [PY, "-c", STUBBORN], tmp_path / "s.log").start()
    wait_for(lambda: c.tail(1) == ["ready"])
    assert c.stop(grace=0.5) == -signal.SIGKILL


def test_stop_takes_the_whole_process_group(tmp_path):
    c = Child("parent", [PY, "-c", PARENT], tmp_path / "p.log").start()
    grandchild = int(wait_for(lambda: c.tail(1) and c.tail(1)[0]))
    assert os.getpgid(grandchild) == c.pid
    c.stop(grace=30)
    wait_for(lambda: not procs.alive(grandchild))


def test_kill_is_kill_9(tmp_path):
    c = Child("polite", [PY, "-c", POLITE], tmp_path / "k.log").start()
    wait_for(lambda: c.tail(1) == ["ready"])
    assert c.kill() == -signal.SIGKILL   # the SIGTERM handler never ran


def test_log_is_appended_with_a_banner_or_written_afresh(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("earlier run\n")
    c = procs.start("echo", [PY, "-c", "print('hello')"], log, banner=True)
    c.wait(30)
    assert c.log_offset == len("earlier run\n")
    lines = procs.tail(log, 10)
    assert lines[0] == "earlier run" and lines[-1] == "hello"
    assert lines[-2].startswith("=== ") and "print('hello')" in lines[-2]
    c = procs.start("echo", [PY, "-c", "print('again')"], log, append=False)
    c.wait(30)
    assert procs.tail(log) == ["again"] and c.log_offset == 0


def test_env_and_cwd_reach_the_child(tmp_path):
    env = dict(os.environ, PROCS_TEST="42")
    c = procs.start("env", [PY, "-c", "import os; print(os.environ['PROCS_TEST'], os.getcwd())"],
                    tmp_path / "e.log", env=env, cwd=tmp_path)
    assert c.wait(30) == 0
    assert procs.tail(c.log_path) == [f"42 {tmp_path}"]


def test_tail_of_a_missing_file_is_empty(tmp_path):
    assert procs.tail(tmp_path / "nope.log") == []
    assert Child("x", ["true"], tmp_path / "never.log").poll() is None   # not started


def test_stop_pid_file_stops_only_our_process_and_removes_the_file(tmp_path):
    said = []
    c = Child("server", [PY, "-c", STUBBORN, "marker-xyz"], tmp_path / "server.log").start()
    wait_for(lambda: c.tail(1) == ["ready"])
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{c.pid}\n")
    assert procs.read_pid(pid_file) == c.pid
    assert procs.ours(c.pid, "marker-xyz") and not procs.ours(c.pid, "redis-server")

    # a pid file whose process has another command line (a reused pid) is stale: nothing is signalled
    procs.stop_pid_file(pid_file, "redis-server", grace=5, name="redis", say=said.append)
    assert said == ["redis: not running (stale pid file server.pid)"]
    assert not pid_file.exists() and c.poll() is None

    pid_file.write_text(f"{c.pid}\n")
    said.clear()
    procs.stop_pid_file(pid_file, "marker-xyz", grace=0.5, name="server", say=said.append)
    assert said == [f"server: stopping pid {c.pid} …",
                    f"server: pid {c.pid} still running after 0 s, sending SIGKILL", "server: stopped"]
    assert not pid_file.exists()
    assert c.wait(10) == -signal.SIGKILL and not procs.alive(c.pid)

    said.clear()
    procs.stop_pid_file(pid_file, "marker-xyz", name="server", say=said.append)   # no pid file at all
    assert said == ["server: not running"]


def test_read_pid_of_garbage_is_none(tmp_path):
    (tmp_path / "x.pid").write_text("not a pid\n")
    assert procs.read_pid(tmp_path / "x.pid") is None
    assert procs.read_pid(tmp_path / "missing.pid") is None
    assert not procs.ours(None, "anything")
