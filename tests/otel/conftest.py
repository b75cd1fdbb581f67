"""Fixtures for the OpenTelemetry tier's tests.

- ``otel_tracer(**config)``: a tracer with only this tier, exporting to an
  in-memory exporter (``exporter: none`` plus a SimpleSpanProcessor on the
  tier's provider); the OTel global provider is reset around each test.
- ``mlflow_server``: a real ``mlflow server`` on 127.0.0.1 (sqlite store),
  started once per session, whose ``/v1/traces`` ingests OTLP/HTTP.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import tiertrace

from otel_helpers import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"


def reset_otel_globals() -> None:
    """Forget the global TracerProvider (OpenTelemetry allows setting it once per process)."""
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(autouse=True)
def _only_this_tier(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", "opentelemetry")
    for name in list(os.environ):
        if name.startswith(("OTEL_", "HONEYCOMB_")):
            monkeypatch.delenv(name)
    reset_otel_globals()
    yield
    reset_otel_globals()


@pytest.fixture
def otel_tracer() -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``tracer, memory = otel_tracer(sampling_rate=0.5, ...)``."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    made: list[Any] = []

    def make(**config: Any) -> tuple[Any, Any]:
        config.setdefault("exporter", "none")
        tracer = tiertrace.configure({"observability": {"opentelemetry": config}}, set_default=False)
        made.append(tracer)
        tier = tracer.tier("opentelemetry")
        assert tier is not None, tracer.tiers
        memory = InMemorySpanExporter()
        tier.provider.add_span_processor(SimpleSpanProcessor(memory))
        return tracer, memory

    yield make
    for tracer in made:
        tracer.shutdown(timeout=5)


# --- a real OTLP backend: mlflow server ---------------------------------------------------


class MlflowServer:
    def __init__(self, url: str, process: subprocess.Popen, workdir: Path):
        self.url = url
        self.process = process
        self.workdir = workdir

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.url)

    def new_experiment(self, name: str) -> str:
        return self.client().create_experiment(f"{name}-{time.time_ns()}")

    def otel_config(self, experiment_id: str, **extra: Any) -> dict[str, Any]:
        return {"exporter": "otlp", "endpoint": self.url, "headers": {"x-mlflow-experiment-id": experiment_id},
                "timeout": 15.0, "flush_timeout": 20.0, "set_global_provider": False, **extra}

    def spans(self, experiment_id: str, trace_id: str, expected: int, timeout: float = 20.0) -> list[Any]:
        """The spans MLflow stored for our trace id (waits until ``expected`` arrived)."""
        client = self.client()
        deadline = time.monotonic() + timeout
        spans: list[Any] = []
        while time.monotonic() < deadline:
            try:
                trace = client.get_trace(f"tr-{trace_id}")
                spans = list(trace.data.spans)
            except Exception:
                spans = []
            if len(spans) >= expected:
                return spans
            time.sleep(0.3)
        return spans


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow_bin is None:
        if IN_CI:
            pytest.fail("the mlflow command is missing (pip install mlflow)")
        pytest.skip("the mlflow command is missing (pip install mlflow)")
    workdir = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_ENABLE_TELEMETRY": "false",
           "DO_NOT_TRACK": "true"}
    log = open(workdir / "server.log", "wb")
    process = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--default-artifact-root", str(workdir / "artifacts")],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    server = MlflowServer(url, process, workdir)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not become ready in 90 s")
            time.sleep(0.3)
        _warm_up(server)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _warm_up(server: MlflowServer) -> None:
    """The first OTLP requests make the server import its tracing stack and, for a
    chat span, litellm to price it (tens of seconds on a busy machine)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    experiment = server.new_experiment("warm-up")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces", headers={"x-mlflow-experiment-id": experiment}, timeout=120)))
    with provider.get_tracer("warm-up").start_as_current_span("warm-up"):
        with provider.get_tracer("warm-up").start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 3,
                "gen_ai.usage.output_tokens": 4}):
            pass
    provider.shutdown()
