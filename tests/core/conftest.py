"""Core tests run with no installed tier loaded unless a test asks for one."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_installed_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", "")
    monkeypatch.delenv("TIERTRACE_CONFIG", raising=False)
    monkeypatch.delenv("TIERTRACE_STRICT", raising=False)


@pytest.fixture
def installed_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a tier distribution for real: a module plus its .dist-info
    (METADATA and entry_points.txt) on sys.path, as pip would lay it out."""

    def install(dist: str, key: str, source: str, obj: str = "Tier") -> str:
        module = f"{dist.replace('-', '_')}_mod"
        site = tmp_path / f"site_{module}"
        site.mkdir()
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[tiertrace.tiers]\n{key} = {module}:{obj}\n")
        monkeypatch.syspath_prepend(str(site))
        allowed = [n for n in __import__("os").environ.get("TIERTRACE_LOAD_PLUGINS", "").split(",") if n]
        monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", ",".join(allowed + [key]))
        sys.modules.pop(module, None)
        return module

    return install
