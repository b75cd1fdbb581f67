"""Serving the metrics: the standalone server and the ASGI app under a real uvicorn."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import urllib.request
from typing import Any, Iterator

import pytest

import tiertrace
from tiertrace_prometheus import MetricsMiddleware, asgi_app

from prom_helpers import free_port, http_get, run_article_writer, samples, value

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_standalone_server_answers_its_path_only(make_tracer) -> None:
    tracer = make_tracer(start_server=True, port=0, path="/custom/metrics")
    tier = tracer.tier("prometheus")
    run_article_writer(tracer)
    base = tier.url.removesuffix("/custom/metrics")
    status, headers, body = http_get(tier.url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert value(samples(body.decode()), "workflow_runs_total", workflow="article_writer", status="ok") == 1
    assert http_get(tier.url + "/")[0] == 200
    assert http_get(base + "/metrics")[0] == 404
    assert http_get(base + "/")[0] == 404
    # OpenMetrics on request (what Prometheus asks for), gzip when accepted, HEAD without a body.
    status, headers, body = http_get(tier.url, {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Content-Encoding"] == "gzip" and b"# EOF" in gzip.decompress(body)
    request = urllib.request.Request(tier.url, method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.read() == b""
    assert tier.describe() == f"Prometheus: metrics at {tier.url}"


def test_standalone_server_listens_on_loopback_by_default(make_tracer) -> None:
    tracer = make_tracer(start_server=True, port=0)
    server = tracer.tier("prometheus").server
    assert server.host == "127.0.0.1"
    assert server._httpd.socket.getsockname()[0] == "127.0.0.1"


def test_a_busy_port_costs_the_endpoint_not_the_metrics(make_tracer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.warns(RuntimeWarning, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            tracer = make_tracer(start_server=True, port=port)
        tier = tracer.tier("prometheus")
        assert tier.server is None and "not served" in tier.describe()
        run_article_writer(tracer)
        assert value(samples(tier.text()), "workflow_runs_total", workflow="article_writer", status="ok") == 1


def test_shutdown_stops_the_server(make_tracer) -> None:
    tracer = make_tracer(start_server=True, port=0)
    url = tracer.tier("prometheus").url
    assert http_get(url)[0] == 200
    tracer.shutdown(timeout=5)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


# --- ASGI under a real uvicorn ------------------------------------------------------------------


class Uvicorn:
    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Uvicorn] = []

    def start(app: Any) -> Uvicorn:
        servers.append(Uvicorn(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def get_no_redirect(url: str, headers: dict[str, str] | None = None) -> Any:
    import httpx

    return httpx.get(url, headers=headers or {}, follow_redirects=False, timeout=5)


def test_plain_mount_redirects_which_is_why_the_tier_offers_a_route(make_tracer, serve) -> None:
    """prometheus/client_python#1016, reproduced: mounting at /metrics answers /metrics with a 307."""
    from prometheus_client import make_asgi_app
    from starlette.applications import Starlette

    tracer = make_tracer()
    app = Starlette()
    app.mount("/metrics", make_asgi_app(tracer.tier("prometheus").registry))
    response = get_no_redirect(serve(app).url + "/metrics")
    assert response.status_code == 307 and response.headers["location"].endswith("/metrics/")


def test_starlette_route_answers_metrics_without_a_redirect(make_tracer, serve) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    tracer = make_tracer()
    run_article_writer(tracer)
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("home"))])
    app.add_route("/metrics", asgi_app(tracer.tier("prometheus").registry))
    server = serve(app)
    response = get_no_redirect(server.url + "/metrics")
    assert response.status_code == 200
    assert value(samples(response.text), "workflow_runs_total", workflow="article_writer", status="ok") == 1
    openmetrics = get_no_redirect(server.url + "/metrics", {"Accept": OPENMETRICS})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert 'trace_id="' in openmetrics.text
    assert get_no_redirect(server.url + "/").text == "home"


def test_fastapi_middleware_answers_metrics_and_passes_the_rest(serve) -> None:
    """No registry given: the app finds the default tracer's tier per request."""
    from fastapi import FastAPI
    from tiertrace import tracer as tracer_module

    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_middleware(MetricsMiddleware)
    server = serve(app)
    previous = tracer_module.get_default_tracer()
    assert get_no_redirect(server.url + "/metrics").status_code == 503  # no tier running yet
    tracer = tiertrace.configure({"observability": {"prometheus": {"start_server": False}}})
    try:
        run_article_writer(tracer)
        response = get_no_redirect(server.url + "/metrics")
        assert response.status_code == 200
        assert value(samples(response.text), "workflow_runs_total", workflow="article_writer", status="ok") == 1
        assert get_no_redirect(server.url + "/metrics/").status_code == 200
        assert get_no_redirect(server.url + "/hello").json() == {"hello": "world"}
        assert get_no_redirect(server.url + "/nothing").status_code == 404
    finally:
        tracer.shutdown(timeout=5)
        tracer_module.set_default_tracer(previous)


def test_asgi_app_runs_on_its_own_under_uvicorn(make_tracer, serve) -> None:
    tracer = make_tracer()
    run_article_writer(tracer)
    server = serve(asgi_app(tracer.tier("prometheus").registry))  # uvicorn runs its lifespan too
    response = get_no_redirect(server.url + "/metrics")
    assert response.status_code == 200 and "workflow_runs_total" in response.text
