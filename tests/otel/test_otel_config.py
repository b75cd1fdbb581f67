"""observability.opentelemetry: validation messages, defaults and the OTEL_* environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tiertrace
from tiertrace_otel.config import OtelConfig, resolve_endpoint, resolve_headers


def configure(section):
    return tiertrace.configure({"observability": {"opentelemetry": section}}, set_default=False)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sampling_rate": 2.0}, "observability.opentelemetry.sampling_rate: 2.0 is not in [0, 1]"),
        ({"exporter": "jeager"}, "observability.opentelemetry.exporter: 'jeager' is not one of"),
        ({"protocol": "thrift"}, "observability.opentelemetry.protocol: 'thrift' is not one of"),
        ({"endpoint": "localhost:4318"}, "observability.opentelemetry.endpoint: 'localhost:4318' is not an http"),
        ({"timeout": 0}, "observability.opentelemetry.timeout: 0"),
        ({"samplng_rate": 1.0}, "unknown key (did you mean 'sampling_rate'?)"),
        ({"capture_content": "yes"}, "observability.opentelemetry.capture_content: 'yes' is not a boolean"),
    ],
)
def test_bad_values_name_the_key(section, message):
    with pytest.raises(tiertrace.ConfigError) as err:
        configure(section)
    assert message in str(err.value)


def test_the_seeds_jaeger_thrift_endpoint_points_at_otlp():
    with pytest.raises(tiertrace.ConfigError) as err:
        configure({"exporter": "jaeger", "endpoint": "http://localhost:14268/api/traces"})
    text = str(err.value)
    assert text.startswith("observability.opentelemetry.endpoint: 'http://localhost:14268/api/traces'")
    assert "http://localhost:4318" in text and "Thrift" in text


def test_honeycomb_needs_a_key(monkeypatch):
    with pytest.raises(tiertrace.ConfigError) as err:
        configure({"exporter": "honeycomb"})
    assert "x-honeycomb-team" in str(err.value) and "HONEYCOMB_API_KEY" in str(err.value)
    monkeypatch.setenv("HONEYCOMB_API_KEY", "hc-key")
    config = OtelConfig(exporter="honeycomb")
    assert resolve_headers(config)["x-honeycomb-team"] == "hc-key"
    assert resolve_endpoint(config) == "https://api.honeycomb.io/v1/traces"
    assert resolve_headers(OtelConfig(exporter="honeycomb", headers={"x-honeycomb-team": "cfg"}))[
        "x-honeycomb-team"] == "cfg"


def test_endpoints_per_exporter_and_protocol():
    assert resolve_endpoint(OtelConfig(exporter="jaeger")) == "http://localhost:4318/v1/traces"
    assert resolve_endpoint(OtelConfig(exporter="tempo", protocol="grpc")) == "http://localhost:4317"
    assert resolve_endpoint(OtelConfig(exporter="otlp", endpoint="http://c:4318/")) == "http://c:4318/v1/traces"
    assert resolve_endpoint(OtelConfig(exporter="otlp", endpoint="http://c/v1/traces")) == "http://c/v1/traces"


def test_standard_environment_variables(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=a,authorization=Bearer%20t")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-from-env")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    config = OtelConfig()
    assert config.exporter == "otlp"  # an OTLP endpoint in the environment means OTLP
    assert config.service_name == "svc-from-env"
    assert config.sampling_rate == 0.25
    assert resolve_endpoint(config) == "http://collector:4318/v1/traces"
    assert resolve_headers(OtelConfig(headers={"x-team": "b"})) == {"x-team": "b", "authorization": "Bearer t"}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
    assert resolve_endpoint(config) == "http://traces:9999/custom"  # the signal endpoint is used as is
    assert resolve_endpoint(OtelConfig(endpoint="http://cfg:4318")) == "http://cfg:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert OtelConfig().protocol == "grpc"
    # Explicit configuration wins over the environment.
    assert OtelConfig(service_name="cfg").service_name == "cfg"


def test_batch_and_timeout_environment_variables(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")  # milliseconds
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4")  # seconds, as opentelemetry-python reads it
    config = OtelConfig()
    assert (config.max_queue_size, config.max_export_batch_size, config.schedule_delay, config.timeout) == (
        100, 10, 0.25, 4.0)
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    with pytest.raises(tiertrace.ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE: 'lots' is not a number"):
        configure({})


def test_defaults_are_offline_and_quiet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = OtelConfig()
    assert (config.exporter, config.sampling_rate, config.capture_content) == ("file", 1.0, False)
    tracer = tiertrace.configure({"observability": {}}, set_default=False)
    tier = tracer.tier("opentelemetry")
    assert "tiertrace-otel-spans.jsonl" in tier.describe()
    tracer.shutdown()


def test_listing_plugins_does_not_import_the_sdk():
    code = ("import sys, tiertrace.plugins as p; infos = p.discover(); "
            "assert any(i.name == 'opentelemetry' and i.tier_class for i in infos), infos; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "TIERTRACE_LOAD_PLUGINS": "opentelemetry"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
