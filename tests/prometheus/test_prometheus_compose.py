"""docker-compose.yml and the other stack files, checked as files (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tiertrace.config import structure_section
from tiertrace_prometheus import PrometheusConfig
from tiertrace_prometheus.stack_files import write_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stack")
    write_stack(directory)
    return directory


@pytest.fixture(scope="module")
def compose(stack: Path) -> dict:
    return yaml.safe_load((stack / "docker-compose.yml").read_text())


def test_every_backend_image_is_pinned(compose: dict) -> None:
    services = compose["services"]
    assert {"mlflow", "jaeger", "prometheus", "alertmanager", "grafana", "pushgateway", "app"} <= set(services)
    for name, service in services.items():
        if name == "app":
            continue  # the user's own image, required through APP_IMAGE
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_ports_of_the_stack(compose: dict) -> None:
    published = {name: {str(p).split(":")[0] for p in service.get("ports", [])}
                 for name, service in compose["services"].items()}
    assert published["jaeger"] >= {"4317", "4318", "16686"}
    assert published["prometheus"] == {"9090"}
    assert published["alertmanager"] == {"9093"}
    assert published["grafana"] == {"3000"}
    assert published["mlflow"] == {"5000"}
    assert published["pushgateway"] == {"9091"}
    assert compose["services"]["app"]["expose"] == ["9464"]


def test_bind_mounts_exist_and_volumes_are_declared(stack: Path, compose: dict) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (stack / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"


def test_prometheus_keeps_exemplars_and_scrapes_the_app(stack: Path, compose: dict) -> None:
    command = compose["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    config = yaml.safe_load((stack / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tiertrace"]["static_configs"][0]["targets"] == ["app:9464"]
    assert jobs["tiertrace"]["metrics_path"] == "/metrics"
    assert jobs["pushgateway"]["honor_labels"] is True
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_app_is_wired_to_all_three_tiers(stack: Path, compose: dict) -> None:
    app = compose["services"]["app"]
    env = app["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert env["TIERTRACE_CONFIG"] == "/etc/tiertrace/tiertrace.yaml"
    assert "./tiertrace.yaml:/etc/tiertrace/tiertrace.yaml:ro" in app["volumes"]
    config = yaml.safe_load((stack / "tiertrace.yaml").read_text())["observability"]
    assert config["mlflow"]["tracking_uri"] == "http://mlflow:5000"
    assert config["opentelemetry"]["endpoint"] == "http://jaeger:4318"
    prometheus = structure_section(PrometheusConfig, config["prometheus"], "observability.prometheus")
    assert (prometheus.host, prometheus.port, prometheus.path) == ("0.0.0.0", 9464, "/metrics")
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_grafana_provisioning_points_at_the_dashboards_and_links_exemplars_to_jaeger(stack: Path, compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    provider = yaml.safe_load((stack / "grafana/provisioning/dashboards/tiertrace.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = {s["uid"]: s for s in yaml.safe_load(
        (stack / "grafana/provisioning/datasources/tiertrace.yml").read_text())["datasources"]}
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger"}]
    assert sources["jaeger"]["url"] == "http://jaeger:16686"


def test_alertmanager_example_routes_and_inhibits_real_alerts(stack: Path) -> None:
    config = yaml.safe_load((stack / "alertmanager/alertmanager.yml").read_text())
    receivers = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    assert all(route["receiver"] in receivers for route in config["route"]["routes"])
    alerts = yaml.safe_load((stack / "prometheus/rules/tiertrace-alerts.yml").read_text())
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
    mentioned = set()
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            mentioned |= set(re.findall(r"Tiertrace\w+", matcher))
    assert mentioned and mentioned <= names


def test_the_app_config_is_valid_for_every_tier(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiertrace.yaml configures all three tiers: validate it as `tiertrace check-config` does."""
    from importlib.metadata import entry_points

    from tiertrace import plugins
    from tiertrace.config import load_observability

    installed = {ep.name for ep in entry_points(group="tiertrace.tiers")}
    missing = {"mlflow", "opentelemetry"} - installed
    if missing:
        pytest.skip(f"the {', '.join(sorted(missing))} tier is not installed: its section cannot be checked")
    monkeypatch.delenv("TIERTRACE_LOAD_PLUGINS")
    observability, label = load_observability(str(stack / "tiertrace.yaml"))
    infos = plugins.discover()
    _, sections = plugins.split_config(observability, label, infos)
    plugins.configure_tiers(infos, sections, label)  # raises ConfigError on any bad key or value
    configured = {info.name: info.config for info in infos if info.name in ("mlflow", "opentelemetry", "prometheus")}
    assert all(config is not None for config in configured.values()), configured


def test_stack_readme_names_the_ports_of_the_compose_file(stack: Path, compose: dict) -> None:
    readme = (stack / "README.md").read_text()
    for service in ("grafana", "prometheus", "alertmanager", "mlflow", "pushgateway"):
        host_port = str(compose["services"][service]["ports"][0]).split(":")[0]
        assert f"http://localhost:{host_port}" in readme, service
