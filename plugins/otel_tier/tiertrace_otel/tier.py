"""The tier class the core loads: hooks in, OpenTelemetry spans out.

Nothing here imports the OpenTelemetry SDK at module level (listing plugins
stays fast); :class:`OpenTelemetryTier` imports it when it is constructed.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, NamedTuple, Optional

import tiertrace
from tiertrace_otel import semconv as sc
from tiertrace_otel.config import OtelConfig, resolve_endpoint

__all__ = ["OpenTelemetryTier", "FinishedSpan", "RecentTraces", "TIER_NAME"]

TIER_NAME = "opentelemetry"


class FinishedSpan(NamedTuple):
    """What the waterfall needs of a finished span (a tuple: cheap to make on every span end)."""

    trace_id: str
    span_id: str
    parent_span_id: Optional[str]
    name: str
    start_time_ns: int
    end_time_ns: Optional[int]
    status: str


class RecentTraces:
    """The finished spans of the last ``max_traces`` traces, at most ``max_spans`` each."""

    def __init__(self, max_traces: int, max_spans: int = 10_000):
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: collections.OrderedDict[str, list[FinishedSpan]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.last_trace_id: Optional[str] = None

    def add(self, span: FinishedSpan, workflow: bool = False) -> None:
        """Keep a finished span; a finished workflow makes its trace the last one."""
        spans = self._traces.get(span.trace_id)
        if spans is None:  # a new trace: the only step that needs the lock
            with self._lock:
                spans = self._traces.get(span.trace_id)
                if spans is None:
                    spans = self._traces[span.trace_id] = []
                    if len(self._traces) > self.max_traces:
                        self._traces.popitem(last=False)
        if len(spans) < self.max_spans:
            spans.append(span)  # list.append is atomic
        if workflow:
            self.last_trace_id = span.trace_id

    def get(self, trace_id: str) -> list[FinishedSpan]:
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def trace_ids(self) -> list[str]:
        with self._lock:
            return list(self._traces)


class OpenTelemetryTier:
    """Tier 2: one OpenTelemetry span per workflow, node, LLM call and tool call."""

    config_class = OtelConfig

    def __init__(self, config: Optional[OtelConfig] = None):
        from opentelemetry.trace import SpanKind

        from tiertrace_otel.bridge import Bridge

        self.config = config or OtelConfig()
        self.tracer: Any = None
        self._pending_drops: list[tuple[int, str]] = []
        self._bridge = Bridge(self.config, on_drop=self._count_drop)
        self.provider = self._bridge.provider
        self.recent = RecentTraces(self.config.waterfall_traces)
        self._internal, self._client = SpanKind.INTERNAL, SpanKind.CLIENT
        self._instrumentor: Any = None
        if self.config.langchain_instrumentor:
            from opentelemetry.instrumentation.langchain import LangchainInstrumentor

            self._instrumentor = LangchainInstrumentor()
            self._instrumentor.instrument(tracer_provider=self.provider)

    # -- what the demo and users see ---------------------------------------------------

    def describe(self) -> str:
        """Where this tier sends spans (one line)."""
        bridge, config = self._bridge, self.config
        if not bridge.owns_provider:
            target = "the application's global TracerProvider"
        elif config.exporter == "file":
            target = f"{bridge.processor.exporter.path} (JSON lines)"  # type: ignore[union-attr]
        elif config.exporter == "console":
            target = "stdout (console exporter)"
        elif config.exporter == "none":
            target = "nowhere (exporter none; waterfall in memory only)"
        else:
            target = f"{config.exporter} over OTLP {config.protocol} to {resolve_endpoint(config)}"
        sampled = "" if config.sampling_rate == 1.0 else f", sampling {config.sampling_rate:g}"
        return (f"spans of service {config.service_name!r} to {target}{sampled}; "
                "print a trace with `tiertrace otel-waterfall <trace_id>`")

    def waterfall(self, trace_id: Optional[str] = None) -> str:
        """The terminal waterfall of a recent trace (the last one by default)."""
        from tiertrace.waterfall import render

        trace_id = trace_id or self.recent.last_trace_id
        spans = self.recent.get(trace_id) if trace_id else []
        if not spans:
            return f"(no finished spans in memory for trace {trace_id})"
        return render(spans, label=f"trace {trace_id}")

    # -- lifecycle ----------------------------------------------------------------------

    @tiertrace.hookimpl
    def on_tracer_start(self, tracer: Any) -> None:
        self.tracer = tracer
        for count, reason in self._pending_drops:
            tracer.health.record_dropped(TIER_NAME, count, reason)
        self._pending_drops.clear()

    def _count_drop(self, count: int, reason: str) -> None:
        if self.tracer is not None:
            self.tracer.health.record_dropped(TIER_NAME, count, reason)
        else:
            self._pending_drops.append((count, reason))

    @tiertrace.hookimpl
    def on_flush(self, timeout: float) -> None:
        self._bridge.flush(min(timeout, self.config.flush_timeout))

    @tiertrace.hookimpl
    def on_shutdown(self, timeout: float) -> None:
        if self._instrumentor is not None:
            try:
                self._instrumentor.uninstrument()
            except Exception:
                pass
        self._bridge.shutdown(min(timeout, self.config.flush_timeout))

    @staticmethod
    @tiertrace.hookimpl
    def register_commands(subparsers: Any) -> None:
        from tiertrace_otel.cli import add_commands

        add_commands(subparsers)

    # -- spans ----------------------------------------------------------------------------

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: Any) -> None:
        bridge = self._bridge
        bridge.start(workflow, f"invoke_workflow {workflow.name}", self._internal,
                     bridge.workflow_start_attributes(workflow))

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: Any) -> None:
        self._end(workflow, f"invoke_workflow {workflow.name}", self._bridge.totals_attributes(workflow))

    @tiertrace.hookimpl
    def on_node_start(self, node: Any) -> None:
        bridge = self._bridge
        bridge.start(node, node.name, self._internal, bridge.node_start_attributes(node))

    @tiertrace.hookimpl
    def on_node_end(self, node: Any) -> None:
        self._end(node, node.name, self._bridge.totals_attributes(node))

    @tiertrace.hookimpl
    def on_llm_call_start(self, call: Any) -> None:
        bridge = self._bridge
        bridge.start(call, f"chat {call.model or call.name}", self._client, bridge.llm_start_attributes(call))

    @tiertrace.hookimpl
    def on_llm_call_end(self, call: Any) -> None:
        self._end(call, f"chat {call.model or call.name}", self._bridge.llm_end_attributes(call))

    @tiertrace.hookimpl
    def on_tool_call_start(self, call: Any) -> None:
        bridge = self._bridge
        bridge.start(call, f"execute_tool {call.tool}", self._internal, bridge.tool_start_attributes(call))

    @tiertrace.hookimpl
    def on_tool_call_end(self, call: Any) -> None:
        self._end(call, f"execute_tool {call.tool}", self._bridge.tool_end_attributes(call))

    def _end(self, record: Any, name: str, attributes: dict[str, Any]) -> None:
        if self._bridge.end(record, attributes):
            self.recent.add(FinishedSpan(record.trace_id, record.span_id, record.parent_span_id, name,
                                         record.start_time_ns, record.end_time_ns, record.status),
                            workflow=record.kind == "workflow")

    # -- point events ---------------------------------------------------------------------

    @tiertrace.hookimpl
    def on_retry(self, retry: Any) -> None:
        attributes = {"tiertrace.retry.target": retry.target, "tiertrace.retry.attempt": retry.attempt,
                      "tiertrace.retry.reason": retry.reason}
        if retry.name:
            attributes["tiertrace.retry.name"] = retry.name
        self._bridge.add_event(retry.span_id, sc.EVENT_RETRY, attributes, retry.time_ns)

    @tiertrace.hookimpl
    def on_validation_failure(self, failure: Any) -> None:
        from tiertrace_otel.bridge import attribute_value

        attributes: dict[str, Any] = {"tiertrace.validation.errors": [str(e) for e in failure.errors] or [""]}
        if failure.schema:
            attributes["tiertrace.validation.schema"] = failure.schema
        if self.config.capture_content and failure.raw_output is not None:
            attributes["tiertrace.validation.raw_output"] = attribute_value(failure.raw_output)
        self._bridge.add_event(failure.span_id, sc.EVENT_VALIDATION_FAILURE, attributes, failure.time_ns)
