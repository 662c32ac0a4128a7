"""CPU time of processes from /proc (Linux): who used the cores during a bench phase.

`CpuWatch` samples utime+stime (/proc/<pid>/stat) of named process groups — a worker and every
process it started, the Kafka broker, redis-server, the bench itself — plus the machine's total
busy time (/proc/stat), so a phase can be reported as cores used per group and "other" (everything
else on the machine, e.g. other people's tests). The parse functions are pure (unit-tested).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"
TCP_ESTABLISHED = "01"


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[str, int, int]:
    """/proc/<pid>/stat -> (comm, ppid, utime + stime in clock ticks). The command name may hold
    spaces and parentheses, so the fields are counted from the last ')'."""
    lpar, rpar = text.index("("), text.rindex(")")
    comm = text[lpar + 1:rpar]
    f = text[rpar + 2:].split()
    # f[0] = state (field 3); ppid = field 4; utime = field 14; stime = field 15
    return comm, int(f[1]), int(f[11]) + int(f[12])


def parse_proc_stat_total(text: str) -> tuple[int, int]:
    """/proc/stat's first line -> (busy ticks, all ticks) over every CPU (iowait counts as idle)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            # guest time is already inside user/nice
            allt = sum(v[:8]) if len(v) >= 8 else sum(v)
            return allt - idle, allt
    raise ValueError("no 'cpu ' line in /proc/stat")


def parse_net_tcp(text: str) -> list[tuple[int, int, str, int]]:
    """/proc/net/tcp or tcp6 -> [(local port, remote port, state hex, inode)]."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        lport = int(f[1].rsplit(":", 1)[1], 16)
        rport = int(f[2].rsplit(":", 1)[1], 16)
        out.append((lport, rport, f[3], int(f[9])))
    return out


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it, from {pid: ppid}."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(children.get(p, ()))
    return out


# -- readers -------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def all_stats() -> dict[int, tuple[str, int, int]]:
    """{pid: (comm, ppid, ticks)} of every process now."""
    out = {}
    for d in PROC.iterdir():
        if d.name.isdigit():
            t = _read(d / "stat")
            if t:
                try:
                    out[int(d.name)] = parse_stat(t)
                except (ValueError, IndexError):
                    continue
    return out


def _tcp_entries() -> list[tuple[int, int, str, int]]:
    out = []
    for name in ("tcp", "tcp6"):
        t = _read(PROC / "net" / name)
        if t:
            out += parse_net_tcp(t)
    return out


def _inodes_of(pid: int) -> set[int]:
    out = set()
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (None if not found or not ours to see)."""
    inodes = {ino for lp, _rp, st, ino in _tcp_entries() if lp == port and st == TCP_LISTEN}
    if not inodes:
        return None
    for d in PROC.iterdir():
        if d.name.isdigit() and _inodes_of(int(d.name)) & inodes:
            return int(d.name)
    return None


def client_owners(server_port: int, groups: dict[str, set[int]]) -> dict[str, str]:
    """{'127.0.0.1:<port>': group name} for the TCP connections to `server_port` that the processes
    of `groups` ({name: pids}) hold: whose is each client address a MONITOR line shows."""
    by_inode = {}
    for name, pids in groups.items():
        for pid in pids:
            for ino in _inodes_of(pid):
                by_inode[ino] = name
    out = {}
    for lp, rp, st, ino in _tcp_entries():
        if rp == server_port and st == TCP_ESTABLISHED and ino in by_inode:
            out[f"127.0.0.1:{lp}"] = by_inode[ino]
    return out


class CpuWatch:
    """Samples CPU ticks of named groups of processes: {name: (pid, tree)}, where `tree` adds every
    process below pid (found anew at each sample; one that exited keeps its last ticks). A pid
    counts in the first group that claims it, so list the bench itself (tree=False) last.
    `sample()` at the moments of interest; `between(t0, t1)` gives cores used per group between the
    samples nearest those times."""

    def __init__(self, groups: dict[str, tuple[int | None, bool]]):
        self.groups = {k: v for k, v in groups.items() if v[0]}
        self.tck = clock_ticks()
        self.samples: list[tuple[float, dict[str, int], tuple[int, int]]] = []
        self._seen: dict[int, tuple[str, int]] = {}

    def add(self, name: str, pid: int | None, tree: bool = True) -> None:
        if pid:
            self.groups = {name: (pid, tree), **self.groups}

    def pids(self, name: str) -> set[int]:
        """Pids seen so far in a group."""
        return {pid for pid, (g, _t) in self._seen.items() if g == name}

    def sample(self) -> float:
        stats = all_stats()
        parents = {pid: s[1] for pid, s in stats.items()}
        claimed: set[int] = set()
        for name, (root, tree) in self.groups.items():
            for pid in (descendants(root, parents) if tree else {root}):
                if pid in stats and pid not in claimed:
                    claimed.add(pid)
                    self._seen[pid] = (name, stats[pid][2])
        totals: dict[str, int] = {name: 0 for name in self.groups}
        for name, ticks in self._seen.values():
            totals[name] = totals.get(name, 0) + ticks
        t = time.perf_counter()
        self.samples.append((t, totals, parse_proc_stat_total(_read(PROC / "stat") or "")))
        return t

    def between(self, t0: float, t1: float) -> dict | None:
        """Cores used per group between the samples nearest t0 and t1 (see cores_between)."""
        if len(self.samples) < 2:
            return None
        a = min(self.samples, key=lambda s: abs(s[0] - t0))
        b = min(self.samples, key=lambda s: abs(s[0] - t1))
        if b[0] <= a[0]:
            return None
        return cores_between(a[1], b[1], a[2], b[2], b[0] - a[0], self.tck)


def cores_between(g0: dict[str, int], g1: dict[str, int], tot0: tuple[int, int], tot1: tuple[int, int],
                  seconds: float, tck: int) -> dict:
    """Cores used per group (ticks delta / tck / seconds), the machine's busy cores, and 'other' =
    busy minus every group (never below 0)."""
    cores = {name: (g1.get(name, 0) - g0.get(name, 0)) / tck / seconds for name in g1}
    busy = (tot1[0] - tot0[0]) / tck / seconds
    mine = sum(cores.values())
    return {"seconds": seconds, "cores": cores, "machine_busy": busy, "other": max(0.0, busy - mine)}
