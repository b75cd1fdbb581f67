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
