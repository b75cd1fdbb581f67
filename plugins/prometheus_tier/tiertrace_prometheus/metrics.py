"""The metric families the tier exposes, created on one registry.

Names are the exposed names (what PromQL, the rules and the dashboard use).
prometheus_client appends ``_total`` to counters itself, so a counter
created as ``llm_cost_usd`` is exposed as ``llm_cost_usd_total``.
"""

from __future__ import annotations

from typing import Any, Optional

from tiertrace_prometheus.config import LLM_CALL_BUCKETS, TOOL_CALL_BUCKETS, PrometheusConfig

#: exposed name -> (type, labels, help). The single list docs and tests check against.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "workflow_runs_total": ("counter", ("workflow", "status"), "Finished workflow runs, by status (ok or error)."),
    "workflow_duration_seconds": ("histogram", ("workflow",), "Workflow run duration in seconds."),
    "active_workflows": ("gauge", (), "Workflow runs in progress."),
    "workflow_tokens_total": ("counter", ("workflow", "type"), "LLM tokens used by workflow runs, by type (input or output)."),
    "workflow_cost_usd_total": ("counter", ("workflow",), "Priced LLM cost of workflow runs in USD."),
    "node_duration_seconds": ("histogram", ("workflow", "node"), "Node (step) duration in seconds."),
    "llm_calls_total": ("counter", ("model", "status"), "LLM requests, by status (ok or error)."),
    "llm_tokens_total": ("counter", ("model", "type"), "LLM tokens, by type (input or output)."),
    "llm_cost_usd_total": ("counter", ("model",), "LLM cost in USD (priced calls only)."),
    "llm_unpriced_calls_total": ("counter", ("model",), "LLM calls whose model has no known price (their cost is unknown, not 0)."),
    "llm_call_duration_seconds": ("histogram", ("model",), "LLM request duration in seconds (GenAI convention buckets)."),
    "tool_calls_total": ("counter", ("tool", "status"), "Tool calls, by status (ok or error)."),
    "tool_call_duration_seconds": ("histogram", ("tool",), "Tool call duration in seconds."),
    "retries_total": ("counter", ("workflow", "target"), "Retries of LLM calls or nodes."),
    "validation_failures_total": ("counter", ("workflow", "node"), "Outputs that failed validation."),
    "tiertrace_plugin_errors_total": ("counter", ("plugin", "hook"), "Exceptions raised by tiertrace plugins (tiers), per plugin and hook."),
    "tiertrace_records_dropped_total": ("counter", ("tier", "reason"), "Records a tier could not deliver (queue full, backend down)."),
}

HEALTH_METRICS = ("tiertrace_plugin_errors_total", "tiertrace_records_dropped_total")


def exposed_names(namespace: str = "") -> dict[str, str]:
    """Family name -> the sample names Prometheus stores for it (``_bucket`` ...)."""
    prefix = f"{namespace}_" if namespace else ""
    names = {}
    for name, (kind, _labels, _help) in METRICS.items():
        full = prefix + name
        if kind == "histogram":
            names[full] = [f"{full}_bucket", f"{full}_count", f"{full}_sum"]
        else:
            names[full] = [full]
    return names


class Metrics:
    """Every metric object of the tier (health comes from :mod:`.health`)."""

    def __init__(self, config: PrometheusConfig, registry: Optional[Any]):
        from prometheus_client import Counter, Gauge, Histogram

        ns = config.namespace

        def counter(name: str) -> Any:
            _kind, labels, doc = METRICS[name]
            return Counter(name.removesuffix("_total"), doc, labels, namespace=ns, registry=registry)

        def histogram(name: str, buckets: Any) -> Any:
            _kind, labels, doc = METRICS[name]
            return Histogram(name, doc, labels, namespace=ns, registry=registry, buckets=tuple(buckets))

        self.workflow_runs = counter("workflow_runs_total")
        self.workflow_duration = histogram("workflow_duration_seconds", config.workflow_buckets)
        # livesum: in multiprocess mode the gauge is the sum over live workers;
        # a dead worker's in-flight count disappears with mark_process_dead().
        self.active_workflows = Gauge("active_workflows", METRICS["active_workflows"][2], namespace=ns,
                                      registry=registry, multiprocess_mode="livesum")
        self.workflow_tokens = counter("workflow_tokens_total")
        self.workflow_cost = counter("workflow_cost_usd_total")
        self.node_duration = histogram("node_duration_seconds", config.node_buckets)
        self.llm_calls = counter("llm_calls_total")
        self.llm_tokens = counter("llm_tokens_total")
        self.llm_cost = counter("llm_cost_usd_total")
        self.llm_unpriced = counter("llm_unpriced_calls_total")
        self.llm_duration = histogram("llm_call_duration_seconds", LLM_CALL_BUCKETS)
        self.tool_calls = counter("tool_calls_total")
        self.tool_duration = histogram("tool_call_duration_seconds", TOOL_CALL_BUCKETS)
        self.retries = counter("retries_total")
        self.validation_failures = counter("validation_failures_total")
        self.collectors = [
            self.workflow_runs, self.workflow_duration, self.active_workflows, self.workflow_tokens,
            self.workflow_cost, self.node_duration, self.llm_calls, self.llm_tokens, self.llm_cost,
            self.llm_unpriced, self.llm_duration, self.tool_calls, self.tool_duration, self.retries,
            self.validation_failures,
        ]
