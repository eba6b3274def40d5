"""The cascade policy on its own: fallback, escalation, what is shown, what is billed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmx_lsp import cascade
from mmx_lsp.cascade import Flight, OnFailedCheck, Reply, Step, TimeBudget
from mmx_lsp.errors import ProviderTimeout, ProviderUnavailable
from mmx_lsp.kinds import Kind, Tier
from mmx_lsp.pricing import Usage
from mmx_lsp.verify import Verdict

CHEAP, PREMIUM = Decimal("0.001"), Decimal("0.02")


class Tiers:
    """Two tiers with fixed answers: a tier is down (raises) or not set up when told so."""

    def __init__(
        self,
        answers: dict[Tier, str],
        *,
        down: frozenset[Tier] = frozenset(),
        unset: frozenset[Tier] = frozenset(),
        cut_off: frozenset[Tier] = frozenset(),
    ) -> None:
        self.answers, self.down, self.unset, self.cut_off = answers, down, unset, cut_off
        self.called: list[Tier] = []

    def configured(self, tier: Tier) -> str | None:
        return f"set the {tier} key" if tier in self.unset else None

    async def attempt(self, tier: Tier) -> Reply:
        self.called.append(tier)
        if tier in self.down:
            raise ProviderUnavailable(f"{tier} endpoint returned 503")
        cost = CHEAP if tier == "cheap" else PREMIUM
        usage, cut_off = Usage(100, 10), tier in self.cut_off
        return Reply(self.answers[tier], f"{tier}-model", cost, usage, cut_off=cut_off)


def good_if_not_bad(text: str) -> Verdict:
    if not text.strip():
        return Verdict(False, "empty answer")
    return Verdict(False, "does not parse") if "bad" in text else Verdict(True, "parses")


async def run(
    tiers: Tiers, routed: Tier = "cheap", kind: Kind = "refactor", *, enabled: bool = True
) -> Flight:
    return await cascade.run(
        Flight(routed),
        kind,
        configured=tiers.configured,
        attempt=tiers.attempt,
        verify=good_if_not_bad,
        escalation=OnFailedCheck(enabled=enabled),
    )


async def test_a_verified_answer_is_kept_and_its_call_billed() -> None:
    tiers = Tiers({"cheap": "good", "premium": "better"})
    flight = await run(tiers)
    assert tiers.called == ["cheap"]
    assert (flight.tier, flight.text, flight.passed, flight.escalated) == (
        "cheap",
        "good",
        True,
        False,
    )
    assert flight.cost_usd == CHEAP and flight.usage == Usage(100, 10)
    assert flight.error is None and flight.fallback is None


async def test_a_cheap_answer_that_fails_verification_goes_to_premium_once() -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    flight = await run(tiers)
    assert tiers.called == ["cheap", "premium"]
    assert (flight.tier, flight.text, flight.escalated) == ("premium", "good", True)
    # Both calls cost money: the discarded cheap answer too.
    assert [s.billed for s in flight.steps] == [True, True]
    assert flight.cost_usd == CHEAP + PREMIUM


async def test_an_edit_cut_off_at_its_length_cap_fails_however_it_parses() -> None:
    tiers = Tiers({"cheap": "good", "premium": "better"}, cut_off=frozenset({"cheap"}))
    flight = await run(tiers)
    assert tiers.called == ["cheap", "premium"]
    assert (flight.tier, flight.text, flight.escalated) == ("premium", "better", True)
    assert flight.steps[0].reason == cascade.CUT_OFF
    tiers = Tiers({"cheap": "good", "premium": "better"}, cut_off=frozenset({"cheap", "premium"}))
    flight = await run(tiers)
    assert (flight.text, flight.error) == ("", f"no answer passed verification ({cascade.CUT_OFF})")
    # An explanation or ghost text cut short is still shown.
    for kind in ("explain", "inline"):
        tiers = Tiers({"cheap": "good", "premium": "better"}, cut_off=frozenset({"cheap"}))
        flight = await run(tiers, kind=kind)
        assert (tiers.called, flight.text, flight.passed) == (["cheap"], "good", True)


async def test_no_escalation_when_the_cascade_is_off_and_the_edit_is_dropped() -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    flight = await run(tiers, enabled=False)
    assert tiers.called == ["cheap"]
    assert flight.text == "" and not flight.passed
    assert flight.error == "no answer passed verification (does not parse)"
    assert flight.cost_usd == CHEAP


async def test_unverified_ghost_text_is_still_shown_and_blank_ghost_text_not_escalated() -> None:
    shown = await run(Tiers({"cheap": "bad", "premium": "good"}), kind="inline", enabled=False)
    assert (shown.text, shown.passed, shown.error) == ("bad", False, None)
    blank = Tiers({"cheap": "  ", "premium": "good"})
    flight = await run(blank, kind="inline")
    assert blank.called == ["cheap"] and flight.text == "" and flight.error is None


async def test_premium_is_never_escalated() -> None:
    tiers = Tiers({"cheap": "good", "premium": "bad"})
    flight = await run(tiers, "premium")
    assert tiers.called == ["premium"]
    assert flight.error == "no answer passed verification (does not parse)"


async def test_a_failed_escalation_keeps_the_cheap_answer_and_costs_nothing_more() -> None:
    tiers = Tiers({"cheap": "bad", "premium": ""}, down=frozenset({"premium"}))
    flight = await run(tiers, kind="inline")
    assert tiers.called == ["cheap", "premium"]
    assert (flight.tier, flight.text, flight.escalated, flight.error) == (
        "cheap",
        "bad",
        False,
        None,
    )
    assert flight.steps[-1] == Step(
        "premium", None, error="premium endpoint returned 503", escalation=True
    )
    assert flight.cost_usd == CHEAP and flight.failure is None


async def test_a_tier_that_is_down_falls_back_to_the_other_once() -> None:
    tiers = Tiers({"cheap": "good", "premium": "good"}, down=frozenset({"premium"}))
    flight = await run(tiers, "premium")
    assert tiers.called == ["premium", "cheap"]
    assert flight.fallback == "premium tier down; answered by cheap"
    assert (flight.tier, flight.text) == ("cheap", "good")
    both = Tiers({"cheap": "", "premium": ""}, down=frozenset({"cheap", "premium"}))
    failed = await run(both, "cheap")
    assert both.called == ["cheap", "premium"]
    assert failed.error == "premium endpoint returned 503" and failed.failure is failed.steps[-1]
    assert failed.text == "" and failed.cost_usd == 0


async def test_a_tier_that_is_not_set_up_hands_over_or_previews() -> None:
    tiers = Tiers({"cheap": "good", "premium": "good"}, unset=frozenset({"premium"}))
    flight = await run(tiers, "premium")
    assert tiers.called == ["cheap"] and flight.tier == "cheap"
    assert flight.fallback == "premium tier not configured (set the premium key); used cheap"
    # No escalation to a tier that is not set up.
    bad = Tiers({"cheap": "bad", "premium": "good"}, unset=frozenset({"premium"}))
    assert (await run(bad)).escalated is False and bad.called == ["cheap"]
    none = Tiers({"cheap": "", "premium": ""}, unset=frozenset({"cheap", "premium"}))
    preview = await run(none, "cheap")
    assert none.called == [] and preview.preview == "set the cheap key"
    assert preview.steps == [] and preview.cost_usd == 0


async def test_a_fallback_tier_that_fails_does_not_fall_back_again() -> None:
    tiers = Tiers(
        {"cheap": "", "premium": ""}, down=frozenset({"cheap"}), unset=frozenset({"premium"})
    )
    flight = await run(tiers, "premium")
    assert tiers.called == ["cheap"]
    assert flight.error == "cheap endpoint returned 503"


def test_exactly_one_request_carries_a_flights_cost() -> None:
    flight = Flight("cheap")
    assert flight.claim() is True
    assert flight.claim() is False
    assert flight.claim() is False


def test_a_cancelled_request_carries_the_cost_only_when_nobody_else_waits() -> None:
    flight = Flight("cheap")
    flight.waiters = 1  # the one that joined still waits: it will get the answer
    assert not flight.may_claim_on_cancel()
    flight.waiters = 0
    assert flight.may_claim_on_cancel() and flight.claim()


class Never:
    def escalate(self, kind: Kind, cheap: Step) -> bool:
        return False


@pytest.mark.parametrize("decision", [Never(), OnFailedCheck(enabled=False)])
async def test_the_escalation_decision_is_the_callers(decision: cascade.Escalation) -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    await cascade.run(
        Flight("cheap"),
        "fix",
        configured=tiers.configured,
        attempt=tiers.attempt,
        verify=good_if_not_bad,
        escalation=decision,
    )
    assert tiers.called == ["cheap"]


def saving(**fields: object) -> cascade.ExpectedSaving:
    from mmx_lsp.router import load_built_in
    from mmx_lsp.scoring import FEATURE_NAMES

    values: dict[str, object] = {
        "enabled": True,
        "router": load_built_in(FEATURE_NAMES),
        "p_cheap_ok": 0.5,
        "premium_usd": PREMIUM,
        "failed_answer_usd": Decimal("0.05"),
    }
    values.update(fields)
    return cascade.ExpectedSaving(**values)  # type: ignore[arg-type]


async def run_with(tiers: Tiers, escalation: cascade.Escalation, kind: Kind = "inline") -> Flight:
    return await cascade.run(
        Flight("cheap"),
        kind,
        configured=tiers.configured,
        attempt=tiers.attempt,
        verify=good_if_not_bad,
        escalation=escalation,
    )


async def test_a_flagged_answer_goes_to_premium_when_that_saves_money_in_expectation() -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    flight = await run_with(tiers, saving())
    assert tiers.called == ["cheap", "premium"] and flight.escalated


async def test_a_premium_call_dearer_than_the_failure_it_may_fix_is_not_made() -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    flight = await run_with(tiers, saving(premium_usd=Decimal("1.00")))
    assert tiers.called == ["cheap"] and not flight.escalated
    assert flight.text == "bad" and not flight.passed  # ghost text, shown unverified


async def test_without_an_estimate_a_flagged_answer_is_escalated_as_before() -> None:
    tiers = Tiers({"cheap": "bad", "premium": "good"})
    escalation = saving(router=None, p_cheap_ok=None, premium_usd=Decimal("1.00"))
    flight = await run_with(tiers, escalation, kind="refactor")
    assert tiers.called == ["cheap", "premium"] and flight.text == "good"


async def test_blank_ghost_text_is_escalated_only_where_a_whole_body_was_asked_for() -> None:
    line = Tiers({"cheap": " ", "premium": "good"})
    await run_with(line, saving(body=False))
    assert line.called == ["cheap"]
    body = Tiers({"cheap": " ", "premium": "good"})
    flight = await run_with(body, saving(body=True))
    assert body.called == ["cheap", "premium"] and flight.text == "good"


def test_a_flagged_answer_is_likelier_to_fail_when_the_cheap_tier_was_unlikely_to_pass() -> None:
    router = saving().router
    assert router is not None
    assert router.p_fails_if_flagged(0.2) > router.p_fails_if_flagged(0.8) > 0.5


class Slow(Tiers):
    """Tiers on a fake clock: a tier in `slow` runs out of time after `takes` seconds."""

    def __init__(self, answers: dict[Tier, str], slow: frozenset[Tier], takes: float) -> None:
        super().__init__(answers)
        self.slow, self.takes, self.now = slow, takes, 0.0

    def clock(self) -> float:
        return self.now

    async def attempt(self, tier: Tier) -> Reply:
        self.called.append(tier)
        if tier in self.slow:
            self.now += self.takes
            raise ProviderTimeout(f"{tier} tier: no complete answer within 4 s")
        self.now += 0.5
        return Reply(self.answers[tier], f"{tier}-model", CHEAP, Usage(100, 10))


async def run_timed(tiers: Slow, kind: Kind = "inline", deadline_s: float = 4.0) -> Flight:
    return await cascade.run(
        Flight("cheap"),
        kind,
        configured=tiers.configured,
        attempt=tiers.attempt,
        verify=good_if_not_bad,
        escalation=OnFailedCheck(),
        budget=TimeBudget(deadline_s, clock=tiers.clock),
    )


async def test_a_timeout_that_used_the_deadline_is_not_answered_by_premium() -> None:
    tiers = Slow({"cheap": "", "premium": "good"}, frozenset({"cheap"}), takes=4.0)
    flight = await run_timed(tiers)
    assert tiers.called == ["cheap"] and flight.fallback is None
    assert flight.error is not None and "too little time left to ask the premium" in flight.error
    assert flight.cost_usd == 0 and flight.text == ""


async def test_a_slow_tier_is_named_slow_not_down_when_time_allows_the_other() -> None:
    tiers = Slow({"cheap": "", "premium": "good"}, frozenset({"cheap"}), takes=1.0)
    flight = await run_timed(tiers)
    assert tiers.called == ["cheap", "premium"]
    assert flight.fallback == "cheap tier timed out; answered by premium"
    assert (flight.tier, flight.text) == ("premium", "good")


async def test_a_failed_fallback_is_reported_as_failed_not_as_answered() -> None:
    both = Tiers({"cheap": "", "premium": ""}, down=frozenset({"cheap", "premium"}))
    flight = await run(both, "cheap")
    assert flight.fallback == "cheap tier down; the premium tier failed too"
    assert "answered" not in (flight.fallback or "")


async def test_an_escalation_is_made_only_when_premium_has_time_to_answer() -> None:
    tiers = Slow({"cheap": "bad", "premium": "good"}, frozenset(), takes=0.0)
    late = cascade.TimeBudget(4.0, expected_s=lambda tier: 3.9, clock=tiers.clock)
    flight = await cascade.run(
        Flight("cheap"),
        "inline",
        configured=tiers.configured,
        attempt=tiers.attempt,
        verify=good_if_not_bad,
        escalation=OnFailedCheck(),
        budget=late,
    )
    assert tiers.called == ["cheap"] and not flight.escalated and flight.text == "bad"


def test_latencies_follow_each_tier_and_kind() -> None:
    seen = cascade.Latencies()
    assert seen.expected("cheap", "line") is None
    seen.add("cheap", "line", 1.0)
    seen.add("cheap", "line", 2.0)
    assert seen.expected("cheap", "line") == pytest.approx(1.3)
    assert seen.expected("premium", "line") is None
