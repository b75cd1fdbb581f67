from __future__ import annotations

import pytest

from tiertrace.redaction import REDACTED, ContentPolicy
from tiertrace.testing import recording_tracer

SECRETS = {
    "openai": "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "openai_legacy": "sk-AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    "anthropic": "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "google": "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_default_patterns_redact_each_key_kind(kind):
    policy = ContentPolicy()
    text = f"use {SECRETS[kind]} please"
    assert policy.redact_text(text) == f"use {REDACTED} please"


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Authorization: Bearer [REDACTED]"),
    ("api_key=abc123456789&x=1", "api_key=[REDACTED]&x=1"),
    ('{"password": "hunter22"}', '{"password": "[REDACTED]"}'),
    ("API-KEY: zzzz9999", "API-KEY: [REDACTED]"),
    ("plain text with sk- and token words", "plain text with sk- and token words"),
])
def test_pairs_and_bearer_tokens(text, expected):
    assert ContentPolicy().redact_text(text) == expected


def test_extra_user_patterns_and_secret_keys_in_mappings():
    policy = ContentPolicy(extra_patterns=[r"ACME-\d{6}"])
    cleaned = policy.clean({"note": "id ACME-123456", "api_key": "short", "nested": [{"token": "t0k"}]})
    assert cleaned == {"note": f"id {REDACTED}", "api_key": REDACTED, "nested": [{"token": REDACTED}]}


def test_long_content_is_cut_and_bytes_are_decoded():
    policy = ContentPolicy(max_chars=10)
    assert policy.clean("x" * 25) == "x" * 10 + "...[truncated 15 chars]"
    assert policy.clean(b"\xffok") == "\ufffdok"


def test_tracer_redacts_before_any_hook_sees_content():
    tracer, rec = recording_tracer({"content": {"redact": ["internal-[0-9]+"]}})
    key = SECRETS["openai"]
    with pytest.raises(ValueError):
        with tracer.workflow("wf", inputs={"q": key}, tags={"team": key}):
            with tracer.llm_call("gpt-4o", prompt=f"key {key}", messages=[{"role": "user", "content": key}]) as c:
                c.record(response=f"echo {key} internal-42")
            with tracer.tool_call("t", args={"auth": f"Bearer {key}"}) as t:
                t.record(result={"echo": key})
            tracer.validation_failure([f"bad {key}"], raw_output=key)
            raise ValueError(f"failed with {key}")
    import json
    from tiertrace import to_dict

    dumped = json.dumps([to_dict(r) for _, r in rec.events])
    assert key not in dumped
    assert "internal-42" not in dumped
    assert dumped.count(REDACTED) >= 8


def test_capture_off_drops_content_but_keeps_structure():
    tracer, rec = recording_tracer({"content": {"capture": False}})
    with tracer.workflow("wf", inputs={"q": "x"}, tags={"team": "a"}):
        with tracer.llm_call("gpt-4o", prompt="secret plan") as c:
            c.record(response="answer", input_tokens=1, output_tokens=1)
        with tracer.tool_call("t", args={"q": 1}) as t:
            t.record(result=2)
    call = rec.records("on_llm_call_end")[0]
    tool = rec.records("on_tool_call_end")[0]
    wf = rec.records("on_workflow_end")[0]
    assert call.prompt is None and call.response is None and call.input_tokens == 1
    assert tool.args is None and tool.result is None
    assert wf.inputs == {} and wf.tags == {"team": "a"}
