"""All three tiers at once against the real backends, read back through each backend's own API:
the same trace id everywhere, the same cost and tokens everywhere, and sampling that
thins out traces but never metrics or MLflow runs."""

from __future__ import annotations

import time

import pytest

from tiertrace.demo import FakeLLM, article_writer
from tiertrace.testing import RecordingPlugin

from systemkit import total, wait_until

pytestmark = pytest.mark.slow

CHAT_MODEL = "GenericFakeChatModel"  # the name the LangChain handler records for the fake model
CHAT_PRICE = {"input": 2.0, "output": 8.0}  # USD per 1M tokens, from observability.pricing


def _llm_spans(spans):
    # mlflow's OTLP ingestion keeps the GenAI attributes (it maps tiertrace.span.kind to its span type)
    return [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]


def check_everywhere(s, prometheus, pushgateway, workflow, spans_expected: int, started: float) -> None:
    """One workflow, every backend: trace id, tokens and cost agree. Call before shutdown
    (Prometheus reads the live endpoint) and shut down inside (MLflow, OTLP, push)."""
    trace_id = workflow.trace_id
    job = 'job="tiertrace"'
    # Prometheus, through its query API: the scrape of our endpoint holds this run's counts.
    prometheus.wait_value(f"sum(llm_cost_usd_total{{{job}}})", workflow.cost_usd)
    assert prometheus.scalar(f'sum(llm_tokens_total{{{job},type="input"}})') == workflow.input_tokens
    assert prometheus.scalar(f'sum(llm_tokens_total{{{job},type="output"}})') == workflow.output_tokens
    assert prometheus.scalar(f'sum(workflow_cost_usd_total{{{job}}})') == pytest.approx(workflow.cost_usd, rel=1e-9)
    assert prometheus.scalar(f'sum(workflow_runs_total{{{job},workflow="{workflow.name}"}})') == 1
    # ... and one of its histograms carries the trace id as an exemplar.
    exemplars = wait_until(
        lambda: trace_id in (ids := prometheus.exemplar_trace_ids(
            f'workflow_duration_seconds_bucket{{{job}}}', started - 5, time.time() + 5)) and ids,
        30, f"an exemplar with trace_id {trace_id}")
    assert trace_id in exemplars

    late = s.tracer.shutdown(timeout=30)
    assert late == [], late
    assert s.tracer.health.total_dropped() == 0, s.tracer.health.dropped
    assert s.tracer.health.total_plugin_errors() == 0, s.tracer.health.last_errors

    # MLflow, through MlflowClient: the run tagged with the trace id, with the totals.
    run = s.workflow_run(trace_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["cost_usd"] == pytest.approx(workflow.cost_usd, rel=1e-12)
    assert metrics["input_tokens"] == workflow.input_tokens
    assert metrics["output_tokens"] == workflow.output_tokens

    # The OTLP backend (mlflow's /v1/traces), through get_trace: same trace id, same cost.
    spans = s.mlflow.wait_spans(trace_id, spans_expected)
    assert len(spans) == spans_expected
    assert {span.trace_id for span in spans} == {f"tr-{trace_id}"}
    root = next(span for span in spans if span.parent_id is None)
    assert root.span_id == workflow.span_id
    llm = _llm_spans(spans)
    assert sum(span.attributes.get("tiertrace.cost_usd", 0.0) for span in llm) == pytest.approx(workflow.cost_usd, rel=1e-9)
    assert sum(span.attributes.get("gen_ai.usage.input_tokens", 0) for span in llm) == workflow.input_tokens
    assert sum(span.attributes.get("gen_ai.usage.output_tokens", 0) for span in llm) == workflow.output_tokens
    assert root.attributes["tiertrace.cost_usd"] == pytest.approx(workflow.cost_usd, rel=1e-12)
    # (the same search the sampling test expects to come back empty)
    assert f"tr-{trace_id}" in {t.info.trace_id for t in s.mlflow.traces_in(s.otlp_experiment)}

    # The Pushgateway got the same counters at shutdown.
    pushed = pushgateway.group(s.job)
    assert total(pushed, "llm_cost_usd_total") == pytest.approx(workflow.cost_usd, rel=1e-9)
    assert total(pushed, "llm_tokens_total", type="input") == workflow.input_tokens


def test_demo_workflow_agrees_across_all_three_backends(stack, prometheus, pushgateway):
    s = stack(serve=True, push=pushgateway)
    recorder = RecordingPlugin()
    s.tracer.register(recorder, name="recorder")
    started = time.time()
    article = article_writer(s.tracer, FakeLLM(latency_scale=0.01), "observability for agents")
    assert set(article) == {"title", "body"}
    (workflow,) = recorder.records("on_workflow_end")
    assert workflow.status == "ok" and workflow.cost_usd > 0 and workflow.llm_calls == 4
    check_everywhere(s, prometheus, pushgateway, workflow, spans_expected=len(recorder.trace(workflow.trace_id)),
                     started=started)

    # The node runs hang under the workflow run, and the retry and validation failure are counted.
    run = s.workflow_run(workflow.trace_id)
    nodes = s.runs(f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(n.data.tags["tiertrace.node"] for n in nodes) == ["research", "write"]
    assert run.data.metrics["retries"] == 2 and run.data.metrics["validation_failures"] == 1


def test_langchain_chain_with_a_tool_agrees_across_all_three_backends(stack, prometheus, pushgateway):
    pytest.importorskip("langchain_core")
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool

    from tiertrace_otel import langchain as tt_langchain

    @tool
    def word_count(text: str) -> int:
        """Count the words of a text."""
        return len(text.split())

    def research(inputs: dict) -> dict:
        return {"topic": inputs["topic"], "words": word_count.invoke({"text": inputs["topic"]})}

    answer = AIMessage(content="a short answer",
                       usage_metadata={"input_tokens": 1200, "output_tokens": 340, "total_tokens": 1540})
    model = GenericFakeChatModel(messages=iter([answer]))
    prompt = ChatPromptTemplate.from_messages([("human", "tell me about {topic} in {words} words")])
    chain = RunnableLambda(research) | prompt | model | StrOutputParser()

    s = stack(serve=True, push=pushgateway, pricing={CHAT_MODEL: CHAT_PRICE})
    recorder = RecordingPlugin()
    s.tracer.register(recorder, name="recorder")
    started = time.time()
    tt_langchain.instrument(s.tracer)
    try:
        assert chain.invoke({"topic": "otel in production"}) == "a short answer"
    finally:
        tt_langchain.uninstrument()
    (workflow,) = recorder.records("on_workflow_end")
    (call,) = recorder.records("on_llm_call_end")
    (tool_call,) = recorder.records("on_tool_call_end")
    assert call.model == CHAT_MODEL and (call.input_tokens, call.output_tokens) == (1200, 340)
    assert workflow.cost_usd == pytest.approx((1200 * 2.0 + 340 * 8.0) / 1e6)
    assert tool_call.tool == "word_count" and tool_call.result == 3
    assert tool_call.trace_id == workflow.trace_id
    check_everywhere(s, prometheus, pushgateway, workflow, spans_expected=len(recorder.trace(workflow.trace_id)),
                     started=started)
    spans = {span.name: span for span in s.mlflow.spans(workflow.trace_id)}
    assert spans["execute_tool word_count"].attributes["gen_ai.tool.name"] == "word_count"


def test_sampling_zero_sends_no_span_but_counts_everything(stack, prometheus, pushgateway):
    s = stack(serve=True, push=pushgateway, sampling_rate=0.0)
    recorder = RecordingPlugin()
    s.tracer.register(recorder, name="recorder")
    llm = FakeLLM(latency_scale=0.0)
    for run in range(3):
        article_writer(s.tracer, llm, f"topic {run}", run=run)
    workflows = recorder.records("on_workflow_end")
    cost = sum(w.cost_usd for w in workflows)
    prometheus.wait_value('sum(workflow_runs_total{job="tiertrace",status="ok"})', 3)
    prometheus.wait_value('sum(llm_cost_usd_total{job="tiertrace"})', cost)
    assert prometheus.scalar('sum(llm_calls_total{job="tiertrace"})') == 12
    assert s.tracer.shutdown(timeout=30) == []
    assert s.tracer.health.total_dropped() == 0, s.tracer.health.dropped

    assert s.mlflow.traces_in(s.otlp_experiment) == []  # nothing arrived at the OTLP backend
    for workflow in workflows:
        assert s.mlflow.spans(workflow.trace_id) == []
        run = s.workflow_run(workflow.trace_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["cost_usd"] == pytest.approx(workflow.cost_usd, rel=1e-12)
        assert run.data.metrics["llm_calls"] == 4
        nodes = s.runs(f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        assert len(nodes) == 2 and all(n.info.status == "FINISHED" for n in nodes)
    assert total(pushgateway.group(s.job), "workflow_runs_total", status="ok") == 3
