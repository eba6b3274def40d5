"""From a request to a model call and back: the excerpt, the prompt, the call, the clean-up.

Pure and shared by the server's request path and `mmx-lsp eval`, so both send a model the
same prompt and judge the same cleaned-up answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mmx_lsp import prompts
from mmx_lsp.checks import CHECKS, WHOLE_FILE_CHECKS
from mmx_lsp.kinds import INLINE_KINDS, Kind, Tier, is_action_kind
from mmx_lsp.providers import ModelRequest
from mmx_lsp.tokens import chars_for_tokens
from mmx_lsp.verify import Verdict, verify_edit

if TYPE_CHECKING:
    from mmx_lsp.config import TierConfig
    from mmx_lsp.documents import Document

# Seconds one model call may take, retries included, by request kind. Ghost text that comes
# later than a few seconds is useless; an edit the user asked for is worth waiting for.
DEADLINE_S: dict[Kind, float] = {
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


def deadline_s(kind: Kind) -> float:
    """Seconds one model call for `kind` may take, retries included."""
    return DEADLINE_S.get(kind, 30.0)


def template(api: str, kind: Kind) -> tuple[str, int]:
    """The prompt template of a request and its context budget in tokens."""
    if kind in INLINE_KINDS:
        return ("inline-fim" if api == "completions" else "inline-chat"), INLINE_CONTEXT_TOKENS
    return kind, ACTION_CONTEXT_TOKENS


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
    # The whole document's lines then (a shallow copy; empty when too large to check whole)
    # and the request's (row, index) places in them: answers are verified in the document.
    lines: tuple[str, ...] = ()
    places: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @property
    def selection(self) -> str:
        return self.text[self.start : self.end]


# Documents up to this size are verified whole (names defined anywhere in them count);
# larger ones in the excerpt, without the checks that need the whole file.
VERIFY_WHOLE_CHARS = 1_000_000


def verify_answer(snap: Snapshot, kind: Kind, answer: str) -> Verdict:
    """The server's check of an answer, in place in the document as the request saw it."""
    if not snap.lines:
        checks = tuple(c for c in CHECKS if c not in WHOLE_FILE_CHECKS)
        return verify_edit(
            snap.language, snap.text, snap.start, snap.end, answer, kind, checks=checks
        )
    (r0, i0), (r1, i1) = snap.places
    text = "".join(snap.lines)
    before_start = sum(len(line) for line in snap.lines[:r0])
    start = before_start + i0
    end = sum(len(line) for line in snap.lines[:r1]) + i1 if (r1, i1) != (r0, i0) else start
    return verify_edit(snap.language, text, start, end, answer, kind)


def take_snapshot(
    doc: Document, start: tuple[int, int], end: tuple[int, int] | None = None
) -> Snapshot:
    """The request as the model will see it: an excerpt around `start` (a cursor) or
    `start`..`end` (a selection), clamped (row, column) places in `doc`."""
    r0, i0 = start
    r1, i1 = (r0, i0) if end is None else end
    # A window of the document, never the whole text: the request path stays the same
    # cost in a 500-line file and a 50,000-line one.
    budget = chars_for_tokens(INLINE_CONTEXT_TOKENS if end is None else ACTION_CONTEXT_TOKENS)
    excerpt = doc.excerpt((r0, i0), (r1, i1), budget)
    line = doc.line_text(r0)
    whole = doc.size_bytes <= VERIFY_WHOLE_CHARS and not doc.binary
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
        lines=tuple(doc.lines) if whole else (),
        places=((r0, i0), (r1, i1)),
    )


def request_api(tier_config: TierConfig, kind: Kind) -> Literal["chat", "completions"]:
    """The API a request uses: the tier's for inline completions; chat for code actions,
    which have no fill-in-the-middle form (a FIM tier's server serves chat too)."""
    return tier_config.api if kind in INLINE_KINDS else "chat"


def build_prompt(
    kind: Kind, snap: Snapshot, tier_config: TierConfig, diagnostics: Sequence[str] = ()
) -> prompts.Prompt:
    """The prompt of a request on a tier."""
    if not is_action_kind(kind):
        return prompts.build_inline(
            snap.text,
            snap.start,
            snap.language,
            INLINE_CONTEXT_TOKENS,
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
        context_tokens=ACTION_CONTEXT_TOKENS,
        outline=snap.outline,
    )


def model_request(
    tier: Tier, tier_config: TierConfig, kind: Kind, prompt: prompts.Prompt
) -> ModelRequest:
    """The call that sends `prompt` to a tier."""
    max_tokens = tier_config.max_output_tokens
    if kind in INLINE_KINDS:
        max_tokens = min(max_tokens, INLINE_MAX_TOKENS)
    return ModelRequest(
        tier=tier,
        api=request_api(tier_config, kind),
        messages=prompt.messages,
        prompt=prompt.prompt,
        suffix=prompt.suffix,
        max_tokens=max_tokens,
    )


def clean_answer(kind: Kind, snap: Snapshot, text: str) -> str:
    """A model's text cleaned up to be shown (inline) or applied (an edit)."""
    if kind in INLINE_KINDS:
        after = snap.text[snap.end : snap.end + AFTER_CURSOR_CHARS]
        return prompts.postprocess_inline(text, snap.line_before, after)
    if kind == "explain":
        return text.strip()
    return prompts.postprocess_edit(text, snap.selection)
