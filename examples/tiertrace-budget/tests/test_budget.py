"""Tests of the example tier, written with tiertrace's test kit.

``pip install -e '.[test]' && pytest`` runs them: the ``tiertrace_tracer``
fixture comes from tiertrace itself (a core-only tracer with a recorder), so
the tier is registered by hand and no entry point is needed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from tiertrace.testing import check_tier

from tiertrace_budget import BudgetConfig, BudgetExceededWarning, BudgetTier


def test_the_tier_passes_the_conformance_check(tmp_path: Path) -> None:
    config = BudgetConfig(max_cost_usd_per_run=1.0, log_path=str(tmp_path / "audit.jsonl"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the check's odd values warn on purpose
        report = check_tier(lambda: BudgetTier(config))
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    # shutdown flushed a line for every workflow (the check also sends a stray end of its own)
    assert len(lines) >= report.workflows > 0


def test_a_run_over_budget_warns_and_is_audited(tiertrace_tracer, tiertrace_recorder, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    tiertrace_tracer.register(BudgetTier(BudgetConfig(max_cost_usd_per_run=0.001, log_path=str(audit))), name="budget")

    with pytest.warns(BudgetExceededWarning, match=r"'article_writer' .* cost \$0\.007500"):
        with tiertrace_tracer.workflow("article_writer") as run:
            with tiertrace_tracer.llm_call("gpt-4o", prompt="write") as call:  # $0.0075
                call.record(response="text", input_tokens=1000, output_tokens=500)
    tiertrace_tracer.flush(timeout=5)

    (line,) = [json.loads(text) for text in audit.read_text().splitlines()]
    assert line["over_budget"] is True
    assert line["workflow"]["trace_id"] == run.trace_id
    assert line["workflow"]["cost_usd"] == tiertrace_recorder.records("on_workflow_end")[0].cost_usd


def test_a_stuck_writer_drops_lines_and_counts_them(tiertrace_tracer, tmp_path: Path) -> None:
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: the writer is stuck
    tiertrace_tracer.register(BudgetTier(BudgetConfig(log_path=str(fifo), queue_size=2)), name="budget")

    for _ in range(5):
        with tiertrace_tracer.workflow("quick"):
            pass

    assert tiertrace_tracer.health.dropped == {("budget", "queue_full"): 3}
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # unblock the writer so it can stop
    try:
        assert tiertrace_tracer.shutdown(timeout=5) == []
    finally:
        os.close(reader)


def test_unpriced_calls_are_named_and_warnings_as_errors_keep_the_line(tiertrace_tracer, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    tiertrace_tracer.register(BudgetTier(BudgetConfig(max_cost_usd_per_run=0.001, log_path=str(audit))), name="budget")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the core's unpriced-model warning
        warnings.simplefilter("error", BudgetExceededWarning)  # the hook raises; the core catches it
        with tiertrace_tracer.workflow("mixed"):
            with tiertrace_tracer.llm_call("gpt-4o") as call:
                call.record(response="text", input_tokens=1000, output_tokens=500)
            with tiertrace_tracer.llm_call("my-local-model") as call:  # no known price
                call.record(response="text", input_tokens=10, output_tokens=10)
    tiertrace_tracer.flush(timeout=5)

    assert tiertrace_tracer.health.plugin_errors == {("budget", "on_workflow_end"): 1}
    assert "(plus 1 unpriced LLM calls)" in tiertrace_tracer.health.last_errors[("budget", "on_workflow_end")]
    (line,) = [json.loads(text) for text in audit.read_text().splitlines()]
    assert line["over_budget"] is True and line["workflow"]["unpriced_calls"] == 1
