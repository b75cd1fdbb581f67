"""The ops files shipped in ``tiertrace_prometheus/stack``, written out with the user's thresholds."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Optional

import attrs

from tiertrace.config import non_negative, positive

_PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


@attrs.define(frozen=True)
class StackSettings:
    """What ``tiertrace stack init`` lets you set (each has a command-line option)."""

    app_target: str = "app:9464"
    """host:port Prometheus scrapes (the compose service ``app``; ``host.docker.internal:9464``
    for an app running on the host)."""
    scrape_interval: str = "15s"
    daily_budget_usd: float = attrs.field(default=50.0, validator=positive)
    latency_p95_seconds: float = attrs.field(default=30.0, validator=positive)
    error_ratio: float = attrs.field(default=0.05, validator=positive)
    min_runs: int = attrs.field(default=10, validator=non_negative)
    """Runs a workflow needs in the alert window before latency and error alerts consider it."""

    def values(self) -> dict[str, str]:
        if not _DURATION.match(self.scrape_interval):
            raise ValueError(f"scrape interval {self.scrape_interval!r} is not a duration like 15s")
        if self.error_ratio >= 1:
            raise ValueError(f"error ratio {self.error_ratio} must be below 1 (0.05 means 5%)")
        return {
            "APP_TARGET": self.app_target,
            "SCRAPE_INTERVAL": self.scrape_interval,
            "DAILY_BUDGET_USD": f"{self.daily_budget_usd:g}",
            "LATENCY_P95_SECONDS": f"{self.latency_p95_seconds:g}",
            "ERROR_RATIO": f"{self.error_ratio:g}",
            "ERROR_RATIO_PERCENT": f"{self.error_ratio * 100:g}",
            "MIN_RUNS": str(self.min_runs),
        }


def stack_files() -> dict[str, str]:
    """Relative path -> template text of every shipped ops file."""
    root = resources.files("tiertrace_prometheus") / "stack"
    files: dict[str, str] = {}

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith((".", "__")):
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                files[prefix + child.name] = child.read_text(encoding="utf-8")

    walk(root, "")
    return dict(sorted(files.items()))


def render(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(replace, text)


def write_stack(directory: str | Path, settings: Optional[StackSettings] = None, force: bool = False) -> list[Path]:
    """Write the stack into ``directory``; refuse to overwrite files unless ``force``."""
    settings = settings or StackSettings()
    values = settings.values()
    directory = Path(directory)
    files = {directory / rel: render(text, values) for rel, text in stack_files().items()}
    existing = [p for p in files if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise FileExistsError(f"would overwrite {shown} (use --force)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
