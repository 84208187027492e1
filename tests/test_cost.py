"""Prices and costs: known models, dated variants, forgegit.toml overrides."""
from __future__ import annotations

import pytest

from forgegit.config import parse_config
from forgegit.cost import PRICES, cost_of
from forgegit.errors import ForgegitError


def test_cost_of_a_known_model() -> None:
    """1M prompt + 1M completion tokens of gpt-4o-mini cost its list prices added up."""
    assert cost_of("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)
    assert cost_of("gpt-4o", 2000, 500) == pytest.approx(2000 * 2.5e-6 + 500 * 10e-6)


def test_dated_variant_uses_the_longest_matching_prefix() -> None:
    """'gpt-4o-mini-2024-07-18' is priced as gpt-4o-mini, not gpt-4o."""
    assert cost_of("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(PRICES["gpt-4o-mini"][0])
    assert cost_of("gpt-4.1-nano-2025-04-14", 0, 1_000_000) == pytest.approx(PRICES["gpt-4.1-nano"][1])


def test_a_prefix_only_matches_at_a_name_boundary() -> None:
    """'gpt-4o' is not priced as 'gpt-4', and an unrelated model is not priced at all."""
    assert cost_of("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
    assert cost_of("gpt-4x-custom", 1_000_000, 1_000_000) == 0.0
    assert cost_of("o3mini", 1_000_000, 1_000_000) == 0.0


def test_unknown_model_costs_nothing() -> None:
    """A local model without a price costs 0.0, while a listed one is priced."""
    assert cost_of("llama3.1:8b", 10_000, 10_000) == 0.0
    assert PRICES["gpt-4.1-mini"][0] > 0
    assert cost_of("gpt-4.1-mini", 1_000_000, 0) == pytest.approx(PRICES["gpt-4.1-mini"][0])


def test_overrides_from_config_price_custom_and_known_models() -> None:
    """`[prices]` in forgegit.toml prices a custom model and beats the built-in table."""
    settings = parse_config('[prices]\n"my-model" = { prompt = 1.0, completion = 3 }\n"gpt-4o" = { prompt = 0, completion = 0 }\n')
    assert cost_of("my-model", 1_000_000, 1_000_000, settings.prices) == pytest.approx(4.0)
    assert cost_of("my-model-v2", 1_000_000, 0, settings.prices) == pytest.approx(1.0)
    assert cost_of("gpt-4o", 1_000_000, 1_000_000, settings.prices) == 0.0
    assert cost_of("GPT-4o-mini", 1_000_000, 0, settings.prices) == pytest.approx(0.15)


@pytest.mark.parametrize("bad", [{"prompt": 1.0}, {"prompt": "cheap", "completion": 1}, 5, {"prompt": True, "completion": 1}])
def test_malformed_override_is_a_clear_error(bad: object) -> None:
    """A price entry without numeric prompt and completion is reported, naming the model."""
    with pytest.raises(ForgegitError, match="my-model"):
        cost_of("gpt-4o", 1, 1, {"my-model": bad})
