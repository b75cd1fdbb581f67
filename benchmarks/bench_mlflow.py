"""MLflow tier benchmark, run by hand (never by CI):

    python benchmarks/bench_mlflow.py [--workflows 200] [--cost-runs 2000] [--repeat 5]

Side by side, in one process, each against its own copy of an empty SQLite store:

1. Time a workflow spends on its own thread (2 nodes, 2 LLM calls, 1 tool call):
   - core only (no tier loaded: the core's no-listener fast path),
   - core with a do-nothing plugin on the same hooks (the core builds the records),
   - tiertrace with the MLflow tier (hooks only queue),
   - anchor: the bare MLflow SDK logging the same runs from the workflow thread
     (MlflowClient: create_run, log_batch, set_terminated per workflow and node).
2. Time until N workflows are written: the tier (workflows, then flush) vs the anchor.
3. Cost queries over ``--cost-runs`` workflow runs (plus one node run each):
   ``tiertrace_mlflow.costs(by=...)`` vs the anchors ``client.search_runs`` with the same
   filter (the floor) and ``mlflow.search_runs`` of the whole experiment into pandas,
   summed there (what one would write without the tag filter).

Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import tiertrace  # noqa: E402


def workflow_body(tracer: Any, index: int) -> None:
    with tracer.workflow("article_writer", inputs={"topic": f"t{index}"}, tags={"team": "ab"[index % 2]}):
        with tracer.node("research"):
            with tracer.llm_call("gemini-1.5-flash", prompt="research") as call:
                call.record(response="notes", input_tokens=812, output_tokens=230)
            with tracer.tool_call("serper_search", args={"q": "x"}) as tool:
                tool.record(result=["hit"])
        with tracer.node("write"):
            with tracer.llm_call("gpt-4o-mini", prompt="write") as call:
                call.record(response="article", input_tokens=100, output_tokens=50)


class NoOpPlugin:
    """The MLflow tier's record hooks, doing nothing."""

    @tiertrace.hookimpl
    def on_workflow_start(self, workflow: Any) -> None: ...
    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: Any) -> None: ...
    @tiertrace.hookimpl
    def on_node_start(self, node: Any) -> None: ...
    @tiertrace.hookimpl
    def on_node_end(self, node: Any) -> None: ...
    @tiertrace.hookimpl
    def on_llm_call_end(self, call: Any) -> None: ...
    @tiertrace.hookimpl
    def on_tool_call_end(self, call: Any) -> None: ...


def bare_sdk_workflow(client: Any, experiment_id: str, index: int) -> None:
    """The anchor: the same runs, logged with the bare SDK on the workflow's thread."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    run = client.create_run(experiment_id, run_name="article_writer",
                            tags={"tiertrace.kind": "workflow", "team": "ab"[index % 2]})
    for node, tokens in (("research", (812, 230)), ("write", (100, 50))):
        child = client.create_run(experiment_id, run_name=node, tags={"mlflow.parentRunId": run.info.run_id})
        client.log_batch(child.info.run_id, metrics=[Metric("input_tokens", tokens[0], now, 0),
                                                     Metric("output_tokens", tokens[1], now, 0)])
        client.set_terminated(child.info.run_id)
    client.log_batch(run.info.run_id, metrics=[Metric("input_tokens", 912, now, 0),
                                               Metric("output_tokens", 280, now, 0)],
                     params=[Param("input.topic", f"t{index}")])
    client.set_terminated(run.info.run_id)


def timed(fn: Callable[[int], None], count: int) -> list[float]:
    samples = []
    for index in range(count):
        started = time.perf_counter_ns()
        fn(index)
        samples.append((time.perf_counter_ns() - started) / 1e3)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--cost-runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import mlflow
    from mlflow import MlflowClient

    import tiertrace_mlflow

    folder = Path(tempfile.mkdtemp(prefix="bench_mlflow_"))
    template = folder / "empty.db"
    MlflowClient(f"sqlite:///{template}").search_experiments()  # create the schema once

    def store(name: str) -> str:
        shutil.copyfile(template, folder / name)
        return f"sqlite:///{folder / name}"

    print(f"mlflow {mlflow.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} cpus, store: SQLite")

    # 1 + 2. overhead on the workflow thread, and time until written ---------------------
    os.environ["TIERTRACE_LOAD_PLUGINS"] = ""
    core = tiertrace.configure({"observability": {}}, set_default=False)
    timed(lambda i: workflow_body(core, i), 50)  # warm up
    core_us = timed(lambda i: workflow_body(core, i), args.workflows)
    core.shutdown()

    # The core builds records only when some plugin listens: a do-nothing plugin with the
    # tier's hooks separates the core's record-building from the tier's own cost.
    listening = tiertrace.configure({"observability": {}}, set_default=False)
    listening.register(NoOpPlugin(), name="noop")
    timed(lambda i: workflow_body(listening, i), 50)
    noop_us = timed(lambda i: workflow_body(listening, i), args.workflows)
    listening.shutdown()

    os.environ["TIERTRACE_LOAD_PLUGINS"] = "mlflow"
    tier_uri = store("tier.db")
    tracer = tiertrace.configure({"observability": {"mlflow": {"tracking_uri": tier_uri}}}, set_default=False)
    tracer.flush(timeout=120)  # the writer has imported mlflow and opened the store
    started = time.perf_counter()
    tier_us = timed(lambda i: workflow_body(tracer, i), args.workflows)
    tracer.flush(timeout=600)
    tier_total = time.perf_counter() - started
    assert not tracer.health.dropped, tracer.health.dropped
    tracer.shutdown()

    bare_uri = store("bare.db")
    client = MlflowClient(bare_uri)
    experiment_id = client.create_experiment("bare")
    bare_sdk_workflow(client, experiment_id, -1)  # warm up
    started = time.perf_counter()
    bare_us = timed(lambda i: bare_sdk_workflow(client, experiment_id, i), args.workflows)
    bare_total = time.perf_counter() - started

    print(f"\n1. time on the workflow's thread per workflow (median of {args.workflows}; "
          "2 nodes, 2 LLM calls, 1 tool call)")
    print(f"   core only, no listener      {median(core_us):10.1f} us   (the core's no-listener fast path)")
    print(f"   core + do-nothing plugin    {median(noop_us):10.1f} us   (records built and handed out)")
    print(f"   tiertrace + MLflow tier     {median(tier_us):10.1f} us   "
          f"(the tier's own hooks add {median(tier_us) - median(noop_us):.1f} us)")
    print(f"   anchor: bare MLflow SDK     {median(bare_us):10.1f} us   "
          f"ratio tier/anchor = {median(tier_us) / median(bare_us):.4f}")
    print(f"\n2. time until {args.workflows} workflows are written")
    print(f"   tiertrace + MLflow tier     {tier_total:8.2f} s  (background writer, then flush)")
    print(f"   anchor: bare MLflow SDK     {bare_total:8.2f} s  ratio {tier_total / bare_total:.2f}")

    # 3. cost queries ---------------------------------------------------------------------
    cost_uri = store("costs.db")
    tracer = tiertrace.configure({"observability": {"mlflow": {
        "tracking_uri": cost_uri, "experiment_name": "costs", "queue_size": 100_000}}}, set_default=False)
    started = time.perf_counter()
    for index in range(args.cost_runs):
        with tracer.workflow(f"wf{index % 5}", tags={"team": "abc"[index % 3]}):
            with tracer.node("n"):
                with tracer.llm_call(("gpt-4o", "gemini-1.5-flash")[index % 2]) as call:
                    call.record(input_tokens=1000, output_tokens=100)
    tracer.flush(timeout=3600)
    assert not tracer.health.dropped, tracer.health.dropped
    tracer.shutdown()
    print(f"\n3. cost queries over {args.cost_runs} workflow runs + {args.cost_runs} node runs "
          f"(written in {time.perf_counter() - started:.1f} s), median of {args.repeat}")

    def sample(fn: Callable[[], Any]) -> float:
        fn()  # warm up: open the store, fill caches
        values = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            fn()
            values.append(time.perf_counter() - started)
        return median(values)

    experiment = MlflowClient(cost_uri).get_experiment_by_name("costs").experiment_id
    check = tiertrace_mlflow.costs("1d", "workflow", tracking_uri=cost_uri, experiment_name="costs")
    assert sum(row.runs for row in check) == args.cost_runs, check

    def raw_filtered() -> None:
        query_client = MlflowClient(cost_uri)
        token = None
        while True:
            page = query_client.search_runs([experiment], "tags.`tiertrace.kind` = 'workflow'",
                                            max_results=10_000, page_token=token)
            token = page.token
            if not token:
                break

    def pandas_all() -> None:
        mlflow.set_tracking_uri(cost_uri)
        frame = mlflow.search_runs(experiment_ids=[experiment], max_results=100_000)
        frame[frame["tags.tiertrace.kind"] == "workflow"].groupby("tags.tiertrace.workflow")["metrics.cost_usd"].sum()

    floor = sample(raw_filtered)
    naive = sample(pandas_all)
    print(f"   anchor: client.search_runs, same filter   {floor * 1000:8.1f} ms")
    print(f"   anchor: mlflow.search_runs -> pandas       {naive * 1000:8.1f} ms")
    for by in ("workflow", "model", "tag:team"):
        took = sample(lambda: tiertrace_mlflow.costs("1d", by, tracking_uri=cost_uri, experiment_name="costs"))
        print(f"   costs(by={by!r:11})                  {took * 1000:8.1f} ms   "
              f"ratio to filtered search {took / floor:.2f}, to pandas {took / naive:.2f}")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
