"""The shipped ops files: `tiertrace stack init`, promtool check/test rules, and the dashboard's queries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

import tiertrace
from tiertrace_prometheus.stack_files import StackSettings, write_stack

from prom_helpers import metric_names, need_binary, run_article_writer, samples

HERE = Path(__file__).parent


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    write_stack(tmp_path / "stack")
    return tmp_path / "stack"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


# --- tiertrace stack init ---------------------------------------------------------------


def test_stack_init_through_the_tiertrace_command(tmp_path: Path) -> None:
    target = tmp_path / "ops"
    run = subprocess.run(
        [sys.executable, "-m", "tiertrace", "stack", "init", str(target), "--daily-budget-usd", "20",
         "--app-target", "host.docker.internal:9464", "--error-ratio", "0.1"],
        capture_output=True, text=True, timeout=60, env={"TIERTRACE_LOAD_PLUGINS": "prometheus", "PATH": ""},
    )
    assert run.returncode == 0, run.stderr
    written = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert {
        "docker-compose.yml", "tiertrace.yaml", "prometheus/prometheus.yml",
        "prometheus/rules/tiertrace-alerts.yml", "prometheus/rules/tiertrace-recording.yml",
        "alertmanager/alertmanager.yml", "grafana/dashboards/tiertrace.json",
        "grafana/provisioning/datasources/tiertrace.yml", "grafana/provisioning/dashboards/tiertrace.yml",
    } <= written
    for path in target.rglob("*"):
        if path.is_file():
            assert "@@" not in path.read_text(), f"placeholder left in {path}"
    alerts = (target / "prometheus/rules/tiertrace-alerts.yml").read_text()
    assert "* 24 > 20\n" in alerts and ") > 0.1\n" in alerts and "threshold 10%" in alerts
    assert '"host.docker.internal:9464"' in (target / "prometheus/prometheus.yml").read_text()
    # A second run refuses to overwrite, --force overwrites.
    again = subprocess.run([sys.executable, "-m", "tiertrace", "stack", "init", str(target)],
                           capture_output=True, text=True, timeout=60,
                           env={"TIERTRACE_LOAD_PLUGINS": "prometheus", "PATH": ""})
    assert again.returncode == 1 and "--force" in again.stderr
    forced = subprocess.run([sys.executable, "-m", "tiertrace", "stack", "init", str(target), "--force"],
                            capture_output=True, text=True, timeout=60,
                            env={"TIERTRACE_LOAD_PLUGINS": "prometheus", "PATH": ""})
    assert forced.returncode == 0 and "* 24 > 50\n" in (target / "prometheus/rules/tiertrace-alerts.yml").read_text()


def test_bad_thresholds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="below 1"):
        write_stack(tmp_path, StackSettings(error_ratio=5))
    with pytest.raises(ValueError, match="duration"):
        write_stack(tmp_path, StackSettings(scrape_interval="15 seconds"))


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_and_the_prometheus_config(stack: Path) -> None:
    rules = sorted(str(p) for p in (stack / "prometheus/rules").glob("*.yml"))
    checked = promtool("check", "rules", *rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    config = promtool("check", "config", str(stack / "prometheus/prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_every_alert(stack: Path) -> None:
    rules_dir = stack / "prometheus/rules"
    shutil.copy(HERE / "alerts_test.yml", rules_dir / "alerts_test.yml")
    run = promtool("test", "rules", str(rules_dir / "alerts_test.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_has_a_firing_and_a_quiet_case_and_readable_annotations(stack: Path) -> None:
    alerts = yaml.safe_load((stack / "prometheus/rules/tiertrace-alerts.yml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    tests = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name}: no firing case"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name}: no quiet case"
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "rate(workflow_duration_seconds_bucket[" in exprs["TiertraceHighLatency"]
    assert "sum by (workflow, le)" in exprs["TiertraceHighLatency"]
    assert "sum by (workflow) (increase(workflow_runs_total[15m])) >= 10" in exprs["TiertraceHighErrorRate"]


def test_the_compose_prometheus_config_loads_the_rules_prometheus_really_runs(stack: Path, tmp_path: Path) -> None:
    """The real prometheus binary starts with the shipped config and loads both rule groups."""
    from prom_helpers import PrometheusServer, free_port, http_get

    binary = need_binary("prometheus")
    port = free_port()
    server = PrometheusServer(
        [binary, f"--config.file={stack / 'prometheus/prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage", "--log.level=warn"],
        f"http://127.0.0.1:{port}", "/-/ready", tmp_path / "prometheus.log")
    try:
        status, _, body = http_get(f"{server.url}/api/v1/rules")
        groups = {g["name"]: len(g["rules"]) for g in json.loads(body)["data"]["groups"]}
        assert groups == {"tiertrace-recording": 9, "tiertrace-alerts": 9}
    finally:
        server.stop()


# --- the dashboard ---------------------------------------------------------------------------

def dashboard_exprs(stack: Path) -> list[tuple[str, str]]:
    board = json.loads((stack / "grafana/dashboards/tiertrace.json").read_text())
    exprs = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with what they expand to."""
    return expr.replace("$__rate_interval", "1m").replace("$workflow", ".*")


def test_dashboard_has_the_panels_ops_needs(stack: Path) -> None:
    titles = " | ".join(title for title, _ in dashboard_exprs(stack)).lower()
    for needed in ("throughput", "p50 / p95 / p99", "heatmap", "error ratio", "tokens per model",
                   "tokens per workflow", "cost per model", "cost per workflow", "tiertrace health"):
        assert needed in titles, needed
    board = json.loads((stack / "grafana/dashboards/tiertrace.json").read_text())
    assert any(t.get("exemplar") for p in board["panels"] for t in p.get("targets", []))
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    # Panels fit the 24-column grid and do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_dashboard_expression_parses_in_promtool(stack: Path, tmp_path: Path) -> None:
    exprs = dashboard_exprs(stack)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": grafana_to_promql(expr)} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    run = promtool("check", "rules", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in run.stdout


@pytest.fixture
def really_exposed(make_tracer) -> set[str]:
    """Sample names the tier really exposes after a full workflow, an error and tiertrace health events."""
    class Broken:
        @tiertrace.hookimpl
        def on_node_end(self, node):
            raise ValueError("boom")

    tracer = make_tracer()
    tracer.register(Broken(), name="broken")
    tracer.health.record_dropped("mlflow", 1, "queue_full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_article_writer(tracer)
        run_article_writer(tracer, fail=True)
    return {name for name, _ in samples(tracer.tier("prometheus").text())} | {"up"}


def test_dashboard_and_rules_use_only_metrics_the_tier_exposes(stack: Path, really_exposed: set[str]) -> None:
    recording = yaml.safe_load((stack / "prometheus/rules/tiertrace-recording.yml").read_text())
    recorded = {r["record"] for g in recording["groups"] for r in g["rules"]}
    alerts = yaml.safe_load((stack / "prometheus/rules/tiertrace-alerts.yml").read_text())
    exprs = [("dashboard: " + t, e) for t, e in dashboard_exprs(stack)]
    exprs += [(f"rule {r.get('record') or r.get('alert')}", r["expr"])
              for doc in (recording, alerts) for g in doc["groups"] for r in g["rules"]]
    board = json.loads((stack / "grafana/dashboards/tiertrace.json").read_text())
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append((f"variable {variable['name']}", re.sub(r"label_values\((\w+),.*", r"\1", variable["definition"])))
    seen = set()
    for where, expr in exprs:
        names = metric_names(grafana_to_promql(expr))
        assert names, f"{where}: no metric found in {expr!r}"
        unknown = names - really_exposed - recorded
        assert not unknown, f"{where}: {sorted(unknown)} is not exposed by the tier"
        seen |= names
    # Sanity of the extraction itself: it does find the seed's names, and not functions.
    assert {"workflow_runs_total", "workflow_duration_seconds_bucket", "llm_cost_usd_total"} <= seen
    assert metric_names('histogram_quantile(0.95, sum by (workflow, le) (rate(x_bucket{a="b"}[5m])))') == {"x_bucket"}
    assert metric_names("llm_cost_usd[1d]") == {"llm_cost_usd"}  # the seed's name, which does not exist
    assert "llm_cost_usd" not in really_exposed
