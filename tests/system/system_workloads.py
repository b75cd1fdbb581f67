"""Workflows the system tests run, and checks of what each backend holds for them."""

from __future__ import annotations

from typing import Any

import pytest

#: Spans :func:`full_workflow` makes: workflow, 2 nodes, 2 LLM calls, 1 tool call.
FULL_WORKFLOW_SPANS = 6


def full_workflow(tracer: Any, name: str = "fault_matrix") -> tuple[str, Any]:
    """Fires every record hook once or more; returns the workflow's own result and its block."""
    with tracer.workflow(name, inputs={"topic": "x"}, tags={"team": "a"}) as wf:
        with tracer.node("research"):
            with tracer.llm_call("gemini-1.5-flash", prompt="facts about x") as call:
                call.record(response="notes", input_tokens=812, output_tokens=230)
            tracer.retry("timeout")
            tracer.validation_failure(["bad json"], raw_output="{")
            with tracer.tool_call("serper_search", args={"q": "x"}) as tool:
                tool.record(result=["hit"])
        with tracer.node("write"):
            with tracer.llm_call("gpt-4o-mini", prompt="write it") as call:
                call.record(response="article", input_tokens=100, output_tokens=50)
        result = "article about x"
    tracer.optimization(optimizer="BootstrapFewShot", baseline={"accuracy": 0.5}, optimized={"accuracy": 0.8})
    return result, wf


def check_mlflow(stack: Any, wf: Any, optimization: bool = True) -> None:
    """The workflow run, its two node runs and the optimization run, with the right cost."""
    run = stack.workflow_run(wf.trace_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["cost_usd"] == pytest.approx(wf.data.cost_usd, rel=1e-12)
    assert run.data.metrics["llm_calls"] == 2
    nodes = stack.runs(f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and tags.`tiertrace.kind` = 'node'")
    assert sorted(n.data.tags["tiertrace.node"] for n in nodes) == ["research", "write"]
    if optimization:
        assert len(stack.runs("tags.`tiertrace.kind` = 'optimization'")) == 1


def check_otlp(receiver: Any, wf: Any, expected: int = FULL_WORKFLOW_SPANS) -> list[Any]:
    """Every span of the trace arrived once, each under its parent."""
    spans = receiver.of_trace(wf.trace_id)
    assert len(spans) == expected, spans
    ids = {s.span_id for s in spans}
    assert len(ids) == expected
    root = [s for s in spans if s.parent_span_id is None]
    assert [s.span_id for s in root] == [wf.span_id]
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id is not None)
    return spans


def check_metrics(found: dict[Any, float], wf: Any, name: str = "fault_matrix") -> None:
    """The Prometheus tier's counters for one run of :func:`full_workflow`."""
    from systemkit import total

    assert total(found, "workflow_runs_total", workflow=name, status="ok") == 1
    assert total(found, "llm_cost_usd_total") == pytest.approx(wf.data.cost_usd, rel=1e-9)
    assert total(found, "llm_tokens_total", type="input") == 912
    assert total(found, "tool_calls_total", status="ok") == 1
    assert total(found, "retries_total", workflow=name) == 1
    assert total(found, "validation_failures_total", workflow=name) == 1
    assert total(found, "node_duration_seconds_count", workflow=name) == 2
