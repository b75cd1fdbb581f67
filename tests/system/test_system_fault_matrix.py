"""The fault matrix, one row per tier and hook: the tier's hook raises, and the
workflow's result and the other two tiers' records (read back from their real
backends) are unaffected, while the error is counted in ``tracer.health`` and
exposed as ``tiertrace_plugin_errors_total`` on the Prometheus tier's /metrics.

The core caches each hook's implementations when a tier is registered, so the
fault is planted on the tier *class* before ``configure()``: the raising
function carries the original's hook marker and signature (functools.wraps),
so pluggy registers it exactly as it registered the original.
"""

from __future__ import annotations

import functools
import warnings

import pytest

from tiertrace.plugins import PluginErrorWarning, hooks_of
from tiertrace_mlflow import MlflowTier
from tiertrace_otel import OpenTelemetryTier
from tiertrace_prometheus import PrometheusTier

from systemkit import samples, total
from system_workloads import check_metrics, check_mlflow, check_otlp, full_workflow

pytestmark = pytest.mark.slow

TIER_CLASSES = {"mlflow": MlflowTier, "opentelemetry": OpenTelemetryTier, "prometheus": PrometheusTier}
ROWS = [(tier, hook) for tier, cls in TIER_CLASSES.items() for hook in hooks_of(cls) if hook != "register_commands"]


class InjectedFault(RuntimeError):
    pass


def plant_fault(monkeypatch: pytest.MonkeyPatch, cls: type, hook: str) -> None:
    original = getattr(cls, hook)

    @functools.wraps(original)  # keeps the tiertrace_impl marker and the argument names
    def raising(self, *args, **kwargs):
        raise InjectedFault(f"injected fault in {cls.__name__}.{hook}")

    monkeypatch.setattr(cls, hook, raising)


def test_the_matrix_covers_every_hook_of_every_tier():
    assert {tier for tier, _ in ROWS} == set(TIER_CLASSES)
    assert ("mlflow", "on_workflow_end") in ROWS and ("opentelemetry", "on_llm_call_start") in ROWS
    assert ("prometheus", "on_shutdown") in ROWS and len(ROWS) >= 30


@pytest.mark.parametrize("tier,hook", ROWS, ids=[f"{t}-{h}" for t, h in ROWS])
def test_a_raising_hook_leaves_the_workflow_and_the_other_tiers_intact(tier, hook, stack, otlp_receiver,
                                                                        monkeypatch):
    plant_fault(monkeypatch, TIER_CLASSES[tier], hook)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = stack(otlp=otlp_receiver, serve=True, prometheus={"port": 0}, local_store=True)
        result, wf = full_workflow(s.tracer)
        assert result == "article about x"  # the workflow's own result is untouched
        assert wf.data.status == "ok" and wf.data.cost_usd > 0
        s.tracer.flush(20)
        live_metrics = s.metrics_text() if s.metrics_url else None  # over HTTP while it serves
        late = s.tracer.shutdown(timeout=20)
    prometheus_tier = s.tier("prometheus")
    try:
        assert late == [], late
        health = s.tracer.health
        assert health.plugin_errors.get((tier, hook), 0) >= 1, health.plugin_errors
        assert set(health.plugin_errors) == {(tier, hook)}, health.plugin_errors  # nobody else failed
        reported = [str(w.message) for w in caught if issubclass(w.category, PluginErrorWarning)]
        assert any(f"{tier!r} raised in {hook}" in message for message in reported), reported

        # The error on /metrics: the health collector reads tracer.health at scrape time. It learns
        # the tracer in the Prometheus tier's on_tracer_start, so that one row cannot show it.
        if (tier, hook) != ("prometheus", "on_tracer_start"):
            after = samples(prometheus_tier.text())
            assert total(after, "tiertrace_plugin_errors_total", plugin=tier, hook=hook) >= 1
        if tier != "prometheus":
            assert live_metrics is not None
            check_metrics(samples(live_metrics), wf)
        if tier != "mlflow":
            check_mlflow(s, wf)
            assert health.total_dropped("mlflow") == 0, health.dropped
        if tier != "opentelemetry":
            check_otlp(otlp_receiver, wf)
            assert health.total_dropped("opentelemetry") == 0, health.dropped
    finally:
        if prometheus_tier.server is not None:  # its own on_shutdown was the faulty one
            prometheus_tier.server.stop()
