"""The typed records that every hook receives.

A record is born in :mod:`tiertrace.tracer` when an engine opens a block
(``workflow``, ``node``, ``llm_call``, ``tool_call``) or reports a point event
(``retry``, ``validation_failure``, ``optimization``). The same span record
object is passed to the ``*_start`` hook and, filled in, to the ``*_end``
hook. Records are attrs classes; :func:`to_dict` gives the JSON form of any of
them and never raises.

Field names marked in DESIGN.md are public contract. Everything a tier may
want beyond them (the enclosing workflow's name, totals, counters) is here
too, so that a tier never has to keep its own bookkeeping to label a metric.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import attrs

__all__ = [
    "ErrorInfo",
    "SpanRecord",
    "WorkflowRecord",
    "NodeRecord",
    "LLMCallRecord",
    "ToolCallRecord",
    "RetryRecord",
    "ValidationFailureRecord",
    "OptimizationRecord",
    "to_dict",
    "to_jsonable",
]


@attrs.define(slots=True)
class ErrorInfo:
    """An exception, as its type name and message (already redacted)."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@attrs.define(slots=True, eq=False)
class SpanRecord:
    """Fields every span record (workflow, node, LLM call, tool call) has."""

    kind: ClassVar[str] = "span"

    trace_id: str
    """32 lowercase hex digits, W3C trace-context."""
    span_id: str
    """16 lowercase hex digits."""
    parent_span_id: Optional[str]
    """None for a root span (a workflow with no remote parent)."""
    name: str
    start_time_ns: int
    """Wall clock, ``time.time_ns()`` at start."""
    end_time_ns: Optional[int] = None
    """None until the span ends."""
    status: str = "ok"
    """``"ok"`` or ``"error"``."""
    error: Optional[ErrorInfo] = None
    attributes: dict[str, Any] = attrs.Factory(dict)
    """User tags on this span (``team``, ``customer_tier`` ...)."""
    workflow: Optional[str] = None
    """Name of the enclosing workflow (the workflow's own name on a workflow)."""
    duration_ns: Optional[int] = None
    """Monotonic duration, set at the end (not derived from wall clock)."""

    @property
    def duration_s(self) -> Optional[float]:
        return None if self.duration_ns is None else self.duration_ns / 1e9


@attrs.define(slots=True, eq=False)
class _Totals(SpanRecord):
    """Span records that sum what ran under them (workflows and nodes)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Sum over priced LLM calls; calls without a price count in ``unpriced_calls``."""
    llm_calls: int = 0
    unpriced_calls: int = 0
    tool_calls: int = 0
    retries: int = 0
    validation_failures: int = 0
    models: list[str] = attrs.Factory(list)
    """Distinct models called under this span, in first-call order."""


@attrs.define(slots=True, eq=False)
class WorkflowRecord(_Totals):
    """A workflow run. Totals are filled in when it ends."""

    kind: ClassVar[str] = "workflow"

    inputs: dict[str, Any] = attrs.Factory(dict)
    tags: dict[str, str] = attrs.Factory(dict)
    remote_parent: bool = False
    """True when the workflow joined a remote trace through ``traceparent``."""
    sampled: bool = True
    """The W3C sampled flag of the remote parent (True without one)."""


@attrs.define(slots=True, eq=False)
class NodeRecord(_Totals):
    """A node (step) of a workflow. Totals are filled in when it ends."""

    kind: ClassVar[str] = "node"


@attrs.define(slots=True, eq=False)
class LLMCallRecord(SpanRecord):
    """One LLM request. ``cost_usd`` is None when the model has no known price."""

    kind: ClassVar[str] = "llm_call"

    model: Optional[str] = None
    provider: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[Any]] = None
    params: dict[str, Any] = attrs.Factory(dict)
    response: Any = None
    response_model: Optional[str] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cached_input_tokens: Optional[int] = None
    cost_usd: Optional[float] = None
    attempt: int = 1
    node: Optional[str] = None
    """Name of the enclosing node, if any."""
    streamed: bool = False
    time_to_first_chunk_ns: Optional[int] = None


@attrs.define(slots=True, eq=False)
class ToolCallRecord(SpanRecord):
    """One tool call: its name, arguments and result."""

    kind: ClassVar[str] = "tool_call"

    tool: str = ""
    args: Any = None
    result: Any = None
    node: Optional[str] = None


@attrs.define(slots=True, eq=False)
class _PointEvent:
    """A point in time inside a span (the span that was current)."""

    trace_id: Optional[str]
    span_id: Optional[str]
    """The span the event belongs to (None outside any span)."""
    time_ns: int
    workflow: Optional[str] = None
    node: Optional[str] = None
    attributes: dict[str, Any] = attrs.Factory(dict)


@attrs.define(slots=True, eq=False)
class RetryRecord(_PointEvent):
    """An LLM call or node is retried."""

    kind: ClassVar[str] = "retry"

    target: str = "llm_call"
    """What is retried: ``"llm_call"`` or ``"node"`` (or an engine's own word)."""
    name: Optional[str] = None
    """The retried span's name (the model for an LLM call)."""
    attempt: int = 2
    """The attempt that is about to run (2 for the first retry)."""
    reason: str = ""


@attrs.define(slots=True, eq=False)
class ValidationFailureRecord(_PointEvent):
    """An output failed validation."""

    kind: ClassVar[str] = "validation_failure"

    errors: list[str] = attrs.Factory(list)
    raw_output: Any = None
    schema: Optional[str] = None


@attrs.define(slots=True, eq=False)
class OptimizationRecord(_PointEvent):
    """A prompt or program optimization finished (a DSPy compile, say)."""

    kind: ClassVar[str] = "optimization"

    name: str = "optimization"
    optimizer: str = ""
    settings: dict[str, Any] = attrs.Factory(dict)
    baseline: dict[str, float] = attrs.Factory(dict)
    """Metric name to value before optimization."""
    optimized: dict[str, float] = attrs.Factory(dict)
    """Metric name to value after optimization."""
    program: Any = None
    """The optimized prompt or program (text or a JSON-safe structure)."""
    duration_ns: Optional[int] = None

    @property
    def deltas(self) -> dict[str, float]:
        """``optimized - baseline`` for every metric both sides have."""
        return {
            key: self.optimized[key] - self.baseline[key]
            for key in self.baseline
            if key in self.optimized
        }


# --- JSON form -------------------------------------------------------------

_MAX_DEPTH = 32


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn any value into something ``json.dumps`` accepts. Never raises.

    Bytes are decoded as UTF-8 with replacement, NaN and infinities become
    strings, attrs and pydantic objects become dicts, and anything else
    becomes its ``repr`` (or a placeholder when even that fails).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= _MAX_DEPTH:
        return "<too deep>"
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", errors="replace")
        if isinstance(value, dict):
            return {_key(k): to_jsonable(v, _depth + 1) for k, v in list(value.items())}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [to_jsonable(v, _depth + 1) for v in list(value)]
        if isinstance(value, BaseException):
            return str(ErrorInfo(type(value).__name__, str(value)))
        if attrs.has(type(value)):
            return {
                f.name: to_jsonable(getattr(value, f.name, None), _depth + 1)
                for f in attrs.fields(type(value))
            }
        dump = getattr(value, "model_dump", None)  # pydantic v2 models
        if callable(dump):
            return to_jsonable(dump(), _depth + 1)
    except Exception:  # a hostile __iter__ or model_dump: fall back to repr
        pass
    return _safe_repr(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else _safe_repr(key) if not isinstance(key, (int, float, bool)) else str(key)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


_CONVERTER: Any = None


def converter() -> Any:
    """The cattrs converter for records (built on first use: cattrs is slow to import).

    ``converter().structure(data, LLMCallRecord)`` reads a record back from
    its JSON form.
    """
    global _CONVERTER
    if _CONVERTER is None:
        import cattrs

        conv = cattrs.Converter()
        # Values typed Any (responses, tool results, inputs) can hold anything.
        conv.register_unstructure_hook(object, to_jsonable)
        _CONVERTER = conv
    return _CONVERTER


def to_dict(record: Any) -> dict[str, Any]:
    """The JSON-safe dict of a record, with ``kind`` added. Never raises."""
    try:
        data = to_jsonable(converter().unstructure(record))
    except Exception:  # cattrs refused a field: the generic walk never does
        data = to_jsonable(record)
    if not isinstance(data, dict):  # not an attrs record after all
        data = {"value": data}
    data["kind"] = getattr(record, "kind", type(record).__name__)
    return data
