"""``tiertrace stack init DIR`` and ``tiertrace prometheus multiproc-reset``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    stack = subparsers.add_parser(
        "stack", help="write the Prometheus/Alertmanager/Grafana/Jaeger/MLflow stack files",
    )
    stack_sub = stack.add_subparsers(dest="stack_command", metavar="SUBCOMMAND", required=True)
    init = stack_sub.add_parser(
        "init", help="write prometheus.yml, rules, alertmanager.yml, Grafana dashboard and docker-compose.yml",
        description="Write the ops files of the tiertrace stack into DIR. Thresholds go into the alert rules.",
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--app-target", default="app:9464",
                      help="host:port Prometheus scrapes (default app:9464, the compose service; "
                           "host.docker.internal:9464 for an app on the host)")
    init.add_argument("--scrape-interval", default="15s", help="Prometheus scrape interval (default 15s)")
    init.add_argument("--daily-budget-usd", type=float, default=50.0,
                      help="LLM spend per day that the cost alerts compare with (default 50)")
    init.add_argument("--latency-p95-seconds", type=float, default=30.0,
                      help="workflow p95 duration above which TiertraceHighLatency fires (default 30)")
    init.add_argument("--error-ratio", type=float, default=0.05,
                      help="share of failed runs above which TiertraceHighErrorRate fires (default 0.05)")
    init.add_argument("--min-runs", type=int, default=10,
                      help="runs in the 15-minute window before latency/error alerts consider a workflow (default 10)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(func=_stack_init)

    prom = subparsers.add_parser("prometheus", help="Prometheus tier helpers")
    prom_sub = prom.add_subparsers(dest="prometheus_command", metavar="SUBCOMMAND", required=True)
    reset = prom_sub.add_parser(
        "multiproc-reset",
        help="empty the multiprocess directory before workers start (run it in the entrypoint)",
    )
    reset.add_argument("directory", nargs="?", help="default: PROMETHEUS_MULTIPROC_DIR")
    reset.set_defaults(func=_multiproc_reset)


def _stack_init(args: argparse.Namespace) -> int:
    from tiertrace_prometheus.stack_files import StackSettings, write_stack

    try:
        settings = StackSettings(
            app_target=args.app_target, scrape_interval=args.scrape_interval,
            daily_budget_usd=args.daily_budget_usd, latency_p95_seconds=args.latency_p95_seconds,
            error_ratio=args.error_ratio, min_runs=args.min_runs,
        )
        written = write_stack(args.directory, settings, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"tiertrace stack init: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"\nStart it: cd {args.directory} && docker compose up -d   "
          "(then Grafana on http://localhost:3000, Prometheus on http://localhost:9090)")
    return 0


def _multiproc_reset(args: argparse.Namespace) -> int:
    from tiertrace_prometheus.serving import prepare_multiprocess_dir

    try:
        path = prepare_multiprocess_dir(args.directory)
    except ValueError as exc:
        print(f"tiertrace prometheus multiproc-reset: {exc}", file=sys.stderr)
        return 1
    print(f"emptied {path}")
    return 0
