"""Test kit for engines and tier authors.

- :class:`RecordingPlugin` records every hook call.
- The pytest fixtures ``tiertrace_tracer`` and ``tiertrace_recorder`` (registered
  through the ``pytest11`` entry point when tiertrace is installed) give a
  core-only tracer with a recorder registered.
- :func:`check_tier` is the conformance check any tier can run.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from tiertrace.hookspecs import RECORD_HOOKS, hookimpl
from tiertrace.testing.conformance import ConformanceReport, check_tier

__all__ = ["RecordingPlugin", "check_tier", "ConformanceReport", "recording_tracer"]


class RecordingPlugin:
    """Records ``(hook_name, record)`` for every hook call, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.flushes = 0
        self.shutdowns = 0
        self.tracer: Any = None

    def _add(self, hook: str, record: Any) -> None:
        with self._lock:
            self.events.append((hook, record))

    def records(self, hook: str) -> list[Any]:
        """Every record passed to ``hook``, in call order."""
        if hook not in RECORD_HOOKS:
            raise ValueError(f"unknown hook {hook!r}; known: {', '.join(RECORD_HOOKS)}")
        with self._lock:
            return [rec for name, rec in self.events if name == hook]

    def hooks(self) -> list[str]:
        """The hook names called, in order."""
        with self._lock:
            return [name for name, _ in self.events]

    def spans(self) -> list[Any]:
        """Every finished span record (workflows, nodes, LLM and tool calls)."""
        with self._lock:
            return [rec for name, rec in self.events if name.endswith("_end")]

    def trace(self, trace_id: str) -> list[Any]:
        """The finished span records of one trace."""
        return [s for s in self.spans() if s.trace_id == trace_id]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    @hookimpl
    def on_tracer_start(self, tracer: Any) -> None:
        self.tracer = tracer

    @hookimpl
    def on_workflow_start(self, workflow: Any) -> None:
        self._add("on_workflow_start", workflow)

    @hookimpl
    def on_workflow_end(self, workflow: Any) -> None:
        self._add("on_workflow_end", workflow)

    @hookimpl
    def on_node_start(self, node: Any) -> None:
        self._add("on_node_start", node)

    @hookimpl
    def on_node_end(self, node: Any) -> None:
        self._add("on_node_end", node)

    @hookimpl
    def on_llm_call_start(self, call: Any) -> None:
        self._add("on_llm_call_start", call)

    @hookimpl
    def on_llm_call_end(self, call: Any) -> None:
        self._add("on_llm_call_end", call)

    @hookimpl
    def on_tool_call_start(self, call: Any) -> None:
        self._add("on_tool_call_start", call)

    @hookimpl
    def on_tool_call_end(self, call: Any) -> None:
        self._add("on_tool_call_end", call)

    @hookimpl
    def on_retry(self, retry: Any) -> None:
        self._add("on_retry", retry)

    @hookimpl
    def on_validation_failure(self, failure: Any) -> None:
        self._add("on_validation_failure", failure)

    @hookimpl
    def on_optimization(self, result: Any) -> None:
        self._add("on_optimization", result)

    @hookimpl
    def on_flush(self, timeout: float) -> None:
        self.flushes += 1

    @hookimpl
    def on_shutdown(self, timeout: float) -> None:
        self.shutdowns += 1


def recording_tracer(config: Optional[Any] = None) -> tuple[Any, RecordingPlugin]:
    """A tracer with no tiers (unless ``config`` names some) and a recorder registered."""
    from tiertrace.config import CoreConfig, structure_section
    from tiertrace.tracer import Tracer

    core = structure_section(CoreConfig, config or {}, "observability")
    tracer = Tracer(core)
    recorder = RecordingPlugin()
    tracer.register(recorder, name="recorder")
    return tracer, recorder
