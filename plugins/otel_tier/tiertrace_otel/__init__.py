"""tiertrace-otel: tier 2 of tiertrace, distributed tracing with OpenTelemetry.

Installing the distribution is all it takes: the core finds the tier through
the ``tiertrace.tiers`` entry point ``opentelemetry`` and configures it from
``observability.opentelemetry``. See docs/tiers/opentelemetry.md.

>>> import tiertrace, tiertrace_otel
>>> tracer = tiertrace.configure({"observability": {"opentelemetry": {"exporter": "otlp"}}})
>>> with tracer.workflow("article_writer") as wf:
...     ...
>>> print(tiertrace_otel.waterfall(wf.trace_id))
"""

from __future__ import annotations

from typing import Any, Optional

from tiertrace_otel.config import OtelConfig
from tiertrace_otel.tier import TIER_NAME, OpenTelemetryTier

__all__ = ["OpenTelemetryTier", "OtelConfig", "waterfall", "__version__"]

__version__ = "0.1.0"


def waterfall(trace_id: Optional[str] = None, tracer: Any = None) -> str:
    """The terminal waterfall of a recent trace (default: the last one) of the
    running OpenTelemetry tier of ``tracer`` (default: the process tracer)."""
    import tiertrace

    tracer = tracer or tiertrace.get_tracer()
    tier = tracer.tier(TIER_NAME)
    if tier is None:
        raise RuntimeError("the opentelemetry tier is not running on this tracer "
                           "(is tiertrace-otel installed and enabled?)")
    return tier.waterfall(trace_id)
