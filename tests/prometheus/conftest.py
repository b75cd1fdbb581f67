"""Fixtures for the Prometheus tier: tracers with only this tier, and the real
Debian binaries (prometheus, promtool, prometheus-pushgateway) started on
127.0.0.1 with random ports and stopped by pid.

A test that needs a missing binary skips with the reason, except in CI
(``CI=true``), where it fails. Helpers live in prom_helpers.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import tiertrace

sys.path.insert(0, str(Path(__file__).parent))  # prom_helpers, whatever pytest's import mode

from prom_helpers import Server, free_port, need_binary  # noqa: E402


@pytest.fixture(autouse=True)
def only_the_prometheus_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", "prometheus")
    monkeypatch.delenv("TIERTRACE_CONFIG", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = need_binary("prometheus-pushgateway")
    port = free_port()
    tmp = tmp_path_factory.mktemp("pushgateway")
    server = Server([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    f"http://127.0.0.1:{port}", "/-/ready", tmp / "pushgateway.log")
    yield server
    server.stop()


@pytest.fixture
def make_tracer() -> Iterator[Callable[..., tiertrace.Tracer]]:
    """``make_tracer(port=0, ...)``: a tracer running only this tier with the given
    ``observability.prometheus`` settings (no standalone server unless asked)."""
    tracers: list[tiertrace.Tracer] = []

    def make(**settings: Any) -> tiertrace.Tracer:
        settings.setdefault("start_server", False)
        tracer = tiertrace.configure({"observability": {"prometheus": settings}}, set_default=False)
        assert tracer.tier("prometheus") is not None, tracer.tiers
        tracers.append(tracer)
        return tracer

    yield make
    for tracer in tracers:
        tracer.shutdown(timeout=5)


