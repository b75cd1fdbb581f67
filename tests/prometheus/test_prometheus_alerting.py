"""The alerting path with real binaries: the shipped rules in a real Prometheus fire into
a real Alertmanager running the shipped alertmanager.yml."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import tiertrace
from tiertrace_prometheus.stack_files import write_stack

from prom_helpers import http_get, need_binary, run_article_writer, start_alertmanager, start_prometheus, wait_until


def test_amtool_accepts_the_alertmanager_example(tmp_path: Path) -> None:
    write_stack(tmp_path)
    run = subprocess.run([need_binary("amtool"), "check-config", str(tmp_path / "alertmanager/alertmanager.yml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout and "2 inhibit rules" in run.stdout


def test_plugin_errors_reach_alertmanager(make_tracer, tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    write_stack(stack)

    class Broken:
        @tiertrace.hookimpl
        def on_workflow_end(self, workflow):
            raise ValueError("backend rejected the run")

    tracer = make_tracer(start_server=True, port=0)
    tracer.register(Broken(), name="flaky_tier")
    target = tracer.tier("prometheus").url.removeprefix("http://").removesuffix("/metrics")
    alertmanager = start_alertmanager(tmp_path, stack / "alertmanager/alertmanager.yml")
    prometheus = None
    try:
        prometheus = start_prometheus(
            tmp_path, [target], scrape_interval="1s",
            rule_files=sorted((stack / "prometheus/rules").glob("tiertrace-*.yml")),
            alertmanager=alertmanager.url.removeprefix("http://"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_article_writer(tracer)  # the counter exists before the first scrape ...
            wait_until(lambda: prometheus.query('tiertrace_plugin_errors_total{plugin="flaky_tier"}'), 30,
                       "the first scrape of the error counter")
            for _ in range(3):  # ... and grows after it, so increase() sees the errors
                run_article_writer(tracer)

        def alert() -> list[dict]:
            alerts = json.loads(http_get(alertmanager.url + "/api/v2/alerts")[2])
            return [a for a in alerts if a["labels"].get("alertname") == "TiertracePluginErrors"]

        (received,) = wait_until(alert, 60, "TiertracePluginErrors in Alertmanager")
        assert received["labels"]["plugin"] == "flaky_tier"
        assert received["labels"]["hook"] == "on_workflow_end"
        assert received["labels"]["severity"] == "warning"
        assert received["annotations"]["summary"] == "tiertrace plugin flaky_tier raised in on_workflow_end"
        # Routed by the shipped config: a warning goes to the team, not to on-call.
        assert [r["name"] for r in received["receivers"]] == ["team-notifications"]
    finally:
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()
