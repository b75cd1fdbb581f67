"""Benchmarks of the OpenTelemetry tier, each side by side with its anchor in the same run.

    TIERTRACE_LOAD_PLUGINS=opentelemetry python benchmarks/bench_otel.py [--quick]

1. Per-span cost: the article_writer shape (workflow, node, LLM call, tool
   call: 4 spans) through tiertrace + this tier, against the bare OpenTelemetry
   SDK doing the same 4 spans by hand (current spans, the same attributes, the
   same bounded processor and a no-op exporter). Also the core with a tier
   that does nothing, to show what the core's records cost (paid once for all
   tiers), and a minimal tier (start and end a current span per record, no
   attributes) against the bare SDK doing the same: the floor for any tier
   built on the core's hooks. Target: ratio <= 1.15.
2. A LangChain chain (prompt | fake chat model | parser): overhead of the
   tiertrace handler (default: no spans for prompt templates and parsers; and
   with a span for every run, as the instrumentor makes) and of traceloop's
   LangchainInstrumentor over the bare chain, each in fresh processes.
   Target: tiertrace <= 0.5x the instrumentor's overhead.
3. A dead endpoint (a black hole that accepts connections and never answers):
   per-span cost against the no-op exporter, and the exit time of a process
   that ends without calling shutdown.

Times are the measuring thread's CPU time (time.thread_time_ns), medians over
rounds; rounds alternate the variants so machine noise hits all. The exit
times are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

os.environ.setdefault("TIERTRACE_LOAD_PLUGINS", "opentelemetry")

import tiertrace  # noqa: E402


def _median_per_unit(fn: Callable[[int], None], n: int, units: int) -> float:
    """Microseconds of this thread's CPU time per unit (robust on a shared machine;
    the export thread is the same in every variant)."""
    start = time.thread_time_ns()
    fn(n)
    return (time.thread_time_ns() - start) / (n * units) / 1000


# --- 1. per-span cost ---------------------------------------------------------------------


def _tiertrace_runs(tracer: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with tracer.workflow("article_writer", tags={"team": "a"}):
                with tracer.node("research"):
                    with tracer.llm_call("gemini-1.5-flash", params={"temperature": 0.2}) as call:
                        call.record(input_tokens=812, output_tokens=230)
                    with tracer.tool_call("serper_search") as tool:
                        tool.record(result=["hit"])

    return run


def _tier_attributes() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The attributes this tier puts on each of the four spans, as (set at start,
    set at end): what is known only at the end (tokens, cost, totals) must be set
    then by hand too."""
    from tiertrace.testing import RecordingPlugin

    tracer = tiertrace.configure({"observability": {"opentelemetry": {
        "exporter": "none", "set_global_provider": False}}}, set_default=False)
    recorder = RecordingPlugin()
    tracer.register(recorder, name="recorder")
    _tiertrace_runs(tracer)(1)
    bridge = tracer.tier("opentelemetry")._bridge
    (workflow,) = recorder.records("on_workflow_end")
    (node,) = recorder.records("on_node_end")
    (call,) = recorder.records("on_llm_call_end")
    (tool,) = recorder.records("on_tool_call_end")
    tracer.shutdown()
    return {
        "workflow": (bridge.workflow_start_attributes(workflow), bridge.totals_attributes(workflow)),
        "node": (bridge.node_start_attributes(node), bridge.totals_attributes(node)),
        "chat": (bridge.llm_start_attributes(call), bridge.llm_end_attributes(call)),
        "tool": (bridge.tool_start_attributes(tool), bridge.tool_end_attributes(tool)),
    }


def _bare_sdk_runs() -> tuple[Callable[[int], None], Any]:
    """The same four spans by hand with the OTel API at its most direct: current
    spans, the tier's attributes (start ones at start, end ones at the end), the
    same bounded processor and a no-op exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind

    from tiertrace_otel.processor import BoundedBatchProcessor, NoOpSpanExporter

    attributes = _tier_attributes()
    wf_start, wf_end = attributes["workflow"]
    node_start, node_end = attributes["node"]
    chat_start, chat_end = attributes["chat"]
    tool_start, tool_end = attributes["tool"]
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}),
                              sampler=ParentBased(TraceIdRatioBased(1.0)), shutdown_on_exit=False)
    processor = BoundedBatchProcessor(NoOpSpanExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bare")
    client = SpanKind.CLIENT

    def run(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("invoke_workflow article_writer", attributes=wf_start) as wf:
                with tracer.start_as_current_span("research", attributes=node_start) as node:
                    with tracer.start_as_current_span("chat gemini-1.5-flash", kind=client,
                                                      attributes=chat_start) as chat:
                        chat.set_attributes(chat_end)
                    with tracer.start_as_current_span("execute_tool serper_search", attributes=tool_start) as tool:
                        if tool_end:
                            tool.set_attributes(tool_end)
                    node.set_attributes(node_end)
                wf.set_attributes(wf_end)

    return run, processor


class _NoOpTier:
    """Listens to every span hook and does nothing: the core's own cost per record."""

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: Any) -> None: ...

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: Any) -> None: ...

    @tiertrace.hookimpl
    def on_node_start(self, node: Any) -> None: ...

    @tiertrace.hookimpl
    def on_node_end(self, node: Any) -> None: ...

    @tiertrace.hookimpl
    def on_llm_call_start(self, call: Any) -> None: ...

    @tiertrace.hookimpl
    def on_llm_call_end(self, call: Any) -> None: ...

    @tiertrace.hookimpl
    def on_tool_call_start(self, call: Any) -> None: ...

    @tiertrace.hookimpl
    def on_tool_call_end(self, call: Any) -> None: ...


class _MinimalOtelTier:
    """The least any tier can do: start and end a current span per record (no
    attributes, no record ids). Measures the floor the core's records set."""

    def __init__(self, tracer: Any):
        from opentelemetry import context, trace

        self._tracer, self._context, self._trace = tracer, context, trace
        self._live: dict[str, Any] = {}

    def _start(self, record: Any) -> None:
        span = self._tracer.start_span(record.name)
        self._live[record.span_id] = (span, self._context.attach(self._trace.set_span_in_context(span)))

    def _end(self, record: Any) -> None:
        span, token = self._live.pop(record.span_id)
        span.end()
        self._context.detach(token)

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: Any) -> None:
        self._start(workflow)

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: Any) -> None:
        self._end(workflow)

    @tiertrace.hookimpl
    def on_node_start(self, node: Any) -> None:
        self._start(node)

    @tiertrace.hookimpl
    def on_node_end(self, node: Any) -> None:
        self._end(node)

    @tiertrace.hookimpl
    def on_llm_call_start(self, call: Any) -> None:
        self._start(call)

    @tiertrace.hookimpl
    def on_llm_call_end(self, call: Any) -> None:
        self._end(call)

    @tiertrace.hookimpl
    def on_tool_call_start(self, call: Any) -> None:
        self._start(call)

    @tiertrace.hookimpl
    def on_tool_call_end(self, call: Any) -> None:
        self._end(call)


def _bare_minimal_runs(tracer: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("article_writer"):
                with tracer.start_as_current_span("research"):
                    with tracer.start_as_current_span("gemini-1.5-flash"):
                        pass
                    with tracer.start_as_current_span("serper_search"):
                        pass

    return run


def bench_per_span(rounds: int, n: int) -> dict[str, Any]:
    tier_tracer = tiertrace.configure({"observability": {"opentelemetry": {
        "exporter": "none", "set_global_provider": False}}}, set_default=False)
    os.environ["TIERTRACE_LOAD_PLUGINS"] = ""
    core_tracer = tiertrace.configure({"observability": {}}, set_default=False)
    core_tracer.register(_NoOpTier(), name="noop")
    minimal_tracer = tiertrace.configure({"observability": {}}, set_default=False)
    os.environ["TIERTRACE_LOAD_PLUGINS"] = "opentelemetry"
    bare, processor = _bare_sdk_runs()
    sdk_tracer = processor_provider_tracer(processor)
    minimal_tracer.register(_MinimalOtelTier(sdk_tracer), name="minimal")
    variants = {"bare OTel SDK": bare, "tiertrace + otel tier": _tiertrace_runs(tier_tracer),
                "tiertrace + a no-op tier": _tiertrace_runs(core_tracer),
                "bare OTel SDK, no attributes": _bare_minimal_runs(sdk_tracer),
                "tiertrace + a minimal OTel tier, no attributes": _tiertrace_runs(minimal_tracer)}
    for fn in variants.values():
        fn(200)  # warm up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(_median_per_unit(fn, n, 4))
    for tracer in (tier_tracer, core_tracer, minimal_tracer):
        tracer.shutdown()
    processor.shutdown(1000)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    bare_us, tier_us, core_us = (medians["bare OTel SDK"], medians["tiertrace + otel tier"],
                                 medians["tiertrace + a no-op tier"])
    return {"per_span_us": medians,
            "ratio_tier_vs_bare": tier_us / bare_us,
            # The core's records and hook calls are paid once for every tier; what this tier adds on top:
            "ratio_tier_without_core_records_vs_bare": (tier_us - core_us) / bare_us,
            # The floor for any tier built on the core's hooks:
            "ratio_minimal_tier_vs_bare_minimal": medians["tiertrace + a minimal OTel tier, no attributes"]
            / medians["bare OTel SDK, no attributes"]}


def processor_provider_tracer(processor: Any) -> Any:
    """A tracer of a plain SDK provider exporting through ``processor``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider.get_tracer("minimal")


# --- 2. LangChain --------------------------------------------------------------------------


def _langchain_variant(kind: str, n: int) -> float:
    """Microseconds per chain.invoke with one kind of instrumentation (run in a fresh
    process: LangchainInstrumentor.uninstrument() leaves its callback handler behind)."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from tiertrace_otel.processor import BoundedBatchProcessor, NoOpSpanExporter

    class Endless:
        def __iter__(self) -> "Endless":
            return self

        def __next__(self) -> AIMessage:
            return AIMessage(content="the answer", usage_metadata={"input_tokens": 5, "output_tokens": 2,
                                                                     "total_tokens": 7})

    chain = (ChatPromptTemplate.from_messages([("human", "tell me about {topic}")])
             | GenericFakeChatModel(messages=Endless()) | StrOutputParser())

    def run(count: int) -> None:
        for _ in range(count):
            chain.invoke({"topic": "otel"})

    if kind.startswith("tiertrace handler"):
        from tiertrace_otel import langchain as tt_langchain

        tracer = tiertrace.configure({"observability": {
            "pricing": {"GenericFakeChatModel": {"input": 1.0, "output": 2.0}},
            "opentelemetry": {"exporter": "none", "set_global_provider": False}}}, set_default=False)
        # By default prompt templates and parsers get no span; "(every run)" traces them too.
        tt_langchain.instrument(tracer, skip_run_types=() if "every run" in kind else ("prompt", "parser"))
    elif kind == "LangchainInstrumentor":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BoundedBatchProcessor(NoOpSpanExporter()))
        LangchainInstrumentor().instrument(tracer_provider=provider)
    run(50)
    samples = [_median_per_unit(run, n, 1) for _ in range(5)]
    return statistics.median(samples)


def bench_langchain(rounds: int, n: int) -> dict[str, Any]:
    kinds = ["none", "tiertrace handler", "tiertrace handler (every run)", "LangchainInstrumentor"]
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry"}
    for _ in range(rounds):
        for kind in kinds:
            out = subprocess.run([sys.executable, __file__, "--langchain-variant", kind, "--n", str(n)],
                                 capture_output=True, text=True, env=env, timeout=300, check=True)
            samples[kind].append(float(out.stdout.strip().splitlines()[-1]))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    overhead = {k: medians[k] - medians["none"] for k in kinds[1:]}
    theirs = overhead["LangchainInstrumentor"]
    return {"per_invoke_us": medians, "overhead_us": overhead,
            "ratio_tiertrace_vs_instrumentor_overhead": overhead["tiertrace handler"] / theirs,
            "ratio_every_run_vs_instrumentor_overhead": overhead["tiertrace handler (every run)"] / theirs}


# --- 3. dead endpoint ---------------------------------------------------------------------------

EXIT_SCRIPT = r"""
import sys, time, tiertrace
tracer = tiertrace.configure({"observability": {"opentelemetry": {
    "exporter": "otlp", "endpoint": sys.argv[1], "flush_timeout": float(sys.argv[2])}}})
for _ in range(1000):
    with tracer.workflow("w"):
        with tracer.llm_call("gpt-4o"):
            pass
print("done", flush=True)
"""

SDK_EXIT_SCRIPT = r"""
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
tracer = provider.get_tracer("x")
for _ in range(1000):
    with tracer.start_as_current_span("w"):
        with tracer.start_as_current_span("chat"):
            pass
print("done", flush=True)
"""


def _exit_time(script: str, *args: str) -> float:
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry"}
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    process.stdout.readline()
    done = time.perf_counter()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return float("inf")
    return time.perf_counter() - done


def bench_dead_endpoint(rounds: int, n: int) -> dict[str, Any]:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(256)
    endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}"
    try:
        dead = tiertrace.configure({"observability": {"opentelemetry": {
            "exporter": "otlp", "endpoint": endpoint, "set_global_provider": False, "timeout": 1.0,
            "flush_timeout": 2.0}}}, set_default=False)
        live = tiertrace.configure({"observability": {"opentelemetry": {
            "exporter": "none", "set_global_provider": False}}}, set_default=False)
        variants = {"no-op exporter": _tiertrace_runs(live), "dead endpoint": _tiertrace_runs(dead)}
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                samples[name].append(_median_per_unit(fn, n, 4))
        started = time.perf_counter()
        dead.shutdown()
        shutdown_s = time.perf_counter() - started
        live.shutdown()
        dropped = dict(dead.health.dropped)
        exits = {"tiertrace, flush_timeout 2 s": statistics.median(
                     _exit_time(EXIT_SCRIPT, endpoint, "2.0") for _ in range(3)),
                 "bare SDK defaults (BatchSpanProcessor, OTLP/HTTP)": _exit_time(SDK_EXIT_SCRIPT, endpoint)}
    finally:
        hole.close()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {"per_span_us": medians, "ratio_dead_vs_noop": medians["dead endpoint"] / medians["no-op exporter"],
            "shutdown_s": shutdown_s, "dropped": {f"{t}/{r}": c for (t, r), c in dropped.items()},
            "process_exit_s": exits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", choices=["per_span", "langchain", "dead_endpoint"], action="append")
    parser.add_argument("--langchain-variant", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.langchain_variant:
        print(_langchain_variant(args.langchain_variant, args.n))
        return
    rounds, n = (5, 300) if args.quick else (15, 1000)
    benches = {
        "per_span": lambda: bench_per_span(rounds, n),
        "langchain": lambda: bench_langchain(max(3, rounds // 3), max(100, n // 5)),
        "dead_endpoint": lambda: bench_dead_endpoint(max(3, rounds // 3), n // 2),
    }
    results = {name: bench() for name, bench in benches.items() if not args.only or name in args.only}
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
