"""Pricing is exact: Decimal arithmetic on a dated table, overridable by configuration."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmx_lsp.config import TierConfig
from mmx_lsp.pricing import Usage, builtin_table, cost_usd, format_usd, price_for


def test_table_is_dated_and_covers_the_well_known_vendors() -> None:
    table = builtin_table()
    assert table.as_of >= "2026-01-01"
    for model in (
        "gpt-5-mini",
        "gpt-5.5",
        "claude-sonnet-4.5",
        "gemini-2.5-flash",
        "codestral",
        "deepseek-chat",
        "qwen3-coder-plus",
    ):
        price = table.lookup(model)
        assert price is not None and price.output > price.input > 0, model


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("openai/gpt-5.5", "gpt-5.5"),
        ("anthropic/claude-haiku-4.5", "claude-haiku-4.5"),
        ("gpt-5", "gpt-5"),
    ],
    ids=["dated-snapshot", "gateway-prefix", "openrouter-name", "exact"],
)
def test_snapshots_and_gateway_names_find_their_row(model: str, expected: str) -> None:
    table = builtin_table()
    assert table.lookup(model) == table.models[expected]


def test_cost_is_exact_with_cached_input_at_its_own_price() -> None:
    price = price_for(TierConfig(model="gpt-5-mini"))
    usage = Usage(input_tokens=930, output_tokens=41, cached_input_tokens=100)
    # 830 × 0.25 + 100 × 0.025 + 41 × 2.00 = 207.5 + 2.5 + 82 = 292 (per million)
    assert cost_usd(usage, price) == Decimal("0.000292")
    total = sum((cost_usd(usage, price) for _ in range(1000)), Decimal(0))
    assert total == Decimal("0.292")


def test_configured_prices_override_the_table() -> None:
    tier = TierConfig(
        model="gpt-5-mini", input_usd_per_mtok=Decimal("1"), output_usd_per_mtok=Decimal("3")
    )
    price = price_for(tier)
    assert price is not None and price.source == "configuration"
    assert cost_usd(Usage(1_000_000, 1_000_000), price) == Decimal(4)


def test_unknown_model_without_prices_costs_nothing_known() -> None:
    assert price_for(TierConfig(model="my-local-model")) is None
    assert cost_usd(Usage(10, 10), None) == 0


@pytest.mark.parametrize(
    "amount, text",
    [
        ("0.012", "≈$0.012"),
        ("0.00031", "≈$0.00031"),
        ("4.2", "≈$4.20"),
        ("0", "≈$0"),
        ("0.0000123", "≈$0.000012"),
    ],
)
def test_amounts_read_well(amount: str, text: str) -> None:
    assert format_usd(Decimal(amount), approx=True) == text
