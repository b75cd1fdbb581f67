"""The conformance check every tier can run: ``check_tier(lambda: MyTier(config))``.

It registers the tier on a fresh core-only tracer next to a recorder, drives
the whole hook sequence (nested workflows, errors, retries, validation
failures, an optimization, concurrent workflows in threads and asyncio, odd
values, and end hooks for spans the tier never saw start), then flushes and
shuts down. It asserts that the tier never raised (the core counts every
exception a hook raises), that every workflow's result came back unchanged,
and that shutdown returned within its timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import attrs

from tiertrace import records as r

__all__ = ["check_tier", "ConformanceReport"]

TIER_NAME = "tier-under-test"


@attrs.define
class ConformanceReport:
    workflows: int = 0
    spans: int = 0
    plugin_errors: dict[tuple[str, str], int] = attrs.Factory(dict)
    last_errors: dict[tuple[str, str], str] = attrs.Factory(dict)
    shutdown_s: float = 0.0
    late: list[str] = attrs.Factory(list)


class _Unserialisable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def _one_workflow(tracer: Any, index: int) -> int:
    with tracer.workflow("conformance", inputs={"i": index}, tags={"team": "qa"}):
        with tracer.node("research"):
            with tracer.llm_call("gpt-4o-mini", prompt=f"prompt {index}", attempt=1) as call:
                call.record(response="text", input_tokens=10, output_tokens=5)
            tracer.retry("rate limited")
            with tracer.llm_call("gpt-4o-mini", prompt=f"prompt {index}", attempt=2) as call:
                call.record(response="text", input_tokens=10, output_tokens=5)
            with tracer.tool_call("search", args={"q": index}) as tool:
                tool.record(result=[index])
        with tracer.node("write"):
            with tracer.llm_call("unknown-model-xyz", messages=[{"role": "user", "content": "x"}]) as call:
                call.record(response={"json": True}, input_tokens=3, output_tokens=4)
            tracer.validation_failure(["missing field 'title'"], raw_output="{", schema="Article")
    return index


def check_tier(factory: Callable[[], Any], *, workers: int = 8, timeout: float = 10.0) -> ConformanceReport:
    """Drive every hook through the tier made by ``factory``; raise AssertionError on a breach."""
    from tiertrace.testing import recording_tracer

    tracer, recorder = recording_tracer()
    tier = factory()
    tracer.register(tier, name=TIER_NAME)
    report = ConformanceReport()
    problems: list[str] = []

    # 1. The full sequence, nested, with a sub-workflow.
    if _one_workflow(tracer, 0) != 0:
        problems.append("a workflow's return value changed")
    with tracer.workflow("outer"):
        with tracer.node("step"):
            with tracer.workflow("inner"):
                with tracer.node("deep"):
                    with tracer.node("deeper"):
                        pass

    # 2. An exception propagates unchanged and marks the span.
    class Boom(Exception):
        pass

    boom = Boom("expected by the conformance check")
    try:
        with tracer.workflow("failing"):
            with tracer.node("explodes"):
                with tracer.llm_call("gpt-4o"):
                    raise boom
    except Boom as caught:
        if caught is not boom:
            problems.append("the workflow's exception was replaced")
    else:
        problems.append("the workflow's exception was swallowed")

    # 3. Concurrency: threads, a pool and asyncio tasks.
    from tiertrace.threads import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: _one_workflow(tracer, i), range(1, workers + 1)))
    if results != list(range(1, workers + 1)):
        problems.append("results from a thread pool changed")

    async def many() -> list[int]:
        async def one(i: int) -> int:
            async with tracer.workflow("async", inputs={"i": i}):
                async with tracer.node("wait"):
                    await asyncio.sleep(0)
                    async with tracer.llm_call("claude-3-5-haiku") as call:
                        await asyncio.sleep(0)
                        call.record(response="ok", input_tokens=1, output_tokens=1)
            return i

        return list(await asyncio.gather(*(one(i) for i in range(workers))))

    if asyncio.run(many()) != list(range(workers)):
        problems.append("results from asyncio tasks changed")

    # 4. Calls outside any workflow, odd values, an optimization.
    with tracer.llm_call("gpt-4o", prompt="x" * 1_000_000) as call:
        call.record(response=b"\xff\xfe not utf-8", input_tokens=-5, output_tokens="many")
    with tracer.tool_call("odd", args={"obj": _Unserialisable(), 3: object()}) as tool:
        tool.record(result=float("nan"))
    tracer.optimization(optimizer="BootstrapFewShot", baseline={"accuracy": 0.5},
                        optimized={"accuracy": 0.75}, settings={"max_demos": 4}, program="optimized prompt")

    # 5. Hooks in a strange order: ends for spans the tier never saw start.
    now = time.time_ns()
    stray = [
        ("on_llm_call_end", r.LLMCallRecord("a" * 32, "b" * 16, "c" * 16, "stray", now, now + 1)),
        ("on_node_end", r.NodeRecord("a" * 32, "d" * 16, "e" * 16, "stray", now, now + 1)),
        ("on_tool_call_end", r.ToolCallRecord("a" * 32, "f" * 16, None, "stray", now, now + 1)),
        ("on_workflow_end", r.WorkflowRecord("a" * 32, "e" * 16, None, "stray", now, now + 1)),
    ]
    for hook, record in stray:
        tracer.relay.fire(hook, tuple(i for i in tracer.relay.impls(hook) if i[0] == TIER_NAME), record)

    # 6. Flush and shutdown, bounded.
    tracer.flush(timeout=timeout)
    started = time.monotonic()
    report.late = tracer.shutdown(timeout=timeout)
    report.shutdown_s = time.monotonic() - started
    if report.late:
        problems.append(f"shutdown overran its {timeout:g} s timeout")

    report.workflows = len(recorder.records("on_workflow_end"))
    report.spans = len(recorder.spans())
    report.plugin_errors = {k: v for k, v in tracer.health.plugin_errors.items() if k[0] == TIER_NAME}
    report.last_errors = {k: v for k, v in tracer.health.last_errors.items() if k[0] == TIER_NAME}
    for (plugin, hook), count in report.plugin_errors.items():
        problems.append(f"{hook} raised {count} time(s): {report.last_errors.get((plugin, hook))}")
    if problems:
        raise AssertionError("tier failed the tiertrace conformance check:\n- " + "\n- ".join(problems))
    return report
