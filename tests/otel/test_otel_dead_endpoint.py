"""A dead OTLP endpoint: the workflow is unaffected, exit is bounded, losses are counted.

Two kinds of dead: nothing listens (connection refused), and a black hole
that accepts connections and never answers (the worse case: each request
waits for its timeout).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from otel_helpers import free_port

SCRIPT = r"""
import json, sys, time
import tiertrace
endpoint, explicit = sys.argv[1], sys.argv[2] == "explicit"
tracer = tiertrace.configure({"observability": {"opentelemetry": {
    "exporter": "otlp", "endpoint": endpoint, "timeout": 1.0, "flush_timeout": 1.5,
    "max_queue_size": 100, "max_export_batch_size": 50, "schedule_delay": 0.05}}})
durations = []
for i in range(300):
    t0 = time.perf_counter()
    with tracer.workflow("w"):
        with tracer.llm_call("gpt-4o") as call:
            call.record(input_tokens=1, output_tokens=1)
    durations.append(time.perf_counter() - t0)
durations.sort()
result = {"median_us": durations[len(durations) // 2] * 1e6, "p99_us": durations[int(len(durations) * 0.99)] * 1e6}
if explicit:
    t0 = time.perf_counter()
    tracer.shutdown()
    result["shutdown_s"] = time.perf_counter() - t0
    result["dropped"] = {f"{k[0]}/{k[1]}": v for k, v in tracer.health.dropped.items()}
print(json.dumps(result), flush=True)
print("done", flush=True)
"""


@pytest.fixture
def black_hole():
    """A TCP port that accepts connections (backlog) but never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _run(endpoint: str, mode: str) -> tuple[dict, float]:
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry"}
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, endpoint, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    result = json.loads(process.stdout.readline())
    assert process.stdout.readline().strip() == "done"
    done = time.perf_counter()
    process.wait(30)
    return result, time.perf_counter() - done


@pytest.mark.parametrize("kind", ["refused", "black_hole"])
def test_dead_endpoint_costs_the_workflow_nothing_and_exit_is_bounded(kind, black_hole):
    endpoint = black_hole if kind == "black_hole" else f"http://127.0.0.1:{free_port()}"
    result, exit_s = _run(endpoint, "explicit")
    assert result["median_us"] < 2000, result  # microseconds, not a network round trip
    assert result["shutdown_s"] < 2.5, result  # flush_timeout 1.5 s plus scheduling slack
    dropped = result["dropped"]
    # 600 spans: some never got through (queue full while an export hangs), the rest failed to export.
    assert sum(v for k, v in dropped.items() if k.startswith("opentelemetry/")) == 600, dropped
    assert "opentelemetry/export_failed" in dropped
    assert exit_s < 2.0


def test_exit_without_shutdown_is_bounded_by_the_flush_timeout(black_hole):
    result, exit_s = _run(black_hole, "implicit")
    # The core's atexit shutdown runs this tier's shutdown, which gives up after flush_timeout.
    assert exit_s < 3.0, exit_s
