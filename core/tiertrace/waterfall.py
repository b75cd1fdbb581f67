"""A terminal waterfall of one trace: the tree, each span's duration and offset,
and the bottleneck (the span with the most time of its own) marked.

Works on anything with ``span_id``, ``parent_span_id``, ``name``,
``start_time_ns``, ``end_time_ns`` and ``status`` attributes: tiertrace's span
records, or the OpenTelemetry tier's finished spans.

    article_writer                     2.412s |██████████████████████████████|
    ├── research                       1.204s |███████████████               |
    │   ├── chat gemini-1.5-flash      0.810s |██████████                    |
    │   └── execute_tool serper        0.351s |          ████                |
    └── write                          1.188s |               ███████████████| <- bottleneck 1.188s self
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

__all__ = ["render", "self_times"]


def _duration(span: Any) -> int:
    if span.end_time_ns is None:
        return 0
    return max(0, span.end_time_ns - span.start_time_ns)


def self_times(spans: Sequence[Any]) -> dict[str, int]:
    """Each span's own time: its duration minus the time covered by its children."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Any]] = {}
    for span in spans:
        if span.parent_span_id in ids:
            children.setdefault(span.parent_span_id, []).append(span)
    result = {}
    for span in spans:
        covered = _union_length(
            [(c.start_time_ns, c.start_time_ns + _duration(c)) for c in children.get(span.span_id, [])]
        )
        result[span.span_id] = max(0, _duration(span) - covered)
    return result


def _union_length(intervals: list[tuple[int, int]]) -> int:
    """Length covered by intervals (children running in parallel count once)."""
    total, end = 0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def render(spans: Iterable[Any], *, width: int = 40, label: Optional[Any] = None) -> str:
    """Render spans (one trace) as a waterfall. Unfinished spans show as running."""
    spans = sorted(spans, key=lambda s: (s.start_time_ns, s.span_id))
    if not spans:
        return "(no spans)"
    ids = {s.span_id for s in spans}
    children: dict[Optional[str], list[Any]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    t0 = min(s.start_time_ns for s in spans)
    t1 = max(s.start_time_ns + _duration(s) for s in spans)
    total = max(1, t1 - t0)
    own = self_times(spans)
    # The bottleneck is where the time went: the most self time, ignoring a root
    # whose own time is only the gaps between its children.
    candidates = [s for s in spans if s.span_id in own and (s.parent_span_id in ids or len(spans) == 1)]
    bottleneck = max(candidates or spans, key=lambda s: own.get(s.span_id, 0))

    rows: list[tuple[str, Any]] = []

    def walk(span: Any, prefix: str, is_last: bool, is_root: bool) -> None:
        branch = "" if is_root else ("└── " if is_last else "├── ")
        rows.append((prefix + branch + str(span.name), span))
        kids = children.get(span.span_id, [])
        next_prefix = prefix if is_root else prefix + ("    " if is_last else "│   ")
        for i, kid in enumerate(kids):
            walk(kid, next_prefix, i == len(kids) - 1, False)

    roots = children.get(None, [])
    for root in roots:
        walk(root, "", True, True)

    name_width = min(60, max(len(text) for text, _ in rows))
    lines = []
    if label is not None:
        lines.append(str(label))
    for text, span in rows:
        start_col = int((span.start_time_ns - t0) * width / total)
        length = max(1, round(_duration(span) * width / total))
        start_col = min(start_col, width - 1)
        length = min(length, width - start_col)
        bar = " " * start_col + "█" * length + " " * (width - start_col - length)
        duration = "running" if span.end_time_ns is None else f"{_duration(span) / 1e9:.3f}s"
        line = f"{text[:name_width]:<{name_width}}  {duration:>8} |{bar}|"
        if getattr(span, "status", "ok") == "error":
            line += " ERROR"
        if span is bottleneck and len(spans) > 1:
            line += f" <- bottleneck ({own[span.span_id] / 1e9:.3f}s self)"
        lines.append(line)
    return "\n".join(lines)
