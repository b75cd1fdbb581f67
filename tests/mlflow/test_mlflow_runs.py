"""What the tier writes into MLflow, read back with MlflowClient from SQLite and file stores."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from conftest import by_kind, client_for, run_article_writer, runs_of


def test_workflow_is_a_run_with_nested_node_runs(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri, run_tags={"env": "test"})
    wf = run_article_writer(tracer, topic="bees", team="blue")
    assert tracer.flush(timeout=60) == []

    runs = runs_of(sqlite_uri)
    (workflow,) = by_kind(runs, "workflow")
    nodes = {run.info.run_name: run for run in by_kind(runs, "node")}
    assert set(nodes) == {"research", "write"}

    tags, metrics = workflow.data.tags, workflow.data.metrics
    assert workflow.info.run_name == "article_writer"
    assert workflow.info.status == "FINISHED"
    assert tags["tiertrace.trace_id"] == wf.trace_id  # one id space
    assert tags["tiertrace.span_id"] == wf.span_id
    assert tags["team"] == "blue" and tags["env"] == "test"
    assert workflow.data.params == {"input.topic": "bees"}
    assert metrics["input_tokens"] == 912 and metrics["output_tokens"] == 280
    assert metrics["llm_calls"] == 2 and metrics["tool_calls"] == 1
    assert metrics["retries"] == 1 and metrics["validation_failures"] == 1
    assert metrics["cost_usd"] == pytest.approx(wf.cost_usd) and wf.cost_usd > 0
    assert metrics["model/gemini-1.5-flash/input_tokens"] == 812
    assert metrics["model/gpt-4o-mini/llm_calls"] == 1
    assert json.loads(tags["tiertrace.models"]) == ["gemini-1.5-flash", "gpt-4o-mini"]
    assert workflow.info.start_time == wf.start_time_ns // 1_000_000
    assert workflow.info.end_time == wf.end_time_ns // 1_000_000

    for node in nodes.values():
        assert node.data.tags["mlflow.parentRunId"] == workflow.info.run_id
        assert node.data.tags["tiertrace.trace_id"] == wf.trace_id
        assert node.info.status == "FINISHED"
    research = nodes["research"].data.metrics
    assert research["input_tokens"] == 812 and research["tool_calls"] == 1
    assert research["llm/input_tokens"] == 812 and "tool/duration_s" in research

    records = client_for(sqlite_uri).download_artifacts(workflow.info.run_id, "tiertrace/records.json")
    document = json.loads(Path(records).read_text())
    kinds = [record["kind"] for record in document["records"]]
    assert sorted(kinds) == sorted(["llm_call", "retry", "validation_failure", "tool_call", "node",
                                    "llm_call", "node"])
    prompts = [record["prompt"] for record in document["records"] if record["kind"] == "llm_call"]
    assert prompts == ["research bees", "write it"]
    assert tracer.health.dropped == {} and tracer.health.plugin_errors == {}


def test_failed_workflow_and_node_are_failed_runs(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri)
    with pytest.raises(RuntimeError, match="writer crashed"):
        run_article_writer(tracer, fail=True)
    tracer.flush(timeout=60)
    runs = runs_of(sqlite_uri)
    (workflow,) = by_kind(runs, "workflow")
    nodes = {run.info.run_name: run for run in by_kind(runs, "node")}
    assert workflow.info.status == "FAILED"
    assert workflow.data.tags["tiertrace.error"] == "RuntimeError: writer crashed"
    assert nodes["write"].info.status == "FAILED"
    assert nodes["research"].info.status == "FINISHED"


def test_capture_content_false_keeps_numbers_not_content(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri, capture_content=False, traces=True)
    run_article_writer(tracer, topic="secret topic")
    tracer.flush(timeout=60)
    (workflow,) = by_kind(runs_of(sqlite_uri), "workflow")
    assert workflow.data.params == {}
    assert workflow.data.metrics["input_tokens"] == 912
    path = client_for(sqlite_uri).download_artifacts(workflow.info.run_id, "tiertrace/records.json")
    text = Path(path).read_text()
    assert "secret topic" not in text and "research secret" not in text and '"prompt"' not in text
    trace = client_for(sqlite_uri).get_trace("tr-" + workflow.data.tags["tiertrace.trace_id"])
    assert all(span.inputs is None and span.outputs is None for span in trace.data.spans)


def test_trace_has_the_workflow_ids_and_is_linked_to_the_run(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri, traces=True)
    wf = run_article_writer(tracer)
    tracer.flush(timeout=60)
    (workflow,) = by_kind(runs_of(sqlite_uri), "workflow")
    client = client_for(sqlite_uri)
    experiment = client.get_experiment_by_name("tiertrace").experiment_id
    (found,) = client.search_traces(locations=[experiment], run_id=workflow.info.run_id)
    assert found.info.trace_id == "tr-" + wf.trace_id
    trace = client.get_trace(found.info.trace_id)
    spans = {span.name: span for span in trace.data.spans}
    assert set(spans) == {"article_writer", "research", "write", "gemini-1.5-flash", "gpt-4o-mini", "serper_search"}
    assert spans["article_writer"].span_id == wf.span_id and spans["article_writer"].parent_id is None
    assert spans["gemini-1.5-flash"].parent_id == spans["research"].span_id
    assert spans["gemini-1.5-flash"].inputs == {"prompt": "research x"}
    assert spans["gemini-1.5-flash"].outputs == "notes"
    assert spans["serper_search"].span_type == "TOOL"
    assert trace.info.trace_metadata["mlflow.sourceRun"] == workflow.info.run_id
    assert trace.info.state.value == "OK"
    assert "litellm" not in sys.modules  # MLflow was not left to price spans itself


def test_subworkflow_is_nested_and_optimization_is_its_own_run(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri)
    with tracer.workflow("outer"):
        with tracer.node("step"):
            with tracer.workflow("inner"):
                with tracer.llm_call("gpt-4o-mini") as call:
                    call.record(input_tokens=10, output_tokens=10)
    tracer.optimization(optimizer="BootstrapFewShot", baseline={"accuracy": 0.5},
                        optimized={"accuracy": 0.75}, settings={"max_demos": 4}, program="Answer briefly.")
    tracer.flush(timeout=60)
    runs = runs_of(sqlite_uri)
    (outer,) = by_kind(runs, "workflow")
    (inner,) = by_kind(runs, "subworkflow")
    (step,) = by_kind(runs, "node")
    assert outer.info.run_name == "outer"
    assert inner.data.tags["mlflow.parentRunId"] == step.info.run_id
    assert outer.data.metrics["input_tokens"] == 10  # the inner call counts once, in the outer totals
    (optimization,) = by_kind(runs, "optimization")
    assert optimization.data.metrics["baseline_accuracy"] == 0.5
    assert optimization.data.metrics["optimized_accuracy"] == 0.75
    assert optimization.data.metrics["delta_accuracy"] == pytest.approx(0.25)
    assert optimization.data.params == {"settings.max_demos": "4"}
    assert optimization.data.tags["tiertrace.optimizer"] == "BootstrapFewShot"
    program = client_for(sqlite_uri).download_artifacts(optimization.info.run_id, "tiertrace/program.txt")
    assert Path(program).read_text() == "Answer briefly."


def test_embedded_default_is_sqlite_under_mlruns(make_tracer, tmp_path):
    tracer = make_tracer()  # no settings, no environment
    tier = tracer.tier("mlflow")
    assert tier.destination.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    run_article_writer(tracer)
    tracer.flush(timeout=60)
    assert len(by_kind(runs_of(tier.destination.tracking_uri), "workflow")) == 1
    assert (tmp_path / "mlruns" / "artifacts").is_dir()
    assert "mlflow ui --backend-store-uri" in tier.describe()


def test_environment_variables_are_the_defaults(make_tracer, monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from_env")
    tracer = make_tracer()
    run_article_writer(tracer)
    tracer.flush(timeout=60)
    assert len(by_kind(runs_of(uri, "from_env"), "workflow")) == 1


def test_seed_file_uri_means_the_relative_folder(make_tracer, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracer = make_tracer(tracking_uri="file://./mlruns", experiment_name="production_workflows")
        make_tracer(tracking_uri="file://./mlruns", experiment_name="production_workflows")
    notes = [str(w.message) for w in caught if "names the folder" in str(w.message)]
    assert len(notes) == 1, "warned once, not once per tracer"
    assert str(tmp_path / "mlruns") in notes[0] and "MLFLOW_ALLOW_FILE_STORE" in notes[0]
    run_article_writer(tracer)
    tracer.flush(timeout=60)
    assert len(by_kind(runs_of(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "production_workflows"), "workflow")) == 1


def test_file_store_when_allowed(make_tracer, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracer = make_tracer(tracking_uri="./filestore", traces=True)
    assert tracer.tier("mlflow").destination.tracking_uri == f"file://{tmp_path}/filestore"
    run_article_writer(tracer)
    tracer.flush(timeout=60)
    runs = runs_of(f"file://{tmp_path}/filestore")
    (workflow,) = by_kind(runs, "workflow")
    assert workflow.info.status == "FINISHED" and len(by_kind(runs, "node")) == 2
    assert list((tmp_path / "filestore").glob("*/meta.yaml")), "a real file store"
    # The file store cannot hold trace spans: the trace is skipped, the run is still complete.
    assert tracer.health.dropped == {}


def test_concurrent_workflows_in_threads_and_asyncio(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri)
    records = []
    lock = threading.Lock()

    def in_thread(index: int) -> None:
        data = run_article_writer(tracer, topic=f"t{index}")
        with lock:
            records.append(data)

    async def in_task(index: int) -> None:
        async with tracer.workflow("async_writer", inputs={"i": index}) as wf:
            for name in ("plan", "draft"):
                async with tracer.node(name):
                    await asyncio.sleep(0.001)
                    async with tracer.llm_call("gpt-4o-mini") as call:
                        await asyncio.sleep(0.001)
                        call.record(input_tokens=index, output_tokens=1)
        with lock:
            records.append(wf.data)

    async def tasks() -> None:
        await asyncio.gather(*(in_task(i) for i in range(16)))

    threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join()
    assert tracer.flush(timeout=120) == []

    runs = runs_of(sqlite_uri)
    workflows = {run.data.tags["tiertrace.trace_id"]: run for run in by_kind(runs, "workflow")}
    assert len(workflows) == 32 == len(records)
    nodes = by_kind(runs, "node")
    assert len(nodes) == 64
    for node in nodes:
        parent = workflows[node.data.tags["tiertrace.trace_id"]]
        assert node.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for record in records:
        run = workflows[record.trace_id]
        assert run.data.metrics["input_tokens"] == record.input_tokens
        assert run.info.status == "FINISHED"
    assert tracer.health.dropped == {}


def test_queue_full_drops_are_counted(make_tracer, tmp_path):
    tracer = make_tracer(tracking_uri="http://127.0.0.1:9", queue_size=3)  # port 9: nobody listens
    for _ in range(5):
        run_article_writer(tracer)
    dropped = tracer.health.dropped.get(("mlflow", "queue_full"), 0)
    # 5 workflows x 11 records, at most 3 queued plus 1 being retried by the writer,
    # plus the ends of the runs whose start was queued (a workflow and a node).
    assert 55 - 4 - 2 <= dropped <= 55 - 3
    tracer.shutdown(timeout=0.5)


def test_telemetry_is_off_unless_the_user_chose(tmp_path):
    script = (
        "import os, tiertrace\n"
        "t = tiertrace.configure({'observability': {'mlflow': {'tracking_uri': 'sqlite:///%s/t.db'}}}, set_default=False)\n"
        "t.flush(timeout=60)\n"
        "import mlflow.telemetry as tm\n"
        "print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), tm.get_telemetry_client() is None)\n"
        "t.shutdown()\n" % tmp_path
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI",
                                                              "PYTEST_CURRENT_TEST")}
    env["TIERTRACE_LOAD_PLUGINS"] = "mlflow"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["true", "True"], out.stderr[-2000:]
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"  # the user enabled it: keep their choice
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[0] == "false", out.stderr[-2000:]


def test_loading_the_plugin_does_not_import_mlflow_starting_it_does(tmp_path):
    script = ("import sys, tiertrace, tiertrace_mlflow\n"
              "from tiertrace.plugins import discover\n"
              "discover()\n"
              "print('mlflow' in sys.modules)\n"
              "t = tiertrace.configure({'observability': {'mlflow': {'traces': True}}}, set_default=False)\n"
              "# imported before the writer thread runs: never raced by the application's imports\n"
              "print(all(m in sys.modules for m in ('mlflow', 'mlflow.store.tracking.sqlalchemy_store',\n"
              "                                     'mlflow.tracing.client')))\n"
              "t.shutdown(timeout=0.5)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TIERTRACE_LOAD_PLUGINS": "mlflow"}, cwd=tmp_path)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_runs_still_open_at_shutdown_end_as_killed(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri, flush_timeout=60)
    workflow = tracer.workflow("interrupted")
    node = tracer.node("midway")
    workflow.__enter__()
    node.__enter__()
    try:
        assert tracer.shutdown(timeout=60) == []  # the process is ending inside the workflow
    finally:
        node.__exit__(None, None, None)
        workflow.__exit__(None, None, None)
    runs = runs_of(sqlite_uri)
    assert [run.info.status for run in by_kind(runs, "workflow")] == ["KILLED"]
    assert [run.info.status for run in by_kind(runs, "node")] == ["KILLED"]
    assert tracer.health.dropped == {("mlflow", "after_shutdown"): 2}  # the two end records


def test_a_script_that_exits_at_once_leaves_a_usable_store(tmp_path):
    """Creating the SQLite schema takes seconds; a script may end first. The store it
    leaves must open (not half-migrated) and the next run must write into it."""
    script = (
        "import glob, sys, time, tiertrace\n"
        "t = tiertrace.configure({'observability': {'mlflow': {}}}, set_default=False)\n"
        "with t.workflow('quick'):\n"
        "    pass\n"
        "deadline = time.time() + 60\n"
        "while sys.argv[1] != '30' and not glob.glob('mlruns/mlflow.db*') and time.time() < deadline:\n"
        "    time.sleep(0.01)  # leave while the schema is being created\n"
        "t.shutdown(timeout=float(sys.argv[1]))\n"
        "print(sum(t.health.dropped.values()))\n"
    )
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "mlflow"}
    first = subprocess.run([sys.executable, "-c", script, "0.5"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    # Both records written, or both counted as dropped: never silently lost.
    assert first.stdout.split() in (["0"], ["2"]), first.stderr[-3000:]
    names = [p.name for p in (tmp_path / "mlruns").iterdir()]
    assert "mlflow.db" in names and not [n for n in names if ".creating-" in n], names
    second = subprocess.run([sys.executable, "-c", script, "30"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert second.stdout.split() == ["0"], second.stderr[-3000:]
    runs = runs_of(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert [run.info.run_name for run in runs] == ["quick"] * (2 if first.stdout.split() == ["0"] else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_writes_its_own_workflows(make_tracer, sqlite_uri):
    """gunicorn --preload: the tracer is configured in the parent, workflows run in forked workers."""
    tracer = make_tracer(tracking_uri=sqlite_uri)
    run_article_writer(tracer, topic="parent")
    assert tracer.flush(timeout=60) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
        pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            run_article_writer(tracer, topic="child")
            tracer.flush(timeout=60)
            code = 0 if tracer.tier("mlflow").writer.written >= 11 and not tracer.health.dropped else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    run_article_writer(tracer, topic="parent again")  # the parent's writer still works
    assert tracer.flush(timeout=60) == []
    topics = sorted(run.data.params["input.topic"] for run in by_kind(runs_of(sqlite_uri), "workflow"))
    assert topics == ["child", "parent", "parent again"]


def test_flush_waits_for_what_was_queued_before_it_not_for_what_keeps_coming(make_tracer, sqlite_uri):
    tracer = make_tracer(tracking_uri=sqlite_uri)
    run_article_writer(tracer, topic="before")
    stop = threading.Event()

    def busy() -> None:
        while not stop.wait(0.005):
            run_article_writer(tracer, topic="during")

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        assert tracer.tier("mlflow").writer.flush(timeout=60)  # returns although records keep coming
        topics = [run.data.params.get("input.topic") for run in by_kind(runs_of(sqlite_uri), "workflow")]
        assert "before" in topics
    finally:
        stop.set()
        worker.join()


def test_artifact_location_and_a_deleted_experiment(make_tracer, sqlite_uri, tmp_path):
    tracer = make_tracer(tracking_uri=sqlite_uri, experiment_name="placed",
                         artifact_location=str(tmp_path / "elsewhere"))
    run_article_writer(tracer)
    tracer.flush(timeout=60)
    client = client_for(sqlite_uri)
    experiment = client.get_experiment_by_name("placed")
    assert experiment.artifact_location.endswith("/elsewhere")
    assert list((tmp_path / "elsewhere").rglob("records.json"))

    client.delete_experiment(experiment.experiment_id)  # a deleted experiment still owns its name
    again = make_tracer(tracking_uri=sqlite_uri, experiment_name="placed")
    run_article_writer(again)
    again.flush(timeout=60)
    assert client.get_experiment_by_name("placed").lifecycle_stage == "active"
    assert len(by_kind(runs_of(sqlite_uri, "placed"), "workflow")) == 2
    assert again.health.dropped == {}


def test_a_workflow_joining_a_remote_trace_is_still_a_top_level_run(make_tracer, sqlite_uri):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tracer = make_tracer(tracking_uri=sqlite_uri, traces=True)
    with tracer.workflow("joined", traceparent=f"00-{trace_id}-{parent}-01"):
        with tracer.llm_call("gpt-4o-mini") as call:
            call.record(input_tokens=3, output_tokens=4)
    tracer.flush(timeout=60)
    (run,) = by_kind(runs_of(sqlite_uri), "workflow")
    assert run.data.tags["tiertrace.trace_id"] == trace_id
    assert run.data.tags["tiertrace.parent_span_id"] == parent
    trace = client_for(sqlite_uri).get_trace("tr-" + trace_id)
    assert [span.name for span in trace.data.spans if span.parent_id is None] == ["joined"]
