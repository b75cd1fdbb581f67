"""The documentation stays complete and true (as datasette's tests/test_docs.py).

- docs/hooks.md has a heading ``on_x(argument)`` for every hookspec, with the
  spec's own argument name, and no heading for a hook that does not exist;
  every field of every record class is a table row in the section of the
  class that declares it, and no row names a field that does not exist.
- docs/user-guide.md has a row for every key of the core's config classes
  and every TIERTRACE_* environment variable the core reads.
- docs/plugin-authors.md names every lifecycle hook and every part of the
  test kit.
- The ``python`` code blocks of the guides run, in order, as one script per
  file, and the YAML blocks are valid configuration for the core and for
  every installed tier. A block right after the line
  ``<!-- docs-test: skip -->`` is not run.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from tiertrace import hookspecs, records
from tiertrace.config import CORE_KEYS, ContentConfig, CoreConfig, ModelPrice

DOCS = Path(__file__).resolve().parents[2] / "docs"
CORE = Path(__file__).resolve().parents[2] / "core" / "tiertrace"
SKIP_MARK = "<!-- docs-test: skip -->"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _sections(text: str) -> list[tuple[int, str, str]]:
    """(level, heading, body up to the next heading of the same or a higher level)."""
    lines = text.splitlines()
    headings = [(i, len(m.group(1)), m.group(2)) for i, line in enumerate(lines)
                if (m := re.match(r"^(#{1,6})\s+(.*)$", line))]
    sections = []
    for n, (start, level, title) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[n + 1:] if lvl <= level), len(lines))
        sections.append((level, title, "\n".join(lines[start + 1:end])))
    return sections


def _rows(body: str) -> set[str]:
    """Names in the first column of the Markdown tables of ``body``: ``| `name` |``."""
    return set(re.findall(r"^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|", body, flags=re.MULTILINE))


def _code_blocks(text: str) -> list[tuple[str, int, str, bool]]:
    """(language, line number, code, skipped) for every fenced block."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match:
            previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((match.group(1), i + 2, "\n".join(lines[i + 1:end]), previous == SKIP_MARK))
            i = end
        i += 1
    return blocks


# --- hooks.md -------------------------------------------------------------------

HOOKSPECS = {
    name: fn for name, fn in vars(hookspecs).items()
    if callable(fn) and getattr(fn, f"{hookspecs.PROJECT_NAME}_spec", None) is not None
}


def test_every_hook_is_known() -> None:
    assert set(HOOKSPECS) == set(hookspecs.RECORD_HOOKS) | set(hookspecs.LIFECYCLE_HOOKS)


def _hook_headings() -> dict[str, str]:
    """Hook name -> documented argument, from headings like ``### `on_retry(retry)` ``."""
    found = {}
    for _, title, _ in _sections(_read("hooks.md")):
        match = re.fullmatch(r"`(\w+)\((\w*)\)`", title.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.mark.parametrize("hook", sorted(HOOKSPECS))
def test_hook_is_documented_with_its_argument(hook: str) -> None:
    headings = _hook_headings()
    assert hook in headings, f"docs/hooks.md has no heading `{hook}(...)`"
    (argument,) = inspect.signature(HOOKSPECS[hook]).parameters
    assert headings[hook] == argument, f"docs/hooks.md: {hook} takes {argument!r}, not {headings[hook]!r}"


def test_no_hook_is_documented_that_does_not_exist() -> None:
    assert set(_hook_headings()) <= set(HOOKSPECS)


def _record_classes() -> list[type]:
    """Every attrs class in tiertrace.records, with the private bases that declare fields."""
    public = [getattr(records, name) for name in records.__all__]
    classes: list[type] = []
    for cls in public:
        if isinstance(cls, type) and attrs.has(cls):
            for base in cls.__mro__:
                if attrs.has(base) and base not in classes:
                    classes.append(base)
    return classes


def _declared_fields(cls: type) -> list[str]:
    own = set(cls.__dict__.get("__annotations__", {}))
    return [f.name for f in attrs.fields(cls) if f.name in own]


def _record_section(cls: type) -> str:
    for _, title, body in _sections(_read("hooks.md")):
        if f"`{cls.__name__}`" in title:
            return body
    raise AssertionError(f"docs/hooks.md has no section whose heading names `{cls.__name__}`")


@pytest.mark.parametrize("cls", _record_classes(), ids=lambda c: c.__name__)
def test_every_record_field_is_documented(cls: type) -> None:
    body = _record_section(cls)
    # Only the tables before a nested heading belong to this class.
    rows = _rows(body.split("\n#", 1)[0])
    declared = _declared_fields(cls)
    missing = [name for name in declared if name not in rows]
    assert not missing, f"docs/hooks.md, section `{cls.__name__}`: no row for {missing}"
    unknown = rows - set(declared)
    assert not unknown, f"docs/hooks.md, section `{cls.__name__}`: rows for fields it does not have: {unknown}"


def test_every_record_field_is_covered() -> None:
    """The sections together cover every field of every public record."""
    documented = {name for cls in _record_classes() for name in _declared_fields(cls)}
    for name in records.__all__:
        cls = getattr(records, name)
        if isinstance(cls, type) and attrs.has(cls):
            assert {f.name for f in attrs.fields(cls)} <= documented, name


# --- user-guide.md ----------------------------------------------------------------


@pytest.mark.parametrize("cls", [CoreConfig, ContentConfig], ids=lambda c: c.__name__)
def test_every_core_config_key_is_documented(cls: type) -> None:
    rows = _rows(_read("user-guide.md"))
    missing = [f.name for f in attrs.fields(cls) if f.name not in rows]
    assert not missing, f"docs/user-guide.md has no table row for {cls.__name__} keys {missing}"


def test_price_keys_and_core_keys_are_documented() -> None:
    guide = _read("user-guide.md")
    for field in attrs.fields(ModelPrice):
        assert f"{field.name}:" in guide or f"`{field.name}`" in guide, field.name
    assert set(CORE_KEYS) == {f.name for f in attrs.fields(CoreConfig)}


def test_every_environment_variable_is_documented() -> None:
    used = set()
    for path in CORE.rglob("*.py"):
        used |= set(re.findall(r"\bTIERTRACE_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    assert used, "expected the core to read TIERTRACE_* variables"
    missing = sorted(used - _rows(_read("user-guide.md")))
    assert not missing, f"docs/user-guide.md has no table row for {missing}"


# --- plugin-authors.md --------------------------------------------------------------


def test_plugin_author_guide_covers_lifecycle_and_test_kit() -> None:
    import tiertrace.testing
    from tiertrace.testing import pytest_plugin

    guide = _read("plugin-authors.md")
    fixtures = [name for name, value in vars(pytest_plugin).items()
                if name.startswith("tiertrace_") and callable(value)]
    assert fixtures, "expected pytest fixtures in tiertrace.testing.pytest_plugin"
    names = [*hookspecs.LIFECYCLE_HOOKS, *tiertrace.testing.__all__, *fixtures,
             "record_dropped", "config_class", "describe", "tiertrace.tiers"]
    missing = [name for name in names if name not in guide]
    assert not missing, f"docs/plugin-authors.md does not mention {missing}"


# --- the examples run ------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["user-guide.md", "plugin-authors.md", "hooks.md"])
def test_yaml_blocks_are_valid_configuration(doc: str) -> None:
    """Core keys, and the sections of every installed tier, pass the core's own checks."""
    from tiertrace import plugins
    from tiertrace.config import KNOWN_TIERS

    checked = 0
    for language, line, code, _ in _code_blocks(_read(doc)):
        if language != "yaml":
            continue
        infos = plugins.discover()  # fresh: checking a section changes a tier's state
        installed = {info.name for info in infos}
        data = yaml.safe_load(code)
        assert isinstance(data, dict), f"{doc}:{line}"
        observability = (data.get("config") or {}).get("observability", data.get("observability", data))
        # A shipped tier that is not installed here cannot be checked: leave its section out.
        present = {k: v for k, v in observability.items() if k not in KNOWN_TIERS or k in installed}
        _, sections = plugins.split_config(present, f"{doc}:{line}", infos)  # raises ConfigError
        plugins.configure_tiers(infos, sections, f"{doc}:{line}")
        checked += 1
    assert checked or doc != "user-guide.md"


@pytest.mark.parametrize("doc", ["user-guide.md", "plugin-authors.md"])
def test_python_blocks_run(doc: str, tmp_path: Path) -> None:
    blocks = [(line, code) for language, line, code, skipped in _code_blocks(_read(doc))
              if language == "python" and not skipped]
    assert blocks, f"{doc} has no runnable python block"
    script = "\n\n".join(f"# --- {doc} line {line}\n{textwrap.dedent(code)}" for line, code in blocks)
    (tmp_path / "doc_blocks.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERTRACE_")}
    env["TIERTRACE_LOAD_PLUGINS"] = ""  # the core alone: installed tiers would start backends
    result = subprocess.run([sys.executable, "doc_blocks.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{doc}: a code block failed\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
