"""What did the workflows cost: sums over the workflow runs in MLflow.

Only top-level workflow runs (tag ``tiertrace.kind=workflow``) are summed:
node runs, sub-workflow runs and optimization runs are excluded, because a
workflow's totals already include everything that ran under it. The filter
runs in the tracking store (``search_runs``), not in Python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import time
from typing import Any, Optional, Union

import attrs

from tiertrace.config import ConfigError
from tiertrace_mlflow.config import MlflowConfig, resolve_destination

__all__ = ["CostRow", "costs", "parse_since", "add_costs_command"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PAGE_SIZE = 10_000


@attrs.define
class CostRow:
    """Totals of the workflow runs that share a key (a workflow, a model or a tag value)."""

    key: str
    runs: int = 0
    failed_runs: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    unpriced_calls: int = 0
    """Calls without a known price: their cost is not in ``cost_usd`` (unpriced is not $0)."""


def parse_since(value: Union[str, dt.datetime, dt.timedelta, int, float], now: Optional[float] = None) -> int:
    """Epoch milliseconds for ``30d``/``12h``/``90m``/``2w``, an ISO date, a datetime,
    a timedelta (that long ago) or epoch seconds."""
    now = time.time() if now is None else now
    if isinstance(value, dt.timedelta):
        return int((now - value.total_seconds()) * 1000)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int((now - float(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
        try:
            return parse_since(dt.datetime.fromisoformat(value.strip()), now)
        except ValueError:
            pass
    raise ConfigError(f"since: {value!r} is not a duration like 30d, 12h, 90m, 2w or an ISO date")


def _group_of(by: str) -> str:
    if by in ("workflow", "model") or (by.startswith("tag:") and len(by) > 4):
        return by
    raise ConfigError(f"by: {by!r} is not one of 'workflow', 'model', 'tag:<name>'")


def costs(
    since: Union[str, dt.datetime, dt.timedelta, int, float] = "30d",
    by: str = "workflow",
    *,
    tracking_uri: Optional[str] = None,
    experiment_name: Optional[str] = None,
    until: Union[str, dt.datetime, dt.timedelta, int, float, None] = None,
) -> list[CostRow]:
    """Cost, tokens and calls of the workflow runs started since ``since``, grouped ``by``
    ``"workflow"``, ``"model"`` or ``"tag:<name>"`` (runs without the tag group under
    ``"(none)"``). Most expensive first.

    ``tracking_uri`` and ``experiment_name`` default as in the tier's config
    (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``, then ``./mlruns`` and
    ``tiertrace``).
    """
    from tiertrace_mlflow.backend import TAG_KIND, TAG_MODELS, TAG_WORKFLOW, model_prefix
    from tiertrace_mlflow.tier import quiet_mlflow_telemetry

    group = _group_of(by)
    since_ms = parse_since(since)
    query = f"tags.`{TAG_KIND}` = 'workflow' and attributes.start_time >= {since_ms}"
    if until is not None:
        query += f" and attributes.start_time < {parse_since(until)}"
    settings: dict[str, Any] = {}
    if tracking_uri is not None:
        settings["tracking_uri"] = tracking_uri
    if experiment_name is not None:
        settings["experiment_name"] = experiment_name
    config = MlflowConfig(**settings)
    destination = resolve_destination(config)
    database = destination.sqlite_path
    if (destination.folder and not os.path.isdir(destination.folder)) or (database and not os.path.exists(database)):
        return []  # nothing was ever recorded there (and opening it would create a store)

    quiet_mlflow_telemetry()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=destination.tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    if experiment is None:
        return []

    rows: dict[str, CostRow] = {}

    def add(key: str, failed: bool, values: dict[str, float]) -> None:
        row = rows.setdefault(key, CostRow(key))
        row.runs += 1
        row.failed_runs += failed
        row.cost_usd += values.get("cost_usd", 0.0)
        row.input_tokens += int(values.get("input_tokens", 0))
        row.output_tokens += int(values.get("output_tokens", 0))
        row.llm_calls += int(values.get("llm_calls", 0))
        row.unpriced_calls += int(values.get("unpriced_calls", 0))

    page_token = None
    while True:
        page = client.search_runs([experiment.experiment_id], query, max_results=PAGE_SIZE, page_token=page_token)
        for run in page:
            tags, metrics = run.data.tags, run.data.metrics
            failed = run.info.status == "FAILED"
            if group == "model":
                for model in json.loads(tags.get(TAG_MODELS, "[]")):
                    prefix = model_prefix(model)
                    add(model, failed, {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)})
            else:
                key = tags.get(TAG_WORKFLOW) if group == "workflow" else tags.get(group[4:])
                add(key if key is not None else "(none)", failed, metrics)
        page_token = page.token
        if not page_token:
            break
    return sorted(rows.values(), key=lambda row: (-row.cost_usd, row.key))


# --- the `tiertrace costs` command ---------------------------------------------------------


def add_costs_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "costs",
        help="cost of workflow runs recorded in MLflow, by workflow, model or tag",
        description="Sum cost, tokens and LLM calls of the top-level workflow runs in MLflow.",
    )
    parser.add_argument("--since", default="30d", help="how far back: 30d, 12h, 90m, 2w or an ISO date (default 30d)")
    parser.add_argument("--until", default=None, help="end of the window (same forms as --since; default now)")
    parser.add_argument("--by", default="workflow", help="workflow (default), model, or tag:<name>")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else ./mlruns")
    parser.add_argument("--experiment", default=None, help="default: MLFLOW_EXPERIMENT_NAME, else tiertrace")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    parser.set_defaults(func=_costs_command)


def _costs_command(args: argparse.Namespace) -> int:
    rows = costs(args.since, args.by, tracking_uri=args.tracking_uri, experiment_name=args.experiment,
                 until=args.until)
    if args.json:
        print(json.dumps([attrs.asdict(row) for row in rows], indent=2))
        return 0
    print(format_table(rows, args.by))
    return 0


def format_table(rows: list[CostRow], by: str) -> str:
    header = (by, "runs", "failed", "cost_usd", "input_tok", "output_tok", "llm_calls", "unpriced")
    lines = [header] + [
        (row.key, str(row.runs), str(row.failed_runs), f"{row.cost_usd:.4f}", str(row.input_tokens),
         str(row.output_tokens), str(row.llm_calls), str(row.unpriced_calls))
        for row in rows
    ]
    if rows:
        lines.append(("TOTAL", str(sum(r.runs for r in rows)), str(sum(r.failed_runs for r in rows)),
                      f"{sum(r.cost_usd for r in rows):.4f}", str(sum(r.input_tokens for r in rows)),
                      str(sum(r.output_tokens for r in rows)), str(sum(r.llm_calls for r in rows)),
                      str(sum(r.unpriced_calls for r in rows))))
    else:
        return "no workflow runs in this window"
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        out.append("  ".join(cells))
    return "\n".join(out)

