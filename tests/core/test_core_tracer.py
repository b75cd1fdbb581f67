"""Nesting, ids, errors, async, threads, decorators, propagation, totals."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

import tiertrace
from tiertrace.testing import recording_tracer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture
def traced():
    tracer, recorder = recording_tracer()
    yield tracer, recorder
    tracer.shutdown(timeout=2)


def test_nesting_ids_and_parents(traced):
    tracer, rec = traced
    with tracer.workflow("wf") as wf:
        with tracer.node("n1") as n1:
            with tracer.llm_call("gpt-4o", prompt="p") as call:
                call.record(response="r", input_tokens=10, output_tokens=20)
            with tracer.tool_call("search", args={"q": 1}) as tool:
                tool.record(result=[1])
        with tracer.node("n2") as n2:
            pass
    assert rec.hooks() == [
        "on_workflow_start", "on_node_start", "on_llm_call_start", "on_llm_call_end",
        "on_tool_call_start", "on_tool_call_end", "on_node_end", "on_node_start", "on_node_end",
        "on_workflow_end",
    ]
    spans = rec.spans()
    assert len({s.span_id for s in spans}) == len(spans) == 5
    for span in spans:
        assert HEX32.match(span.trace_id) and HEX16.match(span.span_id)
        assert span.trace_id == wf.trace_id
        assert span.end_time_ns >= span.start_time_ns and span.status == "ok"
    assert wf.data.parent_span_id is None
    assert n1.data.parent_span_id == wf.span_id == n2.data.parent_span_id
    assert call.data.parent_span_id == n1.span_id == tool.data.parent_span_id
    assert call.data.node == "n1" and call.data.workflow == "wf" and n2.data.workflow == "wf"


def test_trace_ids_unique_across_workflows(traced):
    tracer, _ = traced
    ids = set()
    for _ in range(200):
        with tracer.workflow("wf") as wf:
            pass
        ids.add(wf.trace_id)
    assert len(ids) == 200


def test_exception_marks_error_and_propagates_unchanged(traced):
    tracer, rec = traced
    error = KeyError("missing")
    with pytest.raises(KeyError) as caught:
        with tracer.workflow("wf"):
            with tracer.node("n"):
                raise error
    assert caught.value is error
    node, wf = rec.records("on_node_end")[0], rec.records("on_workflow_end")[0]
    for record in (node, wf):
        assert record.status == "error"
        assert record.error.type == "KeyError" and "missing" in record.error.message
    assert tiertrace.current_span() is None


def test_asyncio_gather_interleaved_workflows_keep_their_parents(traced):
    tracer, rec = traced

    async def one(name: str) -> str:
        async with tracer.workflow(name) as wf:
            for step in range(3):
                async with tracer.node(f"{name}-{step}"):
                    await asyncio.sleep(0.001)
                    async with tracer.llm_call("gpt-4o-mini") as call:
                        await asyncio.sleep(0.001)
                        call.record(input_tokens=1, output_tokens=1)
        return wf.trace_id

    async def main() -> list[str]:
        return list(await asyncio.gather(one("a"), one("b")))

    trace_a, trace_b = asyncio.run(main())
    assert trace_a != trace_b
    by_id = {s.span_id: s for s in rec.spans()}
    for span in rec.spans():
        if span.parent_span_id:
            parent = by_id[span.parent_span_id]
            assert parent.trace_id == span.trace_id
            assert span.workflow == parent.workflow
    for wf in rec.records("on_workflow_end"):
        assert wf.llm_calls == 3 and wf.input_tokens == 3


def test_sixteen_threads_have_no_cross_talk(traced):
    tracer, rec = traced
    barrier = threading.Barrier(16)
    seen: dict[int, str] = {}

    def work(i: int) -> None:
        with tracer.workflow(f"wf{i}") as wf:
            barrier.wait()
            with tracer.node(f"node{i}"):
                with tracer.llm_call("gpt-4o", prompt=str(i)) as call:
                    call.record(input_tokens=i, output_tokens=1)
        seen[i] = wf.trace_id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen.values())) == 16
    for wf in rec.records("on_workflow_end"):
        i = int(wf.name[2:])
        assert wf.trace_id == seen[i]
        assert wf.input_tokens == i and wf.llm_calls == 1
    for node in rec.records("on_node_end"):
        assert node.workflow == f"wf{node.name[4:]}"


def test_bind_and_thread_pool_carry_the_current_span(traced):
    tracer, rec = traced
    with tracer.workflow("wf") as wf:
        with tracer.node("fan-out") as node:
            def call(i: int) -> int:
                with tracer.llm_call("gpt-4o") as c:
                    c.record(input_tokens=i, output_tokens=0)
                return i

            with tiertrace.ThreadPoolExecutor(max_workers=4) as pool:
                assert list(pool.map(call, range(8))) == list(range(8))
            thread = threading.Thread(target=tiertrace.bind(call), args=(100,))
            thread.start()
            thread.join()
    calls = rec.records("on_llm_call_end")
    assert len(calls) == 9
    assert all(c.parent_span_id == node.span_id and c.trace_id == wf.trace_id for c in calls)
    assert wf.data.input_tokens == sum(range(8)) + 100


def test_unbound_thread_starts_its_own_trace(traced):
    tracer, rec = traced
    with tracer.workflow("wf") as wf:
        thread = threading.Thread(target=lambda: tracer.llm_call("gpt-4o").__enter__().__exit__(None, None, None))
        thread.start()
        thread.join()
    call = rec.records("on_llm_call_end")[0]
    assert call.trace_id != wf.trace_id and call.parent_span_id is None


def test_llm_and_tool_call_outside_workflow_are_their_own_traces(traced):
    tracer, rec = traced
    with tracer.llm_call("gpt-4o", prompt="hi") as call:
        call.record(response="yo", input_tokens=1, output_tokens=1)
    with tracer.tool_call("calc", args={"x": 1}) as tool:
        tool.record(result=2)
    assert call.data.parent_span_id is None and tool.data.parent_span_id is None
    assert call.trace_id != tool.trace_id
    assert call.data.workflow is None and call.data.cost_usd > 0


def test_totals_sum_everything_under_a_node_and_workflow(traced):
    tracer, rec = traced
    with tracer.workflow("wf") as wf:
        with tracer.node("a") as a:
            with tracer.llm_call("gpt-4o") as c:  # $2.50 / $10 per 1M
                c.record(input_tokens=1000, output_tokens=100)
            with tracer.node("inner"):
                with tracer.llm_call("no-such-model") as c:
                    c.record(input_tokens=5, output_tokens=5)
                tracer.retry("timeout")
            with tracer.tool_call("t"):
                pass
        with tracer.node("b") as b:
            with tracer.llm_call("gpt-4o-mini") as c:  # $0.15 / $0.60
                c.record(input_tokens=2000, output_tokens=1000)
            tracer.validation_failure(["bad"], raw_output="x")
    assert a.data.llm_calls == 2 and a.data.unpriced_calls == 1 and a.data.retries == 1
    assert a.data.cost_usd == pytest.approx(0.0025 + 0.001)
    assert a.data.input_tokens == 1005 and a.data.tool_calls == 1
    assert b.data.cost_usd == pytest.approx(0.0003 + 0.0006) and b.data.validation_failures == 1
    w = wf.data
    assert (w.llm_calls, w.unpriced_calls, w.retries, w.validation_failures, w.tool_calls) == (3, 1, 1, 1, 1)
    assert w.input_tokens == 3005 and w.output_tokens == 1105
    assert w.cost_usd == pytest.approx(0.0035 + 0.0009)
    assert w.models == ["gpt-4o", "no-such-model", "gpt-4o-mini"]


def test_failed_call_without_tokens_is_not_unpriced(traced):
    tracer, _ = traced
    with tracer.workflow("wf") as wf:
        with pytest.raises(TimeoutError):
            with tracer.llm_call("gpt-4o"):
                raise TimeoutError("slow")
    assert wf.data.llm_calls == 1 and wf.data.unpriced_calls == 0 and wf.data.cost_usd == 0


def test_traceparent_in_and_out(traced):
    tracer, _ = traced
    remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracer.workflow("wf", traceparent=remote) as wf:
        with tracer.node("n") as node:
            headers = tracer.inject({"x": "y"})
    assert wf.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert wf.data.parent_span_id == "00f067aa0ba902b7" and wf.data.remote_parent
    assert headers == {"x": "y", "traceparent": f"00-{wf.trace_id}-{node.span_id}-01"}
    with tracer.workflow("wf", traceparent={"TraceParent": remote.replace("-01", "-00")}) as unsampled:
        assert tracer.inject()["traceparent"].endswith("-00")
    assert not unsampled.data.sampled
    assert tracer.inject() == {}


@pytest.mark.parametrize("bad", ["garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                                 "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 12])
def test_bad_traceparent_starts_a_new_trace(traced, bad, monkeypatch):
    tracer, _ = traced
    monkeypatch.setattr("tiertrace.tracer._warned_values", set())  # warned once per process
    with pytest.warns(UserWarning):
        with tracer.workflow("wf", traceparent=bad) as wf:
            pass
    assert wf.data.parent_span_id is None and not wf.data.remote_parent


def test_decorators_sync_async_and_generators(traced):
    tracer, rec = traced

    @tracer.llm_call(model="gpt-4o")
    def ask(prompt: str) -> str:
        tiertrace.current_span().record(input_tokens=3, output_tokens=2)
        return prompt.upper()

    @tracer.llm_call(model="gpt-4o")
    def stream(n: int):
        for i in range(n):
            yield f"tok{i} "

    @tracer.tool_call()
    async def lookup(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @tracer.llm_call(model="gpt-4o")
    async def astream():
        for part in ("a", "b"):
            await asyncio.sleep(0.01)
            yield part

    @tracer.workflow("decorated")
    def flow() -> str:
        return ask("hi") + "".join(stream(3))

    async def aflow() -> list:
        return [await lookup(21)] + [p async for p in astream()]

    assert flow() == "HItok0 tok1 tok2 "
    assert asyncio.run(aflow()) == [42, "a", "b"]
    calls = rec.records("on_llm_call_end")
    assert calls[0].response == "HI" and calls[0].input_tokens == 3
    assert calls[1].response == "tok0 tok1 tok2 " and calls[1].streamed
    assert calls[2].response == "ab" and calls[2].duration_ns >= 20_000_000  # timed to the last chunk
    assert calls[2].time_to_first_chunk_ns < calls[2].duration_ns
    tool = rec.records("on_tool_call_end")[0]
    assert tool.tool == "lookup" and tool.result == 42
    wf = rec.records("on_workflow_end")[0]
    assert wf.name == "decorated" and wf.llm_calls == 2


def test_module_level_decorator_follows_later_configure():
    @tiertrace.node("late")
    def step() -> int:
        return 1

    tracer = tiertrace.configure({}, set_default=True)
    recorder = tiertrace.testing.RecordingPlugin()
    tracer.register(recorder, name="rec")
    try:
        assert step() == 1
        assert [n.name for n in recorder.records("on_node_end")] == ["late"]
        assert tiertrace.get_tracer() is tracer
    finally:
        tracer.shutdown()


def test_point_events_carry_the_current_span(traced):
    tracer, rec = traced
    with tracer.workflow("wf") as wf:
        with tracer.node("n") as node:
            with tracer.llm_call("gpt-4o", attempt=1) as call:
                tracer.retry("429 rate limited")
            tracer.validation_failure("not json", raw_output="{", schema="Article")
    tracer.optimization(optimizer="MIPROv2", baseline={"acc": 0.5}, optimized={"acc": 0.8},
                        settings={"trials": 4}, program="new prompt")
    retry = rec.records("on_retry")[0]
    assert (retry.trace_id, retry.span_id, retry.target, retry.attempt) == (wf.trace_id, call.span_id, "llm_call", 2)
    assert retry.reason == "429 rate limited" and retry.node == "n" and retry.workflow == "wf"
    failure = rec.records("on_validation_failure")[0]
    assert failure.span_id == node.span_id and failure.errors == ["not json"] and failure.schema == "Article"
    opt = rec.records("on_optimization")[0]
    assert opt.deltas == pytest.approx({"acc": 0.3}) and opt.trace_id is None


def test_record_object_is_the_same_at_start_and_end(traced):
    tracer, rec = traced
    with tracer.llm_call("gpt-4o") as call:
        assert call.data.end_time_ns is None
    start, end = rec.records("on_llm_call_start")[0], rec.records("on_llm_call_end")[0]
    assert start is end and end.end_time_ns is not None


def test_span_cannot_be_entered_twice(traced):
    tracer, _ = traced
    span = tracer.node("n")
    with span:
        with pytest.raises(RuntimeError, match="already open"):
            span.__enter__()


def test_stream_closed_early_is_not_an_error(traced):
    tracer, rec = traced

    @tracer.llm_call(model="gpt-4o")
    def stream():
        yield "a"
        yield "b"

    for part in stream():
        break
    call = rec.records("on_llm_call_end")[0]
    assert call.status == "ok" and call.streamed
