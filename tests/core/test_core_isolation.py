"""A raising hook never reaches the workflow or the other plugins."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

import tiertrace
from tiertrace.hookspecs import RECORD_HOOKS
from tiertrace.plugins import PluginErrorWarning
from tiertrace.testing import RecordingPlugin, check_tier, recording_tracer


def _raising_plugin():
    """A plugin whose every record hook raises."""

    class Raising:
        pass

    for hook in RECORD_HOOKS:
        arg = {"on_workflow_start": "workflow", "on_workflow_end": "workflow", "on_node_start": "node",
               "on_node_end": "node", "on_retry": "retry", "on_validation_failure": "failure",
               "on_optimization": "result"}.get(hook, "call")

        def impl(self, **kwargs):  # pragma: no cover - replaced below
            raise RuntimeError

        src = f"def {hook}(self, {arg}):\n    raise RuntimeError('boom in {hook}')\n"
        namespace: dict = {}
        exec(src, namespace)
        setattr(Raising, hook, tiertrace.hookimpl(namespace[hook]))
    return Raising()


def _drive(tracer) -> str:
    with tracer.workflow("wf"):
        with tracer.node("n"):
            with tracer.llm_call("gpt-4o") as call:
                call.record(input_tokens=1, output_tokens=1)
            with tracer.tool_call("t"):
                pass
            tracer.retry("r")
            tracer.validation_failure(["e"])
    tracer.optimization(optimizer="o", baseline={"a": 1}, optimized={"a": 2})
    return "result"


def test_raising_plugin_does_not_stop_recorders_before_or_after_it():
    tracer, before = recording_tracer()
    tracer.register(_raising_plugin(), name="raising")
    after = RecordingPlugin()
    tracer.register(after, name="after")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _drive(tracer) == "result"
        assert _drive(tracer) == "result"
    for recorder in (before, after):
        assert sorted(set(recorder.hooks())) == sorted(RECORD_HOOKS)
        assert len(recorder.events) == 2 * len(RECORD_HOOKS)
    errors = tracer.health.plugin_errors
    assert {hook for (plugin, hook) in errors if plugin == "raising"} == set(RECORD_HOOKS)
    assert all(count == 2 for count in errors.values())
    reported = [w for w in caught if issubclass(w.category, PluginErrorWarning)]
    assert len(reported) == len(RECORD_HOOKS)  # once per plugin and hook, not per call
    assert "boom in on_node_end" in " ".join(str(w.message) for w in reported)


def test_engine_hookspecs_and_optional_hooks():
    class EngineSpecs:
        @tiertrace.hookspec
        def on_cache_hit(self, hit):
            """An engine's own hook."""

    class Tier:
        def __init__(self):
            self.hits = []

        @tiertrace.hookimpl(optionalhook=True)
        def on_cache_hit(self, hit):
            self.hits.append(hit)

        @tiertrace.hookimpl(optionalhook=True)
        def on_something_unknown(self, thing):
            raise AssertionError("never called")

    tracer, _ = recording_tracer()
    tier = Tier()
    tracer.register(tier, name="tier")
    tracer.add_hookspecs(EngineSpecs)
    tracer.fire("on_cache_hit", hit={"key": "k"})
    tracer.fire("on_nobody_listens", anything=1)
    assert tier.hits == [{"key": "k"}]
    with pytest.raises(TypeError, match="exactly one keyword"):
        tracer.fire("on_cache_hit", a=1, b=2)


def test_register_refuses_a_class_and_unregister_stops_calls():
    tracer, recorder = recording_tracer()
    with pytest.raises(TypeError, match="instance"):
        tracer.register(RecordingPlugin)
    with tracer.node("n"):
        pass
    tracer.unregister("recorder")
    with tracer.node("n"):
        pass
    assert len(recorder.events) == 2


def test_shutdown_is_bounded_when_a_tier_hangs():
    release = threading.Event()

    class Hangs:
        @tiertrace.hookimpl
        def on_shutdown(self, timeout):
            release.wait(30)

    tracer, recorder = recording_tracer()
    tracer.register(Hangs(), name="hangs")
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="hangs"):
        late = tracer.shutdown(timeout=0.3)
    elapsed = time.monotonic() - started
    release.set()
    assert late == ["hangs"] and elapsed < 1.5
    assert recorder.shutdowns == 1
    assert tracer.shutdown() == []  # idempotent


def test_recording_plugin_passes_the_conformance_check():
    report = check_tier(RecordingPlugin)
    assert report.workflows >= 18 and report.plugin_errors == {}


def test_conformance_check_catches_a_tier_that_raises():
    class Fragile:
        @tiertrace.hookimpl
        def on_llm_call_end(self, call):
            call.response.upper()  # fails on non-text responses

    with pytest.raises(AssertionError, match="on_llm_call_end raised"):
        check_tier(Fragile)
