"""A bounded batch span processor and a JSON-lines file exporter.

Why not the SDK's ``BatchSpanProcessor``: it drops the oldest span when full
too, but only logs it (we must count every loss in ``tracer.health``), and its
``force_flush`` ignores its timeout and exports in the caller's thread
(opentelemetry-python#4568), so a dead endpoint can hold a flush far longer
than asked. Here a single daemon thread does every export; flush and shutdown
wait for it at most their timeout, and the exporter's own timeout is set by
the tier so that one export cannot outlast a flush.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional, Sequence

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["BoundedBatchProcessor", "JsonLinesSpanExporter", "NoOpSpanExporter", "span_to_json"]

DropCounter = Callable[[int, str], None]


class BoundedBatchProcessor(SpanProcessor):
    """Queue finished, sampled spans; export them in batches from one daemon thread.

    A full queue drops its oldest span. Every span that does not reach the
    exporter (queue full, export failed, still queued at shutdown) is
    reported to ``on_drop(count, reason)``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        on_drop: Optional[DropCounter] = None,
    ):
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_export_batch_size = min(max_export_batch_size, max_queue_size)
        self.schedule_delay = schedule_delay
        self._on_drop = on_drop or (lambda count, reason: None)
        self._queue: collections.deque[ReadableSpan] = collections.deque(maxlen=max_queue_size)
        self._cond = threading.Condition()
        self._enqueued = 0  # spans ever put in the queue (or dropped from it)
        self._done = 0  # of those, spans the worker has handed on or dropped
        self._flush_wanted = False
        self._stopping = False
        self._shut_down = False
        self._in_flight = 0  # spans in the exporter's hands right now
        self._abandoned = False  # shutdown gave up on the export in flight
        self.dropped: collections.Counter[str] = collections.Counter()
        self._start_worker()
        weak = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := weak()) and m())

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="tiertrace-otel-export", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        # The parent's worker thread does not exist in a forked child.
        self._cond = threading.Condition()
        self._queue.clear()
        self._enqueued = self._done = 0
        if not self._shut_down:
            self._start_worker()

    # -- SpanProcessor ----------------------------------------------------------------

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        if self._stopping:
            self._drop(1, "shutdown")
            return
        queue = self._queue
        # deque(maxlen) drops from the other end by itself; count it first.
        full = len(queue) == self.max_queue_size
        queue.append(span)
        self._enqueued += 1  # approximate under races; only used to wait for a flush
        if full:
            self._drop(1, "queue_full")
            self._done += 1
        if len(queue) >= self.max_export_batch_size:
            with self._cond:
                self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued now; wait at most ``timeout_millis``."""
        if self._shut_down:
            return True
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            target = self._enqueued
            self._flush_wanted = True
            self._cond.notify_all()
            while self._done < target and self._worker.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def shutdown(self, timeout_millis: int = 30000) -> None:
        """Flush within the timeout, then stop the worker and the exporter."""
        if self._shut_down:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        self._shut_down = True
        if self._worker.is_alive():  # an export still hangs: its spans are lost to us
            with self._cond:
                self._abandoned = True
                in_flight = self._in_flight
            if in_flight:
                self._drop(in_flight, "shutdown")
        left = len(self._queue)
        if left:
            self._queue.clear()
            self._drop(left, "shutdown")
        try:
            self.exporter.shutdown()  # aborts an OTLP exporter's retry backoff
        except Exception:
            pass

    # -- the worker -------------------------------------------------------------------

    def _run(self) -> None:
        # Exporting must not create spans of its own (an instrumented HTTP client).
        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            with self._cond:
                if not self._stopping and not self._flush_wanted and len(self._queue) < self.max_export_batch_size:
                    self._cond.wait(self.schedule_delay)
                stopping = self._stopping
                self._flush_wanted = False
            self._export_all()
            if stopping:
                return

    def _export_all(self) -> None:
        queue = self._queue
        while queue:
            batch = []
            try:
                while len(batch) < self.max_export_batch_size:
                    batch.append(queue.popleft())
            except IndexError:
                pass
            if not batch:
                break
            self._in_flight = len(batch)
            try:
                result = self.exporter.export(batch)
            except Exception:
                result = SpanExportResult.FAILURE
            with self._cond:
                self._in_flight = 0
                abandoned = self._abandoned
                self._done += len(batch)
                self._cond.notify_all()
            if abandoned:
                return  # counted by shutdown already
            if result is not SpanExportResult.SUCCESS:
                self._drop(len(batch), "export_failed")

    def _drop(self, count: int, reason: str) -> None:
        self.dropped[reason] += count
        try:
            self._on_drop(count, reason)
        except Exception:
            pass


# --- exporters ---------------------------------------------------------------------------


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def span_to_json(span: ReadableSpan) -> dict[str, Any]:
    """One span as a flat JSON object (the ``file`` exporter's line format)."""
    context = span.context
    parent = span.parent
    return {
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_span_id": _hex(parent.span_id, 16) if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_time_ns": span.start_time,
        "end_time_ns": span.end_time,
        "status": "error" if span.status.status_code.name == "ERROR" else "ok",
        "status_message": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "resource": dict(span.resource.attributes) if span.resource is not None else {},
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per span to a file (runs on the export thread)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._file: Any = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_json(s), default=str, separators=(",", ":")) + "\n" for s in spans)
        try:
            with self._lock:
                if self._file is None:
                    directory = os.path.dirname(self.path)
                    if directory:
                        os.makedirs(directory, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8")
                self._file.write(lines)
                self._file.flush()
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class NoOpSpanExporter(SpanExporter):
    """Accepts and forgets spans (``exporter: none``; benchmarks)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
