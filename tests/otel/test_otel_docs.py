"""docs/tiers/opentelemetry.md stays true: every setting has a row, its YAML is valid, its Python runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import yaml

import tiertrace
from tiertrace_otel import OtelConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "tiers" / "opentelemetry.md"
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
    rows = re.findall(r"^\|\s*`([a-z_]+)`\s*\|", section, flags=re.MULTILINE)
    fields = {field.name for field in attrs.fields(OtelConfig)} | {"enabled"}
    assert set(rows) - {"otlp", "honeycomb"} == fields  # (the endpoint table's rows)


def test_yaml_blocks_are_valid_configuration():
    (code,) = blocks("yaml")
    tracer = tiertrace.configure(yaml.safe_load(code), set_default=False)  # raises ConfigError if not
    try:
        tier = tracer.tier("opentelemetry")
        assert tier.config.exporter == "jaeger" and tier.config.service_name == "configurable-agents"
        assert "jaeger over OTLP http/protobuf to http://localhost:4318/v1/traces" in tier.describe()
    finally:
        tracer.shutdown(timeout=0.5)


def test_python_blocks_run(tmp_path):
    script = "\n\n".join(blocks("python"))
    assert "waterfall(" in script and "instrument(tracer)" in script
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": "opentelemetry"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invoke_workflow article_writer" in result.stdout
    assert "chat FakeListChatModel" in result.stdout  # the LangChain run, through the handler
