"""deploy/docker-compose.yml cannot run here (no Docker engine), so it is kept in step with what does
run: deploy/stack.py (Kafka version, broker settings, ports), the CLI (every command parses with the
real command table), the settings the code reads (every ZONEWATCH_* variable), the Prometheus
config (every service with /metrics is scraped under the job name the rules use; the rules load),
and the pinned Prometheus of deploy/tools.py."""

from __future__ import annotations

import inspect
import re

import pytest

from contract.settings import Settings
from tests.deploy.conftest import DEPLOY, cli_refusal, load_stack, load_tools, load_yaml, unknown_env_vars

COMPOSE = DEPLOY / "docker-compose.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
# the zonewatch services that serve /metrics, with the port and the Prometheus job name
SCRAPED = {"worker": (6066, "zonewatch-worker"), "gateway": (8080, "zonewatch-gateway")}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def zonewatch_services(compose) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("zonewatch:")}


def _tag(image: str) -> str:
    return image.rpartition(":")[2]


def test_kafka_image_is_the_version_the_local_stack_runs(compose):
    stack = load_stack()
    image = compose["services"]["kafka"]["image"]
    assert "$" not in image, "pin the Kafka image; a variable default can drift from deploy/stack.py"
    assert image == f"apache/kafka:{stack.KAFKA_VERSION}"


def test_broker_settings_match_the_local_stack(compose, tmp_path):
    """Every broker setting deploy/stack.py writes (other than paths and listeners) is set alike."""
    stack = load_stack()
    props, _ = stack._write_kafka_config(tmp_path, 9092)
    local = {}
    for line in props.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            local[k.strip()] = v.strip()
    env = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    skip = {"log.dirs", "node.id", "process.roles", "controller.quorum.bootstrap.servers", "num.network.threads",
            "num.io.threads"}
    checked = 0
    for key, value in local.items():
        if key in skip or "listener" in key or key.startswith("controller."):
            continue
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(name) == value, f"{name}: compose {env.get(name)!r}, deploy/stack.py {key}={value}"
        checked += 1
    assert checked >= 10


def test_redis_matches_the_local_stack(compose):
    """The same major version as the redis-server deploy/stack.py runs, and no persistence alike."""
    import subprocess

    stack = load_stack()
    out = subprocess.run([stack._redis_server(), "--version"], capture_output=True, text=True, check=True).stdout
    local_major = re.search(r"v=(\d+)\.", out).group(1)
    redis = compose["services"]["redis"]
    assert _tag(redis["image"]).split(".")[0] == local_major, (redis["image"], out)
    assert redis["command"][redis["command"].index("--save") + 1] == ""
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "no"


def test_published_ports_are_the_zonewatch_defaults_on_loopback(compose):
    stack = load_stack()
    up = inspect.signature(stack.up).parameters
    defaults = Settings()
    kafka_port = int(defaults.kafka.rpartition(":")[2])
    redis_port = int(re.search(r":(\d+)/", defaults.redis).group(1))
    assert kafka_port == up["kafka_port"].default and redis_port == up["redis_port"].default
    ports = {n: s.get("ports", []) for n, s in compose["services"].items()}
    assert f"127.0.0.1:{kafka_port}:29092" in ports["kafka"]
    assert f"127.0.0.1:{redis_port}:{redis_port}" in ports["redis"]
    for name, published in ports.items():
        for p in published:
            assert str(p).startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"


def test_every_zonewatch_variable_is_one_the_code_reads(compose):
    names = set()
    for svc in zonewatch_services(compose).values():
        names |= set(svc.get("environment", {}))
    assert {"ZONEWATCH_KAFKA", "ZONEWATCH_REDIS", "ZONEWATCH_REPLICATION_FACTOR"} <= names
    assert unknown_env_vars(names) == [], "compose sets variables no zonewatch code reads"


def test_in_container_addresses_point_at_the_compose_services(compose):
    for name, svc in zonewatch_services(compose).items():
        env = svc["environment"]
        assert env["ZONEWATCH_KAFKA"] == "kafka:9092", name
        assert env["ZONEWATCH_REDIS"].startswith("redis://redis:6379/"), name


def test_every_zonewatch_command_parses_with_the_real_cli(compose):
    refused = {}
    for name, svc in zonewatch_services(compose).items():
        cmd = svc["command"]
        assert cmd[0] == "zonewatch", name
        why = cli_refusal(cmd[1:])
        if why:
            refused[name] = f"{' '.join(cmd)}: {why}"
    assert refused == {}


def test_workers_are_scaled_and_scrapable(compose):
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    cmd = worker["command"]
    assert cmd[cmd.index("--web-port") + 1] == str(SCRAPED["worker"][0])
    assert cmd[cmd.index("--web-bind") + 1] == "0.0.0.0", "a worker bound to 127.0.0.1 cannot be scraped"
    gateway = compose["services"]["gateway"]["command"]
    assert gateway[gateway.index("--host") + 1] == "0.0.0.0"
    assert gateway[gateway.index("--port") + 1] == str(SCRAPED["gateway"][0])


def test_prometheus_scrapes_every_metrics_service_and_loads_the_rules(compose):
    prom = compose["services"]["prometheus"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in prom["volumes"])
    assert all((DEPLOY / host).is_file() for host in mounts), mounts
    config_in_container = "/etc/prometheus/prometheus.yml"
    assert f"--config.file={config_in_container}" in prom["command"]
    assert mounts["./prometheus/prometheus.yml"] == config_in_container
    config = load_yaml(PROM_CONFIG)
    rules_in_container = {v for k, v in mounts.items() if k == "./prometheus/rules.yml"}
    assert set(config["rule_files"]) == rules_in_container == {"/etc/prometheus/rules.yml"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for service, (port, job) in SCRAPED.items():
        assert service in compose["services"], service
        sd = jobs[job]["dns_sd_configs"][0]
        assert sd["names"] == [service] and sd["port"] == port, (job, sd)
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_image_is_the_release_of_the_pinned_module():
    """prom/prometheus v3.N.M is Go module v0.3NN.M; the image and deploy/tools.py's build agree."""
    tools = load_tools()
    image = load_yaml(COMPOSE)["services"]["prometheus"]["image"]
    m = re.fullmatch(r"v0\.3(\d\d)\.(\d+)", tools.PROMETHEUS_VERSION)
    assert m, tools.PROMETHEUS_VERSION
    assert image == f"prom/prometheus:v3.{int(m.group(1))}.{m.group(2)}"


def test_grafana_is_provisioned_with_the_dashboard_and_datasource(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert all((DEPLOY / host).is_dir() for host in mounts), mounts
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "zonewatch.yml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert (DEPLOY / "grafana" / "dashboards" / "zonewatch.json").is_file()
    ds = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    import json

    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "zonewatch.json").read_text())
    var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert var["current"]["value"] == ds["uid"]


def test_dockerfile_copies_every_package_and_installs_from_the_lock():
    from tests.deploy.conftest import PACKAGES

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for pkg in PACKAGES:
        assert f"COPY {pkg} ./{pkg}" in dockerfile, pkg
        assert f"!{pkg}/**" in ignore, pkg
    assert "--constraint requirements.lock" in dockerfile and "!requirements.lock" in ignore
