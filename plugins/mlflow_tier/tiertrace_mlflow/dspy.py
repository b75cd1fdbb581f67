"""Report a DSPy optimization (a ``compile``) through tiertrace.

``record_compile`` evaluates the program before and after the optimizer
runs, with ``dspy.Evaluate`` on the same dev set, and reports both scores with
``tracer.optimization(...)``. Every tier sees it; the MLflow tier makes it a
run with ``baseline_<metric>``, ``optimized_<metric>`` and ``delta_<metric>`` metrics, the optimizer's
settings as params and the optimized program (``dump_state()``) as an
artifact.

    compiled = record_compile(tracer, dspy.BootstrapFewShot(metric=exact), program,
                              trainset=train, devset=dev, metric=exact)
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Optional, Sequence

__all__ = ["record_compile", "optimizer_settings"]


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """The optimizer's plain settings (numbers, strings, booleans) as the params of the run:
    its constructor's arguments, as the instance keeps them (not its internal counters)."""
    try:
        accepted = set(inspect.signature(type(optimizer).__init__).parameters) - {"self"}
    except (TypeError, ValueError):
        accepted = set()
    settings = {}
    for key, value in vars(optimizer).items():
        if key in accepted and isinstance(value, (int, float, str, bool)):
            settings[key] = value
    return settings


def record_compile(
    tracer: Any,
    optimizer: Any,
    program: Any,
    trainset: Sequence[Any],
    devset: Sequence[Any],
    metric: Callable[..., Any],
    *,
    name: Optional[str] = None,
    num_threads: int = 1,
    **compile_kwargs: Any,
) -> Any:
    """Compile ``program`` with ``optimizer`` and report baseline vs optimized scores.

    ``metric(example, prediction, trace=None)`` is used for both evaluations;
    its ``__name__`` names the metric (``dspy.Evaluate`` gives a percentage).
    Extra keyword arguments go to ``optimizer.compile``. Returns the compiled
    program. The report is made even when the optimized program scores lower.
    """
    import dspy

    evaluate = dspy.Evaluate(devset=list(devset), metric=metric, num_threads=num_threads,
                             display_progress=False, display_table=False)
    metric_name = getattr(metric, "__name__", "score")
    baseline = evaluate(program).score
    started = time.perf_counter()
    compiled = optimizer.compile(program, trainset=list(trainset), **compile_kwargs)
    duration_s = time.perf_counter() - started
    optimized = evaluate(compiled).score
    settings = {**optimizer_settings(optimizer), "trainset_size": len(trainset), "devset_size": len(devset)}
    try:
        state: Any = compiled.dump_state()
    except Exception:  # a custom module that cannot dump itself: keep its text form
        state = str(compiled)
    tracer.optimization(
        optimizer=type(optimizer).__name__,
        baseline={metric_name: baseline},
        optimized={metric_name: optimized},
        settings=settings,
        program=state,
        name=name or f"{type(optimizer).__name__}:{type(program).__name__}",
        duration_s=duration_s,
    )
    return compiled
