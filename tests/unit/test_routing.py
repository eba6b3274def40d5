"""Routing: override > rules > a threshold that rises near the budget."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from mmx_lsp.config import Settings
from mmx_lsp.routing import Overrides, action_title, route, route_fixed, threshold
from mmx_lsp.scoring import Features


def features(**changes: object) -> Features:
    base: dict[str, object] = dict(
        kind="refactor",
        language="python",
        context_tokens=400,
        selection_tokens=200,
        selected_lines=10,
        definitions_touched=1,
        nodes_spanned=3,
        hole="selection",
        nesting_depth=2,
        external_identifiers=3,
        syntax_errors=0,
        enclosing_lines=20,
        estimated_input_tokens=700,
        estimated_output_tokens=240,
    )
    base.update(changes)
    return Features(**base)  # type: ignore[arg-type]


def settings(**routing: object) -> Settings:
    return Settings.model_validate({"routing": routing})


def test_threshold_decides_when_nothing_else_does() -> None:
    low = route(settings(), features(), 0.4, {}, request_id="a")
    high = route(settings(), features(), 0.6, {}, request_id="b")
    assert (low.tier, high.tier) == ("cheap", "premium")
    assert "score 0.60 above threshold 0.55" in high.reason
    assert low.model == "gpt-5-mini" and high.model == "gpt-5.5"


def test_first_matching_rule_wins_over_the_score() -> None:
    s = settings(
        rules=[
            {"when": {"kind": "refactor", "min_lines": 40}, "tier": "premium"},
            {"when": {"language": "python", "path": "**/tests/**"}, "tier": "cheap"},
            {"when": {"kind": ["refactor", "fix"]}, "tier": "premium"},
        ]
    )
    big = route(s, features(selected_lines=50), 0.1, {}, request_id="a", path="/src/a.py")
    test_file = route(s, features(), 0.9, {}, request_id="b", path="/repo/tests/test_a.py")
    other = route(s, features(), 0.1, {}, request_id="c", path="/src/a.py")
    assert (big.tier, big.rule and big.rule["index"]) == ("premium", 0)
    assert (test_file.tier, test_file.rule and test_file.rule["index"]) == ("cheap", 1)
    assert (other.tier, other.rule and other.rule["index"]) == ("premium", 2)
    assert "rule 2" in test_file.reason


def test_override_beats_rules() -> None:
    s = settings(rules=[{"when": {"kind": "refactor"}, "tier": "premium"}])
    decision = route(s, features(), 0.9, {}, request_id="a", override=("cheap", "document"))
    assert (decision.tier, decision.override, decision.rule) == ("cheap", "document", None)
    assert "this file" in decision.reason


def test_override_precedence_next_then_document_then_session() -> None:
    o = Overrides()
    o.set("cheap", "session")
    o.set("premium", "document", "file:///a.py")
    assert o.lookup("file:///a.py") == ("premium", "document")
    assert o.lookup("file:///b.py") == ("cheap", "session")
    o.set("cheap", "next")
    assert o.lookup("file:///a.py") == ("cheap", "next")
    o.consume_next()
    assert o.lookup("file:///a.py") == ("premium", "document")
    o.set("auto", "session")
    assert o.lookup("file:///a.py") is None
    with pytest.raises(ValueError, match="needs a uri"):
        o.set("premium", "document")


def test_threshold_rises_smoothly_near_the_budget_without_a_cut_off() -> None:
    s = settings(premium_above=0.5, daily_budget_usd=10, budget_soft_start=0.5)
    values = [threshold(s, Decimal(spent) / 10) for spent in range(0, 121)]
    assert values[0] == values[50] == 0.5
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert max(b - a for a, b in itertools.pairwise(values)) < 0.03  # no jump
    assert values[100] == 1.0 and values[120] == 1.0
    assert threshold(settings(premium_above=0.5), Decimal(1000)) == 0.5  # no budget, no change
    spent = route(s, features(), 0.9, {}, request_id="a", spent_today=Decimal("9.5"))
    assert spent.tier == "cheap" and "near today's budget" in spent.reason
    assert not spent.cache_only


def test_cache_only_once_the_budget_is_gone_when_asked() -> None:
    s = settings(daily_budget_usd=1, cache_only_over_budget=True)
    assert route(s, features(), 0.2, {}, request_id="a", spent_today=Decimal(1)).cache_only
    assert not route(s, features(), 0.2, {}, request_id="a", spent_today=Decimal("0.5")).cache_only


def test_estimates_cover_every_tier_and_titles_show_them() -> None:
    decision = route(settings(), features(), 0.9, {}, request_id="a")
    assert decision.estimate_usd["premium"] > decision.estimate_usd["cheap"] > 0
    # 700 in × $5 + 240 out × $30 per million on gpt-5.5
    assert decision.estimate_usd["premium"] == Decimal("0.0107")
    assert action_title("Refactor selection", decision) == (
        "mmx: Refactor selection — premium · gpt-5.5 · ≈$0.011"
    )


def test_fixed_router_is_the_baseline() -> None:
    assert route_fixed(settings(), features(), "premium", "a").tier == "premium"
    assert route_fixed(settings(), features(), "cheap", "a").reason.endswith("always cheap")
