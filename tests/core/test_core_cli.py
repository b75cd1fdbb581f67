"""The tiertrace command, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest


def run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tiertrace", *args], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=120)


def test_plugins_lists_an_installed_tier_without_starting_it(installed_tier, tmp_path):
    module = installed_tier("tiertrace-good", "good", '''
import tiertrace
class Tier:
    def __init__(self):
        raise AssertionError("listing must not start a tier")
    @tiertrace.hookimpl
    def on_node_end(self, node):
        pass
''')
    env = {"PYTHONPATH": os.pathsep.join(sys.path), "TIERTRACE_LOAD_PLUGINS": "good"}
    result = run("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["good"]["distribution"] == "tiertrace-good" and rows["good"]["version"] == "1.2.3"
    assert rows["good"]["state"] == "active" and rows["good"]["hooks"] == ["on_node_end"]
    text = run("plugins", env=env).stdout
    assert "good  [tiertrace-good 1.2.3]  active" in text and "hooks: on_node_end" in text
    config = tmp_path / "c.yaml"
    config.write_text("observability:\n  good: {enabled: false}\n")
    assert "disabled (enabled: false)" in run("plugins", "--config", str(config), env=env).stdout


def test_check_config(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("config:\n  observability:\n    content: {capture: true}\n")
    bad.write_text("observability:\n  content: {captur: true}\n  shutdown_timeout: never\n")
    ok = run("check-config", str(good))
    assert ok.returncode == 0 and "OK" in ok.stdout
    failed = run("check-config", str(bad))
    assert failed.returncode == 2
    assert "observability.content.captur: unknown key (did you mean 'capture'?)" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_demo_runs_offline_and_prints_waterfall_costs_and_destinations(tmp_path):
    result = run("demo", "--runs", "2", "--latency-scale", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "article_writer" in out and "├── research" in out and "└── write" in out
    assert "<- bottleneck" in out and "serper_search" in out
    assert "Cost per node" in out and "total $" in out and "over 2 run(s)" in out
    assert "Where the data went" in out


def test_demo_rejects_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("observability:\n  shutdown_timeout: 'x'\n")
    result = run("demo", "--config", str(bad), "--latency-scale", "0")
    assert result.returncode == 2 and "observability.shutdown_timeout: 'x' is not a number" in result.stderr


def test_import_is_fast_and_imports_no_backend():
    code = ("import sys, time; t=time.perf_counter(); import tiertrace; "
            "print(time.perf_counter()-t); print(sorted(m for m in ('mlflow','opentelemetry','prometheus_client','cattrs','yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "[]"
