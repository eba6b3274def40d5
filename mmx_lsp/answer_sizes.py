"""How long each model's answers are, learned from its answers, for pre-call estimates.

Before a call, its cost is the prompt (counted) plus the answer, which can only be guessed:
`scoring` guesses from the kind of request and the size of the selection. Models differ a
lot here (a small local model may write five times what a hosted one writes for the same
fix), so the guess is replaced by what this model wrote for requests of the same `limits`
entry: the median of its last answers, with the guess counted as one of them. Edits (a
refactor, a fix, a docstring, an explanation) are sized relative to their selection; a
completion in tokens. A model's habit carries over between the kinds of edit: before its
first docstring, a model that wrote three times the guess for its fixes is expected to do so
again (the median of its answers ÷ guess over all edits, with 1 counted once). An answer
the endpoint cut off at its length cap would have been longer: it counts as longer than any
cap, so a model that runs to its cap on most such requests is expected to do so again (the
estimate is then the cap, which `calls` applies to every estimate).

The prompt's side is counted (`calls.prompt_tokens`), but each model's tokenizer counts
differently (a small local model's may count 1.5 times as many tokens in the same Go code),
so the count is scaled by the median of what the provider reported ÷ what was counted for
that model's last prompts, with 1 counted once.

The server keeps one `AnswerSizes`, fed by every model call it makes (`Sized`, one per call,
whether its answer was used, failed its check or was stopped) and, at start, by the same facts
of the metrics database's recent requests, so that a restarted server expects what the
running one did.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmx_lsp.config import LimitKey, limit_key
from mmx_lsp.kinds import Kind, is_action_kind, is_kind

# Answers remembered per (model, limits entry): recent enough to follow a model update.
WINDOW = 25
# The estimate when most answers ran to the cap: more than any cap (`calls` caps it).
UNBOUNDED = 1 << 30


def _relative(key: LimitKey) -> bool:
    return is_action_kind(key)


@dataclass(frozen=True)
class Sized:
    """What one model call says about its model's sizes: the tier's model, the answer's
    tokens, whether the endpoint cut it off at its length cap, and the prompt's tokens as
    `calls.prompt_tokens` counted them and as the provider reported them (0: not reported,
    or only estimated). Kept in each metrics record (`extra.calls`) as `to_json` writes it."""

    model: str
    output_tokens: int
    cut_off: bool = False
    counted_input_tokens: int = 0
    input_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Sized | None:
        """The call as a record keeps it; None for what is not one (a damaged record)."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), str):
            return None
        try:
            return cls(
                model=raw["model"],
                output_tokens=int(raw.get("output_tokens") or 0),
                cut_off=bool(raw.get("cut_off")),
                counted_input_tokens=int(raw.get("counted_input_tokens") or 0),
                input_tokens=int(raw.get("input_tokens") or 0),
            )
        except (TypeError, ValueError, OverflowError):
            return None


@dataclass(frozen=True)
class SizedRequest:
    """A request's calls with what their answers are sized against: the request's kind, the
    hole it filled, its selection's tokens and the answer tokens guessed before the call."""

    kind: str
    hole: object
    selection_tokens: int
    guess: int
    calls: Sequence[Sized]


class AnswerSizes:
    """The recent answer sizes of each model, per `limits` entry (thread-safe: the metrics
    database is read from a worker thread)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._seen: dict[tuple[str, LimitKey], deque[float]] = {}
        self._habit: dict[str, deque[float]] = {}  # per model: edit answers ÷ their guess
        self._tokenizer: dict[str, deque[float]] = {}  # per model: reported ÷ counted input
        self._scale: dict[str, float] = {}  # their median, with 1 counted once
        self._lock = threading.Lock()
        self.version = 0  # counts answers seen: estimates remembered before are stale

    def observe(
        self,
        model: str,
        kind: Kind,
        hole: object,
        output_tokens: int,
        selection_tokens: int,
        guess: int = 0,
        cut_off: bool = False,
    ) -> None:
        """One answer of `model` to a request of `kind` (filling `hole`), for which `guess`
        tokens were expected before anything was learned (0: not known); `cut_off`: the
        endpoint stopped it at its length cap."""
        if output_tokens <= 0:
            return
        key = limit_key(kind, hole)
        relative = _relative(key)
        value = output_tokens / max(selection_tokens, 1) if relative else output_tokens
        with self._lock:
            seen = self._seen.setdefault((model, key), deque(maxlen=self._window))
            seen.append(math.inf if cut_off else float(value))
            if relative and guess > 0:
                habit = self._habit.setdefault(model, deque(maxlen=self._window))
                habit.append(math.inf if cut_off else output_tokens / guess)
            self.version += 1

    def observe_prompt(self, model: str, counted: int, reported: int) -> None:
        """One prompt sent to `model`: `counted` tokens by `calls.prompt_tokens`, `reported`
        by its provider (or counted by its own tokenizer)."""
        if counted <= 0 or reported <= 0:
            return
        with self._lock:
            seen = self._tokenizer.setdefault(model, deque(maxlen=self._window))
            seen.append(reported / counted)
            self._scale[model] = statistics.median([1.0, *seen])
            self.version += 1

    def input_tokens(self, model: str, counted: int) -> int:
        """The input tokens `model`'s provider will report for a prompt counted at
        `counted` (read at every keystroke: a lookup)."""
        scale = self._scale.get(model)
        return counted if scale is None else round(counted * scale)

    def learn(self, requests: Iterable[SizedRequest]) -> None:
        """`observe` and `observe_prompt` each call of each request, oldest first: the one
        way the server learns, from the calls it makes and from the metrics database's (a
        kind this version does not know is left out)."""
        for request in requests:
            kind = request.kind if is_kind(request.kind) else None
            for call in request.calls:
                if kind is not None:
                    self.observe(
                        call.model,
                        kind,
                        request.hole,
                        call.output_tokens,
                        request.selection_tokens,
                        request.guess,
                        call.cut_off,
                    )
                self.observe_prompt(call.model, call.counted_input_tokens, call.input_tokens)

    def estimate(
        self, model: str, kind: Kind, hole: object, selection_tokens: int, guess: int
    ) -> int:
        """The answer tokens to expect from `model`: the median of its recent answers to
        such requests and `guess` (the estimate without them); `UNBOUNDED` when that median
        is an answer cut off at the cap."""
        key = limit_key(kind, hole)
        relative = _relative(key)
        scale = max(selection_tokens, 1) if relative else 1
        with self._lock:
            seen = list(self._seen.get((model, key), ()))
            habit = list(self._habit.get(model, ())) if relative else []
        if seen:
            return _tokens(statistics.median([guess / scale, *seen]) * scale)
        if habit:
            return _tokens(guess * statistics.median([1.0, *habit]))
        return guess

    def __len__(self) -> int:
        with self._lock:
            return sum(len(seen) for seen in self._seen.values())


def _tokens(value: float) -> int:
    return UNBOUNDED if math.isinf(value) else max(1, min(UNBOUNDED, round(value)))
