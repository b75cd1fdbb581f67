"""Records become OTel spans: same ids, same tree, GenAI names and attributes."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tiertrace
from tiertrace.testing import RecordingPlugin, check_tier

from otel_helpers import spans_by_name


def _article_writer(tracer):
    with tracer.workflow("article_writer", inputs={"topic": "otel"}, tags={"team": "a"}) as wf:
        with tracer.node("research") as node:
            with tracer.llm_call("gemini-1.5-flash", prompt="List facts", params={"temperature": 0.2}) as call:
                call.record(response="facts", input_tokens=812, output_tokens=230)
            tracer.retry("429 rate limited")
            with tracer.tool_call("serper_search", args={"q": "otel"}) as tool:
                tool.record(result=["hit"])
            tracer.validation_failure(["not JSON"], raw_output="{", schema="Article")
    return wf, node, call, tool


def test_same_ids_and_tree_as_the_records(otel_tracer):
    tracer, memory = otel_tracer()
    wf, node, call, tool = _article_writer(tracer)
    spans = spans_by_name(memory)
    assert set(spans) == {"invoke_workflow article_writer", "research", "chat gemini-1.5-flash",
                          "execute_tool serper_search"}
    for name, block in [("invoke_workflow article_writer", wf), ("research", node),
                        ("chat gemini-1.5-flash", call), ("execute_tool serper_search", tool)]:
        span = spans[name]
        assert f"{span.context.trace_id:032x}" == block.data.trace_id
        assert f"{span.context.span_id:016x}" == block.data.span_id
        parent = block.data.parent_span_id
        assert (f"{span.parent.span_id:016x}" if span.parent else None) == parent
        assert span.start_time == block.data.start_time_ns
        assert span.end_time == block.data.end_time_ns


def test_genai_names_kinds_and_attributes(otel_tracer):
    tracer, memory = otel_tracer()
    wf, _, call, _ = _article_writer(tracer)
    spans = spans_by_name(memory)
    workflow = spans["invoke_workflow article_writer"]
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "article_writer"
    assert workflow.attributes["team"] == "a"
    assert workflow.attributes["gen_ai.usage.input_tokens"] == 812
    assert workflow.attributes["tiertrace.cost_usd"] == pytest.approx(wf.data.cost_usd)
    assert workflow.attributes["tiertrace.retries"] == 1
    chat = spans["chat gemini-1.5-flash"]
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == call.data.provider == "google"
    assert chat.attributes["gen_ai.request.model"] == "gemini-1.5-flash"
    assert chat.attributes["gen_ai.response.model"] == "gemini-1.5-flash"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 812
    assert chat.attributes["gen_ai.usage.output_tokens"] == 230
    assert chat.attributes["gen_ai.request.temperature"] == 0.2
    assert chat.attributes["tiertrace.cost_usd"] == pytest.approx(call.data.cost_usd)
    assert chat.attributes["gen_ai.workflow.name"] == "article_writer"
    tool = spans["execute_tool serper_search"]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "serper_search"


def test_content_is_off_by_default_and_on_when_asked(otel_tracer):
    tracer, memory = otel_tracer()
    _article_writer(tracer)
    for span in memory.get_finished_spans():
        keys = set(span.attributes)
        assert not keys & {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments",
                           "gen_ai.tool.call.result", "tiertrace.workflow.inputs"}, span.name
        for event in span.events:
            assert "tiertrace.validation.raw_output" not in event.attributes

    tracer, memory = otel_tracer(capture_content=True)
    with tracer.workflow("w", inputs={"topic": "x"}):
        with tracer.llm_call("gpt-4o", prompt="my key is sk-abcdefghijklmnopqrstuvwxyz") as call:
            call.record(response="ok")
        with tracer.tool_call("search", args={"q": "otel"}) as tool:
            tool.record(result=[1, 2])
    spans = spans_by_name(memory)
    messages = json.loads(spans["chat gpt-4o"].attributes["gen_ai.input.messages"])
    assert messages[0]["parts"][0]["content"] == "my key is [REDACTED]"  # redacted by the core
    assert json.loads(spans["chat gpt-4o"].attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "ok"
    assert json.loads(spans["execute_tool search"].attributes["gen_ai.tool.call.arguments"]) == {"q": "otel"}
    assert json.loads(spans["execute_tool search"].attributes["gen_ai.tool.call.result"]) == [1, 2]
    assert json.loads(spans["invoke_workflow w"].attributes["tiertrace.workflow.inputs"]) == {"topic": "x"}


def test_errors_retries_and_validation_failures(otel_tracer):
    tracer, memory = otel_tracer()
    with pytest.raises(KeyError):
        with tracer.workflow("w"):
            with tracer.node("n"):
                tracer.retry("timeout")
                tracer.validation_failure(["missing title"], schema="Article")
                with tracer.llm_call("gpt-4o"):
                    raise KeyError("boom")
    spans = spans_by_name(memory)
    chat = spans["chat gpt-4o"]
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "KeyError"
    (event,) = chat.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert "boom" in event.attributes["exception.message"]
    assert spans["invoke_workflow w"].status.status_code is StatusCode.ERROR
    node_events = {e.name: e for e in spans["n"].events}
    assert node_events["tiertrace.retry"].attributes["tiertrace.retry.reason"] == "timeout"
    assert node_events["tiertrace.retry"].attributes["tiertrace.retry.attempt"] == 2
    assert list(node_events["tiertrace.validation_failure"].attributes["tiertrace.validation.errors"]) == [
        "missing title"]


def test_otel_span_is_current_inside_the_block(otel_tracer):
    """An auto-instrumented HTTP client (here: the OTel API by hand) nests under the LLM span."""
    tracer, memory = otel_tracer()
    http_tracer = trace.get_tracer("an.http.client")  # the global provider: ours, installed by the tier
    with tracer.workflow("w"):
        with tracer.llm_call("gpt-4o") as call:
            assert f"{trace.get_current_span().get_span_context().span_id:016x}" == call.span_id
            with http_tracer.start_as_current_span("POST", kind=SpanKind.CLIENT):
                pass
        assert trace.get_current_span().get_span_context().span_id != int(call.span_id, 16)
    assert not trace.get_current_span().get_span_context().is_valid  # context restored after the workflow
    spans = spans_by_name(memory)
    assert spans["POST"].parent.span_id == int(call.span_id, 16)
    assert spans["POST"].context.trace_id == int(call.trace_id, 16)


def test_nesting_across_await_and_threads(otel_tracer):
    tracer, memory = otel_tracer()

    async def step(i: int) -> None:
        async with tracer.node(f"step{i}"):
            await asyncio.sleep(0.01)
            async with tracer.llm_call(f"model{i}"):
                await asyncio.sleep(0.01)

    async def main() -> str:
        async with tracer.workflow("async") as wf:
            await asyncio.gather(step(0), step(1), step(2))
        return wf.span_id

    root = asyncio.run(main())
    spans = spans_by_name(memory)
    for i in range(3):
        assert f"{spans[f'step{i}'].parent.span_id:016x}" == root
        assert spans[f"chat model{i}"].parent.span_id == spans[f"step{i}"].context.span_id

    memory.clear()
    with tracer.workflow("threads") as wf:
        with tiertrace.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: tracer.tool_call(f"t{i}").__enter__().__exit__(None, None, None), range(4)))
    spans = spans_by_name(memory)
    for i in range(4):
        assert f"{spans[f'execute_tool t{i}'].parent.span_id:016x}" == wf.span_id


def test_application_global_provider_is_used_not_replaced(otel_tracer):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app_provider = TracerProvider()
    app_memory = InMemorySpanExporter()
    app_provider.add_span_processor(SimpleSpanProcessor(app_memory))
    trace.set_tracer_provider(app_provider)

    tracer, _ = otel_tracer()
    tier = tracer.tier("opentelemetry")
    assert tier.provider is app_provider
    assert trace.get_tracer_provider() is app_provider
    assert "application's global TracerProvider" in tier.describe()
    with tracer.workflow("w") as wf:
        pass
    (span,) = app_memory.get_finished_spans()
    assert f"{span.context.span_id:016x}" == wf.span_id  # still the record's ids

    # Opting out: a provider of our own, and the application's stays global.
    tracer2, memory2 = otel_tracer(use_global_provider=False)
    assert tracer2.tier("opentelemetry").provider is not app_provider
    assert trace.get_tracer_provider() is app_provider
    with tracer2.workflow("w2"):
        pass
    assert [s.name for s in memory2.get_finished_spans()] == ["invoke_workflow w2"]
    assert len(app_memory.get_finished_spans()) == 1


def test_instrumented_libraries_follow_a_reconfigured_tier(otel_tracer):
    """configure() twice: OTel sets the global provider once, ours forwards to the running tier."""
    http_tracer = trace.get_tracer("an.http.client")  # taken before any tier, as instrumentations do
    first, first_memory = otel_tracer()
    with first.llm_call("gpt-4o"):
        with http_tracer.start_as_current_span("GET one"):
            pass
    first.shutdown()
    second, second_memory = otel_tracer()
    with second.llm_call("gpt-4o") as call:
        with http_tracer.start_as_current_span("GET two"):
            pass
    assert [s.name for s in first_memory.get_finished_spans()] == ["GET one", "chat gpt-4o"]
    spans = spans_by_name(second_memory)
    assert set(spans) == {"GET two", "chat gpt-4o"}
    assert f"{spans['GET two'].parent.span_id:016x}" == call.span_id
    # Provider methods reach the running tier's SDK provider.
    assert trace.get_tracer_provider().resource.attributes["service.name"] == "tiertrace"


def test_a_workflow_inside_an_application_span_keeps_the_record_ids(otel_tracer):
    tracer, memory = otel_tracer()
    with trace.get_tracer("app").start_as_current_span("app request"):
        with tracer.workflow("w") as wf:
            pass
    span = spans_by_name(memory)["invoke_workflow w"]
    assert f"{span.context.trace_id:032x}" == wf.trace_id and span.parent is None


def test_end_without_start_and_concurrent_workflows_never_raise(otel_tracer):
    tracer, memory = otel_tracer()
    recorder = RecordingPlugin()
    tracer.register(recorder, name="rec")
    errors = []

    def run(i: int) -> None:
        try:
            _article_writer(tracer)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert tracer.health.total_plugin_errors() == 0
    assert len(memory.get_finished_spans()) == 8 * 4
    assert not tracer.tier("opentelemetry")._bridge.live  # every live span was cleaned up


def test_conformance():
    from tiertrace_otel import OpenTelemetryTier, OtelConfig

    report = check_tier(lambda: OpenTelemetryTier(OtelConfig(exporter="none", set_global_provider=False)))
    assert not report.plugin_errors
