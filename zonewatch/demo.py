"""`python -m zonewatch.demo` (what `make demo` runs after `make setup up`): the product's main job.

Creates the topics, starts one worker and the bundled simulator as subprocesses (each in its own
session, logs in `.stack/demo/`), waits until the worker's `/metrics` answers, then shows the live
zone table (`zonewatch watch`) until Ctrl-C, SIGTERM or `--duration`. Whatever happens — a stop
request, a subprocess that dies, an exception — it stops what it started: SIGTERM to each process
group, a grace period, then SIGKILL.

It uses the environment as it is (CONTRACT §7; the Makefile exports ZONEWATCH_KAFKA and
ZONEWATCH_REDIS of the `make up` stack) and the default deployment: app id `zonewatch`, no topic
prefix. `--scenario marathon` runs the Lanzhou marathon instead of the venue: the worker and the
gateway get its zones file (ZONEWATCH_ZONES = contract/data/marathon_zones.geojson), and unless
ZONEWATCH_APP_ID / ZONEWATCH_TOPIC_PREFIX are set it runs as a deployment of its own (app id
`zonewatch-marathon`, topic prefix `marathon.`, the next Redis database), so it never mixes its
zones and state with those of an earlier venue demo on the same stack.

At start it prints where Prometheus would scrape (the worker's and the gateway's /metrics) and
where the Grafana dashboard and the alert rules are (deploy/grafana, deploy/prometheus).

    python -m zonewatch.demo                    # until Ctrl-C
    python -m zonewatch.demo --duration 40      # stops by itself after 40 s (scripted checks)
    python -m zonewatch.demo --speed 10         # ten simulated seconds per second (a past period ending now)
    python -m zonewatch.demo --scenario marathon --speed 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.text import Text

from contract.errors import ChildExited, ConfigError, DemoError, KafkaUnavailable, RedisUnavailable, WatchError
from contract.settings import DATA_DIR, Settings
from deploy.procs import Child

from .watch import Watcher, _mask, watch_live

WORKER_READY_TIMEOUT_S = 120.0
#: with --speed > 1 and no --duration the simulated period is this much wall time long, ending now
FAST_WALL_S = 1800.0
#: --scenario -> its zones file (the simulator writes the same, byte for byte: connectors/simulate.py)
SCENARIO_ZONES = {"demo": DATA_DIR / "demo_zones.geojson", "marathon": DATA_DIR / "marathon_zones.geojson"}
#: what operators point Prometheus and Grafana at (docs/OPERATIONS.md)
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY_DIR / "grafana" / "dashboards" / "zonewatch.json"
RULES = DEPLOY_DIR / "prometheus" / "rules.yml"


class _Terminated(BaseException):
    """SIGTERM / SIGHUP: leave like Ctrl-C does (not an Exception, so nothing swallows it)."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _metrics_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - our own worker
            return resp.status == 200
    except OSError:
        return False


def simulator_cmd(py: str, speed: float, remaining_s: float | None, scenario: str = "demo") -> list[str]:
    """The simulator command line: real time from now, or with --speed > 1 a past period ending now."""
    cmd = [py, "-m", "zonewatch.cli", "simulate", "--quiet"]
    if scenario != "demo":
        cmd += ["--scenario", scenario]
    cmd += ["--speed", f"{speed:g}"]
    if speed > 1:
        # simulated time runs faster than the wall clock: give it a duration, so that the simulator
        # starts in the past and catches up with now exactly at the end (the pipeline rejects events
        # from the future)
        wall = remaining_s if remaining_s is not None else FAST_WALL_S
        cmd += ["--duration", f"{max(1.0, wall) * speed:.0f}"]
    return cmd


def scenario_env(scenario: str, environ: dict[str, str]) -> dict[str, str]:
    """What --scenario changes in the environment of the demo's children (and of the demo itself).

    The venue changes nothing. The marathon needs its zones file, and runs as a deployment of its
    own unless the app id or the topic prefix are set: its own topics and consumer groups (an
    earlier venue demo's snapshots must not be restored onto the marathon's zones) and the next
    Redis database (zw:zones would otherwise list both scenarios' zones)."""
    if scenario == "demo":
        return {}
    out = {"ZONEWATCH_ZONES": str(SCENARIO_ZONES[scenario])}
    if not environ.get("ZONEWATCH_APP_ID") and not environ.get("ZONEWATCH_TOPIC_PREFIX"):
        out["ZONEWATCH_APP_ID"] = f"zonewatch-{scenario}"
        out["ZONEWATCH_TOPIC_PREFIX"] = f"{scenario}."
        url = environ.get("ZONEWATCH_REDIS") or Settings.redis
        out["ZONEWATCH_REDIS"] = _next_db(url)
    return out


def _next_db(url: str) -> str:
    """The Redis URL with the database after its own (redis://h:p/0 -> redis://h:p/1)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))


def observability_lines(web_port: int, gateway_port: int) -> list[str]:
    """Where Prometheus would scrape, and the dashboard and rules to load (printed at start)."""
    return [f"prometheus: scrape the worker at http://127.0.0.1:{web_port}/metrics and the gateway at "
            f"http://127.0.0.1:{gateway_port}/metrics (as {DEPLOY_DIR / 'prometheus' / 'prometheus.yml'} does)",
            f"grafana: import the dashboard {DASHBOARD}; alert rules: {RULES}"]


def _error_lines(log_path: Path, offset: int = 0, limit: int = 5) -> tuple[int, list[str]]:
    """Lines of a log from `offset` on that look like errors (ERROR / CRITICAL / Traceback), the first few."""
    n = 0
    first: list[str] = []
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            for raw in f:
                line = raw.decode("utf-8", "replace")
                if "ERROR" in line or "CRITICAL" in line or line.startswith("Traceback"):
                    n += 1
                    if len(first) < limit:
                        first.append(line.rstrip())
    except OSError:
        pass
    return n, first


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m zonewatch.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop by itself this many seconds after starting (default: until Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    p.add_argument("--scenario", choices=tuple(SCENARIO_ZONES), default="demo",
                   help="the venue in Zhengzhou (demo, the default) or the Lanzhou marathon; the worker and "
                        "the gateway get the scenario's zones file")
    p.add_argument("--gateway-port", type=int, default=8080, help="port of the wall and its gateway (default 8080)")
    p.add_argument("--web-port", type=int, default=int(os.environ.get("ZONEWATCH_WEB_PORT") or 6066),
                   help="the worker's /metrics port (default 6066)")
    p.add_argument("--interval", type=float, default=0.5, metavar="S", help="table refresh period (default 0.5)")
    p.add_argument("--log-dir", type=Path, default=Path(".stack/demo"),
                   help="where worker.log and simulate.log go (default .stack/demo)")
    args = p.parse_args(argv)
    if args.duration is not None and not args.duration > 0:
        p.error("--duration must be > 0")
    if not args.speed > 0:
        p.error("--speed must be > 0")
    if not args.interval > 0:
        p.error("--interval must be > 0")
    return args


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console):
        self.args, self.console = args, console
        self.t0 = time.monotonic()
        self.deadline = None if args.duration is None else self.t0 + args.duration
        self.stop = threading.Event()
        self.interruptible = True
        self.stop_requested = False
        self.children: list[Child] = []
        self.sim: Child | None = None
        self.worker: Child | None = None
        self.sim_done_note: str | None = None
        self.sim_start = 0     # the simulator's --start, the duty plan's reference (duty_plan)

    # -- signals -----------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        # No locks here (not even Event.set): the handler runs in the main thread, which may hold
        # the very lock it would need. Raise, or leave a plain flag for `uninterrupted` to honour.
        self.stop_requested = True
        if self.interruptible:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise _Terminated(signal.Signals(signum).name)

    def install_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    @contextlib.contextmanager
    def uninterrupted(self):
        """Signals only set the stop flag here (starting a child must not be torn in half)."""
        self.interruptible = False
        try:
            yield
        finally:
            self.interruptible = True
        if self.stop_requested:
            raise _Terminated("stop requested")

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        r = self.remaining()
        return r is not None and r <= 0

    def say(self, msg: str, style: str | None = None) -> None:
        """Print, best effort: a terminal that went away (tmux killed, ssh dropped) must not stop the
        clean-up half-way."""
        try:
            self.console.print(Text(msg, style=style or ""))
        except (OSError, ValueError):
            pass

    # -- steps ---------------------------------------------------------------------------------
    def start_child(self, name: str, cmd: list[str], log_name: str) -> Child:
        # os.environ carries the scenario's settings (run() puts them there, see scenario_env)
        child = Child(name, cmd, self.args.log_dir / log_name, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                      banner=True)
        with self.uninterrupted():
            child.start()
            self.children.append(child)
        self.say(f"started {name} (pid {child.pid}), log {child.log_path}", "dim")
        return child

    def check_children(self) -> None:
        for child in self.children:
            rc = child.poll()
            if rc is None:
                continue
            if child is self.sim and rc == 0:
                # a --speed > 1 run replays a period that ends now; then the clock stands still
                if self.sim_done_note is None:
                    self.sim_done_note = f"simulator finished its period at {time.strftime('%H:%M:%S')}"
                continue
            raise ChildExited(child.name, rc, child.log_path, child)

    def wait_for_worker(self, url: str) -> None:
        self.say(f"waiting for the worker's {url} ...", "dim")
        limit = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not _metrics_answer(url):
            self.check_children()
            if self.expired():
                raise DemoError("--duration ran out before the worker was ready")
            if time.monotonic() > limit:
                raise DemoError(f"the worker did not answer on {url} within {WORKER_READY_TIMEOUT_S:.0f} s "
                                f"(log {cast(Child, self.worker).log_path})")
            self.stop.wait(0.5)

    def note(self) -> Text:
        self.check_children()
        if self.expired():
            self.stop.set()
        t = Text()
        worker, sim = cast(Child, self.worker), cast(Child, self.sim)  # both started before the table shows
        t.append(f"demo: {self.args.scenario} · worker pid {worker.pid} · simulator pid {sim.pid} "
                 f"(speed {self.args.speed:g}x) · logs {self.args.log_dir}/ · ", style="dim")
        r = self.remaining()
        t.append("Ctrl-C stops all" if r is None else f"stops in {max(0, r):.0f} s (Ctrl-C stops all)", style="dim")
        if self.sim_done_note:
            t.append(f" · {self.sim_done_note}", style="yellow")
        return t

    def run(self) -> int:
        args = self.args
        os.environ.update(scenario_env(args.scenario, dict(os.environ)))
        self.sim_start = self.duty_plan()
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            raise DemoError(str(exc)) from exc
        from contract.kafka_settings import ensure_topics

        prefix = f", topic prefix {settings.topic_prefix}" if settings.topic_prefix else ""
        self.say(f"zonewatch demo ({args.scenario}): Kafka {settings.kafka}, Redis {_mask(settings.redis)}, "
                 f"app id {settings.app_id}{prefix}, zones {settings.zones}", "bold")
        created = ensure_topics(settings, timeout_s=30.0)
        self.say(f"topics: {len(created)} created" + (f" ({', '.join(created)})" if created else ", all present"),
                 "dim")

        watcher = Watcher(settings.redis, [f"http://127.0.0.1:{args.web_port}/metrics"])
        try:
            watcher.connect()     # before starting anything: a missing Redis is a clear error, not a dead worker
            if not _port_free(args.web_port):
                raise DemoError(f"127.0.0.1:{args.web_port} is in use (another worker?); "
                                "stop it or pass --web-port")
            py = sys.executable
            self.worker = self.start_child(
                "worker", [py, "-m", "zonewatch.cli", "worker", "--web-port", str(args.web_port)], "worker.log")
            self.wait_for_worker(f"http://127.0.0.1:{args.web_port}/metrics")
            self.start_gateway(py)
            for line in observability_lines(args.web_port, args.gateway_port):
                self.say(line, "cyan")
            self.sim = self.start_child("simulator", simulator_cmd(py, args.speed, self.remaining(), args.scenario)
                                        + ["--start", str(self.sim_start)], "simulate.log")
            if self.expired():
                return 0
            watch_live(watcher, interval=args.interval, tz_name=settings.tz, console=self.console,
                       stop=self.stop, check=self.note, title="zonewatch demo")
        finally:
            watcher.close()
        return 0

    def duty_plan(self) -> int:
        """The simulator's start, and the scenario's duty plan for it (CONTRACT §10; ZONEWATCH_PLAN for
        the worker, the gateway and the simulator, unless it is set already): its phases are in
        force while the demo runs, units keep its posts and an operator changes the phase mid-run."""
        from connectors.scenario.plans import write_plan
        from connectors.simulate import default_start

        left = self.remaining()
        wall = FAST_WALL_S if left is None else left
        speed = self.args.speed
        start = default_start(int(time.time() * 1000), speed, max(1.0, wall) * speed if speed > 1 else None)
        if not os.environ.get("ZONEWATCH_PLAN"):
            path = write_plan(self.args.scenario, self.args.log_dir / f"plan-{self.args.scenario}.toml", start)
            os.environ["ZONEWATCH_PLAN"] = str(path)
            self.say(f"duty plan: {path} (zonewatch plan check {path})", "dim")
        return start

    def start_gateway(self, py: str) -> None:
        """The wall's gateway, with a token made for this demo unless ZONEWATCH_GATEWAY_TOKENS is set."""
        port = self.args.gateway_port
        if not _port_free(port):
            raise DemoError(f"127.0.0.1:{port} is in use; stop it or pass --gateway-port")
        tokens = os.environ.get("ZONEWATCH_GATEWAY_TOKENS") or secrets.token_urlsafe(18)
        os.environ["ZONEWATCH_GATEWAY_TOKENS"] = tokens
        os.environ.setdefault("ZONEWATCH_WORKER_METRICS", f"http://127.0.0.1:{self.args.web_port}/metrics")
        self.start_child("gateway", [py, "-m", "zonewatch.cli", "gateway", "--port", str(port)], "gateway.log")
        token = tokens.split(",")[0].strip()
        self.say(f"wall: http://127.0.0.1:{port}/?token={token}", "bold green")

    def shutdown(self) -> None:
        """Stop every child, simulator first (no new events), then the worker."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)    # a second Ctrl-C must not leave orphans behind
        for child in reversed(self.children):
            try:
                if child.poll() is None:
                    self.say(f"stopping {child.name} (pid {child.pid}) ...", "dim")
            finally:
                rc = child.stop()
            self.say(f"{child.name} stopped (exit code {rc})", "dim")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    demo = Demo(args, console)
    demo.install_signals()
    rc = 0
    failed: Child | None = None
    try:
        try:
            rc = demo.run()
        except (KeyboardInterrupt, _Terminated):
            rc = 0
        except ChildExited as exc:
            failed, rc = cast(Child, exc.child), 1  # contract/ cannot name the type
            demo.say(f"zonewatch demo: error: {exc}", "bold red")
        except (DemoError, WatchError, KafkaUnavailable, RedisUnavailable) as exc:
            rc = 1
            demo.say(f"zonewatch demo: error: {exc}", "bold red")
    finally:  # also on the unexpected: stop what we started, then let the traceback show
        demo.shutdown()
    if failed is not None:
        lines = failed.tail(40)
        demo.say(f"--- last {len(lines)} lines of {failed.log_path} ---", "bold")
        for line in lines:
            demo.say(line)
    if demo.worker is not None and failed is not demo.worker:
        n, first = _error_lines(demo.worker.log_path, demo.worker.log_offset)
        if n:
            demo.say(f"note: this run wrote {n} error line(s) to {demo.worker.log_path}, e.g.:", "yellow")
            for line in first:
                demo.say("  " + line, "yellow")
    return rc


if __name__ == "__main__":
    sys.exit(main())
