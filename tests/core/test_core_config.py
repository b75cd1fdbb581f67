"""Every bad configuration is one clear ConfigError naming key, value and what is allowed."""

from __future__ import annotations

import pytest

import tiertrace
from tiertrace import ConfigError
from tiertrace.config import load_observability


def _error(source) -> str:
    with pytest.raises(ConfigError) as caught:
        tiertrace.configure(source, set_default=False)
    return str(caught.value)


@pytest.mark.parametrize("section, expected", [
    # wrong types
    ({"strict": "yes"}, "observability.strict: 'yes' is not a boolean"),
    ({"handle_sigterm": 1}, "observability.handle_sigterm: 1 is not a boolean"),
    ({"shutdown_timeout": "5s"}, "observability.shutdown_timeout: '5s' is not a number"),
    ({"shutdown_timeout": True}, "observability.shutdown_timeout: True is not a number"),
    ({"content": {"capture": "no"}}, "observability.content.capture: 'no' is not a boolean"),
    ({"content": {"redact": "sk-.*"}}, "observability.content.redact"),
    ({"content": {"redact": [3]}}, "observability.content.redact[0]: 3 is not a string"),
    ({"content": {"redact_defaults": None}}, "observability.content.redact_defaults: None is not a boolean"),
    ({"content": {"max_chars": 1.5}}, "observability.content.max_chars: 1.5 is not an integer"),
    ({"content": "off"}, "observability.content"),
    ({"pricing": {"m": {"input": "cheap", "output": 1}}}, "observability.pricing.m.input: 'cheap' is not a number"),
    ({"pricing": {"m": {"input": 1}}}, "observability.pricing.m"),
    ({"pricing": ["m"]}, "observability.pricing"),
    # out of range
    ({"shutdown_timeout": 0}, "observability.shutdown_timeout: 0.0 must be > 0"),
    ({"content": {"max_chars": -1}}, "observability.content.max_chars: -1 must be > 0"),
    ({"pricing": {"m": {"input": -1.0, "output": 1}}}, "observability.pricing.m.input: -1.0 must be >= 0"),
    ({"pricing": {"m": {"input": 1, "output": 1, "cached_input": -2}}}, "cached_input: -2.0 must be >= 0"),
    # unknown keys, with did-you-mean
    ({"contnet": {}}, "observability.contnet: unknown key (did you mean 'content'?)"),
    ({"content": {"captur": True}}, "observability.content.captur: unknown key (did you mean 'capture'?)"),
    ({"pricing": {"m": {"input": 1, "output": 1, "outptu": 2}}}, "pricing.m.outptu: unknown key (did you mean 'output'?)"),
])
def test_bad_core_config(section, expected):
    assert expected in _error({"observability": section})


def test_several_problems_are_reported_together():
    message = _error({"observability": {"strict": 3, "shutdown_timeout": "soon"}})
    assert "observability.strict" in message and "observability.shutdown_timeout" in message


@pytest.mark.parametrize("tier, dist", [("mlflow", "tiertrace-mlflow"), ("opentelemetry", "tiertrace-otel"),
                                        ("prometheus", "tiertrace-prometheus")])
def test_section_for_a_tier_not_installed_names_the_distribution(tier, dist, monkeypatch):
    # The shipped tiers may be installed here: hide every installed distribution.
    monkeypatch.setattr("tiertrace.plugins._entry_points", lambda: [])
    message = _error({"observability": {tier: {"enabled": True}}})
    assert f"observability.{tier}: the tier {tier!r} is not installed" in message
    assert f"pip install {dist}" in message


def test_yaml_forms(tmp_path):
    seed = tmp_path / "workflow.yaml"
    seed.write_text("flow: {}\nconfig:\n  observability:\n    content: {capture: false}\n")
    observability, label = load_observability(seed)
    assert observability == {"content": {"capture": False}} and label == "config.observability"
    top = tmp_path / "obs.yaml"
    top.write_text("observability:\n  shutdown_timeout: 2\n")
    assert tiertrace.configure(top, set_default=False).config.shutdown_timeout == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("config:\n  observability:\n    shutdown_timeout: nope\n")
    assert "config.observability.shutdown_timeout: 'nope' is not a number" in _error(bad)


@pytest.mark.parametrize("text, expected", [
    ("observability: [1, 2]", "is a list, expected a mapping"),
    ("just: text", "has no 'observability' section"),
    (":\n- [", "is not valid YAML"),
    ("- 1", "top level is a list"),
])
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert expected in _error(path)


def test_missing_file_and_bad_source():
    assert "cannot be read" in _error("/nonexistent/tiertrace.yaml")
    assert "expected a path, a dict or None" in _error(42)


def test_environment(monkeypatch, tmp_path):
    path = tmp_path / "obs.yaml"
    path.write_text("observability:\n  content: {max_chars: 7}\n")
    monkeypatch.setenv("TIERTRACE_CONFIG", str(path))
    monkeypatch.setenv("TIERTRACE_SHUTDOWN_TIMEOUT", "1.5")
    tracer = tiertrace.configure(None, set_default=False)
    assert tracer.content.max_chars == 7 and tracer.config.shutdown_timeout == 1.5
    monkeypatch.setenv("TIERTRACE_SHUTDOWN_TIMEOUT", "soon")
    assert "environment TIERTRACE_SHUTDOWN_TIMEOUT: 'soon' is not a number" in _error({})
