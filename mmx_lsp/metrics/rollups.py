"""Daily rollups and latency histograms, kept in step with every insert and verdict."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from mmx_lsp.metrics.schema import _INSERT, COLUMNS

# --------------------------------------------------------------------------- daily rollups

# Summaries read these small tables instead of sorting every request: one row per day and
# (model, version, tier, kind, language), and latency histograms per day and dimension. The
# writer updates them in the same transaction as the requests, so they always agree.
ROLLUP_DDL = (
    """CREATE TABLE daily (
        day TEXT NOT NULL,
        model TEXT NOT NULL,
        model_version TEXT NOT NULL,
        tier TEXT NOT NULL,
        kind TEXT NOT NULL,
        language TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        cache_hits INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_pusd INTEGER NOT NULL DEFAULT 0,
        saved_pusd INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        escalated INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0,
        latency_count INTEGER NOT NULL DEFAULT 0,
        latency_sum_ms REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (day, model, model_version, tier, kind, language)
    ) WITHOUT ROWID""",
    """CREATE TABLE daily_latency (
        dim TEXT NOT NULL,
        key TEXT NOT NULL,
        tier TEXT NOT NULL,
        ms INTEGER NOT NULL,
        day TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (dim, key, tier, ms, day)
    ) WITHOUT ROWID""",
)
SUMS: tuple[str, ...] = (
    "requests",
    "cache_hits",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_pusd",
    "saved_pusd",
    "accepted",
    "rejected",
    "escalated",
    "errors",
    "cancelled",
    "latency_count",
    "latency_sum_ms",
)
_S = {name: i for i, name in enumerate(SUMS)}
_DAILY_KEY = ("day", "model", "model_version", "tier", "kind", "language")
_UPSERT_DAILY = (
    f"INSERT INTO daily ({', '.join(_DAILY_KEY + SUMS)}) "
    f"VALUES ({', '.join('?' for _ in _DAILY_KEY + SUMS)}) "
    f"ON CONFLICT ({', '.join(_DAILY_KEY)}) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in SUMS)
)
_UPSERT_LATENCY = (
    "INSERT INTO daily_latency (dim, key, tier, ms, day, count) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dim, key, tier, ms, day) DO UPDATE SET count = count + excluded.count"
)
LATENCY_DIMS = ("model", "kind", "language")
# Latency histograms keep 32 buckets per doubling above 64 ms: percentiles read from them are
# within about 1.6% of the exact value, and a day has at most a few hundred buckets.
_EXACT_BELOW_MS = 64


def bucket_ms(value: float) -> int:
    """The lower bound of a latency's histogram bucket (whole milliseconds)."""
    ms = max(0, int(value))
    if ms < _EXACT_BELOW_MS:
        return ms
    shift = ms.bit_length() - 6
    return (ms >> shift) << shift


def bucket_mid(lower: int) -> float:
    """The value reported for a bucket: its middle."""
    if lower < _EXACT_BELOW_MS:
        return float(lower)
    width = 1 << (lower.bit_length() - 6)
    return lower + (width - 1) / 2


def day_of(ts: float) -> str:
    """The local calendar day of an epoch time, as SQLite's date(ts, 'unixepoch', 'localtime')."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _local_midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time()).astimezone().timestamp()


DailyKey = tuple[str, str, str, str, str, str]
LatencyKey = tuple[str, str, str, int, str]


class Rollup:
    """Daily sums and latency histograms accumulated in memory, then added to the tables."""

    __slots__ = ("daily", "latency")

    def __init__(self) -> None:
        self.daily: dict[DailyKey, list[float]] = {}
        self.latency: dict[LatencyKey, int] = {}

    def add(
        self,
        ts: float,
        model: str,
        model_version: str | None,
        tier: str,
        kind: str,
        language: str | None,
        cached: int,
        total_ms: float | None,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        cost_pusd: int,
        saved_pusd: int | None,
        verdict: str | None,
        escalated: int,
        error: str | None,
        cancelled: int,
    ) -> None:
        day = day_of(ts)
        key = (day, model, model_version or "", tier, kind, language or "")
        sums = self.daily.get(key)
        if sums is None:
            sums = self.daily[key] = [0] * len(SUMS)
        sums[0] += 1
        sums[1] += 1 if cached else 0
        sums[2] += input_tokens or 0
        sums[3] += cached_input_tokens or 0
        sums[4] += output_tokens or 0
        sums[5] += cost_pusd or 0
        sums[6] += saved_pusd or 0
        sums[7] += verdict == "accepted"
        sums[8] += verdict == "rejected"
        sums[9] += 1 if escalated else 0
        sums[10] += 1 if (error is not None and not cancelled) else 0
        sums[11] += 1 if cancelled else 0
        if not cached and total_ms is not None:
            sums[12] += 1
            sums[13] += total_ms
            ms = bucket_ms(total_ms)
            for dim, dim_key, dim_tier in (
                ("model", model, tier),
                ("kind", kind, ""),
                ("language", language or "", ""),
            ):
                lkey = (dim, dim_key, dim_tier, ms, day)
                self.latency[lkey] = self.latency.get(lkey, 0) + 1

    def verdict(self, key: DailyKey, old: str | None, new: str) -> None:
        sums = self.daily.get(key)
        if sums is None:
            sums = self.daily[key] = [0] * len(SUMS)
        if old == "accepted":
            sums[7] -= 1
        elif old == "rejected":
            sums[8] -= 1
        sums[7 if new == "accepted" else 8] += 1

    def save(self, conn: sqlite3.Connection) -> None:
        """Add to the tables (inside the caller's transaction)."""
        if self.daily:
            conn.executemany(_UPSERT_DAILY, [k + tuple(v) for k, v in self.daily.items()])
        if self.latency:
            conn.executemany(_UPSERT_LATENCY, [(*k, n) for k, n in self.latency.items()])


_ROLLUP_SOURCE = (
    "ts, model, model_version, tier, kind, language, cached, total_ms, input_tokens, "
    "cached_input_tokens, output_tokens, cost_pusd, saved_pusd, verdict, escalated, error, "
    "cancelled"
)
_ROLLUP_INDEXES = tuple(COLUMNS.index(c.strip()) for c in _ROLLUP_SOURCE.split(","))


def rebuild_rollups(conn: sqlite3.Connection) -> None:
    """Recompute the daily tables from the requests (inside the caller's transaction)."""
    conn.execute("DELETE FROM daily")
    conn.execute("DELETE FROM daily_latency")
    rollup = Rollup()
    for row in conn.execute(f"SELECT {_ROLLUP_SOURCE} FROM requests"):
        rollup.add(*row)
    rollup.save(conn)


def insert_requests(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[Any, ...]],
    verdicts: Sequence[tuple[str, float, str]] = (),
) -> int:
    """Insert request rows (in COLUMNS order) and apply verdicts (value, time, request_id),
    keeping the daily tables in step; inside the caller's transaction. Returns the number of
    verdicts that matched a request."""
    rollup = Rollup()
    if rows:
        conn.executemany(_INSERT, rows)
        for row in rows:
            rollup.add(*(row[i] for i in _ROLLUP_INDEXES))
    matched = 0
    for value, when, request_id in verdicts:
        found = conn.execute(
            "SELECT id, ts, model, COALESCE(model_version, ''), tier, kind, "
            "COALESCE(language, ''), verdict FROM requests WHERE request_id = ?",
            (request_id,),
        ).fetchall()
        for row_id, ts, model, version, tier, kind, language, old in found:
            matched += 1
            if old == value:
                continue
            conn.execute(
                "UPDATE requests SET verdict = ?, verdict_ts = ? WHERE id = ?",
                (value, when, row_id),
            )
            rollup.verdict((day_of(ts), model, version, tier, kind, language), old, value)
    rollup.save(conn)
    return matched


def prune(conn: sqlite3.Connection, retention_days: int, now: float) -> None:
    """Delete whole days older than the retention period: requests, eval results and the
    daily tables alike."""
    first_kept = dt.date.fromtimestamp(now) - dt.timedelta(days=retention_days)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM requests WHERE ts < ?", (_local_midnight(first_kept),))
        conn.execute("DELETE FROM evals WHERE ts < ?", (_local_midnight(first_kept),))
        conn.execute("DELETE FROM daily WHERE day < ?", (first_kept.isoformat(),))
        conn.execute("DELETE FROM daily_latency WHERE day < ?", (first_kept.isoformat(),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
