"""Multiprocess mode: two real worker processes, their metrics summed from prometheus_client's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiertrace_prometheus import mark_process_dead, multiprocess_registry, prepare_multiprocess_dir

from prom_helpers import free_port, http_get, samples, value

HERE = Path(__file__).parent


class Worker:
    def __init__(self, name: str, runs: int, port: int, directory: Path):
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory), TIERTRACE_LOAD_PLUGINS="prometheus",
                   PYTHONPATH=str(HERE))
        self.process = subprocess.Popen([sys.executable, str(HERE / "mp_worker.py"), name, str(runs), str(port)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        line = self.process.stdout.readline()
        assert line.startswith("ready"), f"worker {name} failed: {line}{self.process.stderr.read()}"
        self.pid = int(line.split()[1])

    def finish(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self.process.wait(20)
        assert self.process.returncode == 0, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def summed(directory: Path) -> dict:
    from tiertrace_prometheus.serving import render

    return samples(render(multiprocess_registry(str(directory)))[0].decode())


def test_two_workers_are_summed_and_dead_workers_leave_the_live_gauge(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    # A previous run left its files: the parent wipes them before workers start.
    stale = Worker("stale", 5, 0, directory)
    stale.finish("clean")
    assert value(summed(directory), "workflow_runs_total", workflow="article_writer", status="ok") == 5
    prepare_multiprocess_dir(str(directory))
    assert not list(directory.glob("*.db"))

    port = free_port()
    a = Worker("a", 3, port, directory)          # serves /metrics for everyone
    b = Worker("b", 4, 0, directory)             # no server; its first run fails; a plugin raises
    try:
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        for found in (samples(body.decode()), summed(directory)):
            assert value(found, "workflow_runs_total", workflow="article_writer", status="ok") == 6
            assert value(found, "workflow_runs_total", workflow="article_writer", status="error") == 1
            assert value(found, "llm_tokens_total", model="gemini-1.5-flash", type="input") == 7 * 1812
            assert value(found, "workflow_duration_seconds_count", workflow="article_writer") == 7
            assert value(found, "active_workflows") == 2      # one open run in each worker
            # tiertrace health of worker b, mirrored into its files: 2 nodes x 4 runs.
            assert value(found, "tiertrace_plugin_errors_total", plugin="broken", hook="on_node_end") == 8

        # b dies without cleaning up (a killed worker): gunicorn's child_exit calls mark_process_dead.
        b.finish("die")
        assert value(summed(directory), "active_workflows") == 2   # its live gauge file is still there
        mark_process_dead(b.pid, str(directory))
        found = summed(directory)
        assert value(found, "active_workflows") == 1
        assert value(found, "workflow_runs_total", workflow="article_writer", status="ok") == 6  # counters stay

        # a shuts down cleanly: its open run ends, and it marks itself dead.
        a.finish("clean")
        found = summed(directory)
        assert value(found, "active_workflows") is None  # no live process left: no live gauge at all
        assert value(found, "workflow_runs_total", workflow="long_running", status="ok") == 1
    finally:
        a.kill()
        b.kill()


def test_multiprocess_mode_needs_the_environment_before_prometheus_client(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process prometheus_client is already imported without the variable: a clear start failure."""
    import prometheus_client  # noqa: F401
    import tiertrace

    with pytest.warns(UserWarning, match="PROMETHEUS_MULTIPROC_DIR in the environment before"):
        tracer = tiertrace.configure(
            {"observability": {"prometheus": {"multiprocess_dir": str(tmp_path), "start_server": False}}},
            set_default=False)
    try:
        assert tracer.tier("prometheus") is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # no half-done switch
    finally:
        tracer.shutdown(timeout=5)


def test_multiproc_reset_command_empties_the_directory(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not ours")
    run = subprocess.run([sys.executable, "-m", "tiertrace", "prometheus", "multiproc-reset", str(tmp_path)],
                         capture_output=True, text=True, timeout=60,
                         env={"TIERTRACE_LOAD_PLUGINS": "prometheus", "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "counter_123.db").exists() and (tmp_path / "keep.txt").exists()


GUNICORN_APP = '''
import os

import tiertrace
import tiertrace_prometheus

tracer = tiertrace.configure({"observability": {"prometheus": {"start_server": False}}})
metrics = tiertrace_prometheus.wsgi_app()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        return metrics(environ, start_response)
    with tracer.workflow("request_handler"):
        with tracer.llm_call("gpt-4o-mini") as call:
            call.record(input_tokens=10, output_tokens=2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''

# The gunicorn hooks of docs/tiers/prometheus.md.
GUNICORN_CONF = '''
import tiertrace_prometheus

def on_starting(server):
    tiertrace_prometheus.prepare_multiprocess_dir()

def child_exit(server, worker):
    tiertrace_prometheus.mark_process_dead(worker.pid)
'''


def test_gunicorn_with_two_workers(tmp_path: Path) -> None:
    import signal

    from prom_helpers import wait_until

    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_99999.db").write_bytes(b"left over from the last deploy")  # unreadable if not wiped
    (tmp_path / "app.py").write_text(GUNICORN_APP)
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    port = free_port()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory), TIERTRACE_LOAD_PLUGINS="prometheus")
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "app:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(url + "/metrics")[0] == 200, 30, "gunicorn")
        assert not (directory / "counter_99999.db").exists()
        pids: list[int] = []
        while len(set(pids)) < 2:  # until both workers have served runs
            assert len(pids) < 400, f"one worker took every request: {set(pids)}"
            pids.append(int(http_get(url + "/run")[2]))
        for _ in range(4):  # whichever worker answers the scrape, it sums both
            found = samples(http_get(url + "/metrics")[2].decode())
            assert value(found, "workflow_runs_total", workflow="request_handler", status="ok") == len(pids)
            assert value(found, "llm_tokens_total", model="gpt-4o-mini", type="input") == 10 * len(pids)
            assert value(found, "active_workflows") == 0

        # A worker is killed: gunicorn's child_exit drops its live gauge file, its counters stay.
        victim = pids[-1]
        assert (directory / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not (directory / f"gauge_livesum_{victim}.db").exists(), 20, "child_exit")
        wait_until(lambda: http_get(url + "/metrics")[0] == 200, 20, "a replacement worker")
        found = samples(http_get(url + "/metrics")[2].decode())
        assert value(found, "workflow_runs_total", workflow="request_handler", status="ok") == len(pids)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(5)
