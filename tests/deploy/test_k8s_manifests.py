"""deploy/k8s: each overlay is built by the real kustomize and every object is validated offline by
deploy/tools/k8scheck (strict decoding into the real k8s.io/api and prometheus-operator Go types,
plus the cross-object checks listed in its source); then what zonewatch itself relies on is checked
on the built objects: takeover settings, probes, resources, monitors' job names, rules, config.

    .venv/bin/python -m tests.deploy.test_k8s_manifests --write-prometheusrule
rewrites components/monitoring/prometheusrule.yaml from deploy/prometheus/rules.yml.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.conftest import DEPLOY, REPO, cli_refusal, load_stack, load_yaml, tool, unknown_env_vars

K8S = DEPLOY / "k8s"
OVERLAYS = ("local", "production")
# created from the secret manager in production, never in git (overlays/production/kustomization.yaml)
EXTERNAL = {"production": ["Secret/zonewatch-secrets"], "local": []}
PROMETHEUSRULE = K8S / "components" / "monitoring" / "prometheusrule.yaml"
RULES = DEPLOY / "prometheus" / "rules.yml"


def build(overlay: str) -> str:
    out = subprocess.run([str(tool("kustomize")), "build", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def k8scheck(manifests: str, external=()) -> subprocess.CompletedProcess:
    args = [a for e in external for a in ("-external", e)]
    return subprocess.run([str(tool("k8scheck")), *args, "-"], input=manifests, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    import yaml

    text = build(request.param)
    objs = [d for d in yaml.safe_load_all(text) if d]
    return request.param, text, objs


def find(objs, kind, name=None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs, kind, name) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(workload: dict, name: str) -> dict:
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == name)


def env_of(c: dict) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


def config_map(objs, prefix: str) -> dict:
    found = [o for o in find(objs, "ConfigMap") if o["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, prefix
    return found[0]


def test_every_object_validates(overlay):
    name, text, objs = overlay
    out = k8scheck(text, EXTERNAL[name])
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\nok ") + out.stdout.startswith("ok ") == len(objs)


def test_the_validator_refuses_what_an_api_server_would(overlay):
    """Not vacuous: an unknown field, a bad quantity, a probe on an undeclared port, a missing key."""
    name, text, _ = overlay
    for broken, expect in (
        (text.replace("containerPort: 6066", "containerPorts: 6066", 1), 'unknown field'),
        (text.replace("memory: 256Mi", "memory: 256MB!", 1), "quantities must match"),
        (text.replace("port: metrics\n", "port: metricz\n", 1), 'refers to port "metricz"'),
        (text.replace("key: caller-secret", "key: caller-secrets", 1),
         'has no key "caller-secrets"' if name == "local" else None),
    ):
        if expect is None:        # production's Secret is external: keys cannot be checked
            continue
        assert broken != text
        out = k8scheck(broken, EXTERNAL[name])
        assert out.returncode == 1 and expect in out.stderr, (expect, out.stderr)


def test_workers_carry_the_takeover_settings(overlay):
    _, _, objs = overlay
    worker = one(objs, "StatefulSet", "zonewatch-worker")
    env = env_of(container(worker, "worker"))
    assert env["ZONEWATCH_SESSION_TIMEOUT_MS"]["value"] == "6000"
    assert env["ZONEWATCH_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["ZONEWATCH_WEB_BIND"]["value"] == "0.0.0.0"
    assert worker["spec"]["serviceName"] == "zonewatch-worker"


def test_probes(overlay):
    _, _, objs = overlay
    gw = container(one(objs, "Deployment", "zonewatch-gateway"), "gateway")
    for probe in ("livenessProbe", "readinessProbe"):
        assert gw[probe]["httpGet"]["path"] == "/healthz"
    wk = container(one(objs, "StatefulSet", "zonewatch-worker"), "worker")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert wk[probe]["httpGet"]["path"] == "/metrics"
        assert wk[probe]["httpGet"]["port"] == "metrics"


OPERATIONS = REPO / "docs" / "OPERATIONS.md"


def sizing_rows() -> dict[str, dict[str, str]]:
    """The table of docs/OPERATIONS.md "Sizing" whose last column names the overlay each row sizes:
    overlay -> {column header: cell}."""
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("\n## Sizing", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for table in section.split("\n\n"):
        lines = [ln.strip() for ln in table.strip().splitlines() if ln.strip().startswith("|")]
        if len(lines) < 3 or "k8s overlay" not in lines[0]:
            continue
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        for ln in lines[2:]:
            cells = dict(zip(head, (c.strip().strip("`") for c in ln.strip("|").split("|")), strict=True))
            if cells["k8s overlay"] not in ("", "—"):
                rows[cells["k8s overlay"]] = cells
    return rows


def cpu_millis(q: str) -> int:
    return int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)


def mebibytes(q: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(q[:-2]) * units[q[-2:]]


def test_sizing_table_has_a_row_for_each_overlay():
    assert set(sizing_rows()) == set(OVERLAYS), "docs/OPERATIONS.md Sizing: one row per overlay (column k8s overlay)"


def test_resources_replicas_and_partitions_are_the_sizing_tables(overlay):
    """Workers, partitions and the worker's CPU and memory of each overlay are those of its row in
    docs/OPERATIONS.md "Sizing" (derived there from docs/BENCHMARKS.md), read from the table itself."""
    name, _, objs = overlay
    row = sizing_rows()[name]
    worker = one(objs, "StatefulSet", "zonewatch-worker")
    wk = container(worker, "worker")["resources"]
    assert worker["spec"]["replicas"] == int(row["workers W"])
    assert config_map(objs, "zonewatch-config")["data"]["ZONEWATCH_PARTITIONS"] == row["partitions P"]
    assert cpu_millis(wk["requests"]["cpu"]) == cpu_millis(row["worker CPU request"])
    assert "cpu" not in wk.get("limits", {}), "no CPU limit: throttling breaks the latency budget first"
    memory = row["worker memory (request = limit)"]
    assert mebibytes(wk["requests"]["memory"]) == mebibytes(wk["limits"]["memory"]) == mebibytes(memory)
    # the gateway's /stats reads every worker's /metrics
    gw_env = env_of(container(one(objs, "Deployment", "zonewatch-gateway"), "gateway"))
    assert gw_env["ZONEWATCH_WORKER_METRICS"]["value"].split(",") == \
        [f"http://zonewatch-worker-{i}.zonewatch-worker:6066/metrics" for i in range(int(row["workers W"]))]


def test_gateway_requests(overlay):
    _, _, objs = overlay
    gw = container(one(objs, "Deployment", "zonewatch-gateway"), "gateway")["resources"]
    assert gw["requests"] == {"cpu": "250m", "memory": "256Mi"}


def test_disruption_budgets_cover_workers_and_gateways(overlay):
    _, _, objs = overlay
    assert one(objs, "PodDisruptionBudget", "zonewatch-worker")["spec"]["maxUnavailable"] == 1
    assert one(objs, "PodDisruptionBudget", "zonewatch-gateway")["spec"]["minAvailable"] == 1


def test_config_and_commands_are_ones_zonewatch_knows(overlay):
    _, _, objs = overlay
    names = set(config_map(objs, "zonewatch-config")["data"])
    refused = {}
    for kind, wl in (("StatefulSet", "zonewatch-worker"), ("Deployment", "zonewatch-gateway")):
        spec = one(objs, kind, wl)["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            names |= set(env_of(c))
            assert c["command"][0] == "zonewatch"
            why = cli_refusal(c["command"][1:])
            if why:
                refused[f"{wl}/{c['name']}"] = f"{' '.join(c['command'])}: {why}"
    assert refused == {}
    assert unknown_env_vars(names) == [], "manifests set variables no zonewatch code reads"


def test_replication_factor_per_overlay(overlay):
    name, _, objs = overlay
    data = config_map(objs, "zonewatch-config")["data"]
    assert data["ZONEWATCH_REPLICATION_FACTOR"] == {"local": "1", "production": "3"}[name]
    if name == "production":
        assert data["ZONEWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_zones_and_rules_config_maps_are_mounted_where_the_settings_point(overlay):
    _, _, objs = overlay
    data = config_map(objs, "zonewatch-config")["data"]
    zones = config_map(objs, "zonewatch-zones")
    rules = config_map(objs, "zonewatch-rules")
    workloads = (("StatefulSet", "zonewatch-worker", "worker"), ("Deployment", "zonewatch-gateway", "gateway"))
    for kind, wl, cname in workloads:
        w = one(objs, kind, wl)
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(w, cname)["volumeMounts"]}
        for setting, cm in (("ZONEWATCH_ZONES", zones), ("ZONEWATCH_RULES", rules)):
            directory, _, filename = data[setting].rpartition("/")
            assert vols[mounts[directory]]["configMap"]["name"] == cm["metadata"]["name"], (wl, setting)
            assert filename in cm["data"], (setting, filename)


def test_bundled_zones_and_rules_are_the_product_defaults():
    from streams.rules import load_rules

    demo = REPO / "contract" / "data" / "demo_zones.geojson"
    assert (K8S / "base" / "zones.geojson").read_bytes() == demo.read_bytes()
    assert load_rules(K8S / "base" / "rules.toml") == load_rules(None)


def test_monitors_scrape_under_the_job_names_the_rules_use():
    import yaml

    objs = [d for d in yaml.safe_load_all(build("production")) if d]
    pm = one(objs, "PodMonitor", "zonewatch-worker")
    worker_labels = one(objs, "StatefulSet", "zonewatch-worker")["spec"]["template"]["metadata"]["labels"]
    assert worker_labels[pm["spec"]["jobLabel"]] == "zonewatch-worker"
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"
    sm = one(objs, "ServiceMonitor", "zonewatch-gateway")
    svc_labels = one(objs, "Service", "zonewatch-gateway")["metadata"]["labels"]
    assert svc_labels[sm["spec"]["jobLabel"]] == "zonewatch-gateway"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_prometheusrule_is_rules_yml():
    assert load_yaml(PROMETHEUSRULE)["spec"]["groups"] == load_yaml(RULES)["groups"], (
        "regenerate with: .venv/bin/python -m tests.deploy.test_k8s_manifests --write-prometheusrule")


def test_local_kafka_is_the_version_the_local_stack_runs():
    import yaml

    objs = [d for d in yaml.safe_load_all(build("local")) if d]
    kafka = container(one(objs, "StatefulSet", "kafka"), "kafka")
    assert kafka["image"] == f"apache/kafka:{load_stack().KAFKA_VERSION}"


def write_prometheusrule() -> None:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                                style="|" if "\n" in s else None))
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "zonewatch"},
           "spec": {"groups": load_yaml(RULES)["groups"]}}
    PROMETHEUSRULE.write_text(
        "# The groups of deploy/prometheus/rules.yml for the Prometheus Operator. Do not edit here: change\n"
        "# rules.yml and run `.venv/bin/python -m tests.deploy.test_k8s_manifests --write-prometheusrule`\n"
        "# (tests/deploy/test_k8s_manifests.py fails while they differ).\n"
        + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=200, allow_unicode=True))


if __name__ == "__main__" and sys.argv[1:] == ["--write-prometheusrule"]:
    write_prometheusrule()
