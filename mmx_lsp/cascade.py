"""The cascade policy: which tiers a request calls, which answer it keeps, which calls it pays.

One place for the rules both the server (`pipeline.Pipeline`) and `mmx-lsp eval`'s auto row
follow, so the eval measures what the server does:

- A routed tier that is not set up hands the request to the other tier when that one is
  (a *fallback*); when neither is, no model is called (*preview*).
- A routed tier that fails (an error after its retries) hands the request to the other tier
  once, if it is set up, the request has not already fallen back, and the time left (a
  `TimeBudget`) is enough for that tier. A slow tier is not a down tier: a call that ran out
  of time leaves little for another, and says "timed out", not "down"; the status says what
  happened to each tier, the fallback's failure included.
- A cheap answer that fails verification is sent to premium once (an *escalation*) when the
  `Escalation` decision says so and the time left allows; a premium call that fails keeps
  the cheap answer.
- An answer that fails verification is not applied: an edit is dropped (with an error), ghost
  text is still shown when it is not blank (the user sees it and may ignore it). An edit the
  endpoint cut off at its length cap fails however it parses (`judged`): applied, it would
  drop the end of the code it replaces.
- Every call that got a reply is billed (`Step.billed`), including answers the cascade
  discarded; a call that failed costs nothing. Identical requests in flight share one
  `Flight`, whose cost is carried by exactly one of them (`Flight.claim`): the first to
  receive its answer, whether it started the flight or joined it, or, when every request
  waiting for it was cancelled, the last to leave. The others report it as a shared answer.

It does no I/O itself: the caller passes how to call a tier (`attempt`), how to check an
answer (`verify`), which tiers are set up (`configured`) and the escalation decision. Both
are easy to extend: more checks compose into one `Verifier`; a decision that weighs the
expected saving (from a router's `p_cheap_ok`) is another `Escalation`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from mmx_lsp.errors import ProviderError, ProviderTimeout, TierSkipped
from mmx_lsp.kinds import EDIT_KINDS, INLINE_KINDS, Kind, Tier, other_tier
from mmx_lsp.pricing import Usage
from mmx_lsp.router import Router, escalation_pays
from mmx_lsp.verify import Verdict

if TYPE_CHECKING:
    from mmx_lsp.config import Settings
    from mmx_lsp.routing import Decision


@dataclass(frozen=True)
class Reply:
    """One model call's answer, cleaned up and priced by the caller."""

    text: str
    model: str  # the model that was asked (the tier's)
    cost_usd: Decimal = Decimal(0)
    usage: Usage = field(default_factory=Usage)
    usage_estimated: bool = False  # the endpoint reported no usage and nothing counted it
    model_version: str = ""  # the model the provider says answered ("" when it did not say)
    latency_ms: float = 0.0
    premium_usd: Decimal | None = None  # what the same tokens would have cost on premium
    template_version: str = ""
    prompt: str | None = None  # the prompt, when the settings store prompts
    cut_off: bool = False  # the endpoint stopped the answer at its length cap
    counted_input_tokens: int = 0  # the prompt by `calls.prompt_tokens` (the estimate's count)


@dataclass(frozen=True)
class Step:
    """One call the cascade made: its reply and verdict, or the error it ended with."""

    tier: Tier
    reply: Reply | None
    passed: bool = False
    reason: str = ""
    error: str | None = None
    escalation: bool = False  # the call that took a failed cheap answer to premium
    timed_out: bool = False  # the error is the deadline passing (a slow tier, not a down one)
    skipped: bool = False  # not made: the tier's circuit breaker is open

    @property
    def billed(self) -> bool:
        """Whether the call costs money: it got a reply (used or not)."""
        return self.reply is not None


class Escalation(Protocol):
    """Whether a cheap answer that was verified (and may have failed) goes to premium."""

    def escalate(self, kind: Kind, cheap: Step) -> bool: ...


@dataclass(frozen=True)
class OnFailedCheck:
    """Escalate a cheap answer that fails verification, when `enabled` (routing.cascade).

    Blank ghost text is not escalated (an inline answer may well be nothing); a blank edit is.
    """

    enabled: bool = True

    def escalate(self, kind: Kind, cheap: Step) -> bool:
        if not self.enabled or cheap.passed or cheap.reply is None:
            return False
        return bool(cheap.reply.text.strip()) or kind not in INLINE_KINDS


@dataclass(frozen=True)
class ExpectedSaving:
    """Escalate a flagged cheap answer only when asking premium saves money in expectation:
    when what a failed answer costs (`failed_answer_usd`), times the chance that the flagged
    answer really fails and that premium's is good, is more than the premium call.

    The chances come from the router's estimate for the request (`p_cheap_ok`) and its
    verifier's measured catch and false-alarm rates; without an estimate (a request the router
    has no data for) a flagged answer is escalated as `OnFailedCheck` does. Blank ghost text
    is escalated only where a whole body was asked for (`body`): elsewhere nothing may be the
    right answer.
    """

    enabled: bool
    router: Router | None
    p_cheap_ok: float | None
    premium_usd: Decimal
    failed_answer_usd: Decimal
    body: bool = False

    @classmethod
    def of(cls, settings: Settings, decision: Decision, router: Router | None) -> ExpectedSaving:
        """The escalation rule for a routed request (the server's and eval's auto row's)."""
        return cls(
            enabled=settings.routing.cascade,
            router=router if decision.p_cheap_ok is not None else None,
            p_cheap_ok=decision.p_cheap_ok,
            premium_usd=decision.estimate_usd.get("premium", Decimal(0)),
            failed_answer_usd=settings.routing.failed_answer_usd,
            body=decision.features.get("hole") == "body",
        )

    def escalate(self, kind: Kind, cheap: Step) -> bool:
        if not self.enabled or cheap.passed or cheap.reply is None:
            return False
        if not cheap.reply.text.strip() and kind in INLINE_KINDS and not self.body:
            return False
        if self.router is None or self.p_cheap_ok is None:
            return True
        return escalation_pays(
            self.router,
            self.p_cheap_ok,
            self.router.p_fails_if_flagged(self.p_cheap_ok),
            self.premium_usd,
            self.failed_answer_usd,
        )


Attempt = Callable[[Tier], Awaitable[Reply]]  # raises ProviderError when the call fails

# Without a measured latency, another call is worth making only with this share of the
# request's deadline left.
MIN_SHARE_LEFT = 0.4


@dataclass
class TimeBudget:
    """The time a request has for all its calls (the deadline of its kind), and how long a
    tier usually takes to answer it (`expected_s`, None when unknown)."""

    deadline_s: float
    expected_s: Callable[[Tier], float | None] = lambda tier: None
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def left(self) -> float:
        """Seconds left of the deadline (the next call's own deadline)."""
        return max(0.0, self.deadline_s - (self.clock() - self.started))

    def allows(self, tier: Tier) -> bool:
        """Whether `tier` can answer in the time left: its usual time, or a fair share of
        the deadline when it has none yet."""
        expected = self.expected_s(tier)
        needed = MIN_SHARE_LEFT * self.deadline_s if expected is None else expected
        return self.left() >= needed


@dataclass
class Latencies:
    """How long each tier took to answer each kind of request (a moving average of the
    calls that answered), for `TimeBudget.expected_s`."""

    weight: float = 0.3
    seconds: dict[tuple[Tier, str], float] = field(default_factory=dict)

    def add(self, tier: Tier, key: str, seconds: float) -> None:
        old = self.seconds.get((tier, key))
        self.seconds[(tier, key)] = seconds if old is None else old + self.weight * (seconds - old)

    def expected(self, tier: Tier, key: str) -> float | None:
        return self.seconds.get((tier, key))


Verifier = Callable[[str], Verdict]
Configured = Callable[[Tier], "str | None"]  # None when the tier can be called, else why not


@dataclass
class Flight:
    """The model calls made for one request (shared by identical requests in flight).

    Filled in by `run` as calls finish, so a cancelled request still knows what it spent.
    """

    routed: Tier
    tier: Tier = "cheap"  # the tier whose answer this is (or that failed last)
    steps: list[Step] = field(default_factory=list)
    text: str = ""  # the answer to show or apply; "" for none
    passed: bool = False
    escalated: bool = False
    fallback: str | None = None
    preview: str | None = None  # why no model was called (neither tier is set up)
    error: str | None = None
    failure: Step | None = None  # the failed call that left the request without an answer
    claimed: bool = False
    waiters: int = 0  # requests waiting for it now (kept by the caller)

    def __post_init__(self) -> None:
        self.tier = self.routed

    @property
    def billed(self) -> list[Step]:
        return [s for s in self.steps if s.billed]

    @property
    def cost_usd(self) -> Decimal:
        return sum((s.reply.cost_usd for s in self.steps if s.reply), Decimal(0))

    @property
    def usage(self) -> Usage:
        return sum((s.reply.usage for s in self.steps if s.reply), Usage())

    @property
    def usage_estimated(self) -> bool:
        """Whether any billed call's tokens (and so its cost) were estimated."""
        return any(s.reply.usage_estimated for s in self.steps if s.reply)

    @property
    def model_ms(self) -> float:
        return sum(s.reply.latency_ms for s in self.steps if s.reply)

    @property
    def last_reply(self) -> Reply | None:
        billed = self.billed
        return billed[-1].reply if billed else None

    def claim(self) -> bool:
        """True for the one request that carries this flight's cost, so that every call is
        billed exactly once: call it when the flight has finished (the first request to get
        the answer claims it), or when a cancelled request was the last one waiting (the
        flight is cancelled with it and costs what its finished calls cost)."""
        first, self.claimed = not self.claimed, True
        return first

    def may_claim_on_cancel(self) -> bool:
        """Whether a request being cancelled carries the cost: only when nobody else waits
        (a request still waiting will receive the answer and carry it)."""
        return self.waiters == 0


async def run(
    flight: Flight,
    kind: Kind,
    *,
    configured: Configured,
    attempt: Attempt,
    verify: Verifier,
    escalation: Escalation,
    budget: TimeBudget | None = None,
) -> Flight:
    """Answer one request by the cascade's rules, filling in `flight` as calls finish.
    `budget` (None: no limit) decides whether a second call has time to answer."""
    tier = flight.routed
    problem = configured(tier)
    if problem is not None:
        if configured(other_tier(tier)) is not None:
            flight.preview = problem
            return flight
        flight.fallback = f"{tier} tier not configured ({problem}); used {other_tier(tier)}"
        tier = other_tier(tier)
    step = await _call(flight, kind, tier, attempt, verify)
    if step.error is not None:
        other = other_tier(tier)
        if flight.fallback is not None or configured(other) is not None:
            return _failed(flight, step)
        what = "timed out" if step.timed_out else "down"
        first_error, skipped = step.error, step.skipped
        if budget is not None and not budget.allows(other):
            failed = _failed(flight, step)
            failed.error = f"{step.error}; too little time left to ask the {other} tier"
            return failed
        tier = other
        step = await _call(flight, kind, tier, attempt, verify)
        # A tier skipped by its circuit breaker says so ("cheap tier skipped for 30 s …").
        down = first_error if skipped else f"{other_tier(tier)} tier {what}"
        if step.error is not None:
            flight.fallback = f"{down}; the {tier} tier failed too"
            return _failed(flight, step)
        flight.fallback = f"{down}; answered by {tier}"
    if (
        tier == "cheap"
        and escalation.escalate(kind, step)
        and configured("premium") is None
        and (budget is None or budget.allows("premium"))
    ):
        premium = await _call(flight, kind, "premium", attempt, verify, escalation=True)
        if premium.error is None:
            step, tier, flight.escalated = premium, "premium", True
    flight.tier = tier
    assert step.reply is not None
    text = step.reply.text
    if step.passed or (kind in INLINE_KINDS and text.strip()):
        flight.text, flight.passed = text, step.passed
    else:
        flight.text, flight.passed = "", False
        if kind not in INLINE_KINDS:
            flight.error = f"no answer passed verification ({step.reason})"
    return flight


CUT_OFF = (
    "the answer was cut off at its length cap: raise max_output_tokens for this kind of "
    "request (limits) or for the tier"
)


def judged(kind: Kind, cut_off: bool, verdict: Verdict) -> tuple[bool, str]:
    """Whether an answer passes, and why not: the check's verdict, except that an edit cut
    off at its length cap fails whatever the check found (an explanation or ghost text cut
    short is still worth showing)."""
    if cut_off and kind in EDIT_KINDS:
        return False, CUT_OFF
    return verdict.ok, verdict.reason


async def _call(
    flight: Flight,
    kind: Kind,
    tier: Tier,
    attempt: Attempt,
    verify: Verifier,
    *,
    escalation: bool = False,
) -> Step:
    try:
        reply = await attempt(tier)
    except ProviderError as exc:
        slow = isinstance(exc, ProviderTimeout) and not isinstance(exc, TierSkipped)
        skipped = isinstance(exc, TierSkipped)
        step = Step(
            tier, None, error=str(exc), escalation=escalation, timed_out=slow, skipped=skipped
        )
    else:
        passed, reason = judged(kind, reply.cut_off, verify(reply.text))
        step = Step(tier, reply, passed, reason, escalation=escalation)
    flight.steps.append(step)
    return step


def _failed(flight: Flight, step: Step) -> Flight:
    flight.tier, flight.error, flight.text, flight.failure = step.tier, step.error, "", step
    return flight
