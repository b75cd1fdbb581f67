"""The example third-party tier, installed the way a user installs one.

A fresh virtual environment (no system site-packages) gets the core and
examples/tiertrace-budget through pip, nothing else. The tests then show that
the tier is discovered from its entry point, configured from its own section
``observability.budget``, called at the end of every workflow, and that bad
values in its section are ConfigErrors naming the key path.

pip builds in the source tree (it writes ``build/`` and ``*.egg-info``), so the
sources are copied to a temporary folder first and the work tree stays clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiertrace-budget"

_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", "*.jsonl")


def _copy_core(dest: Path) -> Path:
    """The files the core's build needs: pyproject.toml, README/LICENSE, core/."""
    dest.mkdir()
    for path in REPO.iterdir():
        if path.is_file() and path.name.split(".")[0] in ("pyproject", "README", "LICENSE", "MANIFEST", "setup"):
            shutil.copy2(path, dest / path.name)
    shutil.copytree(REPO / "core", dest / "core", ignore=_IGNORE)
    return dest


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user who activated the venv: no leaks from this test run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TIERTRACE_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def _setuptools_can_build(python: Path, env: dict[str, str], cwd: Path) -> bool:
    """True when the venv's own setuptools meets the build requirement (>= 68)."""
    check = "import importlib.metadata as m, sys; sys.exit(int(m.version('setuptools').split('.')[0]) < 68)"
    return subprocess.run([str(python), "-c", check], env=env, cwd=cwd, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh venv for the module, with the core and the example tier pip-installed."""
    root = tmp_path_factory.mktemp("example-tier")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], _clean_env(venv), root)
    env = _clean_env(venv)
    python = venv / "bin" / "python"
    core_src = _copy_core(root / "tiertrace-src")
    example_src = Path(shutil.copytree(EXAMPLE, root / "tiertrace-budget-src", ignore=_IGNORE))
    # Without a recent setuptools in the venv, let pip build in an isolated env.
    flags = ["--no-build-isolation"] if _setuptools_can_build(python, env, root) else []
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *flags]
    _run([*pip, str(core_src)], env, root)
    # On its own, against the installed core, with the extra its own tests need.
    _run([*pip, f"{example_src}[test]"], env, root)
    return venv


@pytest.fixture
def run_python(venv: Path, tmp_path: Path):
    """Run a script with the venv's python in ``tmp_path``; return its JSON output."""

    def run(script: str, *args: str) -> Any:
        path = tmp_path / "script.py"
        path.write_text(textwrap.dedent(script), encoding="utf-8")
        result = _run([str(venv / "bin" / "python"), str(path), *args], _clean_env(venv), tmp_path, timeout=60)
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def test_the_venv_holds_the_core_and_the_example_and_no_other_tier(venv: Path, run_python) -> None:
    found = run_python(
        """
        import importlib.metadata as m, json, sys
        print(json.dumps({"dists": sorted(d.metadata["Name"].lower() for d in m.distributions()),
                          "isolated": sys.prefix != sys.base_prefix}))
        """
    )
    assert found["isolated"]
    assert "tiertrace" in found["dists"] and "tiertrace-budget" in found["dists"]
    assert not {"mlflow", "tiertrace-mlflow", "tiertrace-otel", "tiertrace-prometheus"} & set(found["dists"])


def test_tiertrace_plugins_lists_the_tier(venv: Path, tmp_path: Path) -> None:
    listing = _run([str(venv / "bin" / "tiertrace"), "plugins", "--json"], _clean_env(venv), tmp_path, timeout=60)
    assert json.loads(listing.stdout) == [
        {"name": "budget", "distribution": "tiertrace-budget", "version": "0.1.0", "state": "active",
         "reason": None, "hooks": ["on_flush", "on_shutdown", "on_tracer_start", "on_workflow_end"]}
    ]
    text = _run([str(venv / "bin" / "tiertrace"), "plugins"], _clean_env(venv), tmp_path, timeout=60).stdout
    assert "budget  [tiertrace-budget 0.1.0]  active" in text


WORKFLOWS = """
    import json, logging, sys, warnings
    import tiertrace

    audit_path, action = sys.argv[1], sys.argv[2]
    section = {"max_cost_usd_per_run": 0.001, "action": action, "log_path": audit_path}
    tracer = tiertrace.configure({"observability": {"budget": section}})

    logged = []
    class Collect(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())
    logging.getLogger("tiertrace_budget").addHandler(Collect())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # gpt-4o: 1000 input tokens * $2.50/1M + 500 output * $10/1M = $0.0075 > $0.001
        with tracer.workflow("article_writer", inputs={"topic": "x"}) as expensive:
            with tracer.node("write"):
                with tracer.llm_call("gpt-4o", prompt="write it") as call:
                    call.record(response="text", input_tokens=1000, output_tokens=500)
        # gpt-4o-mini: 10 * $0.15/1M + 5 * $0.60/1M = $0.0000045 < $0.001
        with tracer.workflow("cheap") as cheap:
            with tracer.llm_call("gpt-4o-mini", prompt="hi") as call:
                call.record(response="hello", input_tokens=10, output_tokens=5)
    late = tracer.shutdown(timeout=5)
    print(json.dumps({
        "warnings": [[w.category.__module__ + "." + w.category.__name__, str(w.message)] for w in caught],
        "logged": logged,
        "late": late,
        "expensive": [expensive.trace_id, expensive.data.cost_usd],
        "cheap": [cheap.trace_id, cheap.data.cost_usd],
        "describe": tracer.tier("budget").describe(),
        "plugin_errors": {"/".join(k): v for k, v in tracer.health.plugin_errors.items()},
    }))
"""


def _audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_over_budget_warns_and_every_run_is_audited(run_python, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    out = run_python(WORKFLOWS, str(audit), "warn")

    assert out["plugin_errors"] == {} and out["late"] == []
    budget_warnings = [msg for cat, msg in out["warnings"] if cat == "tiertrace_budget.BudgetExceededWarning"]
    expensive_trace, expensive_cost = out["expensive"]
    assert expensive_cost == pytest.approx(0.0075)
    assert len(budget_warnings) == 1, out["warnings"]
    assert "'article_writer'" in budget_warnings[0] and expensive_trace in budget_warnings[0]
    assert "$0.007500" in budget_warnings[0] and "$0.001" in budget_warnings[0]
    assert out["logged"] == []
    assert str(audit) in out["describe"]

    lines = _audit_lines(audit)  # written by the writer thread, flushed by shutdown
    assert [line["workflow"]["name"] for line in lines] == ["article_writer", "cheap"]
    assert [line["over_budget"] for line in lines] == [True, False]
    record = lines[0]["workflow"]
    assert record["kind"] == "workflow"
    assert record["trace_id"] == expensive_trace and record["parent_span_id"] is None
    assert record["cost_usd"] == pytest.approx(0.0075)
    assert (record["input_tokens"], record["output_tokens"], record["llm_calls"]) == (1000, 500, 1)
    assert record["inputs"] == {"topic": "x"} and record["status"] == "ok"
    assert record["models"] == ["gpt-4o"] and isinstance(record["end_time_ns"], int)
    assert lines[1]["workflow"]["trace_id"] == out["cheap"][0]


def test_action_log_logs_instead_of_warning(run_python, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"earlier": "line"}\n', encoding="utf-8")
    out = run_python(WORKFLOWS, str(audit), "log")

    assert not [cat for cat, _ in out["warnings"] if cat.endswith("BudgetExceededWarning")]
    assert len(out["logged"]) == 1 and out["expensive"][0] in out["logged"][0]
    lines = _audit_lines(audit)
    assert lines[0] == {"earlier": "line"}  # the log is appended to
    assert [line["workflow"]["name"] for line in lines[1:]] == ["article_writer", "cheap"]


def test_bad_values_in_its_section_are_config_errors(run_python) -> None:
    errors = run_python(
        """
        import json
        import tiertrace
        cases = [{"max_cost_usd_per_run": -1.0}, {"max_cost_usd_per_run": "a lot"},
                 {"action": "email"}, {"max_cost_per_run": 1.0}, {"enabled": False}]
        found = []
        for section in cases:
            try:
                tiertrace.configure({"observability": {"budget": section}}, set_default=False).shutdown()
                found.append(None)
            except tiertrace.ConfigError as err:
                found.append(str(err))
        print(json.dumps(found))
        """
    )
    negative, wrong_type, bad_action, unknown_key, disabled = errors
    assert negative is not None and negative.startswith("observability.budget.max_cost_usd_per_run: -1.0")
    assert "> 0" in negative
    assert wrong_type is not None and wrong_type.startswith("observability.budget.max_cost_usd_per_run: 'a lot'")
    assert bad_action is not None and bad_action.startswith("observability.budget.action: 'email'")
    assert "'warn'" in bad_action and "'log'" in bad_action
    assert unknown_key is not None and "observability.budget.max_cost_per_run" in unknown_key
    assert "did you mean 'max_cost_usd_per_run'" in unknown_key
    assert disabled is None


def test_the_tier_adds_a_cli_command(venv: Path, run_python, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    run_python(WORKFLOWS, str(audit), "warn")
    report = _run([str(venv / "bin" / "tiertrace"), "budget-report", str(audit)], _clean_env(venv), tmp_path).stdout
    assert "2 runs" in report and "1 over budget" in report


def test_check_config_reports_a_bad_value_in_its_section(venv: Path, tmp_path: Path) -> None:
    config = tmp_path / "workflow.yaml"
    config.write_text("config:\n  observability:\n    budget:\n      max_cost_usd_per_run: 0\n", encoding="utf-8")
    result = subprocess.run([str(venv / "bin" / "tiertrace"), "check-config", str(config)],
                            env=_clean_env(venv), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "config.observability.budget.max_cost_usd_per_run: 0.0 must be > 0" in result.stderr


def test_the_examples_own_tests_pass_with_the_installed_test_kit(venv: Path) -> None:
    """The example's tests use the ``tiertrace_tracer`` fixture from the pytest11 entry point."""
    example_src = venv.parent / "tiertrace-budget-src"
    result = _run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                  _clean_env(venv), example_src, timeout=120)
    assert re.search(r"^\d+ passed in ", result.stdout, flags=re.MULTILINE), result.stdout  # none skipped
