"""Tiers are discovered from installed distributions, configured, isolated."""

from __future__ import annotations

import warnings

import pytest

import tiertrace
from tiertrace import ConfigError
from tiertrace.plugins import TierFailedWarning, TierLoadError, discover

GOOD_TIER = '''
import attrs
import tiertrace
from tiertrace.config import in_range, one_of

@attrs.define
class Config:
    level: str = attrs.field(default="info", validator=one_of("info", "debug"))
    ratio: float = attrs.field(default=0.5, validator=in_range(0, 1))

class Tier:
    config_class = Config

    def __init__(self, config):
        self.config = config
        self.ended = []

    @tiertrace.hookimpl
    def on_workflow_end(self, workflow):
        self.ended.append(workflow.name)
'''


def test_installed_tier_is_discovered_configured_and_called(installed_tier):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    info = next(i for i in discover() if i.name == "good")
    assert (info.distribution, info.version, info.state, info.hooks) == ("tiertrace-good", "1.2.3", "active", ["on_workflow_end"])
    tracer = tiertrace.configure({"observability": {"good": {"level": "debug"}}}, set_default=False)
    with tracer.workflow("wf"):
        pass
    tier = tracer.tier("good")
    assert tier.config.level == "debug" and tier.ended == ["wf"]


def test_installed_tier_without_section_runs_with_defaults_and_can_be_disabled(installed_tier):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    assert tiertrace.configure({}, set_default=False).tier("good").config.ratio == 0.5
    tracer = tiertrace.configure({"observability": {"good": {"enabled": False}}}, set_default=False)
    assert tracer.tier("good") is None
    assert next(t for t in tracer.tiers if t.name == "good").reason == "enabled: false"


@pytest.mark.parametrize("section, expected", [
    ({"level": "loud"}, "observability.good.level: 'loud' is not one of 'info', 'debug'"),
    ({"ratio": 2.0}, "observability.good.ratio: 2.0 is not in [0, 1]"),
    ({"ratio": "half"}, "observability.good.ratio: 'half' is not a number"),
    ({"levle": "info"}, "observability.good.levle: unknown key (did you mean 'level'?)"),
    ({"enabled": "yes"}, "observability.good.enabled: 'yes' is not a boolean"),
    ("on", "observability.good: 'on' is a str, expected a mapping"),
])
def test_bad_tier_config_is_always_an_error(installed_tier, section, expected):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    with pytest.raises(ConfigError) as caught:
        tiertrace.configure({"observability": {"good": section}}, set_default=False)
    assert expected in str(caught.value)


def test_tier_that_fails_to_import_is_reported_and_skipped(installed_tier):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    installed_tier("tiertrace-broken", "broken", "raise ImportError('needs libfoo')\n")
    with pytest.warns(TierFailedWarning, match="broken.*needs libfoo"):
        tracer = tiertrace.configure({}, set_default=False)
    broken = next(t for t in tracer.tiers if t.name == "broken")
    assert broken.state == "failed" and "import failed" in broken.reason
    with tracer.workflow("still works"):
        pass
    assert tracer.tier("good").ended == ["still works"]
    with pytest.raises(TierLoadError, match="broken"):
        tiertrace.configure({}, set_default=False, strict=True)


def test_tier_that_fails_to_start_is_reported_or_fatal_in_strict_mode(installed_tier, monkeypatch):
    installed_tier("tiertrace-nostart", "nostart", '''
class Tier:
    def __init__(self):
        raise OSError("port 9464 in use")
''')
    with pytest.warns(TierFailedWarning, match="start failed: OSError: port 9464 in use"):
        tracer = tiertrace.configure({}, set_default=False)
    assert next(t for t in tracer.tiers if t.name == "nostart").state == "failed"
    monkeypatch.setenv("TIERTRACE_STRICT", "1")
    with pytest.raises(TierLoadError, match="port 9464 in use"):
        tiertrace.configure({}, set_default=False)


def test_misspelled_hook_fails_the_tier_with_a_hint(installed_tier):
    installed_tier("tiertrace-typo", "typo", '''
import tiertrace
class Tier:
    @tiertrace.hookimpl
    def on_node_ended(self, node):
        pass
''')
    with pytest.warns(TierFailedWarning, match="unknown hook 'on_node_ended' \\(did you mean 'on_node_end'\\?\\)"):
        tiertrace.configure({}, set_default=False)


def test_allow_list(installed_tier, monkeypatch):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    monkeypatch.setenv("TIERTRACE_LOAD_PLUGINS", "something-else")
    info = next(i for i in discover() if i.name == "good")
    assert info.state == "disabled" and "TIERTRACE_LOAD_PLUGINS" in info.reason
    assert tiertrace.configure({}, set_default=False).tier("good") is None


def test_configure_replaces_and_shuts_down_the_previous_default(installed_tier):
    installed_tier("tiertrace-good", "good", GOOD_TIER)
    first = tiertrace.configure({})
    second = tiertrace.configure({})
    assert first.is_shut_down and not second.is_shut_down and tiertrace.get_tracer() is second
    second.shutdown()


def test_strict_start_failure_stops_the_tiers_that_started(installed_tier):
    module = installed_tier("tiertrace-stoppable", "stoppable", '''
import tiertrace
STOPPED = []
class Tier:
    @tiertrace.hookimpl
    def on_shutdown(self, timeout):
        STOPPED.append(timeout)
''')
    installed_tier("tiertrace-nostart", "nostart", '''
class Tier:
    def __init__(self):
        raise OSError("port in use")
''')
    with pytest.raises(TierLoadError, match="port in use"):
        tiertrace.configure({}, set_default=False, strict=True)
    import importlib

    assert len(importlib.import_module(module).STOPPED) == 1
