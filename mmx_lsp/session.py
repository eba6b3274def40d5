"""This session's newest requests, which verdicts are matched to.

The editor's verdict on a suggestion (accepted, rejected, typed over) comes within minutes of
the request; only the newest `MAX_RECORDS` requests are kept for it, so memory stays the
same however long the session. Every request is in the metrics database, which `mmx.stats`
and `mmx-lsp stats` summarize.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

MAX_RECORDS = 1_000


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
