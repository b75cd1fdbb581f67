"""Every hook a tier can implement, in one place.

Each hook takes exactly one keyword argument and returns nothing. Span
hooks receive the same record object at start and at end; at end its
``end_time_ns``, ``duration_ns``, ``status`` and ``error`` are set.

Hooks run on the engine's thread, inside the workflow: a tier must hand any
I/O to a background queue and return in microseconds. An exception raised
by a hook is caught by the core, counted and reported once; it never reaches
the workflow or the other tiers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tiertrace.records import (
        LLMCallRecord,
        NodeRecord,
        OptimizationRecord,
        RetryRecord,
        ToolCallRecord,
        ValidationFailureRecord,
        WorkflowRecord,
    )

PROJECT_NAME = "tiertrace"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- workflow and node ------------------------------------------------------


@hookspec
def on_workflow_start(workflow: WorkflowRecord) -> None:
    """A workflow run begins: ids, name, ``inputs``, ``tags``, ``attributes``."""


@hookspec
def on_workflow_end(workflow: WorkflowRecord) -> None:
    """A workflow run ends: ``status``, ``error``, duration and the totals
    (``input_tokens``, ``output_tokens``, ``cost_usd``, ``llm_calls``,
    ``unpriced_calls``, ``tool_calls``, ``retries``, ``validation_failures``,
    ``models``) of everything that ran under it."""


@hookspec
def on_node_start(node: NodeRecord) -> None:
    """A node begins: ids (its parent is the workflow or an outer node), name,
    ``workflow`` (the enclosing workflow's name)."""


@hookspec
def on_node_end(node: NodeRecord) -> None:
    """A node ends: ``status``, ``error``, duration and the same totals as a
    workflow, for what ran under this node."""


# --- LLM and tool calls -----------------------------------------------------


@hookspec
def on_llm_call_start(call: LLMCallRecord) -> None:
    """An LLM request begins: ``model``, ``provider``, ``prompt`` or ``messages``
    (redacted), ``params``, ``attempt``, and the enclosing ``workflow``/``node``."""


@hookspec
def on_llm_call_end(call: LLMCallRecord) -> None:
    """An LLM request ends: ``response`` (redacted), ``input_tokens``,
    ``output_tokens``, ``cached_input_tokens``, ``cost_usd`` (None when the
    model has no known price), ``status`` and ``error``."""


@hookspec
def on_tool_call_start(call: ToolCallRecord) -> None:
    """A tool call begins: ``tool`` and ``args`` (redacted)."""


@hookspec
def on_tool_call_end(call: ToolCallRecord) -> None:
    """A tool call ends: ``result`` (redacted), ``status`` and ``error``."""


# --- point events -----------------------------------------------------------


@hookspec
def on_retry(retry: RetryRecord) -> None:
    """An LLM call or a node is retried: ``target``, ``name``, ``attempt``
    (the attempt about to run) and ``reason``; ``span_id`` is the span that
    was current when the retry was reported."""


@hookspec
def on_validation_failure(failure: ValidationFailureRecord) -> None:
    """An output failed validation: ``errors`` (messages), ``raw_output``
    (redacted) and the ``schema`` name."""


@hookspec
def on_optimization(result: OptimizationRecord) -> None:
    """A prompt or program optimization finished: ``optimizer`` and its
    ``settings``, ``baseline`` and ``optimized`` metrics (``deltas`` gives
    the difference) and the optimized ``program``."""


# --- lifecycle --------------------------------------------------------------


@hookspec
def on_tracer_start(tracer: Any) -> None:
    """The tracer has registered every tier. A tier may keep ``tracer`` to read
    its health counters or report dropped records with
    ``tracer.health.record_dropped(tier, n)``."""


@hookspec
def on_flush(timeout: float) -> None:
    """Write out what is queued, returning within ``timeout`` seconds."""


@hookspec
def on_shutdown(timeout: float) -> None:
    """Flush and release resources within ``timeout`` seconds. Fired once, by
    ``tracer.shutdown()`` or at interpreter exit. Each tier's shutdown runs in
    its own thread, so a tier that overruns cannot delay the others."""


@hookspec
def register_commands(subparsers: Any) -> None:
    """Add ``tiertrace`` CLI commands (an ``argparse`` subparsers object).

    Implement it as a ``@staticmethod`` on the tier class: the CLI collects
    commands without starting any tier."""


#: The hooks an engine fires for records, in the order of DESIGN.md.
RECORD_HOOKS = (
    "on_workflow_start",
    "on_workflow_end",
    "on_node_start",
    "on_node_end",
    "on_llm_call_start",
    "on_llm_call_end",
    "on_tool_call_start",
    "on_tool_call_end",
    "on_retry",
    "on_validation_failure",
    "on_optimization",
)
LIFECYCLE_HOOKS = ("on_tracer_start", "on_flush", "on_shutdown", "register_commands")
