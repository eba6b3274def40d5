"""Suggestion reuse: the rest of the last inline suggestion while the user types it
(typed-ahead, no model call), and the verdict on one the user typed over (typed-over).

Pure: it keeps the last suggestion per document and answers questions about places.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmx_lsp.documents import Document
    from mmx_lsp.kinds import Tier

# Documents whose last suggestion is kept (the least recently asked about goes first).
MAX_DOCUMENTS = 256


@dataclass(frozen=True)
class Place:
    """Where a request was made: enough for typed-ahead reuse, without an excerpt."""

    uri: str
    row: int
    line_before: str
    line_after: str
    span: tuple[int, int, int, int]  # start row, start column, end row, end column
    inline: bool  # a cursor, not a selection

    @classmethod
    def of(cls, doc: Document, start: tuple[int, int], end: tuple[int, int] | None) -> Place:
        """The place of a request at LSP (line, character) `start`, or `start`..`end`."""
        r0, i0 = doc.clamp(*start)
        r1, i1 = (r0, i0) if end is None else doc.clamp(*end)
        if (r1, i1) < (r0, i0):
            (r0, i0), (r1, i1) = (r1, i1), (r0, i0)
        line = doc.line_text(r0)
        return cls(doc.uri, r0, line[:i0], line[i0:], (r0, i0, r1, i1), end is None)


@dataclass(frozen=True)
class Suggestion:
    """The last inline answer in a document, for typed-ahead reuse."""

    row: int
    line_before: str
    line_after: str
    text: str
    tier: Tier
    model: str
    premium_equivalent: Decimal | None
    request_id: str = ""
    shown: bool = False  # the document had not changed when the answer went out


class Suggestions:
    """The last inline suggestion of each document."""

    def __init__(self, max_documents: int = MAX_DOCUMENTS) -> None:
        self._last: OrderedDict[str, Suggestion] = OrderedDict()
        self._max = max_documents

    def __len__(self) -> int:
        return len(self._last)

    def typed_ahead(self, place: Place) -> tuple[Suggestion, str] | None:
        """The last suggestion and its rest when the user has typed its start here."""
        last = self._last.get(place.uri)
        if last is None or place.row != last.row or place.line_after != last.line_after:
            return None
        if not place.line_before.startswith(last.line_before):
            return None
        typed = place.line_before[len(last.line_before) :]
        if not typed or not last.text.startswith(typed) or len(typed) >= len(last.text):
            return None
        return last, last.text[len(typed) :]

    def typed_over(self, place: Place) -> Suggestion | None:
        """The shown suggestion the user typed something else over (or deleted back past)
        on its line without accepting it; it is forgotten.

        Typing its start is not a rejection (the rest is served from it), nor is a request
        at the same place, nor text that begins with the whole suggestion (it was accepted).
        """
        last = self._last.get(place.uri)
        if last is None or not last.shown or place.row != last.row:
            return None
        if place.line_before.startswith(last.line_before):
            typed = place.line_before[len(last.line_before) :]
            if last.text.startswith(typed) or typed.startswith(last.text):
                return None
        del self._last[place.uri]
        return last

    def remember(self, place: Place, suggestion: Suggestion | None) -> None:
        """Keep `suggestion` as the document's last (None: the last answer was empty)."""
        if suggestion is None:
            self._last.pop(place.uri, None)
            return
        self._last[place.uri] = suggestion
        self._last.move_to_end(place.uri)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
