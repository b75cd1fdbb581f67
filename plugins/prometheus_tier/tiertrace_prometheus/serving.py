"""Serving metrics: a standalone server, an ASGI app, multiprocess helpers, a Pushgateway push."""

from __future__ import annotations

import asyncio
import glob
import gzip
import os
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# --- what one scrape answers -------------------------------------------------------


def render(registry: Any, accept: str = "", accept_encoding: str = "",
           names: Optional[list[str]] = None) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers of a scrape: OpenMetrics (with exemplars) when the
    scraper asks for it, else the classic text format; gzip when accepted."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    if names:
        registry = registry.restricted_registry(names)
    body = encoder(registry)
    headers = [("Content-Type", content_type)]
    if "gzip" in accept_encoding:
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return body, headers


# --- the standalone server ------------------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper must not keep the process alive


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


def _server_class(host: str) -> type:
    """An IPv6 host needs an IPv6 socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return type("MetricsServer", (_ThreadingWSGIServer,), {"address_family": family})


def wsgi_app(registry: Any = None, path: Optional[str] = None) -> Callable[..., Any]:
    """The metrics as a WSGI app (Flask, Django, gunicorn sync workers).

    ``path`` None answers every path (for mounting under a route); else only
    ``path`` and ``path/``, 404 elsewhere. ``registry`` None means the running
    tier's registry, looked up per request (503 before ``tiertrace.configure()``).
    """
    paths = {path.rstrip("/") or "/", path.rstrip("/") + "/"} if path else None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if paths is not None and (environ.get("PATH_INFO") or "/") not in paths:
            start_response("404 Not Found", text)
            return [f"tiertrace metrics are at {path}\n".encode()]
        current = registry if registry is not None else _default_registry()
        if current is None:
            start_response("503 Service Unavailable", text)
            return [b"the tiertrace prometheus tier is not running (call tiertrace.configure())\n"]
        params = parse_qs(environ.get("QUERY_STRING", ""))
        body, headers = render(current, environ.get("HTTP_ACCEPT", ""),
                               environ.get("HTTP_ACCEPT_ENCODING", ""), params.get("name[]"))
        start_response("200 OK", headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    return app


class MetricsServer:
    """``host:port/path`` in a daemon thread. ``port=0`` picks a free port."""

    def __init__(self, registry: Any, host: str = "127.0.0.1", port: int = 9464, path: str = "/metrics"):
        self.path = path
        app = wsgi_app(registry, path)
        self._httpd = make_server(host, port, app, server_class=_server_class(host), handler_class=_QuietHandler)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="tiertrace-prometheus-server",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --- ASGI ------------------------------------------------------------------------------


def _default_registry() -> Any:
    """The registry of the running tier on the default tracer, or the multiprocess files."""
    import tiertrace

    tier = tiertrace.get_tracer().tier("prometheus")
    if tier is not None:
        return tier.registry
    if os.environ.get(MULTIPROC_ENV):
        return multiprocess_registry()
    return None


class MetricsApp:
    """An ASGI app serving the metrics, usable three ways:

    * ``app.add_route("/metrics", asgi_app())`` in Starlette/FastAPI: an exact
      route, so ``/metrics`` answers 200 directly. (``app.mount("/metrics", ...)``
      only matches ``/metrics/...`` and Starlette redirects ``/metrics`` to
      ``/metrics/`` with a 307: prometheus/client_python#1016.)
    * ``app.add_middleware(MetricsMiddleware)``: answers ``path`` before
      routing, in front of any ASGI framework.
    * on its own: ``uvicorn tiertrace_prometheus:asgi_app --factory``.

    ``registry`` None means the running tier's registry (looked up per
    request, so the app can be built before ``tiertrace.configure()``).
    """

    def __init__(self, registry: Any = None, app: Any = None, path: Optional[str] = None):
        self.registry = registry
        self.app = app
        self.path = path
        self._paths = {path.rstrip("/") or "/", path.rstrip("/") + "/"} if path else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self._paths is None or scope.get("path") in self._paths):
            await self._serve(scope, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await _respond(send, 404, [("Content-Type", "text/plain; charset=utf-8")], b"not found\n")

    async def _serve(self, scope: Scope, send: Send) -> None:
        registry = self.registry if self.registry is not None else _default_registry()
        if registry is None:
            await _respond(send, 503, [("Content-Type", "text/plain; charset=utf-8")],
                           b"the tiertrace prometheus tier is not running (call tiertrace.configure())\n")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        # Rendering is CPU work proportional to the number of series: keep it off the event loop.
        body, out_headers = await asyncio.to_thread(render, registry, headers.get("accept", ""),
                                                    headers.get("accept-encoding", ""), params.get("name[]"))
        await _respond(send, 200, out_headers, b"" if scope.get("method") == "HEAD" else body)


class MetricsMiddleware(MetricsApp):
    """ASGI middleware answering ``path`` (default ``/metrics``) and passing everything else on.

    ``app.add_middleware(MetricsMiddleware)`` in FastAPI/Starlette, or
    ``app = MetricsMiddleware(app)`` around any ASGI app.
    """

    def __init__(self, app: Any, path: str = "/metrics", registry: Any = None):
        super().__init__(registry=registry, app=app, path=path)


def asgi_app(registry: Any = None) -> MetricsApp:
    """The metrics as an ASGI app; see :class:`MetricsApp` for how to mount it."""
    return MetricsApp(registry)


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- multiprocess mode ------------------------------------------------------------------


def multiprocess_dir(path: Optional[str] = None) -> str:
    path = path or os.environ.get(MULTIPROC_ENV) or os.environ.get("prometheus_multiproc_dir")
    if not path:
        raise ValueError(f"no multiprocess directory: pass one or set {MULTIPROC_ENV}")
    return path


def prepare_multiprocess_dir(path: Optional[str] = None) -> str:
    """Create the directory and delete every ``*.db`` file in it.

    Call it once in the parent, before workers start (gunicorn's
    ``on_starting`` hook, or ``tiertrace prometheus multiproc-reset`` in the
    container's entrypoint): files left by a previous run would otherwise be
    added to this run's counters.
    """
    path = multiprocess_dir(path)
    os.makedirs(path, exist_ok=True)
    for file in glob.glob(os.path.join(path, "*.db")):
        os.remove(file)
    return path


def mark_process_dead(pid: int, path: Optional[str] = None) -> None:
    """A worker exited: drop its live gauges (``active_workflows``).

    For gunicorn: ``def child_exit(server, worker): mark_process_dead(worker.pid)``.
    """
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiprocess_dir(path))


def multiprocess_registry(path: Optional[str] = None) -> Any:
    """A registry that sums the metric files of every process in the directory."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir(path))
    return registry


def start_multiprocess_server(port: int = 9464, host: str = "127.0.0.1", path: str = "/metrics",
                              directory: Optional[str] = None) -> MetricsServer:
    """Serve the summed metrics of all workers from one process (the gunicorn master's
    ``when_ready`` hook, or a sidecar), instead of from a worker."""
    return MetricsServer(multiprocess_registry(directory), host=host, port=port, path=path)


# --- Pushgateway -----------------------------------------------------------------------


def push(registry: Any, url: str, job: str, grouping_key: Optional[dict[str, str]] = None,
         timeout: float = 5.0) -> None:
    """Replace this job's group on the Pushgateway with the registry's metrics (HTTP PUT)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(url, job=job, registry=registry, grouping_key=grouping_key or None, timeout=timeout)
