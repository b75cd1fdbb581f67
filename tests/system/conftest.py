"""Session-scoped real backends for the system tests, and a tracer running all three tiers.

Started once per session, on 127.0.0.1 and random ports, stopped by pid:
``mlflow_server`` (tracking server of the MLflow tier and OTLP backend),
``prometheus`` (scrapes the Prometheus tier's endpoint on ``metrics_port``
and the Pushgateway, exemplar storage on, 1 s interval), ``pushgateway``.

``stack(...)`` builds a tracer with the three shipped tiers pointed at those
backends, each test in its own MLflow experiment, OTLP experiment and
Pushgateway job, and shuts it down after the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import tiertrace

from systemkit import (
    TIERS,
    MlflowServer,
    OtlpReceiver,
    Prometheus,
    Pushgateway,
    free_port,
    http_get,
    make_store_template,
    need,
    reset_otel_globals,
    samples,
)


@pytest.fixture(autouse=True)
def only_the_shipped_tiers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The three shipped tiers only, no configuration from the environment, a clean OTel global."""
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", TIERS)
    for name in list(os.environ):
        if name.startswith(("OTEL_", "MLFLOW_TRACKING", "MLFLOW_EXPERIMENT", "PROMETHEUS_MULTIPROC",
                            "prometheus_multiproc")) or name in ("TIERTRACE_CONFIG", "TIERTRACE_STRICT"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    reset_otel_globals()
    yield
    reset_otel_globals()


def _need_mlflow() -> None:
    try:
        import mlflow.server  # noqa: F401
        ok = True
    except Exception:
        ok = False
    need("the mlflow server", ok, "pip install mlflow")


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_mlflow()
    return make_store_template(tmp_path_factory.mktemp("template") / "mlflow.db")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"), store_template).start()
    try:
        server.warm_up()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """The port every test's Prometheus tier serves /metrics on (one tracer at a time)."""
    return free_port()


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    server = Pushgateway(tmp_path_factory.mktemp("pushgateway")).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory, metrics_port: int,
               pushgateway: Pushgateway) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{metrics_port}"],
                        f"127.0.0.1:{pushgateway.port}").start()
    yield server
    server.kill()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


class Stack:
    """A tracer running the three tiers, and where each one writes."""

    def __init__(self, tracer: tiertrace.Tracer, mlflow: Optional[MlflowServer], experiment: str,
                 otlp_experiment: Optional[str], job: Optional[str], metrics_url: Optional[str]):
        self.tracer = tracer
        self.mlflow = mlflow
        self.experiment = experiment
        self.otlp_experiment = otlp_experiment
        self.job = job
        self.metrics_url = metrics_url

    def tier(self, name: str) -> Any:
        return self.tracer.tier(name)

    @property
    def tracking_uri(self) -> str:
        return self.tier("mlflow").destination.tracking_uri

    def runs(self, query: str = "") -> list[Any]:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return []
        return list(client.search_runs([experiment.experiment_id], query, max_results=5000))

    def workflow_run(self, trace_id: str) -> Any:
        (run,) = self.runs(f"tags.`tiertrace.trace_id` = '{trace_id}' and tags.`tiertrace.kind` = 'workflow'")
        return run

    def metrics_text(self) -> str:
        """The Prometheus tier's /metrics, over HTTP (or its registry when it serves none)."""
        if self.metrics_url:
            status, body = http_get(self.metrics_url)
            assert status == 200, status
            return body.decode()
        return self.tier("prometheus").text()

    def metrics(self) -> dict[Any, float]:
        return samples(self.metrics_text())


@pytest.fixture
def stack(metrics_port: int, store_template: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Stack]]:
    """``stack(otlp=..., sampling_rate=..., mlflow={...}, opentelemetry={...}, prometheus={...}, **core)``.

    ``otlp``: ``"mlflow"`` (the server's /v1/traces, default), an :class:`OtlpReceiver`,
    or None (exporter ``none``). ``serve=True`` serves /metrics on ``metrics_port``.
    ``push``: a :class:`Pushgateway` to push to at shutdown. ``local_store=True``: the MLflow
    tier writes a SQLite store of its own (a copy of the session's empty one) instead of
    the server: the fault matrix runs dozens of tracers and the server is the slow part.
    """
    made: list[tiertrace.Tracer] = []
    name = request.node.name.replace("[", "-").replace("]", "")[:60]

    def make(otlp: Any = "mlflow", sampling_rate: float = 1.0, serve: bool = False, push: Any = None,
             mlflow: Optional[dict[str, Any]] = None, opentelemetry: Optional[dict[str, Any]] = None,
             prometheus: Optional[dict[str, Any]] = None, mlflow_server_: Optional[MlflowServer] = None,
             local_store: bool = False, **core: Any) -> Stack:
        server = mlflow_server_ or (None if local_store else request.getfixturevalue("mlflow_server"))
        tracking_uri = server.url if server is not None else ""
        if local_store:
            store = tmp_path / f"store-{len(made)}" / "mlflow.db"
            store.parent.mkdir(parents=True)
            shutil.copyfile(store_template, store)
            tracking_uri = f"sqlite:///{store}"
        experiment = f"{name}-{time.time_ns()}"
        otel: dict[str, Any] = {"sampling_rate": sampling_rate, "set_global_provider": False,
                                "schedule_delay": 0.2, "timeout": 10.0, "flush_timeout": 15.0}
        otlp_experiment = None
        if otlp == "mlflow":
            assert server is not None, "the OTLP backend is the mlflow server"
            otlp_experiment = server.new_experiment(f"otlp-{name}")
            otel.update(exporter="otlp", endpoint=server.url, headers={"x-mlflow-experiment-id": otlp_experiment})
        elif isinstance(otlp, OtlpReceiver):
            otel.update(exporter="otlp", endpoint=otlp.url)
        else:
            otel.update(exporter="none")
        otel.update(opentelemetry or {})
        job = f"{name}-{time.time_ns()}" if push is not None else None
        prom: dict[str, Any] = {"start_server": serve, "port": metrics_port if serve else 0}
        if push is not None:
            prom.update(pushgateway_url=push.url, pushgateway_job=job)
        prom.update(prometheus or {})
        core.setdefault("shutdown_timeout", 20.0)
        config = {
            "mlflow": {"tracking_uri": tracking_uri, "experiment_name": experiment, "flush_timeout": 20.0,
                       **(mlflow or {})},
            "opentelemetry": otel,
            "prometheus": prom,
            **core,
        }
        tracer = tiertrace.configure({"observability": config}, set_default=False)
        made.append(tracer)
        for tier in ("mlflow", "opentelemetry", "prometheus"):
            assert tracer.tier(tier) is not None, [(t.name, t.state, t.reason) for t in tracer.tiers]
        url = tracer.tier("prometheus").url
        return Stack(tracer, server, experiment, otlp_experiment, job, url)

    yield make
    for tracer in made:
        tracer.shutdown(timeout=20)
