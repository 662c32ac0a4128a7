#!/usr/bin/env python3
"""Redis Sentinel on loopback, beside the local stack: a replica of a Redis primary and three
sentinels (`redis-server --sentinel`), started detached and stopped by the pids recorded here,
so zonewatch can be run and tested with `ZONEWATCH_REDIS=redis+sentinel://...` (docs/OPERATIONS.md
"Redis high availability (Sentinel)").

Stdlib only, like deploy/stack.py (whose redis-server lookup it uses). Functions:

    up(primary_port=6379, replica_port=6380, sentinel_ports=(26379, 26380, 26381),
       state_dir=".stack/sentinel", master="zonewatch", start_primary=False,
       down_after_ms=5000, failover_timeout_ms=10000)
        -> {"redis": "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/zonewatch/0", ...}
    down(state_dir)                     stop what up() started (the primary too, if it started it)
    master_address(sentinel_ports, master) -> (host, port) the sentinels name as primary now
    pid_on(state_dir, port) -> pid      the redis-server this module started on `port` (failover tests)

CLI:  python3 deploy/sentinel.py up [--primary-port 6379] [--replica-port 6380]
                                    [--sentinel-ports 26379,26380,26381] [--dir .stack/sentinel] [--start-primary]
      python3 deploy/sentinel.py down|status [--dir .stack/sentinel]

Without --start-primary the primary is a Redis already running on --primary-port (the one of
`make up`); with it, this module starts one. The quorum is 2 of 3 sentinels; a primary that does
not answer for `down_after_ms` is failed over to the replica. Like the stack's Redis, the replica
keeps no snapshot or AOF: a primary restarted empty before the sentinels noticed would empty the
replica too (docs/OPERATIONS.md says how production avoids that).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: its folder, not the repository, is on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy import procs, stack  # noqa: E402

HOST = stack.HOST
DEFAULT_STATE = Path(".stack") / "sentinel"
MARKER = "redis-server"
QUORUM = 2
READY_TIMEOUT = 30.0


class SentinelError(RuntimeError):
    """Sentinel could not be brought up; the message says why."""


# ------------------------------------------------------------------------------- a RESP client


def command(port: int, *args: str | int, timeout: float = 2.0):
    """One command to the Redis or sentinel on 127.0.0.1:`port`; its reply as Python values
    (an error reply raises SentinelError)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a)}\r\n".encode() + a + b"\r\n" for a in (str(x).encode() for x in args))
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(payload)
        reader = s.makefile("rb")
        return _reply(reader)


def _reply(f):
    line = f.readline()
    if not line:
        raise SentinelError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise SentinelError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(f) for _ in range(n)]
    raise SentinelError(f"unexpected reply {line[:40]!r}")


def _answers(port: int) -> bool:
    try:
        return command(port, "PING", timeout=0.5) == "PONG"
    except (OSError, SentinelError):
        return False


def _info(port: int, section: str) -> dict[str, str]:
    text = command(port, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def master_address(sentinel_ports, master: str = "zonewatch") -> tuple[str, int] | None:
    """The primary as the first answering sentinel names it now (None: no sentinel answers)."""
    for port in sentinel_ports:
        try:
            addr = command(port, "SENTINEL", "get-master-addr-by-name", master)
        except (OSError, SentinelError):
            continue
        if addr:
            return addr[0], int(addr[1])
    return None


# ----------------------------------------------------------------------------------- processes


def _state(state_dir: Path | str) -> Path:
    return stack._state(state_dir)


def _start(sdir: Path, name: str, argv: list[str], port: int) -> int:
    log = sdir / name / f"{name}.log"
    (sdir / name).mkdir(parents=True, exist_ok=True)
    stack._require_free(port, name, f"choose another port for the {name}")
    child = procs.start(name, argv, log, cwd=sdir / name)
    (sdir / f"{name}.pid").write_text(f"{child.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT
    while not _answers(port):
        if child.poll() is not None or time.monotonic() > deadline:
            procs.stop_pid(child.pid, 5, name)
            (sdir / f"{name}.pid").unlink(missing_ok=True)
            raise SentinelError(f"{name}: did not answer PING on {HOST}:{port}; last log lines:\n"
                                + "\n".join(procs.tail(log, 20)))
        time.sleep(0.05)
    return child.pid


def _redis_argv(server: str, port: int, rdir: Path) -> list[str]:
    return [server, "--port", str(port), "--bind", HOST, "--daemonize", "no", "--save", "", "--appendonly", "no",
            "--dir", str(rdir), "--protected-mode", "yes"]


def _sentinel_conf(path: Path, port: int, master: str, primary_port: int, down_after_ms: int,
                   failover_timeout_ms: int) -> None:
    # sentinels rewrite their file as they learn the topology: it is theirs, written once
    path.write_text("\n".join([
        f"port {port}", f"bind {HOST}", "daemonize no", "protected-mode no", f"dir {path.parent}",
        f"sentinel monitor {master} {HOST} {primary_port} {QUORUM}",
        f"sentinel down-after-milliseconds {master} {down_after_ms}",
        f"sentinel failover-timeout {master} {failover_timeout_ms}",
        f"sentinel parallel-syncs {master} 1", ""]))


def _wait(check, what: str, timeout: float = READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, SentinelError) as exc:
            last = exc
        if last is True:
            return
        time.sleep(0.2)
    raise SentinelError(f"{what} not within {timeout:.0f} s (last: {last!r})")


def url(sentinel_ports, master: str = "zonewatch", db: int = 0) -> str:
    return f"redis+sentinel://{','.join(f'{HOST}:{p}' for p in sentinel_ports)}/{master}/{db}"


def up(primary_port: int = 6379, replica_port: int = 6380, sentinel_ports=(26379, 26380, 26381),
       state_dir: Path | str = DEFAULT_STATE, master: str = "zonewatch", start_primary: bool = False,
       down_after_ms: int = 5000, failover_timeout_ms: int = 10000) -> dict:
    """Start the replica and the sentinels (and the primary with start_primary); wait until the
    replica is in sync and every sentinel knows the replica and the other sentinels."""
    sdir = _state(state_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    ports = [int(p) for p in sentinel_ports]
    if len(ports) < QUORUM + 1:
        raise SentinelError(f"{len(ports)} sentinels cannot fail over with quorum {QUORUM}: give three")
    server = stack._redis_server()
    started: list[str] = []
    try:
        if start_primary:
            rdir = sdir / "primary"
            rdir.mkdir(parents=True, exist_ok=True)
            _start(sdir, "primary", _redis_argv(server, primary_port, rdir), primary_port)
            started.append("primary")
        elif not _answers(primary_port):
            raise SentinelError(f"no Redis answers on {HOST}:{primary_port} to replicate (`make up` first, "
                                "or --start-primary)")
        rdir = sdir / "replica"
        rdir.mkdir(parents=True, exist_ok=True)
        _start(sdir, "replica", [*_redis_argv(server, replica_port, rdir), "--replicaof", HOST, str(primary_port)],
               replica_port)
        started.append("replica")
        _wait(lambda: _info(replica_port, "replication").get("master_link_status") == "up",
              f"replica on {replica_port} in sync with {primary_port}")
        for port in ports:
            name = f"sentinel-{port}"
            conf = sdir / name / "sentinel.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            _sentinel_conf(conf, port, master, primary_port, down_after_ms, failover_timeout_ms)
            _start(sdir, name, [server, str(conf), "--sentinel"], port)
            started.append(name)
        for port in ports:
            _wait(lambda p=port: int(_pairs(command(p, "SENTINEL", "master", master))["num-other-sentinels"])
                  == len(ports) - 1 and bool(command(p, "SENTINEL", "replicas", master)),
                  f"sentinel {port} knowing the other sentinels and the replica")
    except BaseException:
        for name in reversed(started):
            procs.stop_pid_file(sdir / f"{name}.pid", MARKER, 10, name, stack._say)
        raise
    info = {"primary_port": primary_port, "replica_port": replica_port, "sentinel_ports": ports,
            "master": master, "primary_started": start_primary}
    (sdir / "sentinel.json").write_text(json.dumps(info) + "\n")
    stack._say(f"sentinel: primary {HOST}:{primary_port}, replica {HOST}:{replica_port}, sentinels "
               f"{', '.join(map(str, ports))} (master {master!r}, quorum {QUORUM})")
    return {"redis": url(ports, master), **info}


def _names(sdir: Path) -> list[str]:
    return sorted(p.stem for p in sdir.glob("*.pid"))


def down(state_dir: Path | str = DEFAULT_STATE) -> None:
    """Stop every process up() started for `state_dir`."""
    sdir = _state(state_dir)
    for name in _names(sdir):
        procs.stop_pid_file(sdir / f"{name}.pid", MARKER, 10, name, stack._say)


def pid_on(state_dir: Path | str, port: int) -> int | None:
    """The pid of the redis-server this module started for `state_dir` listening on `port`."""
    sdir = _state(state_dir)
    try:
        info = json.loads((sdir / "sentinel.json").read_text())
    except (OSError, ValueError):
        return None
    name = {info["primary_port"]: "primary", info["replica_port"]: "replica"}.get(port, f"sentinel-{port}")
    pid = procs.read_pid(sdir / f"{name}.pid")
    return pid if procs.ours(pid, MARKER) else None


def status(state_dir: Path | str = DEFAULT_STATE) -> dict:
    sdir = _state(state_dir)
    out = {}
    for name in _names(sdir):
        pid = procs.read_pid(sdir / f"{name}.pid")
        out[name] = {"pid": pid, "running": procs.ours(pid, MARKER)}
        stack._say(f"{name}: {f'running (pid {pid})' if out[name]['running'] else 'stopped'}")
    try:
        info = json.loads((sdir / "sentinel.json").read_text())
        addr = master_address(info["sentinel_ports"], info["master"])
        stack._say(f"primary per the sentinels: {addr[0]}:{addr[1]}" if addr else "no sentinel answers")
        out["primary"] = addr
    except (OSError, ValueError):
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sentinel.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("up", "down", "status"))
    p.add_argument("--primary-port", type=int, default=6379)
    p.add_argument("--replica-port", type=int, default=6380)
    p.add_argument("--sentinel-ports", default="26379,26380,26381", help="three comma-separated ports")
    p.add_argument("--master", default="zonewatch", help="the name the sentinels monitor (in the URL)")
    p.add_argument("--start-primary", action="store_true", help="start the primary too (else: replicate a "
                                                                  "running Redis, e.g. that of `make up`)")
    p.add_argument("--down-after-ms", type=int, default=5000, help="silence before a primary is failed over")
    p.add_argument("--dir", type=Path, default=DEFAULT_STATE, help="state directory (default .stack/sentinel)")
    args = p.parse_args(argv)
    try:
        if args.command == "up":
            res = up(args.primary_port, args.replica_port, [int(x) for x in args.sentinel_ports.split(",")],
                     args.dir, args.master, args.start_primary, args.down_after_ms)
            stack._say(f"ZONEWATCH_REDIS={res['redis']}")
        elif args.command == "down":
            down(args.dir)
        else:
            st = status(args.dir)
            return 0 if st and all(v["running"] for k, v in st.items() if k != "primary") else 3
    except (SentinelError, stack.StackError) as exc:
        print(f"sentinel: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
