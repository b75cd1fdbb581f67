"""Fixtures for the MLflow tier: tracers with only this tier, stores in a
temporary folder, and real ``mlflow server`` processes on 127.0.0.1 (random
port, SQLite backend, proxied artifacts), stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import tiertrace

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVER_START_TIMEOUT_S = 90.0


@pytest.fixture(autouse=True)
def only_the_mlflow_tier(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only this tier loads; the embedded default ./mlruns lands in the test's folder."""
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", "mlflow")
    for name in ("TIERTRACE_CONFIG", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_tracer() -> Iterator[Callable[..., tiertrace.Tracer]]:
    """``make_tracer(**mlflow_section)``: a tracer running only the MLflow tier (shut down after the test)."""
    tracers: list[tiertrace.Tracer] = []

    def make(**section: Any) -> tiertrace.Tracer:
        tracer = tiertrace.configure({"observability": {"mlflow": section}}, set_default=False)
        tracers.append(tracer)
        return tracer

    yield make
    for tracer in tracers:
        tracer.shutdown(timeout=5)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with MLflow's schema, made once: creating the schema takes
    seconds, copying the file does not."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client_for(f"sqlite:///{path}").search_experiments()
    return path


def copy_store(empty_store: Path, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_uri(tmp_path: Path, empty_store: Path) -> str:
    return copy_store(empty_store, tmp_path / "store" / "mlflow.db")


def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str = "tiertrace", query: str = "") -> list[Any]:
    """Every run of an experiment, read back with MlflowClient."""
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment!r} was not created in {uri}"
    return list(client.search_runs([found.experiment_id], query, max_results=5000))


def by_kind(runs: list[Any], kind: str) -> list[Any]:
    return [run for run in runs if run.data.tags.get("tiertrace.kind") == kind]


def run_article_writer(tracer: tiertrace.Tracer, topic: str = "x", team: str = "a", fail: bool = False) -> Any:
    """The workflow of the brief: two nodes, LLM calls, a tool call, a retry, a validation failure."""
    with tracer.workflow("article_writer", inputs={"topic": topic}, tags={"team": team}) as wf:
        with tracer.node("research"):
            with tracer.llm_call("gemini-1.5-flash", prompt=f"research {topic}") as call:
                call.record(response="notes", input_tokens=812, output_tokens=230)
            tracer.retry("timeout")
            tracer.validation_failure(["bad json"], raw_output="{")
            with tracer.tool_call("serper_search", args={"q": topic}) as tool:
                tool.record(result=["hit"])
        with tracer.node("write"):
            with tracer.llm_call("gpt-4o-mini", prompt="write it") as call:
                call.record(response="article", input_tokens=100, output_tokens=50)
            if fail:
                raise RuntimeError("writer crashed")
    return wf.data


# --- real mlflow server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as response:
            return response.status == 200
    except Exception:
        return False


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and proxied artifacts."""

    def __init__(self, folder: Path, empty_store: Optional[Path] = None):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[subprocess.Popen[bytes]] = None
        folder.mkdir(parents=True, exist_ok=True)
        if empty_store is not None:  # skip the schema creation at first start
            copy_store(empty_store, folder / "server.db")

    def start(self) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               # no job runner and its workers: fewer processes to start on a small machine
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
             "--serve-artifacts", "--artifacts-destination", str(self.folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "-w", "1"],
            cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers stop with it
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-3000:]}")
            if healthy(self.url):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {SERVER_START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group led by our pid
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None
        deadline = time.monotonic() + 10
        while healthy(self.url) and time.monotonic() < deadline:
            time.sleep(0.1)


def _need_mlflow_cli() -> None:
    try:
        import mlflow.server  # noqa: F401
    except Exception as exc:  # pragma: no cover - the test extra installs it
        if IN_CI:
            pytest.fail(f"CI=true and the mlflow server cannot be imported: {exc}")
        pytest.skip(f"mlflow server unavailable: {exc}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[MlflowServer]:
    """One server for the whole session (read-back tests)."""
    _need_mlflow_cli()
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"), empty_store).start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path, empty_store: Path) -> Iterator[MlflowServer]:
    """A server this test may stop and restart (same port, same store)."""
    _need_mlflow_cli()
    server = MlflowServer(tmp_path / "own_server", empty_store).start()
    yield server
    server.stop()
