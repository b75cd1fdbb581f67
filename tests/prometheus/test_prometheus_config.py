"""observability.prometheus: defaults, environment, and clear errors for bad values."""

from __future__ import annotations

import pytest

import tiertrace
from tiertrace_prometheus import DEFAULT_PORT, PrometheusConfig


def test_defaults_keep_metrics_local_and_off_prometheus_own_port() -> None:
    config = PrometheusConfig()
    assert config.port == DEFAULT_PORT == 9464 and config.port != 9090
    assert config.host == "127.0.0.1"
    assert config.path == "/metrics"
    assert config.registry == "dedicated"
    assert config.multiprocess_dir is None
    assert config.namespace == ""


def test_multiprocess_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert PrometheusConfig().multiprocess_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"port": 70000}, "observability.prometheus.port: 70000 is not in [0, 65535]"),
        ({"port": "9464"}, "observability.prometheus.port: '9464' is not an integer"),
        ({"path": "metrics"}, "observability.prometheus.path: 'metrics' must be a URL path starting with '/'"),
        ({"registry": "global"}, "observability.prometheus.registry: 'global' is not 'dedicated', 'default'"),
        ({"max_label_values": 0}, "observability.prometheus.max_label_values: 0 must be > 0"),
        ({"pushgateway_url": "localhost:9091"}, "observability.prometheus.pushgateway_url: 'localhost:9091' is not an http"),
        ({"namespace": "my-app"}, "observability.prometheus.namespace: 'my-app' must be a metric name prefix"),
        ({"workflow_buckets": [5, 1]}, "observability.prometheus.workflow_buckets: [5.0, 1.0] must be a non-empty, strictly increasing"),
        ({"prot": 1}, "observability.prometheus.prot: unknown key (did you mean 'port'?)"),
    ],
)
def test_bad_values_fail_with_the_key_path(section: dict, message: str) -> None:
    with pytest.raises(tiertrace.ConfigError) as info:
        tiertrace.configure({"observability": {"prometheus": section}}, set_default=False)
    assert message in str(info.value)


def test_enabled_false_turns_the_tier_off() -> None:
    tracer = tiertrace.configure({"observability": {"prometheus": {"enabled": False}}}, set_default=False)
    try:
        assert tracer.tier("prometheus") is None
    finally:
        tracer.shutdown(timeout=5)


def test_importing_the_tier_does_not_import_prometheus_client() -> None:
    import subprocess
    import sys

    code = ("import sys, tiertrace_prometheus, tiertrace.plugins as p; p.discover(); "
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TIERTRACE_LOAD_PLUGINS": "prometheus", "PATH": ""})
    assert out.stdout.strip() == "False"


def test_a_missing_binary_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from prom_helpers import need_binary

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-binary-xyz is not installed"):
        need_binary("no-such-binary-xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no-such-binary-xyz is not installed"):
        need_binary("no-such-binary-xyz")
