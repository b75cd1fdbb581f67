"""LangChain integration: chains, chat models, LLMs and tools become tiertrace spans.

>>> from tiertrace_otel import langchain as tt_langchain
>>> tt_langchain.instrument(tracer)      # every LangChain run from now on, no callbacks= needed
>>> chain.invoke({"topic": "x"})
>>> tt_langchain.uninstrument()

The outermost chain becomes a workflow (a node when it runs inside a tiertrace
workflow already), inner chains become nodes (except prompt templates and
output parsers, which only format: ``skip_run_types``), chat models and LLMs become LLM
calls with the token usage of their result, tools become tool calls. Errors
mark the span ``error``. Because the spans are tiertrace spans, every tier
sees them: MLflow costs, Prometheus metrics and OpenTelemetry traces alike.

LangChain reports a run as separate start and end callbacks, possibly from
different threads or asyncio tasks, so each run's span is opened and closed
inside its own :class:`contextvars.Context` (a copy of its parent run's).
That keeps nesting right for sync, async and streaming runs and never leaves
a span "current" in the caller's context after a callback returns. The
flip side: code running inside a LangChain tool does not see the tool's span
as current; wrap such code in ``tracer.tool_call`` yourself if it matters.

For traceloop's own LangChain spans instead, set
``observability.opentelemetry.langchain_instrumentor: true``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any, Optional
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

import tiertrace

__all__ = ["TiertraceCallbackHandler", "instrument", "uninstrument"]

#: Chain runs that format rather than work (prompt templates, output parsers):
#: no node of their own, what they start attaches to their parent.
SKIPPED_RUN_TYPES = ("prompt", "parser")

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


class _Run:
    """A LangChain run that is open: its span and the context it lives in."""

    __slots__ = ("span", "context")

    def __init__(self, span: Any, context: contextvars.Context):
        self.span = span
        self.context = context


def _enter(make_span: Any) -> Any:
    span = make_span()
    if span is not None:
        span.__enter__()
    return span


def _name(serialized: Optional[dict[str, Any]], kwargs: dict[str, Any], default: str) -> str:
    if kwargs.get("name"):
        return str(kwargs["name"])
    if serialized:
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


def _message_dict(message: Any) -> dict[str, Any]:
    role = getattr(message, "type", "user")
    return {"role": _ROLES.get(role, role), "content": getattr(message, "content", message)}


class TiertraceCallbackHandler(BaseCallbackHandler):
    """Drives a tiertrace tracer from LangChain callbacks (sync and async runs alike)."""

    run_inline = True  # our callbacks only touch memory: no thread hop in async runs
    raise_error = False

    def __init__(self, tracer: Any = None, *, skip_run_types: tuple[str, ...] = SKIPPED_RUN_TYPES):
        super().__init__()
        self.tracer = tracer
        self.skip_run_types = skip_run_types
        self.enabled = True
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    def _tracer(self) -> Any:
        return self.tracer or tiertrace.get_tracer()

    # -- opening and closing spans in their own contexts ----------------------------------

    def _open(self, run_id: UUID, parent_run_id: Optional[UUID], make_span: Any) -> None:
        if not self.enabled:
            return
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        context = parent.context.copy() if parent is not None else contextvars.copy_context()
        # None for a skipped run: its children attach to its parent.
        self._runs[run_id] = _Run(context.run(_enter, make_span), context)

    def _close(self, run_id: UUID, error: Optional[BaseException] = None, report: Any = None) -> None:
        run = self._runs.pop(run_id, None)
        if run is None or run.span is None:
            return
        span = run.span
        if report is not None:
            try:
                run.context.run(report, span)
            except Exception:  # an odd result object must not lose the span
                pass
        if error is not None:
            run.context.run(span.__exit__, type(error), error, error.__traceback__)
        else:
            run.context.run(span.__exit__, None, None, None)

    # -- chains -----------------------------------------------------------------------------

    def on_chain_start(self, serialized: Optional[dict[str, Any]], inputs: Any, *, run_id: UUID,
                       parent_run_id: Optional[UUID] = None, tags: Optional[list[str]] = None,
                       metadata: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        name = _name(serialized, kwargs, "chain")
        hidden = (kwargs.get("run_type") in self.skip_run_types
                  or (bool(tags) and "langsmith:hidden" in tags))  # type: ignore[operator]

        def make_span() -> Any:
            if hidden:
                return None
            tracer = self._tracer()
            if tiertrace.current_span() is None:  # the outermost chain: a workflow
                workflow_inputs = inputs if isinstance(inputs, dict) else {"input": inputs}
                return tracer.workflow(name, inputs=workflow_inputs)
            return tracer.node(name)

        self._open(run_id, parent_run_id, make_span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)

    # -- chat models and LLMs ------------------------------------------------------------------

    def _open_llm(self, serialized: Optional[dict[str, Any]], run_id: UUID, parent_run_id: Optional[UUID],
                  metadata: Optional[dict[str, Any]], kwargs: dict[str, Any], **content: Any) -> None:
        params = dict(kwargs.get("invocation_params") or {})
        metadata = metadata or {}
        model = (params.get("model") or params.get("model_name") or params.get("model_id")
                 or metadata.get("ls_model_name") or _name(serialized, kwargs, "llm"))
        provider = metadata.get("ls_provider")
        request = {k: params[k] for k in ("temperature", "max_tokens", "top_p", "top_k", "stop", "n", "seed")
                   if params.get(k) is not None}

        def make_span() -> Any:
            return self._tracer().llm_call(str(model), provider=provider, params=request, **content)

        self._open(run_id, parent_run_id, make_span)

    def on_chat_model_start(self, serialized: Optional[dict[str, Any]], messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: Optional[UUID] = None,
                            metadata: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        flat = [_message_dict(m) for batch in messages for m in batch]
        self._open_llm(serialized, run_id, parent_run_id, metadata, kwargs, messages=flat)

    def on_llm_start(self, serialized: Optional[dict[str, Any]], prompts: list[str], *, run_id: UUID,
                     parent_run_id: Optional[UUID] = None, metadata: Optional[dict[str, Any]] = None,
                     **kwargs: Any) -> None:
        self._open_llm(serialized, run_id, parent_run_id, metadata, kwargs, prompt="\n\n".join(prompts))

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.span is not None:
            run.span.first_chunk()

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, report=lambda span: _record_llm_result(span, response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)

    # -- tools ----------------------------------------------------------------------------------

    def on_tool_start(self, serialized: Optional[dict[str, Any]], input_str: str, *, run_id: UUID,
                      parent_run_id: Optional[UUID] = None, inputs: Optional[dict[str, Any]] = None,
                      **kwargs: Any) -> None:
        name = _name(serialized, kwargs, "tool")

        def make_span() -> Any:
            return self._tracer().tool_call(name, args=inputs if inputs is not None else input_str)

        self._open(run_id, parent_run_id, make_span)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        result = getattr(output, "content", output)  # a ToolMessage carries the tool's output
        self._close(run_id, report=lambda span: span.record(result=result))

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)


def _record_llm_result(span: Any, response: Any) -> None:
    """Tokens, model and text of an ``LLMResult`` (from llm_output or the messages' usage_metadata)."""
    llm_output = getattr(response, "llm_output", None) or {}
    usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
    input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
    output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
    cached = None
    model = llm_output.get("model_name") or llm_output.get("model")
    texts = []
    summed_in = summed_out = 0
    found_usage = False
    for generations in getattr(response, "generations", None) or []:
        for generation in generations:
            texts.append(getattr(generation, "text", "") or "")
            message = getattr(generation, "message", None)
            metadata = getattr(message, "usage_metadata", None)
            if metadata:
                found_usage = True
                summed_in += metadata.get("input_tokens") or 0
                summed_out += metadata.get("output_tokens") or 0
                cache_read = (metadata.get("input_token_details") or {}).get("cache_read")
                if cache_read is not None:
                    cached = (cached or 0) + cache_read
            response_metadata = getattr(message, "response_metadata", None) or {}
            model = model or response_metadata.get("model_name") or response_metadata.get("model")
    if input_tokens is None and output_tokens is None and found_usage:
        input_tokens, output_tokens = summed_in, summed_out
    span.record(response="".join(texts) if texts else None, input_tokens=input_tokens,
                output_tokens=output_tokens, cached_input_tokens=cached, model=model)


# --- global registration -------------------------------------------------------------------------

_installed: Optional[tuple[contextvars.ContextVar, TiertraceCallbackHandler]] = None
_install_lock = threading.Lock()


def instrument(tracer: Any = None, *, skip_run_types: tuple[str, ...] = SKIPPED_RUN_TYPES
               ) -> TiertraceCallbackHandler:
    """Trace every LangChain run in the process with ``tracer`` (default: the process tracer).

    Registers the handler through ``langchain_core``'s configure hook, so no
    ``callbacks=`` argument is needed anywhere. Calling it again replaces the handler.
    """
    from langchain_core.tracers.context import register_configure_hook

    global _installed
    with _install_lock:
        _remove_installed()
        handler = TiertraceCallbackHandler(tracer, skip_run_types=skip_run_types)
        # The handler is the variable's default, so every thread and task sees it.
        variable: contextvars.ContextVar = contextvars.ContextVar("tiertrace_langchain_handler", default=handler)
        register_configure_hook(variable, inheritable=True)
        _installed = (variable, handler)
        return handler


def uninstrument() -> None:
    """Stop tracing LangChain runs started from now on."""
    with _install_lock:
        _remove_installed()


def _remove_installed() -> None:
    global _installed
    if _installed is None:
        return
    variable, handler = _installed
    handler.enabled = False
    try:  # langchain_core offers no unregister: take our entry out of its list
        from langchain_core.tracers import context as lc_context

        lc_context._configure_hooks[:] = [h for h in lc_context._configure_hooks if h[0] is not variable]
    except Exception:
        pass  # the disabled handler stays registered but records nothing
    _installed = None
