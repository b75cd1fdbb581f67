"""Helpers shared by the OpenTelemetry tier's tests (a unique module name: every
test folder's conftest is called conftest)."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spans_by_name(memory: Any) -> dict[str, Any]:
    return {span.name: span for span in memory.get_finished_spans()}
