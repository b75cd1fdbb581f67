"""Secrets never leave the process, metrics stay on loopback, labels stay bounded.

Secrets of every kind the core redacts (core/tiertrace/redaction.py) are planted
in every place an engine can put text: prompts, messages, responses, tool
arguments and results, workflow inputs, tags, attributes, LLM parameters,
error messages, retry reasons, validation failures and optimization settings.
Content capture is on in every tier, so content does reach every sink (the
``[REDACTED]`` marker is there); the secrets are in none of them: the MLflow
server's store and artifacts, the raw OTLP payloads, /metrics, the logs and
warnings tiertrace writes.
"""

from __future__ import annotations

import logging
import random
import socket
import string
import warnings
from pathlib import Path

import pytest

import tiertrace

from systemkit import http_get, samples

pytestmark = pytest.mark.slow

_rng = random.Random()


def _alnum(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def make_secrets() -> dict[str, tuple[str, str]]:
    """kind -> (text as planted, the secret part that must not appear anywhere)."""
    found = {}
    for kind, make in {
        "anthropic_key": lambda: "sk-ant-api03-" + _alnum(40),
        "openai_key": lambda: "sk-proj-" + _alnum(40),
        "google_api_key": lambda: "AIza" + _alnum(35),
        "aws_access_key_id": lambda: "AKIA" + _alnum(16, string.ascii_uppercase + string.digits),
        "github_token": lambda: "ghp_" + _alnum(36),
        "huggingface_token": lambda: "hf_" + _alnum(34),
        "slack_token": lambda: "xoxb-" + _alnum(12, string.digits) + "-" + _alnum(24),
    }.items():
        secret = make()
        found[kind] = (secret, secret)
    token = _alnum(32) + "._-" + _alnum(8)
    found["bearer_token"] = (f"Authorization: Bearer {token}", token)
    password = _alnum(20)
    found["secret_pair"] = (f"password={password}", password)
    return found


def plant(secrets: dict[str, tuple[str, str]]) -> str:
    return " | ".join(f"{kind}: {text}" for kind, (text, _) in secrets.items())


def test_planted_secrets_reach_no_sink(stack, otlp_receiver, mlflow_server, caplog, capfd):
    secrets = make_secrets()
    keyed = "kv-" + _alnum(24)  # harmless-looking, but the value of an api_key field
    text = plant(secrets)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = stack(otlp=otlp_receiver, serve=True, prometheus={"port": 0},
                  mlflow={"traces": True, "capture_content": True},
                  opentelemetry={"capture_content": True})
        tracer = s.tracer
        with tracer.workflow("secure_flow", inputs={"question": text, "api_key": keyed},
                             tags={"team": text}, note=text) as wf:
            with tracer.node("research", note=text):
                with tracer.llm_call("gpt-4o-mini", prompt=text, params={"api_key": keyed, "temperature": 0},
                                     messages=[{"role": "user", "content": text}]) as call:
                    call.record(response=text, input_tokens=10, output_tokens=5, note=text)
                tracer.retry(text)
                tracer.validation_failure([text], raw_output=text)
                with tracer.tool_call("search", args={"q": text, "api_key": keyed, "headers": {"Authorization": text}}) as tool:
                    tool.record(result={"hits": [text], "token": keyed})
                try:
                    with tracer.llm_call("gpt-4o-mini", prompt="again") as failing:
                        raise ConnectionError(f"upstream rejected {text}")
                except ConnectionError:
                    pass
            tracer.optimization(optimizer="MIPROv2", baseline={"accuracy": 0.5}, optimized={"accuracy": 0.7},
                                settings={"teacher_key": text, "api_key": keyed}, program=text)
        with pytest.raises(PermissionError):
            with tracer.workflow("secure_flow", inputs={"q": "x"}):
                raise PermissionError(f"denied for {text}")
        assert failing.data.status == "error"
        metrics_text = http_get(s.metrics_url)[1].decode()
        openmetrics = http_get(s.metrics_url, {"Accept": "application/openmetrics-text; version=1.0.0"})[1].decode()
        assert s.tracer.flush(timeout=60) == []
        assert s.tracer.shutdown(timeout=20) == []
    out, err = capfd.readouterr()
    assert tracer.health.total_dropped() == 0 and tracer.health.total_plugin_errors() == 0

    store = b"".join(p.read_bytes() for p in Path(mlflow_server.folder).rglob("*") if p.is_file())
    otlp = otlp_receiver.raw()
    logs = "\n".join([caplog.text, out, err, *(str(w.message) for w in caught)])
    sinks = {"mlflow store and artifacts": store, "OTLP payloads": otlp,
             "/metrics": (metrics_text + openmetrics).encode(), "logs and warnings": logs.encode()}
    # Content did reach the sinks that capture it (so finding no secret means something).
    run = s.workflow_run(wf.trace_id)
    assert "[REDACTED]" in run.data.tags["team"]
    assert b"[REDACTED]" in otlp and b"[REDACTED]" in store
    assert s.mlflow.wait_spans(wf.trace_id, 1)  # the MLflow trace of the workflow was stored too
    leaks = [(sink, kind) for sink, data in sinks.items()
             for kind, (_, secret) in [*secrets.items(), ("api_key field", ("", keyed))]
             if secret.encode() in data]
    assert leaks == []


def test_metrics_listen_on_loopback_by_default(stack):
    s = stack(otlp=None, local_store=True, serve=True, prometheus={"port": 0})
    tier = s.tier("prometheus")
    assert tier.config.host == "127.0.0.1"
    assert tier.server._httpd.server_address[0] == "127.0.0.1"
    assert http_get(s.metrics_url)[0] == 200
    try:  # another address of this machine, if it has one, is refused
        outward = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outward.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent, only a route chosen
        address = outward.getsockname()[0]
        outward.close()
    except OSError:
        address = None
    if address and not address.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((address, tier.server.port), timeout=2).close()


def test_label_cardinality_stays_bounded_under_10000_workflow_names():
    # MLflow is off here: 10,000 runs prove nothing about labels and would take minutes.
    tracer = tiertrace.configure({"observability": {
        "mlflow": {"enabled": False},
        "opentelemetry": {"exporter": "none", "set_global_provider": False},
        "prometheus": {"start_server": True, "port": 0},
    }}, set_default=False)
    try:
        tier = tracer.tier("prometheus")
        names = 10_000
        series_at = {}
        with warnings.catch_warnings():
            # The core warns once per unpriced model name: 10,000 names, 10,000 warnings.
            warnings.simplefilter("ignore")
            for i in range(names):
                with tracer.workflow(f"user-{i}-flow"):
                    with tracer.node(f"node-{i}"):
                        with tracer.llm_call(f"model-{i}") as call:
                            call.record(input_tokens=1, output_tokens=1)
                        with tracer.tool_call(f"tool-{i}"):
                            pass
                if i + 1 in (names // 2, names):
                    series_at[i + 1] = samples(http_get(tier.url)[1].decode())
    finally:
        tracer.shutdown(timeout=10)
    found = series_at[names]
    limit = tier.config.max_label_values
    for label in ("workflow", "node", "model", "tool"):
        values = {dict(labels).get(label) for _, labels in found} - {None}
        assert len(values) <= limit + 1, (label, len(values))  # + "other"
        assert "other" in values
    # The set of series stopped growing once each label reached its limit.
    assert set(series_at[names]) == set(series_at[names // 2])
    runs = sum(v for (n, labels), v in found.items() if n == "workflow_runs_total")
    assert runs == names  # folded, not lost
