"""Odd record values are recorded safely; nothing raises into the workflow."""

from __future__ import annotations

import json
import math
import warnings

import attrs
from hypothesis import given, settings, strategies as st

from tiertrace import records as r
from tiertrace import to_dict
from tiertrace.testing import recording_tracer


class Hostile:
    def __repr__(self):
        raise RuntimeError("no repr")

    def __str__(self):
        raise RuntimeError("no str")


class Cyclic(list):
    pass


def _values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(), st.binary(), st.builds(Hostile), st.builds(object), st.builds(ValueError, st.text()))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.one_of(st.text(), st.integers()), inner, max_size=4),
                                                         st.tuples(inner, inner)), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(prompt=_values(), response=_values(), tokens=_values(), args=_values(), tags=st.dictionaries(st.text(), _values(), max_size=3))
def test_any_value_is_recorded_safely_and_serialises(prompt, response, tokens, args, tags):
    tracer, rec = recording_tracer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracer.workflow("wf", inputs={"x": args}, tags=tags):
            with tracer.llm_call("gpt-4o", prompt=prompt, messages=args, params={"p": args}) as call:
                call.record(response=response, input_tokens=tokens, output_tokens=tokens, cost_usd=tokens)
            with tracer.tool_call("t", args=args) as tool:
                tool.record(result=response, extra=args)
            tracer.retry(Hostile(), attempt=tokens)
            tracer.validation_failure(errors=args, raw_output=response)
    assert tracer.health.total_plugin_errors() == 0
    for _, record in rec.events:
        json.dumps(to_dict(record), allow_nan=False)
    call_record = rec.records("on_llm_call_end")[0]
    for value in (call_record.input_tokens, call_record.output_tokens):
        assert value is None or (isinstance(value, int) and value >= 0)
    assert call_record.cost_usd is None or (call_record.cost_usd >= 0 and math.isfinite(call_record.cost_usd))


def test_token_coercion(monkeypatch):
    monkeypatch.setattr("tiertrace.tracer._warned_values", set())  # warned once per process
    tracer, rec = recording_tracer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for given_in, expected in [(12, 12), (12.0, 12), ("40", 40), (-5, None), ("many", None), (True, None), (1.5, None)]:
            with tracer.llm_call("gpt-4o") as call:
                call.record(input_tokens=given_in, output_tokens=0)
            assert call.data.input_tokens == expected, given_in
    assert any("is not a non-negative integer" in str(w.message) for w in caught)


def test_ten_megabyte_prompt_and_non_utf8_bytes():
    tracer, rec = recording_tracer()
    with tracer.llm_call("gpt-4o", prompt="x" * 10_000_000) as call:
        call.record(response=b"\xff\xfe\xfd")
    assert len(call.data.prompt) < 100_100 and call.data.prompt.endswith("chars]")
    assert call.data.response == "\ufffd\ufffd\ufffd"


def test_unserialisable_and_cyclic_values():
    cyc = Cyclic()
    cyc.append(cyc)
    data = to_dict(r.ToolCallRecord("a" * 32, "b" * 16, None, "t", 1, args={"h": Hostile(), "c": cyc, 1: {2, 3}}))
    json.dumps(data)
    assert data["args"]["h"] == "<unrepresentable Hostile>" and data["kind"] == "tool_call"


def test_every_record_round_trips_through_its_json_form():
    tracer, rec = recording_tracer()
    with tracer.workflow("wf", inputs={"a": 1}, tags={"team": "x"}):
        with tracer.node("n"):
            with tracer.llm_call("gpt-4o", prompt="p") as call:
                call.record(response="r", input_tokens=1, output_tokens=2)
            with tracer.tool_call("t", args={"q": 1}) as tool:
                tool.record(result=[1])
            tracer.retry("x")
            tracer.validation_failure(["e"], raw_output="o")
    tracer.optimization(optimizer="o", baseline={"a": 1}, optimized={"a": 2})
    converter = r.converter()
    for _, record in rec.events:
        data = json.loads(json.dumps(to_dict(record)))
        data.pop("kind")
        again = converter.structure(data, type(record))
        assert attrs.asdict(again) == attrs.asdict(record)
