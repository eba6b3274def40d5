"""Answers that ran away from their task, caught while they stream: a model caught in a loop,
and one that writes its request back.

Both are read at every piece of a streamed answer (`calls.model_request` makes them the
request's cut, where the stream is closed) and again when the answer is verified, so the
server and `mmx-lsp eval` judge an answer alike. A small local model does both: Gemma 3 270M
opened each of the eval suite's ten code actions by writing back the prompt's `Language:`
header or its diagnostics, then went on until a loop or its cap (a minute each on two cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# How the failures' messages begin (`benchmarks/local_model.py` counts them by these).
LOOPED = "the model repeated itself"
ECHOED = "the answer writes back the request's own words"

# A model caught in a loop writes the same lines again and again until its cap (a small local
# model may spend a minute on it). A block of up to LOOP_PERIOD lines, one of them with at
# least LOOP_CHARS characters besides spaces, written LOOP_COPIES times in a row (a longer
# block: until its copies make LOOP_LINES lines, and at least 4 times) is where the answer is
# stopped, and the answer fails. Rows of a data table (`None,`, `'\ufffe',`) are shorter: no
# file of this machine's Python library, tests and installed packages included (18,460
# files), has such a run.
LOOP_COPIES = 12
LOOP_PERIOD = 16
LOOP_LINES = 48
LOOP_CHARS = 12


def _copies(period: int) -> int:
    return min(LOOP_COPIES, max(4, -(-LOOP_LINES // period)))


_LOOP_TAIL = max(period * _copies(period) for period in range(1, LOOP_PERIOD + 1))


def _loop_ending(lines: list[str], stop: int) -> str | None:
    """The first line of the block that `lines[:stop]` end with enough copies of, or None."""
    for period in range(1, LOOP_PERIOD + 1):
        copies = _copies(period)
        start = stop - period * copies
        if start < 0 or lines[stop - 1] != lines[stop - 1 - period]:
            continue
        if not all(
            lines[start + i] == lines[start + i % period] for i in range(period, period * copies)
        ):
            continue
        block = lines[start : start + period]
        if max(len(line.strip()) for line in block) < LOOP_CHARS:
            continue
        if any(period % d == 0 and block == block[:d] * (period // d) for d in range(1, period)):
            continue  # copies of a shorter block, which that period judges
        return next(line for line in block if len(line.strip()) >= LOOP_CHARS)
    return None


def loop_end(text: str) -> int | None:
    """Where an answer caught in a loop is stopped: the end of its complete lines when they
    end with enough copies of one block (see LOOP_COPIES); else None. Read at every piece of
    a streamed answer, so it looks at the last lines only."""
    end = text.rfind("\n")
    if end == -1:
        return None
    lines = text[:end].rsplit("\n", _LOOP_TAIL)
    if len(lines) > _LOOP_TAIL:
        lines = lines[1:]  # the first piece is everything before the last lines
    return end + 1 if _loop_ending(lines, len(lines)) is not None else None


def repeats_itself(answer: str) -> str | None:
    """What a model caught in a loop wrote LOOP_COPIES times in a row, anywhere in `answer`."""
    lines = answer.split("\n")
    for stop in range(4, len(lines) + 1):
        line = _loop_ending(lines, stop)
        if line is not None:
            return (
                f"{LOOPED}: {_shown(line)!r} again and again (a model caught "
                "in a loop; its answer was stopped there)"
            )
    return None


# A line that begins with this much of a word writes it back: a model copying the diagnostics
# it was given may change their ends ("returned true" for "returned false").
ECHO_CHARS = 40


def _echoed(line: str, words: Sequence[str], code: str) -> str | None:
    """The word of the request that `line` writes back (it begins with the word's first
    ECHO_CHARS characters), unless the code sent has a line that begins so too (an answer
    may keep that line)."""
    stripped = line.strip()
    for word in words:
        start = word[:ECHO_CHARS]
        if stripped.startswith(start) and not any(
            other.strip().startswith(start) for other in code.split("\n") if start in other
        ):
            return word
    return None


def echo_end(words: Sequence[str], code: str) -> Callable[[str], int | None]:
    """Where an answer that writes back one of `words` (`prompts.request_words`: the lines
    the prompt put around `code`) is stopped: the end of the first complete line that does.
    A streamed answer is read once: each call reads only the lines completed since the last."""
    seen = ""  # the complete lines read so far

    def cut(text: str) -> int | None:
        nonlocal seen
        if not text.startswith(seen):  # another answer: the request was sent again
            seen = ""
        read = len(seen)
        end = text.find("\n", read)
        while end != -1:
            if _echoed(text[read:end], words, code) is not None:
                return end + 1
            read = end + 1
            end = text.find("\n", read)
        seen = text[:read]
        return None

    return cut


def echoes_request(answer: str, words: Sequence[str], code: str) -> str | None:
    """Why `answer` fails when it writes back one of the request's `words`, or None."""
    for line in answer.split("\n"):
        word = _echoed(line, words, code)
        if word is not None:
            return (
                f"{ECHOED} ({_shown(word)!r}) instead of answering it: the model lost "
                "track of its task, and its answer was stopped there (a model that often does "
                "this does not follow instructions: send these requests to a larger one with "
                "a routing.rules entry)"
            )
    return None


def _shown(line: str) -> str:
    """A line quoted in a message: at most 60 characters."""
    line = line.strip()
    return line if len(line) <= 60 else line[:57] + "..."
