"""Start a process and stop it with grace: the one helper behind the stack's servers, the demo, the
bench, the soak, the chaos harness and the integration tests.

A child runs in its own session, so a terminal's Ctrl-C reaches only its parent and everything it
spawns shares one process group (group id = the child's pid) that can be signalled at once. Its
stdout and stderr go to a log file (appended, or written afresh). Stopping is always the same:
SIGTERM to the group, `grace` seconds for it to leave, then SIGKILL to the group. `kill()` is the
chaos variant (SIGKILL at once, as `kill -9` would).

A server started by another process (the stack's Kafka and Redis, known only by their pid files)
is stopped the same way, but only after checking that the pid still runs the program we started
(its command line holds a marker), so a reused pid is never signalled.

Stdlib only: deploy/stack.py imports it with the system python before .venv exists.

    child = Child("worker", [sys.executable, "-m", "zonewatch.cli", "worker"], log_path).start()
    child.poll()          # None while it runs
    child.stop(grace=15)  # SIGTERM, 15 s, SIGKILL; returns the exit code
    child.tail(40)        # the last lines of its log
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

STOP_GRACE_S = 15.0
#: after SIGKILL: how long to wait for the kernel to take the process away
KILL_WAIT_S = 10.0

# Popen objects of the children of this process, by pid: `alive()` polls them (a child that exited
# stays a zombie until it is waited for, and a zombie still answers os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _say_nothing(_msg: str) -> None:
    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a child to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess in its own session, logging to `log_path`."""

    def __init__(self, name: str, argv: list[str], log_path: Path | str, *, env: Mapping[str, str] | None = None,
                 cwd: Path | str | None = None, append: bool = True, banner: bool = False):
        self.name, self.argv, self.log_path = name, list(argv), Path(log_path)
        self.env, self.cwd, self.append, self.banner = env, cwd, append, banner
        self.proc: subprocess.Popen | None = None
        self.log_offset = 0          # where this run's part of an appended log starts
        self.stopped_rc: int | None = None

    def start(self) -> Child:
        """Start it; `banner` writes a `=== time command` line into the log first. Returns self."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab" if self.append else "wb") as log:
            self.log_offset = log.tell()
            if self.banner:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
                log.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=None if self.env is None else dict(self.env),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _CHILDREN[self.proc.pid] = self.proc
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def poll(self) -> int | None:
        """None while it runs, else its exit code."""
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.wait(timeout)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the child's process group (the child and whatever it started)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)   # own session: process group id == pid

    def stop(self, grace: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> int | None:
        """`sig` (SIGTERM) to the group, up to `grace` seconds, then SIGKILL. Returns the exit code."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            self.signal_group(sig)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                p.wait(timeout=KILL_WAIT_S)
        # whatever the leader left behind in its group goes too
        self.signal_group(signal.SIGKILL)
        _CHILDREN.pop(p.pid, None)
        self.stopped_rc = p.returncode
        return p.returncode

    def kill(self) -> int | None:
        """`kill -9` of the whole group (crash tests); returns the exit code."""
        return self.stop(grace=KILL_WAIT_S, sig=signal.SIGKILL)

    def tail(self, n: int = 40) -> list[str]:
        """The last `n` lines of the log."""
        return tail(self.log_path, n)


def start(name: str, argv: list[str], log_path: Path | str, **kw) -> Child:
    """`Child(...).start()`."""
    return Child(name, argv, log_path, **kw).start()


def tail(path: Path | str, n: int = 40) -> list[str]:
    """The last `n` lines of a text file ([] when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=n)]
    except OSError:
        return []


# --- processes known by pid (servers started by another process) --------------------------------


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return True


def ours(pid: int | None, marker: str) -> bool:
    """The pid is alive and its command line contains `marker` (guards against pid reuse)."""
    if not pid:
        return False
    return alive(pid) and any(marker in a for a in cmdline(pid))


def _signal_pid(pid: int, sig: int) -> None:
    """To the process group when `pid` leads one (started by Child), else to the process alone."""
    try:
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_pid(pid: int, grace: float = STOP_GRACE_S, name: str = "process",
             say: Callable[[str], None] = _say_nothing) -> None:
    """Stop a process known by its pid: SIGTERM (to its group), up to `grace` s, then SIGKILL."""
    if alive(pid):
        _signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            say(f"{name}: pid {pid} still running after {grace:.0f} s, sending SIGKILL")
            _signal_pid(pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_WAIT_S
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def stop_pid_file(pid_file: Path, marker: str, grace: float = STOP_GRACE_S, name: str = "process",
                  say: Callable[[str], None] = _say_nothing) -> None:
    """Stop the process a pid file names, if it is still ours (`marker` in its command line);
    the pid file is removed in every case."""
    pid_file = Path(pid_file)
    pid = read_pid(pid_file)
    if pid is None:
        say(f"{name}: not running")
    elif ours(pid, marker):
        say(f"{name}: stopping pid {pid} …")
        stop_pid(pid, grace, name, say)
        say(f"{name}: stopped")
    else:
        say(f"{name}: not running (stale pid file {pid_file.name})")
    pid_file.unlink(missing_ok=True)
