"""The system suite's own rule: a missing real part skips locally and fails under CI=true."""

from __future__ import annotations

import pytest

import systemkit


@pytest.mark.parametrize("ci,outcome", [(False, pytest.skip.Exception), (True, pytest.fail.Exception)])
def test_a_missing_binary_skips_locally_and_fails_in_ci(monkeypatch, ci, outcome):
    monkeypatch.setattr(systemkit, "IN_CI", ci)
    with pytest.raises(outcome, match="no-such-binary"):
        systemkit.need_binary("no-such-binary", "no-such-package")


def test_present_binaries_are_found():
    for name, package in (("prometheus", "prometheus"), ("prometheus-pushgateway", "prometheus-pushgateway")):
        assert systemkit.need_binary(name, package).endswith(name)


def test_every_test_named_in_the_operations_guide_exists():
    """docs/operations.md backs each statement with a system test by name: keep the names true."""
    import re
    from pathlib import Path

    here = Path(__file__).parent
    guide = (here.parent.parent / "docs" / "operations.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)(?:\.py)?`", guide))
    assert named, "docs/operations.md names no test"
    source = "\n".join(p.read_text() for p in here.glob("test_*.py"))
    files = {p.stem for p in here.glob("test_*.py")}
    missing = sorted(n for n in named if n not in files and f"def {n}(" not in source)
    assert missing == []
