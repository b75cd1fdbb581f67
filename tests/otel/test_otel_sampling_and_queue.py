"""Sampling (ParentBased(TraceIdRatioBased)) and the bounded export queue."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from tiertrace.testing import RecordingPlugin
from tiertrace_otel.processor import BoundedBatchProcessor


def _workflows(tracer, n):
    ids = []
    for _ in range(n):
        with tracer.workflow("w") as wf:
            with tracer.llm_call("gpt-4o") as call:
                call.record(input_tokens=1, output_tokens=1)
        ids.append(wf.trace_id)
    return ids


@pytest.mark.parametrize(("rate", "runs", "low", "high"), [(0.0, 300, 0, 0), (0.01, 2000, 5, 45), (1.0, 300, 300, 300)])
def test_sampling_rate(otel_tracer, rate, runs, low, high):
    tracer, memory = otel_tracer(sampling_rate=rate)
    recorder = RecordingPlugin()
    tracer.register(recorder, name="rec")
    _workflows(tracer, runs)
    spans = memory.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert low <= len(roots) <= high
    # Whole traces or nothing: a sampled workflow keeps its child.
    assert len(spans) == 2 * len(roots)
    # Other tiers are not sampled: every workflow reached the hooks.
    assert len(recorder.records("on_workflow_end")) == runs


def test_sampling_decision_follows_the_trace_id(otel_tracer):
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    tracer, memory = otel_tracer(sampling_rate=0.3)
    ids = _workflows(tracer, 200)
    bound = TraceIdRatioBased.get_bound_for_rate(0.3)
    expected = {t for t in ids if int(t, 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound}
    exported = {f"{s.context.trace_id:032x}" for s in memory.get_finished_spans()}
    assert exported == expected


def test_remote_parent_sampling_flag_is_respected(otel_tracer):
    tracer, memory = otel_tracer(sampling_rate=1.0)
    with tracer.workflow("w", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"):
        pass
    assert memory.get_finished_spans() == ()
    with tracer.workflow("w", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        pass
    (span,) = memory.get_finished_spans()
    assert span.parent.span_id == 0xB7AD6B7169203331 and span.parent.is_remote


class _SlowExporter:
    """Blocks every export until released; remembers what it got."""

    def __init__(self):
        self.release = threading.Event()
        self.exported = []

    def export(self, spans):
        self.release.wait(10)
        self.exported.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()


def test_a_full_queue_drops_the_oldest_and_counts_it(otel_tracer):
    tracer, _ = otel_tracer()
    tier = tracer.tier("opentelemetry")
    slow = _SlowExporter()
    processor = BoundedBatchProcessor(slow, max_queue_size=10, max_export_batch_size=5, schedule_delay=0.05,
                                      on_drop=tier._count_drop)
    tier.provider.add_span_processor(processor)
    # The first batch of 5 goes to the blocked exporter; then the queue holds 10.
    for i in range(5):
        with tracer.workflow(f"first{i}"):
            pass
    deadline = time.monotonic() + 5
    while processor._queue and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    for i in range(25):
        with tracer.workflow(f"w{i}"):
            pass
    assert time.perf_counter() - started < 0.5  # the workflow never waits for the exporter
    assert processor.dropped["queue_full"] == 15
    assert tracer.health.dropped[("opentelemetry", "queue_full")] == 15
    slow.release.set()
    assert processor.force_flush(5000)
    # The newest 10 survived, the oldest 15 were dropped.
    assert slow.exported[5:] == [f"invoke_workflow w{i}" for i in range(15, 25)]
    processor.shutdown(1000)


def test_force_flush_honours_its_timeout():
    class Stuck:
        def export(self, spans):
            time.sleep(3)
            return SpanExportResult.FAILURE

        def shutdown(self):
            pass

    from opentelemetry.sdk.trace import TracerProvider

    drops = []
    processor = BoundedBatchProcessor(Stuck(), schedule_delay=10, on_drop=lambda n, r: drops.append((n, r)))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    started = time.perf_counter()
    assert processor.force_flush(200) is False
    assert time.perf_counter() - started < 1.0  # not the 3 s the export takes
    started = time.perf_counter()
    processor.shutdown(300)
    assert time.perf_counter() - started < 1.0
    assert drops == [(1, "shutdown")]  # the span in the exporter's hands when shutdown gave up


def test_otel_propagation_carries_this_tiers_sampling_decision(otel_tracer):
    from opentelemetry.propagate import inject

    for rate, sampled in ((0.0, 0), (1.0, 1)):
        tracer, _ = otel_tracer(sampling_rate=rate)
        with tracer.workflow("w"):
            with tracer.tool_call("call_service") as call:
                headers: dict = {}
                inject(headers)
                # Same ids as the core's traceparent; the sampled bit is this tier's decision
                # (bit 2, "random trace id", is set too: the core's ids are random).
                prefix, flags = headers["traceparent"].rsplit("-", 1)
                assert prefix == f"00-{call.trace_id}-{call.span_id}"
                assert int(flags, 16) & 1 == sampled
                assert tracer.inject({})["traceparent"].rsplit("-", 1)[0] == prefix
