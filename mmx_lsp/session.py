"""This session's requests: the records `mmx.stats` summarizes and verdicts are matched to.

Bounded: the newest `MAX_RECORDS` requests are kept (a session of a working day makes a few
thousand); older ones are still in the metrics database (`mmx-lsp stats`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from mmx_lsp.since import parse_since

MAX_RECORDS = 20_000


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


class SessionLog:
    """The newest requests of this session, by request id, oldest first."""

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

    def stats(self, since: Any = None, now: float | None = None) -> dict[str, Any]:
        """DESIGN.md's metrics summary of the requests recorded in this session (`since`: see
        `mmx_lsp.since`)."""
        cutoff = parse_since(since, now)
        rows = [r for r in self if cutoff is None or r["time"] >= cutoff]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in rows:
            groups.setdefault((record["model"], record["tier"]), []).append(record)
        by_model = []
        for (model, tier), records in sorted(groups.items()):
            latencies = [
                r["latency_ms"] for r in records if r["latency_ms"] is not None and not r["cached"]
            ]
            cost = sum((r["cost_usd"] for r in records), Decimal(0))
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
            by_model.append(
                {
                    "model": model,
                    "tier": tier,
                    "requests": len(records),
                    "cache_hits": sum(1 for r in records if r["cached"]),
                    "input_tokens": sum(r["input_tokens"] for r in records),
                    "output_tokens": sum(r["output_tokens"] for r in records),
                    "cost_usd": float(cost),
                    "p50_ms": None if p50 is None else round(p50),
                    "p95_ms": None if p95 is None else round(p95),
                    "accepted": sum(1 for r in records if r["verdict"] == "accepted"),
                    "rejected": sum(1 for r in records if r["verdict"] == "rejected"),
                }
            )
        cost = sum((r["cost_usd"] for r in rows), Decimal(0))
        saved = sum((r["saved_usd"] for r in rows if r["saved_usd"] is not None), Decimal(0))
        return {
            "totals": {
                "requests": len(rows),
                "cost_usd": float(cost),
                "saved_usd": float(saved),
                "cache_hits": sum(1 for r in rows if r["cached"]),
                "cancelled": sum(1 for r in rows if r["cancelled"]),
                "errors": sum(1 for r in rows if r["error"] and not r["cancelled"]),
            },
            "by_model": by_model,
        }
