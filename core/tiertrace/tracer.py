"""The tracer engines call: where records are born, priced, redacted and handed to tiers.

Reading order for a newcomer:

1. :class:`Tracer` is built by :func:`tiertrace.configure`; it owns the
   plugin manager, the price table and the content policy.
2. ``tracer.workflow()``, ``node()``, ``llm_call()`` and ``tool_call()``
   return a :class:`Span`. Entering it (:meth:`Span._start`) **births** the
   record, **redacts** its content and fires the ``*_start`` hook; leaving it
   (:meth:`Span._finish`) **prices** an LLM call, adds the totals to the
   enclosing workflow or node and fires the ``*_end`` hook.
3. :class:`~tiertrace.plugins.HookRelay` **hands the record to each tier**,
   one implementation at a time, so a raising tier cannot hurt the others.

Nesting follows a :class:`contextvars.ContextVar`, so it is right across
``await``. Threads start with an empty context: wrap the callable with
:func:`bind` or use :class:`ThreadPoolExecutor` to carry it over.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import os
import random
import re
import signal
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Mapping, Optional, TypeVar

from tiertrace import records as r
from tiertrace.config import CoreConfig
from tiertrace.hookspecs import RECORD_HOOKS
from tiertrace.plugins import Health, HookRelay, TierInfo, hooks_of, make_plugin_manager
from tiertrace.redaction import ContentPolicy

__all__ = ["Tracer", "Span", "bind", "current_span", "BadRecordValueWarning"]

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Optional["Span"]] = contextvars.ContextVar(
    "tiertrace_current_span", default=None
)
_totals_lock = threading.Lock()


class BadRecordValueWarning(UserWarning):
    """An engine passed a value that cannot be recorded as given (it is recorded safely)."""


# --- ids ------------------------------------------------------------------------

_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)  # a forked worker must not repeat ids


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero (W3C)."""
    return f"{_rng.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return f"{_rng.getrandbits(64) or 1:016x}"


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")


def parse_traceparent(value: Any) -> Optional[tuple[str, str, bool]]:
    """``(trace_id, parent_span_id, sampled)`` from a W3C traceparent, or None if invalid.

    ``value`` may be the header string or a headers mapping.
    """
    if isinstance(value, Mapping):
        value = next((v for k, v in value.items() if str(k).lower() == "traceparent"), None)
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if version == "00" and len(value.strip()) != 55:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


# --- threads ----------------------------------------------------------------------


def bind(fn: F) -> F:
    """Return ``fn`` bound to a copy of the current context (the current span).

    Use it to hand work to a thread: ``threading.Thread(target=bind(work))``.
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.run(fn, *args, **kwargs)

    return run  # type: ignore[return-value]


def current_span() -> Optional["Span"]:
    """The innermost open span in this context, or None."""
    return _current.get()


# --- values from engines ----------------------------------------------------------

_warned_values: set[tuple[str, str]] = set()


def _warn_bad_value(field: str, value: Any, recorded: Any) -> None:
    key = (field, type(value).__name__)
    if key in _warned_values:
        return
    _warned_values.add(key)
    shown = r._safe_repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    warnings.warn(
        f"tiertrace: {field}={shown} is not a non-negative integer; recorded as {recorded!r}",
        BadRecordValueWarning,
        stacklevel=4,
    )


def _tokens(field: str, value: Any) -> Optional[int]:
    """A token count as a non-negative int, or None (with one warning) when it isn't one."""
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    result: Optional[int] = None
    try:
        if not isinstance(value, bool):
            number = float(value) if isinstance(value, (float, str)) else int(value)
            if number >= 0 and number == int(number):
                result = int(number)
    except (TypeError, ValueError, OverflowError):
        result = None
    if result is None or not isinstance(value, int):
        _warn_bad_value(field, value, result)
    return result


def _cost(value: Any) -> Optional[float]:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number >= 0 and number != float("inf"):
        return number
    _warn_bad_value("cost_usd", value, None)
    return None


def _text(value: Any) -> str:
    """``str(value)``, or a placeholder when even that raises."""
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _error_info(exc: BaseException, policy: ContentPolicy) -> r.ErrorInfo:
    return r.ErrorInfo(type(exc).__qualname__, policy.redact_text(_text(exc)))


# --- spans ------------------------------------------------------------------------


class Span:
    """An open block: a workflow, node, LLM call or tool call.

    Used as ``with``/``async with`` (yielding itself) or as a decorator. The
    record the hooks receive is :attr:`data`.
    """

    __slots__ = ("_tracer", "_kind", "_args", "data", "_token", "_parent", "_owner", "_t0", "_done", "_ids")

    def __init__(self, tracer: Optional["Tracer"], kind: str, args: dict[str, Any]):
        self._tracer = tracer
        self._kind = kind
        self._args = args
        self.data: Any = None
        self._token: Optional[contextvars.Token] = None
        self._parent: Optional[Span] = None
        self._owner: Optional[Span] = None  # nearest enclosing workflow or node
        self._t0 = 0
        self._done = False
        self._ids: Optional[tuple[Optional[str], Optional[str]]] = None

    # -- identity ----------------------------------------------------------------

    @property
    def trace_id(self) -> Optional[str]:
        if self.data is not None:
            return self.data.trace_id
        return self._unrecorded_ids()[0]

    @property
    def span_id(self) -> Optional[str]:
        if self.data is not None:
            return self.data.span_id
        return self._unrecorded_ids()[1]

    @property
    def sampled(self) -> bool:
        """The W3C sampled flag this span propagates (False only under an unsampled remote parent)."""
        span: Span = self
        while span._parent is not None:
            span = span._parent
        if span.data is not None:
            return getattr(span.data, "sampled", True)
        remote = parse_traceparent(span._args.get("traceparent"))
        return remote[2] if remote else True

    @property
    def traceparent(self) -> Optional[str]:
        """The W3C traceparent that makes a remote span a child of this one."""
        if self.span_id is None:
            return None
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def _unrecorded_ids(self) -> tuple[Optional[str], Optional[str]]:
        """Ids of a span that built no record (no plugin listens), made when first asked for."""
        if self._token is None:
            return None, None
        if self._ids is None:
            if self._parent is not None:
                trace_id = self._parent.trace_id
            else:
                remote = parse_traceparent(self._args.get("traceparent")) if self._kind == "workflow" else None
                trace_id = remote[0] if remote else new_trace_id()
            self._ids = (trace_id, new_span_id())
        return self._ids

    # -- what an engine reports ---------------------------------------------------------

    def record(
        self,
        response: Any = None,
        *,
        input_tokens: Any = None,
        output_tokens: Any = None,
        cached_input_tokens: Any = None,
        model: Optional[str] = None,
        cost_usd: Any = None,
        result: Any = None,
        **attributes: Any,
    ) -> "Span":
        """Report what the block produced. Never raises.

        LLM calls: ``response``, token counts, the ``model`` that answered and an
        explicit ``cost_usd`` (else it is priced from the table). Tool calls:
        ``result``. Any span: extra keyword arguments become attributes.
        """
        data = self.data
        if data is None:
            return self
        tracer = self._tracer
        assert tracer is not None
        try:
            if self._kind == "llm_call":
                if response is not None:
                    data.response = tracer.content.content(response)
                if input_tokens is not None:
                    data.input_tokens = _tokens("input_tokens", input_tokens)
                if output_tokens is not None:
                    data.output_tokens = _tokens("output_tokens", output_tokens)
                if cached_input_tokens is not None:
                    data.cached_input_tokens = _tokens("cached_input_tokens", cached_input_tokens)
                if model is not None:
                    data.response_model = _text(model)
                if cost_usd is not None:
                    data.cost_usd = _cost(cost_usd)
            elif self._kind == "tool_call":
                if result is not None:
                    data.result = tracer.content.content(result)
            if attributes:
                data.attributes.update(tracer.content.clean(attributes))
        except Exception as exc:  # a bad value is never the workflow's problem
            tracer.health.record_plugin_error("tiertrace", "record", exc)
        return self

    def first_chunk(self) -> "Span":
        """Mark that the first chunk of a streamed response arrived (later calls do nothing).

        The decorator form does this by itself for generator functions; call it
        when you stream by hand or from a callback.
        """
        data = self.data
        if data is not None and self._kind == "llm_call" and not data.streamed:
            data.streamed = True
            data.time_to_first_chunk_ns = time.perf_counter_ns() - self._t0
        return self

    def set_attribute(self, key: str, value: Any) -> "Span":
        """Set one user attribute on this span."""
        return self.record(**{str(key): value})

    # -- enter and exit -------------------------------------------------------------------

    def __enter__(self) -> "Span":
        if self._token is not None:
            raise RuntimeError(f"this tiertrace {self._kind} block is already open; create a new one")
        self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._finish(exc)

    async def __aenter__(self) -> "Span":
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._finish(exc)

    def _start(self) -> None:
        tracer = self._tracer or get_default_tracer()
        self._tracer = tracer
        parent = _current.get()
        # A span opened from another tracer's span is still its child.
        self._parent = parent
        if not tracer._recording:
            # No plugin listens: only keep the nesting (for inject() and current_span()).
            self._token = _current.set(self)
            return
        if parent is not None:
            self._owner = parent if parent._kind in ("workflow", "node") else parent._owner
        # Wall clock for the record, monotonic clock for the duration, read together.
        start_ns = time.time_ns()
        self._t0 = time.perf_counter_ns()
        try:
            self.data = tracer._make_record(self._kind, self._args, parent, start_ns)
        except Exception as exc:  # never let a bad argument stop the workflow
            tracer.health.record_plugin_error("tiertrace", f"{self._kind}_start", exc)
            self.data = tracer._make_record(self._kind, {"name": self._args.get("name")}, parent, start_ns)
        self._token = _current.set(self)
        impls = tracer._start_hooks[self._kind]
        if impls:
            tracer.relay.fire(_START_HOOK[self._kind], impls, self.data)

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self._done or self._token is None:
            return
        self._done = True
        if self.data is None:  # an unrecorded span
            self._reset_current()
            return
        duration = time.perf_counter_ns() - self._t0
        data = self.data
        tracer = self._tracer
        assert tracer is not None
        data.duration_ns = duration
        data.end_time_ns = data.start_time_ns + duration
        if exc is not None and not isinstance(exc, GeneratorExit):  # GeneratorExit: the consumer stopped early
            data.status = "error"
            data.error = _error_info(exc, tracer.content)
        self._reset_current()
        if self._kind == "llm_call":
            tracer._price(data)
        owner = self._owner
        if owner is not None and owner.data is not None:
            _add_to_totals(owner.data, data)
        impls = tracer._end_hooks[self._kind]
        if impls:
            tracer.relay.fire(_END_HOOK[self._kind], impls, data)

    def _reset_current(self) -> None:
        try:
            _current.reset(self._token)  # type: ignore[arg-type]
        except ValueError:
            # Ended in another context (a generator closed elsewhere): restore by hand.
            _current.set(self._parent)

    # -- decorator form --------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Use the block as a decorator: a new span per call.

        Works on plain, ``async``, generator and async generator functions;
        generators are timed until the last item. A decorated LLM call records
        the return value (or the joined text chunks) as its response unless the
        function recorded one itself.
        """
        import inspect  # only decorators need it; keeps `import tiertrace` fast

        kind, args, tracer = self._kind, self._args, self._tracer
        if args.get("name") is None:
            args = {**args, "name": getattr(fn, "__name__", kind)}
            if kind == "tool_call" and not args.get("tool"):
                args["tool"] = args["name"]

        def new_span() -> Span:
            return Span(tracer, kind, args)

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*a: Any, **kw: Any) -> Any:
                span = new_span()
                async with span:
                    chunks: list[Any] = []
                    async for item in fn(*a, **kw):
                        span._chunk(item, chunks)
                        yield item
                    span._chunks_done(chunks)

            return agen_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*a: Any, **kw: Any) -> Any:
                span = new_span()
                with span:
                    chunks: list[Any] = []
                    for item in fn(*a, **kw):
                        span._chunk(item, chunks)
                        yield item
                    span._chunks_done(chunks)

            return gen_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*a: Any, **kw: Any) -> Any:
                async with new_span() as span:
                    result = await fn(*a, **kw)
                    span._returned(result)
                    return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            with new_span() as span:
                result = fn(*a, **kw)
                span._returned(result)
                return result

        return wrapper  # type: ignore[return-value]

    def _returned(self, result: Any) -> None:
        data = self.data
        if data is None:
            return
        if self._kind == "llm_call" and data.response is None:
            self.record(response=result)
        elif self._kind == "tool_call" and data.result is None:
            self.record(result=result)

    def _chunk(self, item: Any, chunks: list[Any]) -> None:
        if self.data is not None and self._kind in ("llm_call", "tool_call"):
            if not chunks:
                self.first_chunk()
            chunks.append(item)

    def _chunks_done(self, chunks: list[Any]) -> None:
        if chunks:
            joined = "".join(chunks) if all(isinstance(c, str) for c in chunks) else chunks
            self._returned(joined)

    def __repr__(self) -> str:
        return f"<tiertrace {self._kind} {self._args.get('name')!r} span_id={self.span_id}>"


_START_HOOK = {
    "workflow": "on_workflow_start",
    "node": "on_node_start",
    "llm_call": "on_llm_call_start",
    "tool_call": "on_tool_call_start",
}
_END_HOOK = {k: v.replace("_start", "_end") for k, v in _START_HOOK.items()}


def _add_to_totals(owner: Any, child: Any) -> None:
    """Fold a finished child into the nearest enclosing workflow or node."""
    with _totals_lock:
        if isinstance(child, r.LLMCallRecord):
            owner.llm_calls += 1
            owner.input_tokens += child.input_tokens or 0
            owner.output_tokens += child.output_tokens or 0
            if child.cost_usd is not None:
                owner.cost_usd += child.cost_usd
            elif child.input_tokens is not None or child.output_tokens is not None:
                owner.unpriced_calls += 1  # it used tokens, but we know no price
            if child.model and child.model not in owner.models:
                owner.models.append(child.model)
        elif isinstance(child, r.ToolCallRecord):
            owner.tool_calls += 1
        else:  # a node or nested workflow: everything it summed
            owner.llm_calls += child.llm_calls
            owner.input_tokens += child.input_tokens
            owner.output_tokens += child.output_tokens
            owner.cost_usd += child.cost_usd
            owner.unpriced_calls += child.unpriced_calls
            owner.tool_calls += child.tool_calls
            owner.retries += child.retries
            owner.validation_failures += child.validation_failures
            for model in child.models:
                if model not in owner.models:
                    owner.models.append(model)


# --- the tracer ---------------------------------------------------------------------


class Tracer:
    """Turns what an engine does into records and hands them to the tiers."""

    def __init__(
        self,
        core_config: Optional[CoreConfig] = None,
        *,
        tiers: Optional[list[TierInfo]] = None,
        plugin_manager: Any = None,
    ):
        self.config = core_config or CoreConfig()
        self.health = Health()
        self.pm = plugin_manager or make_plugin_manager()
        self.tiers: list[TierInfo] = list(tiers or [])
        from tiertrace.pricing import PriceTable

        self.prices = PriceTable(self.config.pricing)
        content = self.config.content
        self.content = ContentPolicy(
            capture=content.capture,
            extra_patterns=content.redact,
            use_defaults=content.redact_defaults,
            max_chars=content.max_chars,
        )
        self.relay = HookRelay(self.pm, self.health)
        self._refresh_hooks()
        self._shut_down = False
        self._shutdown_lock = threading.Lock()
        _live_tracers.add(self)
        self.relay.fire("on_tracer_start", self.relay.impls("on_tracer_start"), self)

    # -- blocks ------------------------------------------------------------------------

    def workflow(
        self,
        name: Optional[str] = None,
        *,
        inputs: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        traceparent: Any = None,
        **attributes: Any,
    ) -> Span:
        """A workflow run. ``traceparent`` (a header string or a headers mapping)
        makes it a child of a remote span. Extra keyword arguments are attributes."""
        return Span(self, "workflow", {"name": name, "inputs": inputs, "tags": tags,
                                       "traceparent": traceparent, "attributes": attributes})

    def node(self, name: Optional[str] = None, **attributes: Any) -> Span:
        """A node (step) inside a workflow."""
        return Span(self, "node", {"name": name, "attributes": attributes})

    def llm_call(
        self,
        model: Optional[str] = None,
        *,
        prompt: Optional[str] = None,
        messages: Optional[list[Any]] = None,
        provider: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        attempt: int = 1,
        name: Optional[str] = None,
        **attributes: Any,
    ) -> Span:
        """One LLM request. Report its outcome with ``call.record(...)``."""
        return Span(self, "llm_call", {"name": name or model, "model": model, "prompt": prompt,
                                       "messages": messages, "provider": provider, "params": params,
                                       "attempt": attempt, "attributes": attributes})

    def tool_call(self, tool: Optional[str] = None, *, args: Any = None, name: Optional[str] = None,
                  **attributes: Any) -> Span:
        """One tool call. Report its result with ``tool.record(result=...)``."""
        return Span(self, "tool_call", {"name": name or tool, "tool": tool, "args": args,
                                        "attributes": attributes})

    # -- point events ---------------------------------------------------------------------

    def retry(self, reason: Any = "", *, attempt: Optional[int] = None, target: Optional[str] = None,
              name: Optional[str] = None, **attributes: Any) -> None:
        """Report that the current LLM call or node is retried (``attempt`` is the next one)."""
        span = _current.get()
        if target is None:
            target = span._kind if span is not None and span._kind in ("llm_call", "node") else "llm_call"
        if attempt is None:
            attempt = (getattr(span.data, "attempt", 1) if span is not None else 1) + 1
        self._point(r.RetryRecord, "on_retry", "retries", span, target=target,
                    name=name or (span.data.name if span is not None and span.data is not None else None),
                    attempt=_tokens("attempt", attempt) or 0, reason=self.content.clean(_text(reason)),
                    attributes=attributes)

    def validation_failure(self, errors: Any, *, raw_output: Any = None, schema: Optional[str] = None,
                           **attributes: Any) -> None:
        """Report that an output failed validation."""
        if isinstance(errors, (str, bytes)) or not isinstance(errors, (list, tuple)):
            errors = [errors]
        self._point(r.ValidationFailureRecord, "on_validation_failure", "validation_failures",
                    _current.get(), errors=[self.content.clean(_text(e)) for e in errors],
                    raw_output=self.content.content(raw_output), schema=schema, attributes=attributes)

    def optimization(self, *, optimizer: str, baseline: Mapping[str, Any], optimized: Mapping[str, Any],
                     settings: Optional[Mapping[str, Any]] = None, program: Any = None,
                     name: str = "optimization", duration_s: Optional[float] = None,
                     **attributes: Any) -> r.OptimizationRecord:
        """Report a finished prompt/program optimization: metrics before and after."""
        return self._point(r.OptimizationRecord, "on_optimization", None, _current.get(),
                           name=_text(name), optimizer=_text(optimizer),
                           settings=self.content.clean(dict(settings or {})),
                           baseline=_metrics(baseline), optimized=_metrics(optimized),
                           program=self.content.content(program),
                           duration_ns=int(duration_s * 1e9) if duration_s is not None else None,
                           attributes=attributes)

    def _point(self, cls: type, hook: str, counter: Optional[str], span: Optional[Span], **fields: Any) -> Any:
        try:
            fields["attributes"] = self.content.clean(fields.get("attributes") or {})
            data = span.data if span is not None else None
            owner = span if span is not None and span._kind in ("workflow", "node") else (span._owner if span else None)
            record = cls(
                trace_id=data.trace_id if data else None,
                span_id=data.span_id if data else None,
                time_ns=time.time_ns(),
                workflow=data.workflow if data else None,
                node=_node_name(span),
                **fields,
            )
            if counter and owner is not None and owner.data is not None:
                with _totals_lock:
                    setattr(owner.data, counter, getattr(owner.data, counter) + 1)
        except Exception as exc:
            self.health.record_plugin_error("tiertrace", hook, exc)
            return None
        impls = self.relay.impls(hook)
        if impls:
            self.relay.fire(hook, impls, record)
        return record

    # -- records ----------------------------------------------------------------------------

    def _make_record(self, kind: str, args: dict[str, Any], parent: Optional[Span], start_ns: int) -> Any:
        """Birth of a span record: ids, parent, time, and redacted content."""
        clean = self.content.clean
        name = _text(args.get("name") or kind)
        attributes = args.get("attributes")
        attributes = clean(attributes) if attributes else {}
        if parent is not None:
            trace_id, parent_span_id = parent.trace_id, parent.span_id
            workflow = parent.data.workflow if parent.data is not None else None
        else:
            trace_id, parent_span_id, workflow = new_trace_id(), None, None
        if kind == "node":
            return r.NodeRecord(trace_id, new_span_id(), parent_span_id, name, start_ns,
                                attributes=attributes, workflow=workflow)
        if kind == "workflow":
            traceparent = args.get("traceparent")
            remote = parse_traceparent(traceparent) if traceparent else None
            if traceparent and remote is None:
                _warn_bad_value("traceparent", traceparent, None)
            sampled = True
            if remote is not None and parent is None:
                trace_id, parent_span_id, sampled = remote
            inputs, tags = args.get("inputs"), args.get("tags")
            return r.WorkflowRecord(
                trace_id, new_span_id(), parent_span_id, name, start_ns,
                attributes=attributes,
                workflow=name,
                inputs=self.content.content(dict(inputs)) or {} if inputs else {},
                tags={_text(k): clean(_text(v)) for k, v in tags.items()} if tags else {},
                remote_parent=remote is not None and parent is None,
                sampled=sampled,
            )
        node = _node_name(parent)
        if kind == "llm_call":
            model = args.get("model")
            content = self.content.content
            return r.LLMCallRecord(
                trace_id, new_span_id(), parent_span_id, name, start_ns,
                attributes=attributes,
                workflow=workflow,
                model=_text(model) if model is not None else None,
                provider=args.get("provider") or self.prices.provider(model),
                prompt=content(args.get("prompt")),
                messages=content(args.get("messages")),
                params=clean(dict(args["params"])) if args.get("params") else {},
                attempt=_tokens("attempt", args.get("attempt")) or 1,
                node=node,
            )
        return r.ToolCallRecord(trace_id, new_span_id(), parent_span_id, name, start_ns,
                                attributes=attributes, workflow=workflow,
                                tool=_text(args.get("tool") or name),
                                args=self.content.content(args.get("args")), node=node)

    def _price(self, call: r.LLMCallRecord) -> None:
        """Price an LLM call from its tokens, unless the engine gave a cost."""
        if call.cost_usd is None:
            call.cost_usd = self.prices.cost(call.model or call.response_model, call.input_tokens,
                                             call.output_tokens, call.cached_input_tokens)

    # -- propagation ----------------------------------------------------------------------------

    def inject(self, headers: Optional[dict[str, str]] = None) -> dict[str, str]:
        """Write the current span's W3C ``traceparent`` into ``headers`` (a new dict if None)."""
        headers = {} if headers is None else headers
        span = _current.get()
        if span is not None and span.traceparent:
            headers["traceparent"] = span.traceparent
        return headers

    @staticmethod
    def current_span() -> Optional[Span]:
        return _current.get()

    # -- plugins --------------------------------------------------------------------------------

    def _refresh_hooks(self) -> None:
        self.relay.refresh()
        relay = self.relay
        self._start_hooks = {kind: relay.impls(hook) for kind, hook in _START_HOOK.items()}
        self._end_hooks = {kind: relay.impls(hook) for kind, hook in _END_HOOK.items()}
        # With no plugin listening to any record hook, spans build no records at all.
        self._recording = any(relay.impls(hook) for hook in RECORD_HOOKS)

    def register(self, plugin: Any, name: Optional[str] = None) -> str:
        """Register an in-process plugin instance (an engine's own hooks). Returns its name."""
        if isinstance(plugin, type):
            raise TypeError(f"register() takes a plugin instance, not the class {plugin.__name__}; "
                            f"call register({plugin.__name__}())")
        registered = self.pm.register(plugin, name=name)
        assert registered is not None
        self.tiers.append(TierInfo(name=registered, state="active", reason="registered in process",
                                   hooks=hooks_of(plugin), instance=plugin))
        self._refresh_hooks()
        if hasattr(plugin, "on_tracer_start"):
            self.relay.fire("on_tracer_start", tuple(i for i in self.relay.impls("on_tracer_start")
                                                     if i[0] == registered), self)
        return registered

    def unregister(self, name: str) -> Any:
        """Remove a plugin (or tier) by name; returns the plugin object."""
        plugin = self.pm.unregister(name=name)
        self.tiers = [t for t in self.tiers if t.name != name]
        self._refresh_hooks()
        return plugin

    def add_hookspecs(self, module_or_class: Any) -> None:
        """Let an engine declare its own hooks (tiers implement them with
        ``@tiertrace.hookimpl(optionalhook=True)``); fire them with :meth:`fire`."""
        self.pm.add_hookspecs(module_or_class)
        self._refresh_hooks()

    def fire(self, hook: str, **kwargs: Any) -> None:
        """Call an engine-defined hook on every plugin, each in isolation."""
        impls = self.relay.impls(hook)
        if not impls:
            return
        if len(kwargs) != 1:
            raise TypeError(f"tiertrace hooks take exactly one keyword argument, got {sorted(kwargs)}")
        (value,) = kwargs.values()
        self.relay.fire(hook, impls, value)

    def tier(self, name: str) -> Any:
        """The running instance of a tier (or in-process plugin), or None."""
        return next((t.instance for t in self.tiers if t.name == name and t.instance is not None), None)

    # -- flush and shutdown ------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> list[str]:
        """Ask every tier to write out what it queued. Returns the tiers that overran."""
        return self.relay.fire_bounded("on_flush", timeout or self.config.shutdown_timeout,
                                       timeout or self.config.shutdown_timeout)

    def shutdown(self, timeout: Optional[float] = None) -> list[str]:
        """Flush and stop every tier, all within ``timeout`` seconds (default
        ``shutdown_timeout``). Idempotent. Returns the tiers that overran."""
        with self._shutdown_lock:
            if self._shut_down:
                return []
            self._shut_down = True
        timeout = timeout or self.config.shutdown_timeout
        late = self.relay.fire_bounded("on_shutdown", timeout, timeout)
        if late:
            warnings.warn(f"tiertrace: shutdown of {', '.join(late)} did not finish within {timeout:g} s",
                          RuntimeWarning, stacklevel=2)
        _live_tracers.discard(self)
        return late

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def __enter__(self) -> "Tracer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _node_name(span: Optional[Span]) -> Optional[str]:
    while span is not None:
        if span._kind == "node":
            return span.data.name if span.data is not None else None
        span = span._parent
    return None


def _metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics only; anything else is dropped with a warning."""
    result = {}
    for key, value in dict(values or {}).items():
        try:
            result[str(key)] = float(value)
        except (TypeError, ValueError):
            _warn_bad_value(f"metric {key}", value, None)
    return result


# --- the process default and exit ------------------------------------------------------------

_live_tracers: "weakref.WeakSet[Tracer]" = weakref.WeakSet()
_default_tracer: Optional[Tracer] = None
_default_lock = threading.Lock()


def get_default_tracer() -> Tracer:
    """The process default tracer; a core-only tracer until ``configure()`` is called."""
    global _default_tracer
    tracer = _default_tracer
    if tracer is None:
        with _default_lock:
            if _default_tracer is None:
                _default_tracer = Tracer()
            tracer = _default_tracer
    return tracer


def set_default_tracer(tracer: Tracer) -> Optional[Tracer]:
    """Make ``tracer`` the process default; returns the previous one."""
    global _default_tracer
    with _default_lock:
        previous, _default_tracer = _default_tracer, tracer
    return previous


def _shutdown_all() -> None:
    for tracer in list(_live_tracers):
        try:
            tracer.shutdown()
        except Exception:
            pass


atexit.register(_shutdown_all)

_sigterm_installed = False


def install_sigterm_handler() -> bool:
    """On SIGTERM, flush every tracer (within its timeout), then terminate as before.

    Installed by ``configure()`` when SIGTERM still has its default action and
    this is the main thread; an application's own handler is left alone.
    """
    global _sigterm_installed
    if _sigterm_installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    def on_sigterm(signum: int, frame: Any) -> None:
        _shutdown_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_installed = True
    return True
