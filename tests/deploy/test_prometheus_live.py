"""Every dashboard query and every alert expression, asked of a real Prometheus that scrapes a real
worker and a real gateway (issue 15: "no panel that is empty by mistake").

Set-up (once for the module): the real Kafka + Redis of the integration tests, one deployment with
one `zonewatch worker` and one `zonewatch gateway` (subprocesses), a small replay of calls, GPS fixes
and camera alerts through `zonewatch replay` plus a few undecodable messages (so dead letters exist),
and the cached real Prometheus (deploy/tools.py) on loopback with a temporary data directory,
scraping both every second under the job names the rules and the dashboard use
(`zonewatch-worker`, `zonewatch-gateway`) and loading deploy/prometheus/rules.yml.

What "returns data" means, honestly:
  * a dashboard query must return a non-empty result as it stands (`$__rate_interval` is replaced by
    30s, Grafana's only variable in these queries); a value may be NaN (a quantile over a histogram
    that saw nothing in the window), but there must be a series;
  * an alert expression is empty when all is well, so its emptiness proves nothing. It must evaluate
    without error, and each of its *signals* must return data: the expression with its alerting
    conditions taken away, computed by Prometheus' own PromQL parser (deploy/tools/promsignals):
    the operands of every filtering comparison, both sides of and/or/unless, the argument of
    absent(). E.g. for `sum by (source) (rate(zonewatch_deadletter_total[5m])) / sum by (source)
    (rate(zonewatch_events_total[5m])) > 0.01 and ...` the ratio itself must return data, which
    fails for a misspelt metric, a wrong label matcher, or `by` clauses that do not match;
  * for both, every vector selector on its own must return data too (offsets removed: a fresh
    Prometheus has no data from 30 minutes ago), so a misspelt name inside `or vector(0)` is caught.
Besides: Prometheus reports every rule as evaluated without error, both targets are up, and the
availability alerts (worker, gateway, dependency) are neither pending nor firing on this healthy set.

Metrics the worker does not export yet make the corresponding checks fail (listed in the message);
that is the intended signal, not a reason to skip.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from contract import topics
from tests.deploy.conftest import DEPLOY, REPO, load_yaml, promql_signals, tool
from tests.integration.conftest import Deployment, free_port, wait_until
from tests.scenario import ZONES_FILE

pytestmark = pytest.mark.integration

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "zonewatch.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
RATE_INTERVAL = "30s"
AVAILABILITY_ALERTS = {"ZonewatchWorkerDown", "ZonewatchNoWorkers", "ZonewatchGatewayDown", "ZonewatchDependencyDown"}
# inside the zones of tests/zones_test.geojson (grid A, grid B, the rings)
POINTS = [(34.71, 113.605), (34.71, 113.615), (34.71, 113.625), (34.701, 113.701), (34.699, 113.699)]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"].replace("$__rate_interval", RATE_INTERVAL)))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def alert_rules() -> list[dict]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


# ------------------------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a process this module started (its own session), by pid."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _spawn(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _events(now_ms: int) -> dict[str, list[dict]]:
    calls, fixes, alerts = [], [], []
    for i in range(60):
        lat, lon = POINTS[i % len(POINTS)]
        ts = now_ms + i * 100
        calls.append({"call_id": f"live-c{i}", "ts": ts, "lat": lat, "lon": lon, "category": "theft",
                      "priority": 1 + i % 3, "caller": "13800000000"})
        fixes.append({"unit_id": f"live-u{i % 7}", "ts": ts, "lat": lat + 0.001, "lon": lon, "status": "available",
                      "kind": "car"})
        alerts.append({"alert_id": f"live-a{i}", "camera_id": f"cam-{i % 5}", "ts": ts, "lat": lat, "lon": lon,
                       "type": "crowd", "confidence": 0.9})
    return {topics.CALLS: calls, topics.GPS: fixes, topics.ALERTS: alerts}


class Prometheus:
    """The cached real Prometheus on loopback, scraping the given targets every second."""

    def __init__(self, data: Path, worker: str, gateway: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "zonewatch-worker", "static_configs": [{"targets": [worker]}]},
                {"job_name": "zonewatch-gateway", "static_configs": [{"targets": [gateway]}]},
            ],
        }
        data.mkdir(parents=True, exist_ok=True)
        (data / "prometheus.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log = data / "prometheus.log"
        self.proc = _spawn([str(tool("prometheus")), f"--config.file={data / 'prometheus.yml'}",
                            f"--storage.tsdb.path={data / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                           dict(os.environ), self.log)
        try:
            wait_until(lambda: _http_ok(self.url + "/-/ready") or self.proc.poll() is not None, 60,
                       what="Prometheus /-/ready")
        except AssertionError:
            _stop(self.proc)
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:   # 400/422: a bad query; the body says why
            body = json.loads(exc.read())
        return body

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def series_count(self, expr: str) -> int:
        r = self.query(expr)
        return len(r["data"]["result"]) if r.get("status") == "success" else 0


@pytest.fixture(scope="module")
def live(stack, tmp_path_factory):
    dep = Deployment(stack, ZONES_FILE, partitions=2, name=f"prom{os.getpid()}")
    gateway = prom = None
    tmp = tmp_path_factory.mktemp("prom-live")
    try:
        wport = dep.start_worker()
        dep.wait_workers_joined()
        gport = free_port()
        genv = dict(dep.env, ZONEWATCH_GATEWAY_TOKENS="live-token-0123456789",
                    ZONEWATCH_WORKER_METRICS=f"http://127.0.0.1:{wport}/metrics")
        gateway = _spawn([sys.executable, "-m", "zonewatch.cli", "gateway", "--port", str(gport)], genv,
                         tmp / "gateway.log")
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{gport}/healthz") or gateway.poll() is not None, 60,
                   what="gateway /healthz")
        assert gateway.poll() is None, (tmp / "gateway.log").read_text()[-3000:]
        prom = Prometheus(tmp / "prometheus", f"127.0.0.1:{wport}", f"127.0.0.1:{gport}")

        # the small replay, through the real `zonewatch replay` command
        sent = 0
        for topic, records in _events(int(time.time() * 1000)).items():
            path = tmp / f"{topic}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
            subprocess.run([sys.executable, "-m", "zonewatch.cli", "replay", str(path), "--topic", topic, "--quiet"],
                           env=dep.env, cwd=REPO, check=True, capture_output=True, timeout=120)
            sent += len(records)
        dep.produce(topics.CALLS, [b"{not json", b"\xff\xfe", b"[]"])   # three dead letters
        sent += 3

        def scraped_everything():
            r = prom.query('sum(zonewatch_events_total{job="zonewatch-worker"})')
            seen = float(r["data"]["result"][0]["value"][1]) if r.get("data", {}).get("result") else 0
            # enough samples for rate() over 30s and for the rules' windows to have two points
            ups = prom.series_count('count_over_time(up{job=~"zonewatch-worker|zonewatch-gateway"}[1m]) >= 10')
            return seen >= sent and ups == 2
        wait_until(scraped_everything, 120, 1.0, what=f"Prometheus to see all {sent} events and 10 scrapes")
        yield prom
    finally:
        _stop(prom.proc if prom else None)
        _stop(gateway)
        dep.close()


def _no_data(prom: Prometheus, expr: str) -> str | None:
    """None when `expr` returns at least one series; else why not."""
    r = prom.query(expr)
    if r.get("status") != "success":
        return f"error: {r.get('error')}"
    if not r["data"]["result"]:
        return "empty"
    return None


def _selector_names(selectors: list[str]) -> set[str]:
    return {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s).group(0) for s in selectors}


def test_prometheus_scrapes_the_worker_and_the_gateway(live):
    targets = live.api("targets")["data"]["activeTargets"]
    assert sorted(t["labels"]["job"] for t in targets) == ["zonewatch-gateway", "zonewatch-worker"]
    assert all(t["health"] == "up" for t in targets), [(t["scrapeUrl"], t["lastError"]) for t in targets]


def test_prometheus_loaded_every_rule_and_evaluates_it_without_error(live):
    def evaluated():
        groups = live.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
    rules = wait_until(evaluated, 30, 1.0, what="every rule evaluated once")
    assert sorted(r["name"] for r in rules) == sorted(a["alert"] for a in alert_rules())
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []


def test_every_dashboard_query_returns_data(live):
    queries = dashboard_queries()
    assert len(queries) >= 25
    analysis = promql_signals([q for _, q in queries])
    failures, empty = [], set()
    for (title, expr), info in zip(queries, analysis, strict=True):
        assert "$" not in expr, f"{title}: a Grafana variable this test does not substitute: {expr}"
        assert not info.get("error"), f"{title}: {info['error']}"
        why = _no_data(live, expr)
        if why:
            failures.append(f"panel {title!r}: {expr} -> {why}")
        for sel in info["selectors"]:
            why = _no_data(live, sel)
            if why:
                failures.append(f"panel {title!r}: selector {sel} -> {why}")
                empty |= _selector_names([sel])
    assert failures == [], ("dashboard queries without data:\n  " + "\n  ".join(sorted(set(failures)))
                            + "\nmetrics with no series: " + ", ".join(sorted(empty)))


def test_every_alert_expression_evaluates_and_its_signals_return_data(live):
    rules = alert_rules()
    analysis = promql_signals([r["expr"] for r in rules])
    failures, empty = [], set()
    for rule, info in zip(rules, analysis, strict=True):
        name = rule["alert"]
        assert not info.get("error"), f"{name}: {info['error']}"
        assert info["signals"], f"{name}: no signal found in {rule['expr']!r}"
        r = live.query(rule["expr"])
        if r.get("status") != "success":
            failures.append(f"{name}: expression -> error: {r.get('error')}")
        for part in info["signals"] + info["selectors"]:
            why = _no_data(live, part)
            if why:
                failures.append(f"{name}: {part} -> {why}")
                if part in info["selectors"]:
                    empty |= _selector_names([part])
    assert failures == [], ("alert expressions whose signals return no data:\n  " + "\n  ".join(failures)
                            + "\nmetrics with no series: " + ", ".join(sorted(empty)))


def test_the_healthy_set_raises_no_availability_alert(live):
    alerts = live.api("alerts")["data"]["alerts"]
    raised = [(a["labels"]["alertname"], a["state"], a["labels"]) for a in alerts
              if a["labels"]["alertname"] in AVAILABILITY_ALERTS]
    assert raised == []


def test_a_misspelt_name_or_label_is_caught(live):
    """The checks above can fail: the same analysis flags a typo hidden in a 'healthy = empty' alert."""
    rule = next(r for r in alert_rules() if r["alert"] == "ZonewatchDeadLetterRate")
    assert "zonewatch_events_total" in rule["expr"]
    for typo in (rule["expr"].replace("zonewatch_events_total", "zonewatch_event_total"),
                 rule["expr"].replace("sum by (source) (rate(zonewatch_events_total",
                                      "sum by (sources) (rate(zonewatch_events_total"),
                 'sum(rate(zonewatch_events_total{outcome="acepted"}[30s]))'):
        info = promql_signals([typo])[0]
        assert not info.get("error"), info
        assert live.query(typo)["status"] == "success"      # valid PromQL: only the data tells
        assert any(_no_data(live, part) for part in info["signals"] + info["selectors"]), typo
