#!/usr/bin/env python3
"""The local zonewatch stack without Docker: one Kafka broker (KRaft, combined mode) and one Redis,
both on 127.0.0.1, both started detached and stopped by the pids recorded here.

Stdlib only. Used by the Makefile (`make up` / `make down`) and by the integration tests, which load
this file by path and call the functions:

    up(kafka_port=9092, redis_port=6379, state_dir=Path(".stack"))
        -> {"kafka": "127.0.0.1:9092", "redis": "redis://127.0.0.1:6379/0"}
    down(state_dir=Path(".stack"), wipe=False)
    status(state_dir=Path(".stack")) -> dict

CLI:  python3 deploy/stack.py up|down|status [--kafka-port 9092] [--redis-port 6379] [--dir .stack]
      python3 deploy/stack.py down --wipe      (also deletes the Kafka and Redis data of that dir)

Layout (a relative state dir is taken relative to the repository root, not the current directory):
    <state>/stack.json                       ports of the last `up`
    <state>/kafka.pid, <state>/redis.pid     pids of the processes this module started
    <state>/kafka/server.properties, log4j2.properties, cluster.id, data/, logs/server.log
    <state>/redis/redis.log
    <repo>/.stack/kafka-<version>/libs       broker jars from Maven Central (shared by every state dir;
                                             ZONEWATCH_STACK_CACHE overrides <repo>/.stack)

Kafka data is kept across up/down (formatted once); `down --wipe` deletes it. Environment knobs:
ZONEWATCH_KAFKA_VERSION (default 4.4.0), ZONEWATCH_STACK_TIMEOUT (readiness timeout, default 90 s).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POM = REPO / "deploy" / "kafka" / "pom.xml"
KAFKA_VERSION = os.environ.get("ZONEWATCH_KAFKA_VERSION", "4.4.0")
HOST = "127.0.0.1"
DEFAULT_STATE = Path(".stack")
READY_TIMEOUT = float(os.environ.get("ZONEWATCH_STACK_TIMEOUT", "90"))
KAFKA_STARTED_MARKERS = ("Kafka Server started", "started (kafka.server.KafkaRaftServer)")

# Popen objects of children started by this process (so down() in the same process can reap them).
_CHILDREN: dict[int, subprocess.Popen] = {}


class StackError(RuntimeError):
    """The stack could not be brought to the requested state; the message says why."""


def _say(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------- paths


def _state(state_dir: Path | str) -> Path:
    p = Path(state_dir).expanduser()
    return (p if p.is_absolute() else REPO / p).resolve()


def _cache_root() -> Path:
    env = os.environ.get("ZONEWATCH_STACK_CACHE")
    return Path(env).expanduser().resolve() if env else REPO / ".stack"


def kafka_libs_dir(version: str = KAFKA_VERSION) -> Path:
    return _cache_root() / f"kafka-{version}" / "libs"


# ------------------------------------------------------------------------------------- processes


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _alive(pid: int) -> bool:
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


def _ours(pid: int | None, marker: str) -> bool:
    """The pid is alive and its command line contains `marker` (guards against pid reuse)."""
    return bool(pid) and _alive(pid) and any(marker in a for a in _cmdline(pid))


def _spawn(argv: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CLASSPATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS")}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _stop_pid(pid: int, name: str, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        _say(f"{name}: pid {pid} still running after {timeout:.0f} s, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# ----------------------------------------------------------------------------------------- ports


def _connectable(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _port_owner(port: int) -> str:
    """Best effort: 'pid N (cmd…)' of the process listening on the port, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return "an unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = " ".join(_cmdline(int(proc.name)))
                    return f"pid {proc.name} ({cmd[:100]})"
        except OSError:
            continue
    return "an unknown process"


def _require_free(port: int, what: str, hint: str) -> None:
    if _connectable(port) or not _bindable(port):
        owner = _port_owner(port)
        if "redis-server" in owner and "/etc/redis" in owner or (what == "redis" and port == 6379):
            hint += "; a system redis started by the Debian package stops with `service redis-server stop`"
        raise StackError(
            f"{what}: port {HOST}:{port} is already in use by {owner}, which this stack did not "
            f"start; stop it or choose another port ({hint})"
        )


# ----------------------------------------------------------------------------------------- kafka


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def kafka_api_versions_ok(port: int, timeout: float = 2.0) -> bool:
    """Send a real Kafka ApiVersions (v0) request; True when the broker answers it."""
    client_id = b"zonewatch-stack"
    request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(s, 4))
            if not 6 <= size <= 1 << 20:
                return False
            correlation_id, error_code = struct.unpack(">ih", _recv_exact(s, size)[:6])
    except (OSError, ConnectionError, struct.error):
        return False
    # 0 = fine; 35 = UNSUPPORTED_VERSION (still a Kafka broker that processes requests)
    return correlation_id == 7 and error_code in (0, 35)


def _resolve_kafka_jars(version: str) -> Path:
    libs = kafka_libs_dir(version)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up`s at once: one resolves, the other waits
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("kafka: `mvn` (Maven) is not on PATH; it is needed once to fetch the broker jars")
        _say(f"kafka: resolving jars for Kafka {version} with Maven (once) …")
        t0 = time.monotonic()
        tmp = libs.parent / "libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        argv = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), f"-Dkafka.version={version}",
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
        ]
        res = subprocess.run(argv, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        jars = sorted(p.name for p in tmp.glob("*.jar")) if tmp.is_dir() else []
        if res.returncode != 0 or f"kafka_2.13-{version}.jar" not in jars:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StackError(
                f"kafka: Maven could not resolve Kafka {version} (exit {res.returncode}):\n"
                + (res.stdout + res.stderr)[-4000:]
            )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        marker.write_text("\n".join(jars) + "\n")
        _say(f"kafka: {len(jars)} jars in {libs} ({time.monotonic() - t0:.1f} s)")
    return libs


def _kafka_uuid() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of the 16 bytes, no padding (22 chars); like
    # Uuid.randomUuid(), never one starting with "-" (a command line would read it as an option)
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _write_kafka_config(kdir: Path, port: int) -> tuple[Path, Path]:
    data = kdir / "data"
    logs = kdir / "logs"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(
        f"""# written by deploy/stack.py; regenerated on every `up`
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{port + 1}
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{port + 1}
advertised.listeners=PLAINTEXT://{HOST}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=268435456
"""
    )
    log4j = kdir / "log4j2.properties"
    log4j.write_text(
        f"""# written by deploy/stack.py
status = warn
name = zonewatch-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {logs / 'server.log'}
appender.file.filePattern = {logs / 'server.log.%i'}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""
    )
    return props, log4j


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("kafka: `java` (17 or newer) is not on PATH")
    return java


def _format_kafka_storage(kdir: Path, libs: Path, props: Path, log4j: Path, port: int) -> None:
    data = kdir / "data"
    stamp = kdir / "formatted.json"
    if (data / "meta.properties").exists():
        try:
            formatted_port = json.loads(stamp.read_text()).get("kafka_port")
        except (OSError, ValueError):
            formatted_port = None
        if formatted_port == port:
            return
        # the controller endpoint is recorded in the bootstrap voter set: a new port needs a new log
        _say(f"kafka: data in {data} was formatted for port {formatted_port}, not {port}; reformatting")
        shutil.rmtree(data)
        data.mkdir(parents=True)
    cid_file = kdir / "cluster.id"
    cluster_id = cid_file.read_text().strip() if cid_file.exists() else ""
    if not cluster_id or cluster_id.startswith("-"):
        cluster_id = _kafka_uuid()
        cid_file.write_text(cluster_id + "\n")
    _say(f"kafka: formatting storage (cluster {cluster_id}) …")
    argv = [
        _java(), "-Xmx256m", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}",
        "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={props}", "--standalone",
    ]
    res = subprocess.run(argv, cwd=kdir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if res.returncode != 0 or not (data / "meta.properties").exists():
        raise StackError(f"kafka: storage format failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")
    stamp.write_text(json.dumps({"kafka_port": port, "cluster_id": cluster_id}) + "\n")


def _wait_kafka(pid: int, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise StackError(f"kafka: the broker (pid {pid}) exited during startup; last log lines:\n{_tail(log)}")
        if _connectable(port) and kafka_api_versions_ok(port):
            return
        time.sleep(0.25)
    raise StackError(f"kafka: no answer on {HOST}:{port} after {timeout:.0f} s; last log lines:\n{_tail(log)}")


def _up_kafka(sdir: Path, port: int, version: str) -> int:
    pid_file = sdir / "kafka.pid"
    kdir = sdir / "kafka"
    log = kdir / "logs" / "server.log"
    pid = _read_pid(pid_file)
    if _ours(pid, "kafka.Kafka"):
        running_port = _running_port(sdir, "kafka_port")
        if running_port not in (None, port):
            raise StackError(
                f"kafka: already running from {sdir} on port {running_port} (pid {pid}); "
                f"run `down --dir {sdir}` first to change the port"
            )
        _wait_kafka(pid, port, log, READY_TIMEOUT)  # returns at once if it already answers
        _say(f"kafka: already up on {HOST}:{port} (pid {pid})")
        return pid
    if pid is not None:
        pid_file.unlink(missing_ok=True)  # stale: the process is gone (or the pid was reused)
    _require_free(port, "kafka", "--kafka-port")
    _require_free(port + 1, "kafka controller", "--kafka-port; the controller uses the next port")
    libs = _resolve_kafka_jars(version)
    props, log4j = _write_kafka_config(kdir, port)
    _format_kafka_storage(kdir, libs, props, log4j, port)
    _say(f"kafka: starting Kafka {version} on {HOST}:{port} …")
    t0 = time.monotonic()
    argv = [
        _java(), "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", f"-Dkafka.logs.dir={kdir / 'logs'}", f"-Dlog4j2.configurationFile={log4j}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(props),
    ]
    proc = _spawn(argv, kdir / "logs" / "stdout.log", kdir)
    pid_file.write_text(f"{proc.pid}\n")
    try:
        _wait_kafka(proc.pid, port, log, READY_TIMEOUT)
    except StackError:
        _stop_pid(proc.pid, "kafka", 15)
        pid_file.unlink(missing_ok=True)
        raise
    _say(f"kafka: up on {HOST}:{port} (pid {proc.pid}, {time.monotonic() - t0:.1f} s)")
    return proc.pid


# ----------------------------------------------------------------------------------------- redis


def _redis_server() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
         if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError("redis: `redis-server` is not installed (on Debian: sudo apt-get install -y redis-server)")
    _say("redis: redis-server not found; installing it with apt-get …")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]):
        res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError(f"redis: `{' '.join(argv)}` failed:\n{(res.stdout + res.stderr)[-3000:]}")
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(found, os.X_OK):
        raise StackError("redis: apt-get installed redis-server but the binary was not found")
    return found


def redis_ping_ok(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _up_redis(sdir: Path, port: int) -> int:
    pid_file = sdir / "redis.pid"
    rdir = sdir / "redis"
    log = rdir / "redis.log"
    pid = _read_pid(pid_file)
    if _ours(pid, "redis-server"):
        running_port = _running_port(sdir, "redis_port")
        if running_port not in (None, port):
            raise StackError(
                f"redis: already running from {sdir} on port {running_port} (pid {pid}); "
                f"run `down --dir {sdir}` first to change the port"
            )
        if redis_ping_ok(port):
            _say(f"redis: already up on {HOST}:{port} (pid {pid})")
            return pid
    if pid is not None:
        if _ours(pid, "redis-server"):
            _stop_pid(pid, "redis", 10)  # ours but not answering: restart it
        pid_file.unlink(missing_ok=True)
    server = _redis_server()
    _require_free(port, "redis", "--redis-port")
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [
        server, "--port", str(port), "--bind", HOST, "--daemonize", "no", "--save", "", "--appendonly", "no",
        "--dir", str(rdir), "--protected-mode", "yes",
    ]
    proc = _spawn(argv, log, rdir)
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 20
    while not redis_ping_ok(port):
        if not _alive(proc.pid) or time.monotonic() > deadline:
            _stop_pid(proc.pid, "redis", 5)
            pid_file.unlink(missing_ok=True)
            raise StackError(f"redis: did not answer PING on {HOST}:{port}; last log lines:\n{_tail(log)}")
        time.sleep(0.05)
    _say(f"redis: up on {HOST}:{port} (pid {proc.pid})")
    return proc.pid


# ------------------------------------------------------------------------------------------- api


def _running_port(sdir: Path, key: str) -> int | None:
    try:
        return json.loads((sdir / "stack.json").read_text()).get(key)
    except (OSError, ValueError):
        return None


def up(kafka_port: int = 9092, redis_port: int = 6379, state_dir: Path | str = DEFAULT_STATE,
       kafka_version: str = KAFKA_VERSION) -> dict:
    """Start (or find running) Kafka and Redis for `state_dir`; return their addresses."""
    sdir = _state(state_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    with open(sdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # check every port a service still to be started needs before starting anything
        if not _ours(_read_pid(sdir / "kafka.pid"), "kafka.Kafka"):
            _require_free(kafka_port, "kafka", "--kafka-port")
            _require_free(kafka_port + 1, "kafka controller", "--kafka-port; the controller uses the next port")
        redis_was_up = _ours(_read_pid(sdir / "redis.pid"), "redis-server")
        if not redis_was_up:
            _require_free(redis_port, "redis", "--redis-port")
        redis_pid = _up_redis(sdir, redis_port)
        try:
            _up_kafka(sdir, kafka_port, kafka_version)
        except BaseException:
            if not redis_was_up:  # leave nothing half up: stop the redis this call started
                _stop_pid(redis_pid, "redis", 10)
                (sdir / "redis.pid").unlink(missing_ok=True)
            raise
        (sdir / "stack.json").write_text(json.dumps(
            {"kafka_port": kafka_port, "redis_port": redis_port, "kafka_version": kafka_version}) + "\n")
    return {"kafka": f"{HOST}:{kafka_port}", "redis": f"redis://{HOST}:{redis_port}/0"}


def down(state_dir: Path | str = DEFAULT_STATE, wipe: bool = False) -> None:
    """Stop the processes this module started for `state_dir`; with wipe, delete their data too."""
    sdir = _state(state_dir)
    for name, marker, timeout in (("kafka", "kafka.Kafka", 60), ("redis", "redis-server", 15)):
        pid_file = sdir / f"{name}.pid"
        pid = _read_pid(pid_file)
        if pid is None:
            _say(f"{name}: not running")
        elif _ours(pid, marker):
            _say(f"{name}: stopping pid {pid} …")
            _stop_pid(pid, name, timeout)
            _say(f"{name}: stopped")
        else:
            _say(f"{name}: not running (stale pid file {pid_file.name})")
        pid_file.unlink(missing_ok=True)
    if wipe:
        for d in (sdir / "kafka", sdir / "redis"):
            if d.exists():
                shutil.rmtree(d)
                _say(f"wiped {d}")
        (sdir / "stack.json").unlink(missing_ok=True)


def status(state_dir: Path | str = DEFAULT_STATE) -> dict:
    """Print and return what is running for `state_dir`."""
    sdir = _state(state_dir)
    result = {}
    for name, marker, key in (("kafka", "kafka.Kafka", "kafka_port"), ("redis", "redis-server", "redis_port")):
        pid = _read_pid(sdir / f"{name}.pid")
        port = _running_port(sdir, key)
        running = _ours(pid, marker)
        if running and port is not None:
            answering = kafka_api_versions_ok(port) if name == "kafka" else redis_ping_ok(port)
        else:
            answering = False
        address = None if port is None else (f"{HOST}:{port}" if name == "kafka" else f"redis://{HOST}:{port}/0")
        result[name] = {"running": running, "answering": answering, "pid": pid if running else None,
                        "address": address}
        if running:
            _say(f"{name}: running (pid {pid}) on {address}, {'answering' if answering else 'NOT answering'}")
        else:
            _say(f"{name}: stopped")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--kafka-port", type=int, default=9092, help="broker port; the controller uses +1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--dir", type=Path, default=DEFAULT_STATE,
                        help="state directory (relative = to the repository root; default .stack)")
    parser.add_argument("--wipe", action="store_true", help="with down: also delete the Kafka and Redis data")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            addrs = up(args.kafka_port, args.redis_port, args.dir)
            _say(f"ZONEWATCH_KAFKA={addrs['kafka']} ZONEWATCH_REDIS={addrs['redis']}")
        elif args.command == "down":
            down(args.dir, wipe=args.wipe)
        else:
            st = status(args.dir)
            return 0 if all(s["running"] and s["answering"] for s in st.values()) else 3
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
