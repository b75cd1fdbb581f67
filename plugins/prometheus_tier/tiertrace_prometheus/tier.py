"""The Prometheus tier: records become counters, histograms and a gauge.

Every hook only updates in-memory metric values (or, in multiprocess mode,
memory-mapped files): no network and no disk I/O happens on the workflow's
thread, so no queue is needed. Label children are cached per name, so a hook
costs a dict lookup and the prometheus_client update itself.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Optional

import tiertrace
from tiertrace_prometheus.config import PrometheusConfig
from tiertrace_prometheus.labels import OTHER, LabelLimiter


class _WorkflowSeries:
    __slots__ = ("label", "ok", "error", "duration", "input_tokens", "output_tokens", "cost")


class _ModelSeries:
    __slots__ = ("label", "ok", "error", "input_tokens", "output_tokens", "cost", "unpriced", "duration")


class _ToolSeries:
    __slots__ = ("ok", "error", "duration")


class PrometheusTier:
    """Tier 3: Prometheus metrics on ``/metrics``, a Pushgateway push for batch runs."""

    config_class = PrometheusConfig

    def __init__(self, config: Optional[PrometheusConfig] = None):
        self.config = config = config or PrometheusConfig()
        self.multiprocess = bool(config.multiprocess_dir)
        if self.multiprocess:
            _enable_multiprocess(config.multiprocess_dir)  # before prometheus_client is imported
        from prometheus_client import REGISTRY, CollectorRegistry

        from tiertrace_prometheus import health, metrics

        limit = config.max_label_values
        self.labels = {name: LabelLimiter(name, limit) for name in ("workflow", "node", "model", "tool", "target")}
        self._owned_registry = config.registry == "dedicated"
        if self.multiprocess:
            # Metrics go to this process's files only; the registry that is
            # served sums every process's files (prometheus_client's rule:
            # never register live metrics in the multiprocess registry).
            from prometheus_client import multiprocess

            metrics_registry = None
            self.registry = CollectorRegistry() if isinstance(config.registry, str) else config.registry
            self._owned_registry = isinstance(config.registry, str)
            multiprocess.MultiProcessCollector(self.registry, path=config.multiprocess_dir)
            self.health: Any = health.HealthMirror(config.namespace)
        else:
            if config.registry == "dedicated":
                self.registry = CollectorRegistry()
            elif config.registry == "default":
                self.registry = REGISTRY
            else:
                self.registry = config.registry
            metrics_registry = self.registry
            self.health = health.HealthCollector(config.namespace)
        self.metrics = metrics.Metrics(config, metrics_registry)
        self._registered = list(self.metrics.collectors) if metrics_registry is not None else []
        if not self.multiprocess:
            self.registry.register(self.health)
            self._registered.append(self.health)
        self._exemplars = config.exemplars and not self.multiprocess  # the files cannot hold exemplars
        self._workflows: dict[str, _WorkflowSeries] = {}
        self._models: dict[str, _ModelSeries] = {}
        self._tools: dict[str, _ToolSeries] = {}
        self._nodes: dict[tuple[str, str], Any] = {}
        self._retries: dict[tuple[str, str], Any] = {}
        self._failures: dict[tuple[str, str], Any] = {}
        # Span ids of the runs counted in active_workflows: a run that started
        # before this tier was registered must not push the gauge below zero.
        self._open_runs: set[str] = set()
        self.server: Any = None
        self.server_error: Optional[str] = None
        if config.start_server:
            self._start_server()

    # -- serving ---------------------------------------------------------------------------

    def _start_server(self) -> None:
        from tiertrace_prometheus.serving import MetricsServer

        config = self.config
        try:
            self.server = MetricsServer(self.registry, config.host, config.port, config.path)
        except OSError as exc:
            # Metrics still count (an app can serve asgi_app(), a push still works);
            # only this endpoint is missing. Typical cause: a second process on the port.
            self.server_error = f"{config.host}:{config.port}: {exc.strerror or exc}"
            warnings.warn(
                f"tiertrace prometheus: cannot serve metrics on {self.server_error}; metrics are still "
                "counted. Set observability.prometheus.port (0 picks a free port) or start_server: false.",
                RuntimeWarning, stacklevel=2,
            )

    @property
    def url(self) -> Optional[str]:
        """Where the standalone server answers, or None."""
        return self.server.url if self.server is not None else None

    def describe(self) -> str:
        if self.server is not None:
            where = f"metrics at {self.server.url}"
        elif self.server_error:
            where = f"metrics not served ({self.server_error})"
        else:
            where = "metrics in the registry (no standalone server)"
        if self.multiprocess:
            where += f", multiprocess files in {self.config.multiprocess_dir}"
        if self.config.pushgateway_url:
            where += f", pushed to {self.config.pushgateway_url} job {self.config.pushgateway_job!r} at shutdown"
        return f"Prometheus: {where}"

    def text(self, openmetrics: bool = False) -> str:
        """The current exposition (OpenMetrics shows the exemplars)."""
        from tiertrace_prometheus.serving import render

        accept = "application/openmetrics-text; version=1.0.0" if openmetrics else ""
        return render(self.registry, accept)[0].decode()

    def push(self, timeout: Optional[float] = None) -> None:
        """Push every metric to the Pushgateway now (replaces this job's group)."""
        from tiertrace_prometheus.serving import push

        config = self.config
        if not config.pushgateway_url:
            raise ValueError("observability.prometheus.pushgateway_url is not set")
        self._sync_health()
        push(self.registry, config.pushgateway_url, config.pushgateway_job, dict(config.grouping_key),
             timeout=min(config.push_timeout, timeout) if timeout else config.push_timeout)

    # -- label children, cached per name ---------------------------------------------------

    def _workflow(self, name: str) -> _WorkflowSeries:
        series = self._workflows.get(name)
        if series is not None:
            return series
        label = self.labels["workflow"].fold(name)
        series = self._workflows.get(label)
        if series is None:
            m = self.metrics
            series = _WorkflowSeries()
            series.label = label
            # Both status children exist from the first run on, so an error
            # ratio is 0 (not missing) for a workflow that never failed.
            series.ok = m.workflow_runs.labels(label, "ok")
            series.error = m.workflow_runs.labels(label, "error")
            series.duration = m.workflow_duration.labels(label)
            series.input_tokens = m.workflow_tokens.labels(label, "input")
            series.output_tokens = m.workflow_tokens.labels(label, "output")
            series.cost = None  # created at the first priced call, like llm_cost_usd_total
            self._workflows[label] = series
        if label != OTHER:  # never cache the raw names that were folded: they are unbounded
            self._workflows[name] = series
        return series

    def _model(self, name: Optional[str]) -> _ModelSeries:
        series = self._models.get(name or "")
        if series is not None:
            return series
        label = self.labels["model"].fold(name)
        series = self._models.get(label)
        if series is None:
            m = self.metrics
            series = _ModelSeries()
            series.label = label
            series.ok = m.llm_calls.labels(label, "ok")
            series.error = m.llm_calls.labels(label, "error")
            series.input_tokens = m.llm_tokens.labels(label, "input")
            series.output_tokens = m.llm_tokens.labels(label, "output")
            series.cost = None  # created at the first priced call: an unpriced model must not show $0
            series.unpriced = m.llm_unpriced.labels(label)
            series.duration = m.llm_duration.labels(label)
            self._models[label] = series
        if label != OTHER:
            self._models[name or ""] = series
        return series

    def _tool(self, name: str) -> _ToolSeries:
        series = self._tools.get(name)
        if series is not None:
            return series
        label = self.labels["tool"].fold(name)
        series = self._tools.get(label)
        if series is None:
            m = self.metrics
            series = _ToolSeries()
            series.ok = m.tool_calls.labels(label, "ok")
            series.error = m.tool_calls.labels(label, "error")
            series.duration = m.tool_duration.labels(label)
            self._tools[label] = series
        if label != OTHER:
            self._tools[name] = series
        return series

    def _pair(self, cache: dict[tuple[str, str], Any], metric: Any, first: str, second: str,
              key: tuple[Optional[str], Optional[str]]) -> Any:
        child = cache.get(key)  # type: ignore[arg-type]
        if child is not None:
            return child
        labels = (self.labels[first].fold(key[0]), self.labels[second].fold(key[1]))
        child = cache.get(labels)
        if child is None:
            child = cache[labels] = metric.labels(*labels)
        if OTHER not in labels:
            cache[key] = child  # type: ignore[index]
        return child

    # -- hooks -------------------------------------------------------------------------------

    @tiertrace.hookimpl
    def on_tracer_start(self, tracer: Any) -> None:
        self.health.tracer = tracer

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: tiertrace.WorkflowRecord) -> None:
        if workflow.name not in self._workflows:
            self._workflow(workflow.name)  # both status children now exist
        self._open_runs.add(workflow.span_id)
        self.metrics.active_workflows.inc()

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: tiertrace.WorkflowRecord) -> None:
        if workflow.span_id in self._open_runs:
            self._open_runs.discard(workflow.span_id)
            self.metrics.active_workflows.dec()
        series = self._workflows.get(workflow.name) or self._workflow(workflow.name)
        (series.error if workflow.status == "error" else series.ok).inc()
        if workflow.duration_ns is not None:
            series.duration.observe(workflow.duration_ns / 1e9,
                                    {"trace_id": workflow.trace_id} if self._exemplars else None)
        if workflow.input_tokens:
            series.input_tokens.inc(workflow.input_tokens)
        if workflow.output_tokens:
            series.output_tokens.inc(workflow.output_tokens)
        if workflow.cost_usd:
            if series.cost is None:
                series.cost = self.metrics.workflow_cost.labels(series.label)
            series.cost.inc(workflow.cost_usd)
        if self.multiprocess:
            self.health.sync()

    @tiertrace.hookimpl
    def on_node_end(self, node: tiertrace.NodeRecord) -> None:
        if node.duration_ns is not None:
            key = (node.workflow, node.name)
            child = self._nodes.get(key) or self._pair(self._nodes, self.metrics.node_duration, "workflow", "node", key)
            child.observe(node.duration_ns / 1e9, {"trace_id": node.trace_id} if self._exemplars else None)

    @tiertrace.hookimpl
    def on_llm_call_end(self, call: tiertrace.LLMCallRecord) -> None:
        model = call.model or call.response_model
        series = self._models.get(model or "") or self._model(model)
        (series.error if call.status == "error" else series.ok).inc()
        if call.input_tokens:
            series.input_tokens.inc(call.input_tokens)
        if call.output_tokens:
            series.output_tokens.inc(call.output_tokens)
        if call.cost_usd is not None:
            if series.cost is None:
                series.cost = self.metrics.llm_cost.labels(series.label)
            series.cost.inc(call.cost_usd)
        elif call.input_tokens or call.output_tokens:
            series.unpriced.inc()  # tokens were used but nobody knows what they cost
        if call.duration_ns is not None:
            series.duration.observe(call.duration_ns / 1e9, {"trace_id": call.trace_id} if self._exemplars else None)

    @tiertrace.hookimpl
    def on_tool_call_end(self, call: tiertrace.ToolCallRecord) -> None:
        series = self._tools.get(call.tool) or self._tool(call.tool)
        (series.error if call.status == "error" else series.ok).inc()
        if call.duration_ns is not None:
            series.duration.observe(call.duration_ns / 1e9, {"trace_id": call.trace_id} if self._exemplars else None)

    @tiertrace.hookimpl
    def on_retry(self, retry: tiertrace.RetryRecord) -> None:
        key = (retry.workflow, retry.target)
        (self._retries.get(key) or self._pair(self._retries, self.metrics.retries, "workflow", "target", key)).inc()

    @tiertrace.hookimpl
    def on_validation_failure(self, failure: tiertrace.ValidationFailureRecord) -> None:
        key = (failure.workflow, failure.node)
        (self._failures.get(key) or self._pair(self._failures, self.metrics.validation_failures, "workflow", "node",
                                               key)).inc()

    # -- lifecycle -----------------------------------------------------------------------------

    def _sync_health(self) -> None:
        if self.multiprocess:
            self.health.sync()

    @tiertrace.hookimpl
    def on_flush(self, timeout: float) -> None:
        self._sync_health()

    @tiertrace.hookimpl
    def on_shutdown(self, timeout: float) -> None:
        self._sync_health()
        try:
            if self.config.pushgateway_url and self.config.push_on_shutdown:
                self.push(timeout)
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None
            if self.multiprocess:
                # This process ends: its live gauge (active workflows) must stop counting.
                from tiertrace_prometheus.serving import mark_process_dead

                mark_process_dead(os.getpid(), self.config.multiprocess_dir)
            if not self._owned_registry:
                # A shared registry: let a later tracer in this process register again.
                for collector in self._registered:
                    try:
                        self.registry.unregister(collector)
                    except KeyError:
                        pass

    @staticmethod
    @tiertrace.hookimpl
    def register_commands(subparsers: Any) -> None:
        from tiertrace_prometheus import commands

        commands.register(subparsers)


def _enable_multiprocess(directory: str) -> None:
    """prometheus_client picks its value storage when it is first imported,
    from ``PROMETHEUS_MULTIPROC_DIR``: set it if we still can, and fail clearly if not."""
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if current and os.path.abspath(current) != os.path.abspath(directory):
        raise RuntimeError(
            f"multiprocess_dir {directory!r} differs from PROMETHEUS_MULTIPROC_DIR={current!r}; "
            "prometheus_client writes to the environment's directory: set only one"
        )
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        if values.ValueClass is values.MutexValue:
            raise RuntimeError(
                "multiprocess mode needs PROMETHEUS_MULTIPROC_DIR in the environment before "
                "prometheus_client is first imported; set it in the environment of the server "
                "(e.g. in the container or gunicorn's env) instead of only in the config"
            )
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
