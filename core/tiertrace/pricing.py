"""Where an LLM call gets its price.

The shipped table (``data/prices.json``, which states its source and date)
gives USD per 1M input, output and cached-input tokens. ``observability.pricing``
overrides or extends it. Model names are matched the way engines spell them:
provider prefixes (``openai/gpt-4o``, ``models/gemini-1.5-flash``,
``bedrock/anthropic.claude-3-5-haiku-20241022-v1:0``), dated or numbered
versions (``gpt-4o-2024-08-06``, ``gemini-1.5-flash-002``) and ``-latest``
aliases all find their base model. An unknown model is unpriced: its cost is
None (never $0) and it is warned about once.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
import os
from typing import Mapping, Optional

import attrs

from tiertrace.config import ModelPrice

__all__ = ["PriceTable", "Price", "UnpricedModelWarning", "load_shipped_prices"]


_MAX_CACHED = 4096
_MAX_WARNED = 100


class UnpricedModelWarning(UserWarning):
    """An LLM call used a model with no known price."""


@attrs.define(frozen=True)
class Price:
    """A resolved price: the table key that matched and its USD per 1M tokens."""

    model: str
    input: float
    output: float
    cached_input: Optional[float] = None
    provider: Optional[str] = None

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """USD for one call. Cached input tokens are part of ``input_tokens``."""
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input + cached * cached_rate + output_tokens * self.output
        ) / 1_000_000


# Vendor prefixes inside a model id (Bedrock, Vertex): "us.anthropic.claude-..."
_VENDOR_DOT = re.compile(r"^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|amazon|cohere|google)\.")
# Version suffixes that do not change the price.
_VERSION_SUFFIX = re.compile(
    r"(?:[-@](?:\d{4}-?\d{2}-?\d{2}|\d{3,4}|latest|preview(?:-\d{2}-\d{2})?|exp)"
    r"|-v\d+(?::\d+)?|:\d+)$"
)


def normalize_model(model: str) -> str:
    """``'OpenAI/gpt-4o-2024-08-06'`` -> ``'gpt-4o'``."""
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]
    name = _VENDOR_DOT.sub("", name)
    while True:
        shorter = _VERSION_SUFFIX.sub("", name)
        if shorter == name or not shorter:
            return name
        name = shorter


def load_shipped_prices() -> dict:
    """The shipped table as parsed JSON (``source``, ``as_of``, ``models``)."""
    path = os.path.join(os.path.dirname(__file__), "data", "prices.json")
    with open(path, encoding="utf-8") as file:
        return json.load(file)


class PriceTable:
    """Look up prices and compute costs. Thread-safe; lookups are cached."""

    def __init__(self, overrides: Optional[Mapping[str, ModelPrice]] = None):
        shipped = load_shipped_prices()
        self.source: str = shipped["source"]
        self.as_of: str = shipped["as_of"]
        self._prices: dict[str, Price] = {
            key: Price(key, row["input"], row["output"], row.get("cached_input"), row.get("provider"))
            for key, row in shipped["models"].items()
        }
        # Overrides keep the user's exact spelling and also match normalized.
        self._overrides: dict[str, Price] = {}
        for key, price in (overrides or {}).items():
            known = self._prices.get(normalize_model(key))
            resolved = Price(
                key, price.input, price.output, price.cached_input, known.provider if known else None
            )
            self._overrides[key.lower()] = resolved
            self._overrides[normalize_model(key)] = resolved
        self._cache: dict[str, Optional[Price]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def lookup(self, model: Optional[str]) -> Optional[Price]:
        """The price for ``model``, or None when it is unknown."""
        if not model:
            return None
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self._resolve(model)
        if len(self._cache) >= _MAX_CACHED:  # engines with endless model names must not grow memory
            self._cache.clear()
        self._cache[model] = price
        return price

    def _resolve(self, model: str) -> Optional[Price]:
        raw = model.strip().lower()
        if raw in self._overrides:
            return self._overrides[raw]
        name = normalize_model(model)
        for table in (self._overrides, self._prices):
            if name in table:
                return table[name]
        # Longest known model that the name extends: "gpt-4o-audio" -> "gpt-4o".
        best = None
        for table in (self._overrides, self._prices):
            for key in table:
                if name.startswith(key + "-") and (best is None or len(key) > len(best.model)):
                    best = table[key]
            if best is not None:
                return best
        return None

    def cost(
        self,
        model: Optional[str],
        input_tokens: Optional[int],
        output_tokens: Optional[int],
        cached_input_tokens: Optional[int] = None,
    ) -> Optional[float]:
        """USD for one call, or None when the model or the token counts are unknown."""
        if input_tokens is None and output_tokens is None:
            return None
        price = self.lookup(model)
        if price is None:
            self._warn_unpriced(model)
            return None
        return price.cost(input_tokens or 0, output_tokens or 0, cached_input_tokens or 0)

    def provider(self, model: Optional[str]) -> Optional[str]:
        price = self.lookup(model)
        return price.provider if price else None

    def _warn_unpriced(self, model: Optional[str]) -> None:
        key = model or "<no model>"
        with self._lock:
            if key in self._warned or len(self._warned) >= _MAX_WARNED:
                return  # once per model, and not for more than _MAX_WARNED models
            self._warned.add(key)
        warnings.warn(
            f"tiertrace: no price known for model {key!r}; its calls are counted as unpriced "
            "(cost_usd=None). Add it under observability.pricing: "
            f"{{{key!r}: {{input: <USD per 1M>, output: <USD per 1M>}}}}",
            UnpricedModelWarning,
            stacklevel=4,
        )
