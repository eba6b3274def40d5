"""The one request path: privacy, routing, cache, model call, verification, cascade, cost."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from mmx_lsp import prompts
from mmx_lsp.cache import Cache, SingleFlight, cache_key, make_cache
from mmx_lsp.engine import new_request_id, remember
from mmx_lsp.errors import ProviderError
from mmx_lsp.features import shared
from mmx_lsp.pricing import Usage, cost_usd, price_for
from mmx_lsp.providers import (
    ModelRequest,
    Providers,
    RedactingFilter,
    install_redaction,
    reply_cost,
)
from mmx_lsp.status import Attempt, Progress, Reporter, Status
from mmx_lsp.verify import verify_edit

if TYPE_CHECKING:
    from mmx_lsp.config import Settings, TierConfig
    from mmx_lsp.documents import Document
    from mmx_lsp.routing import Decision
    from mmx_lsp.server import MmxServer

log = logging.getLogger("mmx_lsp")

# Seconds one model call may take, retries included, by request kind. Ghost text that comes
# later than a few seconds is useless; an edit the user asked for is worth waiting for.
DEADLINE_S: dict[str, float] = {
    "inline": 5.0,
    "completion": 5.0,
    "refactor": 60.0,
    "fix": 60.0,
    "docstring": 60.0,
    "explain": 45.0,
}
INLINE_CONTEXT_TOKENS = 1500
ACTION_CONTEXT_TOKENS = 2000
INLINE_MAX_TOKENS = 256
# Characters after the cursor that inline clean-up compares the answer with.
AFTER_CURSOR_CHARS = 4000
INLINE_KINDS = frozenset({"inline", "completion"})
# A completion the editor asked for by itself while the user types waits this long before it
# calls a model: a keystroke meanwhile cancels it (the editor sends $/cancelRequest) or makes
# it stale, and no call is made. One the user asked for explicitly does not wait.
INLINE_DEBOUNCE_S = 0.15
TIERS = ("cheap", "premium")
PROVIDER_MESSAGE = "provider"
PREVIEW_MESSAGE = "preview"


def other_tier(tier: str) -> str:
    return "premium" if tier == "cheap" else "cheap"


def _template(api: str, kind: str) -> tuple[str, int]:
    """The prompt template of a request and its context budget in tokens."""
    if kind in INLINE_KINDS:
        return ("inline-fim" if api == "completions" else "inline-chat"), INLINE_CONTEXT_TOKENS
    return kind, ACTION_CONTEXT_TOKENS


@dataclass(frozen=True)
class Place:
    """Where a request was made: enough for typed-ahead reuse, without an excerpt."""

    uri: str
    row: int
    line_before: str
    line_after: str
    span: tuple[int, int, int, int]  # start row, start column, end row, end column
    inline: bool  # a cursor, not a selection


@dataclass(frozen=True)
class Snapshot:
    """The document as it was when the request came: answers are checked against this."""

    uri: str
    language: str
    text: str  # an excerpt of the document (Document.excerpt), not necessarily all of it
    start: int
    end: int
    row: int
    line_before: str
    line_after: str
    outline: prompts.Outline | None = None

    @property
    def selection(self) -> str:
        return self.text[self.start : self.end]


def take_snapshot(
    doc: Document, start: tuple[int, int], end: tuple[int, int] | None = None
) -> Snapshot:
    """The request as the model will see it: an excerpt around `start` (a cursor) or
    `start`..`end` (a selection), clamped (row, column) places in `doc`."""
    r0, i0 = start
    r1, i1 = (r0, i0) if end is None else end
    # A window of the document, never the whole text: the request path stays the same
    # cost in a 500-line file and a 50,000-line one.
    budget = (INLINE_CONTEXT_TOKENS if end is None else ACTION_CONTEXT_TOKENS) * 4
    excerpt = doc.excerpt((r0, i0), (r1, i1), budget)
    line = doc.line_text(r0)
    return Snapshot(
        uri=doc.uri,
        language=doc.language,
        text=excerpt.text,
        start=excerpt.start,
        end=excerpt.end,
        row=r0,
        line_before=line[:i0],
        line_after=line[i0:],
        outline=excerpt.outline if doc.spec is not None else None,
    )


def request_api(tier_config: TierConfig, kind: str) -> str:
    """The API a request uses: the tier's for inline completions; chat for code actions,
    which have no fill-in-the-middle form (a FIM tier's server serves chat too)."""
    return tier_config.api if kind in INLINE_KINDS else "chat"


def build_prompt(
    kind: str, snap: Snapshot, tier_config: TierConfig, diagnostics: Sequence[str] = ()
) -> prompts.Prompt:
    """The prompt of a request on a tier."""
    if kind in INLINE_KINDS:
        return prompts.build_inline(
            snap.text,
            snap.start,
            snap.language,
            INLINE_CONTEXT_TOKENS,
            request_api(tier_config, kind),
            outline=snap.outline,
        )
    return prompts.build_action(
        kind,  # type: ignore[arg-type]
        snap.text,
        snap.start,
        snap.end,
        snap.language,
        list(diagnostics),
        None,
        context_tokens=ACTION_CONTEXT_TOKENS,
        outline=snap.outline,
    )


def model_request(
    tier: str, tier_config: TierConfig, kind: str, prompt: prompts.Prompt
) -> ModelRequest:
    """The call that sends `prompt` to a tier."""
    max_tokens = tier_config.max_output_tokens
    if kind in INLINE_KINDS:
        max_tokens = min(max_tokens, INLINE_MAX_TOKENS)
    return ModelRequest(
        tier=tier,
        api=request_api(tier_config, kind),  # type: ignore[arg-type]
        messages=prompt.messages,
        prompt=prompt.prompt,
        suffix=prompt.suffix,
        max_tokens=max_tokens,
    )


def clean_answer(kind: str, snap: Snapshot, text: str) -> str:
    """A model's text cleaned up to be shown (inline) or applied (an edit)."""
    if kind in INLINE_KINDS:
        after = snap.text[snap.end : snap.end + AFTER_CURSOR_CHARS]
        return prompts.postprocess_inline(text, snap.line_before, after)
    if kind == "explain":
        return text.strip()
    return prompts.postprocess_edit(text, snap.selection)


@dataclass
class Answer:
    """What a feature gets back: the text to show or apply ("" for none) and the status sent."""

    request_id: str
    text: str
    status: Status | None = None
    decision: Decision | None = None


@dataclass
class _Call:
    """The model calls made for one request (shared by identical requests in flight)."""

    tier: str
    model: str
    text: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = Decimal(0)
    premium_equivalent: Decimal | None = None
    escalated: bool = False
    fallback: str | None = None
    preview: str | None = None
    error: str | None = None
    claimed: bool = False
    # For the metrics record: the model the provider says answered (a dated snapshot where
    # it has one), the prompt template, time spent in model calls, the prompt when stored.
    model_version: str = ""
    template_version: str = ""
    model_ms: float = 0.0
    prompt: str | None = None

    def claim(self) -> bool:
        """True for the first request that reports this call: only it carries the cost."""
        first, self.claimed = not self.claimed, True
        return first


@dataclass(frozen=True)
class _Suggestion:
    """The last inline answer in a document, for typed-ahead reuse."""

    row: int
    line_before: str
    line_after: str
    text: str
    tier: str
    model: str
    premium_equivalent: Decimal | None
    request_id: str = ""
    shown: bool = False  # the document had not changed when the answer went out


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _since(value: Any) -> float | None:
    """`since` of mmx.stats: epoch seconds, or an ISO 8601 date or time (UTC if no zone)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            message = f"since must be epoch seconds or an ISO 8601 time, got {value!r}"
            raise ValueError(message) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    raise ValueError("since must be epoch seconds or an ISO 8601 time")


class Pipeline:
    """Answers assistant requests for one server; created on the first request."""

    def __init__(self, server: MmxServer, *, clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.reporter = Reporter(server)
        self.records: list[dict[str, Any]] = []
        self.session_cost = Decimal(0)
        self._by_id: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self._flights = SingleFlight()
        self._calls: dict[str, _Call] = {}
        self._settings: Settings | None = None
        self._providers: Providers | None = None
        self._cache: Cache | None = None
        self._redactor: RedactingFilter | None = None
        self._last: dict[str, _Suggestion] = {}
        self._day = dt.date.today().isoformat()

    # ------------------------------------------------------------------ settings-bound parts

    def _refresh(self) -> tuple[Settings, Providers, Cache]:
        """Providers and cache for the settings in force (rebuilt when they change)."""
        settings = self.server.settings
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
                self.server.spawn(old_providers.aclose(), "close providers")
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
        kind: str,
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
        if shared.excluded(self.server, doc):
            return Answer("", "")
        place = self._place(doc, start, end)
        asked_at = doc.version
        if kind in INLINE_KINDS:
            self._typed_over(place)
        if kind in INLINE_KINDS and self.server.overrides.next is None:
            reused = self._typed_ahead(kind, place)
            if reused is not None:
                return reused
        request_id = new_request_id()
        decision = shared.decide(self.server, doc, kind, start, end, request_id=request_id)
        if decision.override == "next":
            self.server.overrides.consume_next()
        settings, _providers, cache = self._refresh()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = Status(
            request_id=request_id,
            kind=kind,
            tier=decision.tier,
            model=decision.model,
            reason=decision.reason,
            estimate_usd=dict(decision.estimate_usd),
        )
        text = ""
        # The key is made from what the prompt would be made from (remembered until the
        # document changes); the excerpt is taken now unless the cache answers, and the
        # prompt is only built when the model has to be called.
        snap: Snapshot | None = None
        memo = ("cache key", kind, decision.tier, place.span, tuple(diagnostics))
        remembered = doc.memo.get(memo)
        if isinstance(remembered, tuple) and remembered[0] is settings:
            key = remembered[1]
        else:
            snap = self._snapshot(doc, place)
            key = self._key(settings, decision.tier, kind, snap, diagnostics)
            remember(doc, memo, (settings, key))
        hit = self._lookup(cache, key)
        if hit is None and snap is None:
            snap = self._snapshot(doc, place)
        call: _Call | None = None
        joined = False
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
                        self._record(status, cancelled=True, decision=decision)
                        return Answer(request_id, "")
                call = self._calls.get(key)
                joined = call is not None
                if call is None:
                    call = _Call(decision.tier, decision.model)
                    self._calls[key] = call
                shared_call = call
                assert snap is not None  # taken before the first await

                async def flight() -> None:
                    try:
                        await self._answer(
                            shared_call, settings, kind, snap, None, diagnostics, progress
                        )
                    finally:
                        # When the call really ends (answered, failed or cancelled).
                        if self._calls.get(key) is shared_call:
                            del self._calls[key]

                queue_ms = (loop.time() - started) * 1000
                await self._flights.run(key, flight)
                text = self._from_call(status, call, owner=call.claim(), joined=joined)
                if text and call.error is None and not joined:
                    self._store(cache, key, call)
        except asyncio.CancelledError:
            # The request that started the call carries what it cost so far; one that joined
            # it leaves the cost to the requests still waiting.
            if call is not None and not joined and call.claim():
                status.cost_usd = call.cost
                status.attempts = list(call.attempts)
            status.latency_ms = (loop.time() - started) * 1000
            status.error = "cancelled"
            self._record(status, cancelled=True, decision=decision, call=call, queue_ms=queue_ms)
            raise
        status.latency_ms = (loop.time() - started) * 1000
        status.session_cost_usd = self.session_cost
        budget = settings.routing.daily_budget_usd
        status.budget_left_usd = None if budget is None else budget - self.server.spent_today
        if kind in INLINE_KINDS:
            self._remember(place, text, status, shown=doc.version == asked_at)
            self.reporter.status_after_reply(status)
        else:
            self.reporter.status(status, progress)
        self._record(status, decision=decision, call=call, hit=hit, queue_ms=queue_ms)
        return Answer(request_id, text, status, decision)

    def in_cache(
        self,
        kind: str,
        doc: Document,
        start: types.Position,
        end: types.Position | None,
        tier: str,
    ) -> bool:
        """Whether the cache holds an answer for this request on `tier` now (no model call)."""
        settings, _providers, cache = self._refresh()
        snap = self._snapshot(doc, self._place(doc, start, end))
        return self._lookup(cache, self._key(settings, tier, kind, snap, ())) is not None

    @staticmethod
    def _place(doc: Document, start: types.Position, end: types.Position | None) -> Place:
        r0, i0 = doc.clamp(start.line, start.character)
        r1, i1 = (r0, i0) if end is None else doc.clamp(end.line, end.character)
        if (r1, i1) < (r0, i0):
            (r0, i0), (r1, i1) = (r1, i1), (r0, i0)
        line = doc.line_text(r0)
        return Place(doc.uri, r0, line[:i0], line[i0:], (r0, i0, r1, i1), end is None)

    @staticmethod
    def _snapshot(doc: Document, place: Place) -> Snapshot:
        r0, i0, r1, i1 = place.span
        return take_snapshot(doc, (r0, i0), None if place.inline else (r1, i1))

    # ------------------------------------------------------------------ typed-ahead reuse

    def _typed_ahead(self, kind: str, place: Place) -> Answer | None:
        """The rest of the last suggestion when the user has typed its start (no call)."""
        last = self._last.get(place.uri)
        if last is None or place.row != last.row or place.line_after != last.line_after:
            return None
        if not place.line_before.startswith(last.line_before):
            return None
        typed = place.line_before[len(last.line_before) :]
        if not typed or not last.text.startswith(typed) or len(typed) >= len(last.text):
            return None
        rest = last.text[len(typed) :]
        status = Status(
            request_id=new_request_id(),
            kind=kind,
            tier=last.tier,
            model=last.model,
            reason="the rest of the previous suggestion, which you are typing",
            cached=True,
            latency_ms=0.0,
            saved_usd=last.premium_equivalent,
            session_cost_usd=self.session_cost,
        )
        budget = self.server.settings.routing.daily_budget_usd
        status.budget_left_usd = None if budget is None else budget - self.server.spent_today
        self.reporter.status(status)
        self._record(status, reused=True)
        return Answer(status.request_id, rest, status)

    def _typed_over(self, place: Place) -> None:
        """Count the last suggestion in the document as not accepted when the user typed
        something else over it (or deleted back past it) on its line, without accepting it.

        Typing its start is not a rejection (the rest is served from it), nor is a request
        at the same place, nor text that begins with the whole suggestion (it was accepted).
        """
        last = self._last.get(place.uri)
        if last is None or not last.shown or place.row != last.row:
            return
        if place.line_before.startswith(last.line_before):
            typed = place.line_before[len(last.line_before) :]
            if last.text.startswith(typed) or typed.startswith(last.text):
                return
        record = self._by_id.get(last.request_id)
        if record is not None and record["verdict"] is None:
            self.verdict(last.request_id, "rejected")
            record["typed_over"] = True
        del self._last[place.uri]

    def _remember(self, place: Place, text: str, status: Status, *, shown: bool) -> None:
        if not text:
            self._last.pop(place.uri, None)
            return
        self._last[place.uri] = _Suggestion(
            row=place.row,
            line_before=place.line_before,
            line_after=place.line_after,
            text=text,
            tier=status.tier,
            model=status.model,
            premium_equivalent=(
                None if status.saved_usd is None else status.saved_usd + status.cost_usd
            ),
            request_id=status.request_id,
            shown=shown,
        )

    # ------------------------------------------------------------------ prompts and cache

    def _prompt(
        self, settings: Settings, kind: str, snap: Snapshot, tier: str, diagnostics: Sequence[str]
    ) -> prompts.Prompt:
        return build_prompt(kind, snap, settings.tiers[tier], diagnostics)  # type: ignore[index]

    @staticmethod
    def _key(
        settings: Settings, tier: str, kind: str, snap: Snapshot, diagnostics: Sequence[str]
    ) -> str:
        """The cache key of a request: the model, the prompt template's version and everything
        the prompt is built from (the excerpt, the request's place, the diagnostics)."""
        tier_config = settings.tiers[tier]  # type: ignore[index]
        provider = settings.providers.get(tier_config.provider)
        endpoint = provider.base_url if provider is not None else ""
        template, budget = _template(request_api(tier_config, kind), kind)
        where = json.dumps([kind, snap.language, snap.start, snap.end, budget, list(diagnostics)])
        return cache_key(
            model=tier_config.model,
            model_version=f"{tier_config.api}@{endpoint}",
            template_version=f"{template}:{prompts.TEMPLATE_VERSIONS[template]}",
            context=f"{where}\n{snap.text}",
        )

    @staticmethod
    def _lookup(cache: Cache, key: str) -> dict[str, Any] | None:
        raw = cache.get(key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("text"), str) else None

    @staticmethod
    def _store(cache: Cache, key: str, call: _Call) -> None:
        entry = {
            "text": call.text,
            "tier": call.tier,
            "model": call.model,
            "model_version": call.model_version,
            "input_tokens": call.usage.input_tokens,
            "output_tokens": call.usage.output_tokens,
            "premium_usd": None
            if call.premium_equivalent is None
            else str(call.premium_equivalent),
        }
        cache.set(key, json.dumps(entry).encode("utf-8"))

    def _from_cache(self, status: Status, hit: dict[str, Any]) -> str:
        status.cached = True
        status.tier = str(hit.get("tier") or status.tier)
        status.model = str(hit.get("model") or status.model)
        premium = hit.get("premium_usd")
        if premium is not None:
            status.saved_usd = Decimal(str(premium))
        else:
            status.saved_usd = status.estimate_usd.get("premium")
        return str(hit["text"])

    def _from_call(self, status: Status, call: _Call, *, owner: bool, joined: bool) -> str:
        status.tier, status.model = call.tier, call.model
        status.escalated = call.escalated
        status.fallback = call.fallback
        status.preview = call.preview
        status.error = call.error
        if call.preview is not None:
            return ""
        if joined or not owner:
            # An identical request made the call: its status carries the cost.
            status.cached = True
            status.reason += "; shared the answer of an identical request in flight"
            status.saved_usd = call.premium_equivalent
            return call.text
        status.attempts = list(call.attempts)
        status.cost_usd = call.cost
        status.input_tokens = call.usage.input_tokens
        status.output_tokens = call.usage.output_tokens
        if call.premium_equivalent is not None:
            status.saved_usd = call.premium_equivalent - call.cost
        return call.text

    # ------------------------------------------------------------------ model calls

    async def _answer(
        self,
        call: _Call,
        settings: Settings,
        kind: str,
        snap: Snapshot,
        prompt: prompts.Prompt | None,
        diagnostics: Sequence[str],
        progress: Progress | None,
    ) -> None:
        """Call the tier (or the other one when it is down), verify, escalate once."""
        assert self._providers is not None
        providers = self._providers
        tier = call.tier
        problem = providers.configured(tier)
        if problem is not None:
            if providers.configured(other_tier(tier)) is None:
                call.fallback = f"{tier} tier not configured ({problem}); used {other_tier(tier)}"
                tier = other_tier(tier)
            else:
                call.preview = problem
                self.reporter.show_once(
                    PREVIEW_MESSAGE,
                    "mmx preview: requests are routed and priced, but no model is called "
                    f"until you {problem}",
                    types.MessageType.Info,
                )
                return
        self.reporter.settle(PREVIEW_MESSAGE)
        first_prompt = prompt if tier == call.tier else None
        try:
            text, passed = await self._attempt(
                call, settings, tier, kind, snap, diagnostics, progress, first_prompt
            )
        except ProviderError as exc:
            other = other_tier(tier)
            if call.fallback is not None or providers.configured(other) is not None:
                self._failed(call, tier, exc)
                return
            log.warning("%s; falling back to the %s tier", exc, other)
            self.reporter.show_once(
                f"{PROVIDER_MESSAGE}:{tier}",
                f"mmx: {exc}; using the {other} tier meanwhile",
                types.MessageType.Warning,
            )
            call.fallback = f"{tier} tier down; answered by {other}"
            tier = other
            try:
                text, passed = await self._attempt(
                    call, settings, tier, kind, snap, diagnostics, progress, None
                )
            except ProviderError as second:
                self._failed(call, tier, second)
                return
        else:
            self.reporter.settle(f"{PROVIDER_MESSAGE}:{tier}")
        if (
            not passed
            and tier == "cheap"
            and settings.routing.cascade
            and (text.strip() or kind not in INLINE_KINDS)
            and providers.configured("premium") is None
        ):
            try:
                text, passed = await self._attempt(
                    call, settings, "premium", kind, snap, diagnostics, progress, None
                )
                tier, call.escalated = "premium", True
            except ProviderError as exc:
                log.warning("escalation to premium failed (%s); keeping the cheap answer", exc)
        call.tier = tier
        call.model = settings.tiers[tier].model  # type: ignore[index]
        if passed or (kind in INLINE_KINDS and text.strip()):
            call.text = text
        elif call.attempts:
            call.text = ""
            if kind not in INLINE_KINDS:
                call.error = f"no answer passed verification ({call.attempts[-1].reason})"

    def _failed(self, call: _Call, tier: str, exc: ProviderError) -> None:
        call.tier = tier
        if self._settings is not None:
            call.model = self._settings.tiers[tier].model  # type: ignore[index]
        call.error = str(exc)
        log.warning("%s", exc)
        self.reporter.show_once(
            f"{PROVIDER_MESSAGE}:{tier}", f"mmx: {exc}", types.MessageType.Error
        )

    async def _attempt(
        self,
        call: _Call,
        settings: Settings,
        tier: str,
        kind: str,
        snap: Snapshot,
        diagnostics: Sequence[str],
        progress: Progress | None,
        prompt: prompts.Prompt | None,
    ) -> tuple[str, bool]:
        """One model call: send, price, clean up, verify. Returns (answer, passed)."""
        assert self._providers is not None
        tier_config = settings.tiers[tier]  # type: ignore[index]
        if prompt is None:
            prompt = self._prompt(settings, kind, snap, tier, diagnostics)
        request = model_request(tier, tier_config, kind, prompt)
        on_text = None
        if progress is not None:
            model = tier_config.model

            def on_text(so_far: str) -> None:
                progress.report(f"{model}: {len(so_far)} characters received")

        reply = await self._providers.complete(
            request, deadline_s=DEADLINE_S.get(kind, 30.0), on_text=on_text
        )
        cost = reply_cost(reply, price_for(tier_config))
        call.model_version = reply.model or ""
        call.template_version = prompt.template_version
        call.model_ms += reply.latency_ms
        if settings.privacy.store_prompts:
            call.prompt = prompt.cache_context
        self._charge(settings, cost)
        premium = price_for(settings.tiers["premium"])  # type: ignore[index]
        call.premium_equivalent = cost_usd(reply.usage, premium) if premium else None
        call.cost += cost
        call.usage = call.usage + reply.usage
        text = clean_answer(kind, snap, reply.text)
        verdict = verify_edit(snap.language, snap.text, snap.start, snap.end, text, kind)
        call.attempts.append(
            Attempt(
                tier=tier,
                model=reply.model or tier_config.model,
                input_tokens=reply.usage.input_tokens,
                output_tokens=reply.usage.output_tokens,
                cost_usd=cost,
                passed=verdict.ok,
                reason=verdict.reason,
                latency_ms=reply.latency_ms,
            )
        )
        return text, verdict.ok

    def _charge(self, settings: Settings, cost: Decimal) -> None:
        """Add a finished call's cost to today's and the session's spend (once per call)."""
        today = dt.date.today().isoformat()
        if today != self._day:
            self._day = today
            self.server.spent_today = Decimal(0)
        self.server.spent_today += cost
        self.session_cost += cost
        self.reporter.budget(self.server.spent_today, settings.routing.daily_budget_usd, today)

    # ------------------------------------------------------------------ records and stats

    def _record(
        self,
        status: Status,
        *,
        cancelled: bool = False,
        reused: bool = False,
        decision: Decision | None = None,
        language: str = "",
        call: _Call | None = None,
        hit: Mapping[str, Any] | None = None,
        queue_ms: float | None = None,
    ) -> None:
        """The per-request record: the one place a request is written down (in memory for
        this session's `mmx.stats`, and in the metrics database)."""
        extra: dict[str, Any] = self._versions(status, call, hit)
        if call is not None and status.input_tokens:
            # Only the request that made the call carries its tokens (see _from_call).
            extra["cached_input_tokens"] = call.usage.cached_input_tokens
            extra["model_ms"] = call.model_ms
            extra["prompt"] = call.prompt
        if queue_ms is not None:
            extra["queue_ms"] = queue_ms
        if decision is not None:
            extra |= {
                "language": language or str(decision.features.get("language", "")),
                "features": decision.features,
                "score": decision.score,
                "rule": decision.rule,
                "override": decision.override,
            }
        record = {
            "request_id": status.request_id,
            "time": self._clock(),
            "kind": status.kind,
            "tier": status.tier,
            "model": status.model,
            "cached": status.cached,
            "reused": reused,
            "escalated": status.escalated,
            "fallback": status.fallback,
            "preview": status.preview is not None,
            "cancelled": cancelled,
            "error": status.error,
            "latency_ms": status.latency_ms,
            "input_tokens": status.input_tokens,
            "output_tokens": status.output_tokens,
            "cost_usd": status.cost_usd,
            "saved_usd": status.saved_usd,
            "attempts": len(status.attempts),
            "verdict": None,
        }
        self.records.append(record)
        self._by_id[status.request_id] = record
        self.server.metrics.record(
            {**record, **extra, "attempts": [a.to_json() for a in status.attempts]}
        )

    def _versions(
        self, status: Status, call: _Call | None, hit: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The model version that answered (as the provider named it) and the template."""
        version = call.model_version if call is not None else ""
        if hit is not None:
            version = str(hit.get("model_version") or "")
        template = call.template_version if call is not None else ""
        settings = self._settings
        tier_config = settings.tiers.get(status.tier) if settings else None  # type: ignore[call-overload]
        if not template and tier_config is not None:
            api = request_api(tier_config, status.kind)
            template = prompts.TEMPLATE_VERSIONS[_template(api, status.kind)[0]]
        return {"model_version": version, "template_version": template}

    def verdict(self, request_id: str, value: str) -> bool:
        """Record the editor's verdict on an answer; False for an unknown request."""
        record = self._by_id.get(request_id)
        if record is None:
            return False
        record["verdict"] = value
        self.server.metrics.verdict(request_id, value)
        return True

    def stats(self, since: Any = None) -> dict[str, Any]:
        """DESIGN.md's metrics summary of the requests recorded in this session."""
        cutoff = _since(since)
        rows = [r for r in self.records if cutoff is None or r["time"] >= cutoff]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in rows:
            groups.setdefault((record["model"], record["tier"]), []).append(record)
        by_model = []
        for (model, tier), records in sorted(groups.items()):
            latencies = [
                r["latency_ms"] for r in records if r["latency_ms"] is not None and not r["cached"]
            ]
            cost = sum((r["cost_usd"] for r in records), Decimal(0))
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
            by_model.append(
                {
                    "model": model,
                    "tier": tier,
                    "requests": len(records),
                    "cache_hits": sum(1 for r in records if r["cached"]),
                    "input_tokens": sum(r["input_tokens"] for r in records),
                    "output_tokens": sum(r["output_tokens"] for r in records),
                    "cost_usd": float(cost),
                    "p50_ms": None if p50 is None else round(p50),
                    "p95_ms": None if p95 is None else round(p95),
                    "accepted": sum(1 for r in records if r["verdict"] == "accepted"),
                    "rejected": sum(1 for r in records if r["verdict"] == "rejected"),
                }
            )
        cost = sum((r["cost_usd"] for r in rows), Decimal(0))
        saved = sum((r["saved_usd"] for r in rows if r["saved_usd"] is not None), Decimal(0))
        return {
            "totals": {
                "requests": len(rows),
                "cost_usd": float(cost),
                "saved_usd": float(saved),
                "cache_hits": sum(1 for r in rows if r["cached"]),
                "cancelled": sum(1 for r in rows if r["cancelled"]),
                "errors": sum(1 for r in rows if r["error"] and not r["cancelled"]),
            },
            "by_model": by_model,
        }
