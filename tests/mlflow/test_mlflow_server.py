"""Against a real ``mlflow server``: read back, an outage in the middle, a server never up."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import MlflowServer, by_kind, client_for, free_port, run_article_writer, runs_of


@pytest.mark.slow
def test_runs_artifacts_and_traces_through_a_server(make_tracer, mlflow_server: MlflowServer):
    tracer = make_tracer(tracking_uri=mlflow_server.url, experiment_name="served", traces=True)
    wf = run_article_writer(tracer, topic="served topic")
    assert tracer.flush(timeout=60) == []

    runs = runs_of(mlflow_server.url, "served")
    (workflow,) = by_kind(runs, "workflow")
    assert workflow.info.status == "FINISHED"
    assert workflow.data.tags["tiertrace.trace_id"] == wf.trace_id
    assert workflow.data.metrics["input_tokens"] == 912
    assert {n.data.tags["mlflow.parentRunId"] for n in by_kind(runs, "node")} == {workflow.info.run_id}
    # Artifacts went through the server (proxied, --serve-artifacts) into its artifact folder.
    assert workflow.info.artifact_uri.startswith("mlflow-artifacts:")
    path = client_for(mlflow_server.url).download_artifacts(workflow.info.run_id, "tiertrace/records.json")
    assert json.loads(Path(path).read_text())["workflow"]["inputs"] == {"topic": "served topic"}
    assert list((mlflow_server.folder / "artifacts").rglob("records.json"))
    # The trace went through the server's span endpoint, with our ids, linked to the run.
    client = client_for(mlflow_server.url)
    trace = client.get_trace("tr-" + wf.trace_id)
    assert trace.info.trace_metadata["mlflow.sourceRun"] == workflow.info.run_id
    assert {span.span_id for span in trace.data.spans} >= {wf.span_id}
    assert len(trace.data.spans) == 6
    # Cost queries work over REST too.
    import tiertrace_mlflow

    (row,) = tiertrace_mlflow.costs("1d", tracking_uri=mlflow_server.url, experiment_name="served")
    assert (row.key, row.runs, row.input_tokens) == ("article_writer", 1, 912)
    assert row.cost_usd == pytest.approx(wf.cost_usd)
    assert tracer.health.dropped == {}


@pytest.mark.slow
def test_records_queued_while_the_server_is_down_arrive_after_it_returns(make_tracer, own_server: MlflowServer):
    tracer = make_tracer(tracking_uri=own_server.url, experiment_name="outage")
    tier = tracer.tier("mlflow")
    run_article_writer(tracer, topic="before")
    assert tracer.flush(timeout=60) == []

    own_server.stop()
    started = time.perf_counter()
    during = [run_article_writer(tracer, topic=f"during {i}") for i in range(3)]
    with pytest.raises(RuntimeError):
        run_article_writer(tracer, topic="failing during", fail=True)
    # The workflows did not wait for the dead server.
    assert time.perf_counter() - started < 0.5
    time.sleep(1.0)
    assert tier.writer.pending > 0 and tier.writer.outage_started is not None

    own_server.start()  # same port, same store
    assert tracer.flush(timeout=60) == []
    assert tier.writer.outage_started is None

    runs = runs_of(own_server.url, "outage")
    workflows = by_kind(runs, "workflow")
    assert sorted(run.data.params["input.topic"] for run in workflows) == [
        "before", "during 0", "during 1", "during 2", "failing during"]
    assert {run.data.tags["tiertrace.trace_id"] for run in workflows} >= {wf.trace_id for wf in during}
    statuses = {run.data.params["input.topic"]: run.info.status for run in workflows}
    assert statuses["failing during"] == "FAILED" and statuses["during 0"] == "FINISHED"
    assert len(by_kind(runs, "node")) == 10
    assert tracer.health.dropped == {}


def test_a_server_that_is_never_up_costs_the_workflow_nothing(make_tracer):
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    tracer = make_tracer(tracking_uri=url, queue_size=100)
    started = time.perf_counter()
    datas = [run_article_writer(tracer) for _ in range(5)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"5 workflows took {elapsed:.3f} s with the backend down"
    assert all(d.status == "ok" and d.input_tokens == 912 for d in datas)

    started = time.perf_counter()
    late = tracer.shutdown(timeout=1.0)
    assert time.perf_counter() - started < 1.5
    assert late == []
    # 5 workflows x 11 records each, none written: all counted, none silent.
    assert tracer.health.dropped == {("mlflow", "shutdown"): 55}
    # Records reported after shutdown are counted too.
    run_article_writer(tracer)
    assert tracer.health.dropped[("mlflow", "after_shutdown")] == 11


@pytest.mark.parametrize("status, up", [(200, True), (401, True), (404, True), (500, True), (503, False)])
def test_health_probe_counts_any_answer_but_a_gateway_error(status, up):
    import http.server
    import threading

    from tiertrace_mlflow import MlflowConfig
    from tiertrace_mlflow.backend import MlflowBackend
    from tiertrace_mlflow.config import resolve_destination

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = MlflowConfig(tracking_uri=f"http://127.0.0.1:{server.server_port}")
        assert MlflowBackend(config, resolve_destination(config)).reachable() is up
    finally:
        server.shutdown()
        server.server_close()
    assert MlflowBackend(config, resolve_destination(config)).reachable() is False  # nobody listens now
