"""Property-based tests across the whole installed system.

Configuration: every section of every installed tier and the core's keys get
arbitrary values; a bad one always gives ``ConfigError`` naming the key path
(never another exception, never a traceback in the message), and it does so
before any tier starts. Records: arbitrary names, tags, token counts, costs,
content and attributes go through all three running tiers; nothing raises
into the workflow, no tier raises, and every backend got every run.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tiertrace
from tiertrace import plugins
from tiertrace.config import CoreConfig, ContentConfig, ModelPrice
from tiertrace_mlflow import MlflowTier
from tiertrace_otel import OpenTelemetryTier
from tiertrace_prometheus import PrometheusTier

from systemkit import total

pytestmark = pytest.mark.slow

SECTIONS = {
    "mlflow": MlflowTier.config_class,
    "opentelemetry": OpenTelemetryTier.config_class,
    "prometheus": PrometheusTier.config_class,
    "content": ContentConfig,
}
CORE_SCALARS = [f.name for f in attrs.fields(CoreConfig) if f.name not in ("pricing", "content")]


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                     st.sampled_from(["", " ", "http://", "https://x:99999", "grpc", "file", "/metrics", "-1",
                                      "0.5", "true", "sqlite:///", "0.0.0.0", "::1", "dedicated"]))


def values() -> st.SearchStrategy[Any]:
    return st.recursive(scalars(), lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=6)


def validate(observability: Any) -> None:
    """What configure() does before it starts any tier (and what `tiertrace check-config` runs)."""
    infos = plugins.discover()
    _, sections = plugins.split_config(observability, "observability", infos)
    plugins.configure_tiers(infos, sections, "observability")


def keys_of(section: str) -> list[str]:
    return [f.name for f in attrs.fields(SECTIONS[section])]


@st.composite
def one_bad_key(draw: Any) -> tuple[dict[str, Any], str]:
    """A config with one arbitrary value under one key (known or unknown), and its path."""
    where = draw(st.sampled_from([*SECTIONS, "core", "pricing"]))
    value = draw(values())
    if where == "core":
        key = draw(st.sampled_from(CORE_SCALARS))
        return {key: value}, f"observability.{key}"
    if where == "pricing":
        model = draw(st.text(min_size=1, max_size=10))
        field = draw(st.sampled_from([f.name for f in attrs.fields(ModelPrice)] + ["bogus"]))
        price = {"input": 1.0, "output": 2.0, field: value}
        return {"pricing": {model: price}}, "observability.pricing"
    key = draw(st.one_of(st.sampled_from(keys_of(where)), st.text(min_size=1, max_size=12)))
    return {where: {key: value}}, f"observability.{where}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=one_bad_key())
def test_any_value_under_any_key_is_accepted_or_a_config_error_naming_it(case):
    config, path = case
    try:
        validate(config)
    except tiertrace.ConfigError as err:
        message = str(err)
        assert path in message, (config, message)
        assert "Traceback" not in message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observability=st.one_of(values(), st.dictionaries(st.sampled_from([*SECTIONS, "pricing", *CORE_SCALARS, "zipkin"]),
                                                          values(), max_size=4)))
def test_arbitrary_observability_sections_only_ever_raise_config_error(observability):
    try:
        validate(observability if isinstance(observability, dict) else {"mlflow": observability})
    except tiertrace.ConfigError as err:
        assert str(err).startswith("observability") or "observability" in str(err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=one_bad_key())
def test_configure_fails_before_any_tier_starts(case):
    """For a bad configuration, configure() raises ConfigError and starts nothing."""
    config, path = case
    try:
        validate(config)
    except tiertrace.ConfigError:
        pass
    else:
        return  # a good configuration: configure() would start the tiers; not what this checks
    import threading

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(tiertrace.ConfigError, match=path.replace(".", r"\.")):
        tiertrace.configure({"observability": config}, set_default=False)
    started = {t.name for t in threading.enumerate()} - before
    assert not {name for name in started if name.startswith("tiertrace")}, started


# --- odd record values through the three running tiers ------------------------------------------


names = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "a/b/../c", "x" * 500, "ünï çødé ✓", "a\nb",
                                                         "{{name}}", "DROP TABLE runs;", "..", "/"]))
odd = st.one_of(values(), st.builds(Hostile), st.builds(object), st.binary(max_size=10))
tokens = st.one_of(st.none(), st.integers(-5, 2**63), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=5), st.booleans(), st.builds(Hostile))


def test_odd_record_values_go_through_all_three_tiers_safely(stack, otlp_receiver, caplog):
    s = stack(otlp=otlp_receiver, local_store=True, serve=True, prometheus={"port": 0},
              mlflow={"capture_content": True}, opentelemetry={"capture_content": True})
    tracer = s.tracer
    workflows: list[Any] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(workflow=names, node=names, model=st.one_of(st.none(), names), tool=names,
           tags=st.dictionaries(names, odd, max_size=3),
           # keyword names, prefixed so that none collides with an argument of workflow() or record()
           attributes=st.dictionaries(st.from_regex(r"attr_[A-Za-z0-9_]{0,12}", fullmatch=True), odd, max_size=3),
           content=odd, n_in=tokens, n_out=tokens, cost=tokens)
    def run(workflow, node, model, tool, tags, attributes, content, n_in, n_out, cost):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tracer.workflow(workflow, inputs={"x": content}, tags=tags, **attributes) as wf:
                with tracer.node(node, **attributes):
                    with tracer.llm_call(model, prompt=content, messages=content, params={"p": content}) as call:
                        call.record(response=content, input_tokens=n_in, output_tokens=n_out, cost_usd=cost,
                                    **attributes)
                    tracer.retry(content, attempt=n_in)
                    tracer.validation_failure(content, raw_output=content)
                    with tracer.tool_call(tool, args=content) as t:
                        t.record(result=content, **attributes)
                tracer.optimization(optimizer=node, baseline={"m": n_in}, optimized={"m": n_out}, settings=tags,
                                    program=content)
        workflows.append(wf.data)
        data = call.data
        assert data.input_tokens is None or (isinstance(data.input_tokens, int) and data.input_tokens >= 0)
        assert data.cost_usd is None or (data.cost_usd >= 0 and math.isfinite(data.cost_usd))

    run()
    metrics = s.metrics()
    assert tracer.flush(timeout=120) == []
    assert tracer.shutdown(timeout=20) == []
    health = tracer.health
    assert health.plugin_errors == {}, health.last_errors  # no tier choked on a value
    assert health.total_dropped() == 0, (health.dropped, s.tier("mlflow").writer.last_error, caplog.text[-3000:])  # MLflow refused nothing
    n = len(workflows)
    assert n >= 20  # hypothesis really ran the examples
    assert total(metrics, "workflow_runs_total") == n
    assert total(metrics, "llm_calls_total") == n
    by_trace = {run.data.tags["tiertrace.trace_id"] for run in s.runs("tags.`tiertrace.kind` = 'workflow'")}
    assert by_trace == {w.trace_id for w in workflows}
    arrived = {span.trace_id for span in otlp_receiver.all_spans()}
    assert arrived == {w.trace_id for w in workflows}
    assert len(otlp_receiver.all_spans()) == 4 * n


def test_check_config_reports_every_bad_key_of_every_tier_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "workflow.yaml"
    bad.write_text(
        "config:\n"
        "  observability:\n"
        "    mlflow: {queue_size: 0, experiment_name: ''}\n"
        "    opentelemetry: {sampling_rate: 2.0, exporter: zipkin, endpoint: 'http://localhost:14268/api/traces'}\n"
        "    prometheus: {port: 99999, path: metrics, max_label_values: -1}\n")
    done = subprocess.run([sys.executable, "-m", "tiertrace", "check-config", str(bad)], capture_output=True,
                          text=True, env={**os.environ}, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    # Every tier's section is reported in the same run (within a section, attrs stops at the
    # first field whose validator fails).
    for tier in ("mlflow", "opentelemetry", "prometheus"):
        assert f"config.observability.{tier}." in done.stderr, (tier, done.stderr)
    assert "config.observability.prometheus.port: 99999 is not in [0, 65535]" in done.stderr
    # The core's own keys are checked first (a tier's section is read only once they are right).
    bad.write_text("observability:\n  shutdown_timeout: 0\n  mlflow: {queue_size: 0}\n")
    done = subprocess.run([sys.executable, "-m", "tiertrace", "check-config", str(bad)], capture_output=True,
                          text=True, env={**os.environ}, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "observability.shutdown_timeout: 0" in done.stderr
