"""The request path: privacy, routing, reuse, cache, the cascade of model calls, the record.

`Pipeline.run` is what every feature calls to answer a request. It orchestrates parts that
each do one thing and are given to it explicitly (no server object):

- `engine` routes the request (privacy, scoring, rules, budget) to a `Decision`;
- `reuse.Suggestions` serves the rest of a suggestion being typed, and notices one typed over;
- `answer_cache` keys and stores answers in the settings' `cache.Cache`;
- `cascade.run` calls the tiers (fallback, escalation, billing) through `calls` (prompt, model
  request, clean-up) and `verify`;
- `spend.Spend` adds up what calls cost; `status.Reporter` tells the editor;
- `session.Session` writes the request down (the metrics store, recent requests for
  verdicts) and learns its model's answer sizes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from mmx_lsp import answer_cache, calls, cascade, engine, prompts
from mmx_lsp.answer_sizes import AnswerSizes
from mmx_lsp.cache import Cache, SingleFlight, make_cache
from mmx_lsp.calls import Snapshot, take_snapshot
from mmx_lsp.engine import new_request_id, remember
from mmx_lsp.health import FimWatch
from mmx_lsp.kinds import INLINE_KINDS, Kind, Tier
from mmx_lsp.model_io import reply_cost
from mmx_lsp.pricing import cost_usd, price_for
from mmx_lsp.providers import Providers
from mmx_lsp.redaction import RedactingFilter, install_redaction
from mmx_lsp.reuse import Place, Suggestion, Suggestions
from mmx_lsp.scoring import Request
from mmx_lsp.session import Recorder, Session
from mmx_lsp.spend import Spend
from mmx_lsp.status import Attempt, Progress, Reporter, Status

if TYPE_CHECKING:
    from mmx_lsp.config import Settings
    from mmx_lsp.documents import Document
    from mmx_lsp.router import Router
    from mmx_lsp.routing import Decision, Overrides

log = logging.getLogger("mmx_lsp")

# A completion the editor asked for by itself while the user types waits this long before it
# calls a model: a keystroke meanwhile cancels it (the editor sends $/cancelRequest) or makes
# it stale, and no call is made. One the user asked for explicitly does not wait.
INLINE_DEBOUNCE_S = 0.15


@dataclass
class Answer:
    """What a feature gets back: the text to show or apply ("" for none) and the status sent."""

    request_id: str
    text: str
    status: Status | None = None
    decision: Decision | None = None


class Pipeline:
    """Answers assistant requests for one server; created on the first request."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        reporter: Reporter,
        overrides: Overrides,
        spend: Spend,
        recorder: Callable[[], Recorder],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        clock: Callable[[], float] = time.time,
        router: Callable[[], Router | None] = lambda: None,
        sizes: AnswerSizes | None = None,
    ) -> None:
        self.reporter = reporter
        self.spend = spend
        self.session = Session(recorder, clock, sizes)
        self.sizes = self.session.sizes
        self._current_settings = settings
        self._overrides = overrides
        self._spawn = spawn
        self._router = router
        self._flights = SingleFlight()
        self._calls: dict[str, cascade.Flight] = {}
        self._suggestions = Suggestions()
        self._latencies = cascade.Latencies()
        # The completion in progress per document, and the document version it was asked for.
        self._inline: dict[str, tuple[asyncio.Task[Any], int]] = {}
        self._settings: Settings | None = None
        self._providers: Providers | None = None
        self._cache: Cache | None = None
        self._redactor: RedactingFilter | None = None
        self._fim = FimWatch(
            lambda message: self.reporter.show_once("fim", message, types.MessageType.Warning)
        )

    # ------------------------------------------------------------------ settings-bound parts

    def _refresh(self) -> tuple[Settings, Providers, Cache]:
        """Providers and cache for the settings in force (rebuilt when they change)."""
        settings = self._current_settings()
        if settings is not self._settings or self._providers is None or self._cache is None:
            old_providers, old_cache = self._providers, self._cache
            self._providers = Providers(settings)
            self._cache = make_cache(settings.cache)
            self._settings = settings
            secrets = self._providers.secrets()
            if self._redactor is None:
                self._redactor = install_redaction(secrets)
            else:
                self._redactor.add(secrets)
            if old_providers is not None:
                self._spawn(old_providers.aclose(), "close providers")
            if old_cache is not None:
                old_cache.close()
        assert self._providers is not None and self._cache is not None
        return settings, self._providers, self._cache

    async def aclose(self) -> None:
        if self._providers is not None:
            await self._providers.aclose()
        if self._cache is not None:
            self._cache.close()

    # ------------------------------------------------------------------ the request path

    async def run(
        self,
        kind: Kind,
        doc: Document,
        start: types.Position,
        end: types.Position | None = None,
        *,
        diagnostics: Sequence[str] = (),
        progress: Progress | None = None,
        typing: bool = False,
    ) -> Answer:
        """Answer one request. Sends one `mmx/status` unless the document is excluded or the
        request is cancelled; records every request that was routed. `typing` marks a request
        the editor made by itself as the user types (waited on before a model is called)."""
        if engine.excluded(self._current_settings(), doc):
            return Answer("", "")
        place = _place(doc, start, end)
        asked_at = doc.version
        if kind in INLINE_KINDS:
            self._typed_over(place)
            if self._overrides.next is None:
                reused = self._typed_ahead(kind, place)
                if reused is not None:
                    return reused
            self._supersede(doc.uri, asked_at)
        request_id = new_request_id()
        settings, _providers, cache = self._refresh()
        decision = self._decide(settings, doc, kind, place, request_id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = Status(
            request_id=request_id,
            kind=kind,
            tier=decision.tier,
            model=decision.model,
            reason=decision.reason,
            estimate_usd=dict(decision.estimate_usd),
            p_cheap_ok=decision.p_cheap_ok,
            router=decision.router,
        )
        text = ""
        # The key is made from what the prompt would be made from (remembered until the
        # document changes); the excerpt is taken now unless the cache answers, and the
        # prompt is only built when the model has to be called.
        snap: Snapshot | None = None
        shape = calls.request_shape(settings, kind, decision.features.get("hole"))
        memo = ("cache key", kind, decision.tier, place.span, tuple(diagnostics))
        remembered = doc.memo.get(memo)
        if isinstance(remembered, tuple) and remembered[0] is settings:
            key = remembered[1]
        else:
            snap = _snapshot(doc, place, shape)
            key = answer_cache.key(settings, decision.tier, kind, snap, diagnostics, shape)
            remember(doc, memo, (settings, key))
        hit = answer_cache.lookup(cache, key)
        if hit is None and snap is None:
            snap = _snapshot(doc, place, shape)
        flight: cascade.Flight | None = None
        queue_ms: float | None = None
        try:
            if hit is not None:
                text = self._from_cache(status, hit)
            elif decision.cache_only:
                status.error = "today's budget is spent and this answer is not in the cache"
                self.reporter.show_once(
                    "budget-cache-only", f"mmx: {status.error}", types.MessageType.Warning
                )
            else:
                if typing and key not in self._calls:
                    version = doc.version
                    await asyncio.sleep(INLINE_DEBOUNCE_S)
                    if doc.version != version:
                        # Typing went on: the editor asks again for the new text.
                        status.latency_ms = (loop.time() - started) * 1000
                        status.error = "superseded"
                        self._record(status, cancelled=True, decision=decision, doc=doc)
                        return Answer(request_id, "")
                flight = self._calls.get(key)
                if flight is None:
                    flight = cascade.Flight(decision.tier)
                    self._calls[key] = flight
                shared = flight
                assert snap is not None  # taken before the first await
                request_snap = snap

                async def fly() -> None:
                    try:
                        await self._answer(
                            shared, settings, decision, shape, request_snap, diagnostics, progress
                        )
                    finally:
                        # When the call really ends (answered, failed or cancelled).
                        if self._calls.get(key) is shared:
                            del self._calls[key]

                queue_ms = (loop.time() - started) * 1000
                flight.waiters += 1
                try:
                    await self._flights.run(key, fly)
                finally:
                    flight.waiters -= 1
                # The first request to get the answer carries its cost and caches it.
                owner = flight.claim()
                text = self._from_flight(settings, status, flight, owner=owner)
                if text and flight.error is None and owner:
                    answer_cache.store(cache, key, answer_cache.Entry.of(flight, settings))
        except asyncio.CancelledError:
            # A request still waiting for the flight will carry its cost; the last one to
            # leave (the flight is cancelled with it) carries what its finished calls cost.
            if flight is not None and flight.may_claim_on_cancel() and flight.claim():
                status.cost_usd = flight.cost_usd
                status.usage_estimated = flight.usage_estimated
                status.attempts = _attempts(flight)
                usage = flight.usage
                status.input_tokens = usage.input_tokens
                status.output_tokens = usage.output_tokens
            status.latency_ms = (loop.time() - started) * 1000
            status.error = "cancelled"
            self._record(
                status,
                cancelled=True,
                decision=decision,
                flight=flight,
                queue_ms=queue_ms,
                doc=doc,
            )
            raise
        if decision.override == "next" and self._overrides.next == decision.tier:
            # Spent only by a request whose answer is delivered (DESIGN.md): one cancelled
            # or superseded before it answers leaves it for the next request.
            self._overrides.consume_next()
        status.latency_ms = (loop.time() - started) * 1000
        status.session_cost_usd = self.spend.session_usd
        status.budget_left_usd = self.spend.budget_left(settings.routing.daily_budget_usd)
        if kind in INLINE_KINDS:
            self._remember(place, text, status, shown=doc.version == asked_at)
            self.reporter.status_after_reply(status)
        else:
            self.reporter.status(status, progress)
        self._record(status, decision=decision, flight=flight, hit=hit, queue_ms=queue_ms, doc=doc)
        return Answer(request_id, text, status, decision)

    def _supersede(self, uri: str, version: int) -> None:
        """The latest completion of a document wins: one asked for an older version of it is
        stale (the editor asks again for the new text), so it is cancelled, which closes its
        model call. A model on this machine serves one call at a time, and a stale call
        would hold up (or cut short) the one that matters."""
        task = asyncio.current_task()
        old = self._inline.get(uri)
        if old is not None and old[0] is not task and old[1] < version and not old[0].done():
            old[0].cancel()
        if task is not None:
            self._inline[uri] = (task, version)

    def _decide(
        self, settings: Settings, doc: Document, kind: Kind, place: Place, request_id: str
    ) -> Decision:
        r0, i0, r1, i1 = place.span
        request = Request(kind, (r0, i0), None if place.inline else (r1, i1))
        return self.decide(doc, request, request_id=request_id, settings=settings)

    def decide(
        self,
        doc: Document,
        request: Request,
        *,
        request_id: str | None = None,
        settings: Settings | None = None,
    ) -> Decision:
        """Route one request with this server's state: overrides (peeked at: the caller
        consumes a "next" one), today's spend, the router, the models' answer sizes. Every
        decision the server makes or shows comes from here (or `decide_kinds`)."""
        settings = settings or self._current_settings()
        return engine.decide(
            settings,
            doc,
            request,
            override=self._overrides.lookup(doc.uri),
            spent_today=self.spend.today_usd,
            request_id=request_id,
            router=self._router(),
            sizes=self.sizes,
            prefix_only=self._fim.prefix_only(settings),
        )

    def decide_kinds(
        self, doc: Document, request: Request, kinds: Sequence[Kind]
    ) -> dict[Kind, Decision]:
        """`decide` for several kinds of request over one place, measured once."""
        return engine.decide_kinds(
            self._current_settings(),
            doc,
            request,
            kinds,
            override=self._overrides.lookup(doc.uri),
            spent_today=self.spend.today_usd,
            router=self._router(),
            sizes=self.sizes,
        )

    def in_cache(
        self,
        kind: Kind,
        doc: Document,
        start: types.Position,
        end: types.Position | None,
        tier: Tier,
        hole: object = None,
    ) -> bool:
        """Whether the cache holds an answer for this request (filling `hole`, as its
        decision measured) on `tier` now (no model call)."""
        settings, _providers, cache = self._refresh()
        shape = calls.request_shape(settings, kind, hole)
        snap = _snapshot(doc, _place(doc, start, end), shape)
        found = answer_cache.lookup(cache, answer_cache.key(settings, tier, kind, snap, (), shape))
        return found is not None

    @staticmethod
    def _from_cache(status: Status, hit: answer_cache.Entry) -> str:
        status.cached = True
        status.tier = hit.tier
        status.model = hit.model or status.model
        if hit.premium_usd is not None:
            status.saved_usd = hit.premium_usd
        else:
            status.saved_usd = status.estimate_usd.get("premium")
        return hit.text

    @staticmethod
    def _from_flight(
        settings: Settings, status: Status, flight: cascade.Flight, *, owner: bool
    ) -> str:
        status.tier, status.model = flight.tier, settings.tiers[flight.tier].model
        status.escalated = flight.escalated
        status.fallback = flight.fallback
        status.preview = flight.preview
        status.error = flight.error
        if flight.preview is not None:
            return ""
        last = flight.last_reply
        premium = None if last is None else last.premium_usd
        if not owner:
            # An identical request made the call: its status carries the cost.
            status.cached = True
            status.reason += "; shared the answer of an identical request in flight"
            status.saved_usd = premium
            return flight.text
        status.attempts = _attempts(flight)
        status.cost_usd = flight.cost_usd
        status.usage_estimated = flight.usage_estimated
        usage = flight.usage
        status.input_tokens = usage.input_tokens
        status.output_tokens = usage.output_tokens
        if premium is not None:
            status.saved_usd = premium - flight.cost_usd
        return flight.text

    # ------------------------------------------------------------------ model calls

    async def _answer(
        self,
        flight: cascade.Flight,
        settings: Settings,
        decision: Decision,
        shape: calls.Shape,
        snap: Snapshot,
        diagnostics: Sequence[str],
        progress: Progress | None,
    ) -> None:
        """Run the cascade for one request, then tell the user what went wrong, if anything."""
        assert self._providers is not None
        providers = self._providers
        kind = decision.kind

        budget = cascade.TimeBudget(
            shape.deadline_s, expected_s=lambda tier: self._latencies.expected(tier, shape.key)
        )

        async def attempt(tier: Tier) -> cascade.Reply:
            reply = await self._attempt(
                settings, tier, kind, shape, snap, diagnostics, progress, budget.left()
            )
            self._latencies.add(tier, shape.key, reply.latency_ms / 1000)
            return reply

        words = prompts.request_words(kind, snap.language, diagnostics)

        def verify(text: str) -> Any:
            return calls.verify_answer(snap, kind, text, words)

        await cascade.run(
            flight,
            kind,
            configured=providers.configured,
            attempt=attempt,
            verify=verify,
            escalation=cascade.ExpectedSaving.of(settings, decision, self._router()),
            budget=budget,
        )
        self.reporter.cascade(flight)

    async def _attempt(
        self,
        settings: Settings,
        tier: Tier,
        kind: Kind,
        shape: calls.Shape,
        snap: Snapshot,
        diagnostics: Sequence[str],
        progress: Progress | None,
        deadline_s: float,
    ) -> cascade.Reply:
        """One model call: send, price, charge, clean up (the cascade verifies)."""
        assert self._providers is not None
        tier_config = settings.tiers[tier]
        prompt = calls.build_prompt(kind, snap, tier_config, diagnostics, shape)
        if prompt.suffix is not None and not self._fim.suffix_ok(
            settings, self._providers, tier, self._spawn
        ):
            prompt = prompt.without_suffix()
        request = calls.model_request(tier, tier_config, kind, prompt, shape, snap)
        on_text = None
        if progress is not None:
            model = tier_config.model

            def on_text(so_far: str) -> None:
                progress.report(f"{model}: {len(so_far)} characters received")

        reply = await self._providers.complete(request, deadline_s=deadline_s, on_text=on_text)
        cost = reply_cost(reply, price_for(tier_config))
        self.spend.charge(cost)
        self.reporter.budget(
            self.spend.today_usd, settings.routing.daily_budget_usd, self.spend.day
        )
        premium = price_for(settings.tiers["premium"])
        return cascade.Reply(
            text=calls.clean_answer(kind, snap, reply.text),
            model=tier_config.model,
            cost_usd=cost,
            usage=reply.usage,
            usage_estimated=reply.usage_estimated,
            model_version=reply.model or "",
            latency_ms=reply.latency_ms,
            premium_usd=cost_usd(reply.usage, premium) if premium else None,
            template_version=prompt.template_version,
            prompt=prompt.cache_context if settings.privacy.store_prompts else None,
            counted_input_tokens=calls.prompt_tokens(prompt),
            cut_off=reply.cut_off,
        )

    # ------------------------------------------------------------------ typed-ahead reuse

    def _typed_ahead(self, kind: Kind, place: Place) -> Answer | None:
        """The rest of the last suggestion when the user has typed its start (no call)."""
        found = self._suggestions.typed_ahead(place)
        if found is None:
            return None
        last, rest = found
        status = Status(
            request_id=new_request_id(),
            kind=kind,
            tier=last.tier,
            model=last.model,
            reason="the rest of the previous suggestion, which you are typing",
            cached=True,
            latency_ms=0.0,
            saved_usd=last.premium_equivalent,
            session_cost_usd=self.spend.session_usd,
        )
        budget = self._current_settings().routing.daily_budget_usd
        status.budget_left_usd = self.spend.budget_left(budget)
        self.reporter.status(status)
        self._record(status, reused=True)
        return Answer(status.request_id, rest, status)

    def _typed_over(self, place: Place) -> None:
        """Count the last suggestion as not accepted when the user typed something else over
        it (see `Suggestions.typed_over`)."""
        last = self._suggestions.typed_over(place)
        if last is None:
            return
        record = self.session.log.get(last.request_id)
        if record is not None and record["verdict"] is None:
            self.verdict(last.request_id, "rejected")
            record["typed_over"] = True

    def _remember(self, place: Place, text: str, status: Status, *, shown: bool) -> None:
        if not text:
            self._suggestions.remember(place, None)
            return
        premium = None if status.saved_usd is None else status.saved_usd + status.cost_usd
        suggestion = Suggestion(
            row=place.row,
            line_before=place.line_before,
            line_after=place.line_after,
            text=text,
            tier=status.tier,
            model=status.model,
            premium_equivalent=premium,
            request_id=status.request_id,
            shown=shown,
        )
        self._suggestions.remember(place, suggestion)

    # ------------------------------------------------------------------ records

    def _record(self, status: Status, **facts: Any) -> None:
        self.session.record(status, self._settings, **facts)

    def verdict(self, request_id: str, value: str) -> bool:
        """Record the editor's verdict on an answer; False for an unknown request."""
        return self.session.verdict(request_id, value)

    def stats(self, since: Any = None) -> dict[str, Any]:
        """DESIGN.md's metrics summary of this session's requests (see `Session.stats`)."""
        return self.session.stats(since)


def _place(doc: Document, start: types.Position, end: types.Position | None) -> Place:
    stop = None if end is None else (end.line, end.character)
    return Place.of(doc, (start.line, start.character), stop)


def _snapshot(doc: Document, place: Place, shape: calls.Shape) -> Snapshot:
    r0, i0, r1, i1 = place.span
    stop = None if place.inline else (r1, i1)
    return take_snapshot(doc, (r0, i0), stop, context_tokens=shape.context_tokens)


def _attempts(flight: cascade.Flight) -> list[Attempt]:
    """The calls a flight paid for, as `mmx/status` lists them."""
    return [
        Attempt(
            tier=step.tier,
            model=step.reply.model_version or step.reply.model,
            input_tokens=step.reply.usage.input_tokens,
            output_tokens=step.reply.usage.output_tokens,
            cost_usd=step.reply.cost_usd,
            passed=step.passed,
            reason=step.reason,
            latency_ms=step.reply.latency_ms,
            usage_estimated=step.reply.usage_estimated,
        )
        for step in flight.steps
        if step.reply is not None
    ]
