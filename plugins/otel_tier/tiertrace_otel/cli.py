"""``tiertrace otel-waterfall``: print a trace's waterfall from the JSON-lines span file."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

from tiertrace_otel.config import DEFAULT_FILE

__all__ = ["add_commands", "read_spans"]


def read_spans(path: str, trace_id: Optional[str] = None) -> tuple[Optional[str], list[Any]]:
    """The spans of ``trace_id`` (default: the trace of the last root span) in a span file."""
    from tiertrace_otel.tier import FinishedSpan

    spans: list[FinishedSpan] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(data, dict) and data.get("span_id"):
                spans.append(FinishedSpan(*(data.get(key) for key in FinishedSpan._fields)))
    if trace_id is None:
        roots = [s for s in spans if s.parent_span_id is None] or spans
        if not roots:
            return None, []
        trace_id = max(roots, key=lambda s: s.end_time_ns or 0).trace_id
    return trace_id, [s for s in spans if s.trace_id == trace_id]


def _waterfall(args: Any) -> int:
    from tiertrace.waterfall import render

    try:
        trace_id, spans = read_spans(args.file, args.trace_id)
    except OSError as exc:
        print(f"tiertrace: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not spans:
        print(f"tiertrace: no spans for trace {args.trace_id or '(last)'} in {args.file}", file=sys.stderr)
        return 1
    print(render(spans, label=f"trace {trace_id}"))
    return 0


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "otel-waterfall", help="print the span waterfall of a trace from the OpenTelemetry tier's span file")
    parser.add_argument("trace_id", nargs="?", help="32 hex digits (default: the last trace in the file)")
    parser.add_argument("--file", default=DEFAULT_FILE, help=f"JSON-lines span file (default {DEFAULT_FILE})")
    parser.set_defaults(func=_waterfall)
