"""deploy/prometheus/rules.yml: checked and unit-tested by the real promtool (built from the Go module
proxy by deploy/tools.py), every alert covered by a firing and a quiet case, every runbook link an
anchor of docs/OPERATIONS.md, every metric it reads a name of contract/metrics.py."""

from __future__ import annotations

import re
import shutil
import subprocess

from contract import metrics
from tests.deploy.conftest import DEPLOY, REPO, load_yaml, promql_signals, tool

RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yml"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
# gateway metrics are still literals in the gateway (not yet in contract/metrics.py)
GATEWAY_METRICS = {"zonewatch_gateway_clients", "zonewatch_gateway_resyncs_total"}


def alerts() -> list[dict]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool("promtool")), *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules_file():
    out = run_promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_rule_unit_tests_pass_in_promtool():
    out = run_promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "FAILED" not in out.stdout


def test_promtool_fails_a_wrong_expectation(tmp_path):
    """The unit tests are not vacuous: one wrong rendered summary and one loosened threshold fail."""
    shutil.copy(RULES, tmp_path / "rules.yml")
    text = RULE_TESTS.read_text()
    assert "e2e p99 of calls is 296ms" in text
    (tmp_path / "rules.test.yml").write_text(text.replace("e2e p99 of calls is 296ms", "e2e p99 of calls is 1s"))
    out = run_promtool("test", "rules", str(tmp_path / "rules.test.yml"))
    assert out.returncode != 0 and "ZonewatchE2ELatencyHigh" in out.stdout + out.stderr

    (tmp_path / "rules.test.yml").write_text(text)
    rules = RULES.read_text()
    assert "zonewatch_watermark_lag_seconds) > 300" in rules
    (tmp_path / "rules.yml").write_text(rules.replace("zonewatch_watermark_lag_seconds) > 300",
                                                      "zonewatch_watermark_lag_seconds) > 900"))
    out = run_promtool("test", "rules", str(tmp_path / "rules.test.yml"))
    assert out.returncode != 0 and "ZonewatchWatermarkLagHigh" in out.stdout + out.stderr


def test_the_alerts_the_issue_asks_for_are_there():
    names = {a["alert"] for a in alerts()}
    assert {"ZonewatchDependencyDown", "ZonewatchConsumerLagGrowing", "ZonewatchE2ELatencyHigh",
            "ZonewatchDeadLetterRate", "ZonewatchRedisWriteErrors", "ZonewatchBreachesRising",
            "ZonewatchWorkerDown", "ZonewatchNoWorkers"} <= names
    e2e = next(a for a in alerts() if a["alert"] == "ZonewatchE2ELatencyHigh")
    assert "> 0.25" in e2e["expr"] and "histogram_quantile(0.99" in e2e["expr"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    fired, quiet = set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never shown firing in rules.test.yml"
    assert names - quiet == set(), "alerts never shown quiet in rules.test.yml"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_every_alert_links_a_runbook_section_and_has_a_severity():
    anchors = _anchors(OPERATIONS.read_text())
    for a in alerts():
        url = a["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/OPERATIONS.md" and anchor in anchors, f"{a['alert']}: {url} is not a heading"
        assert a["labels"]["severity"] in ("critical", "warning"), a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]


def test_rules_read_only_metric_names_of_the_contract():
    """A misspelt name would silently never fire; the live check (test_prometheus_live.py) also
    proves each one exists on a running worker."""
    known = {v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str) and v.startswith("zonewatch_")}
    known |= {f"{m}_bucket" for m in known} | {f"{m}_count" for m in known} | {f"{m}_sum" for m in known}
    known |= GATEWAY_METRICS | {"up"}
    for r in promql_signals([a["expr"] for a in alerts()]):
        assert not r.get("error"), r
        for sel in r["selectors"]:
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", sel).group(0)
            assert name in known, f"{sel} in {r['expr']!r} is not a metric of contract/metrics.py"
