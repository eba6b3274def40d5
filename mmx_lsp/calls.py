"""From a request to a model call and back: the excerpt, the prompt, the call, the clean-up.

Pure and shared by the server's request path and `mmx-lsp eval`, so both send a model the
same prompt and judge the same cleaned-up answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from mmx_lsp import excerpts, prompts
from mmx_lsp.checks import CHECKS, WHOLE_FILE_CHECKS
from mmx_lsp.config import limit_key
from mmx_lsp.kinds import INLINE_KINDS, Kind, Tier, is_action_kind
from mmx_lsp.model_io import ModelRequest
from mmx_lsp.pricing import Usage
from mmx_lsp.runaway import echo_end, echoes_request, loop_end
from mmx_lsp.tokens import chars_for_tokens, tokens_for_bytes
from mmx_lsp.verify import Verdict, verify_edit

if TYPE_CHECKING:
    from mmx_lsp.config import LimitKey, Settings, TierConfig
    from mmx_lsp.documents import Document

# Characters after the cursor that inline clean-up compares the answer with.
AFTER_CURSOR_CHARS = 4000


@dataclass(frozen=True)
class Shape:
    """How big one request is (settings.limits for its kind or hole): the context it
    carries, the longest answer, how long it may take, where its answer stops."""

    key: LimitKey
    context_tokens: int
    max_output_tokens: int
    deadline_s: float
    stop: tuple[str, ...] = ()


def request_shape(settings: Settings, kind: Kind, hole: object = None) -> Shape:
    """The limits a request of `kind` (filling `hole`) follows in these settings."""
    key = limit_key(kind, hole)
    limits = settings.limits[key]
    return Shape(
        key=key,
        context_tokens=limits.context_tokens,
        max_output_tokens=limits.max_output_tokens,
        deadline_s=limits.deadline_s,
        stop=tuple(limits.stop),
    )


def context_tokens(shape: Shape, tier_config: TierConfig) -> int:
    """The context budget of a request on a tier: the kind's, capped by the tier's."""
    cap = tier_config.max_context_tokens
    return shape.context_tokens if cap is None else min(shape.context_tokens, cap)


def output_cap(shape: Shape, tier_config: TierConfig) -> int:
    """The longest answer of a request on a tier: the kind's, capped by the tier's."""
    cap = tier_config.max_output_tokens
    return shape.max_output_tokens if cap is None else min(shape.max_output_tokens, cap)


def deadline_s(kind: Kind, settings: Settings | None = None, hole: object = None) -> float:
    """Seconds one model call for `kind` may take, retries included."""
    from mmx_lsp.config import Settings

    return request_shape(settings or Settings(), kind, hole).deadline_s


def template(api: str, kind: Kind) -> str:
    """The prompt template of a request."""
    if kind in INLINE_KINDS:
        return "inline-fim" if api == "completions" else "inline-chat"
    return kind


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
    # The document and its version then, and the request's (row, index) places in it:
    # answers are verified in the whole document while it is still that version. Nothing is
    # copied here: a snapshot is taken for every decision, and most never call a model.
    document: Document | None = field(default=None, compare=False, repr=False)
    version: int = 0
    places: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @property
    def selection(self) -> str:
        return self.text[self.start : self.end]


# Documents up to this size are verified whole (names defined anywhere in them count);
# larger ones in the excerpt, without the checks that need the whole file.
VERIFY_WHOLE_CHARS = 1_000_000


def verify_answer(snap: Snapshot, kind: Kind, answer: str, words: Sequence[str] = ()) -> Verdict:
    """The server's check of an answer, in place in the document as the request saw it: the
    whole document while it has not changed since (and is not too large), else the excerpt
    without the checks that need the whole file. An answer that writes back the prompt's
    `words` (`Prompt.words`) fails first."""
    echoed = echoes_request(answer, words, snap.text)
    if echoed is not None:
        return Verdict(False, echoed)
    doc = snap.document
    lines = doc.lines if doc is not None and doc.version == snap.version else None
    text = "".join(lines) if lines is not None else ""
    if lines is None or len(text) > VERIFY_WHOLE_CHARS:
        checks = tuple(c for c in CHECKS if c not in WHOLE_FILE_CHECKS)
        return verify_edit(
            snap.language, snap.text, snap.start, snap.end, answer, kind, checks=checks
        )
    (r0, i0), (r1, i1) = snap.places
    start = sum(len(line) for line in lines[:r0]) + i0
    end = sum(len(line) for line in lines[:r1]) + i1 if (r1, i1) != (r0, i0) else start
    return verify_edit(snap.language, text, start, end, answer, kind)


def take_snapshot(
    doc: Document,
    start: tuple[int, int],
    end: tuple[int, int] | None = None,
    *,
    context_tokens: int | None = None,
) -> Snapshot:
    """The request as the model will see it: an excerpt around `start` (a cursor) or
    `start`..`end` (a selection), clamped (row, column) places in `doc`, of about
    `context_tokens` (default: the default limits of a line or of a refactor)."""
    r0, i0 = start
    r1, i1 = (r0, i0) if end is None else end
    # A window of the document, never the whole text: the request path stays the same
    # cost in a 500-line file and a 50,000-line one.
    if context_tokens is None:
        from mmx_lsp.config import Settings

        context_tokens = request_shape(
            Settings(), "inline" if end is None else "refactor"
        ).context_tokens
    budget = chars_for_tokens(context_tokens)
    excerpt = excerpts.excerpt(doc, (r0, i0), (r1, i1), budget)
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
        document=None if doc.binary else doc,
        version=doc.version,
        places=((r0, i0), (r1, i1)),
    )


def request_api(tier_config: TierConfig, kind: Kind) -> Literal["chat", "completions"]:
    """The API a request uses: the tier's for inline completions; chat for code actions,
    which have no fill-in-the-middle form (a FIM tier's server serves chat too)."""
    return tier_config.api if kind in INLINE_KINDS else "chat"


def build_prompt(
    kind: Kind,
    snap: Snapshot,
    tier_config: TierConfig,
    diagnostics: Sequence[str] = (),
    shape: Shape | None = None,
) -> prompts.Prompt:
    """The prompt of a request on a tier, within the context budget of its `shape`."""
    if shape is None:
        from mmx_lsp.config import Settings

        shape = request_shape(Settings(), kind)
    budget = context_tokens(shape, tier_config)
    if not is_action_kind(kind):
        return prompts.build_inline(
            snap.text,
            snap.start,
            snap.language,
            budget,
            request_api(tier_config, kind),
            outline=snap.outline,
        )
    return prompts.build_action(
        kind,
        snap.text,
        snap.start,
        snap.end,
        snap.language,
        list(diagnostics),
        None,
        context_tokens=budget,
        outline=snap.outline,
    )


def model_request(
    tier: Tier,
    tier_config: TierConfig,
    kind: Kind,
    prompt: prompts.Prompt,
    shape: Shape | None = None,
    snap: Snapshot | None = None,
) -> ModelRequest:
    """The call that sends `prompt` to a tier: its answer capped by the kind's limit and the
    tier's. A fill-in-the-middle call (raw code out) stops at the kind's stop sequences and,
    for a block or body, at the first line indented less than the cursor's; a chat answer
    may open with a Markdown fence, so only its length is capped. Every answer is stopped
    where a model caught in a loop has written the same lines again and again
    (`runaway.loop_end`), or has written back the prompt's own words (`runaway.echo_end`)."""
    if shape is None:
        from mmx_lsp.config import Settings

        shape = request_shape(Settings(), kind)
    api = request_api(tier_config, kind)
    fim = api == "completions" and kind in INLINE_KINDS
    cut: Callable[[str], int | None] = loop_end
    if fim and shape.key in ("block", "body") and snap is not None:
        cut = earliest(dedent_cut(snap.line_before), loop_end)
    if prompt.words:
        cut = earliest(cut, echo_end(prompt.words, snap.text if snap is not None else ""))
    return ModelRequest(
        tier=tier,
        api=api,
        messages=prompt.messages,
        prompt=prompt.prompt,
        suffix=prompt.suffix,
        max_tokens=output_cap(shape, tier_config),
        stop=list(shape.stop) if fim and shape.stop else None,
        cut=cut,
    )


def earliest(*cuts: Callable[[str], int | None]) -> Callable[[str], int | None]:
    """Where the first of `cuts` to find an end says the answer ends."""

    def cut(text: str) -> int | None:
        found = [at for at in (each(text) for each in cuts) if at is not None]
        return min(found) if found else None

    return cut


def dedent_cut(line_before: str) -> Callable[[str], int | None]:
    """Where a block written at the cursor ends: the start of its first line (after the one
    the cursor is on) indented less than the cursor's column, or `None` while there is none.
    A closing bracket there (`}`, `)`) belongs to the code after the block, which is already
    in the document."""
    indent = len(line_before) - len(line_before.lstrip(" \t"))

    def cut(text: str) -> int | None:
        offset = text.find("\n")
        while offset != -1:
            start = offset + 1
            end = text.find("\n", start)
            line = text[start:] if end == -1 else text[start:end]
            body = line.lstrip(" \t")
            # A line's indentation is known once something follows it.
            if body and len(line) - len(body) < indent:
                return offset
            offset = end
        return None

    return cut


# Tokens a chat template adds around each message's content.
MESSAGE_FRAMING_TOKENS = 4


def prompt_tokens(prompt: prompts.Prompt) -> int:
    """An estimate of the input tokens of `prompt`, as it is sent: from its size, the
    calibrated shortcut of `tokens.py` (a pre-call estimate is made at every decision, on the
    keystroke path)."""
    if prompt.messages is not None:
        contents = [m.get("content", "") for m in prompt.messages]
        return sum(_size_tokens(c) + MESSAGE_FRAMING_TOKENS for c in contents)
    return _size_tokens(prompt.prompt or "") + _size_tokens(prompt.suffix or "")


def _size_tokens(text: str) -> int:
    return tokens_for_bytes(len(text.encode("utf-8")))


def prompt_usage(
    settings: Settings,
    kind: Kind,
    snap: Snapshot,
    output_tokens: Mapping[Tier, int],
    shape: Shape,
    diagnostics: Sequence[str] = (),
) -> dict[str, Usage]:
    """The tokens each tier would be sent (the prompt that would be built for it, counted)
    and would write (`output_tokens` by tier, capped as its call would be): a pre-call
    estimate made of what is sent."""
    usage: dict[str, Usage] = {}
    counted: dict[tuple[str, int], int] = {}  # tiers with the same API and budget: one prompt
    for tier, tier_config in settings.tiers.items():
        same = (request_api(tier_config, kind), context_tokens(shape, tier_config))
        if same not in counted:
            counted[same] = prompt_tokens(build_prompt(kind, snap, tier_config, diagnostics, shape))
        usage[tier] = Usage(counted[same], min(output_tokens[tier], output_cap(shape, tier_config)))
    return usage


def inline_usage(
    settings: Settings,
    kind: Kind,
    doc: Document,
    place: tuple[int, int],
    output_tokens: Mapping[Tier, int],
    shape: Shape,
    prefix_only: frozenset[Tier] = frozenset(),
) -> dict[str, Usage]:
    """`prompt_usage` of an inline completion at `place` (row, column) without building its
    prompt (this one is made at every keystroke): the prompt's fixed part for its template,
    plus the context it would carry, its budget or what the document has near the cursor,
    whichever is less; for a tier in `prefix_only` (one that does not fill in the middle, so
    sent no suffix: `health.FimWatch`), the context before the cursor only.
    tests/unit/test_calls.py keeps it within a few per cent of the prompt that is built."""
    usage: dict[str, Usage] = {}
    near: dict[int, tuple[int, int]] = {}  # tiers with the same budget: one count
    for tier, tier_config in settings.tiers.items():
        budget = chars_for_tokens(context_tokens(shape, tier_config))
        if budget not in near:
            near[budget] = excerpts.chars_near(doc, place[0], place[1], budget)
        before, after = near[budget]
        sent = before if tier in prefix_only else before + after
        context = tokens_for_bytes(sent)
        fixed = _template_tokens(doc.language, request_api(tier_config, kind))
        usage[tier] = Usage(
            fixed + context, min(output_tokens[tier], output_cap(shape, tier_config))
        )
    return usage


@functools.cache
def _template_tokens(language: str, api: str) -> int:
    """The tokens of an inline prompt with no context: its instructions and framing."""
    return prompt_tokens(prompts.build_inline("", 0, language, 1, api))


def clean_answer(kind: Kind, snap: Snapshot, text: str) -> str:
    """A model's text cleaned up to be shown (inline) or applied (an edit)."""
    if kind in INLINE_KINDS:
        after = snap.text[snap.end : snap.end + AFTER_CURSOR_CHARS]
        return prompts.postprocess_inline(text, snap.line_before, after)
    if kind == "explain":
        return text.strip()
    return prompts.postprocess_edit(text, snap.selection)
