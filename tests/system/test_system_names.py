"""Names MLflow refuses as metric, param or tag keys in log_batch ('.', '..', '/', '../x'):
a user's tag named like that must not cost the run, over the tracking server."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ODD_KEYS = [".", "..", "/", "../x", "a/../b", "/abs"]


def test_odd_tag_and_attribute_keys_reach_mlflow_over_the_server(stack):
    s = stack(otlp=None)
    with s.tracer.workflow("odd_keys", tags={key: f"tag {i}" for i, key in enumerate(ODD_KEYS)},
                           **{f"attr{i}": "x" for i in range(2)}) as wf:
        with s.tracer.node("n", **{"a": 1}):
            with s.tracer.llm_call("gpt-4o-mini") as call:
                call.record(input_tokens=10, output_tokens=5)
        wf.record(note="set during the run")
    assert s.tracer.flush(timeout=60) == []
    assert s.tracer.health.total_dropped() == 0, (s.tracer.health.dropped, s.tier("mlflow").writer.last_error)
    run = s.workflow_run(wf.trace_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["cost_usd"] == pytest.approx(wf.data.cost_usd)
    assert {key: run.data.tags.get(key) for key in ODD_KEYS if key != "a/../b"} == {
        key: f"tag {i}" for i, key in enumerate(ODD_KEYS) if key != "a/../b"}
    assert run.data.tags["a_.._b"] == "tag 4"  # a key that is not its own path is made safe
