from __future__ import annotations

import warnings

import pytest

from tiertrace.config import ModelPrice
from tiertrace.pricing import PriceTable, UnpricedModelWarning, load_shipped_prices, normalize_model


def test_shipped_table_states_source_and_date_and_covers_vendors():
    table = load_shipped_prices()
    assert table["source"] and table["as_of"] and table["unit"] == "USD per 1M tokens"
    providers = {row["provider"] for row in table["models"].values()}
    assert {"openai", "anthropic", "google", "mistral"} <= providers
    assert table["models"]["gemini-1.5-flash"]["input"] > 0
    assert any("cached_input" in row for row in table["models"].values())


def test_cost_arithmetic():
    prices = PriceTable()
    # gpt-4o: $2.50 in, $10 out, $1.25 cached input per 1M tokens
    assert prices.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert prices.cost("gpt-4o", 812, 230) == pytest.approx(812 * 2.5e-6 + 230 * 10e-6)
    assert prices.cost("gpt-4o", 1000, 0, cached_input_tokens=400) == pytest.approx(600 * 2.5e-6 + 400 * 1.25e-6)
    assert prices.cost("gemini-1.5-flash", 1_000_000, 1_000_000) == pytest.approx(0.075 + 0.30)


@pytest.mark.parametrize("spelled, base", [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("models/gemini-1.5-flash-002", "gemini-1.5-flash"),
    ("gemini/gemini-1.5-flash-latest", "gemini-1.5-flash"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("mistral-large-2411", "mistral-large"),
    ("GPT-4O", "gpt-4o"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
])
def test_model_name_matching(spelled, base):
    prices = PriceTable()
    assert prices.lookup(spelled).model == base


def test_longest_prefix_wins():
    prices = PriceTable()
    assert prices.lookup("gpt-4o-mini-audio-preview").model == "gpt-4o-mini"
    assert prices.lookup("gemini-1.5-flash-8b-001").model == "gemini-1.5-flash-8b"


def test_unknown_model_is_unpriced_and_warned_once():
    prices = PriceTable()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert prices.cost("my-local-llama", 10, 10) is None
        assert prices.cost("my-local-llama", 10, 10) is None
    assert len([w for w in caught if issubclass(w.category, UnpricedModelWarning)]) == 1
    assert "observability.pricing" in str(caught[0].message)


def test_no_tokens_means_no_cost():
    assert PriceTable().cost("gpt-4o", None, None) is None


def test_overrides_replace_and_extend():
    prices = PriceTable({"gpt-4o": ModelPrice(input=1.0, output=2.0),
                         "my-local-llama": ModelPrice(input=0.0, output=0.0)})
    assert prices.cost("gpt-4o-2024-08-06", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert prices.cost("my-local-llama", 100, 100) == 0.0
    assert prices.lookup("gpt-4o").provider == "openai"


def test_normalize():
    assert normalize_model(" OpenAI/GPT-4o-2024-05-13 ") == "gpt-4o"


def test_endless_model_names_keep_memory_and_warnings_bounded():
    prices = PriceTable()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(10_000):
            assert prices.cost(f"custom-model-{i}", 1, 1) is None
    assert len(prices._cache) <= 4096 and len(caught) == 100
    assert prices.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
