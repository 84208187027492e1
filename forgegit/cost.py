"""Model prices: USD per 1M tokens, with overrides from forgegit.toml `[prices]`."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from .errors import ForgegitError

# USD per 1M tokens (prompt, completion). As of 2025, check your provider: prices change,
# and proxies or self-hosted models cost something else; set `[prices]` in forgegit.toml.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.5-preview": (75.00, 150.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

# Characters that may follow a known name in a dated or tagged variant ("gpt-4o-mini-2024-07-18").
_SEPARATORS = ("-", ":", "@")


def _override_prices(overrides: Optional[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """`[prices]` entries as (prompt, completion) pairs, or a clear error for a malformed one."""
    table: dict[str, tuple[float, float]] = {}
    for model, value in (overrides or {}).items():
        try:
            prompt, completion = value["prompt"], value["completion"]
            if isinstance(prompt, bool) or isinstance(completion, bool):
                raise TypeError
            table[model.lower()] = (float(prompt), float(completion))
        except (KeyError, TypeError, ValueError):
            raise ForgegitError(
                f"[prices] {model!r} must be {{prompt = USD, completion = USD}} per 1M tokens, got {value!r}"
            ) from None
    return table


def _lookup(model: str, overrides: Optional[Mapping[str, Any]]) -> Optional[tuple[float, float]]:
    """The price of model: exact name first (overrides win), then the longest known prefix."""
    table = {**PRICES, **_override_prices(overrides)}
    name = model.strip().lower()
    if name in table:
        return table[name]
    prefixes = [k for k in table if name.startswith(k) and name[len(k)] in _SEPARATORS]
    return table[max(prefixes, key=len)] if prefixes else None



def cost_of(
    model: str, prompt_tokens: int, completion_tokens: int, overrides: Optional[Mapping[str, Any]] = None
) -> float:
    """USD cost of a call's tokens (0.0 when the model's price is unknown)."""
    price = _lookup(model, overrides)
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
