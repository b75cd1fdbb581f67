"""docs/tiers/mlflow.md stays true: every setting has a row, its YAML is valid, its Python runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import yaml

import tiertrace
from tiertrace_mlflow import MlflowConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "tiers" / "mlflow.md"
SKIP_MARK = "<!-- docs-test: skip -->"


def blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"(?P<before>[^\n]*)\n```" + language + r"\n(?P<code>.*?)```", text, re.DOTALL):
        if match.group("before").strip() != SKIP_MARK:
            found.append(match.group("code"))
    return found


def test_every_setting_has_a_row():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", section, flags=re.MULTILINE))
    fields = {field.name for field in attrs.fields(MlflowConfig)} | {"enabled"}
    assert rows == fields


def test_yaml_blocks_are_valid_configuration():
    (code,) = blocks("yaml")
    data = yaml.safe_load(code)
    tracer = tiertrace.configure(data, set_default=False)  # raises ConfigError if not
    try:
        assert tracer.tier("mlflow").config.run_tags == {"env": "prod"}
    finally:
        tracer.shutdown(timeout=0.5)


def test_python_blocks_run(tmp_path):
    script = "\n\n".join(blocks("python"))
    assert "costs(" in script
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "mlflow"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists(), "a cost query must not create a store"
