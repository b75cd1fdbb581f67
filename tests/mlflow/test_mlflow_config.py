"""observability.mlflow: every field refuses bad values with one clear line."""

from __future__ import annotations

import pytest

import tiertrace
from tiertrace_mlflow import MlflowConfig
from tiertrace_mlflow.config import resolve_destination

P = "observability.mlflow"


def problems(section: dict) -> list[str]:
    with pytest.raises(tiertrace.ConfigError) as info:
        tiertrace.configure({"observability": {"mlflow": section}}, set_default=False)
    return info.value.problems


@pytest.mark.parametrize(
    "section, expected",
    [
        # wrong types
        ({"tracking_uri": 5}, f"{P}.tracking_uri: 5 is not a string"),
        ({"experiment_name": ["a"]}, f"{P}.experiment_name: ['a'] is not a string"),
        ({"artifact_location": True}, f"{P}.artifact_location: True is not a string"),
        ({"capture_content": "yes"}, f"{P}.capture_content: 'yes' is not a boolean"),
        ({"run_tags": ["team"]}, f"{P}.run_tags: ['team'] is not valid"),
        ({"run_tags": {"team": 3}}, f"{P}.run_tags.team: 3 is not a string"),
        ({"queue_size": "100"}, f"{P}.queue_size: '100' is not an integer"),
        ({"queue_size": 10.5}, f"{P}.queue_size: 10.5 is not an integer"),
        ({"flush_timeout": "5s"}, f"{P}.flush_timeout: '5s' is not a number"),
        ({"traces": 1}, f"{P}.traces: 1 is not a boolean"),
        # out of range, empty, reserved
        ({"tracking_uri": " "}, f"{P}.tracking_uri: ' ' must not be empty"),
        ({"experiment_name": ""}, f"{P}.experiment_name: '' must not be empty"),
        ({"artifact_location": ""}, f"{P}.artifact_location: '' must not be empty"),
        ({"queue_size": 0}, f"{P}.queue_size: 0 is not in [1, 100000]"),
        ({"queue_size": 100_001}, f"{P}.queue_size: 100001 is not in [1, 100000]"),
        ({"flush_timeout": 0}, f"{P}.flush_timeout: 0.0 must be > 0"),
        ({"flush_timeout": -1.5}, f"{P}.flush_timeout: -1.5 must be > 0"),
        ({"run_tags": {"mlflow.user": "x"}}, "uses the reserved tag 'mlflow.user'"),
        ({"run_tags": {"tiertrace.kind": "x"}}, "uses the reserved tag 'tiertrace.kind'"),
        ({"run_tags": {" ": "x"}}, "has an empty tag name"),
        # unknown keys, with a suggestion
        ({"tracking_url": "x"}, f"{P}.tracking_url: unknown key (did you mean 'tracking_uri'?)"),
        ({"experiment": "x"}, f"{P}.experiment: unknown key"),
    ],
)
def test_bad_values_fail_with_the_key_path(section, expected):
    lines = problems(section)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected) or expected in lines[0], lines


def test_every_problem_is_reported_at_once():
    lines = problems({"queue_size": "many", "traces": "no", "colour": 1})
    assert len(lines) == 3, lines


def test_the_section_must_be_a_mapping():
    assert problems("sqlite:///x.db") == [  # type: ignore[arg-type]
        f"{P}: 'sqlite:///x.db' is a str, expected a mapping"]


def test_the_seed_yaml_is_valid(tmp_path):
    path = tmp_path / "workflow.yaml"
    path.write_text(
        "config:\n"
        "  observability:\n"
        "    mlflow: {enabled: true, tracking_uri: \"file://./mlruns\", experiment_name: \"production_workflows\"}\n"
    )
    tracer = tiertrace.configure(str(path), set_default=False)
    try:
        tier = tracer.tier("mlflow")
        assert tier.config.experiment_name == "production_workflows"
        assert tier.destination.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    finally:
        tracer.shutdown(timeout=1)


def test_enabled_false_turns_the_tier_off():
    tracer = tiertrace.configure({"observability": {"mlflow": {"enabled": False}}}, set_default=False)
    assert tracer.tier("mlflow") is None
    tracer.shutdown(timeout=1)


@pytest.mark.parametrize(
    "uri, allow_file_store, expected_uri",
    [
        ("http://mlflow.internal:5000", False, "http://mlflow.internal:5000"),
        ("sqlite:////abs/x.db", False, "sqlite:////abs/x.db"),
        ("postgresql://u@h/db", False, "postgresql://u@h/db"),
        ("file://./runs", False, "sqlite:///{cwd}/runs/mlflow.db"),
        ("./runs", False, "sqlite:///{cwd}/runs/mlflow.db"),
        ("file:///abs/runs", False, "sqlite:////abs/runs/mlflow.db"),
        ("file://./runs", True, "file://{cwd}/runs"),
        ("runs", True, "file://{cwd}/runs"),
    ],
)
def test_tracking_uri_resolution(uri, allow_file_store, expected_uri, monkeypatch, tmp_path):
    if allow_file_store:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    destination = resolve_destination(MlflowConfig(tracking_uri=uri))
    assert destination.tracking_uri == expected_uri.format(cwd=tmp_path)
