"""Overload: records come faster than the MLflow backend takes them.

Found by benchmarks/soak.py: when the MLflow tier's queue was full, dropping a
run's *end* record after its start was written left the run RUNNING in MLflow
for good, and the tier held that run's bookkeeping in memory for as long as the
process lived. The end of a run whose start was queued is now always queued.
"""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.slow


def test_mlflow_overload_drops_records_but_closes_every_run_it_opened(stack):
    queue_size = 60
    s = stack(otlp=None, local_store=True, mlflow={"queue_size": queue_size})
    tracer = s.tracer
    writer = s.tier("mlflow").writer
    longest = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.001):
            longest[0] = max(longest[0], writer.pending)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workflows = []
    try:
        for i in range(60):  # 100 spans each, as fast as possible: far more than the queue holds
            with tracer.workflow("overload", inputs={"i": i}) as wf:
                with tracer.node("work"):
                    for _ in range(98):
                        with tracer.llm_call("gpt-4o-mini", prompt="p") as call:
                            call.record(response="r", input_tokens=10, output_tokens=5)
            workflows.append(wf.data)
    finally:
        done.set()
        watcher.join()
    assert tracer.flush(timeout=120) == []
    assert tracer.health.total_dropped("mlflow") > 0  # it was overloaded
    # Bounded: the queue, plus at most the runs open at once (a workflow and its node).
    assert longest[0] <= queue_size + 1 + 2, longest[0]

    backend = s.tier("mlflow").backend
    assert backend._runs == {} and backend._by_trace == {}  # nothing held for runs that ended
    runs = s.runs()
    assert runs, "no run at all was written"
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    costs = {w.trace_id: w.cost_usd for w in workflows}
    for run in runs:
        if run.data.tags["tiertrace.kind"] == "workflow":
            assert run.data.metrics["cost_usd"] == pytest.approx(costs[run.data.tags["tiertrace.trace_id"]])
    assert tracer.shutdown(timeout=20) == []
