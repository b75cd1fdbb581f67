"""A finished workflow as an MLflow trace, in tiertrace's own id space.

The trace id is ``tr-<workflow trace_id>`` and every span keeps its
tiertrace span id, so the MLflow trace, the OpenTelemetry trace and the run
(tag ``tiertrace.trace_id``) all carry one id. The trace is linked to the
workflow's run through the ``mlflow.sourceRun`` metadata, which is what
``MlflowClient.start_trace(run_id=...)`` writes and what
``search_traces(run_id=...)`` and the run page read.

The spans are built from records after the workflow ended and written with
MLflow's tracing client for an explicit tracking URI, so they never go
through MLflow's process-global tracer (and its global tracking URI).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional, Sequence

from tiertrace.records import LLMCallRecord, NodeRecord, ToolCallRecord, WorkflowRecord

__all__ = ["build_trace", "mlflow_trace_id"]


def mlflow_trace_id(trace_id: str) -> str:
    """The MLflow trace id of a tiertrace trace id (what MLflow derives from an OTel id)."""
    return "tr-" + trace_id


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _span_type(record: Any) -> str:
    if isinstance(record, LLMCallRecord):
        return "LLM"
    if isinstance(record, ToolCallRecord):
        return "TOOL"
    if isinstance(record, WorkflowRecord):
        return "WORKFLOW"
    if isinstance(record, NodeRecord):
        return "TASK"
    return "UNKNOWN"


def _io(record: Any, capture: bool) -> tuple[Any, Any]:
    if not capture:
        return None, None
    if isinstance(record, LLMCallRecord):
        inputs = {"messages": record.messages} if record.messages is not None else (
            {"prompt": record.prompt} if record.prompt is not None else None)
        return inputs, record.response
    if isinstance(record, ToolCallRecord):
        return record.args, record.result
    if isinstance(record, WorkflowRecord):
        return record.inputs or None, None
    return None, None


def _attributes(record: Any, trace_request_id: str, experiment_id: str, capture: bool) -> dict[str, str]:
    inputs, outputs = _io(record, capture)
    attributes: dict[str, Any] = {
        "mlflow.traceRequestId": trace_request_id,
        "mlflow.spanType": _span_type(record),
        "tiertrace.kind": record.kind,
    }
    if record.parent_span_id is None or getattr(record, "remote_parent", False):
        attributes["mlflow.experimentId"] = experiment_id
    if inputs is not None:
        attributes["mlflow.spanInputs"] = inputs
    if outputs is not None:
        attributes["mlflow.spanOutputs"] = outputs
    if isinstance(record, LLMCallRecord):
        if record.model:
            attributes["mlflow.llm.model"] = record.model
        if record.provider:
            attributes["mlflow.llm.provider"] = record.provider
        if record.cost_usd is not None:
            # With token usage and model set, MLflow prices the span itself unless it
            # has a cost (importing LiteLLM, which fetches a price list online).
            attributes["mlflow.chat.tokenUsage"] = {
                "input_tokens": record.input_tokens or 0,
                "output_tokens": record.output_tokens or 0,
                "total_tokens": (record.input_tokens or 0) + (record.output_tokens or 0),
            }
            attributes["mlflow.llm.cost"] = {"total_cost": record.cost_usd}
        else:
            # Unpriced is not $0: keep MLflow from pricing it, keep the tokens.
            attributes["tiertrace.input_tokens"] = record.input_tokens
            attributes["tiertrace.output_tokens"] = record.output_tokens
            attributes["tiertrace.unpriced"] = True
        attributes["tiertrace.attempt"] = record.attempt
    if record.error is not None:
        attributes["tiertrace.error"] = str(record.error)
    for key, value in record.attributes.items():
        attributes.setdefault(str(key), value)
    # MLflow stores every span attribute JSON-encoded.
    return {key: _json(value) for key, value in attributes.items()}


def build_trace(
    workflow: WorkflowRecord,
    spans: Sequence[Any],
    run_id: Optional[str],
    experiment_id: str,
    capture_content: bool,
) -> tuple[Any, list[Any]]:
    """``(TraceInfo, [Span])`` for a finished workflow and the span records under it."""
    from mlflow.entities import Span, TraceInfo, TraceLocation, TraceState

    request_id = mlflow_trace_id(workflow.trace_id)
    known = {record.span_id for record in spans}
    mlflow_spans = []
    for record in spans:
        parent = record.parent_span_id
        if record is workflow or parent not in known:
            parent = None if record is workflow else workflow.span_id
        mlflow_spans.append(Span.from_dict({
            "trace_id": _b64(record.trace_id),
            "span_id": _b64(record.span_id),
            "parent_span_id": _b64(parent) if parent else None,
            "name": record.name,
            "start_time_unix_nano": record.start_time_ns,
            "end_time_unix_nano": record.end_time_ns,
            "events": [],
            "links": [],
            "status": {
                "code": "STATUS_CODE_ERROR" if record.status == "error" else "STATUS_CODE_OK",
                "message": str(record.error) if record.error is not None else "",
            },
            "attributes": _attributes(record, request_id, experiment_id, capture_content),
        }))
    inputs, _ = _io(workflow, capture_content)
    metadata = {
        "mlflow.trace_schema.version": "3",
        "mlflow.trace.tokenUsage": _json({
            "input_tokens": workflow.input_tokens,
            "output_tokens": workflow.output_tokens,
            "total_tokens": workflow.input_tokens + workflow.output_tokens,
        }),
        "tiertrace.trace_id": workflow.trace_id,
    }
    if run_id:
        metadata["mlflow.sourceRun"] = run_id
    if inputs is not None:
        metadata["mlflow.traceInputs"] = _json(inputs)[:1000]
    info = TraceInfo(
        trace_id=request_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=workflow.start_time_ns // 1_000_000,
        execution_duration=(workflow.duration_ns or 0) // 1_000_000,
        state=TraceState.ERROR if workflow.status == "error" else TraceState.OK,
        trace_metadata=metadata,
        tags={"mlflow.traceName": workflow.name, **{str(k): str(v) for k, v in workflow.tags.items()}},
        request_preview=_json(inputs)[:1000] if inputs is not None else None,
    )
    return info, mlflow_spans
