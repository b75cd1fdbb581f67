"""Turns tiertrace span records into OpenTelemetry spans (imports the SDK).

One id space: a span gets the record's trace and span id through
:class:`RecordIdGenerator`, and its parent is the live OTel span of the
record's parent (or, for a workflow joining a remote trace, a remote
``SpanContext`` built from the record's ``traceparent`` ids). Times are the
record's. While the block runs its span is the current OTel span, so spans of
auto-instrumented HTTP clients nest under it.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterator, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

try:  # the OTel API's own: a context manager that can also decorate async functions
    from opentelemetry.util._decorator import _agnosticcontextmanager
except ImportError:  # pragma: no cover - older or newer API
    from contextlib import contextmanager as _agnosticcontextmanager  # type: ignore[assignment]
from tiertrace.records import to_jsonable
from tiertrace_otel import semconv as sc
from tiertrace_otel.config import OTLP_EXPORTERS, OtelConfig, resolve_endpoint, resolve_headers
from tiertrace_otel.processor import BoundedBatchProcessor, JsonLinesSpanExporter, NoOpSpanExporter

__all__ = ["Bridge", "RecordIdGenerator", "make_exporter"]

_VERSION = "0.1.0"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_CONTEXT = otel_context.Context()


class _Pending(threading.local):
    span_id = 0
    trace_id = 0


class RecordIdGenerator(IdGenerator):
    """Hands out the ids of the record being started; random ids for anyone else.

    The tier sets the pending ids on this thread just before ``start_span``
    and the SDK asks for them inside it, so no other span can take them.
    """

    def __init__(self, fallback: Optional[IdGenerator] = None):
        self._fallback = fallback or RandomIdGenerator()
        self._pending = _Pending()

    def set_pending(self, span_id: int, trace_id: int = 0) -> None:
        """The ids for the next span this thread starts (a trace id only for a root)."""
        pending = self._pending
        pending.span_id = span_id
        if trace_id:
            pending.trace_id = trace_id

    def clear_pending(self) -> None:
        self._pending.span_id = self._pending.trace_id = 0

    def generate_span_id(self) -> int:
        span_id = self._pending.span_id
        if span_id:
            self._pending.span_id = 0
            return span_id
        return self._fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id = self._pending.trace_id
        if trace_id:
            self._pending.trace_id = 0
            return trace_id
        return self._fallback.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True  # the core draws trace ids from a random generator


def make_exporter(config: OtelConfig) -> Any:
    """The span exporter the config names; OTLP timeouts never exceed ``flush_timeout``."""
    if config.exporter == "file":
        return JsonLinesSpanExporter(config.file_path)
    if config.exporter == "console":
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=config.service_name, out=sys.stdout)
    if config.exporter == "none":
        return NoOpSpanExporter()
    assert config.exporter in OTLP_EXPORTERS
    endpoint = resolve_endpoint(config)
    headers = resolve_headers(config)
    timeout = min(config.timeout, config.flush_timeout)
    if config.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise RuntimeError("protocol grpc needs the gRPC exporter: pip install 'tiertrace-otel[grpc]'") from exc
        insecure = endpoint.startswith("http://")
        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=headers or None, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=endpoint, headers=headers or None, timeout=timeout)


def attribute_value(value: Any) -> Any:
    """A value OTel accepts as an attribute: primitives and homogeneous lists, else JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and value:
        first = type(value[0])
        if first in (str, bool, int, float) and all(type(v) is first for v in value):
            return list(value)
    return json.dumps(to_jsonable(value), ensure_ascii=False, default=str)


def json_text(value: Any) -> str:
    """A string as is, anything else as JSON (tool arguments and results)."""
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable(value), ensure_ascii=False, default=str)


def _messages_json(prompt: Any, messages: Any) -> Optional[str]:
    if messages is not None:
        return attribute_value(messages) if not isinstance(messages, str) else messages
    if prompt is not None:
        return json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}], ensure_ascii=False)
    return None


def _output_json(response: Any) -> Optional[str]:
    if response is None:
        return None
    if isinstance(response, str):
        return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": response}]}],
                          ensure_ascii=False)
    return attribute_value(response) if not isinstance(response, (bool, int, float)) else str(response)


class Bridge:
    """Owns (or borrows) the TracerProvider and maps records to live OTel spans."""

    def __init__(self, config: OtelConfig, on_drop: Callable[[int, str], None]):
        self.config = config
        self.capture_content = config.capture_content
        self.processor: Optional[BoundedBatchProcessor] = None
        self.owns_provider = False
        self.global_provider: Optional[GlobalProvider] = None
        """Set when the global provider forwards to ours."""
        current = trace_api.get_tracer_provider()
        if config.use_global_provider and isinstance(current, TracerProvider):
            self.provider = current  # the application's own pipeline and sampler
        else:
            resource = Resource.create({"service.name": config.service_name, **config.resource_attributes})
            self.provider = TracerProvider(
                resource=resource,
                sampler=ParentBased(TraceIdRatioBased(config.sampling_rate)),
                shutdown_on_exit=False,  # the core shuts tiers down at exit, bounded
            )
            self.owns_provider = True
            self.processor = BoundedBatchProcessor(
                make_exporter(config),
                max_queue_size=config.max_queue_size,
                max_export_batch_size=config.max_export_batch_size,
                schedule_delay=config.schedule_delay,
                on_drop=on_drop,
            )
            self.provider.add_span_processor(self.processor)
            if config.set_global_provider:
                global_provider = _global_provider_free()
                if global_provider is not None:
                    global_provider.target = self.provider
                    self.global_provider = global_provider
        self.tracer = self.provider.get_tracer("tiertrace_otel", _VERSION)
        self.ids: Optional[RecordIdGenerator] = None
        if hasattr(self.tracer, "id_generator"):  # an SDK tracer: give it the record ids
            self.ids = RecordIdGenerator(self.tracer.id_generator)
            self.tracer.id_generator = self.ids
        self.live: dict[str, tuple[Any, Any, Any]] = {}
        """span_id -> (OTel span, context token, attached context), while the block runs."""

    # -- start and end --------------------------------------------------------------------

    def start(self, record: Any, name: str, kind: SpanKind, attributes: dict[str, Any]) -> None:
        parent_id = record.parent_span_id
        root = parent_id is None
        if root:
            parent_context = _EMPTY_CONTEXT  # a new trace, whatever span the app has open
        else:
            entry = self.live.get(parent_id)
            if entry is not None:
                parent_context = entry[2]  # the context in which the parent span is current
            else:  # a remote parent, or a parent this tier never saw start
                remote = getattr(record, "remote_parent", False)
                sampled = getattr(record, "sampled", True)
                parent = SpanContext(int(record.trace_id, 16), int(parent_id, 16), is_remote=remote,
                                     trace_flags=_SAMPLED if sampled else _NOT_SAMPLED)
                parent_context = trace_api.set_span_in_context(NonRecordingSpan(parent), _EMPTY_CONTEXT)
        ids = self.ids
        if ids is not None:
            ids.set_pending(int(record.span_id, 16), int(record.trace_id, 16) if root else 0)
        try:
            span = self.tracer.start_span(name, context=parent_context, kind=kind, attributes=attributes,
                                          start_time=record.start_time_ns)
        except BaseException:
            if ids is not None:
                ids.clear_pending()  # the SDK failed before taking the ids
            raise
        active = trace_api.set_span_in_context(span, otel_context.get_current())
        token = otel_context.attach(active)
        self.live[record.span_id] = (span, token, active)

    def end(self, record: Any, attributes: dict[str, Any]) -> bool:
        """End the record's span. False if this tier never saw it start."""
        entry = self.live.pop(record.span_id, None)
        if entry is None:
            return False
        span, token, _active = entry
        try:
            if span.is_recording():
                if attributes:
                    span.set_attributes(attributes)
                error = record.error
                if record.status == "error":
                    kind = error.type if error is not None else "error"
                    message = error.message if error is not None else ""
                    span.set_attribute(sc.ERROR_TYPE, kind)
                    span.add_event(sc.EVENT_EXCEPTION, {"exception.type": kind, "exception.message": message},
                                   timestamp=record.end_time_ns)
                    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))
                span.end(end_time=record.end_time_ns)
        finally:
            # Restores the context from before the block (even if a child leaked).
            otel_context.detach(token)
        return True

    def add_event(self, span_id: Optional[str], name: str, attributes: dict[str, Any], time_ns: int) -> None:
        entry = self.live.get(span_id) if span_id else None
        if entry is not None and entry[0].is_recording():
            entry[0].add_event(name, attributes, timestamp=time_ns)

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        if self.processor is not None:
            return self.processor.force_flush(int(timeout * 1000))
        return bool(self.provider.force_flush(int(timeout * 1000)))

    def shutdown(self, timeout: float) -> None:
        if self.global_provider is not None and self.global_provider.target is self.provider:
            self.global_provider.target = None  # spans of instrumented libraries become no-ops
        if self.processor is not None:
            self.processor.shutdown(int(timeout * 1000))
        elif not self.owns_provider:
            self.flush(timeout)  # the application's provider is the application's to shut down

    # -- attributes of each kind of record ---------------------------------------------------

    def workflow_start_attributes(self, record: Any) -> dict[str, Any]:
        attributes = {sc.OPERATION_NAME: sc.OP_INVOKE_WORKFLOW, sc.WORKFLOW_NAME: record.name}
        if record.tags:
            _user_attributes(attributes, record.tags)
        if record.attributes:
            _user_attributes(attributes, record.attributes)
        if self.capture_content and record.inputs:
            attributes[sc.WORKFLOW_INPUTS] = attribute_value(record.inputs)
        return attributes

    def node_start_attributes(self, record: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {sc.SPAN_KIND: "node"}
        if record.workflow:
            attributes[sc.WORKFLOW_NAME] = record.workflow
        if record.attributes:
            _user_attributes(attributes, record.attributes)
        return attributes

    @staticmethod
    def totals_attributes(record: Any) -> dict[str, Any]:
        # Only what happened: every attribute costs the SDK a validation.
        attributes: dict[str, Any] = {}
        if record.llm_calls:
            attributes[sc.USAGE_INPUT_TOKENS] = record.input_tokens
            attributes[sc.USAGE_OUTPUT_TOKENS] = record.output_tokens
            attributes[sc.COST_USD] = record.cost_usd
        for name, key in sc.TOTALS:
            count = getattr(record, name)
            if count:
                attributes[key] = count
        if record.attributes:
            _user_attributes(attributes, record.attributes)  # set_attribute() during the block
        return attributes

    def llm_start_attributes(self, call: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {sc.OPERATION_NAME: sc.OP_CHAT}
        if call.attempt != 1:
            attributes[sc.ATTEMPT] = call.attempt
        if call.model:
            attributes[sc.REQUEST_MODEL] = call.model
        if call.provider:
            attributes[sc.PROVIDER_NAME] = call.provider
        if call.workflow:
            attributes[sc.WORKFLOW_NAME] = call.workflow
        if call.node:
            attributes[sc.NODE_NAME] = call.node
        for key, value in call.params.items():
            if value is not None:
                attributes[sc.REQUEST_PARAMS.get(key, f"tiertrace.request.{key}")] = attribute_value(value)
        if call.attributes:
            _user_attributes(attributes, call.attributes)
        if self.capture_content:
            messages = _messages_json(call.prompt, call.messages)
            if messages is not None:
                attributes[sc.INPUT_MESSAGES] = messages
        return attributes

    def llm_end_attributes(self, call: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if call.response_model or call.model:
            attributes[sc.RESPONSE_MODEL] = call.response_model or call.model
        if call.input_tokens is not None:
            attributes[sc.USAGE_INPUT_TOKENS] = call.input_tokens
        if call.output_tokens is not None:
            attributes[sc.USAGE_OUTPUT_TOKENS] = call.output_tokens
        if call.cached_input_tokens is not None:
            attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] = call.cached_input_tokens
        if call.cost_usd is not None:
            attributes[sc.COST_USD] = call.cost_usd
        if call.streamed:
            attributes[sc.REQUEST_STREAM] = True
            if call.time_to_first_chunk_ns is not None:
                attributes[sc.TIME_TO_FIRST_CHUNK] = call.time_to_first_chunk_ns / 1e9
        if call.attributes:
            _user_attributes(attributes, call.attributes)
        if self.capture_content:
            output = _output_json(call.response)
            if output is not None:
                attributes[sc.OUTPUT_MESSAGES] = output
        return attributes

    def tool_start_attributes(self, call: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.TOOL_NAME: call.tool}
        if call.workflow:
            attributes[sc.WORKFLOW_NAME] = call.workflow
        if call.node:
            attributes[sc.NODE_NAME] = call.node
        if call.attributes:
            _user_attributes(attributes, call.attributes)
        if self.capture_content and call.args is not None:
            attributes[sc.TOOL_CALL_ARGUMENTS] = json_text(call.args)
        return attributes

    def tool_end_attributes(self, call: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if call.attributes:
            _user_attributes(attributes, call.attributes)
        if self.capture_content and call.result is not None:
            attributes[sc.TOOL_CALL_RESULT] = json_text(call.result)
        return attributes


def _user_attributes(attributes: dict[str, Any], values: dict[str, Any]) -> None:
    """User tags and attributes (``team`` ...) under their own names, never over ours."""
    for key, value in values.items():
        if value is not None and key not in attributes:
            attributes[key] = attribute_value(value)


class GlobalProvider(trace_api.TracerProvider):
    """What this tier installs as the global TracerProvider: it forwards to the
    provider of the running tier.

    OpenTelemetry lets the global provider be set once per process, but
    ``tiertrace.configure()`` may run again (and shuts the previous tier down).
    Libraries that took a tracer from the global provider (an HTTP client's
    instrumentation) then follow the new tier instead of a shut-down one.
    Anything else (``add_span_processor``, ``resource`` ...) goes to the
    current SDK provider.
    """

    def __init__(self, target: Optional[TracerProvider] = None):
        self.target = target

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: Optional[str] = None,
                   schema_url: Optional[str] = None, attributes: Any = None) -> trace_api.Tracer:
        return _ForwardingTracer(self, (instrumenting_module_name, instrumenting_library_version,
                                        schema_url, attributes))

    def __getattr__(self, name: str) -> Any:
        target = self.__dict__.get("target")
        if target is None:
            raise AttributeError(name)
        return getattr(target, name)


class _ForwardingTracer(trace_api.Tracer):
    """A tracer of whatever provider :class:`GlobalProvider` points at now."""

    def __init__(self, owner: GlobalProvider, args: tuple[Any, ...]):
        self._owner = owner
        self._args = args
        self._for: Any = None
        self._tracer: trace_api.Tracer = trace_api.NoOpTracer()

    def _current(self) -> trace_api.Tracer:
        target = self._owner.target
        if target is not self._for:
            self._tracer = target.get_tracer(*self._args) if target is not None else trace_api.NoOpTracer()
            self._for = target
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace_api.Span:
        return self._current().start_span(*args, **kwargs)

    @_agnosticcontextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace_api.Span]:
        with self._current().start_as_current_span(*args, **kwargs) as span:
            yield span


def _global_provider_free() -> Optional[GlobalProvider]:
    """Our forwarding provider if it is (or can become) the global one, else None."""
    current = trace_api.get_tracer_provider()
    if isinstance(current, GlobalProvider):
        return current
    if isinstance(current, trace_api.ProxyTracerProvider):  # nobody set one yet
        provider = GlobalProvider()
        trace_api.set_tracer_provider(provider)
        if trace_api.get_tracer_provider() is provider:
            return provider
    return None
