"""Carrying the current span into a thread pool (kept apart: concurrent.futures is slow to import)."""

from __future__ import annotations

import concurrent.futures
import contextvars
from typing import Any, Callable

__all__ = ["ThreadPoolExecutor"]


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose tasks run inside the span that submitted them."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
