"""Summaries of the database: totals and groups over a time window (`mmx.stats`, `stats`)."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmx_lsp.metrics.records import from_pico
from mmx_lsp.metrics.rollups import (
    _DAILY_KEY,
    _ROLLUP_SOURCE,
    _S,
    SUMS,
    DailyKey,
    Rollup,
    _local_midnight,
    bucket_mid,
    day_of,
)
from mmx_lsp.metrics.schema import ESTIMATED, GROUPINGS
from mmx_lsp.since import parse_since

if TYPE_CHECKING:
    from mmx_lsp.answer_sizes import SizedRequest

# --------------------------------------------------------------------------- summaries


def _group_key(by: str) -> tuple[tuple[str, ...], Callable[[DailyKey], tuple[str, ...]]]:
    if by == "model":
        return ("model", "tier"), lambda k: (k[1], k[3])
    if by == "tier":
        return ("tier",), lambda k: (k[3],)
    if by == "kind":
        return ("kind",), lambda k: (k[4],)
    if by == "language":
        return ("language",), lambda k: (k[5],)
    if by == "day":
        return ("day",), lambda k: (k[0],)
    raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")


def _latency_key(by: str) -> tuple[str, Callable[[str, str, str], tuple[str, ...]]]:
    """Which histogram a grouping reads, and the group of one histogram row (key, tier, day)."""
    if by == "model":
        return "model", lambda key, tier, day: (key, tier)
    if by == "tier":
        return "model", lambda key, tier, day: (tier,)
    if by == "day":
        return "model", lambda key, tier, day: (day,)
    return by, lambda key, tier, day: (key,)


def percentile(histogram: Mapping[int, int], share: float) -> int | None:
    """Nearest-rank percentile of a bucketed latency histogram (bucket -> count), in ms."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for lower in sorted(histogram):
        seen += histogram[lower]
        if seen >= rank:
            return round(bucket_mid(lower))
    return None


@dataclass
class _Group:
    sums: list[float] = field(default_factory=lambda: [0] * len(SUMS))
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, values: Sequence[float]) -> None:
        for i, value in enumerate(values):
            self.sums[i] += value

    def to_json(self) -> dict[str, Any]:
        s = self.sums
        requests, cache_hits = int(s[_S["requests"]]), int(s[_S["cache_hits"]])
        accepted, rejected = int(s[_S["accepted"]]), int(s[_S["rejected"]])
        escalated = int(s[_S["escalated"]])
        cost, saved = from_pico(int(s[_S["cost_pusd"]])), from_pico(int(s[_S["saved_pusd"]]))
        verdicts = accepted + rejected
        return {
            "requests": requests,
            "cache_hits": cache_hits,
            "input_tokens": int(s[_S["input_tokens"]]),
            "cached_input_tokens": int(s[_S["cached_input_tokens"]]),
            "output_tokens": int(s[_S["output_tokens"]]),
            "cost_usd": float(cost),
            "cost_usd_exact": str(cost),
            "saved_usd": float(saved),
            "saved_usd_exact": str(saved),
            "p50_ms": percentile(self.latency, 0.50),
            "p95_ms": percentile(self.latency, 0.95),
            "latency_count": int(s[_S["latency_count"]]),
            "latency_sum_ms": float(s[_S["latency_sum_ms"]]),
            "accepted": accepted,
            "rejected": rejected,
            "acceptance_rate": None if verdicts == 0 else accepted / verdicts,
            "cache_hit_rate": None if requests == 0 else cache_hits / requests,
            "escalated": escalated,
            "escalation_rate": None if requests == 0 else escalated / requests,
            "errors": int(s[_S["errors"]]),
            "cancelled": int(s[_S["cancelled"]]),
        }


@dataclass
class Window:
    """The daily sums and latency rows of a time window: whole days from the daily tables,
    and the part of the first day after `since` from the requests themselves."""

    daily: list[tuple[DailyKey, Sequence[float]]]
    latency: list[tuple[str, str, str, int, str, int]]  # dim, key, tier, ms, day, count


def window(
    conn: sqlite3.Connection,
    since: float | None,
    dims: Iterable[str],
    *,
    per_day: bool = False,
    session: str | None = None,
) -> Window:
    """Read a window; latency rows are summed over days in SQL unless `per_day` (the
    histogram's key order makes that a sort-free scan). With `session`, only that server
    session's requests, summed from the rows (a session's are few and recent: read from
    `since`, which the caller sets no earlier than the session's start)."""
    dims = tuple(dict.fromkeys(dims))
    if session is not None:
        rows = Rollup()
        for row in conn.execute(
            f"SELECT {_ROLLUP_SOURCE} FROM requests WHERE ts >= ? "
            f"AND json_extract(extra, '$.session') = ?",
            (since or 0.0, session),
        ):
            rows.add(*row)
        return Window(
            list(rows.daily.items()), [(*k, n) for k, n in rows.latency.items() if k[0] in dims]
        )
    first_day = ""
    edge = Rollup()
    if since is not None:
        day = dt.date.fromtimestamp(since)
        midnight = _local_midnight(day)
        boundary = midnight if since <= midnight else _local_midnight(day + dt.timedelta(days=1))
        first_day = dt.date.fromtimestamp(boundary).isoformat()
        if boundary > since:
            for row in conn.execute(
                f"SELECT {_ROLLUP_SOURCE} FROM requests WHERE ts >= ? AND ts < ?",
                (since, boundary),
            ):
                edge.add(*row)
    width = len(_DAILY_KEY)
    daily: list[tuple[DailyKey, Sequence[float]]] = [
        (tuple(row[:width]), row[width:])  # type: ignore[misc]
        for row in conn.execute(
            f"SELECT {', '.join(_DAILY_KEY + SUMS)} FROM daily WHERE day >= ?", (first_day,)
        )
    ]
    daily.extend(edge.daily.items())
    latency: list[tuple[str, str, str, int, str, int]] = []
    sql = (
        "SELECT key, tier, ms, day, count FROM daily_latency WHERE dim = ? AND day >= ?"
        if per_day
        else "SELECT key, tier, ms, '', SUM(count) FROM daily_latency "
        "WHERE dim = ? AND day >= ? GROUP BY key, tier, ms"
    )
    for dim in dims:
        latency.extend((dim, *row) for row in conn.execute(sql, (dim, first_day)))
    latency.extend((*k, n) for k, n in edge.latency.items() if k[0] in dims)
    return Window(daily, latency)


def summarize(
    conn: sqlite3.Connection,
    *,
    since: float | str | None = None,
    by: str = "model",
    now: float | None = None,
    session: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """Totals and one row per group (`by_model`, `by_tier`, … as `by` says): DESIGN.md's
    `mmx.stats` shape with rates, exact money and p50/p95 latency (cached answers excluded).
    `session`: (id, start time) of one server session, to summarize only its requests."""
    names, group_of = _group_key(by)
    dim, latency_group = _latency_key(by)
    cutoff = parse_since(since, now)
    session_id = None
    if session is not None:
        session_id, started = session
        cutoff = started if cutoff is None else max(cutoff, started)
    data = window(conn, cutoff, {"model", dim}, per_day=by == "day", session=session_id)
    groups: dict[tuple[str, ...], _Group] = {}
    totals = _Group()
    for daily_key, values in data.daily:
        name = group_of(daily_key)
        group = groups.get(name)
        if group is None:
            group = groups[name] = _Group()
        group.add(values)
        totals.add(values)
    for row_dim, dim_key, tier, ms, day, count in data.latency:
        if row_dim == "model":
            totals.latency[ms] = totals.latency.get(ms, 0) + count
        if row_dim == dim:
            target = groups.setdefault(latency_group(dim_key, tier, day), _Group())
            target.latency[ms] = target.latency.get(ms, 0) + count
    estimated = estimated_requests(conn, cutoff, names, session_id)
    rows = []
    for key in sorted(groups):
        entry: dict[str, Any] = dict(zip(names, key, strict=True))
        entry.update(groups[key].to_json())
        entry["estimated_requests"] = estimated.get(key, 0)
        if entry["requests"] or entry["latency_count"]:
            rows.append(entry)
    total = totals.to_json()
    total["estimated_requests"] = sum(estimated.values())
    return {"since": cutoff, "by": by, "totals": total, f"by_{by}": rows}


# Before each record listed its calls (`extra.calls`), it kept its last call's `cut_off` and
# `counted_input_tokens`, and sizes were read from the requests answered by one model call
# without an error (or cut off at the cap).
_ONE_CALL = "cached = 0 AND escalated = 0 AND cancelled = 0"
_CUT_OFF = "COALESCE(json_extract(extra, '$.cut_off'), 0)"


def recent_sizes(conn: sqlite3.Connection, limit: int) -> list[SizedRequest]:
    """The model calls of the newest `limit` requests, oldest first, as `answer_sizes`
    learns from them: what a restarted server expects each model to write."""
    # Imported here: the metrics store loads before the server answers `initialize`, and
    # the settings' modules (pydantic) need not.
    from mmx_lsp.answer_sizes import Sized, SizedRequest

    rows = conn.execute(
        "SELECT model, kind, json_extract(features, '$.hole'), "
        "COALESCE(json_extract(features, '$.selection_tokens'), 0), "
        "COALESCE(json_extract(features, '$.estimated_output_tokens'), 0), "
        f"json_extract(extra, '$.calls'), {_ONE_CALL}, error IS NULL, {_CUT_OFF}, "
        "output_tokens, input_tokens, "
        "COALESCE(json_extract(extra, '$.counted_input_tokens'), 0), "
        "COALESCE(json_extract(extra, '$.usage_estimated'), 0) "
        "FROM requests ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    found = []
    for row in reversed(rows):
        model, kind, hole, selection, guess, listed, one_call, ok, cut_off = row[:9]
        output, reported, counted, estimated = row[9:]
        if listed is not None:
            raw = _loads(listed)
            calls = [c for c in map(Sized.from_json, raw if isinstance(raw, list) else []) if c]
        elif one_call and (ok or cut_off):
            # An older record: its one call, the prompt only when the provider reported it.
            prompt_known = ok and not estimated
            calls = [
                Sized(
                    model=str(model),
                    output_tokens=int(output or 0),
                    cut_off=bool(cut_off),
                    counted_input_tokens=int(counted or 0) if prompt_known else 0,
                    input_tokens=int(reported or 0) if prompt_known else 0,
                )
            ]
        else:
            continue
        if calls:
            found.append(SizedRequest(str(kind), hole, int(selection), int(guess), calls))
    return found


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def estimated_note(count: int) -> str:
    """What "≈" means beside an amount, for `count` requests with estimated costs."""
    return (
        f"≈: {count:,} requests have estimated tokens and costs (no model was called, or its "
        "endpoint reported no usage and has no tokenizer to count with)."
    )


def estimated_requests(
    conn: sqlite3.Connection,
    since: float | None,
    names: Sequence[str],
    session: str | None = None,
) -> dict[tuple[str, ...], int]:
    """Requests whose tokens and cost are estimates (the endpoint reported no usage and no
    tokenizer counted it, or no model was called), per group of `names`: their costs are
    shown with "≈". With `session`, only that server session's."""
    counts: dict[tuple[str, ...], int] = {}
    sql = f"SELECT model, tier, kind, language, ts FROM requests WHERE ts >= ? AND {ESTIMATED}"
    args: tuple[Any, ...] = (since or 0.0,)
    if session is not None:
        sql += " AND json_extract(extra, '$.session') = ?"
        args += (session,)
    for model, tier, kind, language, ts in conn.execute(sql, args):
        values = {
            "model": model,
            "tier": tier,
            "kind": kind,
            "language": language or "",
            "day": day_of(ts),
        }
        key = tuple(values[name] for name in names)
        counts[key] = counts.get(key, 0) + 1
    return counts


def latency_histogram(
    conn: sqlite3.Connection, since: float | None, by: str = "tier"
) -> dict[str, dict[float, int]]:
    """Latency histograms (bucket middle in ms -> count) per tier or model, for charts."""
    data = window(conn, since, ("model",))
    out: dict[str, dict[float, int]] = {}
    for _dim, key, tier, ms, _day, count in data.latency:
        name = tier if by == "tier" else key
        hist = out.setdefault(name, {})
        mid = bucket_mid(ms)
        hist[mid] = hist.get(mid, 0) + count
    return out
