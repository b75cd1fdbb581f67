"""Soak: a long run of spans through all three tiers; memory and accounting at the end.

Run by hand (never by CI):

    python benchmarks/soak.py                     # 1,000,000 spans at 1,200 spans/s (about 14 min)
    python benchmarks/soak.py --spans 50000       # a quick look
    python benchmarks/soak.py --rate 0            # as fast as possible: queues overflow, drops are counted

Every workflow has one node and ``--spans-per-workflow - 2`` LLM and tool calls
(alternating) under it. The tiers write to real backends:

- MLflow: a SQLite store in a temporary folder (or ``--mlflow-uri``);
- OpenTelemetry: OTLP/HTTP to a receiver in a child process that counts the
  spans it decodes (so its memory is not ours);
- Prometheus: the tier's registry, read back at the end.

Reported: RSS (from /proc) after warm-up, its maximum and at the end, and the
growth per 100,000 spans; the longest any queue got; and for each tier every
record accounted for: delivered + counted as dropped == produced.
Exit status 1 when a record is unaccounted for.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings

RECEIVER = r"""
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

count = {"spans": 0, "requests": 0}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with lock:
            count["spans"] += n
            count["requests"] += 1
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        with lock:
            body = json.dumps(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def exit_with_parent(parent=os.getppid()):
    while os.getppid() == parent:  # the soak was killed: do not linger
        time.sleep(1)
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


def received(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in total (default 1,000,000)")
    parser.add_argument("--spans-per-workflow", type=int, default=100)
    parser.add_argument("--mlflow-uri", default=None, help="default: a SQLite store in a temporary folder")
    parser.add_argument("--drain", type=float, default=300.0,
                        help="seconds to let the MLflow writer drain its queue at the end (the rest counts as dropped)")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples over the run")
    parser.add_argument("--rate", type=float, default=1200.0,
                        help="spans per second to aim for (what the backends can take here); 0: as fast as possible")
    args = parser.parse_args()

    os.environ["TIERTRACE_LOAD_PLUGINS"] = "mlflow,opentelemetry,prometheus"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    folder = tempfile.mkdtemp(prefix="tiertrace-soak-")
    receiver, otlp_url = start_receiver()
    import tiertrace

    per_workflow = max(3, args.spans_per_workflow)
    calls = per_workflow - 2
    workflows = max(1, args.spans // per_workflow)
    spans = workflows * per_workflow
    tracer = tiertrace.configure({"observability": {
        "mlflow": {"tracking_uri": args.mlflow_uri or f"sqlite:///{folder}/mlflow.db", "experiment_name": "soak",
                   "capture_content": True},
        "opentelemetry": {"exporter": "otlp", "endpoint": otlp_url, "set_global_provider": False,
                          "schedule_delay": 0.5, "timeout": 10.0, "flush_timeout": 30.0},
        "prometheus": {"start_server": False},
        "shutdown_timeout": 60.0,
    }}, set_default=False)
    mlflow_tier, otel_tier, prom_tier = (tracer.tier(n) for n in ("mlflow", "opentelemetry", "prometheus"))
    processor = otel_tier._bridge.processor
    writer = mlflow_tier.writer

    queue_max = {"mlflow": 0, "opentelemetry": 0}
    stop = threading.Event()

    def watch_queues() -> None:
        while not stop.wait(0.05):
            queue_max["mlflow"] = max(queue_max["mlflow"], writer.pending)
            queue_max["opentelemetry"] = max(queue_max["opentelemetry"], len(processor._queue))

    threading.Thread(target=watch_queues, daemon=True).start()
    warnings.simplefilter("ignore")
    print(f"soak: {spans:,} spans = {workflows:,} workflows x {per_workflow} spans "
          f"(1 workflow, 1 node, {calls} calls), python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    rss: list[tuple[int, float]] = []
    every = max(1, workflows // args.samples)
    warm = max(1, workflows // 10)  # imports, caches and the first label children settle first
    started = time.perf_counter()
    for index in range(workflows):
        if args.rate > 0:  # pace: a soak is about steady state, not about overflowing queues
            ahead = index * per_workflow / args.rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        with tracer.workflow("soak", inputs={"i": index}, tags={"run": "soak"}):
            with tracer.node("work"):
                for j in range(calls):
                    if j % 2 == 0:
                        with tracer.llm_call("gpt-4o-mini", prompt="summarise the findings") as call:
                            call.record(response="a summary", input_tokens=120, output_tokens=30)
                    else:
                        with tracer.tool_call("search", args={"q": "x"}) as tool:
                            tool.record(result=["hit"])
        if index + 1 == warm or (index + 1) % every == 0:
            rss.append(((index + 1) * per_workflow, rss_mib()))
            print(f"  {(index + 1) * per_workflow:>10,} spans  {time.perf_counter() - started:7.1f} s  "
                  f"RSS {rss[-1][1]:7.1f} MiB  mlflow queue {writer.pending:>6}  "
                  f"otel queue {len(processor._queue):>5}", flush=True)
    produced_s = time.perf_counter() - started

    drain_started = time.perf_counter()
    tracer.flush(timeout=args.drain)
    drained_s = time.perf_counter() - drain_started
    prom_text = prom_tier.text()
    late = tracer.shutdown(timeout=60)
    stop.set()
    time.sleep(0.2)
    got = received(otlp_url)
    receiver.terminate()
    receiver.wait(10)

    from prometheus_client.parser import text_string_to_metric_families

    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(prom_text):
        for sample in family.samples:
            counted[sample.name] = counted.get(sample.name, 0.0) + sample.value

    health = tracer.health
    llm_calls = workflows * ((calls + 1) // 2)
    tool_calls = workflows * (calls // 2)
    mlflow_records = workflows * (4 + calls)  # workflow and node start/end, every call's end
    accounting = {
        "opentelemetry": (spans, got["spans"], health.total_dropped("opentelemetry")),
        "mlflow": (mlflow_records, writer.written, health.total_dropped("mlflow")),
        "prometheus": (workflows + llm_calls + tool_calls,
                       int(counted.get("workflow_runs_total", 0) + counted.get("llm_calls_total", 0)
                           + counted.get("tool_calls_total", 0)), 0),
    }
    base = rss[0][1]
    peak = max(r for _, r in rss)
    final = rss[-1][1]
    span_range = rss[-1][0] - rss[0][0]
    growth = (final - base) / span_range * 100_000 if span_range else 0.0
    print()
    print(f"produced {spans:,} spans in {produced_s:.1f} s ({spans / produced_s:,.0f} spans/s on the workflow thread); "
          f"flush {drained_s:.1f} s; shutdown late: {late or 'none'}")
    print(f"RSS after warm-up ({rss[0][0]:,} spans) {base:.1f} MiB, peak {peak:.1f} MiB, end {final:.1f} MiB: "
          f"growth {final - base:+.1f} MiB ({growth:+.2f} MiB per 100,000 spans)")
    print(f"longest queues (queued + in flight): mlflow {queue_max['mlflow']:,} of {mlflow_tier.config.queue_size:,}, "
          f"opentelemetry {queue_max['opentelemetry']:,} of {otel_tier.config.max_queue_size:,}")
    print("| tier | produced | delivered | dropped (counted) | unaccounted |")
    print("|---|---|---|---|---|")
    bad = False
    for tier, (made, delivered, dropped) in accounting.items():
        missing = made - delivered - dropped
        bad = bad or missing != 0
        print(f"| {tier} | {made:,} | {delivered:,} | {dropped:,} | {missing:,} |")
    if health.dropped:
        print("drops by reason:", {f"{t}/{r}": n for (t, r), n in sorted(health.dropped.items())})
    if health.plugin_errors:
        print("plugin errors:", health.plugin_errors)
        bad = True
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
