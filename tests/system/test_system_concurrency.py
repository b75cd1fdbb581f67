"""64 workflows at once, from plain threads, a tiertrace.ThreadPoolExecutor and asyncio
tasks, each with nested nodes and calls (fanned out in parallel inside the workflow):
every parent link is right in every tier, the Prometheus counters are exact, and MLflow
has one run per workflow with its node runs under it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import tiertrace

from systemkit import total

pytestmark = pytest.mark.slow

THREADS, POOLED, TASKS = 22, 21, 21
WORKFLOWS = THREADS + POOLED + TASKS


class Expected:
    """The spans one workflow opened, and the parent each one must have."""

    def __init__(self, wf: Any, research: Any, write: Any, calls: list[Any], tool: Any):
        self.wf = wf
        self.parents = {wf.span_id: None, research.span_id: wf.span_id, write.span_id: wf.span_id,
                        tool.span_id: write.span_id, **{c.span_id: research.span_id for c in calls}}
        self.nodes = {research.span_id: "research", write.span_id: "write"}


def run_sync(tracer: tiertrace.Tracer, kind: str, index: int, fan_out: Any = None) -> Expected:
    """One workflow; ``fan_out`` (a tiertrace.ThreadPoolExecutor) runs its two LLM calls in parallel."""
    with tracer.workflow(f"concurrent_{kind}", inputs={"i": index}) as wf:
        with tracer.node("research") as research:
            def call(j: int) -> Any:
                with tracer.llm_call("gpt-4o-mini", prompt=f"{index}-{j}") as c:
                    time.sleep(0.002)
                    c.record(response="ok", input_tokens=10 + index, output_tokens=1 + j)
                return c
            calls = list(fan_out.map(call, (0, 1))) if fan_out is not None else [call(0), call(1)]
        with tracer.node("write") as write:
            with tracer.tool_call("publish", args={"i": index}) as tool:
                time.sleep(0.001)
    return Expected(wf, research, write, calls, tool)


async def run_async(tracer: tiertrace.Tracer, index: int) -> Expected:
    async with tracer.workflow("concurrent_async", inputs={"i": index}) as wf:
        async with tracer.node("research") as research:
            async def call(j: int) -> Any:
                async with tracer.llm_call("gpt-4o-mini", prompt=f"{index}-{j}") as c:
                    await asyncio.sleep(0.002)
                    c.record(response="ok", input_tokens=10 + index, output_tokens=1 + j)
                return c
            calls = list(await asyncio.gather(call(0), call(1)))
        async with tracer.node("write") as write:
            async with tracer.tool_call("publish", args={"i": index}) as tool:
                await asyncio.sleep(0.001)
    return Expected(wf, research, write, calls, tool)


def test_64_concurrent_workflows_keep_every_link_and_count(stack, otlp_receiver):
    s = stack(otlp=otlp_receiver, local_store=True, serve=True, prometheus={"port": 0})
    tracer = s.tracer
    results: list[Expected] = []
    lock = threading.Lock()
    go = threading.Event()

    def keep(expected: Expected) -> None:
        with lock:
            results.append(expected)

    def plain(index: int) -> None:
        go.wait()
        keep(run_sync(tracer, "thread", index))

    def pooled(index: int, fan_out: Any) -> Expected:
        go.wait()
        return run_sync(tracer, "pool", index, fan_out)

    def event_loop() -> None:
        async def main() -> list[Expected]:
            go.wait()
            return list(await asyncio.gather(*(run_async(tracer, THREADS + POOLED + i) for i in range(TASKS))))
        for expected in asyncio.run(main()):
            keep(expected)

    threads = [threading.Thread(target=plain, args=(i,)) for i in range(THREADS)]
    threads.append(threading.Thread(target=event_loop))
    with tiertrace.ThreadPoolExecutor(max_workers=8) as outer, tiertrace.ThreadPoolExecutor(max_workers=8) as fan_out:
        futures = [outer.submit(pooled, THREADS + i, fan_out) for i in range(POOLED)]
        for thread in threads:
            thread.start()
        go.set()
        for thread in threads:
            thread.join(60)
        for future in futures:
            keep(future.result(60))
    assert len(results) == WORKFLOWS
    assert len({r.wf.trace_id for r in results}) == WORKFLOWS
    assert all(r.wf.data.llm_calls == 2 and r.wf.data.tool_calls == 1 for r in results)
    live_metrics = s.metrics()
    # ~800 MLflow writes queued: give the writer the time it needs (flush waits as long as asked).
    assert tracer.flush(timeout=120) == []
    assert tracer.shutdown(timeout=20) == []
    assert tracer.health.total_dropped() == 0, tracer.health.dropped
    assert tracer.health.total_plugin_errors() == 0, tracer.health.last_errors

    # OpenTelemetry: every span arrived once, under the parent it was opened in.
    by_trace: dict[str, dict[str, Any]] = {}
    for span in otlp_receiver.all_spans():
        by_trace.setdefault(span.trace_id, {})[span.span_id] = span.parent_span_id
    for r in results:
        assert by_trace.get(r.wf.trace_id) == r.parents

    # Prometheus: exact counts, nothing lost to races.
    for kind, count in (("thread", THREADS), ("pool", POOLED), ("async", TASKS)):
        assert total(live_metrics, "workflow_runs_total", workflow=f"concurrent_{kind}", status="ok") == count
        assert total(live_metrics, "node_duration_seconds_count", workflow=f"concurrent_{kind}") == 2 * count
    assert total(live_metrics, "llm_calls_total", status="ok") == 2 * WORKFLOWS
    assert total(live_metrics, "tool_calls_total", status="ok") == WORKFLOWS
    assert total(live_metrics, "llm_tokens_total", type="input") == sum(2 * (10 + i) for i in range(WORKFLOWS))
    assert total(live_metrics, "llm_cost_usd_total") == pytest.approx(sum(r.wf.data.cost_usd for r in results),
                                                                      rel=1e-9)
    assert total(live_metrics, "active_workflows") == 0

    # MLflow: one run per workflow, its two node runs under it, tagged with their own span ids.
    runs = s.runs()
    workflow_runs = {r.data.tags["tiertrace.trace_id"]: r for r in runs if r.data.tags["tiertrace.kind"] == "workflow"}
    assert set(workflow_runs) == {r.wf.trace_id for r in results}
    node_runs = [r for r in runs if r.data.tags["tiertrace.kind"] == "node"]
    assert len(node_runs) == 2 * WORKFLOWS
    for expected in results:
        run = workflow_runs[expected.wf.trace_id]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["cost_usd"] == pytest.approx(expected.wf.data.cost_usd, rel=1e-12)
        children = [n for n in node_runs if n.data.tags["mlflow.parentRunId"] == run.info.run_id]
        assert {n.data.tags["tiertrace.span_id"]: n.data.tags["tiertrace.node"] for n in children} == expected.nodes
