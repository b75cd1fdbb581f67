"""docs/tiers/prometheus.md stays complete and true: every setting and metric, valid YAML and PromQL."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import yaml

from tiertrace.config import structure_section
from tiertrace_prometheus import METRICS, PrometheusConfig

from prom_helpers import metric_names, need_binary

DOC = Path(__file__).resolve().parents[2] / "docs" / "tiers" / "prometheus.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)


def rows() -> set[str]:
    return set(re.findall(r"^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|", DOC.read_text(), flags=re.M))


def test_every_setting_and_metric_has_a_row() -> None:
    documented = rows()
    settings = {f.name for f in attrs.fields(PrometheusConfig)} | {"enabled"}
    assert settings - documented == set()
    assert set(METRICS) - documented == set()


def test_yaml_examples_are_valid_settings() -> None:
    examples = blocks("yaml")
    assert examples
    for text in examples:
        section = dict(yaml.safe_load(text)["observability"]["prometheus"])
        section.pop("enabled", None)
        structure_section(PrometheusConfig, section, "observability.prometheus")


def test_promql_examples_parse_and_use_real_names(tmp_path: Path) -> None:
    import subprocess

    queries = []
    for block in blocks("promql"):
        current: list[str] = []
        for line in block.splitlines() + [""]:
            if line.startswith("#") or not line.strip():
                if current:
                    queries.append(" ".join(current))
                    current = []
            else:
                current.append(line.strip())
    assert len(queries) == 4
    exposed = {s for name, (kind, _, _) in METRICS.items()
               for s in ([f"{name}_bucket", f"{name}_count", f"{name}_sum"] if kind == "histogram" else [name])}
    for query in queries:
        assert metric_names(query) <= exposed, query
    rules = tmp_path / "doc-queries.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "doc", "rules": [
        {"record": f"doc:q{i}", "expr": q} for i, q in enumerate(queries)]}]}))
    run = subprocess.run([need_binary("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_python_examples_run() -> None:
    import os
    import subprocess
    import sys

    text = DOC.read_text()
    runnable = [code for code in re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
                if f"<!-- docs-test: skip -->\n```python\n{code}" not in text]
    assert runnable
    env = dict(os.environ, TIERTRACE_LOAD_PLUGINS="prometheus")
    for code in runnable:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0, run.stderr
