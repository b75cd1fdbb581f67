"""Records into MLflow: runs, metrics, params, tags, artifacts (and traces).

Everything here runs on the writer thread. :meth:`MlflowBackend.plan` turns
one record into a short list of MLflow calls; the writer runs them, retrying
a call that fails without repeating the ones that succeeded.

The mapping (documented in docs/tiers/mlflow.md):

- a top-level workflow is a run tagged ``tiertrace.kind=workflow``; a
  workflow opened inside another workflow is a nested ``subworkflow`` run
  (its cost is already in the outer workflow's totals);
- a node is a nested run (``mlflow.parentRunId``) of the run it ran in;
- LLM and tool calls become step metrics (``llm/...``, ``tool/...``) of the
  run they ran in, per-model totals (``model/<model>/...``) of the workflow
  run, and entries in the workflow's ``tiertrace/records.json`` artifact;
- an optimization is its own run (``tiertrace.kind=optimization``) with
  ``baseline_<metric>``, ``optimized_<metric>`` and ``delta_<metric>`` metrics.

Runs are addressed by id through one ``MlflowClient``; nothing uses MLflow's
thread-local active run.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import posixpath
import re
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any, Callable, Optional, Sequence

import attrs

from tiertrace import to_dict
from tiertrace.records import (
    LLMCallRecord,
    NodeRecord,
    OptimizationRecord,
    ToolCallRecord,
    WorkflowRecord,
)
from tiertrace_mlflow.config import Destination, MlflowConfig, warn_once

log = logging.getLogger("tiertrace.mlflow")

__all__ = ["MlflowBackend", "TAG_KIND", "TAG_WORKFLOW", "TAG_TRACE_ID", "model_prefix", "TOTAL_METRICS"]

TAG_KIND = "tiertrace.kind"
TAG_WORKFLOW = "tiertrace.workflow"
TAG_NODE = "tiertrace.node"
TAG_TRACE_ID = "tiertrace.trace_id"
TAG_SPAN_ID = "tiertrace.span_id"
TAG_MODELS = "tiertrace.models"
TAG_ERROR = "tiertrace.error"
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nested-run tag

#: Metrics every workflow and node run gets at its end (record field -> metric).
TOTAL_METRICS = (
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "llm_calls",
    "unpriced_calls",
    "tool_calls",
    "retries",
    "validation_failures",
)

#: Record fields that hold content; dropped when ``capture_content`` is false.
CONTENT_FIELDS = ("prompt", "messages", "response", "args", "result", "inputs", "raw_output", "program")

# MLflow's limits (mlflow.utils.validation), repeated here to cut values
# ourselves instead of having a whole batch refused.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")

# MLflow error codes that no retry can fix.
_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "BAD_REQUEST",
    "INVALID_STATE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "FEATURE_DISABLED",
    "NOT_IMPLEMENTED",
    "ENDPOINT_NOT_FOUND",
}


#: Backends creating a SQLite schema right now (see _finish_schemas).
_creating: "weakref.WeakSet[MlflowBackend]" = weakref.WeakSet()
SCHEMA_EXIT_WAIT_S = 60.0


def _finish_schemas() -> None:
    """At interpreter exit, let a schema creation finish (once per store, seconds).

    Registered after the core's own exit handler, so it runs before it (atexit
    is last in, first out); the core's shutdown then writes the queued records.
    """
    for backend in list(_creating):
        log.warning("tiertrace mlflow: finishing the creation of %s before exit",
                    backend.destination.tracking_uri)
        if backend._creating_schema.acquire(timeout=SCHEMA_EXIT_WAIT_S):
            backend._creating_schema.release()


atexit.register(_finish_schemas)


def safe_key(key: str) -> str:
    """A metric, param or tag key MLflow accepts (other characters become ``_``)."""
    key = _BAD_KEY_CHARS.sub("_", str(key))[:MAX_KEY] or "_"
    if posixpath.normpath(key) != key:  # "a//b", "a/../b", "x/": MLflow refuses them
        key = key.replace("/", "_")
    return key


def model_prefix(model: str) -> str:
    """The metric prefix of a model's totals on a workflow run: ``model/<model>/``."""
    return "model/" + safe_key(model.replace("/", "_")) + "/"


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ms(ns: Optional[int]) -> int:
    return (ns if ns is not None else time.time_ns()) // 1_000_000


@attrs.define(eq=False)
class _Run:
    """A workflow or node run the writer has opened."""

    run_id: Optional[str]
    workflow: "_Workflow"
    metrics: list[Any] = attrs.Factory(list)
    """Per-call step metrics, written with the run's end batch."""
    llm_steps: int = 0
    tool_steps: int = 0


@attrs.define(eq=False)
class _Workflow:
    """What a top-level workflow collects until it ends (shared by its nodes and sub-workflows)."""

    records: list[dict[str, Any]] = attrs.Factory(list)
    spans: list[Any] = attrs.Factory(list)
    """Finished span records, for the MLflow trace."""
    models: dict[str, dict[str, float]] = attrs.Factory(dict)


class MlflowBackend:
    """Plans and performs the MLflow calls for each record (writer thread only)."""

    def __init__(self, config: MlflowConfig, destination: Destination, entities: Any = None):
        self.config = config
        self.destination = destination
        self.client: Any = None
        self.experiment_id: Optional[str] = None
        self._runs: dict[str, _Run] = {}  # span id of a workflow or node -> its run
        self._by_trace: dict[str, _Run] = {}  # trace id -> the open top-level workflow's run
        self._traces_supported = True
        self._entities: Any = entities  # mlflow's Metric, Param, RunTag (set by preload)
        self._creating_schema = threading.Lock()

    # -- Backend protocol ---------------------------------------------------------------

    def preload(self) -> None:
        """Import every mlflow module the writer will use, on the caller's thread.

        Importing mlflow from the writer thread while the application imports it
        too fails (a partially initialized module, seen as ImportError or
        KeyError in whichever thread loses), so the tier imports it while it
        starts, in ``configure()``. Opening the store stays on the writer thread.
        """
        import mlflow  # noqa: F401
        import mlflow.store.artifact.local_artifact_repo  # noqa: F401
        from mlflow.entities import Metric, Param, RunTag

        if self.destination.is_http:
            import mlflow.store.artifact.mlflow_artifacts_repo  # noqa: F401
            import mlflow.store.tracking.rest_store  # noqa: F401
        elif self.destination.tracking_uri.startswith("file:"):
            import mlflow.store.tracking.file_store  # noqa: F401
        else:
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        if self.config.traces:
            import mlflow.tracing.client  # noqa: F401
        self._entities = (Metric, Param, RunTag)

    def connect(self) -> None:
        from mlflow import MlflowClient

        if self.destination.folder:
            os.makedirs(self.destination.folder, exist_ok=True)
        database = self.destination.sqlite_path
        if database and not os.path.exists(database):
            self._create_sqlite(database)
        client = MlflowClient(tracking_uri=self.destination.tracking_uri)
        self.experiment_id = self._experiment(client)
        self.client = client

    def _create_sqlite(self, database: str) -> None:
        """Create MLflow's schema in a side file, then move it into place.

        Creating the schema takes seconds. A process killed meanwhile would
        leave a half-migrated file that MLflow can never open again; a side
        file left behind is harmless. At a normal exit, :func:`_finish_schemas`
        lets the creation finish, so the next run finds the store ready.
        """
        from mlflow import MlflowClient

        with self._creating_schema:
            _creating.add(self)
            side = f"{database}.creating-{os.getpid()}"
            try:
                client = MlflowClient(tracking_uri=f"sqlite:///{side}")
                client.search_experiments(max_results=1)
                try:
                    client._tracking_client.store.engine.dispose()  # close the side file's connections
                except Exception:
                    pass
                try:
                    os.link(side, database)  # no overwrite: another process may have won the race
                except FileExistsError:
                    pass
            finally:
                _creating.discard(self)
                if os.path.exists(side):
                    os.unlink(side)

    def _experiment(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        name = self.config.experiment_name
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=self.destination.artifact_location)
            except MlflowException as exc:  # another process created it first
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            # A deleted experiment still owns its name: bring it back rather than fail.
            warn_once(f"experiment {name!r} was deleted; restoring it")
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def reachable(self) -> bool:
        if not self.destination.is_http:
            return True
        url = self.destination.tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return True
        except urllib.error.HTTPError as exc:
            # The server answered (a 401 behind auth, a 404 on an old server): it is up.
            # A gateway error is a proxy in front of a server that is not.
            return exc.code not in (502, 503, 504)
        except Exception:  # refused, timed out, unknown host
            return False

    def permanent(self, exc: BaseException) -> bool:
        code = getattr(exc, "error_code", None)
        if code is not None:  # an MlflowException: the code says whether to retry
            return code in _PERMANENT_CODES
        # A value MLflow or we cannot handle; retrying would fail the same way.
        return isinstance(exc, (NotImplementedError, TypeError, AttributeError, KeyError, ValueError))

    def plan(self, kind: str, record: Any) -> Sequence[Callable[[], None]]:
        return getattr(self, "_plan_" + kind)(record)

    # -- workflows ------------------------------------------------------------------------

    def _is_top_level(self, workflow: WorkflowRecord) -> bool:
        """A workflow with no local parent span (a remote parent still makes it top-level)."""
        return workflow.parent_span_id is None or workflow.remote_parent

    def _plan_workflow_start(self, workflow: WorkflowRecord) -> list[Callable[[], None]]:
        top_level = self._is_top_level(workflow)
        parent = None if top_level else self._owner(workflow)
        # A sub-workflow's calls belong to the enclosing workflow's artifact and trace.
        run = _Run(None, parent.workflow if parent is not None else _Workflow())
        self._runs[workflow.span_id] = run
        if top_level:
            self._by_trace[workflow.trace_id] = run

        def create() -> None:
            run.run_id = self._create_run(workflow, "workflow" if top_level else "subworkflow",
                                          parent.run_id if parent else None)

        return [create]

    def _plan_workflow_end(self, workflow: WorkflowRecord) -> list[Callable[[], None]]:
        run = self._runs.pop(workflow.span_id, None)
        top_level = self._is_top_level(workflow)
        if top_level and run is not None and self._by_trace.get(workflow.trace_id) is run:
            del self._by_trace[workflow.trace_id]
        if run is None:  # the start record was dropped: write the whole run now
            run = _Run(None, _Workflow())
        state = run.workflow
        state.spans.append(workflow)
        steps: list[Callable[[], None]] = []
        if run.run_id is None:
            def create() -> None:
                run.run_id = self._create_run(workflow, "workflow" if top_level else "subworkflow", None)

            steps.append(create)

        metrics = self._totals(workflow) + run.metrics
        params: dict[str, str] = {}
        if self.config.capture_content:
            for key, value in (workflow.inputs or {}).items():
                params[f"input.{key}"] = _text(value, MAX_PARAM_VALUE)
        tags = {"tiertrace.status": workflow.status}
        if workflow.error is not None:
            tags[TAG_ERROR] = _text(str(workflow.error), MAX_TAG_VALUE)
        if top_level:
            end_ms = _ms(workflow.end_time_ns)
            for model, totals in state.models.items():
                prefix = model_prefix(model)
                metrics += [self._metric(prefix + name, value, end_ms) for name, value in totals.items()]
            if state.models:
                tags[TAG_MODELS] = _text(list(state.models), MAX_TAG_VALUE)
        steps.append(lambda: self._log_batch(run.run_id, metrics, params, tags))
        if top_level:
            document = {"workflow": self._dict(workflow), "records": state.records}
            steps.append(lambda: self.client.log_dict(run.run_id, document, "tiertrace/records.json"))
            if self.config.traces and self._traces_supported:
                steps.extend(self._plan_trace(workflow, run, state))
        status = "FINISHED" if workflow.status == "ok" else "FAILED"
        steps.append(lambda: self.client.set_terminated(run.run_id, status, end_time=_ms(workflow.end_time_ns)))
        return steps

    # -- nodes --------------------------------------------------------------------------------

    def _owner(self, record: Any) -> Optional[_Run]:
        """The run a record belongs to: its parent span's run, else its trace's workflow."""
        # Span records name their parent; point events name the span they happened in.
        span_id = getattr(record, "parent_span_id", None) or record.span_id
        run = self._runs.get(span_id or "")
        if run is None:  # inside an LLM or tool call: the trace's workflow
            run = self._by_trace.get(record.trace_id or "")
        return run

    def _plan_node_start(self, node: NodeRecord) -> list[Callable[[], None]]:
        parent = self._owner(node)
        state = parent.workflow if parent is not None else _Workflow()
        run = _Run(None, state)
        self._runs[node.span_id] = run

        def create() -> None:
            run.run_id = self._create_run(node, "node", parent.run_id if parent else None)

        return [create]

    def _plan_node_end(self, node: NodeRecord) -> list[Callable[[], None]]:
        run = self._runs.pop(node.span_id, None)
        if run is None:
            parent = self._owner(node)
            run = _Run(None, parent.workflow if parent else _Workflow())
        run.workflow.spans.append(node)
        run.workflow.records.append(self._dict(node))
        steps: list[Callable[[], None]] = []
        if run.run_id is None:
            parent = self._owner(node)

            def create() -> None:
                run.run_id = self._create_run(node, "node", parent.run_id if parent else None)

            steps.append(create)
        metrics = self._totals(node) + run.metrics
        tags = {"tiertrace.status": node.status}
        if node.error is not None:
            tags[TAG_ERROR] = _text(str(node.error), MAX_TAG_VALUE)
        status = "FINISHED" if node.status == "ok" else "FAILED"
        steps.append(lambda: self._log_batch(run.run_id, metrics, {}, tags))
        steps.append(lambda: self.client.set_terminated(run.run_id, status, end_time=_ms(node.end_time_ns)))
        return steps

    # -- calls and point events: bookkeeping only, written with the enclosing run ---------------

    def _plan_llm_call_end(self, call: LLMCallRecord) -> list[Callable[[], None]]:
        run = self._owner(call)
        if run is None:
            return []
        state = run.workflow
        state.spans.append(call)
        state.records.append(self._dict(call))
        at = _ms(call.end_time_ns)
        step = run.llm_steps
        run.llm_steps += 1
        run.metrics.append(self._metric("llm/duration_s", (call.duration_ns or 0) / 1e9, at, step))
        for field in ("input_tokens", "output_tokens", "cost_usd"):
            value = getattr(call, field)
            if value is not None:
                run.metrics.append(self._metric(f"llm/{field}", value, at, step))
        model = call.model or call.response_model or "unknown"
        totals = state.models.setdefault(
            model, {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "unpriced_calls": 0}
        )
        totals["llm_calls"] += 1
        totals["input_tokens"] += call.input_tokens or 0
        totals["output_tokens"] += call.output_tokens or 0
        if call.cost_usd is not None:
            totals["cost_usd"] += call.cost_usd
        elif call.input_tokens is not None or call.output_tokens is not None:
            totals["unpriced_calls"] += 1  # as the core counts it: tokens used, no price known
        return []

    def _plan_tool_call_end(self, call: ToolCallRecord) -> list[Callable[[], None]]:
        run = self._owner(call)
        if run is None:
            return []
        run.workflow.spans.append(call)
        run.workflow.records.append(self._dict(call))
        run.metrics.append(self._metric("tool/duration_s", (call.duration_ns or 0) / 1e9,
                                        _ms(call.end_time_ns), run.tool_steps))
        run.tool_steps += 1
        return []

    def _plan_event(self, event: Any) -> list[Callable[[], None]]:
        run = self._owner(event)
        if run is not None:
            run.workflow.records.append(self._dict(event))
        return []

    _plan_retry = _plan_event
    _plan_validation_failure = _plan_event

    # -- optimizations ----------------------------------------------------------------------------

    def _plan_optimization(self, result: OptimizationRecord) -> list[Callable[[], None]]:
        owner = self._owner(result) if result.trace_id else None
        end_ms = _ms(result.time_ns)
        start_ms = end_ms - (result.duration_ns or 0) // 1_000_000
        tags = {
            TAG_KIND: "optimization",
            "tiertrace.optimizer": result.optimizer,
            "mlflow.runName": result.name,
            **self._user_tags(result.attributes),
        }
        if result.workflow:
            tags[TAG_WORKFLOW] = result.workflow
        if result.trace_id:
            tags[TAG_TRACE_ID] = result.trace_id
        metrics = []
        for side, values in (("baseline", result.baseline), ("optimized", result.optimized),
                             ("delta", result.deltas)):
            metrics += [self._metric(f"{side}_{name}", value, end_ms) for name, value in values.items()]
        if result.duration_ns is not None:
            metrics.append(self._metric("duration_s", result.duration_ns / 1e9, end_ms))
        params = {f"settings.{key}": _text(value, MAX_PARAM_VALUE) for key, value in result.settings.items()}
        holder: dict[str, str] = {}

        def create() -> None:
            parent = {TAG_PARENT_RUN: owner.run_id} if owner is not None and owner.run_id else {}
            holder["run_id"] = self.client.create_run(
                self.experiment_id, start_time=start_ms, tags={**tags, **parent, **self.config.run_tags},
                run_name=result.name,
            ).info.run_id

        steps = [create, lambda: self._log_batch(holder["run_id"], metrics, params, {})]
        if self.config.capture_content and result.program is not None:
            if isinstance(result.program, str):
                steps.append(lambda: self.client.log_text(holder["run_id"], result.program, "tiertrace/program.txt"))
            else:
                steps.append(lambda: self.client.log_dict(holder["run_id"], result.program, "tiertrace/program.json"))
        steps.append(lambda: self.client.set_terminated(holder["run_id"], "FINISHED", end_time=end_ms))
        return steps

    # -- MLflow traces ------------------------------------------------------------------------------

    def _plan_trace(self, workflow: WorkflowRecord, run: _Run, state: _Workflow) -> list[Callable[[], None]]:
        from tiertrace_mlflow.traces import build_trace

        built: dict[str, Any] = {}

        def log_spans() -> None:
            built["info"], built["spans"] = build_trace(
                workflow, state.spans, run.run_id, self.experiment_id, self.config.capture_content
            )
            from mlflow.tracing.client import TracingClient

            tracing = TracingClient(self.destination.tracking_uri)
            try:
                tracing.log_spans(self.experiment_id, built["spans"])
            except NotImplementedError:
                # The file store keeps no spans: MLflow's traces need a database or a server.
                self._traces_supported = False
                warn_once("traces: true needs a database-backed store or a tracking server; "
                          f"{self.destination.tracking_uri} cannot store trace spans, traces are off")
                return
            built["client"] = tracing

        def start_trace() -> None:
            if "client" in built:
                built["client"].start_trace(built["info"])

        return [log_spans, start_trace]

    # -- shutdown -----------------------------------------------------------------------------------

    def _plan_shutdown(self, _: Any) -> list[Callable[[], None]]:
        """Runs still open when the tracer shuts down (the process is ending inside a
        workflow) are ended as KILLED instead of staying RUNNING forever."""
        now = int(time.time() * 1000)
        open_runs = [run for run in self._runs.values() if run.run_id is not None]
        self._runs.clear()
        self._by_trace.clear()
        return [lambda run_id=run.run_id: self.client.set_terminated(run_id, "KILLED", end_time=now)
                for run in open_runs]

    # -- helpers --------------------------------------------------------------------------------------

    def _create_run(self, record: Any, kind: str, parent_run_id: Optional[str]) -> str:
        tags = {
            TAG_KIND: kind,
            TAG_WORKFLOW: record.workflow or record.name,
            TAG_TRACE_ID: record.trace_id,
            TAG_SPAN_ID: record.span_id,
            **self._user_tags(getattr(record, "tags", None) or {}),
            **self._user_tags(record.attributes),
            **self.config.run_tags,
        }
        if kind == "node":
            tags[TAG_NODE] = record.name
        if parent_run_id:
            tags[TAG_PARENT_RUN] = parent_run_id
        if getattr(record, "remote_parent", False):
            tags["tiertrace.parent_span_id"] = record.parent_span_id
        run = self.client.create_run(self.experiment_id, start_time=_ms(record.start_time_ns), tags=tags,
                                     run_name=record.name)
        return run.info.run_id

    @staticmethod
    def _user_tags(values: dict[str, Any]) -> dict[str, str]:
        # dict() copies in one step: the workflow's thread may still add attributes.
        return {safe_key(k): _text(v, MAX_TAG_VALUE) for k, v in dict(values).items()}

    def _totals(self, record: Any) -> list[Any]:
        at = _ms(record.end_time_ns)
        metrics = [self._metric(name, getattr(record, name), at) for name in TOTAL_METRICS]
        metrics.append(self._metric("duration_s", (record.duration_ns or 0) / 1e9, at))
        return metrics

    def _metric(self, key: str, value: float, timestamp_ms: int, step: int = 0) -> Any:
        return self._entities[0](safe_key(key), float(value), timestamp_ms, step)

    def _log_batch(self, run_id: Optional[str], metrics: list[Any], params: dict[str, str],
                   tags: dict[str, str]) -> None:
        """``log_batch`` within MLflow's per-request limits."""
        _, Param, RunTag = self._entities
        param_list = [Param(safe_key(k), v) for k, v in params.items()]
        tag_list = [RunTag(safe_key(k), v) for k, v in tags.items()]
        while metrics or param_list or tag_list:
            self.client.log_batch(
                run_id,
                metrics=metrics[:MAX_METRICS_PER_BATCH],
                params=param_list[:MAX_PARAMS_TAGS_PER_BATCH],
                tags=tag_list[:MAX_PARAMS_TAGS_PER_BATCH],
                synchronous=True,
            )
            # Drop what was written so that a retry does not write it twice.
            del metrics[:MAX_METRICS_PER_BATCH]
            del param_list[:MAX_PARAMS_TAGS_PER_BATCH]
            del tag_list[:MAX_PARAMS_TAGS_PER_BATCH]

    def _dict(self, record: Any) -> dict[str, Any]:
        data = to_dict(record)
        if not self.config.capture_content:
            for name in CONTENT_FIELDS:
                data.pop(name, None)
        return data
