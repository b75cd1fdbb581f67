"""A real Prometheus on 127.0.0.1 scrapes the tier's standalone endpoint."""

from __future__ import annotations

import time
from pathlib import Path

from prom_helpers import run_article_writer, start_prometheus, wait_until


def test_prometheus_scrapes_counters_histograms_and_exemplars(make_tracer, tmp_path: Path) -> None:
    tracer = make_tracer(start_server=True, port=0)
    tier = tracer.tier("prometheus")
    assert tier.url.startswith("http://127.0.0.1:")
    started = time.time()
    runs_made = [run_article_writer(tracer) for _ in range(3)]
    runs_made.append(run_article_writer(tracer, fail=True))
    target = tier.url.removeprefix("http://").removesuffix("/metrics")
    prometheus = start_prometheus(tmp_path, [target], scrape_interval="1s")
    try:
        # The first scrape lands a few seconds after start: poll instead of sleeping.
        wait_until(lambda: prometheus.query('up{job="tiertrace"} == 1'), 30, "the first scrape")
        runs = wait_until(lambda: prometheus.query('workflow_runs_total{workflow="article_writer"}'), 30,
                          "workflow_runs_total")
        by_status = {r["metric"]["status"]: float(r["value"][1]) for r in runs}
        assert by_status == {"ok": 3.0, "error": 1.0}
        tokens = prometheus.query('sum by (type) (llm_tokens_total{model="gemini-1.5-flash"})')
        assert {r["metric"]["type"]: float(r["value"][1]) for r in tokens} == {"input": 4 * 1812.0, "output": 4 * 730.0}
        # The error ratio, as the recording rule computes it, over absolute counts.
        ratio = prometheus.query('sum by (workflow) (workflow_runs_total{status="error"}) / sum by (workflow) (workflow_runs_total)')
        assert float(ratio[0]["value"][1]) == 0.25

        # New runs after the first scrapes show up as an increase().
        for _ in range(5):
            runs_made.append(run_article_writer(tracer))

        def increased() -> bool:
            result = prometheus.query('sum(increase(workflow_runs_total{workflow="article_writer",status="ok"}[1m]))')
            return bool(result) and float(result[0]["value"][1]) >= 4.5  # 5, give or take extrapolation
        wait_until(increased, 30, "increase() of the new runs")
        assert float(prometheus.query('sum(workflow_runs_total{status="ok"})')[0]["value"][1]) == 8

        # Exemplars: Prometheus asked for OpenMetrics and stored the trace ids (exemplar-storage).
        trace_ids = {r.trace_id for r in runs_made}
        def exemplars() -> set[str]:
            found = prometheus.exemplars("workflow_duration_seconds_bucket", started - 60, time.time() + 60)
            return {e["labels"]["trace_id"] for series in found for e in series["exemplars"]}
        stored = wait_until(exemplars, 30, "stored exemplars")
        assert stored <= trace_ids, stored  # each one leads to a real run's trace
    finally:
        prometheus.stop()
