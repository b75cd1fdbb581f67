"""pytest fixtures, loaded through the ``pytest11`` entry point."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tiertrace.testing import RecordingPlugin, recording_tracer


@pytest.fixture
def tiertrace_tracer() -> Iterator[Any]:
    """A core-only tracer (no installed tier is started) with a
    :class:`~tiertrace.testing.RecordingPlugin` registered as ``"recorder"``
    (``tiertrace_tracer.tier("recorder")``). Shut down after the test."""
    tracer, _ = recording_tracer()
    try:
        yield tracer
    finally:
        tracer.shutdown(timeout=5)


@pytest.fixture
def tiertrace_recorder(tiertrace_tracer: Any) -> RecordingPlugin:
    """The recorder registered on ``tiertrace_tracer``."""
    return tiertrace_tracer.tier("recorder")
