"""Against real backends: spans exported over OTLP/HTTP to a real ``mlflow server``
(read back through MlflowClient), across two real processes with W3C
traceparent, and over OTLP/gRPC to an in-process gRPC TraceService server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent import futures

import pytest

import tiertrace

pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
import tiertrace
config = json.loads(sys.argv[1])
tracer = tiertrace.configure({"observability": {"opentelemetry": config}})
with tracer.workflow("child_service", traceparent=sys.argv[2]) as wf:
    with tracer.llm_call("gpt-4o-mini") as call:
        call.record(response="child", input_tokens=5, output_tokens=7)
print(json.dumps({"trace_id": wf.trace_id, "span_id": wf.span_id, "parent": wf.data.parent_span_id,
                  "llm": call.span_id}), flush=True)
late = tracer.shutdown(timeout=30)
sys.exit(1 if late or tracer.health.total_dropped() else 0)
"""


def test_spans_reach_mlflow_with_ids_tree_and_attributes(mlflow_server):
    experiment = mlflow_server.new_experiment("otlp-http")
    tracer = tiertrace.configure(
        {"observability": {"opentelemetry": mlflow_server.otel_config(experiment, service_name="writer")}},
        set_default=False)
    with tracer.workflow("article_writer", tags={"team": "a"}) as wf:
        with tracer.node("research") as node:
            with tracer.llm_call("gemini-1.5-flash", prompt="facts") as call:
                call.record(response="...", input_tokens=812, output_tokens=230)
            with tracer.tool_call("serper_search", args={"q": "x"}) as tool:
                tool.record(result=["hit"])
    assert tracer.shutdown(timeout=25) == []
    assert tracer.health.total_dropped() == 0, tracer.health.dropped

    spans = {s.name: s for s in mlflow_server.spans(experiment, wf.trace_id, expected=4)}
    assert set(spans) == {"invoke_workflow article_writer", "research", "chat gemini-1.5-flash",
                          "execute_tool serper_search"}
    for name, block, parent in [("invoke_workflow article_writer", wf, None), ("research", node, wf),
                                ("chat gemini-1.5-flash", call, node), ("execute_tool serper_search", tool, node)]:
        span = spans[name]
        assert span.span_id == block.span_id
        assert span.parent_id == (parent.span_id if parent else None)
        assert span.trace_id == f"tr-{wf.trace_id}"
    chat = spans["chat gemini-1.5-flash"].attributes
    assert chat["gen_ai.request.model"] == "gemini-1.5-flash"
    assert chat["gen_ai.usage.input_tokens"] == 812 and chat["gen_ai.usage.output_tokens"] == 230
    assert chat["tiertrace.cost_usd"] == pytest.approx(call.data.cost_usd)
    assert "gen_ai.input.messages" not in chat  # content capture is off by default
    assert spans["invoke_workflow article_writer"].attributes["team"] == "a"
    assert spans["execute_tool serper_search"].attributes["gen_ai.tool.name"] == "serper_search"


def test_traceparent_across_two_real_processes(mlflow_server):
    experiment = mlflow_server.new_experiment("propagation")
    config = mlflow_server.otel_config(experiment)
    tracer = tiertrace.configure({"observability": {"opentelemetry": config}}, set_default=False)
    with tracer.workflow("parent_service") as wf:
        with tracer.tool_call("call_child_service") as outgoing:
            headers = tracer.inject({})
            # MLflow takes seconds to ingest a trace whose root is remote: give shutdown time.
            env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry", "TIERTRACE_SHUTDOWN_TIMEOUT": "30"}
            child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config), headers["traceparent"]],
                                   capture_output=True, text=True, env=env, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    remote = json.loads(child.stdout)
    assert headers["traceparent"] == f"00-{wf.trace_id}-{outgoing.span_id}-01"
    assert remote["trace_id"] == wf.trace_id and remote["parent"] == outgoing.span_id
    assert tracer.shutdown(timeout=25) == []

    spans = {s.name: s for s in mlflow_server.spans(experiment, wf.trace_id, expected=4)}
    assert spans["invoke_workflow parent_service"].parent_id is None
    assert spans["execute_tool call_child_service"].parent_id == wf.span_id
    child_root = spans["invoke_workflow child_service"]
    assert child_root.span_id == remote["span_id"]
    assert child_root.parent_id == outgoing.span_id  # the other process's span
    assert spans["chat gpt-4o-mini"].parent_id == remote["span_id"]


def test_otlp_grpc_to_a_real_grpc_trace_service():
    grpc = pytest.importorskip("grpc")
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 - the gRPC method name
            received.append((request, dict(context.invocation_metadata())))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        tracer = tiertrace.configure({"observability": {"opentelemetry": {
            "exporter": "tempo", "protocol": "grpc", "endpoint": f"http://127.0.0.1:{port}",
            "headers": {"x-scope-orgid": "tenant-1"}, "set_global_provider": False,
            "service_name": "grpc-test"}}}, set_default=False)
        with tracer.workflow("w") as wf:
            with tracer.llm_call("gpt-4o") as call:
                call.record(input_tokens=3, output_tokens=4)
        assert tracer.shutdown(timeout=10) == []
        assert tracer.health.total_dropped() == 0
    finally:
        server.stop(0)
    spans = {}
    for request, metadata in received:
        assert metadata.get("x-scope-orgid") == "tenant-1"
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "grpc-test"
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    spans[span.name] = span
    assert spans["invoke_workflow w"].span_id.hex() == wf.span_id
    assert spans["invoke_workflow w"].trace_id.hex() == wf.trace_id
    assert spans["chat gpt-4o"].parent_span_id.hex() == wf.span_id
    assert spans["chat gpt-4o"].span_id.hex() == call.span_id
