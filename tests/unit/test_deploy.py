"""The deployment files agree with the code (SPEC sections 8, 9 and 11) and expose nothing.

docker-compose.yml, deploy/Dockerfile, the Prometheus config and the Grafana provisioning
and dashboards name ports, environment variables, paths, datasource uids and metric names
that are defined in Python. Docker does not run here, so these tests check structure: a
renamed setting, a moved port or a dropped metric fails here, not in front of an operator.
(The wheel the Dockerfile installs is built, installed and run for real by `make wheel-test`.)

Security (README, "Security"): every secret is a required variable (`${VAR:?...}`, listed in
.env.example, written nowhere), every port is published on 127.0.0.1, every image is pinned to an
exact version, Grafana has no anonymous access and reads Postgres as crmbonus_reader (whose
privileges tests/integration/test_reader_role.py proves on a real Postgres), and every Kafka
listener a client can reach authenticates with SASL.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from stream import db
from stream import settings as settings_module
from stream.errors import CrmbonusError
from stream.metrics import NAMES, Metrics
from stream.plan import DEFAULT_PLAN_PATH, load_plan
from stream.reports import NONZERO_ROW
from stream.settings import Settings, bootstrap_servers, validate_broker
from tests.apache_kafka import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
POSTGRES_INIT = DEPLOY / "postgres" / "init"
READER_INIT_SCRIPT = POSTGRES_INIT / "10-crmbonus-reader.sh"
READER_MIGRATION = ROOT / "stream" / "migrations" / "0007_reader_role.sql"
ENV_EXAMPLE = ROOT / ".env.example"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
LEADERBOARD = DASHBOARDS / "leaderboard.json"
PIPELINE = DASHBOARDS / "pipeline.json"

SERVICES = {"kafka", "postgres", "worker", "prometheus", "grafana"}
POSTGRES_UID = "crmbonus-postgres"
PROMETHEUS_UID = "crmbonus-prometheus"
METRIC_RE = re.compile(r"crmbonus_[a-z_]+")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian: apt-get install prometheus)",
)


@cache
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


#: `${NAME:?message}`: compose refuses to start while NAME is unset or empty.
REQUIRED_RE = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*):\?(?P<message>[^}]+)\}")


def resolve(value: str) -> str:
    """Compose interpolation with every required variable set: `${X:?message}` -> a value for X."""
    resolved = REQUIRED_RE.sub(lambda match: f"secret{len(match.group('name'))}", value)
    assert "$" not in resolved.replace("$$", ""), f"{value!r} uses a variable that is not `${{VAR:?message}}`"
    return resolved


def required_variable(value: str) -> str:
    """The NAME of a value that is exactly `${NAME:?message}`."""
    match = REQUIRED_RE.fullmatch(value)
    assert match, f"{value!r} is not exactly a required variable `${{NAME:?message}}`"
    return match.group("name")


def published_ports(name: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of every port a service publishes, either compose syntax."""
    found = []
    for spec in service(name).get("ports", []):
        if isinstance(spec, dict):
            found.append((str(spec.get("host_ip", "")), int(spec.get("published", 0)), int(spec["target"])))
            continue
        parts = str(spec).split("/")[0].split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        found.append((host_ip, int(parts[-2]) if len(parts) >= 2 else 0, int(parts[-1])))
    return found


def bind_mounts(name: str) -> dict[Path, PurePosixPath]:
    """Host path (absolute, in this repo) -> container path, for a service's bind mounts."""
    mounts = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[(ROOT / source).resolve()] = PurePosixPath(target)
    return mounts


def web_port() -> int:
    return Settings().web_port


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_has_the_five_services_each_with_a_healthcheck() -> None:
    assert set(compose()["services"]) == SERVICES
    for name in SERVICES:
        check = service(name).get("healthcheck")
        assert check and check.get("test"), f"service {name} has no healthcheck"
        assert not check.get("disable", False), f"service {name} disables its healthcheck"


def test_compose_named_volumes_are_declared_and_used() -> None:
    declared = set(compose().get("volumes") or {})
    used = {
        volume.split(":")[0]
        for spec in compose()["services"].values()
        for volume in spec.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used == declared
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert any(not v.startswith((".", "/")) for v in service(name).get("volumes", [])), (
            f"{name} keeps its data in no named volume"
        )


def test_worker_environment_names_are_the_settings_constants() -> None:
    expected = {settings_module.ENV_BROKER, settings_module.ENV_DATABASE_URL, settings_module.ENV_PLAN,
                settings_module.ENV_KAFKA_SECURITY_PROTOCOL, settings_module.ENV_KAFKA_SASL_MECHANISM,
                settings_module.ENV_KAFKA_SASL_USERNAME, settings_module.ENV_KAFKA_SASL_PASSWORD,
                settings_module.ENV_WEB_HOST, settings_module.ENV_WEB_TOKEN}
    crmbonus_vars = {key for key in environment("worker") if key.startswith("CRMBONUS_")}
    assert crmbonus_vars == expected


def test_worker_broker_is_valid_and_is_kafkas_advertised_listener() -> None:
    broker = environment("worker")[settings_module.ENV_BROKER]
    validate_broker(broker)  # raises ConfigError on a malformed value
    advertised = {
        listener.split("://", 1)[1]
        for listener in environment("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert set(bootstrap_servers(broker)) <= advertised
    assert all(host.split(":")[0] in SERVICES for host in bootstrap_servers(broker))


def test_worker_database_url_points_at_the_postgres_service() -> None:
    url = environment("worker")[settings_module.ENV_DATABASE_URL]
    Settings(database_url=resolve(url))  # refuses anything but postgresql://
    pg = environment("postgres")
    match = re.fullmatch(r"postgresql://([^:]+):(.+)@([^:/]+):(\d+)/(\w+)", url)
    assert match, url
    user, password, host, port, database = match.groups()
    assert (user, host, port, database) == (pg["POSTGRES_USER"], "postgres", "5432", pg["POSTGRES_DB"])
    assert password == pg["POSTGRES_PASSWORD"], "the worker and postgres must share one password setting"


def test_worker_plan_path_is_the_shipped_plan_mounted_read_only() -> None:
    """CRMBONUS_PLAN names a read-only bind mount of deploy/plans/default.toml, the packaged plan."""
    plan_path = PurePosixPath(environment("worker")[settings_module.ENV_PLAN])
    mounted = {target: source for source, target in bind_mounts("worker").items()}
    assert plan_path in mounted, f"{plan_path} is not bind-mounted into the worker"
    assert mounted[plan_path] == DEFAULT_PLAN_PATH  # bind_mounts resolves the deploy/ symlink
    assert f"./deploy/plans/default.toml:{plan_path}:ro" in service("worker")["volumes"]
    assert load_plan(mounted[plan_path]).version  # a plan the worker would accept at start-up


def test_worker_listens_on_its_network_only_with_a_token() -> None:
    """SPEC section 16: a non-loopback bind needs CRMBONUS_WEB_TOKEN, a secret from .env."""
    env = environment("worker")
    assert env[settings_module.ENV_WEB_HOST] == "0.0.0.0"
    assert re.fullmatch(r"\$\{CRMBONUS_WEB_TOKEN:\?[^}]+\}", env[settings_module.ENV_WEB_TOKEN])
    assert "--web-insecure" not in " ".join(service("worker").get("command", []))


def test_worker_serves_on_the_settings_web_port() -> None:
    worker = service("worker")
    port = web_port()
    assert published_ports("worker") == [("127.0.0.1", port, port)]
    command = worker.get("command")
    if command is not None:
        args = command if isinstance(command, list) else shlex.split(command)
        assert args[:2] == ["crmbonus", "worker"]
        if "--web-port" in args:
            assert int(args[args.index("--web-port") + 1]) == port
    assert f"localhost:{port}/health" in " ".join(worker["healthcheck"]["test"])


def test_worker_builds_from_the_dockerfile_and_waits_for_healthy_services() -> None:
    worker = service("worker")
    assert (ROOT / worker["build"]["context"]).resolve() == ROOT
    assert (ROOT / worker["build"]["dockerfile"]).resolve() == DOCKERFILE
    depends = worker["depends_on"]
    for name in ("kafka", "postgres"):
        assert depends[name]["condition"] == "service_healthy"


def test_kafka_is_a_single_kraft_node() -> None:
    env = environment("kafka")
    node_id = env["KAFKA_NODE_ID"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = set(env["KAFKA_LISTENERS"].split(","))
    assert {"INTERNAL://:9092", "CONTROLLER://:9093"} <= listeners
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert "zookeeper" not in json.dumps(service("kafka")).lower()
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert {name.split("://")[0] for name in listeners} <= set(protocols)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    # Topics auto-created by an early publisher get the worker's partition count.
    assert int(env["KAFKA_NUM_PARTITIONS"]) == Settings().partitions
    assert "kafka-" in " ".join(service("kafka")["healthcheck"]["test"])


def test_postgres_service() -> None:
    pg = service("postgres")
    assert str(pg["image"]).startswith("postgres:16.")
    env = environment("postgres")
    assert env["POSTGRES_DB"] == env["POSTGRES_USER"] == "crmbonus"
    assert required_variable(env["POSTGRES_PASSWORD"]) == "CRMBONUS_POSTGRES_PASSWORD"
    assert "POSTGRES_HOST_AUTH_METHOD" not in env  # the image's default: scram-sha-256 with a password
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_grafana_requires_a_login_and_waits_for_its_datasources() -> None:
    """No anonymous viewers (they could query the Postgres datasource), no sign-up, an admin
    password the operator chose, no snapshot published outside."""
    env = environment("grafana")
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env.get("GF_USERS_ALLOW_SIGN_UP", "false") == "false"
    assert env.get("GF_AUTH_PROXY_ENABLED", "false") == "false"  # trusts a header anyone could send
    assert env.get("GF_AUTH_DISABLE_LOGIN_FORM", "false") == "false"
    assert env.get("GF_SECURITY_ADMIN_USER", "admin") == "admin"
    assert required_variable(env["GF_SECURITY_ADMIN_PASSWORD"]) == "CRMBONUS_GRAFANA_ADMIN_PASSWORD"
    assert env["GF_SNAPSHOTS_EXTERNAL_ENABLED"] == "false"
    assert set(service("grafana")["depends_on"]) >= {"prometheus", "postgres"}
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert PurePosixPath(home) == bind_mounts("grafana")[DASHBOARDS] / LEADERBOARD.name


# --- Prometheus -------------------------------------------------------------------------


def test_prometheus_scrapes_the_worker_web_port_every_15s() -> None:
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["crmbonus"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert interval == "15s"
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"worker:{web_port()}"]


def test_prometheus_mounts_its_config_and_rules() -> None:
    target = bind_mounts("prometheus")[PROMETHEUS.parent]
    command = service("prometheus").get("command", [])
    flags = dict(arg.split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)
    config_in_container = PurePosixPath(flags.get("--config.file", "/etc/prometheus/prometheus.yml"))
    assert config_in_container == target / PROMETHEUS.name
    for rule_file in load_yaml(PROMETHEUS)["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file(), rule_file


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_config() -> None:
    done = run_promtool("check", "config", PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    done = run_promtool("check", "rules", ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_cover_down_unhealthy_lag_and_dead_letters() -> None:
    exprs = {rule["alert"]: rule["expr"] for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]}
    joined = "\n".join(exprs.values())
    assert 'up{job="crmbonus"} == 0' in joined
    for metric in ("crmbonus_healthy", "crmbonus_consumer_lag_messages", "crmbonus_dead_letters_total"):
        assert metric in joined, metric


ALERT_TESTS = """
rule_files: [{alerts}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="crmbonus", instance="worker:6066"}}'
        values: '0x5'
      - series: 'crmbonus_healthy{{job="crmbonus", instance="worker:6066"}}'
        values: '0x5'
    alert_rule_test:
      - eval_time: 1m
        alertname: CrmbonusUnhealthy
        exp_alerts: []
      - eval_time: 3m
        alertname: CrmbonusUnhealthy
        exp_alerts:
          - exp_labels: {{severity: critical, job: crmbonus, instance: "worker:6066"}}
            exp_annotations:
              summary: "crmbonus worker worker:6066 reports unhealthy"
              description: "crmbonus_healthy has been 0 for 2 minutes: not consuming, or Postgres does not answer."
      - eval_time: 3m
        alertname: CrmbonusWorkerDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: crmbonus, instance: "worker:6066"}}
            exp_annotations:
              summary: "crmbonus worker worker:6066 is not being scraped"
              description: "Prometheus has not reached /metrics on worker:6066 for 2 minutes."
  - interval: 1m
    input_series:
      - series: 'crmbonus_healthy{{job="crmbonus", instance="worker:6066"}}'
        values: '1x30'
      - series: 'crmbonus_consumer_lag_messages{{job="crmbonus", instance="worker:6066", topic="crm.sales"}}'
        values: '0+100x30'
      - series: 'crmbonus_consumer_lag_messages{{job="crmbonus", instance="worker:6066", topic="crm.callbacks"}}'
        values: '0x30'
      - series: 'crmbonus_dead_letters_total{{job="crmbonus", instance="worker:6066", reason="invalid_json"}}'
        values: '0x10 1+1x20'
      - series: 'crmbonus_dead_letters_total{{job="crmbonus", instance="worker:6066", reason="schema_violation"}}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 25m
        alertname: CrmbonusUnhealthy
        exp_alerts: []
      - eval_time: 25m
        alertname: CrmbonusConsumerLagGrowing
        exp_alerts:
          - exp_labels: {{severity: warning, job: crmbonus, instance: "worker:6066", topic: crm.sales}}
            exp_annotations:
              summary: "crmbonus consumer lag on crm.sales keeps growing"
              description: "Lag on crm.sales is 2.5k messages and has grown for 10 minutes."
      - eval_time: 5m
        alertname: CrmbonusDeadLetters
        exp_alerts: []
      - eval_time: 15m
        alertname: CrmbonusDeadLetters
        exp_alerts:
          - exp_labels: {{severity: warning, reason: invalid_json}}
            exp_annotations:
              summary: "crmbonus is dead-lettering input (invalid_json)"
              description: "Invalid CRM events arrive; see the dead_letters table and the dead-letter topic."
"""


@needs_promtool
def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """promtool's rule unit tests on synthetic series: each alert fires for its condition only."""
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(textwrap.dedent(ALERT_TESTS).format(alerts=json.dumps(str(ALERTS))))
    done = run_promtool("test", "rules", tests)
    assert done.returncode == 0, done.stdout + done.stderr


# --- metric names -----------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exposed_metric_names() -> set[str]:
    """Every sample name a fresh Metrics() registry can expose, labelled children or not."""
    names: set[str] = set()
    family: Metric
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])
            if "expr" in target]


def test_metrics_names_list_is_what_the_registry_serves() -> None:
    """NAMES (README, dashboards) = the registry's families, counters with their `_total`."""
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert set(NAMES) == families
    assert len(NAMES) == len(set(NAMES))


def test_pipeline_dashboard_uses_only_exposed_metrics() -> None:
    exprs = dashboard_exprs(load_json(PIPELINE))
    assert exprs, "the pipeline dashboard has no Prometheus queries"
    used = {name for expr in exprs for name in METRIC_RE.findall(expr)}
    assert used <= exposed_metric_names(), sorted(used - exposed_metric_names())


def test_alerts_use_only_exposed_metrics() -> None:
    used = set(METRIC_RE.findall(ALERTS.read_text()))
    assert used <= exposed_metric_names(), sorted(used - exposed_metric_names())


def test_pipeline_dashboard_shows_every_metric() -> None:
    """A metric added to stream/metrics.py without a panel fails here."""
    used = {name for expr in dashboard_exprs(load_json(PIPELINE)) for name in METRIC_RE.findall(expr)}
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = [name for name in NAMES if name not in bases]
    assert not missing, missing


def test_pipeline_dashboard_has_the_required_queries() -> None:
    exprs = "\n".join(dashboard_exprs(load_json(PIPELINE)))
    for needle in (
        "sum by (topic) (rate(crmbonus_events_consumed_total",
        "sum by (reason) (rate(crmbonus_dead_letters_total",
        "histogram_quantile(0.5, sum by (le) (rate(crmbonus_processing_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(crmbonus_processing_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(crmbonus_db_write_duration_seconds_bucket",
        "sum by (topic) (crmbonus_consumer_lag_messages)",
        "time() - crmbonus_last_processed_timestamp_seconds",
    ):
        assert needle in exprs, needle


@needs_promtool
def test_pipeline_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's interval macros filled in, parsed by promtool as a recording rule."""
    rules = []
    for i, expr in enumerate(dashboard_exprs(load_json(PIPELINE))):
        concrete = re.sub(r"\$__(rate_interval|interval|range)", "1m", expr)
        assert "$" not in concrete, f"unhandled Grafana variable in {expr!r}"
        rules.append({"record": f"crmbonus:dashboard_query_{i}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Grafana ----------------------------------------------------------------------------


def datasources() -> dict[str, dict[str, Any]]:
    config = load_yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    return {source["uid"]: source for source in config["datasources"]}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_datasources_have_the_fixed_uids_and_point_at_the_compose_services() -> None:
    sources = datasources()
    assert set(sources) == {POSTGRES_UID, PROMETHEUS_UID}

    pg = sources[POSTGRES_UID]
    pg_env = environment("postgres")
    assert pg["type"] == "grafana-postgresql-datasource"
    assert pg["url"] == "postgres:5432"
    assert pg["user"] == reader_role() != pg_env["POSTGRES_USER"]  # never the owner (a superuser)
    assert pg["jsonData"]["database"] == pg_env["POSTGRES_DB"]
    assert pg["jsonData"]["sslmode"] == "disable"
    # the reader's password: the one the postgres service gives deploy/postgres/init/ to create it with
    variable = provisioning_variable(pg["secureJsonData"]["password"])
    assert environment("grafana")[variable] == pg_env[variable]
    assert required_variable(pg_env[variable]) == "CRMBONUS_GRAFANA_DB_PASSWORD"

    prom = sources[PROMETHEUS_UID]
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    assert published_ports("prometheus") == [("127.0.0.1", 9090, 9090)]


def test_grafana_mounts_provisioning_and_the_dashboard_folder_the_provider_reads() -> None:
    mounts = bind_mounts("grafana")
    assert mounts[DEPLOY / "grafana" / "provisioning"] == PurePosixPath("/etc/grafana/provisioning")
    providers = load_yaml(DASHBOARD_PROVIDERS)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert PurePosixPath(provider["options"]["path"]) == mounts[DASHBOARDS] == PurePosixPath(
        "/var/lib/grafana/dashboards"
    )


def datasource_refs(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, datasource) for every panel, target and templating variable that names one."""
    refs = []
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        refs.append((f"panel {panel.get('title')!r}", panel.get("datasource")))
        for target in panel.get("targets", []):
            refs.append((f"target {target.get('refId')} of {panel.get('title')!r}", target.get("datasource")))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            refs.append((f"variable {variable['name']}", variable.get("datasource")))
    return refs


@pytest.mark.parametrize(("path", "uid", "datasource_uid"), [
    (LEADERBOARD, "crmbonus-leaderboard", POSTGRES_UID),
    (PIPELINE, "crmbonus-pipeline", PROMETHEUS_UID),
])
def test_dashboard_references_only_provisioned_datasources(path: Path, uid: str, datasource_uid: str) -> None:
    dashboard = load_json(path)
    sources = datasources()
    assert dashboard["uid"] == uid
    assert dashboard["refresh"] == "30s"
    refs = datasource_refs(dashboard)
    assert refs
    for where, ref in refs:
        assert isinstance(ref, dict) and "uid" in ref, f"{path.name}: {where} names no datasource uid"
        assert ref["uid"] in sources, f"{path.name}: {where} uses unknown datasource {ref['uid']!r}"
        assert ref.get("type", sources[ref["uid"]]["type"]) == sources[ref["uid"]]["type"], where
        assert ref["uid"] == datasource_uid, f"{path.name}: {where} uses {ref['uid']!r}"


def test_dashboard_panel_ids_and_uids_are_unique() -> None:
    dashboards = [load_json(path) for path in sorted(DASHBOARDS.glob("*.json"))]
    assert {d["uid"] for d in dashboards} == {"crmbonus-leaderboard", "crmbonus-pipeline"}
    for dashboard in dashboards:
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), dashboard["uid"]


def test_leaderboard_variables_and_panels() -> None:
    dashboard = load_json(LEADERBOARD)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"period", "role", "worker_url"}
    assert variables["period"]["type"] == "query"
    periods = f"SELECT DISTINCT period FROM bonus_running WHERE {NONZERO_ROW} ORDER BY 1 DESC"
    assert variables["period"]["query"] == periods
    role = variables["role"]
    assert role["type"] == "custom"
    assert [o.strip() for o in role["query"].split(",")] == ["telemarketer", "field_rep"]
    assert role["includeAll"] is True
    kinds = [panel["type"] for panel in panels(dashboard)]
    assert kinds.count("table") == 1
    assert kinds.count("barchart") == 1
    assert kinds.count("stat") == 3
    for panel in panels(dashboard):
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert "bonus_running" in sql
            assert "${period:sqlstring}" in sql and "${role:sqlstring}" in sql, panel["title"]
            if "ORDER BY" in sql:  # a list of people: zero rows left out, as every reader does (SPEC 14)
                assert NONZERO_ROW in sql, panel["title"]


def test_leaderboard_links_each_person_to_the_statement_page_without_a_token() -> None:
    """SPEC section 15: each leaderboard row links to /statement; the worker's address is a variable
    (default: the compose worker's published port on this machine); no token in any link."""
    dashboard = load_json(LEADERBOARD)
    worker_url = {v["name"]: v for v in dashboard["templating"]["list"]}["worker_url"]
    assert (worker_url["type"], worker_url["query"], worker_url["current"]["value"]) == (
        "textbox", "http://localhost:6066", "http://localhost:6066")
    (table,) = [panel for panel in panels(dashboard) if panel["type"] == "table"]
    links = [(override["matcher"], prop["value"]) for override in table["fieldConfig"]["overrides"]
             for prop in override["properties"] if prop["id"] == "links"]
    assert links == [({"id": "byName", "options": "person_id"}, [{
        "title": "Statement of ${__data.fields.person_id}, ${period}",
        "url": "${worker_url}/statement?person=${__data.fields.person_id:percentencode}"
               "&period=${period:percentencode}",
        "targetBlank": True}])]
    assert any("person_id" in target["rawSql"] for target in table["targets"])
    assert "token" not in json.dumps(dashboard).lower().replace("carry no token", "").replace(
        "carries no token", "").replace("crmbonus_web_token", "")


# --- security: secrets, binds, images, the reader role, Kafka SASL ------------------------------

#: Where a secret may be, in compose values: a variable whose name says so, a Kafka JAAS option,
#: the password of a URL.
SECRET_KEY_RE = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|JAAS|PRIVATE_KEY", re.IGNORECASE)
JAAS_SECRET_RE = re.compile(r'\b(?:password|user_\w+)=\\?"(?P<value>[^"\\]*)\\?"')
URL_PASSWORD_RE = re.compile(r"\w+://[^:/@\s]+:(?P<value>\$\{[^}]*\}|[^@\s]+)@")
#: Exact versions: 4.4.0, v2.55.1, and Postgres's two-part 16.6 (a bare major or minor floats, and
#: so does `latest`).
EXACT_TAG_RE = re.compile(r"v?\d+\.\d+\.\d+")
POSTGRES_TAG_RE = re.compile(r"\d+\.\d+")


def reader_role() -> str:
    """The role migration 0007 grants to (the one name the reader has everywhere)."""
    match = re.search(r"reader CONSTANT name := '(\w+)'", READER_MIGRATION.read_text())
    assert match, f"{READER_MIGRATION.name} names no reader role"
    return match.group(1)


def provisioning_variable(value: str) -> str:
    """The NAME of a Grafana provisioning value that is exactly `$NAME` or `${NAME}`."""
    match = re.fullmatch(r"\$(\w+)|\$\{(\w+)\}", str(value))
    assert match, f"{value!r} is written into the provisioning file instead of read from the environment"
    return match.group(1) or match.group(2)


def env_example() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, text) of every string (and number) in a parsed YAML document, keys included."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            found.append((f"{path}.{key}(key)", str(key)))
            found.extend(strings(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in strings(item, f"{path}[{i}]")]
    return [] if value is None else [(path, str(value))]


def is_secret_reference(value: str, name: str) -> bool:
    """`${VAR:?...}` (compose), or `$$VAR` / `$${VAR}` (the container's own environment, at run
    time) naming a variable the service `name` gets as `${VAR:?...}`."""
    if REQUIRED_RE.fullmatch(value):
        return True
    match = re.fullmatch(r"\$\$(\w+)|\$\$\{(\w+)\}", value)
    if not match:
        return False
    variable = match.group(1) or match.group(2)
    return bool(REQUIRED_RE.fullmatch(environment(name).get(variable, "")))


def test_every_variable_compose_reads_is_required_and_listed_in_env_example() -> None:
    """No default anywhere (`${X:-admin}` is a password everyone knows), so `docker compose up`
    refuses to start until each is set; .env.example lists exactly these, with no value."""
    text = re.sub(r"(?m)^\s*#.*$", "", COMPOSE.read_text()).replace("$$", "")
    references = re.findall(r"\$\{[^}]*\}|\$\w+", text)
    assert references, "compose reads no variable: where do the secrets come from?"
    names = {required_variable(reference) for reference in references}
    assert names == {"CRMBONUS_POSTGRES_PASSWORD", "CRMBONUS_GRAFANA_DB_PASSWORD", "CRMBONUS_GRAFANA_ADMIN_PASSWORD",
                     "CRMBONUS_KAFKA_SASL_PASSWORD", "CRMBONUS_KAFKA_BROKER_PASSWORD", "CRMBONUS_WEB_TOKEN"}
    example = env_example()
    assert set(example) == names
    assert all(value == "" for value in example.values()), "a value in .env.example would be everyone's password"


def test_every_secret_comes_from_the_environment_and_none_is_written() -> None:
    """Every place a secret goes (an environment variable named like one, a JAAS password or
    user_ entry, a URL's password) holds a required variable, in every service."""
    checked = 0
    for name, spec in compose()["services"].items():
        for path, text in strings(spec, name):
            key = path.rsplit(".", 1)[-1]
            if SECRET_KEY_RE.search(key) and "JAAS" not in key.upper() and not key.endswith("(key)"):
                assert is_secret_reference(text, name), f"{path}: {text!r} is not a required variable"
                checked += 1
            for match in [*JAAS_SECRET_RE.finditer(text), *URL_PASSWORD_RE.finditer(text)]:
                assert is_secret_reference(match.group("value"), name), f"{path}: a secret written in {text!r}"
                checked += 1
    # the five passwords and the web token, wherever they go: postgres 2, kafka 6 (JAAS 4, its
    # environment, the healthcheck), the worker 3 (Kafka, the database URL, the web token),
    # grafana 2; a new one is counted here
    assert checked == 13, checked


def test_no_secret_is_written_in_the_provisioning_or_init_files() -> None:
    for source in load_yaml(DATASOURCES)["datasources"]:
        for value in (source.get("secureJsonData") or {}).values():
            provisioning_variable(value)  # asserts
        for key in ("password", "basicAuthPassword"):
            assert key not in source and key not in (source.get("jsonData") or {}), f"{source['uid']}: {key}"
    script = READER_INIT_SCRIPT.read_text()
    assert "\\getenv reader_password CRMBONUS_GRAFANA_DB_PASSWORD" in script
    assert re.search(r"PASSWORD :'reader_password'", script)
    assert not re.search(r"PASSWORD\s+'", script), "a literal password in the init script"
    assert "--set" not in script and " -v reader" not in script, "a secret on psql's command line"
    for path in [DATASOURCES, DASHBOARD_PROVIDERS, PROMETHEUS, ALERTS, READER_INIT_SCRIPT, COMPOSE]:
        text = path.read_text()
        for known in ("admin-secret", ":-admin", ":-crmbonus", "change-me", "changeme"):
            assert known not in text, f"{path.name} holds {known!r}"


def test_every_published_port_is_bound_to_the_loopback() -> None:
    """A laptop's stack is not a network service: each port on 127.0.0.1 only (put a TLS proxy
    in front to serve further; README, "Security"). The controller and Postgres-internal ports
    are not published at all."""
    published = {}
    for name, spec in compose()["services"].items():
        assert spec.get("network_mode") != "host", name
        for host_ip, host_port, container_port in published_ports(name):
            assert host_ip == "127.0.0.1", f"{name} publishes {container_port} on {host_ip or 'every interface'}"
            assert host_port, f"{name} publishes {container_port} on a random port"
            published[name] = published.get(name, set()) | {container_port}
    assert published == {"kafka": {9094}, "postgres": {5432}, "worker": {web_port()}, "prometheus": {9090},
                         "grafana": {3000}}


def test_every_image_is_pinned_to_an_exact_version() -> None:
    """No `latest`, no bare major (`postgres:16`) that changes under a running stack; the worker's
    image is built here and never pulled (a same-named image elsewhere is not ours)."""
    for name, spec in compose()["services"].items():
        image = str(spec.get("image", ""))
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} names no tag"
        if "build" in spec:
            assert tag != "latest" and spec.get("pull_policy") == "build", f"{name}: {image!r} could be pulled"
            continue
        exact = POSTGRES_TAG_RE if repository == "postgres" else EXACT_TAG_RE
        assert exact.fullmatch(tag), f"{name}: {image!r} is not an exact version"
    images = {name: str(spec["image"]) for name, spec in compose()["services"].items()}
    assert images["kafka"] == f"apache/kafka:{KAFKA_VERSION}"  # the broker the tests run (deploy/kafka/pom.xml)
    major = int(images["postgres"].split(":")[1].split(".")[0])
    assert major * 100 == datasources()[POSTGRES_UID]["jsonData"]["postgresVersion"]


def test_postgres_creates_the_reader_role_at_its_first_start() -> None:
    """deploy/postgres/init/ is the image's /docker-entrypoint-initdb.d (read-only); its script
    makes the role the migration grants to and the datasource logs in as, with the password the
    postgres service gets from the environment."""
    assert bind_mounts("postgres")[POSTGRES_INIT] == PurePosixPath("/docker-entrypoint-initdb.d")
    assert "./deploy/postgres/init:/docker-entrypoint-initdb.d:ro" in service("postgres")["volumes"]
    files = sorted(POSTGRES_INIT.iterdir())
    assert files == [READER_INIT_SCRIPT]
    assert os.access(READER_INIT_SCRIPT, os.X_OK), "not executable: the entrypoint would source it"
    script = READER_INIT_SCRIPT.read_text()
    assert f"CREATE ROLE {reader_role()}" in script and f"ALTER ROLE {reader_role()} WITH LOGIN NOSUPERUSER" in script
    assert required_variable(environment("postgres")["CRMBONUS_GRAFANA_DB_PASSWORD"])
    if shutil.which("bash"):
        done = subprocess.run(["bash", "-n", str(READER_INIT_SCRIPT)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def image_property(variable: str) -> str:
    """The server.properties key the apache/kafka image makes of an environment variable
    (KafkaDockerWrapper: drop KAFKA_, lower case, `_` -> `.`, `___` -> `-`, `__` -> `_`)."""
    return (variable.replace("KAFKA_", "").lower().replace("_", ".").replace("...", "-").replace("..", "_"))


def kafka_listeners() -> dict[str, str]:
    """Listener name -> security protocol, from the compose Kafka's environment."""
    env = environment("kafka")
    return dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))


def jaas(listener: str, mechanism: str) -> str:
    variable = f"KAFKA_LISTENER_NAME_{listener}_{mechanism.replace('-', '___')}_SASL_JAAS_CONFIG"
    assert image_property(variable) == f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
    config = environment("kafka").get(variable)
    assert config, f"no {variable}: listener {listener} has no {mechanism} accounts"
    return config


def jaas_users(config: str) -> dict[str, str]:
    return dict(re.findall(r'\buser_(\w+)="([^"]*)"', config))


def test_every_kafka_listener_a_client_reaches_authenticates_with_sasl() -> None:
    env = environment("kafka")
    listeners = kafka_listeners()
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    mechanisms = env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    assert mechanisms == ["PLAIN"]  # SCRAM needs users added at format time, which the image does itself
    advertised = {item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    bound = {item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_LISTENERS"].split(",")}
    assert set(bound) == set(listeners)
    for name, protocol in listeners.items():
        # the image's env-to-property rule turns `_` into `.`; its start script treats listener
        # names with SASL_ or SSL in them as asking for a JAAS file or keystores
        assert re.fullmatch(r"[A-Z]+", name) and "SSL" not in name, name
        if name == controller:
            assert name not in advertised and protocol == "PLAINTEXT"  # KRaft's own, inside the container
            continue
        assert protocol in ("SASL_PLAINTEXT", "SASL_SSL"), f"listener {name} is {protocol}: no authentication"
        for mechanism in mechanisms:
            config = jaas(name, mechanism)
            assert config.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required ")
            assert config.endswith(";")
            assert jaas_users(config), f"{name}: no accounts"
    published = {port for _, _, port in published_ports("kafka")}
    assert {int(address.rsplit(":", 1)[1]) for address in [bound[controller]]}.isdisjoint(published)
    # inter-broker traffic uses an account of its own, on an authenticated listener
    inter = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert listeners[inter].startswith("SASL_") and env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] in mechanisms
    config = jaas(inter, env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"])
    login = dict(re.findall(r'\b(username|password)="([^"]*)"', config))
    assert jaas_users(config)[login["username"]] == login["password"]
    assert required_variable(login["password"]) == "CRMBONUS_KAFKA_BROKER_PASSWORD"
    assert "KAFKA_OPTS" not in env  # no JAAS file: the accounts are these variables


def test_the_worker_logs_in_to_kafka_as_the_broker_expects() -> None:
    """The worker's SPEC section 11 settings match its listener, and its account (the same user and
    password on the host's listener, for `crmbonus publish`) is one the broker knows."""
    worker = environment("worker")
    broker = bootstrap_servers(worker[settings_module.ENV_BROKER])
    advertised = {item.split("://")[1]: item.split("://")[0]
                  for item in environment("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    (listener,) = {advertised[address] for address in broker}
    protocol = worker[settings_module.ENV_KAFKA_SECURITY_PROTOCOL]
    mechanism = worker[settings_module.ENV_KAFKA_SASL_MECHANISM]
    username = worker[settings_module.ENV_KAFKA_SASL_USERNAME]
    password = worker[settings_module.ENV_KAFKA_SASL_PASSWORD]
    assert protocol == kafka_listeners()[listener]
    assert mechanism in environment("kafka")["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    settings_module.KafkaSecurity(protocol=protocol, sasl_mechanism=mechanism, sasl_username=username,
                                  sasl_password=resolve(password))  # what the worker accepts at start-up
    host_listener = advertised[f"localhost:{published_ports('kafka')[0][1]}"]
    for name in (listener, host_listener):
        assert jaas_users(jaas(name, mechanism)).get(username) == password, f"{name} does not know {username}"
    assert required_variable(password) == settings_module.ENV_KAFKA_SASL_PASSWORD


def test_the_kafka_healthcheck_logs_in_as_the_worker_would() -> None:
    """The check writes a client config from the container's environment (no secret in the file
    here) and asks the broker for its API versions on the worker's listener."""
    (kind, command) = service("kafka")["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    worker = environment("worker")
    assert f"security.protocol={worker[settings_module.ENV_KAFKA_SECURITY_PROTOCOL]}" in command
    assert f"sasl.mechanism={worker[settings_module.ENV_KAFKA_SASL_MECHANISM]}" in command
    assert f'username=\\"{worker[settings_module.ENV_KAFKA_SASL_USERNAME]}\\"' in command
    assert 'password=\\"$$CRMBONUS_KAFKA_SASL_PASSWORD\\"' in command
    assert environment("kafka")["CRMBONUS_KAFKA_SASL_PASSWORD"] == worker[settings_module.ENV_KAFKA_SASL_PASSWORD]
    config = re.search(r"> (\S+) &&", command)
    assert config and f"--command-config {config.group(1)}" in command
    assert f"--bootstrap-server {bootstrap_servers(worker[settings_module.ENV_BROKER])[0]}" in command


# --- deploy/Dockerfile ------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM arguments, the stage's other instructions) for each stage, in order."""
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for word, args in dockerfile_instructions():
        if word == "FROM":
            stages.append((args, []))
        else:
            assert stages, f"{word} before the first FROM"
            stages[-1][1].append((word, args))
    return stages


def project_packages() -> list[str]:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return [name.rstrip("*") for name in packages["include"]]


def test_dockerfile_base_port_healthcheck_and_command() -> None:
    instructions = dockerfile_instructions()
    for from_args, _ in dockerfile_stages():
        assert from_args.split()[0] == "python:3.11-slim", from_args
    exposed = [args for word, args in instructions if word == "EXPOSE"]
    assert exposed == [str(web_port())]
    (healthcheck,) = [args for word, args in instructions if word == "HEALTHCHECK"]
    assert f"http://localhost:{web_port()}/health" in healthcheck
    assert "curl" not in healthcheck  # python:3.11-slim has none
    cmd = [json.loads(args) for word, args in instructions if word == "CMD"]
    assert cmd[-1] == ["crmbonus", "worker"]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [(i, args) for i, (word, args) in enumerate(instructions) if word == "USER"]
    assert users, "no USER: the worker would run as root"
    last_index, last_user = users[-1]
    assert last_user.split(":")[0] not in {"root", "0"}
    assert last_index < max(i for i, (word, _) in enumerate(instructions) if word == "CMD")


def test_dockerfile_builds_the_wheel_and_installs_it_not_editable() -> None:
    """A build stage runs `pip wheel` of the project; the image `pip install`s that wheel into
    site-packages, where the migrations and the default plan are package data. No editable
    install, no source tree in the image, no COPY of deploy/."""
    stages = dockerfile_stages()
    assert len(stages) == 2, f"expected a build stage and the image, found {len(stages)} stage(s)"
    (build_from, build), (_, final) = stages
    build_args = build_from.split()
    assert len(build_args) == 3 and build_args[1].upper() == "AS", build_from
    build_name = build_args[2]

    copies = [args.split() for word, args in build if word == "COPY"]
    sources = {source.rstrip("/") for args in copies for source in args[:-1]}
    for name in [*project_packages(), "pyproject.toml", "README.md"]:  # README.md: pyproject's `readme`
        assert name in sources, f"the build stage does not copy {name}"
    workdir = PurePosixPath([args for word, args in build if word == "WORKDIR"][-1])
    build_runs = " && ".join(args for word, args in build if word == "RUN")
    wheel = re.search(r"pip wheel (?=[^&;]*--no-deps)[^&;]*-w (\S+) (\S+)", build_runs)
    assert wheel, "the build stage must `pip wheel --no-deps -w DIR PROJECT`"
    wheel_dir, project = PurePosixPath(wheel.group(1)), PurePosixPath(wheel.group(2))
    assert workdir / project == workdir, f"`pip wheel` builds {project}, not the copied project in {workdir}"

    (from_build,) = [args.split() for word, args in final if word == "COPY" and args.startswith("--from=")]
    assert from_build[0] == f"--from={build_name}" and PurePosixPath(from_build[1]) == wheel_dir, from_build
    final_runs = " && ".join(args for word, args in final if word == "RUN")
    installed = re.search(rf"pip install (\S*{re.escape(from_build[2].rstrip('/'))}/crmbonus-\*\.whl)", final_runs)
    assert installed, f"the image must `pip install {from_build[2].rstrip('/')}/crmbonus-*.whl`"
    final_copies = {args.split()[0] for word, args in final if word == "COPY" and not args.startswith("--from=")}
    assert final_copies <= {"pyproject.toml"}, f"the image copies source files: {final_copies}"
    env = " ".join(args for word, args in final if word == "ENV")
    assert re.search(r"\bCRMBONUS_DATA_DIR=/var/lib/crmbonus\b", env), "the image sets CRMBONUS_DATA_DIR"


def test_dockerfile_has_no_editable_install_and_no_copy_of_deploy() -> None:
    instructions = dockerfile_instructions()
    for word, args in instructions:
        if word == "RUN" and "pip install" in args:
            assert not re.search(r"(^|\s)(-e|--editable)(\s|=|$)", args), f"an editable install remains: {args}"
        if word == "COPY":
            sources = [s for s in args.split()[:-1] if not s.startswith("--")]
            assert not any(PurePosixPath(s).parts[:1] == ("deploy",) for s in sources), f"COPY of deploy/: {args}"


# --- packaging: migrations and the default plan are package data -----------------------


def test_migrations_and_default_plan_live_in_the_package_and_deploy_links_to_them() -> None:
    """One copy of each file: the real files are package data under stream/ (so the wheel carries
    them), and deploy/migrations and deploy/plans/default.toml are relative symlinks to them."""
    for link, target in ((DEPLOY / "migrations", db.MIGRATIONS_DIR), (DEPLOY / "plans" / "default.toml",
                                                                      DEFAULT_PLAN_PATH)):
        where = link.relative_to(ROOT)
        assert link.is_symlink(), f"{where} must be a symlink into the package, not a second copy"
        assert not os.path.isabs(os.readlink(link)), f"{where} must be a relative symlink"
        assert link.resolve() == target, f"{where} points at {link.resolve()}, not at {target}"
        assert not target.is_symlink() and target.is_relative_to(ROOT / "stream"), target
    assert db.MIGRATIONS_DIR == ROOT / "stream" / "migrations"
    assert DEFAULT_PLAN_PATH == ROOT / "stream" / "plans" / "default.toml"


def test_package_data_covers_every_migration_and_the_default_plan() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["stream"]
    shipped = {path for pattern in patterns for path in (ROOT / "stream").glob(pattern)}
    migrations = db.migration_files()
    assert [path.stem for path in migrations][:5] == [
        "0001_events", "0002_credits", "0003_settlement", "0004_customers", "0005_person_totals",
    ]  # the database records applied migrations by these stems: never rename them
    missing = [path for path in [*migrations, DEFAULT_PLAN_PATH] if path not in shipped]
    assert not missing, f"not in [tool.setuptools.package-data] stream: {missing}"


def test_no_migrations_found_is_an_error_naming_the_directory(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(CrmbonusError, match=re.escape(f"no SQL migrations in {tmp_path}")):
        db.migration_files()
