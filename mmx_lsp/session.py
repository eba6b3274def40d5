"""This session's requests: the records `mmx.stats` summarizes and verdicts are matched to.

Constant memory however long the session: running totals per (model, tier) cover every
request of the session exactly, and only the newest `MAX_RECORDS` requests are kept whole
(for verdicts, which come within minutes, for latency percentiles and for `since`). Older
requests are in the metrics database too (`mmx-lsp stats`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mmx_lsp.since import parse_since

MAX_RECORDS = 1_000


@dataclass
class _Totals:
    """Running sums over one group of records (or all of them)."""

    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    cancelled: int = 0
    errors: int = 0
    accepted: int = 0
    rejected: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.requests += 1
        self.cache_hits += bool(record["cached"])
        self.input_tokens += record["input_tokens"]
        self.output_tokens += record["output_tokens"]
        self.cost_usd += record["cost_usd"]
        if record["saved_usd"] is not None:
            self.saved_usd += record["saved_usd"]
        self.cancelled += bool(record["cancelled"])
        self.errors += bool(record["error"] and not record["cancelled"])
        self.count_verdict(record["verdict"], 1)

    def count_verdict(self, verdict: str | None, step: int) -> None:
        if verdict == "accepted":
            self.accepted += step
        elif verdict == "rejected":
            self.rejected += step


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


class SessionLog:
    """Every request of this session in running totals; the newest kept whole."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._max = max_records
        self._totals = _Totals()
        self._groups: dict[tuple[str, str], _Totals] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def add(self, record: dict[str, Any]) -> None:
        self._records[record["request_id"]] = record
        self._totals.add(record)
        self._groups.setdefault((record["model"], record["tier"]), _Totals()).add(record)
        while len(self._records) > self._max:
            self._records.popitem(last=False)

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._records.get(request_id)

    def set_verdict(self, request_id: str, value: str) -> bool:
        """The editor's verdict on a kept request; False when it is not (or no longer) kept."""
        record = self._records.get(request_id)
        if record is None:
            return False
        group = self._groups[(record["model"], record["tier"])]
        for totals in (self._totals, group):
            totals.count_verdict(record["verdict"], -1)
            totals.count_verdict(value, 1)
        record["verdict"] = value
        return True

    def stats(self, since: Any = None, now: float | None = None) -> dict[str, Any]:
        """DESIGN.md's metrics summary of this session's requests (`since`: see
        `mmx_lsp.since`). Counts, tokens and costs cover the whole session exactly; latency
        percentiles, and a summary `since` a time, the newest `MAX_RECORDS` requests."""
        cutoff = parse_since(since, now)
        rows = [r for r in self if cutoff is None or r["time"] >= cutoff]
        if cutoff is None:
            totals, groups = self._totals, self._groups
        else:
            totals, groups = _Totals(), {}
            for record in rows:
                totals.add(record)
                groups.setdefault((record["model"], record["tier"]), _Totals()).add(record)
        latencies: dict[tuple[str, str], list[float]] = {}
        for record in rows:
            if record["latency_ms"] is not None and not record["cached"]:
                key = (record["model"], record["tier"])
                latencies.setdefault(key, []).append(record["latency_ms"])
        by_model = []
        for (model, tier), group in sorted(groups.items()):
            p50 = percentile(latencies.get((model, tier), []), 0.5)
            p95 = percentile(latencies.get((model, tier), []), 0.95)
            by_model.append(
                {
                    "model": model,
                    "tier": tier,
                    "requests": group.requests,
                    "cache_hits": group.cache_hits,
                    "input_tokens": group.input_tokens,
                    "output_tokens": group.output_tokens,
                    "cost_usd": float(group.cost_usd),
                    "p50_ms": None if p50 is None else round(p50),
                    "p95_ms": None if p95 is None else round(p95),
                    "accepted": group.accepted,
                    "rejected": group.rejected,
                }
            )
        return {
            "totals": {
                "requests": totals.requests,
                "cost_usd": float(totals.cost_usd),
                "saved_usd": float(totals.saved_usd),
                "cache_hits": totals.cache_hits,
                "cancelled": totals.cancelled,
                "errors": totals.errors,
            },
            "by_model": by_model,
        }
