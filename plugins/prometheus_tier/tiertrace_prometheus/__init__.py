"""tiertrace-prometheus: tier 3, Prometheus metrics for LLM agent workflows.

Installing the distribution is enough: ``tiertrace.configure()`` starts the
tier (entry point ``prometheus``) and serves ``http://127.0.0.1:9464/metrics``.
To serve the metrics from your own ASGI app instead::

    app.add_route("/metrics", tiertrace_prometheus.asgi_app())      # Starlette / FastAPI
    app.add_middleware(tiertrace_prometheus.MetricsMiddleware)        # or in front of any route

Importing this package stays cheap: prometheus_client is imported when the
tier starts or a helper is called.
"""

from __future__ import annotations

from typing import Any

from tiertrace_prometheus.config import DEFAULT_PORT, PrometheusConfig
from tiertrace_prometheus.labels import LabelLimiter
from tiertrace_prometheus.metrics import METRICS, exposed_names
from tiertrace_prometheus.tier import PrometheusTier

__version__ = "0.1.0"

__all__ = [
    "PrometheusTier",
    "PrometheusConfig",
    "DEFAULT_PORT",
    "METRICS",
    "exposed_names",
    "LabelLimiter",
    "asgi_app",
    "wsgi_app",
    "MetricsApp",
    "MetricsMiddleware",
    "MetricsServer",
    "prepare_multiprocess_dir",
    "mark_process_dead",
    "multiprocess_registry",
    "start_multiprocess_server",
    "write_stack",
]

_SERVING = {"asgi_app", "wsgi_app", "MetricsApp", "MetricsMiddleware", "MetricsServer", "prepare_multiprocess_dir",
            "mark_process_dead", "multiprocess_registry", "start_multiprocess_server"}


def __getattr__(name: str) -> Any:
    if name in _SERVING:
        from tiertrace_prometheus import serving

        return getattr(serving, name)
    if name == "write_stack":
        from tiertrace_prometheus.stack_files import write_stack

        return write_stack
    raise AttributeError(f"module 'tiertrace_prometheus' has no attribute {name!r}")
