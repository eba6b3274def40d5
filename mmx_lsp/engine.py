"""Pure glue from a document and a request to a routing Decision (no I/O, no LSP)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal

from mmx_lsp import calls
from mmx_lsp.answer_sizes import AnswerSizes
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document
from mmx_lsp.kinds import INLINE_KINDS, Kind, Tier
from mmx_lsp.pricing import Usage
from mmx_lsp.router import Router
from mmx_lsp.routing import Decision, route
from mmx_lsp.scoring import Features, Request, for_kind, measure, score

log = logging.getLogger("mmx_lsp")


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


# Facts about requests kept per document until it changes: a few hundred bytes each.
MEMO_ENTRIES = 512


def remember(doc: Document, key: object, value: object) -> None:
    """Keep `value` in the document's memo (emptied by every change, and when full)."""
    if len(doc.memo) >= MEMO_ENTRIES:
        doc.memo.clear()
    doc.memo[key] = value


def excluded(settings: Settings, doc: Document) -> bool:
    """Whether privacy.exclude keeps this document from every model."""
    if settings.is_excluded(doc.path):
        log.info("%s matches privacy.exclude: no model sees it", doc.path)
        return True
    return False


def request_at(
    doc: Document, kind: Kind, start: tuple[int, int], end: tuple[int, int] | None = None
) -> Request:
    """The request at LSP (line, character) `start` (a cursor) or `start`..`end`, clamped."""
    r0 = doc.clamp(*start)
    r1 = doc.clamp(*end) if end is not None else None
    if r1 is not None and r1 < r0:
        r0, r1 = r1, r0
    return Request(kind, r0, r1)


def measured(doc: Document, request: Request) -> Features:
    """`measure`, remembered until the document changes (an editor asks again at the same
    place: after a dismissed suggestion, for code actions and then their resolve)."""
    features = doc.memo.get(request)
    if not isinstance(features, Features):
        features = measure(doc, request)
        remember(doc, request, features)
    return features


def decide(
    settings: Settings,
    doc: Document,
    request: Request,
    *,
    override: tuple[Tier, str] | None = None,
    spent_today: Decimal = Decimal(0),
    request_id: str | None = None,
    router: Router | None = None,
    sizes: AnswerSizes | None = None,
    prefix_only: frozenset[Tier] = frozenset(),
) -> Decision:
    features = measured(doc, request)
    return _priced(
        settings,
        doc,
        features,
        prompt_usage(settings, doc, request, features, sizes, prefix_only),
        sizes,
        override=override,
        spent_today=spent_today,
        request_id=request_id,
        router=router,
    )


def prompt_usage(
    settings: Settings,
    doc: Document,
    request: Request,
    features: Features,
    sizes: AnswerSizes | None = None,
    prefix_only: frozenset[Tier] = frozenset(),
) -> dict[str, Usage]:
    """The tokens each tier would be sent for this request (its prompt, counted) and the
    answer's estimated size (each tier's model's recent answers, `sizes`, when known): what
    a pre-call estimate prices. An inline completion's prompt is sized without being built
    (`calls.inline_usage`): it is priced at every keystroke; tiers in `prefix_only` are sent
    no suffix. Remembered until the document changes."""
    key = ("prompt usage", request, features.kind)
    found = doc.memo.get(key)
    learned = (None if sizes is None else (sizes, sizes.version), prefix_only)
    if isinstance(found, tuple) and found[0] is settings and found[2] == learned:
        return dict(found[1])
    shape = calls.request_shape(settings, features.kind, features.hole)
    guess = features.estimated_output_tokens
    output = {
        tier: guess
        if sizes is None
        else sizes.estimate(
            tier_config.model, features.kind, features.hole, features.selection_tokens, guess
        )
        for tier, tier_config in settings.tiers.items()
    }
    if features.kind in INLINE_KINDS:
        usage = calls.inline_usage(
            settings, features.kind, doc, request.start, output, shape, prefix_only
        )
    else:
        snap = calls.take_snapshot(
            doc, request.start, request.end, context_tokens=shape.context_tokens
        )
        usage = calls.prompt_usage(settings, features.kind, snap, output, shape)
    remember(doc, key, (settings, usage, learned))
    return usage


def _priced(
    settings: Settings,
    doc: Document,
    features: Features,
    counted: dict[str, Usage],
    sizes: AnswerSizes | None,
    *,
    override: tuple[Tier, str] | None,
    spent_today: Decimal,
    router: Router | None,
    request_id: str | None = None,
) -> Decision:
    """`decide_features` with the prompt tokens each tier's provider will report (its
    model's tokenizer, `sizes.input_tokens`) in the estimate, and the tiers compared on the
    prompts as counted: a model whose tokenizer is known must not look dearer than one
    whose is not yet."""
    usage = counted
    if sizes is not None:
        usage = {
            tier: Usage(
                sizes.input_tokens(config.model, counted[tier].input_tokens),
                counted[tier].output_tokens,
            )
            for tier, config in settings.tiers.items()
        }
    return decide_features(
        settings,
        doc,
        features,
        override=override,
        spent_today=spent_today,
        request_id=request_id,
        router=router,
        usage=usage,
        compared_input={tier: u.input_tokens for tier, u in counted.items()},
    )


def decide_kinds(
    settings: Settings,
    doc: Document,
    request: Request,
    kinds: Sequence[Kind],
    *,
    override: tuple[Tier, str] | None = None,
    spent_today: Decimal = Decimal(0),
    router: Router | None = None,
    sizes: AnswerSizes | None = None,
) -> dict[Kind, Decision]:
    """Decisions for several kinds of request over the same place, measured once."""
    features = measured(doc, request)
    decisions: dict[Kind, Decision] = {}
    for kind in kinds:
        measured_kind = for_kind(features, kind)
        decisions[kind] = _priced(
            settings,
            doc,
            measured_kind,
            prompt_usage(settings, doc, request, measured_kind, sizes),
            sizes,
            override=override,
            spent_today=spent_today,
            router=router,
        )
    return decisions


def decide_features(
    settings: Settings,
    doc: Document,
    features: Features,
    *,
    override: tuple[Tier, str] | None = None,
    spent_today: Decimal = Decimal(0),
    request_id: str | None = None,
    router: Router | None = None,
    usage: dict[str, Usage] | None = None,
    compared_input: dict[str, int] | None = None,
) -> Decision:
    value, contributions = score(features)
    return route(
        settings,
        features,
        value,
        contributions,
        request_id=request_id or new_request_id(),
        path=doc.path,
        override=override,
        spent_today=spent_today,
        router=router,
        usage=usage,
        compared_input=compared_input,
    )
