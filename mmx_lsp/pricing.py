"""Pure pricing: token usage times a dated price table, in exact Decimal dollars."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmx_lsp.config import TierConfig

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    source: str
    as_of: str


@dataclass(frozen=True)
class Usage:
    """Tokens as the provider reported them; cached input tokens are part of input_tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    models: dict[str, Price]

    def lookup(self, model: str) -> Price | None:
        """Exact id, else the longest known id that the model id starts with or ends with.

        Dated snapshots (`gpt-5-mini-2025-08-07`) and gateway names (`openai/gpt-5-mini`)
        find the row of their model.
        """
        if model in self.models:
            return self.models[model]
        bare = model.rsplit("/", 1)[-1]
        if bare in self.models:
            return self.models[bare]
        best = max(
            (name for name in self.models if bare.startswith(name + "-") or bare == name),
            key=len,
            default=None,
        )
        return self.models[best] if best else None


@cache
def builtin_table() -> PriceTable:
    text = resources.files("mmx_lsp").joinpath("data/prices.toml").read_text("utf-8")
    return parse_table(tomllib.loads(text))


def parse_table(data: dict[str, object]) -> PriceTable:
    as_of = str(data["as_of"])
    models: dict[str, Price] = {}
    rows = data.get("models", {})
    assert isinstance(rows, dict)
    for name, row in rows.items():
        input_price = Decimal(str(row["input"]))
        models[name] = Price(
            input=input_price,
            output=Decimal(str(row["output"])),
            cached_input=Decimal(str(row.get("cached_input", row["input"]))),
            source=str(row.get("source", "")),
            as_of=str(row.get("as_of", as_of)),
        )
    return PriceTable(as_of, models)


def price_for(tier: TierConfig, table: PriceTable | None = None) -> Price | None:
    """The tier's own prices where it gives them, the table's otherwise; None when unknown."""
    table = table or builtin_table()
    known = table.lookup(tier.model)
    input_price = tier.input_usd_per_mtok if tier.input_usd_per_mtok is not None else None
    output_price = tier.output_usd_per_mtok if tier.output_usd_per_mtok is not None else None
    if input_price is None and known:
        input_price = known.input
    if output_price is None and known:
        output_price = known.output
    if input_price is None or output_price is None:
        return None
    if tier.cached_input_usd_per_mtok is not None:
        cached = tier.cached_input_usd_per_mtok
    elif known and tier.input_usd_per_mtok is None:
        cached = known.cached_input
    else:
        cached = input_price
    configured = tier.input_usd_per_mtok is not None or tier.output_usd_per_mtok is not None
    return Price(
        input=Decimal(input_price),
        output=Decimal(output_price),
        cached_input=Decimal(cached),
        source="configuration" if configured else (known.source if known else ""),
        as_of="configuration" if configured else (known.as_of if known else ""),
    )


def cost_usd(usage: Usage, price: Price | None) -> Decimal:
    """Exact cost of one call; cached input tokens at their own price. Unknown price: 0."""
    if price is None:
        return ZERO
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    fresh = usage.input_tokens - cached
    total = fresh * price.input + cached * price.cached_input + usage.output_tokens * price.output
    return total / MILLION


def format_usd(amount: Decimal | float | None, *, approx: bool = False) -> str:
    """A short human amount: $0.012, $0.00031, $4.20."""
    if amount is None:
        return "?"
    value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    prefix = "≈$" if approx else "$"
    if value == 0:
        return prefix + "0"
    if abs(value) >= 1:
        return f"{prefix}{value:.2f}"
    # Two significant digits for small amounts.
    return prefix + format(Decimal(f"{value:.2g}"), "f")
