"""The real backends of the system tests, and helpers to read them back.

- :class:`MlflowServer`: ``mlflow server`` on 127.0.0.1 (SQLite store, proxied
  artifacts). It is the MLflow tier's tracking server *and* the OTLP backend
  (``/v1/traces`` with the header ``x-mlflow-experiment-id``).
- :class:`OtlpReceiver`: a small OTLP/HTTP endpoint that keeps every request
  body it receives (the exporter's real protobuf payloads), for the security
  and fault tests that must see exactly what left the process, and that can
  be stopped and restarted on the same port.
- :class:`Prometheus` and :class:`Pushgateway`: Debian's binaries.

Every server runs on 127.0.0.1, on a random free port, and is stopped by pid.
A missing binary skips the test outside CI and fails it when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIERS = "mlflow,opentelemetry,prometheus"


def need(what: str, available: bool, install: str) -> None:
    """Skip (fail under CI=true) when a real part is missing."""
    if available:
        return
    message = f"{what} is missing ({install})"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    need(name, path is not None, f"apt-get install {package}")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, headers: Optional[dict[str, str]] = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # not there yet
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Process:
    """A server process in its own process group, stopped by its pid."""

    def __init__(self, argv: list[str], log: Path, env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None):
        self.argv, self.log_path, self.env, self.cwd = argv, log, env, cwd
        self.process: Optional[subprocess.Popen[bytes]] = None

    def spawn(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=self.cwd, start_new_session=True)
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the group our pid leads (mlflow's workers too)
        except ProcessLookupError:
            return
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


# --- mlflow server ---------------------------------------------------------------------------


class MlflowServer(Process):
    """``mlflow server`` with a SQLite store; can be stopped and started again on its port."""

    def __init__(self, folder: Path, template: Optional[Path] = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if template is not None:  # skips creating the schema (seconds) at first start
            shutil.copyfile(template, folder / "server.db")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               # no job runner and huey workers: three fewer processes to start on a 2-core machine
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        super().__init__(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/server.db",
             "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            folder / "server.log", env=env, cwd=folder)

    def healthy(self) -> bool:
        try:
            return http_get(self.url + "/health", timeout=1)[0] == 200
        except OSError:
            return False

    def start(self, timeout: float = 120) -> "MlflowServer":
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.alive():
                raise RuntimeError(f"mlflow server exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mlflow server not healthy after {timeout:g} s:\n{self.tail()}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        self.kill()
        wait_until(lambda: not self.healthy(), 10, "the mlflow server to stop")

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    def new_experiment(self, name: str) -> str:
        return str(self.client().create_experiment(f"{name}-{time.time_ns()}"))

    def runs(self, experiment_name: str, query: str = "") -> list[Any]:
        client = self.client()
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        return list(client.search_runs([experiment.experiment_id], query, max_results=5000))

    def spans(self, trace_id: str) -> list[Any]:
        """The OTLP spans MLflow stored for one trace (none yet: [])."""
        try:
            return list(self.client().get_trace(f"tr-{trace_id}").data.spans)
        except Exception:
            return []

    def wait_spans(self, trace_id: str, expected: int, timeout: float = 60) -> list[Any]:
        return wait_until(lambda: len(spans := self.spans(trace_id)) >= expected and spans, timeout,
                          f"{expected} spans of trace {trace_id} in mlflow")

    def traces_in(self, experiment_id: str) -> list[Any]:
        return list(self.client().search_traces(locations=[experiment_id], max_results=500))

    def warm_up(self) -> None:
        """The first OTLP request makes the server import its tracing stack (seconds)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        experiment = self.new_experiment("warm-up")
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
            endpoint=f"{self.url}/v1/traces", headers={"x-mlflow-experiment-id": experiment}, timeout=120)))
        with provider.get_tracer("warm-up").start_as_current_span("warm-up"):
            with provider.get_tracer("warm-up").start_as_current_span("chat gpt-4o-mini", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 4}):
                pass
        provider.shutdown()


def make_store_template(path: Path) -> Path:
    """A SQLite file with MLflow's schema, made once per session."""
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


# --- an OTLP/HTTP receiver that keeps the payloads ----------------------------------------------


class ReceivedSpan:
    """One span as it arrived over OTLP (ids as lowercase hex)."""

    def __init__(self, span: Any, resource: dict[str, Any]):
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_span_id = span.parent_span_id.hex() or None
        self.name = span.name
        self.attributes = {kv.key: _any_value(kv.value) for kv in span.attributes}
        self.status_code = span.status.code
        self.resource = resource

    def __repr__(self) -> str:
        return f"<ReceivedSpan {self.name!r} {self.span_id} parent={self.parent_span_id}>"


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """``POST /v1/traces`` (protobuf) on 127.0.0.1; keeps raw bodies and decoded spans."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    def start(self) -> "OtlpReceiver":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                spans = []
                for resource_spans in request.resource_spans:
                    resource = {kv.key: _any_value(kv.value) for kv in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        spans += [ReceivedSpan(span, resource) for span in scope_spans.spans]
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.spans.extend(spans)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def all_spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies)


# --- Prometheus and the Pushgateway ------------------------------------------------------------


class Prometheus(Process):
    """Debian's prometheus, scraping fixed targets every ``interval``, exemplar storage on."""

    def __init__(self, folder: Path, targets: list[str], pushgateway: Optional[str], interval: str = "1s"):
        binary = need_binary("prometheus", "prometheus")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = [{"job_name": "tiertrace", "static_configs": [{"targets": targets}]}]
        if pushgateway:
            jobs.append({"job_name": "pushgateway", "honor_labels": True,
                         "static_configs": [{"targets": [pushgateway]}]})
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": jobs}
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        super().__init__(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--enable-feature=exemplar-storage",
             "--log.level=warn"], folder / "prometheus.log")

    def start(self) -> "Prometheus":
        self.spawn()
        try:
            wait_until(lambda: self.alive() and http_get(self.url + "/-/ready")[0] == 200, 60, "prometheus ready")
        except AssertionError:
            self.kill()
            raise AssertionError(f"prometheus did not start:\n{self.tail()}") from None
        return self

    def api(self, path: str, **params: Any) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params))
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", data
        return data["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def scalar(self, expr: str) -> Optional[float]:
        """The value of a query returning one series (None when it returns none)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def exemplar_trace_ids(self, expr: str, start: float, end: float) -> set[str]:
        found = self.api("query_exemplars", query=expr, start=f"{start:.3f}", end=f"{end:.3f}")
        return {e["labels"].get("trace_id") for series in found for e in series["exemplars"]}

    def wait_value(self, expr: str, expected: float, timeout: float = 30, rel: float = 1e-9) -> float:
        """Poll until the query's single value equals ``expected`` (what the next scrapes bring)."""
        def check() -> Optional[float]:
            value = self.scalar(expr)
            return value if value is not None and abs(value - expected) <= rel * max(1.0, abs(expected)) else None
        wait_until(lambda: check() is not None, timeout, f"{expr} == {expected!r} in prometheus "
                                                          f"(now {self.scalar(expr)!r})")
        return expected


class Pushgateway(Process):
    def __init__(self, folder: Path):
        binary = need_binary("prometheus-pushgateway", "prometheus-pushgateway")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([binary, f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                         folder / "pushgateway.log")

    def start(self) -> "Pushgateway":
        self.spawn()
        wait_until(lambda: self.alive() and http_get(self.url + "/-/ready")[0] == 200, 30, "pushgateway ready")
        return self

    def group(self, job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The samples the Pushgateway holds for one job, read from its /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        found = {}
        text = http_get(self.url + "/metrics")[1].decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("job") == job:
                    labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                    found[(sample.name, tuple(sorted(labels.items())))] = sample.value
        return found


# --- reading the prometheus tier's own /metrics -------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in found.items() if n == name and labels.items() <= dict(ls).items())


def reset_otel_globals() -> None:
    """Forget the global TracerProvider (OpenTelemetry lets a process set it once)."""
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
