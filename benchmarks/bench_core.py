"""Core overhead per span (start and end), side by side with the OpenTelemetry
API's no-op tracer doing the same spans in the same run.

Run by hand:  python benchmarks/bench_core.py [--spans 20000] [--repeats 15]

Prints medians (µs per span) and ratios; also times ``import tiertrace`` and
``tiertrace plugins`` in fresh interpreters. The machine is shared and noisy:
compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable


def per_span_us(body: Callable[[int], None], spans: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        body(spans)
        times.append((time.perf_counter_ns() - start) / spans / 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    os.environ["TIERTRACE_LOAD_PLUGINS"] = ""

    from opentelemetry import trace as otel_trace

    import tiertrace
    from tiertrace.testing import RecordingPlugin
    from tiertrace.tracer import Tracer

    noop = otel_trace.NoOpTracer()
    bare = Tracer()
    recorded = Tracer()
    recorder = RecordingPlugin()
    recorded.register(recorder, name="recorder")

    def otel_noop(n: int) -> None:
        for _ in range(n):
            with noop.start_as_current_span("node"):
                pass

    def core_alone(n: int) -> None:
        node = bare.node
        for _ in range(n):
            with node("node"):
                pass

    def core_llm_call(n: int) -> None:
        llm = bare.llm_call
        for _ in range(n):
            with llm("gpt-4o") as call:
                call.record(input_tokens=10, output_tokens=5)

    def core_recorder(n: int) -> None:
        node = recorded.node
        for _ in range(n):
            with node("node"):
                pass
        recorder.clear()

    # Interleave the variants so that machine noise hits them alike.
    results: dict[str, list[float]] = {k: [] for k in ("otel_noop", "core", "core_llm", "core_recorder")}
    for _ in range(3):
        results["otel_noop"].append(per_span_us(otel_noop, args.spans, args.repeats))
        results["core"].append(per_span_us(core_alone, args.spans, args.repeats))
        results["core_llm"].append(per_span_us(core_llm_call, args.spans, args.repeats))
        results["core_recorder"].append(per_span_us(core_recorder, args.spans, args.repeats))
    med = {k: statistics.median(v) for k, v in results.items()}

    print(f"spans per sample {args.spans}, samples {args.repeats} x 3, medians in µs per span (start + end)")
    print(f"| variant | µs/span | ratio to OTel no-op span |")
    print(f"|---|---|---|")
    print(f"| OTel API no-op tracer (anchor) | {med['otel_noop']:.3f} | 1.00 |")
    print(f"| tiertrace node, no tier | {med['core']:.3f} | {med['core'] / med['otel_noop']:.2f} |")
    print(f"| tiertrace llm_call + record + pricing, no tier | {med['core_llm']:.3f} | {med['core_llm'] / med['otel_noop']:.2f} |")
    print(f"| tiertrace node, recording plugin | {med['core_recorder']:.3f} | {med['core_recorder'] / med['otel_noop']:.2f} |")

    def fresh(cmd: list[str], runs: int = 7) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "TIERTRACE_LOAD_PLUGINS": ""} if False else None)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    python_alone = fresh([sys.executable, "-c", "pass"])
    with_import = fresh([sys.executable, "-c", "import tiertrace"])
    plugins_cli = fresh([sys.executable, "-m", "tiertrace", "plugins"])
    print()
    print(f"python -c pass: {python_alone * 1000:.1f} ms; `import tiertrace` adds {(with_import - python_alone) * 1000:.1f} ms (median of 7)")
    print(f"`tiertrace plugins` (every installed tier listed): {plugins_cli:.3f} s (median of 7)")


if __name__ == "__main__":
    main()
