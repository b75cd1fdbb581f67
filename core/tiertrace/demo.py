"""``tiertrace demo``: the seed's article_writer workflow, offline.

A deterministic fake LLM stands in for Gemini: its token counts follow the
prompt and answer lengths (about 4 characters a token) and its latencies look
like a real API's. Along the way one call is rate limited and retried, and
one answer fails validation and is written again.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Optional, TextIO

from tiertrace.testing import RecordingPlugin
from tiertrace.tracer import Tracer
from tiertrace.waterfall import render

MODEL = "gemini-1.5-flash"


class RateLimited(Exception):
    """What the fake LLM raises on its first call of a run."""


class FakeLLM:
    """Answers deterministically from the prompt; sleeps like a real API."""

    def __init__(self, latency_scale: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        self.latency_scale = latency_scale
        self.sleep = sleep
        self.calls = 0

    @staticmethod
    def tokens(text: str) -> int:
        return max(1, len(text) // 4)

    def complete(self, prompt: str, *, fail: bool = False, answer: Optional[str] = None) -> tuple[str, int, int]:
        self.calls += 1
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        if fail:
            self.sleep(0.12 * self.latency_scale)
            raise RateLimited("429 Resource has been exhausted (quota). Retry after 1s")
        if answer is None:
            sentences = [f"Finding {i + 1} ({digest[i * 4:i * 4 + 4]}): a point worth making about the topic."
                         for i in range(12)]
            answer = " ".join(sentences)
        latency = (0.25 + 0.002 * self.tokens(answer) + int(digest[:2], 16) / 2550) * self.latency_scale
        self.sleep(latency)
        return answer, self.tokens(prompt), self.tokens(answer)


def fake_search(query: str) -> list[dict[str, str]]:
    return [{"title": f"Result {i} for {query}", "link": f"https://example.org/{i}"} for i in range(5)]


def article_writer(tracer: Tracer, llm: FakeLLM, topic: str, run: int = 0, team: str = "content") -> dict[str, Any]:
    """The seed's workflow: research (LLM + serper_search), then write (LLM)."""
    with tracer.workflow("article_writer", inputs={"topic": topic}, tags={"team": team, "run": str(run)}) as wf:
        with tracer.node("research"):
            prompt = f"List the key facts about {topic} that an article should cover."
            for attempt in (1, 2):
                try:
                    with tracer.llm_call(MODEL, prompt=prompt, attempt=attempt, params={"temperature": 0.2}) as call:
                        notes, n_in, n_out = llm.complete(prompt, fail=attempt == 1)
                        call.record(response=notes, input_tokens=n_in, output_tokens=n_out)
                    break
                except RateLimited as exc:
                    tracer.retry(str(exc), attempt=attempt + 1)
            with tracer.tool_call("serper_search", args={"q": topic}) as tool:
                llm.sleep(0.18 * llm.latency_scale)
                tool.record(result=fake_search(topic))
        with tracer.node("write"):
            prompt = f"Write a short article about {topic} as JSON with 'title' and 'body'. Notes: {notes}"
            draft, n_in, n_out = _write(tracer, llm, prompt, attempt=1, answer=f"{topic}: a draft without JSON")
            try:
                article = json.loads(draft)
            except json.JSONDecodeError as exc:
                tracer.validation_failure([f"output is not JSON: {exc.msg}"], raw_output=draft, schema="Article")
                tracer.retry("output failed validation", attempt=2, target="llm_call")
                body = " ".join(notes.split()[:60])
                draft, _, _ = _write(tracer, llm, prompt, attempt=2,
                                     answer=json.dumps({"title": topic.title(), "body": body}))
                article = json.loads(draft)
        wf.set_attribute("article_title", article["title"])
    return article


def _write(tracer: Tracer, llm: FakeLLM, prompt: str, attempt: int, answer: str) -> tuple[str, int, int]:
    with tracer.llm_call(MODEL, prompt=prompt, attempt=attempt) as call:
        text, n_in, n_out = llm.complete(prompt, answer=answer)
        call.record(response=text, input_tokens=n_in, output_tokens=n_out * 6)
    return text, n_in, n_out


def run_demo(tracer: Tracer, runs: int = 1, out: Optional[TextIO] = None, latency_scale: float = 1.0) -> list[Any]:
    """Run the workflow ``runs`` times and print the waterfall, costs and where data went."""
    import sys

    out = out or sys.stdout
    recorder = RecordingPlugin()
    tracer.register(recorder, name="demo-recorder")
    llm = FakeLLM(latency_scale)
    topics = ["observability for LLM agents", "vector databases", "prompt caching", "agent evaluation"]
    workflows = []
    try:
        for run in range(runs):
            article_writer(tracer, llm, topics[run % len(topics)], run=run, team=("content", "research")[run % 2])
            workflows.append(recorder.records("on_workflow_end")[-1])
    finally:
        tracer.unregister("demo-recorder")

    last = workflows[-1]
    waterfall = None
    otel = tracer.tier("opentelemetry")
    if otel is not None and hasattr(otel, "waterfall"):
        try:
            waterfall = otel.waterfall(last.trace_id)
        except Exception:
            waterfall = None
    if not waterfall:
        waterfall = render(recorder.trace(last.trace_id), label=f"trace {last.trace_id}")
    print("\nWorkflow article_writer, last run\n", file=out)
    print(waterfall, file=out)

    print("\nCost per node (last run)", file=out)
    for node in recorder.records("on_node_end"):
        if node.trace_id == last.trace_id:
            print(f"  {node.name:<10} ${node.cost_usd:.6f}  {node.input_tokens:>5} in / {node.output_tokens:>5} out  "
                  f"{node.llm_calls} LLM calls, {node.retries} retries, {node.validation_failures} validation failures",
                  file=out)
    print("\nCost per run", file=out)
    for wf in workflows:
        print(f"  {wf.trace_id}  ${wf.cost_usd:.6f}  {wf.input_tokens + wf.output_tokens:>6} tokens  "
              f"{wf.duration_ns / 1e9:.2f}s  {wf.status}", file=out)
    total = sum(wf.cost_usd for wf in workflows)
    print(f"  total ${total:.6f} over {len(workflows)} run(s) "
          f"(prices: {MODEL} from the shipped table, as of {tracer.prices.as_of})", file=out)

    print("\nWhere the data went", file=out)
    tiers = [t for t in tracer.tiers if t.distribution is not None or t.reason != "registered in process"]
    if not tiers:
        print("  no tier is installed: pip install tiertrace-mlflow tiertrace-otel tiertrace-prometheus", file=out)
    for info in tiers:
        if info.state == "active" and info.instance is not None:
            describe = getattr(info.instance, "describe", None)
            where = describe() if callable(describe) else "active"
            print(f"  {info.name:<14} {where}", file=out)
        else:
            print(f"  {info.name:<14} {info.state}: {info.reason}", file=out)
    return workflows
