"""Running: one model call per (model, task), and the auto row through the server's cascade."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from mmx_lsp import calls, cascade, engine, prompts
from mmx_lsp.calls import Snapshot, take_snapshot
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document
from mmx_lsp.errors import ProviderError
from mmx_lsp.evaluation.checks import check
from mmx_lsp.evaluation.models import Contender
from mmx_lsp.evaluation.tasks import Task, log
from mmx_lsp.health import FimWatch
from mmx_lsp.kinds import INLINE_KINDS, Tier
from mmx_lsp.model_io import reply_cost
from mmx_lsp.pricing import Usage
from mmx_lsp.providers import Providers
from mmx_lsp.router_file import RouterSource
from mmx_lsp.verify import Verdict

# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """One model's answer to one task, checked and priced (or the auto row's, summed)."""

    task: str
    tier: Tier
    model: str
    model_version: str  # the model the provider said answered ("" when it did not answer)
    answer: str
    passed: bool
    reason: str
    verified: bool  # the server's own check (verify_edit), which drives the cascade
    verify_reason: str
    latency_ms: float
    usage: Usage
    cost_usd: Decimal
    error: str | None = None
    route: str = ""  # auto: the tier routing chose
    escalated: bool = False  # auto: the cheap answer failed verification; premium answered
    fallback: bool = False  # auto: the routed tier failed or is not set up; the other answered
    calls: int = 1
    usage_estimated: bool = False  # the endpoint reported no usage: counted from the text
    cut_off: bool = False  # the endpoint stopped the answer at its length cap

    @classmethod
    def unanswered(
        cls, task: Task, tier: Tier, model: str, why: str, latency_ms: float = 0.0, **facts: Any
    ) -> Outcome:
        """A task no model answered (`why`: the error, or why no model was called)."""
        return cls(
            task=task.name,
            tier=tier,
            model=model,
            model_version="",
            answer="",
            passed=False,
            reason=why,
            verified=False,
            verify_reason="no answer",
            latency_ms=latency_ms,
            usage=Usage(),
            cost_usd=Decimal(0),
            error=why,
            **facts,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "tier": self.tier,
            "model": self.model,
            "model_version": self.model_version,
            "passed": self.passed,
            "reason": self.reason,
            "verified": self.verified,
            "verify_reason": self.verify_reason,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
            "input_tokens": self.usage.input_tokens,
            "cached_input_tokens": self.usage.cached_input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": format(self.cost_usd, "f"),
            "usage_estimated": self.usage_estimated,
            "calls": self.calls,
            "route": self.route,
            "escalated": self.escalated,
            "fallback": self.fallback,
            "answer": self.answer,
        }


class ProgressSink(Protocol):
    """Told about model calls as they are scheduled and as they finish."""

    def planned(self, count: int) -> None: ...

    def finished(self, label: str, task: str) -> None: ...


def shape(settings: Settings, task: Task, doc: Document) -> calls.Shape:
    """The limits the server would give this request (by its kind and the hole it fills)."""
    hole = engine.measured(doc, task.request()).hole if task.kind in INLINE_KINDS else None
    return calls.request_shape(settings, task.kind, hole)


def snapshot(task: Task, doc: Document, request_shape: calls.Shape | None = None) -> Snapshot:
    """The excerpt the server would send for this request."""
    start = task.position(task.start)
    budget = None if request_shape is None else request_shape.context_tokens
    end = None if task.cursor else task.position(task.end)
    return take_snapshot(doc, start, end, context_tokens=budget)


def clean_answer(task: Task, snap: Snapshot, text: str) -> str:
    """The model's text cleaned up as the server does before showing or applying it."""
    return calls.clean_answer(task.kind, snap, text)


async def answer(
    providers: Providers, contender: Contender, task: Task, fim: FimWatch | None = None
) -> Outcome:
    """One model call for one task, as Pipeline._attempt makes it, then the task's check.
    With `fim`, a completion goes without its suffix to a tier found not to fill in the
    middle, as the server sends it."""
    tier_config = contender.settings.tiers[contender.tier]
    doc = task.document()
    limits = shape(contender.settings, task, doc)
    snap = snapshot(task, doc, limits)
    prompt = calls.build_prompt(task.kind, snap, tier_config, task.diagnostics, limits)
    if (
        prompt.suffix is not None
        and fim is not None
        and not await fim.suffix_ok_after_probe(contender.settings, providers, contender.tier)
    ):
        prompt = prompt.without_suffix()
    request = calls.model_request(contender.tier, tier_config, task.kind, prompt, limits, snap)
    started = time.perf_counter()
    try:
        reply = await providers.complete(request, deadline_s=limits.deadline_s)
    except ProviderError as exc:
        latency_ms = (time.perf_counter() - started) * 1000
        return Outcome.unanswered(task, contender.tier, contender.model, str(exc), latency_ms)
    text = clean_answer(task, snap, reply.text)
    verified, why = cascade.judged(
        task.kind, reply.cut_off, calls.verify_answer(snap, task.kind, text, prompt.words)
    )
    result = await check(task, text)
    return Outcome(
        task=task.name,
        tier=contender.tier,
        model=contender.model,
        model_version=reply.model,
        answer=text,
        passed=result.passed,
        reason=result.reason,
        verified=verified,
        verify_reason=why,
        latency_ms=reply.latency_ms,
        usage=reply.usage,
        cost_usd=reply_cost(reply, contender.price),
        usage_estimated=reply.usage_estimated,
        cut_off=reply.cut_off,
    )


class _Runner:
    """Runs model × task calls at most `jobs` at a time, each (model, task) once."""

    def __init__(self, settings: Settings, jobs: int, progress: ProgressSink | None) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(max(1, jobs))
        self._progress = progress
        self._providers: dict[tuple[str, str], Providers] = {}
        self._calls: dict[tuple[tuple[str, str], str], asyncio.Task[Outcome]] = {}
        self._tiers: dict[str, Contender] = {}
        self._fim: dict[tuple[str, str], FimWatch] = {}
        # The router the server would use: the settings' router file, else the built-in one.
        self.router = RouterSource(
            lambda: settings.routing.router_file, lambda m: log.warning("%s", m)
        ).current()

    def outcome(self, contender: Contender, task: Task) -> asyncio.Task[Outcome]:
        key = (contender.key, task.name)
        call = self._calls.get(key)
        if call is None:
            if self._progress is not None:
                self._progress.planned(1)
            call = asyncio.create_task(self._run(contender, task))
            self._calls[key] = call
        return call

    async def _run(self, contender: Contender, task: Task) -> Outcome:
        providers = self._providers.get(contender.key)
        if providers is None:
            # No circuit breaker: every task is put to every model, even one that is down.
            providers = Providers(contender.settings, breaker=None)
            self._providers[contender.key] = providers
        fim = self._fim.get(contender.key)
        if fim is None:
            fim = self._fim[contender.key] = FimWatch(lambda message: log.warning("%s", message))
        async with self._slots:
            outcome = await answer(providers, contender, task, fim)
        if self._progress is not None:
            self._progress.finished(contender.label, task.name)
        return outcome

    def adopt(self, contender: Contender) -> None:
        """Use this model's results for its tier in the auto row."""
        self._tiers.setdefault(contender.tier, contender)

    def tier(self, tier: Tier, task: Task) -> asyncio.Task[Outcome]:
        """The tier as configured: the matrix's own result when it has one."""
        contender = self._tiers.get(tier)
        if contender is None:
            contender = self._tiers[tier] = Contender.for_tier(self.settings, tier)
        return self.outcome(contender, task)

    async def auto(self, task: Task) -> Outcome:
        """What the server would have answered: routing, then the server's own cascade
        (`cascade.run`) over the tiers' results (each tier is called once per task)."""
        doc = task.document()
        decision = engine.decide(self.settings, doc, task.request(), router=self.router)
        snap = snapshot(task, doc, shape(self.settings, task, doc))
        providers = Providers(self.settings, breaker=None)

        async def attempt(tier: Tier) -> cascade.Reply:
            outcome = await self.tier(tier, task)
            if outcome.error is not None:
                raise ProviderError(outcome.error)
            return cascade.Reply(
                text=outcome.answer,
                model=outcome.model,
                cost_usd=outcome.cost_usd,
                usage=outcome.usage,
                model_version=outcome.model_version,
                latency_ms=outcome.latency_ms,
                cut_off=outcome.cut_off,
            )

        words = prompts.request_words(task.kind, snap.language, task.diagnostics)

        def verify(text: str) -> Verdict:
            return calls.verify_answer(snap, task.kind, text, words)

        flight = await cascade.run(
            cascade.Flight(decision.tier),
            task.kind,
            configured=providers.configured,
            attempt=attempt,
            verify=verify,
            escalation=cascade.ExpectedSaving.of(self.settings, decision, self.router),
        )
        if flight.preview is not None:
            return Outcome.unanswered(
                task, decision.tier, decision.model, flight.preview, route=decision.tier, calls=0
            )
        steps = [await self.tier(step.tier, task) for step in flight.steps]
        final = await self.tier(flight.tier, task)
        answer, passed, reason = final.answer, final.passed, final.reason
        if final.error is None and not final.verified and not task.cursor:
            # The server applies no edit that fails its own check.
            answer, passed = "", False
            reason = f"no answer passed the server's check ({final.verify_reason})"
        return Outcome(
            task=task.name,
            tier=final.tier,
            model=final.model,
            model_version=final.model_version,
            answer=answer,
            passed=passed,
            reason=reason,
            verified=final.verified,
            verify_reason=final.verify_reason,
            latency_ms=sum(step.latency_ms for step in steps),
            usage=sum((step.usage for step in steps), Usage()),
            cost_usd=sum((step.cost_usd for step in steps), Decimal(0)),
            error=final.error,
            route=decision.tier,
            escalated=flight.escalated,
            fallback=flight.fallback is not None,
            calls=len(steps),
            usage_estimated=any(step.usage_estimated for step in steps),
        )

    async def aclose(self, others: Sequence[asyncio.Future[Outcome]] = ()) -> None:
        """Cancel what is still running (after an error) and close the HTTP clients."""
        pending = [c for c in [*self._calls.values(), *others] if not c.done()]
        for call in pending:
            call.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for providers in self._providers.values():
            await providers.aclose()
