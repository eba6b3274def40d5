"""Pure routing: override > rules > a budget-aware score threshold, giving a Decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from mmx_lsp import globs
from mmx_lsp.config import Rule, Settings
from mmx_lsp.kinds import Kind, Tier
from mmx_lsp.pricing import Usage, cost_usd, format_usd, price_for
from mmx_lsp.router import Router, expected_costs
from mmx_lsp.scoring import Features

# The router of a decision made by the weighted score (the fixed baseline).
WEIGHTS_ROUTER = "weights/1"

OVERRIDE_SCOPES = ("next", "document", "session")


@dataclass
class Overrides:
    """Tier overrides the user set: for the next request, per document, for the session."""

    next: Tier | None = None
    documents: dict[str, Tier] = field(default_factory=dict)
    session: Tier | None = None

    def lookup(self, uri: str) -> tuple[Tier, str] | None:
        """(tier, scope) of the override in force for a document, if any."""
        if self.next:
            return self.next, "next"
        if uri in self.documents:
            return self.documents[uri], "document"
        if self.session:
            return self.session, "session"
        return None

    def set(self, tier: Tier | Literal["auto"], scope: str, uri: str | None = None) -> None:
        value: Tier | None = None if tier == "auto" else tier
        if scope == "next":
            self.next = value
        elif scope == "document":
            if uri is None:
                raise ValueError("scope 'document' needs a uri")
            if value is None:
                self.documents.pop(uri, None)
            else:
                self.documents[uri] = value
        elif scope == "session":
            self.session = value
            if value is None:
                # "back to auto" for the session clears every override.
                self.next = None
                self.documents.clear()
        else:
            raise ValueError(f"unknown scope {scope!r}; use next, document or session")

    def consume_next(self) -> None:
        self.next = None

    def as_dict(self) -> dict[str, Any]:
        return {"next": self.next, "documents": dict(self.documents), "session": self.session}


@dataclass(frozen=True)
class Decision:
    request_id: str
    kind: Kind
    tier: Tier
    model: str
    score: float
    threshold: float
    reason: str
    features: dict[str, Any]
    contributions: dict[str, float]
    rule: dict[str, Any] | None
    override: str | None
    estimate_usd: dict[str, Decimal]
    cached: bool = False
    cache_only: bool = False
    # The learned router's estimate that the cheap answer is good (None: the weighted score
    # decided), which router decided, and the expected cost of each way to answer.
    p_cheap_ok: float | None = None
    router: str = WEIGHTS_ROUTER
    expected_usd: dict[str, Decimal] | None = None
    # The tokens each tier would be sent and write, counted from the prompt it would be
    # sent (`calls.prompt_usage`); empty when the decision was priced from features alone.
    estimate_usage: dict[str, Usage] = field(default_factory=dict)

    def estimated_record(self, tier: str) -> dict[str, Any]:
        """What a request that called no model (preview mode) is recorded as having used:
        the estimate of its tokens and of its cost at `tier`, marked `usage_estimated`, so
        that the metrics of a replayed session show its spend and savings for what they are."""
        cost = self.estimate_usd.get(tier, Decimal(0))
        premium = self.estimate_usd.get("premium")
        usage = self.estimate_usage.get(tier)
        if usage is None:
            usage = Usage(
                int(self.features.get("estimated_input_tokens", 0)),
                int(self.features.get("estimated_output_tokens", 0)),
            )
        return {
            "cost_usd": cost,
            "saved_usd": None if premium is None else premium - cost,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "usage_estimated": True,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "tier": self.tier,
            "model": self.model,
            "score": self.score,
            "threshold": self.threshold,
            "reason": self.reason,
            "features": self.features,
            "contributions": self.contributions,
            "rule": self.rule,
            "override": self.override,
            "estimate_usd": {k: float(v) for k, v in self.estimate_usd.items()},
            "estimate_tokens": {
                k: [u.input_tokens, u.output_tokens] for k, u in self.estimate_usage.items()
            },
            "cached": self.cached,
            "cache_only": self.cache_only,
            "p_cheap_ok": self.p_cheap_ok,
            "router": self.router,
            "expected_usd": (
                {k: float(v) for k, v in self.expected_usd.items()} if self.expected_usd else None
            ),
        }


def threshold(settings: Settings, spent_today: Decimal) -> float:
    """`premium_above`, rising smoothly to 1.0 as today's spend nears the daily budget."""
    base = settings.routing.premium_above
    budget = settings.routing.daily_budget_usd
    if not budget:
        return base
    used = float(spent_today / budget)
    start = settings.routing.budget_soft_start
    if used <= start:
        return base
    x = min(1.0, (used - start) / (1.0 - start))
    eased = x * x * (3 - 2 * x)  # smoothstep: no jump at either end
    return round(base + (1.0 - base) * eased, 4)


def estimate(
    settings: Settings, features: Features, usage: Mapping[str, Usage] | None = None
) -> dict[str, Decimal]:
    """The cost of the request on each tier: of `usage` (the tokens of the prompt each tier
    would be sent, `calls.prompt_usage`) when given, else of the features' estimate."""
    default = Usage(features.estimated_input_tokens, features.estimated_output_tokens)
    return {
        name: cost_usd((usage or {}).get(name, default), price_for(tier))
        for name, tier in sorted(settings.tiers.items())
    }


def rule_matches(
    rule: Rule, features: Features, path: str, score: float, roots: Sequence[str] = ()
) -> bool:
    when = rule.when
    if when.kind is not None:
        kinds = [when.kind] if isinstance(when.kind, str) else when.kind
        if features.kind not in kinds:
            return False
    if when.language is not None:
        wanted = [when.language] if isinstance(when.language, str) else when.language
        if features.language not in wanted:
            return False
    if when.path is not None and not globs.matches(path, [when.path], roots):
        return False
    lines = features.selected_lines or features.enclosing_lines
    checks = (
        (when.min_lines, lines, True),
        (when.max_lines, lines, False),
        (when.min_definitions, features.definitions_touched, True),
        (when.max_definitions, features.definitions_touched, False),
        (when.min_score, score, True),
        (when.max_score, score, False),
    )
    for bound, value, is_min in checks:
        if bound is None:
            continue
        if (is_min and value < bound) or (not is_min and value > bound):
            return False
    return True


def describe(features: Features) -> str:
    """What the request is, in a few words a person understands."""
    kind = features.kind
    if kind in ("inline", "completion"):
        what = {
            "expression": "single-expression completion",
            "line": "one-line completion",
            "block": "block completion",
            "body": "whole-body completion",
        }.get(features.hole, "completion")
        return f"{what}, {features.context_tokens} context tokens"
    noun = {
        "refactor": "refactor",
        "fix": "fix",
        "explain": "explanation",
        "docstring": "docstring",
    }[kind]
    parts = [
        f"{noun} of {features.selected_lines} line{'s' if features.selected_lines != 1 else ''}"
    ]
    if features.definitions_touched >= 2:
        parts.append(f"spanning {features.definitions_touched} definitions")
    parts.append(f"{features.context_tokens} context tokens")
    return ", ".join(parts)


def route(
    settings: Settings,
    features: Features,
    score: float,
    contributions: dict[str, float],
    *,
    request_id: str,
    path: str = "",
    override: tuple[Tier, str] | None = None,
    spent_today: Decimal = Decimal(0),
    router: Router | None = None,
    usage: Mapping[str, Usage] | None = None,
    compared_input: Mapping[str, int] | None = None,
) -> Decision:
    """Choose the tier: an override, else the first matching rule, else the learned router's
    expected costs (completions, with `routing.router = "learned"`), else the threshold.
    `usage`: the tokens each tier would be sent and write (see `estimate`);
    `compared_input`: each tier's prompt as counted, which the tiers are compared on (when
    `usage` is what each model's tokenizer is known to report)."""
    what = describe(features)
    limit = threshold(settings, spent_today)
    rule_json: dict[str, Any] | None = None
    override_text: str | None = None
    tier: Tier
    estimates = estimate(settings, features, usage)
    learned = (
        router is not None
        and settings.routing.router == "learned"
        and router.covers(features.kind, features.hole)
    )
    p_cheap_ok: float | None = None
    expected: dict[str, Decimal] | None = None
    if learned and router is not None:
        p_cheap_ok = round(router.p_cheap_ok(features.as_dict()), 4)
        score = round(1 - p_cheap_ok, 4)
        contributions = {}
        # Expected costs need both tiers' prices; a model the price table does not know (and
        # the settings do not price) leaves the estimate to the threshold, as a score.
        if all(price_for(settings.tiers[t]) is not None for t in ("cheap", "premium")):
            # Near the budget the threshold rises toward 1; what a failure costs shrinks with
            # it, so premium gets rarer the same way.
            base = settings.routing.premium_above
            weight = (1 - limit) / (1 - base) if base < 1 else 1.0
            failure = settings.routing.failed_answer_usd * Decimal(str(round(weight, 4)))
            # The tiers are compared on one answer size, the guess for this request, and on
            # prompts as counted: a few short answers of one model, or its tokenizer
            # (`answer_sizes`, which the shown estimate uses), must not tip the choice.
            same = None
            if usage is not None:
                guess = features.estimated_output_tokens
                counted = compared_input or {}
                same = {t: Usage(counted.get(t, u.input_tokens), guess) for t, u in usage.items()}
            compared = estimate(settings, features, same)
            costs = expected_costs(
                router, p_cheap_ok, compared["cheap"], compared["premium"], failure
            )
            expected = {"cheap_first": costs.cheap_first, "premium": costs.premium}
    if override is not None:
        tier, scope = override
        override_text = scope
        reason = (
            f"{what}; {tier} because you chose it ({'this file' if scope == 'document' else scope})"
        )
    else:
        for index, rule in enumerate(settings.routing.rules):
            if rule_matches(rule, features, path, score, settings.roots):
                tier = rule.tier
                rule_json = {"index": index, **rule.model_dump(mode="json", exclude_none=True)}
                rule_json["when"] = {
                    k: v for k, v in rule_json.get("when", {}).items() if v is not None
                }
                reason = f"{what}; rule {index + 1} sends it to {tier}"
                break
        else:
            if expected is not None and p_cheap_ok is not None:
                cheaper = expected["premium"] < expected["cheap_first"]
                tier = "premium" if cheaper else "cheap"
                reason = (
                    f"{what}; cheap answer good with p={p_cheap_ok:.2f}: expected "
                    f"{format_usd(expected['premium'], approx=True)} on premium against "
                    f"{format_usd(expected['cheap_first'], approx=True)} cheap first"
                )
            else:
                tier = "premium" if score > limit else "cheap"
                relation = "above" if tier == "premium" else "at or below"
                reason = f"{what}; score {score:.2f} {relation} threshold {limit:.2f}"
            if limit > settings.routing.premium_above:
                reason += (
                    f" (raised from {settings.routing.premium_above:.2f}: near today's budget)"
                )
    budget = settings.routing.daily_budget_usd
    cache_only = bool(
        budget is not None and settings.routing.cache_only_over_budget and spent_today >= budget
    )
    if cache_only:
        reason += "; today's budget is spent, answering from the cache only"
    return Decision(
        request_id=request_id,
        kind=features.kind,
        tier=tier,
        model=settings.tiers[tier].model,
        score=score,
        threshold=limit,
        reason=reason,
        features=features.as_dict(),
        contributions=contributions,
        rule=rule_json,
        override=override_text,
        estimate_usd=estimates,
        cache_only=cache_only,
        p_cheap_ok=p_cheap_ok,
        router=router.version if learned and router is not None else WEIGHTS_ROUTER,
        expected_usd=expected,
        estimate_usage=dict(usage or {}),
    )


def route_fixed(settings: Settings, features: Features, tier: Tier, request_id: str) -> Decision:
    """The baseline router: always the same tier (for benchmarks and comparisons)."""
    return Decision(
        request_id=request_id,
        kind=features.kind,
        tier=tier,
        model=settings.tiers[tier].model,
        score=0.0,
        threshold=0.0,
        reason=f"{describe(features)}; always {tier}",
        features=features.as_dict(),
        contributions={},
        rule=None,
        override=None,
        estimate_usd=estimate(settings, features),
    )


def action_title(label: str, decision: Decision) -> str:
    """`mmx: Refactor selection — premium · gpt-5.5 · ≈$0.012`"""
    cost = format_usd(decision.estimate_usd.get(decision.tier), approx=True)
    return f"mmx: {label} — {decision.tier} · {decision.model} · {cost}"
