"""What the editor is told about each routed request: mmx/status, $/progress, log and messages."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from mmx_lsp.kinds import Kind, Tier, other_tier
from mmx_lsp.pricing import format_usd

if TYPE_CHECKING:
    from mmx_lsp.cascade import Flight
    from mmx_lsp.server import MmxServer

log = logging.getLogger("mmx_lsp")

STATUS = "mmx/status"
PROVIDER_MESSAGE = "provider"
PREVIEW_MESSAGE = "preview"
EXPLANATION = "mmx/explanation"
# A message repeated within this many seconds of the last request that wanted it belongs to
# the same burst and is not shown again (typing makes a request per keystroke).
BURST_GAP_S = 30.0
# And whatever the bursts, one kind of message is shown at most once in this many seconds
# (DESIGN.md: "at most once per kind of failure per minute"), even when it comes and goes.
MESSAGE_EVERY_S = 60.0
# Budget warnings, as fractions of the daily budget, each shown once a day.
BUDGET_MARKS = (Decimal("0.8"), Decimal(1))
# Streamed progress is reported at most this often.
PROGRESS_EVERY_S = 0.25


def money(amount: Decimal | None) -> float | None:
    """A JSON number for an exact amount (the nearest double; the sum itself stays exact)."""
    return None if amount is None else float(amount)


@dataclass
class Attempt:
    """One model call made for a request."""

    tier: Tier
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    passed: bool
    reason: str
    latency_ms: float
    usage_estimated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": money(self.cost_usd),
            "passed": self.passed,
            "reason": self.reason,
            "latency_ms": round(self.latency_ms),
            "usage_estimated": self.usage_estimated,
        }


@dataclass
class Status:
    """The facts of one routed request, as DESIGN.md's `mmx/status` names them."""

    request_id: str
    kind: Kind
    tier: Tier
    model: str
    reason: str
    cached: bool = False
    escalated: bool = False
    latency_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal | None = None
    session_cost_usd: Decimal = Decimal(0)
    budget_left_usd: Decimal | None = None
    attempts: list[Attempt] = field(default_factory=list)
    estimate_usd: dict[str, Decimal] = field(default_factory=dict)
    error: str | None = None
    fallback: str | None = None
    preview: str | None = None
    # The learned router's estimate that the cheap answer is good, and which router decided.
    p_cheap_ok: float | None = None
    router: str | None = None
    # The endpoint reported no usage and no tokenizer counted it: tokens and cost are
    # estimates (shown with "≈"). A preview's cost is always an estimate.
    usage_estimated: bool = False

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "request_id": self.request_id,
            "kind": self.kind,
            "tier": self.tier,
            "model": self.model,
            "reason": self.reason,
            "cached": self.cached,
            "escalated": self.escalated,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": money(self.cost_usd),
            # The exact decimal sum, for tools that add costs up.
            "cost_usd_exact": str(self.cost_usd),
            "usage_estimated": self.usage_estimated or self.preview is not None,
            "saved_usd": money(self.saved_usd),
            "session_cost_usd": money(self.session_cost_usd),
            "budget_left_usd": money(self.budget_left_usd),
            "attempts": [a.to_json() for a in self.attempts],
            "estimate_usd": {k: money(v) for k, v in self.estimate_usd.items()},
        }
        if self.error is not None:
            payload["error"] = self.error
        if self.fallback is not None:
            payload["fallback"] = self.fallback
        if self.preview is not None:
            payload["preview"] = self.preview
        if self.router is not None:
            payload["router"] = self.router
            payload["p_cheap_ok"] = self.p_cheap_ok
        return payload

    def line(self) -> str:
        """One line for the log and for `$/progress`."""
        parts = [f"mmx {self.kind} → {self.tier} ({self.model})"]
        if self.preview is not None:
            estimate = self.estimate_usd.get(self.tier)
            parts.append(f"preview, {format_usd(estimate, approx=True)}")
        elif self.error is not None:
            parts.append(f"failed: {self.error}")
        elif self.cached:
            parts.append("cached, $0")
        else:
            parts.append(format_usd(self.cost_usd, approx=self.usage_estimated))
            tokens = f"{self.input_tokens}+{self.output_tokens} tokens"
            parts.append(f"≈{tokens}" if self.usage_estimated else tokens)
        if self.escalated:
            parts.append("escalated")
        if self.fallback:
            parts.append(self.fallback)
        if self.latency_ms is not None:
            parts.append(f"{round(self.latency_ms)} ms")
        if self.saved_usd:
            parts.append(f"saved {format_usd(self.saved_usd)}")
        return " · ".join(parts)


class Reporter:
    """Sends what the editor is told, once per request, and keeps repeated messages quiet."""

    def __init__(self, server: MmxServer, clock: Callable[[], float] = time.monotonic) -> None:
        self._server = server
        self._clock = clock
        self._last_wanted: dict[str, float] = {}
        self._last_shown: dict[str, float] = {}
        self._budget_marks: dict[str, set[Decimal]] = {}

    # ------------------------------------------------------------------ capabilities

    def _capabilities(self) -> types.ClientCapabilities | None:
        try:
            return self._server.client_capabilities
        except Exception:  # before initialize
            return None

    def supports_progress(self) -> bool:
        caps = self._capabilities()
        return bool(caps and caps.window and caps.window.work_done_progress)

    def knows_explanation(self) -> bool:
        """True when the client says it shows `mmx/explanation` itself.

        A client declares it with the experimental capability `{"mmx": {"explanation": true}}`;
        without it the explanation also goes out as `window/showMessage`.
        """
        caps = self._capabilities()
        experimental = caps.experimental if caps else None
        if isinstance(experimental, dict):
            mmx = experimental.get("mmx")
            return isinstance(mmx, dict) and mmx.get("explanation") is True
        return False

    # ------------------------------------------------------------------ per request

    def status_after_reply(self, status: Status) -> None:
        """`status`, sent just after the request's own reply goes out (for ghost text, which
        the editor should draw before it hears what it cost)."""
        from mmx_lsp.transport import after_reply

        after_reply(lambda: self.status(status))

    def status(self, status: Status, progress: Progress | None = None) -> None:
        """`mmx/status`, the log line, and the `$/progress` end message: `progress`'s when the
        request reported its own, else a short report of its own (in the background)."""
        payload = status.to_json()
        try:
            self._server.protocol.notify(STATUS, payload)
        except Exception:  # the transport may be closed at shutdown
            log.debug("could not send mmx/status", exc_info=True)
        line = status.line()
        log.info("%s", line)
        kind = types.MessageType.Warning if status.error else types.MessageType.Log
        self._server.log_to_client(line, kind)
        if progress is not None:
            progress.end(line)
        elif self.supports_progress():
            self._server.spawn(self._progress_end(line), "progress")

    async def _progress_end(self, line: str) -> None:
        progress = self.progress("mmx")
        await progress.begin()
        progress.end(line)

    def progress(self, title: str) -> Progress:
        return Progress(self._server, title, enabled=self.supports_progress())

    def explanation(self, request_id: str, uri: str, rng: types.Range, markdown: str) -> None:
        payload = {
            "request_id": request_id,
            "uri": uri,
            "range": {
                "start": {"line": rng.start.line, "character": rng.start.character},
                "end": {"line": rng.end.line, "character": rng.end.character},
            },
            "markdown": markdown,
        }
        try:
            self._server.protocol.notify(EXPLANATION, payload)
        except Exception:
            log.debug("could not send mmx/explanation", exc_info=True)
        if not self.knows_explanation():
            self._server.show(markdown, types.MessageType.Info)

    # ------------------------------------------------------------------ quiet messages

    def show_once(self, key: str, message: str, kind: types.MessageType) -> bool:
        """`window/showMessage` at the start of a burst of requests that want it, and at most
        once a minute per key; True if shown (the status and the log carry every occurrence)."""
        now = self._clock()
        last = self._last_wanted.get(key)
        self._last_wanted[key] = now
        if last is not None and now - last < BURST_GAP_S:
            return False
        shown = self._last_shown.get(key)
        if shown is not None and now - shown < MESSAGE_EVERY_S:
            return False
        self._last_shown[key] = now
        self._server.show(message, kind)
        return True

    def settle(self, key: str) -> None:
        """The condition behind `key` is over: its next occurrence starts a new burst (shown
        unless the same message was shown less than a minute ago)."""
        self._last_wanted.pop(key, None)

    def cascade(self, flight: Flight) -> None:
        """The messages a finished cascade calls for (once per burst of requests)."""
        if flight.preview is not None:
            self.show_once(
                PREVIEW_MESSAGE,
                "mmx preview: requests are routed and priced, but no model is called "
                f"until you {flight.preview}",
                types.MessageType.Info,
            )
            return
        self.settle(PREVIEW_MESSAGE)
        for index, step in enumerate(flight.steps):
            key = f"{PROVIDER_MESSAGE}:{step.tier}"
            if step.error is None:
                if index == 0:
                    self.settle(key)
            elif step is flight.failure:
                log.warning("%s", step.error)
                self.show_once(key, f"mmx: {step.error}", types.MessageType.Error)
            elif step.escalation:
                log.warning(
                    "escalation to premium failed (%s); keeping the cheap answer", step.error
                )
            else:
                other = other_tier(step.tier)
                log.warning("%s; falling back to the %s tier", step.error, other)
                self.show_once(
                    key,
                    f"mmx: {step.error}; using the {other} tier meanwhile",
                    types.MessageType.Warning,
                )

    def budget(self, spent_today: Decimal, budget: Decimal | None, day: str) -> None:
        """Warn once a day at 80 % and at 100 % of the daily budget."""
        if not budget:
            return
        shown = self._budget_marks.setdefault(day, set())
        crossed = [m for m in BUDGET_MARKS if spent_today >= budget * m and m not in shown]
        if not crossed:
            return
        shown.update(crossed)
        # One charge can cross several marks: tell the highest.
        if max(crossed) >= 1:
            text = (
                f"mmx: today's budget of {format_usd(budget)} is spent "
                f"({format_usd(spent_today)}); routing now prefers the cheap tier"
            )
            self._server.show(text, types.MessageType.Warning)
        else:
            text = (
                f"mmx: {format_usd(spent_today)} of today's {format_usd(budget)} budget "
                "spent; the premium threshold is rising"
            )
            self._server.show(text, types.MessageType.Info)


class Progress:
    """A work-done report (`$/progress`) created by the server; every call is a no-op when the
    client does not support it or creating the token failed."""

    def __init__(self, server: MmxServer, title: str, *, enabled: bool) -> None:
        self._server = server
        self._title = title
        self._token = f"mmx-{uuid.uuid4().hex[:12]}"
        self._enabled = enabled
        self._begun = False
        self._last_report = 0.0

    async def begin(self, message: str | None = None) -> None:
        if not self._enabled:
            return
        try:
            await self._server.work_done_progress.create_async(self._token)
            self._server.work_done_progress.begin(
                self._token, types.WorkDoneProgressBegin(title=self._title, message=message)
            )
            self._begun = True
        except Exception as exc:  # the client refused the token: no progress for this request
            log.debug("work done progress unavailable: %s", exc)
            self._enabled = False
            self._forget()

    def report(self, message: str, *, force: bool = False) -> None:
        if not self._begun:
            return
        now = time.monotonic()
        if not force and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        try:
            self._server.work_done_progress.report(
                self._token, types.WorkDoneProgressReport(message=message)
            )
        except Exception:
            log.debug("could not report progress", exc_info=True)

    def end(self, message: str) -> None:
        if not self._begun:
            return
        self._begun = False
        try:
            self._server.work_done_progress.end(
                self._token, types.WorkDoneProgressEnd(message=message)
            )
        except Exception:
            log.debug("could not end progress", exc_info=True)
        self._forget()

    def _forget(self) -> None:
        from mmx_lsp.transport import forget_progress_token

        forget_progress_token(self._server, self._token)
