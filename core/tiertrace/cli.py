"""The ``tiertrace`` command: plugins, check-config, demo, plus tiers' own commands.

Listing plugins imports each tier's entry point module but never starts a
tier, so no backend (mlflow, the OTel SDK) is imported.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import warnings
from typing import Any, Optional, Sequence

from tiertrace import __version__
from tiertrace.config import ConfigError

EXIT_CONFIG_ERROR = 2


@functools.lru_cache(maxsize=1)
def _discovered() -> list[Any]:
    """Discover tiers once per command (the parser and the command both need them)."""
    from tiertrace import plugins

    return plugins.discover()


def _plugins(args: argparse.Namespace) -> int:
    from tiertrace import plugins
    from tiertrace.config import load_observability

    infos = _discovered()
    if args.config:
        observability, label = load_observability(args.config)
        _, sections = plugins.split_config(observability, label, infos)
        plugins.configure_tiers(infos, sections, label)
    if args.json:
        rows = [
            {"name": i.name, "distribution": i.distribution, "version": i.version, "state": i.state,
             "reason": i.reason, "hooks": i.hooks}
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not infos:
        print("No tiers installed. Install one: pip install tiertrace-mlflow tiertrace-otel tiertrace-prometheus")
        return 0
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(no distribution)"
        state = info.state + (f" ({info.reason})" if info.reason else "")
        print(f"{info.name}  [{dist}]  {state}")
        if info.hooks:
            print(f"    hooks: {', '.join(info.hooks)}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from tiertrace import plugins
    from tiertrace.config import load_observability

    infos = _discovered()
    observability, label = load_observability(args.file)
    _, sections = plugins.split_config(observability, label, infos)
    plugins.configure_tiers(infos, sections, label)
    failed = [i for i in infos if i.state == "failed"]
    print(f"{args.file}: OK")
    for info in infos:
        print(f"  {info.name}: {info.state}" + (f" ({info.reason})" if info.reason else ""))
    return 1 if failed and args.strict else 0


def _demo(args: argparse.Namespace) -> int:
    import tiertrace
    from tiertrace.demo import run_demo

    if args.runs < 1:
        raise ConfigError(f"--runs: {args.runs} must be >= 1")
    tracer = tiertrace.configure(args.config)
    try:
        run_demo(tracer, runs=args.runs, latency_scale=args.latency_scale)
    finally:
        late = tracer.shutdown()
        if late:
            print(f"\nwarning: {', '.join(late)} did not finish flushing in time", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiertrace",
        description="Three-tier observability for LLM agent workflows.",
    )
    parser.add_argument("--version", action="version", version=f"tiertrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed tiers, their hooks and state")
    p.add_argument("--config", help="a config file, to show which tiers it enables or disables")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_plugins)

    p = sub.add_parser("check-config", help="validate a config file (exit 2 on errors)")
    p.add_argument("file")
    p.add_argument("--strict", action="store_true", help="also fail (exit 1) when a tier cannot be imported")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("demo", help="run the article_writer demo workflow offline through every installed tier")
    p.add_argument("--runs", type=int, default=1, help="how many workflow runs (default 1)")
    p.add_argument("--config", help="a config file (default: embedded defaults and the environment)")
    p.add_argument("--latency-scale", type=float, default=1.0,
                   help="multiply the fake LLM's latencies (0 for no sleeping)")
    p.set_defaults(func=_demo)

    _add_tier_commands(sub)
    return parser


def _add_tier_commands(sub: Any) -> None:
    """Let each installed tier class add its commands (``register_commands`` hook)."""
    for info in _discovered():
        command_hook = getattr(info.tier_class, "register_commands", None)
        if info.state == "failed" or command_hook is None:
            continue
        try:
            command_hook(subparsers=sub)
        except Exception as exc:
            warnings.warn(f"tiertrace: tier {info.name!r} could not add its commands: {exc}", stacklevel=2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    _discovered.cache_clear()  # main() may run several times in one process (tests, embedding)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"tiertrace: configuration error:\n  " + "\n  ".join(err.problems), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error. Point stdout at
        # devnull so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
