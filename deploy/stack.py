#!/usr/bin/env python3
"""The local zonewatch stack without Docker: one Kafka broker (KRaft, combined mode) and one Redis,
both on 127.0.0.1, both started detached and stopped by the pids recorded here.

Stdlib only (with deploy/procs.py, which starts and stops the servers). Used by the Makefile
(`make up` / `make down`) and, imported as `deploy.stack`, by the integration tests and the chaos
harness, which call the functions:

    up(kafka_port=9092, redis_port=6379, state_dir=Path(".stack"))
        -> {"kafka": "127.0.0.1:9092", "redis": "redis://127.0.0.1:6379/0"}
    up(..., secure=True, acl_prefixes=None)      the secured variant (below)
    down(state_dir=Path(".stack"), wipe=False)
    stop_service("kafka" | "redis", state_dir=Path(".stack"))   one server (chaos: a broker outage)
    status(state_dir=Path(".stack")) -> dict

CLI:  python3 deploy/stack.py up|down|status [--kafka-port 9092] [--redis-port 6379] [--dir .stack]
      python3 deploy/stack.py down --wipe      (also deletes the Kafka and Redis data of that dir)
      .venv/bin/python deploy/stack.py up --secure --dir .stack/secure --kafka-port 19192 --redis-port 16479

Secure mode (docs/SECURITY.md) — the same two processes, locked down, for tests and rehearsals:
    * a throwaway CA and one server certificate (CN=zonewatch-broker, SAN IP:127.0.0.1 and
      DNS:localhost) made with the openssl CLI in <state>/tls/, used by Kafka and Redis;
    * Kafka: one client listener SASL_SSL://127.0.0.1:<port> (SCRAM-SHA-512 only), which is also
      the inter-broker listener (the broker logs in as `admin`); the KRaft CONTROLLER listener on
      <port>+1 is SSL with required client certificates (SCRAM cannot authenticate controllers, so
      only holders of a certificate of this CA get in); SCRAM users `admin` (super user) and
      `zonewatch` are created when the storage is formatted; ACLs are enforced (StandardAuthorizer,
      allow.everyone.if.no.acl.found=false): `zonewatch` gets ALL on topics, groups and
      transactional ids whose names start with one of `acl_prefixes` (None = all of them), and
      nothing on the cluster.
      Granting the ACLs uses kafka-python, so run secure mode with the project's .venv/bin/python;
    * Redis: TLS only (`--port 0 --tls-port <port>`, server certificate, clients not asked for one),
      ACL file <state>/redis/users.acl with hashed passwords: `default` off; `zonewatch` (the worker)
      and `zonewatch-read` (gateway, watch) limited to keys and channels `zw:*` and the commands
      they use; `admin` with every right (operations and test inspection);
    * passwords are random, one file each in <state>/secrets/ (0600), never printed: `up` prints
      the ZONEWATCH_* variables with ZONEWATCH_KAFKA_PASSWORD_FILE / ZONEWATCH_REDIS_PASSWORD_FILE.

Layout (a relative state dir is taken relative to the repository root, not the current directory):
    <state>/stack.json                       ports of the last `up`
    <state>/kafka.pid, <state>/redis.pid     pids of the processes this module started
    <state>/kafka/server.properties, log4j2.properties, cluster.id, data/, logs/server.log
    <state>/redis/redis.log
    <state>/tls/, <state>/secrets/, <state>/redis/users.acl   secure mode only
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
import hashlib
import json
import os
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

if not __package__:  # run as a script (`python3 deploy/stack.py`): its folder, not the repository, is on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy import procs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
POM = REPO / "deploy" / "kafka" / "pom.xml"
KAFKA_VERSION = os.environ.get("ZONEWATCH_KAFKA_VERSION", "4.4.0")
HOST = "127.0.0.1"
DEFAULT_STATE = Path(".stack")
READY_TIMEOUT = float(os.environ.get("ZONEWATCH_STACK_TIMEOUT", "90"))
#: server -> (marker in its command line, seconds of grace when stopping it)
SERVICES = {"kafka": ("kafka.Kafka", 60), "redis": ("redis-server", 15)}
KAFKA_STARTED_MARKERS = ("Kafka Server started", "started (kafka.server.KafkaRaftServer)")

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


def _spawn(argv: list[str], log_path: Path, cwd: Path) -> procs.Child:
    # a Java setting inherited from the caller's shell must not change the broker
    env = {k: v for k, v in os.environ.items() if k not in ("CLASSPATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS")}
    return procs.start(Path(argv[0]).name, argv, log_path, cwd=cwd, env=env)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(procs.tail(path, lines)) or "(no log)"


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
                    cmd = " ".join(procs.cmdline(int(proc.name)))
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


def _tls_client(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@contextlib.contextmanager
def _connect(port: int, timeout: float, ca: Path | None = None):
    """A TCP connection to HOST:port, TLS (verified against `ca`) when `ca` is given."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        raw.settimeout(timeout)
        if ca is None:
            yield raw
        else:
            with _tls_client(ca).wrap_socket(raw, server_hostname=HOST) as s:
                yield s


def kafka_api_versions_ok(port: int, timeout: float = 2.0, ca: Path | None = None) -> bool:
    """Send a real Kafka ApiVersions (v0) request; True when the broker answers it. With `ca`,
    over TLS (a SASL_SSL listener answers ApiVersions before authentication)."""
    client_id = b"zonewatch-stack"
    request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with _connect(port, timeout, ca) as s:
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


def _listener_config(port: int, sec: Secure | None) -> str:
    if sec is None:
        return f"""listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{port + 1}
advertised.listeners=PLAINTEXT://{HOST}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
"""
    # Secure mode: clients and the broker itself on SASL_SSL (SCRAM-SHA-512), the controller on
    # mutual TLS. Passwords are Kafka `password` configs: the broker logs them as [hidden].
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{sec.password("kafka-admin")}";')
    return f"""listeners=SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{port + 1}
advertised.listeners=SASL_SSL://{HOST}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={sec.tls / 'broker-keystore.pem'}
ssl.truststore.type=PEM
ssl.truststore.location={sec.ca}
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.client.auth=none
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:CN={BROKER_CN}
allow.everyone.if.no.acl.found=false
"""


def _write_kafka_config(kdir: Path, port: int, sec: Secure | None = None) -> tuple[Path, Path]:
    data = kdir / "data"
    logs = kdir / "logs"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.touch(mode=0o600)
    os.chmod(props, 0o600)  # secure mode: it holds the broker's own SCRAM password
    props.write_text(
        f"""# written by deploy/stack.py; regenerated on every `up`
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{port + 1}
{_listener_config(port, sec)}log.dirs={data}
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


def _format_kafka_storage(kdir: Path, libs: Path, props: Path, log4j: Path, port: int,
                          sec: Secure | None = None) -> None:
    data = kdir / "data"
    stamp = kdir / "formatted.json"
    if (data / "meta.properties").exists():
        try:
            formatted = json.loads(stamp.read_text())
        except (OSError, ValueError):
            formatted = {}
        formatted_port = formatted.get("kafka_port")
        if formatted_port == port and bool(formatted.get("secure")) == (sec is not None):
            return
        # the controller endpoint is recorded in the bootstrap voter set: a new port needs a new
        # log; the SCRAM users of secure mode are created by the format
        _say(f"kafka: data in {data} was formatted for port {formatted_port} "
             f"({'secure' if formatted.get('secure') else 'plaintext'}), not {port} "
             f"({'secure' if sec else 'plaintext'}); reformatting")
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
    if sec is not None:  # SCRAM credentials go into the bootstrap metadata
        for user in KAFKA_USERS:
            argv += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={sec.password('kafka-' + user)}]"]
    res = subprocess.run(argv, cwd=kdir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if res.returncode != 0 or not (data / "meta.properties").exists():
        out = res.stdout + res.stderr
        if sec is not None:
            out = sec.redact(out)
        raise StackError(f"kafka: storage format failed (exit {res.returncode}):\n{out[-4000:]}")
    stamp.write_text(json.dumps({"kafka_port": port, "cluster_id": cluster_id, "secure": sec is not None}) + "\n")


def _wait_kafka(pid: int, port: int, log: Path, timeout: float, ca: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise StackError(f"kafka: the broker (pid {pid}) exited during startup; last log lines:\n{_tail(log)}")
        if _connectable(port) and kafka_api_versions_ok(port, ca=ca):
            return
        time.sleep(0.25)
    raise StackError(f"kafka: no answer on {HOST}:{port} after {timeout:.0f} s; last log lines:\n{_tail(log)}")


def _is_up(sdir: Path, name: str) -> bool:
    """The `name` server this module started for `sdir` still runs."""
    return procs.ours(procs.read_pid(sdir / f"{name}.pid"), SERVICES[name][0])


def _running_pid(sdir: Path, name: str, port: int) -> int | None:
    """The pid of the `name` server this module started for `sdir`, if it still runs (on `port`)."""
    if not _is_up(sdir, name):
        return None
    pid = procs.read_pid(sdir / f"{name}.pid")
    running_port = _running_port(sdir, f"{name}_port")
    if running_port not in (None, port):
        raise StackError(
            f"{name}: already running from {sdir} on port {running_port} (pid {pid}); "
            f"run `down --dir {sdir}` first to change the port"
        )
    return pid


def _up_kafka(sdir: Path, port: int, version: str, sec: Secure | None = None) -> int:
    pid_file = sdir / "kafka.pid"
    kdir = sdir / "kafka"
    log = kdir / "logs" / "server.log"
    ca = sec.ca if sec else None
    pid = _running_pid(sdir, "kafka", port)
    if pid is not None:
        _wait_kafka(pid, port, log, READY_TIMEOUT, ca)  # returns at once if it already answers
        _say(f"kafka: already up on {HOST}:{port} (pid {pid})")
        return pid
    pid_file.unlink(missing_ok=True)  # stale, if any: the process is gone (or the pid was reused)
    _require_free(port, "kafka", "--kafka-port")
    _require_free(port + 1, "kafka controller", "--kafka-port; the controller uses the next port")
    libs = _resolve_kafka_jars(version)
    props, log4j = _write_kafka_config(kdir, port, sec)
    _format_kafka_storage(kdir, libs, props, log4j, port, sec)
    _say(f"kafka: starting Kafka {version} on {HOST}:{port}{' (SASL_SSL)' if sec else ''} …")
    t0 = time.monotonic()
    argv = [
        _java(), "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", f"-Dkafka.logs.dir={kdir / 'logs'}", f"-Dlog4j2.configurationFile={log4j}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(props),
    ]
    proc = _spawn(argv, kdir / "logs" / "stdout.log", kdir)
    pid_file.write_text(f"{proc.pid}\n")
    try:
        _wait_kafka(proc.pid, port, log, READY_TIMEOUT, ca)
    except StackError:
        procs.stop_pid(proc.pid, 15, "kafka", _say)
        pid_file.unlink(missing_ok=True)
        raise
    _say(f"kafka: up on {HOST}:{port} (pid {proc.pid}, {time.monotonic() - t0:.1f} s)")
    return proc.pid


# ----------------------------------------------------------------------------------------- redis


def _apt_install(package: str, who: str, refusal: str) -> None:
    """Install a missing Debian package when running as root with apt-get; else raise `refusal`."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(refusal)
    _say(f"{who}: {package} not found; installing it with apt-get …")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        res = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError(f"{who}: `{' '.join(argv)}` failed:\n{(res.stdout + res.stderr)[-3000:]}")


def _redis_server() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
         if os.access(p, os.X_OK)), None)
    if found:
        return found
    _apt_install("redis-server", "redis",
                 "redis: `redis-server` is not installed (on Debian: sudo apt-get install -y redis-server)")
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(found, os.X_OK):
        raise StackError("redis: apt-get installed redis-server but the binary was not found")
    return found


def redis_ping_ok(port: int, timeout: float = 1.0, ca: Path | None = None) -> bool:
    """PING answered; with `ca` over TLS, where NOAUTH (no default user) also proves it is up."""
    try:
        with _connect(port, timeout, ca) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = s.recv(64)
            return answer.startswith(b"+PONG") or (ca is not None and answer.startswith(b"-NOAUTH"))
    except OSError:
        return False


def _up_redis(sdir: Path, port: int, sec: Secure | None = None) -> int:
    pid_file = sdir / "redis.pid"
    rdir = sdir / "redis"
    log = rdir / "redis.log"
    pid = _running_pid(sdir, "redis", port)
    if pid is not None:
        if redis_ping_ok(port, ca=sec.ca if sec else None):
            _say(f"redis: already up on {HOST}:{port} (pid {pid})")
            return pid
        procs.stop_pid(pid, 10, "redis", _say)  # ours but not answering: restart it
    pid_file.unlink(missing_ok=True)  # stale, if any
    server = _redis_server()
    _require_free(port, "redis", "--redis-port")
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [
        server, "--port", str(port), "--bind", HOST, "--daemonize", "no", "--save", "", "--appendonly", "no",
        "--dir", str(rdir), "--protected-mode", "yes",
    ]
    if sec is not None:
        argv[1:3] = ["--port", "0", "--tls-port", str(port)]
        argv += ["--tls-cert-file", str(sec.tls / "server.pem"), "--tls-key-file", str(sec.tls / "server.key"),
                 "--tls-ca-cert-file", str(sec.ca), "--tls-auth-clients", "no",
                 "--tls-protocols", "TLSv1.2 TLSv1.3", "--aclfile", str(_write_redis_acl(rdir, sec, server))]
    proc = _spawn(argv, log, rdir)
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 20
    while not redis_ping_ok(port, ca=sec.ca if sec else None):
        if not procs.alive(proc.pid) or time.monotonic() > deadline:
            procs.stop_pid(proc.pid, 5, "redis", _say)
            pid_file.unlink(missing_ok=True)
            raise StackError(f"redis: did not answer PING on {HOST}:{port}; last log lines:\n{_tail(log)}")
        time.sleep(0.05)
    _say(f"redis: up on {HOST}:{port}{' (TLS, ACL users)' if sec else ''} (pid {proc.pid})")
    return proc.pid


# ----------------------------------------------------------------------------------- secure mode

BROKER_CN = "zonewatch-broker"
KAFKA_USERS = ("admin", "zonewatch")
CERT_DAYS = 30
# Redis ACL users (docs/SECURITY.md). Commands are exactly those the code issues, plus CLIENT SETINFO
# (redis-py sends it on connect) where the server knows it (7.2+; 7.0 rejects the rule).
# the worker writes zone documents with one script per flush (EVALSHA, EVAL the first time; the
# script itself calls set, xadd, publish, hget, hset, hdel), takes partition fences (HINCRBY) and
# reads the server's run id (INFO server) to notice a restart or a Sentinel failover
REDIS_WORKER_COMMANDS = ("ping", "select", "get", "set", "mget", "exists", "sadd", "smembers", "xadd",
                         "publish", "geoadd", "geosearch", "zrem", "hset", "hget", "hmget", "hdel", "hgetall",
                         "hincrby", "hscan", "eval", "evalsha", "script|load", "info")
REDIS_READER_COMMANDS = ("ping", "select", "get", "mget", "hmget", "exists", "smembers", "xread", "xrange",
                         "xrevrange", "xlen", "xinfo|stream", "geosearch", "geopos", "subscribe", "unsubscribe",
                         "hgetall")
REDIS_USERS = {"zonewatch": REDIS_WORKER_COMMANDS, "zonewatch-read": REDIS_READER_COMMANDS}


class Secure:
    """The TLS material and passwords of a secure-mode state dir (created once, kept until wipe)."""

    def __init__(self, sdir: Path):
        self.tls = sdir / "tls"
        self.secrets = sdir / "secrets"
        self.ca = self.tls / "ca.pem"
        self._cache: dict[str, str] = {}

    def password_file(self, name: str) -> Path:
        return self.secrets / f"{name}.password"

    def password(self, name: str) -> str:
        """The password `name` (e.g. kafka-zonewatch, redis-admin), generated on first use."""
        if name not in self._cache:
            path = self.password_file(name)
            if not path.exists():
                self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(24) + "\n")
            self._cache[name] = path.read_text().strip()
        return self._cache[name]

    def all_passwords(self) -> list[str]:
        return [self.password(f"kafka-{u}") for u in KAFKA_USERS] + \
               [self.password(f"redis-{u}") for u in ("admin", *REDIS_USERS)]

    def redact(self, text: str) -> str:
        for pw in self.all_passwords():
            text = text.replace(pw, "***")
        return text

    def ensure(self) -> Secure:
        self.all_passwords()
        self._ensure_certs()
        return self

    def _ensure_certs(self) -> None:
        _require_openssl()
        files = [self.ca, self.tls / "server.pem", self.tls / "server.key", self.tls / "broker-keystore.pem"]
        if all(f.exists() for f in files) and _openssl(
                "x509", "-checkend", "86400", "-noout", "-in", str(self.tls / "server.pem"), check=False) == 0:
            return
        _say(f"tls: making a throwaway CA and server certificate in {self.tls} …")
        self.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
        t = self.tls
        for f in t.iterdir():
            f.unlink()
        _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(CERT_DAYS),
                 "-keyout", str(t / "ca.key"), "-out", str(self.ca), "-subj", "/CN=zonewatch throwaway test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", str(t / "server.key"),
                 "-out", str(t / "server.csr"), "-subj", f"/CN={BROKER_CN}")
        (t / "server.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        _openssl("x509", "-req", "-sha256", "-days", str(CERT_DAYS), "-in", str(t / "server.csr"),
                 "-CA", str(self.ca), "-CAkey", str(t / "ca.key"), "-CAcreateserial",
                 "-extfile", str(t / "server.ext"), "-out", str(t / "server.pem"))
        # Kafka's PEM key store: PKCS#8 key then the certificate chain, in one file
        (t / "broker-keystore.pem").write_text(
            (t / "server.key").read_text() + (t / "server.pem").read_text() + self.ca.read_text())
        for f in t.iterdir():
            os.chmod(f, 0o644 if f.name in ("ca.pem", "server.pem") else 0o600)


def _require_openssl() -> None:
    if shutil.which("openssl"):
        return
    _apt_install("openssl", "tls", "secure mode: the `openssl` command makes the test certificates; install it "
                                   "(on Debian: sudo apt-get install -y openssl)")


def _openssl(*args: str, check: bool = True) -> int:
    res = subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise StackError(f"openssl {args[0]} failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-2000:]}")
    return res.returncode


def _redis_version(server: str) -> tuple[int, ...]:
    res = subprocess.run([server, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    for word in res.stdout.split():
        if word.startswith("v="):
            with contextlib.suppress(ValueError):
                return tuple(int(x) for x in word[2:].split(".")[:3])
    return (0,)


def _write_redis_acl(rdir: Path, sec: Secure, server: str) -> Path:
    """users.acl: default off; the zonewatch users confined to zw:* keys and channels and their
    commands; admin with every right. Passwords are stored as SHA-256 hashes (`#...`)."""
    def h(name: str) -> str:
        return "#" + hashlib.sha256(sec.password(name).encode()).hexdigest()

    setinfo = ("client|setinfo",) if _redis_version(server) >= (7, 2) else ()
    lines = ["user default off resetkeys resetchannels -@all"]
    for user, commands in REDIS_USERS.items():
        allowed = " ".join(f"+{c}" for c in commands + setinfo)
        lines.append(f"user {user} on {h('redis-' + user)} resetkeys ~zw:* resetchannels &zw:* -@all {allowed}")
    lines.append(f"user admin on {h('redis-admin')} ~* &* +@all")
    acl = rdir / "users.acl"
    acl.touch(mode=0o600)
    os.chmod(acl, 0o600)
    acl.write_text("\n".join(lines) + "\n")
    return acl


def kafka_admin_kwargs(port: int, sec: Secure) -> dict:
    """kafka-python client arguments for the stack's Kafka `admin` user."""
    return dict(bootstrap_servers=f"{HOST}:{port}", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username="admin", sasl_plain_password=sec.password("kafka-admin"),
                ssl_cafile=str(sec.ca), ssl_check_hostname=True)


def _grant_kafka_acls(port: int, sec: Secure, prefixes, timeout: float = 60.0) -> None:
    """ALL on topics, groups and transactional ids named with one of `prefixes` (None: all of them)
    for User:zonewatch, as the admin user; returns when the broker's authorizer has them."""
    try:
        from kafka.admin import (
            ACL,
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            KafkaAdminClient,
            ResourcePattern,
            ResourcePatternFilter,
            ResourceType,
        )
        from kafka.errors import KafkaError
    except ImportError as exc:
        raise StackError("kafka: secure mode grants ACLs with kafka-python; run this with the project's "
                         ".venv/bin/python (make setup)") from exc
    # transactional ids too: each partition's owner writes through `{app_id}-owner-{p}`
    # (streams/kafka_fence.py)
    kinds = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
    if prefixes:
        patterns = [ResourcePattern(rt, p, ACLResourcePatternType.PREFIXED) for p in prefixes for rt in kinds]
    else:
        patterns = [ResourcePattern(rt, "*", ACLResourcePatternType.LITERAL) for rt in kinds]
    acls = [ACL("User:zonewatch", "*", ACLOperation.ALL, ACLPermissionType.ALLOW, rp) for rp in patterns]
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(client_id="zonewatch-stack", request_timeout_ms=10_000,
                                     **kafka_admin_kwargs(port, sec))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"kafka: cannot log in as admin on {HOST}:{port} over SASL_SSL: {exc!r}") from exc
            time.sleep(0.5)
    try:
        result = admin.create_acls(acls)
        failed = result.get("failed") if isinstance(result, dict) else None
        if failed:
            raise StackError(f"kafka: creating ACLs failed: {failed!r}")
        wanted = {(a.resource_pattern.resource_type, a.resource_pattern.resource_name) for a in acls}
        flt = ACLFilter("User:zonewatch", "*", ACLOperation.ANY, ACLPermissionType.ANY,
                        ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
        while True:
            found, _err = admin.describe_acls(flt)
            have = {(a.resource_pattern.resource_type, a.resource_pattern.resource_name) for a in found}
            if wanted <= have:
                break
            if time.monotonic() > deadline:
                raise StackError(f"kafka: ACLs not visible after {timeout:.0f} s: {sorted(map(str, have))}")
            time.sleep(0.2)
    finally:
        admin.close()
    named = list(prefixes) if prefixes else "*"
    _say(f"kafka: ACLs for User:zonewatch on topics, groups and transactional ids {named}")


def secure_endpoints(sdir: Path, kafka_port: int, redis_port: int, sec: Secure) -> dict:
    """Addresses and ZONEWATCH_* variables of a secure stack (passwords by file, never inline)."""
    ca = str(sec.ca)
    redis_url = f"rediss://zonewatch@{HOST}:{redis_port}/0?ssl_ca_certs={quote(ca)}"
    env = {
        "ZONEWATCH_KAFKA": f"{HOST}:{kafka_port}",
        "ZONEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ZONEWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "ZONEWATCH_KAFKA_USERNAME": "zonewatch",
        "ZONEWATCH_KAFKA_PASSWORD_FILE": str(sec.password_file("kafka-zonewatch")),
        "ZONEWATCH_KAFKA_CA": ca,
        "ZONEWATCH_REDIS": redis_url,
        "ZONEWATCH_REDIS_PASSWORD_FILE": str(sec.password_file("redis-zonewatch")),
    }
    return {"kafka": env["ZONEWATCH_KAFKA"], "redis": redis_url, "secure": True, "ca": ca,
            "tls_dir": str(sec.tls), "kafka_port": kafka_port, "redis_port": redis_port,
            "password_files": {n: str(sec.password_file(n)) for n in
                               [f"kafka-{u}" for u in KAFKA_USERS] + [f"redis-{u}" for u in ("admin", *REDIS_USERS)]},
            "env": env}


# ------------------------------------------------------------------------------------------- api


def _running_port(sdir: Path, key: str) -> int | None:
    try:
        return json.loads((sdir / "stack.json").read_text()).get(key)
    except (OSError, ValueError):
        return None


def up(kafka_port: int = 9092, redis_port: int = 6379, state_dir: Path | str = DEFAULT_STATE,
       kafka_version: str = KAFKA_VERSION, secure: bool = False, acl_prefixes=None) -> dict:
    """Start (or find running) Kafka and Redis for `state_dir`; return their addresses.

    secure=True: the locked-down variant of the module docstring; the result then also carries
    "secure", "ca", "password_files" and "env" (the ZONEWATCH_* variables of a client)."""
    sdir = _state(state_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    with open(sdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kafka_was_up, redis_was_up = _is_up(sdir, "kafka"), _is_up(sdir, "redis")
        running_secure = _running_port(sdir, "secure")
        if (kafka_was_up or redis_was_up) and bool(running_secure) != secure:
            raise StackError(f"the stack of {sdir} is running in {'secure' if running_secure else 'plaintext'} "
                             f"mode; run `down --dir {sdir}` first to switch")
        # check every port a service still to be started needs before starting anything
        if not kafka_was_up:
            _require_free(kafka_port, "kafka", "--kafka-port")
            _require_free(kafka_port + 1, "kafka controller", "--kafka-port; the controller uses the next port")
        if not redis_was_up:
            _require_free(redis_port, "redis", "--redis-port")
        if secure:  # checked before anything starts
            try:
                import kafka.admin  # noqa: F401
            except ImportError as exc:
                raise StackError("secure mode grants Kafka ACLs with kafka-python; run this with the project's "
                                 ".venv/bin/python (make setup)") from exc
        sec = Secure(sdir).ensure() if secure else None
        redis_pid = _up_redis(sdir, redis_port, sec)
        try:
            kafka_pid = _up_kafka(sdir, kafka_port, kafka_version, sec)
            try:
                if sec is not None:
                    _grant_kafka_acls(kafka_port, sec, acl_prefixes)
            except BaseException:
                if not kafka_was_up:
                    procs.stop_pid(kafka_pid, 60, "kafka", _say)
                    (sdir / "kafka.pid").unlink(missing_ok=True)
                raise
        except BaseException:
            if not redis_was_up:  # leave nothing half up: stop the redis this call started
                procs.stop_pid(redis_pid, 10, "redis", _say)
                (sdir / "redis.pid").unlink(missing_ok=True)
            raise
        (sdir / "stack.json").write_text(json.dumps(
            {"kafka_port": kafka_port, "redis_port": redis_port, "kafka_version": kafka_version,
             "secure": secure}) + "\n")
    if sec is not None:
        return secure_endpoints(sdir, kafka_port, redis_port, sec)
    return {"kafka": f"{HOST}:{kafka_port}", "redis": f"redis://{HOST}:{redis_port}/0"}


def down(state_dir: Path | str = DEFAULT_STATE, wipe: bool = False) -> None:
    """Stop the processes this module started for `state_dir`; with wipe, delete their data too."""
    sdir = _state(state_dir)
    for name in SERVICES:
        stop_service(name, sdir)
    if wipe:
        for d in (sdir / "kafka", sdir / "redis", sdir / "tls", sdir / "secrets"):
            if d.exists():
                shutil.rmtree(d)
                _say(f"wiped {d}")
        (sdir / "stack.json").unlink(missing_ok=True)


def stop_service(name: str, state_dir: Path | str = DEFAULT_STATE) -> None:
    """Stop one server ("kafka" or "redis") of `state_dir`, if this module started it."""
    marker, grace = SERVICES[name]
    procs.stop_pid_file(_state(state_dir) / f"{name}.pid", marker, grace, name, _say)


def status(state_dir: Path | str = DEFAULT_STATE) -> dict:
    """Print and return what is running for `state_dir`."""
    sdir = _state(state_dir)
    result = {}
    ca = Secure(sdir).ca if _running_port(sdir, "secure") else None
    for name, (marker, _grace) in SERVICES.items():
        pid = procs.read_pid(sdir / f"{name}.pid")
        port = _running_port(sdir, f"{name}_port")
        running = procs.ours(pid, marker)
        if running and port is not None:
            answering = kafka_api_versions_ok(port, ca=ca) if name == "kafka" else redis_ping_ok(port, ca=ca)
        else:
            answering = False
        scheme = "rediss" if ca else "redis"
        address = None if port is None else (f"{HOST}:{port}" if name == "kafka" else f"{scheme}://{HOST}:{port}/0")
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
    parser.add_argument("--secure", action="store_true",
                        help="with up: SASL_SSL (SCRAM-SHA-512) Kafka with ACLs and TLS Redis with ACL users "
                             "(needs the project's .venv/bin/python; see docs/SECURITY.md)")
    parser.add_argument("--acl-prefix", action="append", dest="acl_prefixes", metavar="PREFIX",
                        help="with up --secure: topic and group prefix the zonewatch user may use "
                             "(repeatable; default: every topic and group)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            addrs = up(args.kafka_port, args.redis_port, args.dir, secure=args.secure,
                       acl_prefixes=args.acl_prefixes)
            if addrs.get("secure"):
                _say("# environment of a zonewatch client (passwords stay in their files):")
                for k, v in addrs["env"].items():
                    _say(f"export {k}='{v}'")
            else:
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
