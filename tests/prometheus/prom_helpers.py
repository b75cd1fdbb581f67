"""Helpers of the Prometheus tier's tests: real binaries, ports, HTTP, the seed workflow.

A module with a name of its own (not ``conftest``), so that test folders of
other tiers cannot shadow it; conftest.py puts this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import tiertrace

def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_binary(name: str) -> str:
    """The path of a Debian binary; skip (fail in CI) when it is not installed."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        package = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}.get(name, name)
        message = f"{name} is not installed (apt-get install {package})"
        if in_ci():
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, headers: Optional[dict[str, str]] = None, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


class Server:
    """A real server process started by a fixture, stopped by its pid."""

    def __init__(self, argv: list[str], url: str, ready_path: str, log: Path):
        self.url = url
        self.log = log
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.process.poll() is None and http_get(url + ready_path)[0] == 200,
                       30, f"{argv[0]} at {url}")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{argv[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log_file.close()


class PrometheusServer(Server):
    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", data
        return data["data"]["result"]

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query_exemplars?" + urllib.parse.urlencode(
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        status, _, body = http_get(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", data
        return data["data"]


def start_prometheus(tmp: Path, targets: list[str], scrape_interval: str = "1s",
                     rule_files: Optional[list[Path]] = None, alertmanager: Optional[str] = None) -> PrometheusServer:
    binary = need_binary("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    text = (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: tiertrace\n"
        "    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    if rule_files:
        text += f"rule_files: {json.dumps([str(p) for p in rule_files])}\n"
    if alertmanager:
        text += f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{json.dumps(alertmanager)}]\n"
    config.write_text(text)
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage",
            "--log.level=warn"]
    return PrometheusServer(argv, f"http://127.0.0.1:{port}", "/-/ready", tmp / "prometheus.log")


def start_alertmanager(tmp: Path, config: Path) -> Server:
    binary = need_binary("prometheus-alertmanager")
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    return Server(argv, f"http://127.0.0.1:{port}", "/-/ready", tmp / "alertmanager.log")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from an exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> Optional[float]:
    return found.get((name, tuple(sorted(labels.items()))))


def run_article_writer(tracer: tiertrace.Tracer, fail: bool = False, model: str = "gemini-1.5-flash") -> Any:
    """The seed's workflow shape: research (LLM call, retry, validation failure, tool call), write."""
    try:
        with tracer.workflow("article_writer", inputs={"topic": "x"}) as wf:
            with tracer.node("research"):
                with tracer.llm_call(model, prompt="outline the topic") as call:
                    call.record(response="...", input_tokens=812, output_tokens=230)
                tracer.retry("timeout")
                tracer.validation_failure(["bad json"], raw_output="{")
                with tracer.tool_call("serper_search", args={"q": "x"}) as tool:
                    tool.record(result=["hit"])
            with tracer.node("write"):
                with tracer.llm_call(model, prompt="write it") as call:
                    call.record(response="...", input_tokens=1000, output_tokens=500)
                if fail:
                    raise RuntimeError("writer failed")
    except RuntimeError:
        pass
    return wf.data


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
             "unless", "inf", "nan", "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, ranges, grouping and functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", expr)
    return {n for n in names if n not in _KEYWORDS}
