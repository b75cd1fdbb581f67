"""The MLflow tier: hooks hand records to the background writer, nothing more."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Optional

import tiertrace
from tiertrace.records import (
    LLMCallRecord,
    NodeRecord,
    OptimizationRecord,
    RetryRecord,
    ToolCallRecord,
    ValidationFailureRecord,
    WorkflowRecord,
)
from tiertrace_mlflow.config import MlflowConfig, resolve_destination, warn_once

__all__ = ["MlflowTier", "TIER_NAME"]

TIER_NAME = "mlflow"

_live_tiers: "weakref.WeakSet[MlflowTier]" = weakref.WeakSet()


def _after_fork() -> None:
    for tier in list(_live_tiers):
        tier._after_fork_in_child()


def _forget_inherited_connections() -> None:
    """Database connections and HTTP sessions must not be shared with the parent
    (SQLite forbids carrying a connection across fork): drop the child's
    references without closing them, so MLflow opens new ones."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        for engine in list(SqlAlchemyStore._engine_map.values()):
            engine.dispose(close=False)
    except Exception:
        pass
    try:
        from mlflow.utils.request_utils import _get_request_session

        _get_request_session.cache_clear()
    except Exception:
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def quiet_mlflow_telemetry() -> None:
    """Turn MLflow's usage telemetry off unless the user decided about it.

    MLflow 3 reads ``MLFLOW_DISABLE_TELEMETRY`` and ``DO_NOT_TRACK`` when it is
    imported (``mlflow.telemetry.utils.is_telemetry_disabled``). A user who set
    either variable, to any value, keeps their choice.
    """
    if "MLFLOW_DISABLE_TELEMETRY" not in os.environ and "DO_NOT_TRACK" not in os.environ:
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


class MlflowTier:
    """Tier 1: every workflow run, its cost and its prompts, in an MLflow experiment.

    Constructing the tier imports mlflow (a second or two) and starts the
    writer thread, which opens the store in the background.
    """

    config_class = MlflowConfig

    def __init__(self, config: Optional[MlflowConfig] = None):
        from tiertrace_mlflow.backend import MlflowBackend

        quiet_mlflow_telemetry()
        self.config = config if config is not None else MlflowConfig()
        self.destination = resolve_destination(self.config)
        if self.destination.note:
            warn_once(self.destination.note)
        self._tracer: Any = None
        self._early_drops: dict[str, int] = {}
        self._drops_lock = threading.Lock()
        backend = MlflowBackend(self.config, self.destination)
        backend.preload()
        self._start_writer(backend)
        _live_tiers.add(self)

    def _start_writer(self, backend: Any) -> None:
        from tiertrace_mlflow.writer import Writer

        self.backend = backend
        self.writer = Writer(backend, self.config.queue_size, self._dropped)
        self._submit = self.writer.submit
        self._open_runs: set[str] = set()  # span ids of runs whose start was queued

    def _after_fork_in_child(self) -> None:
        """A forked worker (gunicorn --preload, multiprocessing) inherits no threads:
        give it its own writer. What the parent had queued is the parent's to write."""
        from tiertrace_mlflow.backend import MlflowBackend

        if self.writer.closed:
            return
        self._drops_lock = threading.Lock()  # another thread may have held it at the fork
        _forget_inherited_connections()
        self._start_writer(MlflowBackend(self.config, self.destination, entities=self.backend._entities))

    def describe(self) -> str:
        return (f"mlflow: experiment {self.config.experiment_name!r} at {self.destination.tracking_uri} "
                f"(view: {self.destination.ui_hint})")

    def _dropped(self, count: int, reason: str) -> None:
        tracer = self._tracer
        if tracer is not None:
            tracer.health.record_dropped(TIER_NAME, count, reason)
            return
        with self._drops_lock:  # before on_tracer_start: keep the count for later
            self._early_drops[reason] = self._early_drops.get(reason, 0) + count

    # -- lifecycle ----------------------------------------------------------------------

    @tiertrace.hookimpl
    def on_tracer_start(self, tracer: Any) -> None:
        self._tracer = tracer
        with self._drops_lock:
            early, self._early_drops = self._early_drops, {}
        for reason, count in early.items():
            tracer.health.record_dropped(TIER_NAME, count, reason)

    @tiertrace.hookimpl
    def on_flush(self, timeout: float) -> None:
        self.writer.flush(timeout)

    @tiertrace.hookimpl
    def on_shutdown(self, timeout: float) -> None:
        # Leave some of the core's budget for counting what is left: the core
        # stops waiting at exactly ``timeout``.
        budget = max(0.0, min(timeout * 0.9, timeout - 0.1, self.config.flush_timeout))
        if not self.writer.close(budget):
            warn_once(f"shutdown: MLflow writes still pending after the timeout were counted as "
                      f"dropped (last error: {self.writer.last_error})")

    # -- records: one queue append each ------------------------------------------------------

    # A run whose start was queued always gets its end queued, even past the
    # queue's bound: dropping it would leave the run RUNNING in MLflow for good.

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: WorkflowRecord) -> None:
        if self._submit("workflow_start", workflow):
            self._open_runs.add(workflow.span_id)

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: WorkflowRecord) -> None:
        self._submit_end("workflow_end", workflow)

    @tiertrace.hookimpl
    def on_node_start(self, node: NodeRecord) -> None:
        if self._submit("node_start", node):
            self._open_runs.add(node.span_id)

    @tiertrace.hookimpl
    def on_node_end(self, node: NodeRecord) -> None:
        self._submit_end("node_end", node)

    def _submit_end(self, kind: str, record: Any) -> None:
        try:
            self._open_runs.remove(record.span_id)
        except KeyError:  # its start was dropped (or never seen): an ordinary record
            self._submit(kind, record)
        else:
            self._submit(kind, record, always=True)

    @tiertrace.hookimpl
    def on_llm_call_end(self, call: LLMCallRecord) -> None:
        self._submit("llm_call_end", call)

    @tiertrace.hookimpl
    def on_tool_call_end(self, call: ToolCallRecord) -> None:
        self._submit("tool_call_end", call)

    @tiertrace.hookimpl
    def on_retry(self, retry: RetryRecord) -> None:
        self._submit("retry", retry)

    @tiertrace.hookimpl
    def on_validation_failure(self, failure: ValidationFailureRecord) -> None:
        self._submit("validation_failure", failure)

    @tiertrace.hookimpl
    def on_optimization(self, result: OptimizationRecord) -> None:
        self._submit("optimization", result)

    # -- CLI ------------------------------------------------------------------------------------

    @staticmethod
    @tiertrace.hookimpl
    def register_commands(subparsers: Any) -> None:
        from tiertrace_mlflow.costs import add_costs_command

        add_costs_command(subparsers)
