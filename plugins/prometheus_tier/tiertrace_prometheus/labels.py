"""Bounding label values, so a stray name cannot explode the number of series."""

from __future__ import annotations

import threading
from typing import Optional

OTHER = "other"
"""The value every label value past the limit is counted under."""
MISSING = "none"
"""The value of a label whose record field is empty (an LLM call outside any node)."""
MAX_VALUE_CHARS = 120
"""Longer values are cut: a label value is a name, not a document."""


class LabelLimiter:
    """Keeps the first ``limit`` distinct values of one label; folds the rest into ``other``.

    >>> models = LabelLimiter("model", limit=2)
    >>> [models.fold(m) for m in ("a", "b", "a", "c")]
    ['a', 'b', 'a', 'other']
    """

    __slots__ = ("name", "limit", "_seen", "_lock", "folded")

    def __init__(self, name: str, limit: int):
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.folded = 0
        """How many times a value was folded into ``other``."""

    def fold(self, value: Optional[str]) -> str:
        if not value:
            return MISSING
        if len(value) > MAX_VALUE_CHARS:
            value = value[:MAX_VALUE_CHARS]
        if value in self._seen:  # the common case: no lock
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
            self.folded += 1
            return OTHER

    def __len__(self) -> int:
        return len(self._seen)
