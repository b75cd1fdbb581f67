"""Every benchmark of the project, each side by side with its anchor, in one markdown report.

Run by hand (never by CI), on a machine as quiet as you can get:

    python benchmarks/report.py                       # writes benchmarks/report.md
    python benchmarks/report.py --quick --out /tmp/r.md

One after another, each in a fresh process:

- ``bench_core.py``: the core alone against the OpenTelemetry API's no-op span;
- ``bench_mlflow.py``, ``bench_otel.py``, ``bench_prometheus.py``: each tier
  against the bare SDK doing the same work (bench_otel also: a LangChain chain
  against traceloop's instrumentor, and a dead OTLP endpoint);
- the system benchmarks in this file (``--system``): all three tiers against
  the same records written by hand with the three SDKs, and all three tiers
  with every backend dead (a port that accepts and never answers) against the
  same tiers with live backends.

The report has the machine (nproc, CPU model, python, load), a summary table
of medians and ratios, and each benchmark's own output. The machine's load is
printed before and after: a shared machine makes absolute numbers noisy,
ratios within one benchmark much less so (variants are interleaved).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Row = tuple[str, str, str, str, str]  # benchmark, measure, tiertrace, anchor, ratio


# --- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    versions = {}
    for module in ("mlflow", "opentelemetry.sdk", "prometheus_client", "langchain_core"):
        try:
            from importlib.metadata import version

            versions[module] = version({"opentelemetry.sdk": "opentelemetry-sdk",
                                        "prometheus_client": "prometheus-client",
                                        "langchain_core": "langchain-core"}.get(module, module))
        except Exception:
            versions[module] = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "commit": commit or "?",
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- running the benchmarks ------------------------------------------------------------------


def run(argv: list[str], env: Optional[dict[str, str]] = None, timeout: float = 1800) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})})
    took = time.perf_counter() - started
    output = done.stdout
    if done.returncode != 0:
        output += f"\n[exit status {done.returncode}]\n{done.stderr[-3000:]}"
    return output, took


def _num(pattern: str, text: str) -> Optional[float]:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "?"
    return f"{value:,.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or not b:
        return "?"
    ratio = a / b
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def parse_core(text: str) -> list[Row]:
    rows = []
    anchor = _num(r"\| OTel API no-op tracer \(anchor\) \| ([\d.]+)", text)
    for label, value, ratio in re.findall(r"\| (tiertrace[^|]*) \| ([\d.]+) \| ([\d.]+) \|", text):
        rows.append(("core", f"{label.strip()} (per span) vs OTel API no-op span", f"{float(value):.3f} µs",
                     _fmt(anchor, "µs"), ratio))
    return rows


def parse_mlflow(text: str) -> list[Row]:
    tier = _num(r"tiertrace \+ MLflow tier\s+([\d.]+) us", text)
    bare = _num(r"anchor: bare MLflow SDK\s+([\d.]+) us", text)
    written = _num(r"tiertrace \+ MLflow tier\s+([\d.]+) s", text)
    written_bare = _num(r"anchor: bare MLflow SDK\s+([\d.]+) s", text)
    floor = _num(r"client.search_runs, same filter\s+([\d.]+) ms", text)
    by_workflow = _num(r"costs\(by='workflow' \)\s+([\d.]+) ms", text)
    return [
        ("mlflow", "workflow-thread time per workflow: tier vs bare MlflowClient calls",
         _fmt(tier, "µs"), _fmt(bare, "µs"), _ratio(tier, bare)),
        ("mlflow", "time until the workflows are written (background writer + flush)",
         _fmt(written, "s"), _fmt(written_bare, "s"), _ratio(written, written_bare)),
        ("mlflow", "cost query by workflow vs filtered search_runs", _fmt(by_workflow, "ms"), _fmt(floor, "ms"),
         _ratio(by_workflow, floor)),
    ]


def parse_otel(text: str) -> list[Row]:
    try:
        data = json.loads(text[text.index("{"):text.rindex("}") + 1])
    except ValueError:
        return []
    rows = []
    per_span = data.get("per_span", {}).get("per_span_us", {})
    if per_span:
        rows.append(("opentelemetry", "per span: tier vs bare OTel SDK (same spans and attributes)",
                     _fmt(per_span.get("tiertrace + otel tier"), "µs"), _fmt(per_span.get("bare OTel SDK"), "µs"),
                     _ratio(per_span.get("tiertrace + otel tier"), per_span.get("bare OTel SDK"))))
    chain = data.get("langchain", {}).get("overhead_us", {})
    if chain:
        rows.append(("opentelemetry", "LangChain chain: overhead per invoke, tiertrace handler vs traceloop instrumentor",
                     _fmt(chain.get("tiertrace handler"), "µs"), _fmt(chain.get("LangchainInstrumentor"), "µs"),
                     _ratio(chain.get("tiertrace handler"), chain.get("LangchainInstrumentor"))))
    dead = data.get("dead_endpoint", {})
    if dead:
        spans = dead.get("per_span_us", {})
        rows.append(("opentelemetry", "per span: dead OTLP endpoint vs no-op exporter",
                     _fmt(spans.get("dead endpoint"), "µs"), _fmt(spans.get("no-op exporter"), "µs"),
                     _ratio(spans.get("dead endpoint"), spans.get("no-op exporter"))))
        exits = dead.get("process_exit_s", {})
        ours = next((v for k, v in exits.items() if k.startswith("tiertrace")), None)
        sdk = next((v for k, v in exits.items() if k.startswith("bare")), None)
        rows.append(("opentelemetry", "process exit with a dead endpoint: tiertrace vs bare SDK defaults",
                     _fmt(ours, "s"), _fmt(sdk, "s"), _ratio(ours, sdk)))
    return rows


def parse_prometheus(text: str) -> list[Row]:
    tier = _num(r"tiertrace-prometheus hooks\s+([\d.]+) ns/record", text)
    hand = _num(r"prometheus_client by hand\s+([\d.]+) ns/record", text)
    rows = [("prometheus", "per record: tier hooks vs prometheus_client by hand", _fmt(tier, "ns"), _fmt(hand, "ns"),
             _ratio(tier, hand))]
    for label, tier_ms, hand_ms in re.findall(
            r"scrape, ([^\n]*?):\n\s+tiertrace-prometheus registry\s+([\d.]+) ms\n\s+hand-made registry\s+([\d.]+) ms",
            text):
        rows.append(("prometheus", f"scrape, {label}", f"{float(tier_ms):.1f} ms", f"{float(hand_ms):.1f} ms",
                     _ratio(float(tier_ms), float(hand_ms))))
    return rows


def parse_system(text: str) -> list[Row]:
    try:
        data = json.loads(text[text.index("{"):text.rindex("}") + 1])
    except ValueError:
        return []
    us = data["per_workflow_us"]
    return [
        ("all three tiers", "workflow-thread time per workflow: tiertrace vs the same records by hand with the 3 SDKs",
         _fmt(us["tiertrace, all three tiers"], "µs"), _fmt(us["by hand, three SDKs"], "µs"),
         _ratio(us["tiertrace, all three tiers"], us["by hand, three SDKs"])),
        ("all three tiers", "the same, core alone (no tier) vs by hand",
         _fmt(us["tiertrace, no tier"], "µs"), _fmt(us["by hand, three SDKs"], "µs"),
         _ratio(us["tiertrace, no tier"], us["by hand, three SDKs"])),
        ("all three tiers", "every backend dead vs every backend live (per workflow)",
         _fmt(us["tiertrace, all three, dead backends"], "µs"), _fmt(us["tiertrace, all three tiers"], "µs"),
         _ratio(us["tiertrace, all three, dead backends"], us["tiertrace, all three tiers"])),
        ("all three tiers", "shutdown with every backend dead (bounded by shutdown_timeout 3 s)",
         _fmt(data["dead_shutdown_s"], "s"), "3 s", _ratio(data["dead_shutdown_s"], 3.0)),
    ]


# --- the system benchmark (runs in its own process: report.py --system) ---------------------------


def seed_workflow(tracer: Any) -> None:
    with tracer.workflow("article_writer", inputs={"topic": "x"}, tags={"team": "a"}):
        with tracer.node("research"):
            with tracer.llm_call("gemini-1.5-flash", prompt="facts") as call:
                call.record(response="notes", input_tokens=812, output_tokens=230)
            tracer.retry("timeout")
            tracer.validation_failure(["bad json"], raw_output="{")
            with tracer.tool_call("serper_search", args={"q": "x"}) as tool:
                tool.record(result=["hit"])
        with tracer.node("write"):
            with tracer.llm_call("gemini-1.5-flash", prompt="write") as call:
                call.record(response="article", input_tokens=1000, output_tokens=500)


class ByHand:
    """The seed workflow's records written by hand with the three SDKs, non-blocking like
    the tiers: OTel SDK spans (a BatchSpanProcessor, no-op exporter), prometheus_client
    updates with .labels(), and the same MLflow runs from a background thread fed by a queue."""

    def __init__(self, tracking_uri: str):
        import queue

        from mlflow import MlflowClient
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from prometheus_client import CollectorRegistry, Counter, Histogram

        class NoOp(SpanExporter):
            def export(self, spans: Any) -> Any:
                return SpanExportResult.SUCCESS

        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(NoOp()))
        self.tracer = self.provider.get_tracer("by-hand")
        registry = CollectorRegistry()
        self.runs = Counter("workflow_runs", "", ["workflow", "status"], registry=registry)
        self.duration = Histogram("workflow_duration_seconds", "", ["workflow"], registry=registry)
        self.node_duration = Histogram("node_duration_seconds", "", ["workflow", "node"], registry=registry)
        self.llm_calls = Counter("llm_calls", "", ["model", "status"], registry=registry)
        self.tokens = Counter("llm_tokens", "", ["model", "type"], registry=registry)
        self.cost = Counter("llm_cost_usd", "", ["model"], registry=registry)
        self.llm_duration = Histogram("llm_call_duration_seconds", "", ["model"], registry=registry)
        self.tools = Counter("tool_calls", "", ["tool", "status"], registry=registry)
        self.retries = Counter("retries", "", ["workflow", "target"], registry=registry)
        self.failures = Counter("validation_failures", "", ["workflow", "node"], registry=registry)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = self.client.create_experiment(f"by-hand-{time.time_ns()}")
        self.queue: Any = queue.SimpleQueue()
        threading.Thread(target=self._write, daemon=True).start()

    def _write(self) -> None:
        """What the MLflow tier writes too: a run per workflow with a records.json artifact,
        and a nested run per node, each with its totals, then terminated."""
        from mlflow.entities import Metric

        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                now = int(time.time() * 1000)
                run = self.client.create_run(self.experiment, tags={"trace_id": item["trace_id"]})
                run_id = run.info.run_id
                for node in ("research", "write"):
                    child = self.client.create_run(self.experiment, tags={"mlflow.parentRunId": run_id,
                                                                         "node": node})
                    self.client.log_batch(child.info.run_id, metrics=[Metric("duration_s", 0.001, now, 0)])
                    self.client.set_terminated(child.info.run_id)
                self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in item["totals"].items()])
                self.client.log_dict(run_id, item, "records.json")
                self.client.set_terminated(run_id)
            except Exception:
                pass

    def llm(self, node: str, prompt: str, tokens_in: int, tokens_out: int) -> float:
        started = time.perf_counter()
        with self.tracer.start_as_current_span("chat gemini-1.5-flash", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gemini-1.5-flash",
                "tiertrace.node.name": node}) as span:
            cost = (tokens_in * 0.075 + tokens_out * 0.30) / 1e6
            span.set_attributes({"gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
                                 "tiertrace.cost_usd": cost})
        self.llm_calls.labels("gemini-1.5-flash", "ok").inc()
        self.tokens.labels("gemini-1.5-flash", "input").inc(tokens_in)
        self.tokens.labels("gemini-1.5-flash", "output").inc(tokens_out)
        self.cost.labels("gemini-1.5-flash").inc(cost)
        self.llm_duration.labels("gemini-1.5-flash").observe(time.perf_counter() - started)
        return cost

    def workflow(self) -> None:
        started = time.perf_counter()
        with self.tracer.start_as_current_span("invoke_workflow article_writer",
                                               attributes={"gen_ai.workflow.name": "article_writer", "team": "a"}) as wf:
            cost = 0.0
            node_started = time.perf_counter()
            with self.tracer.start_as_current_span("research", attributes={"tiertrace.node.name": "research"}) as node:
                cost += self.llm("research", "facts", 812, 230)
                node.add_event("tiertrace.retry", {"reason": "timeout"})
                self.retries.labels("article_writer", "llm_call").inc()
                node.add_event("tiertrace.validation_failure", {"errors": ["bad json"]})
                self.failures.labels("article_writer", "research").inc()
                tool_started = time.perf_counter()
                with self.tracer.start_as_current_span("execute_tool serper_search",
                                                       attributes={"gen_ai.tool.name": "serper_search"}):
                    pass
                self.tools.labels("serper_search", "ok").inc()
                self.node_duration.labels("article_writer", "research").observe(time.perf_counter() - tool_started)
            self.node_duration.labels("article_writer", "research").observe(time.perf_counter() - node_started)
            node_started = time.perf_counter()
            with self.tracer.start_as_current_span("write", attributes={"tiertrace.node.name": "write"}):
                cost += self.llm("write", "write", 1000, 500)
            self.node_duration.labels("article_writer", "write").observe(time.perf_counter() - node_started)
            wf.set_attribute("tiertrace.cost_usd", cost)
            trace_id = f"{wf.get_span_context().trace_id:032x}"
        self.runs.labels("article_writer", "ok").inc()
        self.duration.labels("article_writer").observe(time.perf_counter() - started,
                                                       {"trace_id": trace_id})
        self.queue.put({"trace_id": trace_id, "totals": {"cost_usd": cost, "input_tokens": 1812.0,
                                                          "output_tokens": 730.0}})

    def shutdown(self) -> None:
        self.queue.put(None)
        self.provider.shutdown()


def system_bench(rounds: int, n: int) -> dict[str, Any]:
    import warnings

    os.environ["TIERTRACE_LOAD_PLUGINS"] = "mlflow,opentelemetry,prometheus"
    warnings.simplefilter("ignore")
    import tiertrace
    from tiertrace.tracer import Tracer

    folder = tempfile.mkdtemp(prefix="tiertrace-report-")
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    dead_url = f"http://127.0.0.1:{hole.getsockname()[1]}"

    def three(mlflow_uri: str, otlp: Optional[str], push: Optional[str] = None) -> Any:
        otel: dict[str, Any] = {"set_global_provider": False, "timeout": 1.0, "flush_timeout": 2.0}
        otel.update({"exporter": "otlp", "endpoint": otlp} if otlp else {"exporter": "none"})
        prom: dict[str, Any] = {"start_server": False}
        if push:
            prom.update(pushgateway_url=push, push_timeout=1.0)
        return tiertrace.configure({"observability": {
            "mlflow": {"tracking_uri": mlflow_uri, "experiment_name": f"report-{time.time_ns()}", "flush_timeout": 2.0},
            "opentelemetry": otel, "prometheus": prom, "shutdown_timeout": 3.0}}, set_default=False)

    live = three(f"sqlite:///{folder}/tiers.db", None)
    dead = three(dead_url, dead_url, dead_url)
    hand = ByHand(f"sqlite:///{folder}/hand.db")
    core = Tracer()

    variants: dict[str, Callable[[], None]] = {
        "tiertrace, no tier": lambda: seed_workflow(core),
        "by hand, three SDKs": hand.workflow,
        "tiertrace, all three tiers": lambda: seed_workflow(live),
        "tiertrace, all three, dead backends": lambda: seed_workflow(dead),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for name, fn in variants.items():  # warm up: imports, label children, store connections
        for _ in range(20):
            fn()
    time.sleep(2.0)
    for _ in range(rounds):  # interleaved: machine noise hits every variant alike
        for name, fn in variants.items():
            started = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - started) / n * 1e6)
    started = time.perf_counter()
    dead.shutdown(timeout=3.0)
    dead_shutdown_s = time.perf_counter() - started
    live.shutdown(timeout=30.0)
    hand.shutdown()
    hole.close()
    return {"workflows_per_sample": n, "rounds": rounds,
            "per_workflow_us": {k: statistics.median(v) for k, v in samples.items()},
            "dead_shutdown_s": dead_shutdown_s,
            "dead_dropped": {f"{t}/{r}": c for (t, r), c in dead.health.dropped.items()},
            "dead_plugin_errors": {f"{p}/{h}": c for (p, h), c in dead.health.plugin_errors.items()}}


# --- the report ------------------------------------------------------------------------------------


BENCHMARKS: list[tuple[str, list[str], dict[str, str], Callable[[str], list[Row]], list[str]]] = [
    # name, argv, env, parser, extra argv for --quick
    ("bench_core.py", ["benchmarks/bench_core.py"], {}, parse_core, ["--spans", "5000", "--repeats", "7"]),
    ("bench_mlflow.py", ["benchmarks/bench_mlflow.py", "--workflows", "100", "--cost-runs", "500", "--repeat", "3"],
     {"TIERTRACE_LOAD_PLUGINS": "mlflow"}, parse_mlflow, []),
    ("bench_otel.py", ["benchmarks/bench_otel.py"], {"TIERTRACE_LOAD_PLUGINS": "opentelemetry"}, parse_otel,
     ["--quick"]),
    ("bench_prometheus.py", ["benchmarks/bench_prometheus.py"], {"TIERTRACE_LOAD_PLUGINS": "prometheus"},
     parse_prometheus, ["--workflows", "500", "--repeats", "7"]),
    ("report.py --system", ["benchmarks/report.py", "--system"], {}, parse_system, ["--rounds", "5"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "report.md"))
    parser.add_argument("--quick", action="store_true", help="fewer samples in every benchmark")
    parser.add_argument("--only", action="append", help="run only benchmarks whose name contains this")
    parser.add_argument("--system", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=9, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        print(json.dumps(system_bench(args.rounds, args.n), indent=2))
        return 0

    info = machine()
    load_before = load()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows: list[Row] = []
    outputs: list[tuple[str, str, float]] = []
    for name, argv, env, parse, quick in BENCHMARKS:
        if args.only and not any(part in name for part in args.only):
            continue
        if not (ROOT / argv[0]).exists():
            outputs.append((name, "(not present)", 0.0))
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        output, took = run(argv + (quick if args.quick else []), env)
        outputs.append((name, output, took))
        try:
            rows.extend(parse(output))
        except Exception as exc:  # a changed output format must not lose the others
            rows.append((name, f"(could not read its output: {exc})", "?", "?", "?"))
    load_after = load()

    lines = [
        f"Run {started} with `python benchmarks/report.py{' --quick' if args.quick else ''}` at commit {info['commit']}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| nproc | {info['nproc']} |",
        f"| CPU | {info['cpu']} |",
        f"| python | {info['python']} |",
        f"| OS | {info['os']} |",
        f"| libraries | {info['libraries']} |",
        f"| load average (1, 5, 15 min) before / after | {load_before} / {load_after} |",
        "",
        "Medians; each ratio is tiertrace / anchor from the same process and run (lower is better).",
        "",
        "| benchmark | measure | tiertrace | anchor | ratio |",
        "|---|---|---|---|---|",
        *(f"| {b} | {m} | {t} | {a} | {r} |" for b, m, t, a, r in rows),
        "",
    ]
    for name, output, took in outputs:
        lines += [f"<details><summary>{name} output ({took:.0f} s)</summary>", "", "```", output.strip(), "```", "",
                  "</details>", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines[:len(rows) + 16]))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
