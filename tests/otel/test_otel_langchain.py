"""The LangChain handler: chains, chat models and tools become tiertrace spans,
registered globally (no callbacks= argument), sync, async, streaming and errors."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from tiertrace.testing import RecordingPlugin
from tiertrace_otel import langchain as tt_langchain

from otel_helpers import spans_by_name


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@tool
def broken_tool(text: str) -> str:
    """Always fails."""
    raise RuntimeError("tool exploded")


def _model(n: int = 10) -> GenericFakeChatModel:
    message = AIMessage(content="the answer is here",
                        usage_metadata={"input_tokens": 11, "output_tokens": 4, "total_tokens": 15})
    return GenericFakeChatModel(messages=iter([message] * n))


def _chain(model=None):
    prompt = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "tell me about {topic}")])
    return prompt | (model or _model()) | StrOutputParser()


@pytest.fixture
def traced(otel_tracer):
    tracer, memory = otel_tracer(capture_content=True)
    recorder = RecordingPlugin()
    tracer.register(recorder, name="rec")
    handler = tt_langchain.instrument(tracer)
    yield tracer, memory, recorder, handler
    tt_langchain.uninstrument()


def _kinds(recorder):
    return [(type(r).__name__, r.name) for r in recorder.spans()]


def test_a_chain_becomes_a_workflow_with_nodes_and_an_llm_call(traced):
    tracer, memory, recorder, handler = traced
    assert _chain().invoke({"topic": "otel"}) == "the answer is here"  # no callbacks= anywhere
    workflow = recorder.records("on_workflow_end")[0]
    assert workflow.name == "RunnableSequence"
    assert workflow.input_tokens == 11 and workflow.output_tokens == 4 and workflow.llm_calls == 1
    (call,) = recorder.records("on_llm_call_end")
    assert call.input_tokens == 11 and call.output_tokens == 4
    assert call.response == "the answer is here"
    assert call.messages == [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": "tell me about otel"}]
    assert call.parent_span_id == workflow.span_id and call.trace_id == workflow.trace_id
    assert recorder.records("on_node_end") == []  # prompt templates and parsers only format
    spans = spans_by_name(memory)
    assert spans["invoke_workflow RunnableSequence"].context.span_id == int(workflow.span_id, 16)
    assert spans[f"chat {call.model}"].attributes["gen_ai.usage.input_tokens"] == 11
    assert not handler._runs  # every run closed


def test_inner_chains_become_nodes(traced):
    tracer, _, recorder, _ = traced
    tt_langchain.instrument(tracer, skip_run_types=())
    shout = RunnableLambda(lambda text: text.upper()).with_config(run_name="shout")
    assert (_chain() | shout).invoke({"topic": "otel"}) == "THE ANSWER IS HERE"
    (workflow,) = recorder.records("on_workflow_end")
    nodes = {n.name: n for n in recorder.records("on_node_end")}
    assert set(nodes) == {"ChatPromptTemplate", "StrOutputParser", "shout"}
    assert all(n.parent_span_id == workflow.span_id for n in nodes.values())


def test_inside_a_tiertrace_workflow_the_chain_is_a_node(traced):
    tracer, _, recorder, _ = traced
    with tracer.workflow("article_writer") as wf:
        _chain().invoke({"topic": "otel"})
    (workflow,) = recorder.records("on_workflow_end")
    assert workflow.name == "article_writer" and workflow.llm_calls == 1
    sequence = next(n for n in recorder.records("on_node_end") if n.name == "RunnableSequence")
    assert sequence.parent_span_id == wf.span_id


def test_a_real_tool_and_a_tool_error(traced):
    tracer, memory, recorder, _ = traced
    assert word_count.invoke({"text": "one two three"}) == 3
    with pytest.raises(RuntimeError):
        broken_tool.invoke({"text": "x"})
    ok, failed = recorder.records("on_tool_call_end")
    assert (ok.tool, ok.args, ok.result, ok.status) == ("word_count", {"text": "one two three"}, 3, "ok")
    assert failed.tool == "broken_tool" and failed.status == "error"
    assert failed.error.type == "RuntimeError" and "tool exploded" in failed.error.message
    assert spans_by_name(memory)["execute_tool broken_tool"].status.status_code.name == "ERROR"


def test_async_runs_nest_concurrently(traced):
    _, _, recorder, handler = traced
    chain = _chain(_model(20))

    async def main():
        return await asyncio.gather(*(chain.ainvoke({"topic": t}) for t in ("a", "b", "c")))

    assert asyncio.run(main()) == ["the answer is here"] * 3
    workflows = recorder.records("on_workflow_end")
    assert len(workflows) == 3 and len({w.trace_id for w in workflows}) == 3
    for call in recorder.records("on_llm_call_end"):
        workflow = next(w for w in workflows if w.trace_id == call.trace_id)
        assert call.parent_span_id == workflow.span_id
    assert all(w.llm_calls == 1 and w.input_tokens == 11 for w in workflows)
    assert not handler._runs


def test_streaming_sync_and_async(traced):
    _, _, recorder, _ = traced
    chain = _chain(_model())
    assert "".join(chain.stream({"topic": "x"})) == "the answer is here"

    async def consume():
        return "".join([chunk async for chunk in chain.astream({"topic": "y"})])

    assert asyncio.run(consume()) == "the answer is here"
    calls = recorder.records("on_llm_call_end")
    assert len(calls) == 2
    for call in calls:
        assert call.streamed and call.time_to_first_chunk_ns is not None
        assert call.response == "the answer is here"
    assert len(recorder.records("on_workflow_end")) == 2


def test_a_failing_chat_model_marks_its_llm_call(traced):
    from langchain_core.language_models.fake_chat_models import FakeListChatModelError

    _, memory, recorder, handler = traced
    model = FakeListChatModel(responses=["abc"], error_on_chunk_number=1)
    with pytest.raises(FakeListChatModelError):
        list(model.stream("hi"))
    (call,) = recorder.records("on_llm_call_end")
    assert call.status == "error" and call.error.type == "FakeListChatModelError"
    assert call.streamed  # the first chunk arrived before the error
    assert spans_by_name(memory)[f"chat {call.model}"].status.status_code.name == "ERROR"
    assert not handler._runs


def test_chain_errors_mark_the_spans_and_propagate(traced):
    _, memory, recorder, _ = traced

    def fail(_):
        raise ValueError("bad step")

    chain = _chain() | RunnableLambda(fail)
    with pytest.raises(ValueError, match="bad step"):
        chain.invoke({"topic": "x"})
    workflow = recorder.records("on_workflow_end")[0]
    assert workflow.status == "error" and workflow.error.type == "ValueError"
    failing = next(n for n in recorder.records("on_node_end") if n.name == "fail")
    assert failing.status == "error"


def test_token_usage_from_llm_output_of_a_plain_llm(traced):
    from langchain_core.language_models.fake import FakeListLLM

    _, _, recorder, _ = traced
    llm = FakeListLLM(responses=["plain text"])
    assert llm.invoke("hello") == "plain text"
    (call,) = recorder.records("on_llm_call_end")
    assert call.prompt == "hello" and call.response == "plain text"


def test_uninstrument_stops_tracing(traced):
    _, _, recorder, _ = traced
    tt_langchain.uninstrument()
    FakeListChatModel(responses=["x"]).invoke("hi")
    assert recorder.spans() == []
    tracer = traced[0]
    tt_langchain.instrument(tracer)
    FakeListChatModel(responses=["x"]).invoke("hi")
    assert len(recorder.records("on_llm_call_end")) == 1


def test_traceloop_instrumentor_option(otel_tracer):
    pytest.importorskip("opentelemetry.instrumentation.langchain")
    tracer, memory = otel_tracer(langchain_instrumentor=True)
    try:
        with tracer.workflow("w") as wf:
            FakeListChatModel(responses=["x"]).invoke("hi")
        spans = memory.get_finished_spans()
        workflow = next(s for s in spans if s.name == "invoke_workflow w")
        theirs = [s for s in spans if s is not workflow]
        assert theirs, [s.name for s in spans]  # traceloop made spans on our provider
        assert all(s.context.trace_id == int(wf.trace_id, 16) for s in theirs)  # under our workflow span
    finally:
        tracer.shutdown()


def test_usage_from_llm_output_and_usage_metadata(traced):
    """The two places LangChain reports usage, through the handler's real callbacks."""
    from uuid import uuid4

    from langchain_core.messages import HumanMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    _, memory, recorder, handler = traced
    # OpenAI-style: llm_output["token_usage"] and the model that answered.
    run = uuid4()
    handler.on_chat_model_start({"name": "ChatOpenAI"}, [[HumanMessage("hi")]], run_id=run,
                                invocation_params={"model": "gpt-4o", "temperature": 0.3},
                                metadata={"ls_provider": "openai"})
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=AIMessage("hello"))]],
                                 llm_output={"token_usage": {"prompt_tokens": 120, "completion_tokens": 30},
                                             "model_name": "gpt-4o-2024-08-06"}), run_id=run)
    # Anthropic-style: usage_metadata on the message, with cached input tokens.
    run = uuid4()
    handler.on_chat_model_start({"name": "ChatAnthropic"}, [[HumanMessage("hi")]], run_id=run,
                                metadata={"ls_model_name": "claude-3-5-sonnet", "ls_provider": "anthropic"})
    message = AIMessage("hey", usage_metadata={"input_tokens": 50, "output_tokens": 5, "total_tokens": 55,
                                               "input_token_details": {"cache_read": 40}})
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]), run_id=run)

    openai, anthropic = recorder.records("on_llm_call_end")
    assert (openai.model, openai.provider, openai.params) == ("gpt-4o", "openai", {"temperature": 0.3})
    assert (openai.input_tokens, openai.output_tokens, openai.response_model) == (120, 30, "gpt-4o-2024-08-06")
    assert openai.cost_usd is not None and openai.cost_usd > 0  # priced from the shipped table
    assert (anthropic.model, anthropic.input_tokens, anthropic.output_tokens) == ("claude-3-5-sonnet", 50, 5)
    assert anthropic.cached_input_tokens == 40
    chat = spans_by_name(memory)["chat gpt-4o"].attributes
    assert chat["gen_ai.response.model"] == "gpt-4o-2024-08-06" and chat["gen_ai.request.temperature"] == 0.3
    assert spans_by_name(memory)["chat claude-3-5-sonnet"].attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert not handler._runs
