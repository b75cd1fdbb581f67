"""tiertrace: three-tier observability for LLM agent workflows.

>>> import tiertrace
>>> tracer = tiertrace.configure({"observability": {}})   # every installed tier, defaults
>>> with tracer.workflow("article_writer", inputs={"topic": "x"}):
...     with tracer.node("research"):
...         with tracer.llm_call(model="gemini-1.5-flash", prompt="...") as call:
...             call.record(response="...", input_tokens=812, output_tokens=230)
>>> tracer.shutdown()
"""

from __future__ import annotations

from typing import Any, Optional

from tiertrace.config import ConfigError
from tiertrace.hookspecs import hookimpl, hookspec
from tiertrace.records import (
    ErrorInfo,
    LLMCallRecord,
    NodeRecord,
    OptimizationRecord,
    RetryRecord,
    ToolCallRecord,
    ValidationFailureRecord,
    WorkflowRecord,
    to_dict,
)
from tiertrace.tracer import (
    Span,
    Tracer,
    bind,
    current_span,
    get_default_tracer,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "hookspec",
    "configure",
    "get_tracer",
    "Tracer",
    "Span",
    "ConfigError",
    "bind",
    "ThreadPoolExecutor",
    "current_span",
    "inject",
    "workflow",
    "node",
    "llm_call",
    "tool_call",
    "ErrorInfo",
    "WorkflowRecord",
    "NodeRecord",
    "LLMCallRecord",
    "ToolCallRecord",
    "RetryRecord",
    "ValidationFailureRecord",
    "OptimizationRecord",
    "to_dict",
]


def configure(source: Any = None, *, strict: Optional[bool] = None, set_default: bool = True) -> Tracer:
    """Build a tracer from configuration and start every installed, enabled tier.

    ``source`` is a YAML path, a dict, or None (defaults, or the file named by
    ``TIERTRACE_CONFIG``). ``strict=True`` (or ``TIERTRACE_STRICT=1``) makes a
    tier that cannot be imported or started an error instead of a warning.
    Bad configuration always raises :class:`ConfigError`, before any tier
    starts. The tracer becomes the process default (:func:`get_tracer`); a
    previous default is shut down.
    """
    from tiertrace import plugins, tracer as tracer_module
    from tiertrace.config import load_observability

    observability, label = load_observability(source)
    pm = plugins.make_plugin_manager()
    core, tiers = plugins.load_tiers(observability, label, pm, strict=strict)
    tracer = Tracer(core, tiers=tiers, plugin_manager=pm)
    if core.handle_sigterm:
        tracer_module.install_sigterm_handler()
    if set_default:
        previous = tracer_module.set_default_tracer(tracer)
        if previous is not None and previous is not tracer:
            previous.shutdown()
    return tracer


def get_tracer() -> Tracer:
    """The process default tracer (core only, no tiers, until :func:`configure`)."""
    return get_default_tracer()


def inject(headers: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Write the current span's ``traceparent`` into ``headers``."""
    return get_default_tracer().inject(headers)


# Module-level blocks resolve the default tracer when they open, so a function
# decorated at import time follows a later configure().


def workflow(name: Optional[str] = None, **kwargs: Any) -> Span:
    """``tracer.workflow`` on the default tracer (usable as a decorator)."""
    return _unbound(get_default_tracer().workflow(name, **kwargs))


def node(name: Optional[str] = None, **kwargs: Any) -> Span:
    """``tracer.node`` on the default tracer (usable as a decorator)."""
    return _unbound(get_default_tracer().node(name, **kwargs))


def llm_call(model: Optional[str] = None, **kwargs: Any) -> Span:
    """``tracer.llm_call`` on the default tracer (usable as a decorator)."""
    return _unbound(get_default_tracer().llm_call(model, **kwargs))


def tool_call(tool: Optional[str] = None, **kwargs: Any) -> Span:
    """``tracer.tool_call`` on the default tracer (usable as a decorator)."""
    return _unbound(get_default_tracer().tool_call(tool, **kwargs))


def __getattr__(name: str) -> Any:
    # Loaded on first use so that `import tiertrace` stays fast.
    if name == "ThreadPoolExecutor":
        from tiertrace.threads import ThreadPoolExecutor

        return ThreadPoolExecutor
    if name == "testing":
        import importlib

        return importlib.import_module("tiertrace.testing")
    raise AttributeError(f"module 'tiertrace' has no attribute {name!r}")


def _unbound(span: Span) -> Span:
    span._tracer = None  # resolved to the default tracer when the block opens
    return span
