"""The pytest fixtures arrive through the pytest11 entry point of the installed core."""

from __future__ import annotations


def test_fixture_gives_a_tracer_with_a_recorder(tiertrace_tracer, tiertrace_recorder):
    with tiertrace_tracer.workflow("wf"):
        with tiertrace_tracer.llm_call("gpt-4o") as call:
            call.record(input_tokens=1, output_tokens=1)
    assert tiertrace_recorder.hooks() == ["on_workflow_start", "on_llm_call_start", "on_llm_call_end",
                                          "on_workflow_end"]
    assert tiertrace_tracer.tiers[0].name == "recorder" and tiertrace_recorder.tracer is tiertrace_tracer


def test_recorder_rejects_unknown_hook_names(tiertrace_recorder):
    import pytest

    with pytest.raises(ValueError, match="unknown hook"):
        tiertrace_recorder.records("on_node_ended")
