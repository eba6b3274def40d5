"""This server session's requests: each written down once, verdicts matched to them, the
session's statistics read back, its models' answer sizes learned.

Every request goes to the metrics database (`Recorder`), which `mmx.stats` summarizes for
this session (its rows carry the session's id: editors may share one database). The newest
`MAX_RECORDS` requests are also kept here, for the editor's verdicts on them (accepted,
rejected, typed over), which come within minutes; memory stays the same however long the
session.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mmx_lsp import calls, prompts
from mmx_lsp.answer_sizes import AnswerSizes, Sized, SizedRequest
from mmx_lsp.kinds import is_tier

if TYPE_CHECKING:
    from mmx_lsp import answer_cache, cascade
    from mmx_lsp.config import Settings
    from mmx_lsp.documents import Document
    from mmx_lsp.routing import Decision
    from mmx_lsp.status import Status

MAX_RECORDS = 1_000


class Recorder(Protocol):
    """Where request records go for good (the metrics store)."""

    def record(self, item: Mapping[str, Any]) -> None: ...

    def verdict(self, request_id: str, value: str) -> None: ...

    def summary(
        self, since: float | str | None = None, *, session: tuple[str, float] | None = None
    ) -> dict[str, Any]: ...


class SessionLog:
    """The newest requests of this session, by request id."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._max = max_records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def add(self, record: dict[str, Any]) -> None:
        self._records[record["request_id"]] = record
        while len(self._records) > self._max:
            self._records.popitem(last=False)

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._records.get(request_id)

    def set_verdict(self, request_id: str, value: str) -> bool:
        """The editor's verdict on a kept request; False when it is not (or no longer) kept."""
        record = self._records.get(request_id)
        if record is None:
            return False
        record["verdict"] = value
        return True


class Session:
    """One server session's record of its requests."""

    def __init__(
        self,
        recorder: Callable[[], Recorder],
        clock: Callable[[], float],
        sizes: AnswerSizes | None = None,
    ) -> None:
        self.log = SessionLog()
        self.sizes = AnswerSizes() if sizes is None else sizes
        # This server's rows in the metrics database (other editors may share it).
        self.id = uuid.uuid4().hex
        self.started = clock()
        self._recorder = recorder
        self._clock = clock

    def record(
        self,
        status: Status,
        settings: Settings | None,
        *,
        cancelled: bool = False,
        reused: bool = False,
        decision: Decision | None = None,
        flight: cascade.Flight | None = None,
        hit: answer_cache.Entry | None = None,
        queue_ms: float | None = None,
        doc: Document | None = None,
    ) -> None:
        """The per-request record: the one place a request is written down (here for the
        editor's verdicts, and in the metrics database, which `mmx.stats` reads)."""
        extra: dict[str, Any] = _versions(status, settings, flight, hit)
        extra["session"] = self.id
        if doc is not None:
            # Which file, without naming it: calibration holds records out by file.
            extra["file"] = hashlib.blake2b(doc.uri.encode(), digest_size=6).hexdigest()
        if flight is not None and status.input_tokens:
            # Only the request that made the call carries its tokens (see _from_flight).
            if decision is not None and settings is not None:
                sized = _sized(flight, status, settings, decision)
                self.sizes.learn([sized])
                extra["calls"] = [call.to_json() for call in sized.calls]
            last = flight.last_reply
            extra["cached_input_tokens"] = flight.usage.cached_input_tokens
            extra["model_ms"] = flight.model_ms
            extra["prompt"] = None if last is None else last.prompt
        if queue_ms is not None:
            extra["queue_ms"] = queue_ms
        if status.usage_estimated:
            extra["usage_estimated"] = True
        if decision is not None:
            extra |= {
                "language": str(decision.features.get("language", "")),
                "features": decision.features,
                "score": decision.score,
                "rule": decision.rule,
                "override": decision.override,
                "router": decision.router,
                "p_cheap_ok": decision.p_cheap_ok,
            }
            if status.preview is not None:
                extra |= decision.estimated_record(status.tier)
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
        self.log.add(record)
        self._recorder().record(
            {**record, **extra, "attempts": [a.to_json() for a in status.attempts]}
        )

    def verdict(self, request_id: str, value: str) -> bool:
        """Record the editor's verdict on an answer; False for an unknown request."""
        if not self.log.set_verdict(request_id, value):
            return False
        self._recorder().verdict(request_id, value)
        return True

    def stats(self, since: Any = None) -> dict[str, Any]:
        """DESIGN.md's metrics summary of this session's requests, from the metrics database
        (blocks until what is queued is written: call it off the event loop)."""
        return self._recorder().summary(since, session=(self.id, self.started))


def _sized(
    flight: cascade.Flight, status: Status, settings: Settings, decision: Decision
) -> SizedRequest:
    """Each call the flight paid for, as answer sizes learn from it (`answer_sizes`): the
    used answer, one that failed its check, one stopped as a runaway alike."""
    features = decision.features
    return SizedRequest(
        kind=status.kind,
        hole=features.get("hole"),
        selection_tokens=int(features.get("selection_tokens") or 0),
        guess=int(features.get("estimated_output_tokens") or 0),
        calls=[
            Sized(
                model=settings.tiers[step.tier].model,
                output_tokens=step.reply.usage.output_tokens,
                cut_off=step.reply.cut_off,
                counted_input_tokens=step.reply.counted_input_tokens,
                input_tokens=0 if step.reply.usage_estimated else step.reply.usage.input_tokens,
            )
            for step in flight.billed
            if step.reply is not None and step.tier in settings.tiers
        ],
    )


def _versions(
    status: Status,
    settings: Settings | None,
    flight: cascade.Flight | None,
    hit: answer_cache.Entry | None,
) -> dict[str, Any]:
    """The model version that answered (as the provider named it) and the template."""
    last = flight.last_reply if flight is not None else None
    version = last.model_version if last is not None else ""
    if hit is not None:
        version = hit.model_version
    template = last.template_version if last is not None else ""
    if not template and settings is not None and is_tier(status.tier):
        api = calls.request_api(settings.tiers[status.tier], status.kind)
        template = prompts.TEMPLATE_VERSIONS[calls.template(api, status.kind)]
    return {"model_version": version, "template_version": template}
