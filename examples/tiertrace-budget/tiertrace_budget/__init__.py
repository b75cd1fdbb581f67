"""tiertrace-budget: a cost-budget guard and JSONL audit log, as a third-party tier.

It is the example tier authors copy. Everything it uses is public API:
``tiertrace.hookimpl``, the records, ``tiertrace.to_dict`` and the validators
in ``tiertrace.config``. Installing the distribution is all it takes: the
entry point ``budget`` in the group ``tiertrace.tiers`` makes the core find
it, and the section ``observability.budget`` configures it.

Hooks run on the workflow's thread, so the tier does no file I/O there: it
puts each finished workflow on a small bounded queue, and a background thread
writes the JSONL lines. A full queue drops the line and counts it through
``tracer.health.record_dropped``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import warnings
from typing import Any, Optional

import attrs

import tiertrace
from tiertrace.config import env_float, one_of, positive

__all__ = ["BudgetConfig", "BudgetExceededWarning", "BudgetTier"]

__version__ = "0.1.0"

logger = logging.getLogger("tiertrace_budget")

TIER_NAME = "budget"  # the entry point's name: the config key and the health-counter key


class BudgetExceededWarning(UserWarning):
    """A finished workflow run cost more than ``max_cost_usd_per_run``."""


@attrs.define(frozen=True)
class BudgetConfig:
    """The section ``observability.budget``."""

    max_cost_usd_per_run: float = attrs.field(
        factory=env_float("TIERTRACE_BUDGET_MAX_COST_USD", 1.0), validator=positive
    )
    """USD a single workflow run may cost (its ``cost_usd`` total)."""
    action: str = attrs.field(default="warn", validator=one_of("warn", "log"))
    """``warn``: ``warnings.warn(BudgetExceededWarning)``; ``log``: a ``logging`` warning."""
    log_path: Optional[str] = "tiertrace-budget.jsonl"
    """JSONL audit file, one line per finished workflow; ``null`` writes none."""
    queue_size: int = attrs.field(default=1000, validator=positive)
    """Lines waiting for the writer thread; beyond this they are dropped and counted."""


class _Flush:
    """A marker put on the queue: the writer sets ``done`` once it reaches it."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class BudgetTier:
    """Warns when a workflow run exceeds its budget; writes a JSONL audit line per run."""

    config_class = BudgetConfig

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self.tracer: Any = None
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.queue_size)
        self._writer: Optional[threading.Thread] = None
        if config.log_path is not None:
            self._writer = threading.Thread(
                target=self._write_lines, name="tiertrace-budget-writer", daemon=True
            )
            self._writer.start()

    def describe(self) -> str:
        where = os.path.abspath(self.config.log_path) if self.config.log_path else "no audit file"
        return f"budget ${self.config.max_cost_usd_per_run:g} per run; audit log: {where}"

    # --- hooks: called on the workflow's thread, so they only compare and enqueue ---

    @tiertrace.hookimpl
    def on_tracer_start(self, tracer: Any) -> None:
        self.tracer = tracer  # to count dropped lines in tracer.health

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow: tiertrace.WorkflowRecord) -> None:
        budget = self.config.max_cost_usd_per_run
        over = workflow.cost_usd > budget
        # Queue the audit line first: a warning turned into an error must not lose it.
        if self._writer is not None:
            try:
                self._queue.put_nowait((workflow, over))
            except queue.Full:
                if self.tracer is not None:
                    self.tracer.health.record_dropped(TIER_NAME, 1, "queue_full")
        if not over:
            return
        message = (
            f"workflow {workflow.name!r} (trace {workflow.trace_id}) cost "
            f"${workflow.cost_usd:.6f}, over its budget of ${budget:g}"
        )
        if workflow.unpriced_calls:  # unpriced calls are not $0: the cost is a lower bound
            message += f" (plus {workflow.unpriced_calls} unpriced LLM calls)"
        if self.config.action == "warn":
            warnings.warn(message, BudgetExceededWarning)
        else:
            logger.warning(message)

    # --- lifecycle: bounded by the timeout the core passes ---

    @tiertrace.hookimpl
    def on_flush(self, timeout: float) -> None:
        if self._writer is None or not self._writer.is_alive():
            return
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return
        marker.done.wait(timeout)

    @tiertrace.hookimpl
    def on_shutdown(self, timeout: float) -> None:
        if self._writer is None or not self._writer.is_alive():
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return  # the writer is stuck; the daemon thread ends with the process
        self._writer.join(max(0.0, deadline - time.monotonic()))

    @staticmethod
    @tiertrace.hookimpl
    def register_commands(subparsers: Any) -> None:
        parser = subparsers.add_parser("budget-report", help="summarise a tiertrace-budget audit log")
        parser.add_argument("path", nargs="?", default="tiertrace-budget.jsonl")
        parser.set_defaults(func=_report)

    # --- the writer thread: the only place that touches the file ---

    def _write_lines(self) -> None:
        assert self.config.log_path is not None
        with open(self.config.log_path, "a", encoding="utf-8") as out:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                if isinstance(item, _Flush):
                    out.flush()
                    item.done.set()
                    continue
                workflow, over = item
                line = {
                    "over_budget": over,
                    "max_cost_usd_per_run": self.config.max_cost_usd_per_run,
                    "workflow": tiertrace.to_dict(workflow),
                }
                try:
                    out.write(json.dumps(line) + "\n")
                    self.written += 1
                except OSError:  # a full disk loses lines, never the thread
                    if self.tracer is not None:
                        self.tracer.health.record_dropped(TIER_NAME, 1, "write_failed")
                if self._queue.empty():
                    out.flush()


def _report(args: Any) -> int:
    """``tiertrace budget-report [PATH]``: runs, total cost, runs over budget."""
    runs = over = 0
    cost = 0.0
    try:
        with open(args.path, encoding="utf-8") as lines:
            for text in lines:
                line = json.loads(text)
                runs += 1
                over += bool(line["over_budget"])
                cost += line["workflow"]["cost_usd"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"budget-report: cannot read {args.path}: {exc}")
        return 1
    print(f"{runs} runs, ${cost:.6f} in total, {over} over budget")
    return 0
