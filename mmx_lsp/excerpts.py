"""What a prompt sees of a document: a window of whole lines around a request, with the
file's imports, in time that does not grow with the file (`excerpt`), and the size such a
window takes without building it (`chars_near`, on the keystroke path)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

from mmx_lsp.documents import MAX_REGION_LINES

if TYPE_CHECKING:
    from mmx_lsp.documents import Document


@dataclass(frozen=True)
class Excerpt:
    """The lines a prompt can draw on, without the rest of the file.

    `text` is the document's import lines (where they lie above the window) followed by a
    window of whole lines around the request; `start`/`end` are the request's character
    offsets in it, `scope` the (first, last) line of the innermost definition around it and
    `imports` the import lines, both as line numbers in `text`.
    """

    text: str
    start: int
    end: int
    scope: tuple[int, int] | None
    imports: list[int]

    @property
    def outline(self) -> tuple[tuple[int, int] | None, list[int]]:
        return self.scope, self.imports


# Lines looked at on each side of a request for an excerpt's window.
WINDOW_SCAN = 2000


def excerpt(
    doc: Document, start: tuple[int, int], end: tuple[int, int], budget_chars: int
) -> Excerpt:
    """What a prompt needs around a request, in time that does not grow with the file."""
    (r0, i0), (r1, i1) = sorted((start, end))
    lines = doc.lines
    w0, w1 = r0, r1
    scope = doc.scope_rows(r0, r1)
    if scope is not None and r0 - scope[0] <= MAX_REGION_LINES:
        w0 = min(w0, scope[0])
    # Grow the window to twice the budget: two thirds above the request, one third below,
    # and what one side cannot use (at the top or end of the file) to the other.
    room = 2 * budget_chars - sum(map(len, lines[w0 : w1 + 1]))
    if room > 0:
        up = list(accumulate(map(len, reversed(lines[max(0, w0 - WINDOW_SCAN) : w0]))))
        down = list(accumulate(map(len, lines[w1 + 1 : w1 + 1 + WINDOW_SCAN])))
        above = bisect_right(up, room * 2 // 3)
        below = bisect_right(down, room - (up[above - 1] if above else 0))
        if below == len(down):  # the end of the file: the rest goes above
            above = bisect_right(up, room - (down[-1] if down else 0))
        w0, w1 = w0 - above, w1 + below
    head = [line for row, line in doc.import_lines() if row < w0]
    if head and not head[-1].endswith(("\n", "\r")):
        head[-1] += "\n"
    shift = len(head)
    base = sum(map(len, head))
    window = lines[w0 : w1 + 1]
    # A huge line (minified code) is clipped in characters: no prompt can carry more than
    # the budget, and copying megabytes per keystroke would stall the server.
    limit = 2 * budget_chars
    cut_head = max(0, (i0 if w0 == r0 else len(window[0])) - limit)
    keep_tail = (i1 if w1 == r1 else 0) + limit
    if len(window[-1]) > keep_tail:
        window[-1] = window[-1][:keep_tail]
    if cut_head:
        window[0] = window[0][cut_head:]
    text = "".join(head) + "".join(window)
    offset_start = base + sum(map(len, lines[w0:r0])) + i0 - cut_head
    offset_end = base + sum(map(len, lines[w0:r1])) + i1 - cut_head
    inner: tuple[int, int] | None = None
    if scope is not None:
        first, final = max(scope[0], w0), min(scope[1], w1)
        inner = (first - w0 + shift, final - w0 + shift)
    imports = list(range(shift)) + [
        row - w0 + shift for row, _ in doc.import_lines() if w0 <= row <= w1
    ]
    return Excerpt(text, offset_start, offset_end, inner, imports)


def chars_near(doc: Document, row: int, column: int, limit: int) -> tuple[int, int]:
    """The characters a prompt's context of at most `limit` characters takes around
    (`row`, `column`), before and after it: its line (clipped), then whole lines outwards,
    each side until a line does not fit (as `prompts` chooses them, two lines above for each
    line below)."""
    lines = doc.lines
    if not 0 <= row < len(lines):
        return 0, 0
    line = len(lines[row])
    head = min(column, line)
    before, after = min(head, limit), min(line - head, max(0, limit - head))
    total = before + after
    low, high = row, row + 1
    up, down = True, True
    while up or down:
        for _ in range(2):
            up = up and low > 0 and total + len(lines[low - 1]) <= limit
            if up:
                low -= 1
                total += len(lines[low])
                before += len(lines[low])
        down = down and high < len(lines) and total + len(lines[high]) <= limit
        if down:
            total += len(lines[high])
            after += len(lines[high])
            high += 1
    return before, after
