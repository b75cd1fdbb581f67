"""Faults beyond a raising hook: tiers that cannot load, hooks that hang, backends
that are down, hang, or go away and come back, and SIGTERM in the middle of a run.

What tiertrace does in each case is documented in docs/operations.md; these
tests hold it to that page.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import tiertrace
from tiertrace.plugins import TierFailedWarning, TierLoadError

from systemkit import TIERS, MlflowServer, OtlpReceiver, Prometheus, Pushgateway, samples, total, wait_until
from system_workloads import FULL_WORKFLOW_SPANS, check_metrics, check_mlflow, check_otlp, full_workflow

pytestmark = pytest.mark.slow

#: Records the MLflow tier queues for one full_workflow: workflow and node starts and
#: ends, LLM and tool call ends, the retry, the validation failure, the optimization.
MLFLOW_RECORDS_PER_WORKFLOW = 12


# --- tiers that cannot be imported or started ---------------------------------------------------


def fake_distribution(site: Path) -> None:
    """An installed distribution with two tiers: one fails to import, one fails to start."""
    (site / "brokentiers-0.1.dist-info").mkdir(parents=True)
    (site / "brokentiers-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brokentiers\nVersion: 0.1\n")
    (site / "brokentiers-0.1.dist-info" / "entry_points.txt").write_text(
        "[tiertrace.tiers]\nbroken_import = brokentiers_import:Tier\nbroken_start = brokentiers_start:Tier\n")
    (site / "brokentiers_import.py").write_text("raise ImportError('a dependency of this tier is missing')\n")
    (site / "brokentiers_start.py").write_text(
        "import tiertrace\n"
        "class Tier:\n"
        "    def __init__(self):\n"
        "        raise ConnectionError('backend refused the tier at start')\n"
        "    @tiertrace.hookimpl\n"
        "    def on_workflow_end(self, workflow):\n"
        "        pass\n")


def test_tiers_that_fail_to_import_or_start_are_reported_and_the_others_run(stack, otlp_receiver, monkeypatch,
                                                                            tmp_path):
    fake_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", TIERS + ",broken_import,broken_start")
    with pytest.warns(TierFailedWarning) as reported:
        s = stack(otlp=otlp_receiver, local_store=True)
    messages = " ".join(str(w.message) for w in reported)
    assert "broken_import" in messages and "a dependency of this tier is missing" in messages
    assert "broken_start" in messages and "backend refused the tier at start" in messages
    states = {t.name: (t.state, t.reason) for t in s.tracer.tiers}
    assert states["broken_import"][0] == "failed" and states["broken_import"][1].startswith("import failed")
    assert states["broken_start"][0] == "failed" and states["broken_start"][1].startswith("start failed")

    result, wf = full_workflow(s.tracer)
    assert result == "article about x"
    check_metrics(s.metrics(), wf)
    assert s.tracer.shutdown(timeout=20) == []
    check_mlflow(s, wf)
    check_otlp(otlp_receiver, wf)

    # Strict mode turns the same failure into an error, before any tier starts.
    with pytest.raises(TierLoadError, match="broken_import"):
        tiertrace.configure({"observability": {}}, strict=True, set_default=False)
    # A start failure in strict mode: the tiers that did start are stopped before the error.
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", TIERS + ",broken_start")
    before = set(threading.enumerate())
    with pytest.raises(TierLoadError, match="broken_start"):
        tiertrace.configure({"observability": {
            "mlflow": {"tracking_uri": str(tmp_path / "strict")},
            "opentelemetry": {"exporter": "none", "set_global_provider": False},
            "prometheus": {"port": 0}}}, strict=True, set_default=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("tiertrace")]
        if not left:
            break
        time.sleep(0.1)
    assert left == []


def test_a_shipped_tier_that_fails_to_start_is_reported_and_the_others_run(monkeypatch, stack, otlp_receiver,
                                                                          tmp_path):
    # prometheus_client reads PROMETHEUS_MULTIPROC_DIR once: a different directory in the
    # config cannot work, and the Prometheus tier refuses to start.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "from-env"))
    with pytest.warns(TierFailedWarning, match="prometheus"):
        tracer = tiertrace.configure({"observability": {
            "prometheus": {"multiprocess_dir": str(tmp_path / "from-config"), "start_server": False},
            "opentelemetry": {"exporter": "otlp", "endpoint": otlp_receiver.url, "set_global_provider": False},
            "mlflow": {"tracking_uri": str(tmp_path / "mlruns")},
        }}, set_default=False)
    try:
        assert tracer.tier("prometheus") is None
        assert {t.name: t.state for t in tracer.tiers}["prometheus"] == "failed"
        result, wf = full_workflow(tracer)
        assert result == "article about x"
    finally:
        assert tracer.shutdown(timeout=20) == []
    check_otlp(otlp_receiver, wf)
    assert tracer.health.total_dropped() == 0 and tracer.health.total_plugin_errors() == 0


# --- hooks that hang -------------------------------------------------------------------------------


class Hanging:
    """An in-process plugin whose hooks block until released."""

    def __init__(self, hooks: set[str], block_s: float = 60.0):
        self.release = threading.Event()
        self.hooks, self.block_s = hooks, block_s

    def _block(self, hook: str) -> None:
        if hook in self.hooks:
            self.release.wait(self.block_s)

    @tiertrace.hookimpl
    def on_llm_call_end(self, call):
        self._block("on_llm_call_end")

    @tiertrace.hookimpl
    def on_flush(self, timeout):
        self._block("on_flush")

    @tiertrace.hookimpl
    def on_shutdown(self, timeout):
        self._block("on_shutdown")


def test_a_hanging_flush_or_shutdown_is_cut_off_at_the_timeout(stack, otlp_receiver):
    s = stack(otlp=otlp_receiver, local_store=True)
    hanging = Hanging({"on_flush", "on_shutdown"})
    s.tracer.register(hanging, name="hanging")
    try:
        result, wf = full_workflow(s.tracer)
        assert result == "article about x"
        started = time.monotonic()
        assert s.tracer.flush(timeout=1.5) == ["hanging"]
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="hanging"):
            late = s.tracer.shutdown(timeout=4)
        elapsed = time.monotonic() - started
        assert late == ["hanging"]
        assert 3.9 < elapsed < 5.5, elapsed  # waited for the plugin until the timeout, no longer
    finally:
        hanging.release.set()
    # The shipped tiers shut down in parallel with the hanging plugin and delivered everything.
    check_mlflow(s, wf)
    check_otlp(otlp_receiver, wf)
    assert s.tracer.health.total_dropped() == 0


def test_a_record_hook_that_blocks_holds_up_its_workflow_thread(stack, otlp_receiver):
    """Record hooks run inline on the workflow's thread and are not time-limited (a
    thread per hook call would cost more than the hooks): a blocking hook delays the
    workflow by exactly as long as it blocks. The shipped tiers never block."""
    s = stack(otlp=otlp_receiver, local_store=True)
    hanging = Hanging({"on_llm_call_end"}, block_s=0.4)
    s.tracer.register(hanging, name="slow")
    started = time.monotonic()
    result, wf = full_workflow(s.tracer)
    assert result == "article about x"
    assert time.monotonic() - started >= 0.8  # two LLM calls, 0.4 s each
    assert s.tracer.shutdown(timeout=20) == []
    check_mlflow(s, wf)
    check_otlp(otlp_receiver, wf)


# --- backends that hang, are down, or come back ---------------------------------------------------


class BlackHole:
    """A TCP port that accepts connections and never answers (a hung backend)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_hung_backends_cost_the_workflow_nothing_and_every_loss_is_counted(stack):
    hole = BlackHole()
    try:
        s = stack(otlp=None, local_store=True,
                  mlflow={"tracking_uri": hole.url, "flush_timeout": 2.0},
                  opentelemetry={"exporter": "otlp", "endpoint": hole.url, "timeout": 1.0, "flush_timeout": 2.0},
                  prometheus={"pushgateway_url": hole.url, "push_timeout": 1.0})
        runs = 20
        started = time.monotonic()
        for _ in range(runs):
            assert full_workflow(s.tracer)[0] == "article about x"
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"{runs} workflows took {elapsed:.2f} s with every backend hung"
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            late = s.tracer.shutdown(timeout=4)
        assert time.monotonic() - started < 5.0
        assert late == []
        health = s.tracer.health
        # Nothing was delivered, and every record is counted as dropped.
        assert health.total_dropped("mlflow") == runs * MLFLOW_RECORDS_PER_WORKFLOW, health.dropped
        assert health.total_dropped("opentelemetry") == runs * FULL_WORKFLOW_SPANS, health.dropped
        # The push at shutdown timed out: reported as an error of the Prometheus tier's shutdown.
        assert health.plugin_errors.get(("prometheus", "on_shutdown")) == 1, health.plugin_errors
        check_metrics_runs = total(samples(s.tier("prometheus").text()), "workflow_runs_total")
        assert check_metrics_runs == runs  # metrics are in memory: nothing lost
    finally:
        hole.close()


def test_mlflow_down_from_the_start_then_up_then_restarted_mid_run_loses_nothing(stack, otlp_receiver,
                                                                                store_template, tmp_path):
    server = MlflowServer(tmp_path / "late_mlflow", store_template)  # its port, not started yet
    try:
        s = stack(otlp=otlp_receiver, mlflow_server_=server)
        writer = s.tier("mlflow").writer
        # Down from the start: the workflow runs, the records wait in the queue.
        first = [full_workflow(s.tracer)[1] for _ in range(2)]
        wait_until(lambda: writer.outage_started is not None, 10, "the writer to notice the outage")
        server.start()
        assert s.tracer.flush(timeout=60) == []
        for wf in first:
            check_mlflow(s, wf, optimization=False)

        # Stopped mid-run, restarted: what was queued meanwhile arrives after the restart.
        server.stop()
        started = time.monotonic()
        during = [full_workflow(s.tracer)[1] for _ in range(3)]
        assert time.monotonic() - started < 1.0  # the workflow does not wait for the backend
        assert writer.pending > 0
        server.start()
        assert s.tracer.flush(timeout=60) == []
        assert s.tracer.shutdown(timeout=20) == []
        assert s.tracer.health.total_dropped() == 0, s.tracer.health.dropped
        for wf in first + during:
            check_mlflow(s, wf, optimization=False)
            check_otlp(otlp_receiver, wf)
        assert len(s.runs("tags.`tiertrace.kind` = 'optimization'")) == 5
    finally:
        server.kill()


def test_mlflow_down_for_good_shutdown_keeps_its_timeout_and_counts_the_queue(stack, otlp_receiver, tmp_path,
                                                                           store_template):
    server = MlflowServer(tmp_path / "never_started", store_template)
    s = stack(otlp=otlp_receiver, mlflow_server_=server, mlflow={"flush_timeout": 2.0})
    workflows = [full_workflow(s.tracer)[1] for _ in range(4)]
    started = time.monotonic()
    assert s.tracer.shutdown(timeout=3) == []
    assert time.monotonic() - started < 3.5
    assert s.tracer.health.dropped == {("mlflow", "shutdown"): 4 * MLFLOW_RECORDS_PER_WORKFLOW}
    for wf in workflows:  # the other tiers did not notice
        check_otlp(otlp_receiver, wf)


def test_otlp_backend_down_from_the_start_then_back_then_restarted_mid_run(stack):
    receiver = OtlpReceiver()  # port chosen, not listening yet
    # timeout 3 s: room for one retry (the exporter backs off about 1 s), not for two (about 2 s more)
    s = stack(otlp=receiver, local_store=True, opentelemetry={"timeout": 3.0, "flush_timeout": 5.0})
    try:
        lost = full_workflow(s.tracer)[1]
        assert s.tracer.flush(timeout=5) == []  # the export fails within the exporter's timeout
        assert s.tracer.health.dropped == {("opentelemetry", "export_failed"): FULL_WORKFLOW_SPANS}

        # Back within the exporter's retry window: the batch in flight is delivered.
        retried = full_workflow(s.tracer)[1]
        time.sleep(0.4)  # the first attempt is refused; the exporter backs off about 1 s
        receiver.start()
        assert s.tracer.flush(timeout=10) == []
        after = full_workflow(s.tracer)[1]
        assert s.tracer.flush(timeout=10) == []
        check_otlp(receiver, after)

        # Stopped mid-run and restarted on the same port within the retry window.
        receiver.stop()
        during = full_workflow(s.tracer)[1]
        time.sleep(0.4)
        receiver.start()
        assert s.tracer.shutdown(timeout=20) == []
        check_otlp(receiver, retried)
        check_otlp(receiver, during)
        assert receiver.of_trace(lost.trace_id) == []
        # Every span is accounted for: delivered or counted as dropped.
        delivered = len(receiver.all_spans())
        assert delivered + s.tracer.health.total_dropped("opentelemetry") == 4 * FULL_WORKFLOW_SPANS
        assert s.tracer.health.dropped == {("opentelemetry", "export_failed"): FULL_WORKFLOW_SPANS}
        for wf in (lost, retried, after, during):
            check_mlflow(s, wf, optimization=False)
    finally:
        receiver.stop()


def test_prometheus_and_pushgateway_restarted_mid_run_see_exact_counts(stack, metrics_port, tmp_path):
    pushgateway = Pushgateway(tmp_path / "pushgateway").start()
    prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{metrics_port}"],
                            f"127.0.0.1:{pushgateway.port}").start()
    try:
        s = stack(otlp=None, local_store=True, serve=True, push=pushgateway)
        query = 'sum(workflow_runs_total{job="tiertrace",workflow="fault_matrix"})'
        full_workflow(s.tracer)
        prometheus.wait_value(query, 1)
        prometheus.kill()
        pushgateway.kill()
        for _ in range(4):
            full_workflow(s.tracer)
        prometheus.start()  # same port, same data folder
        pushgateway.start()
        prometheus.wait_value(query, 5)  # counters are cumulative: nothing missed while it was down
        assert s.tracer.shutdown(timeout=20) == []
        assert s.tracer.health.total_plugin_errors() == 0
        assert total(pushgateway.group(s.job), "workflow_runs_total", workflow="fault_matrix") == 5
    finally:
        prometheus.kill()
        pushgateway.kill()


def test_pushgateway_down_shutdown_stays_bounded_and_reports_it(stack, tmp_path):
    pushgateway = Pushgateway(tmp_path / "pg")  # never started: connection refused
    s = stack(otlp=None, local_store=True, push=pushgateway, prometheus={"push_timeout": 1.0})
    full_workflow(s.tracer)
    started = time.monotonic()
    with pytest.warns(Warning, match="prometheus"):
        assert s.tracer.shutdown(timeout=5) == []
    assert time.monotonic() - started < 5
    assert s.tracer.health.plugin_errors == {("prometheus", "on_shutdown"): 1}


# --- SIGTERM ------------------------------------------------------------------------------------

CHILD = r"""
import json, sys, time
import tiertrace
from tiertrace.demo import FakeLLM, article_writer
from tiertrace.testing import RecordingPlugin

tracer = tiertrace.configure({"observability": json.loads(sys.argv[1])})
recorder = RecordingPlugin()
tracer.register(recorder, name="recorder")
llm = FakeLLM(latency_scale=0.0)
run = 0
while True:
    article_writer(tracer, llm, f"topic {run}", run=run)
    workflow = recorder.records("on_workflow_end")[-1]
    print(json.dumps({"trace_id": workflow.trace_id, "cost_usd": workflow.cost_usd}), flush=True)
    recorder.clear()
    run += 1
    time.sleep(0.02)
"""


def test_sigterm_during_a_run_flushes_the_queued_records(mlflow_server, pushgateway, otlp_receiver, tmp_path):
    experiment = f"sigterm-{time.time_ns()}"
    job = f"sigterm-{time.time_ns()}"
    config = {
        "mlflow": {"tracking_uri": mlflow_server.url, "experiment_name": experiment, "flush_timeout": 25.0},
        "opentelemetry": {"exporter": "otlp", "endpoint": otlp_receiver.url, "schedule_delay": 60.0,
                          "set_global_provider": False},
        "prometheus": {"start_server": False, "pushgateway_url": pushgateway.url, "pushgateway_job": job},
        "shutdown_timeout": 30.0,
    }
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": TIERS, "MLFLOW_DISABLE_TELEMETRY": "true"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    finished = []
    try:
        assert child.stdout is not None
        while len(finished) < 10:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            if line.startswith("{"):  # MLflow's client prints "View run ..." lines too
                finished.append(json.loads(line))
        # Every span is still queued (60 s export delay, far below a batch of 512).
        assert otlp_receiver.all_spans() == []
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        rest, errors = child.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    finished += [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert child.returncode == -signal.SIGTERM, errors[-3000:]  # it still dies of SIGTERM
    assert took < 30 + 5, took  # within shutdown_timeout

    client = mlflow_server.client()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    for workflow in finished:
        (run,) = client.search_runs([experiment_id], f"tags.`tiertrace.trace_id` = '{workflow['trace_id']}' "
                                                     "and tags.`tiertrace.kind` = 'workflow'")
        assert run.info.status == "FINISHED"
        assert run.data.metrics["cost_usd"] == pytest.approx(workflow["cost_usd"], rel=1e-12)
        assert len(otlp_receiver.of_trace(workflow["trace_id"])) == 8  # workflow, 2 nodes, 4 LLM calls, 1 tool
    pushed = pushgateway.group(job)
    assert total(pushed, "workflow_runs_total", status="ok") >= len(finished)
