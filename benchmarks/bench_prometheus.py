"""Prometheus tier cost, side by side with prometheus_client calls written by hand.

Run by hand:  python benchmarks/bench_prometheus.py [--workflows 2000] [--repeats 15]

1. Per record: the tier's hooks receive the records of one seed-shaped workflow
   (workflow start/end, 2 nodes, 2 LLM calls, 1 tool call, 1 retry, 1 validation
   failure: 9 records that reach a hook). The anchor is the code a user would write by hand with
   prometheus_client for the same records: the same metrics, the same updates,
   the same exemplars, ``.labels(...)`` on every update. Same process, same run,
   interleaved repeats. Target: tier <= 1.15x the anchor.
2. Scrape: rendering 1,000 workflow label sets (every workflow has run once, so
   each has its runs, duration, tokens and node series), tier vs the same
   metrics in a hand-made registry; classic text and OpenMetrics.

Prints medians and ratios. The machine is shared and noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

from tiertrace.records import (
    LLMCallRecord,
    NodeRecord,
    RetryRecord,
    ToolCallRecord,
    ValidationFailureRecord,
    WorkflowRecord,
)

RECORDS_PER_WORKFLOW = 10
TRACE = "0af7651916cd43dd8448eb211c80319c"


def seed_records(workflow: str = "article_writer") -> dict[str, Any]:
    """Finished records of one run of the seed's article_writer."""
    common = {"trace_id": TRACE, "parent_span_id": "b7ad6b7169203331", "start_time_ns": 1, "workflow": workflow}
    wf = WorkflowRecord(span_id="00f067aa0ba902b7", name=workflow, **{**common, "parent_span_id": None},
                        end_time_ns=2, duration_ns=4_200_000_000, input_tokens=1812, output_tokens=730,
                        cost_usd=0.0003)
    nodes = [NodeRecord(span_id="1" * 16, name=n, duration_ns=2_000_000_000, **common) for n in ("research", "write")]
    calls = [LLMCallRecord(span_id="2" * 16, name="gemini-1.5-flash", model="gemini-1.5-flash", input_tokens=812,
                           output_tokens=230, cost_usd=0.0001, duration_ns=1_300_000_000, node="research", **common),
             LLMCallRecord(span_id="3" * 16, name="gemini-1.5-flash", model="gemini-1.5-flash", input_tokens=1000,
                           output_tokens=500, cost_usd=0.0002, duration_ns=1_900_000_000, node="write", **common)]
    tool = ToolCallRecord(span_id="4" * 16, name="serper_search", tool="serper_search", duration_ns=300_000_000,
                          node="research", **common)
    retry = RetryRecord(trace_id=TRACE, span_id="2" * 16, time_ns=1, workflow=workflow, node="research",
                        target="llm_call", attempt=2, reason="timeout")
    failure = ValidationFailureRecord(trace_id=TRACE, span_id="3" * 16, time_ns=1, workflow=workflow,
                                      node="write", errors=["bad json"])
    return {"workflow": wf, "nodes": nodes, "calls": calls, "tool": tool, "retry": retry, "failure": failure}


def tier_body(tier: Any, recs: dict[str, Any]) -> Callable[[int], None]:
    wf, nodes, calls, tool, retry, failure = (recs[k] for k in ("workflow", "nodes", "calls", "tool", "retry", "failure"))

    def run(n: int) -> None:
        for _ in range(n):
            tier.on_workflow_start(wf)
            tier.on_llm_call_end(calls[0])
            tier.on_retry(retry)
            tier.on_tool_call_end(tool)
            tier.on_node_end(nodes[0])
            tier.on_llm_call_end(calls[1])
            tier.on_validation_failure(failure)
            tier.on_node_end(nodes[1])
            tier.on_workflow_end(wf)
            # (10th record: on_node_start/on_llm_call_start etc. are not implemented by the
            # tier, so the core never calls it for them; the anchor does nothing for them either.)
    return run


class HandWritten:
    """What a user writes with prometheus_client for the same records."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        from tiertrace_prometheus.config import LLM_CALL_BUCKETS, NODE_BUCKETS, TOOL_CALL_BUCKETS, WORKFLOW_BUCKETS

        self.registry = r = CollectorRegistry()
        self.runs = Counter("workflow_runs", "runs", ["workflow", "status"], registry=r)
        self.duration = Histogram("workflow_duration_seconds", "d", ["workflow"], buckets=WORKFLOW_BUCKETS, registry=r)
        self.active = Gauge("active_workflows", "a", registry=r)
        self.wf_tokens = Counter("workflow_tokens", "t", ["workflow", "type"], registry=r)
        self.wf_cost = Counter("workflow_cost_usd", "c", ["workflow"], registry=r)
        self.node_duration = Histogram("node_duration_seconds", "d", ["workflow", "node"], buckets=NODE_BUCKETS, registry=r)
        self.llm_calls = Counter("llm_calls", "c", ["model", "status"], registry=r)
        self.tokens = Counter("llm_tokens", "t", ["model", "type"], registry=r)
        self.cost = Counter("llm_cost_usd", "c", ["model"], registry=r)
        self.llm_duration = Histogram("llm_call_duration_seconds", "d", ["model"], buckets=LLM_CALL_BUCKETS, registry=r)
        self.tool_calls = Counter("tool_calls", "c", ["tool", "status"], registry=r)
        self.tool_duration = Histogram("tool_call_duration_seconds", "d", ["tool"], buckets=TOOL_CALL_BUCKETS, registry=r)
        self.retries = Counter("retries", "r", ["workflow", "target"], registry=r)
        self.failures = Counter("validation_failures", "v", ["workflow", "node"], registry=r)

    def body(self, recs: dict[str, Any]) -> Callable[[int], None]:
        wf, nodes, calls, tool, retry, failure = (recs[k] for k in ("workflow", "nodes", "calls", "tool", "retry", "failure"))

        def llm(call: Any) -> None:
            self.llm_calls.labels(call.model, call.status).inc()
            self.tokens.labels(call.model, "input").inc(call.input_tokens)
            self.tokens.labels(call.model, "output").inc(call.output_tokens)
            self.cost.labels(call.model).inc(call.cost_usd)
            self.llm_duration.labels(call.model).observe(call.duration_ns / 1e9, {"trace_id": call.trace_id})

        def node(n: Any) -> None:
            self.node_duration.labels(n.workflow, n.name).observe(n.duration_ns / 1e9, {"trace_id": n.trace_id})

        def run(n: int) -> None:
            for _ in range(n):
                self.active.inc()
                llm(calls[0])
                self.retries.labels(retry.workflow, retry.target).inc()
                self.tool_calls.labels(tool.tool, tool.status).inc()
                self.tool_duration.labels(tool.tool).observe(tool.duration_ns / 1e9, {"trace_id": tool.trace_id})
                node(nodes[0])
                llm(calls[1])
                self.failures.labels(failure.workflow, failure.node).inc()
                node(nodes[1])
                self.active.dec()
                self.runs.labels(wf.name, wf.status).inc()
                self.duration.labels(wf.name).observe(wf.duration_ns / 1e9, {"trace_id": wf.trace_id})
                self.wf_tokens.labels(wf.name, "input").inc(wf.input_tokens)
                self.wf_tokens.labels(wf.name, "output").inc(wf.output_tokens)
                self.wf_cost.labels(wf.name).inc(wf.cost_usd)
        return run


def cached_body(hand: HandWritten, recs: dict[str, Any]) -> Callable[[int], None]:
    """The same updates with every label child looked up once, before the loop: the
    fastest hand-written code possible (it only works when all names are known up front)."""
    wf, nodes, calls, tool, retry, failure = (recs[k] for k in ("workflow", "nodes", "calls", "tool", "retry", "failure"))
    model = calls[0].model
    ok_calls, in_tok, out_tok = hand.llm_calls.labels(model, "ok"), hand.tokens.labels(model, "input"), hand.tokens.labels(model, "output")
    cost, llm_duration = hand.cost.labels(model), hand.llm_duration.labels(model)
    retries, tool_ok, tool_duration = hand.retries.labels(retry.workflow, retry.target), hand.tool_calls.labels(tool.tool, "ok"), hand.tool_duration.labels(tool.tool)
    node_durations = [hand.node_duration.labels(n.workflow, n.name) for n in nodes]
    failures = hand.failures.labels(failure.workflow, failure.node)
    runs_ok, duration = hand.runs.labels(wf.name, "ok"), hand.duration.labels(wf.name)
    wf_in, wf_out, wf_cost = hand.wf_tokens.labels(wf.name, "input"), hand.wf_tokens.labels(wf.name, "output"), hand.wf_cost.labels(wf.name)

    def llm(call: Any) -> None:
        ok_calls.inc()
        in_tok.inc(call.input_tokens)
        out_tok.inc(call.output_tokens)
        cost.inc(call.cost_usd)
        llm_duration.observe(call.duration_ns / 1e9, {"trace_id": call.trace_id})

    def run(n: int) -> None:
        for _ in range(n):
            hand.active.inc()
            llm(calls[0])
            retries.inc()
            tool_ok.inc()
            tool_duration.observe(tool.duration_ns / 1e9, {"trace_id": tool.trace_id})
            node_durations[0].observe(nodes[0].duration_ns / 1e9, {"trace_id": nodes[0].trace_id})
            llm(calls[1])
            failures.inc()
            node_durations[1].observe(nodes[1].duration_ns / 1e9, {"trace_id": nodes[1].trace_id})
            hand.active.dec()
            runs_ok.inc()
            duration.observe(wf.duration_ns / 1e9, {"trace_id": wf.trace_id})
            wf_in.inc(wf.input_tokens)
            wf_out.inc(wf.output_tokens)
            wf_cost.inc(wf.cost_usd)
    return run


def median_us(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(body: Callable[[int], None], n: int) -> float:
    start = time.perf_counter_ns()
    body(n)
    return (time.perf_counter_ns() - start) / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=2000, help="workflows per repeat")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--label-sets", type=int, default=1000)
    args = parser.parse_args()

    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from tiertrace_prometheus import PrometheusConfig, PrometheusTier

    # --- 1. per record ---------------------------------------------------------------
    recs = seed_records()
    tier = PrometheusTier(PrometheusConfig(start_server=False))
    hand = HandWritten()
    cached_hand = HandWritten()
    tier_run, hand_run, cached_run = tier_body(tier, recs), hand.body(recs), cached_body(cached_hand, recs)
    tier_run(200), hand_run(200), cached_run(200)  # warm up: label children exist in all three
    tier_times, hand_times, cached_times = [], [], []
    for _ in range(args.repeats):  # interleaved, so drift hits all alike
        tier_times.append(timed(tier_run, args.workflows))
        hand_times.append(timed(hand_run, args.workflows))
        cached_times.append(timed(cached_run, args.workflows))
    records = args.workflows * 9  # records that reach a hook the tier implements, per repeat
    tier_us = median_us(tier_times) / records
    hand_us = median_us(hand_times) / records
    cached_us = median_us(cached_times) / records
    print(f"per record ({args.workflows} seed workflows x {args.repeats} repeats, 9 hooked records each):")
    print(f"  tiertrace-prometheus hooks      {tier_us * 1000:8.0f} ns/record")
    print(f"  prometheus_client by hand       {hand_us * 1000:8.0f} ns/record   (.labels() per update)")
    print(f"  by hand, children cached        {cached_us * 1000:8.0f} ns/record   (names known up front)")
    print(f"  ratio tier / by hand            {tier_us / hand_us:8.2f}x   (target <= 1.15x)")
    print(f"  ratio tier / cached by hand     {tier_us / cached_us:8.2f}x")

    # --- 2. scrape with N label sets ---------------------------------------------------
    n = args.label_sets
    tier = PrometheusTier(PrometheusConfig(start_server=False, max_label_values=n + 10))
    hand = HandWritten()
    for i in range(n):
        recs = seed_records(f"workflow_{i:04d}")
        tier_body(tier, recs)(1)
        hand.body(recs)(1)
    series = sum(1 for line in generate_latest(tier.registry).decode().splitlines() if line and not line.startswith("#"))
    for label, render in (("text", generate_latest), ("OpenMetrics", generate_openmetrics)):
        tier_ms, hand_ms = [], []
        for _ in range(max(3, args.repeats // 3)):
            start = time.perf_counter_ns()
            size = len(render(tier.registry))
            tier_ms.append((time.perf_counter_ns() - start) / 1e6)
            start = time.perf_counter_ns()
            render(hand.registry)
            hand_ms.append((time.perf_counter_ns() - start) / 1e6)
        print(f"scrape, {n} workflow label sets ({series} samples, {size / 1024:.0f} KiB {label}):")
        print(f"  tiertrace-prometheus registry   {statistics.median(tier_ms):8.1f} ms")
        print(f"  hand-made registry              {statistics.median(hand_ms):8.1f} ms")
        print(f"  ratio                           {statistics.median(tier_ms) / statistics.median(hand_ms):8.2f}x")


if __name__ == "__main__":
    main()
