"""What the tier exposes for real workflows: names, labels, values, exemplars, health."""

from __future__ import annotations

import re
import warnings

import pytest

import tiertrace
from tiertrace_prometheus import METRICS, exposed_names

from prom_helpers import run_article_writer, samples, value


def test_every_listed_metric_is_exposed_with_the_seed_names(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    run_article_writer(tracer)
    tracer.health.record_dropped("mlflow", 2, "queue_full")
    found = samples(tier.text())
    families = {name for name, _ in found}
    for name, samples_of in exposed_names().items():
        if name == "tiertrace_plugin_errors_total":
            continue  # no plugin raised: no sample (test_health covers it)
        assert any(s in families for s in samples_of), f"{name} missing from the exposition"
    # The seed's names exactly, with prometheus_client's _total suffix on counters.
    assert value(found, "workflow_runs_total", workflow="article_writer", status="ok") == 1
    assert value(found, "llm_tokens_total", model="gemini-1.5-flash", type="input") == 1812
    assert value(found, "llm_tokens_total", model="gemini-1.5-flash", type="output") == 730
    run_cost = value(found, "workflow_cost_usd_total", workflow="article_writer")
    assert run_cost and run_cost > 0
    assert value(found, "llm_cost_usd_total", model="gemini-1.5-flash") == pytest.approx(run_cost)
    assert value(found, "workflow_duration_seconds_count", workflow="article_writer") == 1
    assert value(found, "active_workflows") == 0
    assert value(found, "node_duration_seconds_count", workflow="article_writer", node="research") == 1
    assert value(found, "node_duration_seconds_count", workflow="article_writer", node="write") == 1
    assert value(found, "llm_call_duration_seconds_count", model="gemini-1.5-flash") == 2
    assert value(found, "tool_call_duration_seconds_count", tool="serper_search") == 1
    assert value(found, "tool_calls_total", tool="serper_search", status="ok") == 1
    assert value(found, "retries_total", workflow="article_writer", target="node") == 1
    assert value(found, "validation_failures_total", workflow="article_writer", node="research") == 1
    assert value(found, "workflow_tokens_total", workflow="article_writer", type="input") == 1812
    assert value(found, "tiertrace_records_dropped_total", tier="mlflow", reason="queue_full") == 2
    # The seed's workflow buckets and the GenAI convention's LLM buckets.
    les = {dict(labels)["le"] for name, labels in found if name == "workflow_duration_seconds_bucket"}
    assert les == {"1.0", "5.0", "10.0", "30.0", "60.0", "120.0", "300.0", "+Inf"}
    llm_les = {dict(labels)["le"] for name, labels in found if name == "llm_call_duration_seconds_bucket"}
    assert {"0.01", "0.02", "0.04", "81.92", "+Inf"} <= llm_les and len(llm_les) == 15
    assert set(METRICS) == set(exposed_names())


def test_error_status_child_exists_before_the_first_error(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    run_article_writer(tracer)
    found = samples(tier.text())
    assert value(found, "workflow_runs_total", workflow="article_writer", status="error") == 0.0
    assert value(found, "llm_calls_total", model="gemini-1.5-flash", status="error") == 0.0
    run_article_writer(tracer, fail=True)
    found = samples(tier.text())
    assert value(found, "workflow_runs_total", workflow="article_writer", status="error") == 1
    assert value(found, "workflow_runs_total", workflow="article_writer", status="ok") == 1


def test_active_workflows_counts_open_runs(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    with tracer.workflow("a"):
        with tracer.workflow("b"):
            assert value(samples(tier.text()), "active_workflows") == 2
        assert value(samples(tier.text()), "active_workflows") == 1
    assert value(samples(tier.text()), "active_workflows") == 0


def test_unpriced_calls_are_counted_and_never_shown_as_zero_cost(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracer.workflow("w"):
            with tracer.llm_call("in-house-model-7") as call:
                call.record(input_tokens=10, output_tokens=5)
    found = samples(tier.text())
    assert value(found, "llm_unpriced_calls_total", model="in-house-model-7") == 1
    assert value(found, "llm_tokens_total", model="in-house-model-7", type="input") == 10
    assert not any(name == "llm_cost_usd_total" for name, _ in found)
    assert not any(name == "workflow_cost_usd_total" for name, _ in found)


def test_label_values_past_the_limit_fold_into_other(make_tracer) -> None:
    tracer = make_tracer(max_label_values=3)
    tier = tracer.tier("prometheus")
    for i in range(10):
        with tracer.workflow(f"wf-{i}"):
            with tracer.llm_call(f"model-{i}", cost_usd=None) as call:
                call.record(input_tokens=1, output_tokens=1, cost_usd=0.5)
    found = samples(tier.text())
    workflows = {dict(l)["workflow"] for n, l in found if n == "workflow_runs_total"}
    assert workflows == {"wf-0", "wf-1", "wf-2", "other"}
    assert value(found, "workflow_runs_total", workflow="other", status="ok") == 7
    models = {dict(l)["model"] for n, l in found if n == "llm_tokens_total"}
    assert models == {"model-0", "model-1", "model-2", "other"}
    assert value(found, "llm_cost_usd_total", model="other") == pytest.approx(3.5)
    assert tier.labels["workflow"].folded == 14  # start and end of the 7 folded runs


def test_no_ids_users_or_prompts_become_label_values(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    with tracer.workflow("support_bot", inputs={"user": "alice@example.com"}, tags={"user_id": "u-123"}) as wf:
        with tracer.llm_call("gpt-4o", prompt="SECRET PROMPT TEXT", user="alice") as call:
            call.record(response="SECRET RESPONSE", input_tokens=3, output_tokens=4)
    text = tier.text()
    label_values = set(re.findall(r'="([^"]*)"', text))
    for forbidden in (wf.data.trace_id, wf.data.span_id, "alice@example.com", "u-123", "alice",
                      "SECRET PROMPT TEXT", "SECRET RESPONSE"):
        assert forbidden not in label_values
        assert forbidden not in text


def test_exemplars_carry_the_workflow_trace_id_in_openmetrics_only(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    record = run_article_writer(tracer)
    openmetrics = tier.text(openmetrics=True)
    exemplar_ids = re.findall(r'# \{trace_id="([0-9a-f]{32})"\}', openmetrics)
    assert exemplar_ids and set(exemplar_ids) == {record.trace_id}
    for family in ("workflow_duration_seconds_bucket", "node_duration_seconds_bucket",
                   "llm_call_duration_seconds_bucket", "tool_call_duration_seconds_bucket"):
        assert re.search(rf"^{family}{{[^\n]*# {{trace_id=\"{record.trace_id}\"}}", openmetrics, re.M), family
    assert "trace_id" not in tier.text()  # the classic text format has no exemplars


def test_exemplars_can_be_turned_off(make_tracer) -> None:
    tracer = make_tracer(exemplars=False)
    run_article_writer(tracer)
    assert "trace_id" not in tracer.tier("prometheus").text(openmetrics=True)


def test_metrics_do_not_depend_on_trace_sampling(make_tracer) -> None:
    tracer = make_tracer()
    tier = tracer.tier("prometheus")
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with tracer.workflow("remote_job", traceparent=unsampled) as wf:
        pass
    assert wf.data.sampled is False
    assert value(samples(tier.text()), "workflow_runs_total", workflow="remote_job", status="ok") == 1


def test_health_counts_plugin_errors_per_plugin_and_hook(make_tracer) -> None:
    class Broken:
        @tiertrace.hookimpl
        def on_llm_call_end(self, call):
            raise ValueError("boom")

    tracer = make_tracer()
    tracer.register(Broken(), name="broken_tier")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_article_writer(tracer)
    found = samples(tracer.tier("prometheus").text())
    assert value(found, "tiertrace_plugin_errors_total", plugin="broken_tier", hook="on_llm_call_end") == 2
    # ... and the metrics of the run are complete all the same.
    assert value(found, "llm_calls_total", model="gemini-1.5-flash", status="ok") == 2


def test_namespace_prefixes_every_name(make_tracer) -> None:
    tracer = make_tracer(namespace="myapp")
    tracer.health.record_dropped("otel", 1, "queue_full")
    run_article_writer(tracer)
    names = {name for name, _ in samples(tracer.tier("prometheus").text())}
    assert "myapp_workflow_runs_total" in names and "myapp_tiertrace_records_dropped_total" in names
    assert all(name.startswith("myapp_") for name in names)


def test_default_registry_can_be_used_again_after_shutdown() -> None:
    from prometheus_client import REGISTRY, generate_latest

    for _ in range(2):  # the second tracer would fail with "Duplicated timeseries" without unregister
        tracer = tiertrace.configure({"observability": {"prometheus": {"registry": "default", "start_server": False}}},
                                     set_default=False)
        assert tracer.tier("prometheus") is not None
        run_article_writer(tracer)
        assert b'workflow_runs_total{status="ok",workflow="article_writer"} 1.0' in generate_latest(REGISTRY)
        tracer.shutdown(timeout=5)
    assert b"workflow_runs_total" not in generate_latest(REGISTRY)


def test_a_registry_object_can_be_passed_from_python(make_tracer) -> None:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    Counter("app_requests", "the app's own metric", registry=registry).inc()
    tracer = make_tracer(registry=registry)
    assert tracer.tier("prometheus").registry is registry
    run_article_writer(tracer)
    text = generate_latest(registry).decode()
    assert "app_requests_total 1.0" in text and "workflow_runs_total" in text


def test_a_run_the_tier_never_saw_start_does_not_drive_the_gauge_negative(make_tracer) -> None:
    from tiertrace_prometheus import PrometheusConfig, PrometheusTier

    tracer = make_tracer()
    late = PrometheusTier(PrometheusConfig(start_server=False))
    with tracer.workflow("already_running"):
        tracer.register(late, name="late_prometheus")
    found = samples(late.text())
    assert value(found, "active_workflows") == 0
    assert value(found, "workflow_runs_total", workflow="already_running", status="ok") == 1


@pytest.mark.filterwarnings("ignore")
def test_core_conformance_check() -> None:
    from tiertrace.testing import check_tier
    from tiertrace_prometheus import PrometheusConfig, PrometheusTier

    tiers = []

    def factory():
        tiers.append(PrometheusTier(PrometheusConfig(start_server=False)))
        return tiers[-1]

    report = check_tier(factory)
    assert report.plugin_errors == {}
    found = samples(tiers[-1].text())
    assert value(found, "active_workflows") == 0
    assert value(found, "workflow_runs_total", workflow="conformance", status="ok") >= 8
