"""Model prices: USD per 1M tokens, with overrides from forgegit.toml `[prices]`."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Optional, TypeVar

from .errors import ForgegitError
from .records import Usage

if TYPE_CHECKING:
    from .config import Settings

R = TypeVar("R")

# USD per 1M tokens (prompt, completion, cached prompt). As of 2025, check your provider: prices
# change, and proxies or self-hosted models cost something else; set `[prices]` in forgegit.toml.
# The cached rate is what a prompt token served from the provider's prompt cache costs
# (`usage.prompt_tokens_details.cached_tokens`); models without prompt caching charge the full rate.
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4.5-preview": (75.00, 150.00, 37.50),
    "gpt-4-turbo": (10.00, 30.00, 10.00),
    "gpt-4": (30.00, 60.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50, 0.50),
    "gpt-5": (1.25, 10.00, 0.125),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
    "o1": (15.00, 60.00, 7.50),
    "o1-mini": (1.10, 4.40, 0.55),
    "o3": (2.00, 8.00, 0.50),
    "o3-mini": (1.10, 4.40, 0.55),
    "o4-mini": (1.10, 4.40, 0.275),
}

PRICES_SETTING = "[prices]"  # where users set a price, named by every message about one

# Characters that may follow a known name in a dated or tagged variant ("gpt-4o-mini-2024-07-18").
_SEPARATORS = ("-", ":", "@")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _override_prices(overrides: Optional[Mapping[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """`[prices]` entries as (prompt, completion, cached) triples, or a clear error for a malformed one.
    `cached` is optional: without it a cached prompt token costs the full prompt rate."""
    table: dict[str, tuple[float, float, float]] = {}
    for model, value in (overrides or {}).items():
        try:
            prompt, completion = _number(value["prompt"]), _number(value["completion"])
            cached = _number(value["cached"]) if "cached" in value else prompt
            table[model.lower()] = (prompt, completion, cached)
        except (KeyError, TypeError, ValueError):
            raise ForgegitError(
                f"[prices] {model!r} must be {{prompt = USD, completion = USD}} per 1M tokens "
                f"(and optionally cached = USD), got {value!r}"
            ) from None
    return table


def _lookup(model: str, overrides: Optional[Mapping[str, Any]]) -> Optional[tuple[float, float, float]]:
    """The price of model: exact name first (overrides win), then the longest known prefix."""
    table = {**PRICES, **_override_prices(overrides)}
    name = model.strip().lower()
    if name in table:
        return table[name]
    prefixes = [k for k in table if name.startswith(k) and name[len(k)] in _SEPARATORS]
    return table[max(prefixes, key=len)] if prefixes else None



def cost_of(
    model: str, prompt_tokens: int, completion_tokens: int, overrides: Optional[Mapping[str, Any]] = None,
    cached_tokens: int = 0,
) -> float:
    """USD cost of a call's tokens (0.0 when the model's price is unknown); cached_tokens of the
    prompt tokens are priced at the model's cached rate."""
    price = _lookup(model, overrides)
    if price is None:
        return 0.0
    cached = max(0, min(cached_tokens, prompt_tokens))
    return ((prompt_tokens - cached) * price[0] + cached * price[2] + completion_tokens * price[1]) / 1_000_000


def usage_cost(usage: Usage, overrides: Optional[Mapping[str, Any]] = None) -> float:
    """What usage costs at today's prices, from the tokens it recorded per model. A record written
    before forgegit kept tokens per model has only its cost as it was then, which is returned."""
    if not usage.models:
        return usage.cost
    return sum(cost_of(m, t.prompt_tokens, t.completion_tokens, overrides, t.cached_tokens)
               for m, t in usage.models.items())


def reprice(record: R, overrides: Optional[Mapping[str, Any]] = None) -> R:
    """record (a RunRecord, EvalResult, EpochRecord, ...) with every Usage in it costed at today's
    `[prices]`: notes keep tokens, and the cost shown is computed from them when it is shown."""
    seen: set[int] = set()

    def walk(obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Usage):
            obj.cost = usage_cost(obj, overrides)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x)

    walk(record)
    return record


def unpriced(models: list[str], overrides: Optional[Mapping[str, Any]] = None) -> list[str]:
    """The models among models that forgegit has no price for."""
    return [m for m in dict.fromkeys(models) if _lookup(m, overrides) is None]


def budget_problem(settings: Settings) -> Optional[str]:
    """Why a USD budget cannot be kept (a model with no known price costs $0.00 and never reaches
    it), naming the `[prices]` setting; None when there is no USD budget or every model is priced."""
    if not settings.budget_usd:
        return None
    models = [settings.model, settings.optimizer_model or settings.model]
    missing = unpriced(models, settings.prices)
    if not missing:
        return None
    roles = {settings.model: "the agent's model"}
    roles.setdefault(settings.optimizer_model or settings.model, "the optimizer's model")
    names = ", ".join(f"{m!r} ({roles[m]})" for m in missing)
    return (f"--budget ${settings.budget_usd:g} cannot be kept: no price is known for {names}, so its calls would "
            f"count $0.00; set one in forgegit.toml, e.g. prices = {{ {missing[0]!r} = {{ prompt = 0.5, completion = 1.5 }} }} "
            f"(USD per 1M tokens), or stop by tokens with --budget-tokens N")
