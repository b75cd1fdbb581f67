"""``observability.opentelemetry``: what this tier exports, where, and how much.

Only attrs and the core's validators are imported here: listing plugins must
not import the OpenTelemetry SDK.

Environment variables follow the OpenTelemetry SDK documentation:
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) and
``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` is appended for HTTP) when no
``endpoint`` is configured; ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`` under the
configured ``headers``; ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER``,
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`` and
``OTEL_BSP_MAX_QUEUE_SIZE``/``_MAX_EXPORT_BATCH_SIZE``/``_SCHEDULE_DELAY`` as
defaults. ``HONEYCOMB_API_KEY`` fills the
``x-honeycomb-team`` header for the honeycomb exporter.
"""

from __future__ import annotations

import os
from typing import Any, Optional
from urllib.parse import urlsplit

import attrs

from tiertrace.config import ConfigError, InvalidValue, in_range, one_of, positive

__all__ = ["OtelConfig", "EXPORTERS", "PROTOCOLS", "resolve_endpoint", "resolve_headers"]

#: Exporters that speak OTLP (Jaeger >= 1.35 and Tempo ingest OTLP natively).
OTLP_EXPORTERS = ("otlp", "jaeger", "tempo", "honeycomb")
EXPORTERS = (*OTLP_EXPORTERS, "console", "file", "none")
PROTOCOLS = ("http/protobuf", "grpc")

#: Default endpoints per exporter and protocol. HTTP endpoints are bases:
#: ``/v1/traces`` is appended.
DEFAULT_ENDPOINTS = {
    ("otlp", "http/protobuf"): "http://localhost:4318",
    ("otlp", "grpc"): "http://localhost:4317",
    ("jaeger", "http/protobuf"): "http://localhost:4318",
    ("jaeger", "grpc"): "http://localhost:4317",
    ("tempo", "http/protobuf"): "http://localhost:4318",
    ("tempo", "grpc"): "http://localhost:4317",
    ("honeycomb", "http/protobuf"): "https://api.honeycomb.io",
    ("honeycomb", "grpc"): "https://api.honeycomb.io:443",
}
TRACES_PATH = "/v1/traces"
DEFAULT_FILE = "tiertrace-otel-spans.jsonl"
HONEYCOMB_HEADER = "x-honeycomb-team"


def _env(*names: str) -> Optional[str]:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _default_exporter() -> str:
    """``OTEL_TRACES_EXPORTER`` if it names one of ours, OTLP if an OTLP endpoint is
    set in the environment, else the offline JSONL file."""
    named = (_env("OTEL_TRACES_EXPORTER") or "").split(",")[0].strip().lower()
    if named in EXPORTERS:
        return named
    if _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return "file"


def _default_protocol() -> str:
    value = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    return value if value in PROTOCOLS else "http/protobuf"


def _default_service_name() -> str:
    return _env("OTEL_SERVICE_NAME") or "tiertrace"


def _default_sampling_rate() -> float:
    # OTEL_TRACES_SAMPLER_ARG is the ratio of the (parentbased_)traceidratio sampler.
    raw = _env("OTEL_TRACES_SAMPLER_ARG")
    try:
        value = float(raw) if raw is not None else 1.0
    except ValueError:
        value = 1.0
    return value if 0.0 <= value <= 1.0 else 1.0


def _env_number(names: tuple[str, ...], default: float, scale: float = 1.0, integer: bool = False) -> Any:
    """A default from the first environment variable set (times ``scale``); bad values fail clearly."""

    def factory() -> Any:
        for name in names:
            raw = os.environ.get(name, "").strip()
            if raw:
                try:
                    value = float(raw) * scale
                except ValueError:
                    raise ConfigError(f"environment {name}: {raw!r} is not a number") from None
                return int(value) if integer else value
        return default

    return factory


def _endpoint(_inst: Any, attribute: attrs.Attribute, value: Optional[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidValue(attribute.name, value, "is not an http:// or https:// URL")
    parts = urlsplit(value)
    if parts.port == 14268 or parts.path.rstrip("/").endswith("/api/traces"):
        raise InvalidValue(
            attribute.name, value,
            "is Jaeger's old Thrift collector, which OpenTelemetry Python no longer speaks; "
            "Jaeger (>= 1.35) ingests OTLP: use http://localhost:4318 (protocol http/protobuf) "
            "or http://localhost:4317 (protocol grpc)",
        )


@attrs.define(frozen=True)
class OtelConfig:
    """Settings of the OpenTelemetry tier (``observability.opentelemetry``)."""

    exporter: str = attrs.field(factory=_default_exporter, validator=one_of(*EXPORTERS))
    """``otlp``, ``jaeger``, ``tempo``, ``honeycomb`` (all OTLP), ``console``
    (stdout), ``file`` (JSON lines, the offline default) or ``none``."""
    endpoint: Optional[str] = attrs.field(default=None, validator=_endpoint)
    """OTLP endpoint. A base URL (``http://localhost:4318``) gets ``/v1/traces``
    for HTTP; a URL that already ends in ``/v1/traces`` is used as is. Default:
    the environment, else per exporter (4318 for HTTP, 4317 for gRPC,
    ``https://api.honeycomb.io`` for honeycomb)."""
    protocol: str = attrs.field(factory=_default_protocol, validator=one_of(*PROTOCOLS))
    """``http/protobuf`` (default) or ``grpc`` (needs ``tiertrace-otel[grpc]``)."""
    headers: dict[str, str] = attrs.Factory(dict)
    """Extra request headers (``x-honeycomb-team``, ``x-mlflow-experiment-id`` ...);
    they win over ``OTEL_EXPORTER_OTLP_HEADERS``."""
    timeout: float = attrs.field(
        factory=_env_number(("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"), 2.0),
        validator=positive)
    """Seconds one export request (with its retries) may take; never more than
    ``flush_timeout``. Default ``OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT``, read as
    seconds as opentelemetry-python reads it, else 2."""
    service_name: str = attrs.field(factory=_default_service_name)
    """``service.name`` of the resource (default ``OTEL_SERVICE_NAME``, else ``tiertrace``)."""
    resource_attributes: dict[str, str] = attrs.Factory(dict)
    """More resource attributes (merged over ``OTEL_RESOURCE_ATTRIBUTES``)."""
    sampling_rate: float = attrs.field(factory=_default_sampling_rate, validator=in_range(0.0, 1.0))
    """Fraction of traces exported: ``ParentBased(TraceIdRatioBased(rate))``.
    Metrics and MLflow records are never sampled."""
    capture_content: bool = False
    """Put prompts, responses, tool arguments and results on spans. Off by
    default: spans leave the machine."""
    use_global_provider: bool = True
    """If the application already set a global SDK TracerProvider, emit spans
    through it (its processors, exporters and sampler) instead of building our own."""
    set_global_provider: bool = True
    """When we build our own provider and none is set globally, make it the
    global one, so auto-instrumented HTTP clients nest under LLM spans."""
    file_path: str = DEFAULT_FILE
    """Where the ``file`` exporter appends one JSON line per span."""
    max_queue_size: int = attrs.field(factory=_env_number(("OTEL_BSP_MAX_QUEUE_SIZE",), 2048, integer=True),
                                      validator=positive)
    """Spans waiting for export; when full the oldest is dropped and counted
    (default ``OTEL_BSP_MAX_QUEUE_SIZE``, else 2048)."""
    max_export_batch_size: int = attrs.field(
        factory=_env_number(("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",), 512, integer=True), validator=positive)
    """Spans per export request (default ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, else 512)."""
    schedule_delay: float = attrs.field(factory=_env_number(("OTEL_BSP_SCHEDULE_DELAY",), 1.0, scale=0.001),
                                        validator=positive)
    """Seconds between background exports (default ``OTEL_BSP_SCHEDULE_DELAY`` in ms, else 1 s)."""
    flush_timeout: float = attrs.field(default=3.0, validator=positive)
    """Seconds a flush or shutdown of this tier may take."""
    waterfall_traces: int = attrs.field(default=32, validator=positive)
    """How many recent traces are kept in memory for :func:`tiertrace_otel.waterfall`."""
    langchain_instrumentor: bool = False
    """Also switch on traceloop's ``LangchainInstrumentor`` (package
    ``opentelemetry-instrumentation-langchain``) on this tier's provider."""

    def __attrs_post_init__(self) -> None:
        if self.exporter == "honeycomb" and not resolve_headers(self).get(HONEYCOMB_HEADER):
            raise InvalidValue(
                "headers", dict(self.headers),
                f"has no {HONEYCOMB_HEADER!r}: exporter honeycomb needs your API key "
                "(set headers.x-honeycomb-team or the environment HONEYCOMB_API_KEY)",
            )


def resolve_endpoint(config: OtelConfig) -> str:
    """The URL (HTTP) or target (gRPC) the OTLP exporter sends to."""
    grpc = config.protocol == "grpc"
    if config.endpoint:
        endpoint = config.endpoint
    elif (traces := _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) is not None:
        return traces  # the SDK uses the signal endpoint as is
    else:
        endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINTS[(config.exporter, config.protocol)]
    if grpc:
        return endpoint
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def resolve_headers(config: OtelConfig) -> dict[str, str]:
    """Environment headers, then HONEYCOMB_API_KEY (honeycomb), then configured headers."""
    headers: dict[str, str] = {}
    raw = _env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
    if raw:
        from urllib.parse import unquote

        for pair in raw.split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                headers[unquote(key.strip()).lower()] = unquote(value.strip())
    if config.exporter == "honeycomb" and (key := _env("HONEYCOMB_API_KEY")):
        headers.setdefault(HONEYCOMB_HEADER, key)
    headers.update({str(k).lower(): str(v) for k, v in config.headers.items()})
    return headers
