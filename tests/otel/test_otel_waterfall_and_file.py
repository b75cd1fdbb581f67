"""The terminal waterfall (in memory, from the span file, in ``tiertrace demo``)
and the offline JSON-lines exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import tiertrace
import tiertrace_otel
from tiertrace.cli import main as cli_main


def _slow_workflow(tracer, name="article_writer"):
    with tracer.workflow(name) as wf:
        with tracer.node("research"):
            with tracer.llm_call("gemini-1.5-flash") as call:
                time.sleep(0.03)
                call.record(input_tokens=10, output_tokens=5)
            with tracer.tool_call("serper_search"):
                time.sleep(0.005)
        with tracer.node("write"):
            with tracer.llm_call("gpt-4o"):
                time.sleep(0.01)
    return wf


def test_waterfall_of_a_trace_marks_the_bottleneck(otel_tracer):
    tracer, _ = otel_tracer(waterfall_traces=2)
    first = _slow_workflow(tracer, "first")
    last = _slow_workflow(tracer)
    text = tiertrace_otel.waterfall(last.trace_id, tracer=tracer)
    lines = text.splitlines()
    assert lines[0] == f"trace {last.trace_id}"
    assert lines[1].startswith("invoke_workflow article_writer")
    assert any(line.startswith("│   ├── chat gemini-1.5-flash") for line in lines)
    assert any(line.startswith("    └── chat gpt-4o") for line in lines)
    bottleneck = next(line for line in lines if "bottleneck" in line)
    assert "chat gemini-1.5-flash" in bottleneck
    tier = tracer.tier("opentelemetry")
    assert tier.waterfall() == text  # the last trace by default
    assert "first" in tier.waterfall(first.trace_id)
    _slow_workflow(tracer, "third")  # only the last 2 traces are kept
    assert tier.waterfall(first.trace_id).startswith("(no finished spans")
    with tracer.workflow("joined", traceparent=f"00-{'ab' * 16}-{'cd' * 8}-01"):
        pass
    assert "invoke_workflow joined" in tier.waterfall()  # a workflow with a remote parent is the last trace


def test_file_exporter_and_the_waterfall_command(tmp_path, capsys):
    path = tmp_path / "spans" / "otel.jsonl"
    tracer = tiertrace.configure({"observability": {"opentelemetry": {
        "exporter": "file", "file_path": str(path), "set_global_provider": False}}}, set_default=False)
    wf = _slow_workflow(tracer)
    with tracer.workflow("later"):
        pass
    assert tracer.shutdown(timeout=5) == []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 7
    root = next(r for r in rows if r["span_id"] == wf.span_id)
    assert root["trace_id"] == wf.trace_id and root["name"] == "invoke_workflow article_writer"
    assert root["resource"]["service.name"] == "tiertrace"
    chat = next(r for r in rows if r["name"] == "chat gemini-1.5-flash")
    assert chat["kind"] == "CLIENT" and chat["attributes"]["gen_ai.usage.input_tokens"] == 10

    assert cli_main(["otel-waterfall", wf.trace_id, "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "invoke_workflow article_writer" in out and "bottleneck" in out
    assert cli_main(["otel-waterfall", "--file", str(path)]) == 0  # the last trace
    assert "invoke_workflow later" in capsys.readouterr().out
    assert cli_main(["otel-waterfall", "0" * 32, "--file", str(path)]) == 1


def test_console_exporter_prints_spans(capsys):
    tracer = tiertrace.configure({"observability": {"opentelemetry": {
        "exporter": "console", "set_global_provider": False}}}, set_default=False)
    with tracer.workflow("shown") as wf:
        pass
    tracer.shutdown(timeout=5)
    out = capsys.readouterr().out
    assert '"name": "invoke_workflow shown"' in out and wf.span_id in out


def test_demo_prints_this_tiers_waterfall(tmp_path):
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry"}
    out = subprocess.run([sys.executable, "-m", "tiertrace", "demo", "--latency-scale", "0.05"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "invoke_workflow article_writer" in out.stdout  # the tier's span names, not the records'
    assert "chat gemini-1.5-flash" in out.stdout and "bottleneck" in out.stdout
    assert "tiertrace-otel-spans.jsonl (JSON lines)" in out.stdout
    assert (tmp_path / "tiertrace-otel-spans.jsonl").stat().st_size > 0
