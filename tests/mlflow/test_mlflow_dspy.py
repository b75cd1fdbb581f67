"""A real DSPy optimizer on DummyLM, evaluated with dspy.Evaluate, recorded in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import by_kind, client_for, runs_of

dspy = pytest.importorskip("dspy", reason="dspy is in the test extra of tiertrace-mlflow")

QA = [
    ("What is the capital of France?", "Paris"),
    ("What is 2+2?", "4"),
    ("What colour is the sky?", "blue"),
    ("Which is the largest planet?", "Jupiter"),
]


def exact_match(example, prediction, trace=None) -> bool:
    return example.answer == prediction.answer


OPTIMIZERS = {
    "LabeledFewShot": (lambda: dspy.LabeledFewShot(k=4), {"settings.k": "4"}),
    "BootstrapFewShot": (lambda: dspy.BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=4,
                                                       max_labeled_demos=4),
                         {"settings.max_bootstrapped_demos": "4", "settings.max_labeled_demos": "4",
                          "settings.max_rounds": "1"}),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_compile_is_an_optimization_run(make_tracer, sqlite_uri, name):
    from dspy.utils import DummyLM

    from tiertrace_mlflow.dspy import record_compile

    make_optimizer, expected_params = OPTIMIZERS[name]
    tracer = make_tracer(tracking_uri=sqlite_uri, experiment_name="dspy")
    examples = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in QA]
    # Without demos the LM answers "no idea"; with a demo whose question is the
    # one asked, DummyLM answers like the demo: the optimizer's demos make it right.
    lm = DummyLM([{"answer": "no idea"}] * 200, follow_examples=True)
    with dspy.context(lm=lm):
        compiled = record_compile(tracer, make_optimizer(), dspy.Predict("question -> answer"),
                                  trainset=examples, devset=examples, metric=exact_match)
    assert len(compiled.demos) == len(examples)
    assert tracer.flush(timeout=60) == []

    (run,) = by_kind(runs_of(sqlite_uri, "dspy"), "optimization")
    metrics = run.data.metrics
    assert metrics["baseline_exact_match"] == 0.0
    assert metrics["optimized_exact_match"] == 100.0
    assert metrics["delta_exact_match"] == 100.0
    assert metrics["duration_s"] >= 0
    assert run.data.params == {**expected_params, "settings.trainset_size": "4", "settings.devset_size": "4"}
    assert run.data.tags["tiertrace.optimizer"] == name
    assert run.info.run_name == f"{name}:Predict"
    program = json.loads(Path(client_for(sqlite_uri).download_artifacts(
        run.info.run_id, "tiertrace/program.json")).read_text())
    assert {demo["answer"] for demo in program["demos"]} == {a for _, a in QA}
    assert tracer.health.dropped == {}
