"""Cost queries: tiertrace_mlflow.costs() and the `tiertrace costs` command."""

from __future__ import annotations

import json
import time

import pytest

import tiertrace
import tiertrace_mlflow
from tiertrace.cli import main as cli_main
from tiertrace_mlflow.costs import parse_since

from conftest import copy_store


@pytest.fixture(scope="module")
def costed_store(tmp_path_factory, empty_store):
    """Workflows of two names, three teams (one run untagged), two models, a failure,
    plus node, sub-workflow and optimization runs that must not be summed."""
    sqlite_uri = copy_store(empty_store, tmp_path_factory.mktemp("costs") / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERTRACE_LOAD_PLUGINS", "mlflow")
        tracer = tiertrace.configure({"observability": {"mlflow": {
            "tracking_uri": sqlite_uri, "experiment_name": "costs"}}}, set_default=False)
    expected: list[tiertrace.WorkflowRecord] = []

    def workflow(name: str, tags: dict[str, str], model: str, tokens: int, fail: bool = False) -> None:
        try:
            with tracer.workflow(name, tags=tags) as wf:
                with tracer.node("n"):
                    with tracer.llm_call(model) as call:
                        call.record(input_tokens=tokens, output_tokens=tokens // 2)
                    with tracer.workflow("sub"):  # nested: already in the outer totals
                        with tracer.llm_call("gpt-4o-mini") as call:
                            call.record(input_tokens=10, output_tokens=10)
                if fail:
                    raise ValueError("boom")
        except ValueError:
            pass
        expected.append(wf.data)

    workflow("summarize", {"team": "a"}, "gpt-4o", 1000)
    workflow("summarize", {"team": "a"}, "gpt-4o", 2000, fail=True)
    workflow("summarize", {"team": "b"}, "gemini-1.5-flash", 3000)
    workflow("translate", {"team": "b"}, "gpt-4o", 4000)
    workflow("translate", {}, "unpriced-model", 5000)
    tracer.optimization(optimizer="LabeledFewShot", baseline={"acc": 0.1}, optimized={"acc": 0.2})
    tracer.flush(timeout=60)
    tracer.shutdown()
    assert tracer.health.dropped == {}
    return sqlite_uri, expected


def test_costs_by_workflow_sum_only_top_level_workflow_runs(costed_store):
    uri, expected = costed_store
    rows = {row.key: row for row in tiertrace_mlflow.costs("1d", "workflow", tracking_uri=uri,
                                                           experiment_name="costs")}
    assert set(rows) == {"summarize", "translate"}
    for name, row in rows.items():
        mine = [wf for wf in expected if wf.name == name]
        assert row.runs == len(mine)
        assert row.cost_usd == pytest.approx(sum(wf.cost_usd for wf in mine))
        assert row.input_tokens == sum(wf.input_tokens for wf in mine)
        assert row.llm_calls == sum(wf.llm_calls for wf in mine) == 2 * len(mine)
    assert rows["summarize"].failed_runs == 1
    assert rows["translate"].unpriced_calls == 1
    assert rows["summarize"].cost_usd > 0


def test_costs_by_model_and_by_tag(costed_store):
    uri, expected = costed_store
    by_model = {row.key: row for row in tiertrace_mlflow.costs("1d", "model", tracking_uri=uri,
                                                               experiment_name="costs")}
    assert set(by_model) == {"gpt-4o", "gemini-1.5-flash", "gpt-4o-mini", "unpriced-model"}
    assert by_model["gpt-4o"].input_tokens == 7000 and by_model["gpt-4o"].runs == 3
    assert by_model["gpt-4o-mini"].llm_calls == 5  # the sub-workflows' calls, counted once
    assert by_model["unpriced-model"].cost_usd == 0 and by_model["unpriced-model"].unpriced_calls == 1
    assert sum(row.cost_usd for row in by_model.values()) == pytest.approx(sum(wf.cost_usd for wf in expected))

    by_team = {row.key: row for row in tiertrace_mlflow.costs("1d", "tag:team", tracking_uri=uri,
                                                              experiment_name="costs")}
    assert {key: row.runs for key, row in by_team.items()} == {"a": 2, "b": 2, "(none)": 1}
    rows = tiertrace_mlflow.costs("1d", "tag:team", tracking_uri=uri, experiment_name="costs")
    assert [row.cost_usd for row in rows] == sorted((row.cost_usd for row in rows), reverse=True)


def test_costs_time_window_and_missing_experiment(costed_store):
    uri, _ = costed_store
    assert tiertrace_mlflow.costs("1d", until="1h", tracking_uri=uri, experiment_name="costs") == []
    assert tiertrace_mlflow.costs(time.time() + 60, tracking_uri=uri, experiment_name="costs") == []
    assert tiertrace_mlflow.costs("30d", tracking_uri=uri, experiment_name="no_such") == []


def test_parse_since():
    now = 1_000_000.0
    assert parse_since("30d", now) == int((now - 30 * 86400) * 1000)
    assert parse_since("90m", now) == int((now - 5400) * 1000)
    assert parse_since("2w", now) == int((now - 14 * 86400) * 1000)
    assert parse_since("2026-01-01T00:00:00+00:00") == 1767225600000
    for bad in ("yesterday", "30x", "", "-1d"):
        with pytest.raises(tiertrace.ConfigError, match="since"):
            parse_since(bad)
    with pytest.raises(tiertrace.ConfigError, match="by: 'team'"):
        tiertrace_mlflow.costs("1d", "team")


def test_cli_costs_command(costed_store, capsys):
    uri, expected = costed_store
    code = cli_main(["costs", "--since", "1d", "--by", "workflow", "--tracking-uri", uri,
                     "--experiment", "costs", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["key"]: row["runs"] for row in rows} == {"summarize": 3, "translate": 2}

    assert cli_main(["costs", "--by", "tag:team", "--tracking-uri", uri, "--experiment", "costs"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["tag:team", "runs", "failed", "cost_usd", "input_tok",
                                             "output_tok", "llm_calls", "unpriced"]
    assert table.splitlines()[-1].split()[:2] == ["TOTAL", "5"]

    assert cli_main(["costs", "--by", "nonsense", "--tracking-uri", uri]) == 2
    assert "by: 'nonsense'" in capsys.readouterr().err


def test_per_model_totals_agree_with_the_workflow_totals(make_tracer, sqlite_uri):
    """A failed call without tokens has no cost but is not 'unpriced' (as the core counts)."""
    tracer = make_tracer(tracking_uri=sqlite_uri)
    with tracer.workflow("w") as wf:
        with pytest.raises(TimeoutError):
            with tracer.llm_call("gpt-4o-mini"):
                raise TimeoutError("no answer")
        with tracer.llm_call("gpt-4o-mini") as call:
            call.record(input_tokens=10, output_tokens=5)
        with tracer.llm_call("unknown-model") as call:
            call.record(input_tokens=10, output_tokens=5)
    tracer.flush(timeout=60)
    by_model = {row.key: row for row in tiertrace_mlflow.costs("1d", "model", tracking_uri=sqlite_uri)}
    (by_workflow,) = tiertrace_mlflow.costs("1d", "workflow", tracking_uri=sqlite_uri)
    assert by_model["gpt-4o-mini"].unpriced_calls == 0 and by_model["gpt-4o-mini"].llm_calls == 2
    assert by_model["unknown-model"].unpriced_calls == 1
    assert sum(row.unpriced_calls for row in by_model.values()) == by_workflow.unpriced_calls == wf.data.unpriced_calls
    assert sum(row.cost_usd for row in by_model.values()) == pytest.approx(by_workflow.cost_usd)
