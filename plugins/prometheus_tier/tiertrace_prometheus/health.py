"""tiertrace's own health as metrics: hook errors and records dropped by any tier.

The core counts both in ``tracer.health``. In a single process a collector
reads those counters at scrape time, so the numbers are exact and cost
nothing between scrapes. In multiprocess mode a scrape only sees the
serving process, so each process mirrors its counters into
prometheus_client's per-process files instead (at every workflow end,
flush and shutdown), and the scrape sums them over processes.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from tiertrace_prometheus.metrics import METRICS


def _families(prefix: str) -> tuple[Any, Any]:
    from prometheus_client.core import CounterMetricFamily

    errors_name, dropped_name = f"{prefix}tiertrace_plugin_errors", f"{prefix}tiertrace_records_dropped"
    errors = CounterMetricFamily(errors_name, METRICS["tiertrace_plugin_errors_total"][2], labels=["plugin", "hook"])
    dropped = CounterMetricFamily(dropped_name, METRICS["tiertrace_records_dropped_total"][2], labels=["tier", "reason"])
    return errors, dropped


class HealthCollector:
    """A prometheus_client custom collector reading ``tracer.health`` at scrape time."""

    def __init__(self, namespace: str = ""):
        self.prefix = f"{namespace}_" if namespace else ""
        self.tracer: Optional[Any] = None

    def describe(self) -> list[Any]:
        return list(_families(self.prefix))

    def collect(self) -> Iterator[Any]:
        errors, dropped = _families(self.prefix)
        health = getattr(self.tracer, "health", None)
        if health is not None:
            # dict() copies under the GIL: safe while hooks on other threads add keys.
            for (plugin, hook), count in dict(health.plugin_errors).items():
                errors.add_metric([plugin, hook], count)
            for (tier, reason), count in dict(health.dropped).items():
                dropped.add_metric([tier, reason], count)
        yield errors
        yield dropped


class HealthMirror:
    """Multiprocess mode: copies the growth of ``tracer.health`` into real counters."""

    def __init__(self, namespace: str = ""):
        from prometheus_client import Counter

        self.tracer: Optional[Any] = None
        self._errors = Counter("tiertrace_plugin_errors", METRICS["tiertrace_plugin_errors_total"][2],
                               ["plugin", "hook"], namespace=namespace, registry=None)
        self._dropped = Counter("tiertrace_records_dropped", METRICS["tiertrace_records_dropped_total"][2],
                                ["tier", "reason"], namespace=namespace, registry=None)
        self._seen_errors: dict[tuple[str, str], int] = {}
        self._seen_dropped: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def sync(self) -> None:
        health = getattr(self.tracer, "health", None)
        if health is None:
            return
        with self._lock:
            for counter, current, seen in (
                (self._errors, dict(health.plugin_errors), self._seen_errors),
                (self._dropped, dict(health.dropped), self._seen_dropped),
            ):
                for key, count in current.items():
                    grown = count - seen.get(key, 0)
                    if grown > 0:
                        counter.labels(*key).inc(grown)
                        seen[key] = count
