"""``observability.prometheus``: where metrics are served, pushed and how labels are bounded."""

from __future__ import annotations

from typing import Any, Optional

import attrs

from tiertrace.config import env_str, in_range, positive, url
from tiertrace.config import InvalidValue  # the core's validator error: names the key and what is allowed

#: 9464 is the port registered for OpenTelemetry/Prometheus exporters on the
#: Prometheus wiki's default port allocations. The seed's 9090 is the
#: Prometheus server's own port: an app on 9090 collides with the Prometheus
#: that is supposed to scrape it.
DEFAULT_PORT = 9464

#: The seed's workflow buckets (seconds): LLM workflows take seconds to minutes.
WORKFLOW_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Node buckets: a node is one step of a workflow, from tens of milliseconds up.
NODE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: The OpenTelemetry GenAI semantic convention's explicit bucket boundaries
#: for ``gen_ai.client.operation.duration``.
LLM_CALL_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

#: Tool calls: HTTP APIs and local functions, milliseconds to a minute.
TOOL_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REGISTRY_CHOICES = ("dedicated", "default")


def _registry(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A registry name from YAML, or (from Python) a registry object to embed in."""
    if value in REGISTRY_CHOICES:
        return
    if callable(getattr(value, "register", None)) and callable(getattr(value, "collect", None)):
        return
    raise InvalidValue(
        attribute.name, value,
        "is not 'dedicated', 'default' or a prometheus_client CollectorRegistry object",
    )


def _path(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value.startswith("/") or any(c in value for c in "?# "):
        raise InvalidValue(attribute.name, value, "must be a URL path starting with '/' (like '/metrics')")


def _buckets(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value or any(b <= 0 for b in value) or list(value) != sorted(set(value)):
        raise InvalidValue(attribute.name, value, "must be a non-empty, strictly increasing list of positive numbers")


def _namespace(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    import re

    if value and not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise InvalidValue(attribute.name, value, "must be a metric name prefix: letters, digits and '_'")


@attrs.define(frozen=True)
class PrometheusConfig:
    """Settings of the Prometheus tier (``observability.prometheus``)."""

    port: int = attrs.field(default=DEFAULT_PORT, validator=in_range(0, 65535))
    """Port of the standalone /metrics server (0 picks a free port)."""
    host: str = "127.0.0.1"
    """Address the standalone server binds. 127.0.0.1 keeps metrics off the
    network; use 0.0.0.0 when Prometheus runs on another host or in a container."""
    path: str = attrs.field(default="/metrics", validator=_path)
    """URL path of the metrics on the standalone server."""
    start_server: bool = True
    """Start the standalone server. Turn it off when the app serves
    ``tiertrace_prometheus.asgi_app()`` itself or when only pushing."""
    registry: Any = attrs.field(default="dedicated", validator=_registry)
    """``dedicated``: a registry owned by this tier (only tiertrace's metrics).
    ``default``: prometheus_client's global ``REGISTRY`` (next to the app's own
    metrics and the process/GC collectors). From Python, a ``CollectorRegistry``."""
    multiprocess_dir: Optional[str] = attrs.field(
        factory=env_str("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    )
    """Multiprocess mode (gunicorn/uvicorn workers): the directory of
    prometheus_client's per-process files. Default: ``PROMETHEUS_MULTIPROC_DIR``."""
    max_label_values: int = attrs.field(default=100, validator=positive)
    """Distinct values per label (workflow, node, model, tool); later new
    values are counted under ``other``."""
    namespace: str = attrs.field(default="", validator=_namespace)
    """Prefix for every metric name (``myapp`` gives ``myapp_workflow_runs_total``)."""
    exemplars: bool = True
    """Attach ``trace_id`` exemplars to the duration histograms."""
    workflow_buckets: list[float] = attrs.field(factory=lambda: list(WORKFLOW_BUCKETS), validator=_buckets)
    """Bucket upper bounds (seconds) of ``workflow_duration_seconds``."""
    node_buckets: list[float] = attrs.field(factory=lambda: list(NODE_BUCKETS), validator=_buckets)
    """Bucket upper bounds (seconds) of ``node_duration_seconds``."""
    pushgateway_url: Optional[str] = attrs.field(default=None, validator=url)
    """A Pushgateway to push every metric to (batch runs)."""
    pushgateway_job: str = "tiertrace"
    """The ``job`` grouping key of the push."""
    push_on_shutdown: bool = True
    """Push once at shutdown when ``pushgateway_url`` is set."""
    push_timeout: float = attrs.field(default=5.0, validator=positive)
    """Seconds a push may take (bounded further by the shutdown timeout)."""
    grouping_key: dict[str, str] = attrs.Factory(dict)
    """Extra Pushgateway grouping labels (``instance`` is a common one)."""
