"""Request records in SQLite: a background writer, schema migrations, summaries, regressions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mmx_lsp.errors import MmxError
from mmx_lsp.since import parse_since

if TYPE_CHECKING:
    from mmx_lsp.config import Settings

log = logging.getLogger("mmx_lsp.metrics")

SCHEMA_VERSION = 3
# Money is kept exact twice: the Decimal as text, and integer pico-dollars for SQL sums.
# Prices with up to six decimals per million tokens are whole pico-dollars per token.
PICO = Decimal(10) ** 12
GroupBy = Literal["model", "tier", "kind", "language", "day"]
GROUPINGS: tuple[str, ...] = ("model", "tier", "kind", "language", "day")
VERDICTS = frozenset({"accepted", "rejected"})

# sqlite3 extended result codes are reduced to their primary code (low byte).
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_FULL = 13  # SQLITE_FULL
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class MetricsError(MmxError):
    """The metrics database cannot be used (newer schema, unreadable file)."""


# --------------------------------------------------------------------------- schema

# Version 1: the first released schema. Kept verbatim: tests build a v1 file from it and the
# migration below must upgrade it without losing a row.
SCHEMA_V1 = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    language TEXT,
    kind TEXT NOT NULL,
    features TEXT,
    score REAL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    rule TEXT,
    override TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    escalated INTEGER NOT NULL DEFAULT 0,
    attempts TEXT,
    latency_ms REAL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd TEXT NOT NULL DEFAULT '0',
    saved_usd TEXT,
    verdict TEXT,
    error TEXT,
    prompt TEXT
);
CREATE INDEX requests_ts ON requests (ts);
CREATE INDEX requests_request_id ON requests (request_id);
"""

# Version 2: model and prompt-template versions (for regression watch and cache audits),
# latency split into queue/model/total, cached input tokens, integer pico-dollar columns so
# sums over millions of rows stay exact and fast, the verdict's time, cancellations, and a
# JSON column for facts without a column of their own.
_V2_COLUMNS = (
    "ALTER TABLE requests RENAME COLUMN latency_ms TO total_ms",
    "ALTER TABLE requests ADD COLUMN model_version TEXT",
    "ALTER TABLE requests ADD COLUMN template_version TEXT",
    "ALTER TABLE requests ADD COLUMN queue_ms REAL",
    "ALTER TABLE requests ADD COLUMN model_ms REAL",
    "ALTER TABLE requests ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE requests ADD COLUMN cost_pusd INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE requests ADD COLUMN saved_pusd INTEGER",
    "ALTER TABLE requests ADD COLUMN verdict_ts REAL",
    "ALTER TABLE requests ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE requests ADD COLUMN extra TEXT",
    "CREATE INDEX requests_model_ts ON requests (model, ts)",
)

COLUMNS: tuple[str, ...] = (
    "ts",
    "request_id",
    "language",
    "kind",
    "features",
    "score",
    "tier",
    "model",
    "model_version",
    "rule",
    "override",
    "template_version",
    "cached",
    "escalated",
    "attempts",
    "queue_ms",
    "model_ms",
    "total_ms",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_pusd",
    "saved_usd",
    "saved_pusd",
    "verdict",
    "error",
    "cancelled",
    "prompt",
    "extra",
)
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    for statement in _V2_COLUMNS:
        conn.execute(statement)
    rows = conn.execute("SELECT id, cost_usd, saved_usd FROM requests").fetchall()
    conn.executemany(
        "UPDATE requests SET cost_pusd = ?, saved_pusd = ? WHERE id = ?",
        [
            (to_pico(cost) or 0, None if saved is None else to_pico(saved), row_id)
            for row_id, cost, saved in rows
        ],
    )
    for statement in ROLLUP_DDL:
        conn.execute(statement)
    rebuild_rollups(conn)


# Version 3: the results of `mmx-lsp eval` runs, one row per task and model, so regression
# watch can compare a model version's pass rate with the runs before it; and the regressions
# already shown.
EVALS_DDL = (
    """CREATE TABLE evals (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        run_id TEXT NOT NULL,
        suite TEXT NOT NULL,
        task TEXT NOT NULL,
        kind TEXT NOT NULL,
        language TEXT NOT NULL,
        model TEXT NOT NULL,
        model_version TEXT NOT NULL,
        tier TEXT NOT NULL,
        passed INTEGER NOT NULL,
        latency_ms REAL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_pusd INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    "CREATE INDEX evals_model_ts ON evals (model, ts)",
    # Regressions the editor was warned about, so each is shown once, not once per start.
    "CREATE TABLE notices (key TEXT PRIMARY KEY, ts REAL NOT NULL) WITHOUT ROWID",
)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    for statement in EVALS_DDL:
        conn.execute(statement)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION in one immediate transaction; returns the
    version found. Two processes opening it at once: the second sees the work done."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current == SCHEMA_VERSION:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise MetricsError(
                f"the metrics database has schema version {found}, newer than this "
                f"mmx-lsp reads ({SCHEMA_VERSION}); metrics are not recorded"
            )
        if found == 0:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'"
            ).fetchone()
            if exists is None:
                for statement in SCHEMA_V1.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            found_schema = 1
        else:
            found_schema = found
        version = found_schema
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def default_path() -> Path:
    """`metrics.sqlite3` in the user data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mmx", appauthor=False)) / "metrics.sqlite3"


def demo_path() -> Path:
    """`demo.sqlite3` in the user data directory: what `mmx-lsp replay` records, apart from
    the requests of real editing (`stats --demo` and `report --demo` read it)."""
    return default_path().with_name("demo.sqlite3")


def path_from_settings(settings: Settings) -> Path:
    configured = settings.metrics.path
    return Path(configured).expanduser() if configured else default_path()


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_corrupt(exc: sqlite3.Error) -> bool:
    if _code(exc) in _CORRUPT:
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY or "locked" in str(exc).lower() or "busy" in str(exc).lower()


def is_full(exc: sqlite3.Error) -> bool:
    return _code(exc) == _FULL or "full" in str(exc).lower()


def connect(path: Path, *, busy_timeout_ms: int = 2000) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit (transactions are explicit)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.debug("metrics database %s: journal mode %s", path, mode)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def move_aside(path: Path, clock: Callable[[], float] = time.time) -> Path:
    """Rename a damaged database (and its WAL files) out of the way; returns the new name."""
    stamp = dt.datetime.fromtimestamp(clock()).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


def open_database(
    path: Path,
    *,
    busy_timeout_ms: int = 2000,
    clock: Callable[[], float] = time.time,
) -> tuple[sqlite3.Connection, list[str]]:
    """Open (creating or migrating) the metrics database. A corrupt file is moved aside and
    a new one started; the warning says where the old one went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path, busy_timeout_ms=busy_timeout_ms)
        migrate(conn)
        conn.execute("SELECT count(*) FROM (SELECT 1 FROM requests LIMIT 1)").fetchone()
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        if not is_corrupt(exc):
            raise
        moved = move_aside(path, clock)
        warnings.append(
            f"mmx metrics: {path} was damaged ({exc}); it was moved to {moved.name} "
            "and a new metrics database was started"
        )
        conn = connect(path, busy_timeout_ms=busy_timeout_ms)
        migrate(conn)
    return conn, warnings


# --------------------------------------------------------------------------- records


def to_pico(value: Any) -> int | None:
    """Exact integer pico-dollars of an amount (Decimal, str, int or float)."""
    if value is None:
        return None
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        return int((amount * PICO).to_integral_value(ROUND_HALF_EVEN))
    except (InvalidOperation, ValueError):
        return None


def from_pico(value: int | None) -> Decimal:
    return Decimal(value or 0) / PICO


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, default=_jsonable, separators=(",", ":"), sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


@dataclass
class Record:
    """One routed request. Field names follow the pipeline's record and `mmx/status`."""

    request_id: str
    kind: str
    tier: str
    model: str
    time: float = field(default_factory=time.time)
    language: str | None = None
    features: Mapping[str, Any] | None = None
    score: float | None = None
    model_version: str | None = None
    rule: Any = None
    override: str | None = None
    template_version: str | None = None
    cached: bool = False
    escalated: bool = False
    attempts: Any = None
    queue_ms: float | None = None
    model_ms: float | None = None
    latency_ms: float | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal | None = None
    verdict: str | None = None
    error: str | None = None
    cancelled: bool = False
    prompt: str | None = None
    operation: str | None = None
    system: str | None = None


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))
_ALIASES = {"ts": "time", "total_ms": "latency_ms", "prompt_template_version": "template_version"}


# Facts without a column are kept only when they cannot carry code or prompt text: numbers,
# flags, short strings and tables of numbers, under names that do not suggest text.
_TEXT_KEYS = frozenset(
    {"preview", "prompt", "messages", "text", "answer", "completion", "suffix", "context"}
)
_SHORT = 200


def _harmless(key: str, value: Any) -> bool:
    if key in _TEXT_KEYS:
        return False
    if isinstance(value, bool | int | float | Decimal):
        return True
    if isinstance(value, str):
        return len(value) <= _SHORT
    if isinstance(value, Mapping):
        return all(isinstance(v, int | float | Decimal) for v in value.values())
    return False


def as_record(
    item: Mapping[str, Any] | Any, when: float | None = None
) -> tuple[Record, dict[str, Any]]:
    """A Record from a dict or a dataclass (such as status.Status), and the facts that
    have no column (kept as JSON in `extra`); `when` is the time of a record without one."""
    if isinstance(item, Record):
        return item, {}
    if isinstance(item, Mapping):
        data = dict(item)
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        data = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    else:
        raise TypeError(f"a metrics record is a dict or a dataclass, not {type(item).__name__}")
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = _ALIASES.get(key, key)
        if name in _RECORD_FIELDS:
            known[name] = value
        elif value is not None and value is not False and _harmless(key, value):
            extra[key] = value
    for required in ("request_id", "kind", "tier", "model"):
        known.setdefault(required, "")
    if known.get("time") is None:
        known.pop("time", None)
        if when is not None:
            known["time"] = when
    return Record(**known), extra


def _row(record: Record, extra: Mapping[str, Any], store_prompts: bool) -> tuple[Any, ...]:
    cost = record.cost_usd if record.cost_usd is not None else Decimal(0)
    cost_pusd = to_pico(cost) or 0
    saved_pusd = to_pico(record.saved_usd)
    extra = dict(extra)
    if record.operation:
        extra["operation"] = record.operation
    if record.system:
        extra["system"] = record.system
    verdict = record.verdict if record.verdict in VERDICTS else None
    return (
        float(record.time),
        str(record.request_id),
        record.language,
        str(record.kind),
        _json(dict(record.features)) if record.features is not None else None,
        None if record.score is None else float(record.score),
        str(record.tier),
        str(record.model),
        record.model_version,
        _json(record.rule),
        None if record.override is None else str(record.override),
        record.template_version,
        int(bool(record.cached)),
        int(bool(record.escalated)),
        _json(record.attempts),
        record.queue_ms,
        record.model_ms,
        record.latency_ms,
        int(record.input_tokens or 0),
        int(record.cached_input_tokens or 0),
        int(record.output_tokens or 0),
        str(cost),
        cost_pusd,
        None if record.saved_usd is None else str(record.saved_usd),
        saved_pusd,
        verdict,
        record.error,
        int(bool(record.cancelled)),
        record.prompt if store_prompts else None,
        _json(extra) if extra else None,
    )


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


# --------------------------------------------------------------------------- the store


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop(_Flush):
    __slots__ = ()


class TelemetrySink(Protocol):
    def emit(self, record: Record) -> None: ...


@dataclass
class StoreStats:
    """What the writer did; for tests, benchmarks and the log."""

    written: int = 0
    verdicts: int = 0
    dropped: int = 0
    retries: int = 0
    batches: int = 0


# How long the writer keeps trying to open a database another process holds locked.
OPEN_RETRY_S = 30.0


class MetricsStore:
    """Writes request records from a background thread; reads summaries on demand.

    `record()` and `verdict()` only enqueue, so they cost microseconds on the request's path.
    Several processes (two editors) can share one file: WAL mode, a busy timeout, and a
    retry loop that keeps the batch until the lock is released.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        retention_days: int | None = 90,
        store_prompts: bool = False,
        max_bytes: int | None = None,
        busy_timeout_ms: int = 2000,
        batch_size: int = 500,
        linger_s: float = 0.05,
        on_warning: Callable[[str], None] | None = None,
        telemetry: TelemetrySink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.retention_days = retention_days
        self.store_prompts = store_prompts
        self.max_bytes = max_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.stats = StoreStats()
        self._on_warning = on_warning
        self._telemetry = telemetry
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._warnings: list[str] = []
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._disabled: str | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmx-metrics", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> MetricsStore:
        """A store for `metrics.path`, `metrics.retention_days`, `privacy.store_prompts` and,
        where the settings have it, `metrics.max_size_mb`."""
        max_size_mb = getattr(settings.metrics, "max_size_mb", None)
        if max_size_mb is not None and "max_bytes" not in kwargs:
            kwargs["max_bytes"] = int(max_size_mb) * 1024 * 1024
        return cls(
            path_from_settings(settings),
            retention_days=settings.metrics.retention_days,
            store_prompts=settings.privacy.store_prompts,
            **kwargs,
        )

    # ------------------------------------------------------------------ the caller's side

    def record(self, item: Mapping[str, Any] | Any) -> None:
        """Queue one request record (a dict, a Record or another dataclass). Never raises
        for I/O: faults become warnings (see `take_warnings`)."""
        if self._closed:
            return
        # A shallow copy: the caller may go on changing its dict (the verdict, for one). The
        # time is taken now, for records that do not carry their own.
        copy = dict(item) if isinstance(item, Mapping) else item
        self._queue.put(("record", (copy, self._clock())))

    def verdict(self, request_id: str, value: str) -> None:
        """Queue the editor's verdict ("accepted" or "rejected") on a recorded request."""
        if value not in VERDICTS:
            raise ValueError(f"verdict must be 'accepted' or 'rejected', not {value!r}")
        if self._closed:
            return
        self._queue.put(("verdict", (request_id, value, self._clock())))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued so far is written (or given up); False on timeout."""
        if self._closed or not self._thread.is_alive():
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Write what is queued and stop the writer; False when it did not finish in time."""
        if self._closed:
            return True
        marker = _Stop()
        self._queue.put(marker)
        self._closed = True
        finished = marker.done.wait(timeout)
        self._thread.join(timeout=0 if not finished else timeout)
        return finished

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take_warnings(self) -> list[str]:
        """Warnings since the last call (a damaged, locked or full database), for the
        server to show once."""
        with self._lock:
            taken, self._warnings = self._warnings, []
        return taken

    def wait_ready(self, timeout: float | None = 10.0) -> bool:
        """True once the database is open (or given up on, with a warning)."""
        return self._ready.wait(timeout)

    # ------------------------------------------------------------------ reading

    def summary(
        self, since: float | str | None = None, by: str = "model", *, flush: bool = True
    ) -> dict[str, Any]:
        """DESIGN.md's `mmx.stats` summary (see `summarize`)."""
        if flush:
            self.flush()
        with self.reader() as conn:
            return summarize(conn, since=since, by=by, now=self._clock())

    def regressions(self, policy: RegressionPolicy | None = None) -> list[Regression]:
        self.flush()
        with self.reader() as conn:
            return find_regressions(conn, policy or RegressionPolicy(), now=self._clock())

    def new_regressions(self, policy: RegressionPolicy | None = None) -> list[Regression]:
        """Regressions not reported before, by this store or any other process using the
        database (they are noted in it): the server warns once for each."""
        self.flush()
        fresh = []
        with self.reader() as conn:
            for found in find_regressions(conn, policy or RegressionPolicy(), now=self._clock()):
                with self._lock:
                    if found.key in self._warned:
                        continue
                    self._warned.add(found.key)
                noted = conn.execute(
                    "INSERT OR IGNORE INTO notices (key, ts) VALUES (?, ?)",
                    (found.key, self._clock()),
                )
                if noted.rowcount == 1:
                    fresh.append(found)
        return fresh

    def reader(self) -> _Reader:
        return _Reader(self.path, self.busy_timeout_ms)

    # ------------------------------------------------------------------ the writer thread

    def _warn(self, message: str, *, once: str | None = None) -> None:
        with self._lock:
            if once is not None:
                if once in self._warned:
                    return
                self._warned.add(once)
            self._warnings.append(message)
        log.warning("%s", message)
        if self._on_warning is not None:
            try:
                self._on_warning(message)
            except Exception:  # a callback must not stop the writer
                log.exception("metrics warning callback failed")

    def _open(self) -> sqlite3.Connection | None:
        delay = 0.05
        # Records queued meanwhile wait: even a store being closed keeps trying for a while.
        give_up_at = time.monotonic() + OPEN_RETRY_S
        while True:
            try:
                conn, warnings = open_database(
                    self.path, busy_timeout_ms=self.busy_timeout_ms, clock=self._clock
                )
                break
            except MetricsError as exc:
                self._disabled = str(exc)
                self._warn(f"mmx metrics: {exc}")
                return None
            except sqlite3.OperationalError as exc:
                if is_busy(exc) and time.monotonic() < give_up_at:
                    # Another process is migrating or writing: wait for it.
                    self.stats.retries += 1
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                self._give_up(exc)
                return None
            except (sqlite3.Error, OSError) as exc:
                self._give_up(exc)
                return None
        for message in warnings:
            self._warn(message)
        if self.max_bytes is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = max(1, self.max_bytes // page_size)
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    def _give_up(self, exc: Exception) -> None:
        self._disabled = str(exc)
        self._warn(f"mmx metrics: cannot open {self.path}: {exc}; metrics are not recorded")

    def _prune(self, conn: sqlite3.Connection) -> None:
        if not self.retention_days:
            return
        try:
            prune(conn, self.retention_days, self._clock())
        except sqlite3.Error as exc:
            log.info("metrics retention: %s", exc)

    def _run(self) -> None:
        try:
            conn = self._open()
        finally:
            self._ready.set()
        if conn is not None:
            self._prune(conn)
        pruned_at = self._clock()
        try:
            while True:
                batch, markers, stop = self._gather()
                if batch:
                    if conn is None:
                        self.stats.dropped += len(batch)
                    else:
                        conn = self._write(conn, batch)
                for marker in markers:
                    marker.done.set()
                if stop:
                    break
                if conn is not None and self._clock() - pruned_at > 3600:
                    self._prune(conn)
                    pruned_at = self._clock()
        except Exception:  # the whole background task: log it, never kill the server
            log.exception("metrics writer stopped")
        finally:
            if conn is not None:
                conn.close()
            self._closed = True
            # Whoever waits on a marker still queued must not hang.
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Flush):
                    item.done.set()

    def _gather(self) -> tuple[list[tuple[str, Any]], list[_Flush], bool]:
        batch: list[tuple[str, Any]] = []
        markers: list[_Flush] = []
        item = self._queue.get()
        deadline = time.monotonic() + self.linger_s
        while True:
            if isinstance(item, _Flush):
                markers.append(item)
                return batch, markers, isinstance(item, _Stop)
            batch.append(item)
            if len(batch) >= self.batch_size:
                return batch, markers, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return batch, markers, False
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    return batch, markers, False

    def _write(
        self, conn: sqlite3.Connection, batch: Sequence[tuple[str, Any]]
    ) -> sqlite3.Connection | None:
        rows: list[tuple[Any, ...]] = []
        verdicts: list[tuple[str, float, str]] = []
        records: list[Record] = []
        for op, payload in batch:
            if op == "record":
                try:
                    item, when = payload
                    record, extra = as_record(item, when)
                    rows.append(_row(record, extra, self.store_prompts))
                    records.append(record)
                except (TypeError, ValueError) as exc:
                    self.stats.dropped += 1
                    log.warning("metrics: record not written: %s", exc)
            else:
                request_id, value, when = payload
                verdicts.append((value, when, request_id))
        delay = 0.02
        corrupt_retried = False
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    insert_requests(conn, rows, verdicts)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_busy(exc) and not is_full(exc):
                    # Another process holds the write lock longer than the busy timeout:
                    # keep the batch and try again; nothing is dropped for a lock.
                    self.stats.retries += 1
                    if self.stats.retries == 1 or self.stats.retries % 50 == 0:
                        self._warn(
                            f"mmx metrics: {self.path} is locked by another process; retrying",
                            once="locked",
                        )
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if is_full(exc):
                    self.stats.dropped += len(rows)
                    self._warn(
                        f"mmx metrics: the disk or the metrics database is full ({exc}); "
                        f"{len(rows)} request record(s) not written",
                        once="full",
                    )
                    return conn
                if is_corrupt(exc) and not corrupt_retried:
                    corrupt_retried = True
                    conn.close()
                    try:
                        moved = move_aside(self.path, self._clock)
                    except OSError as move_error:
                        self._warn(f"mmx metrics: {self.path} is damaged: {move_error}")
                        self.stats.dropped += len(rows)
                        return None
                    self._warn(
                        f"mmx metrics: {self.path} was damaged ({exc}); it was moved to "
                        f"{moved.name} and a new metrics database was started"
                    )
                    reopened = self._open()
                    if reopened is None:
                        self.stats.dropped += len(rows)
                        return None
                    conn = reopened
                    continue
                self.stats.dropped += len(rows)
                self._warn(f"mmx metrics: records not written: {exc}", once=f"error:{exc}")
                return conn
            except OSError as exc:
                self.stats.dropped += len(rows)
                self._warn(f"mmx metrics: records not written: {exc}", once="oserror")
                return conn
            break
        self.stats.written += len(rows)
        self.stats.verdicts += len(verdicts)
        self.stats.batches += 1
        if self._telemetry is not None:
            for record in records:
                try:
                    self._telemetry.emit(record)
                except Exception:  # telemetry is optional and must never stop the writer
                    log.exception("telemetry export failed")
        return conn


class _Reader:
    """A short-lived read connection (the CLI, `summary()`): migrates an old file first."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        self.conn, warnings = open_database(self.path, busy_timeout_ms=self.busy_timeout_ms)
        for message in warnings:
            log.warning("%s", message)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()


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
    conn: sqlite3.Connection, since: float | None, dims: Iterable[str], *, per_day: bool = False
) -> Window:
    """Read a window; latency rows are summed over days in SQL unless `per_day` (the
    histogram's key order makes that a sort-free scan)."""
    dims = tuple(dict.fromkeys(dims))
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
) -> dict[str, Any]:
    """Totals and one row per group (`by_model`, `by_tier`, … as `by` says): DESIGN.md's
    `mmx.stats` shape with rates, exact money and p50/p95 latency (cached answers excluded)."""
    names, group_of = _group_key(by)
    dim, latency_group = _latency_key(by)
    cutoff = parse_since(since, now)
    data = window(conn, cutoff, {"model", dim}, per_day=by == "day")
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
    rows = []
    for key in sorted(groups):
        entry: dict[str, Any] = dict(zip(names, key, strict=True))
        entry.update(groups[key].to_json())
        if entry["requests"] or entry["latency_count"]:
            rows.append(entry)
    return {"since": cutoff, "by": by, "totals": totals.to_json(), f"by_{by}": rows}


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


# --------------------------------------------------------------------------- regression watch


@dataclass(frozen=True)
class RegressionPolicy:
    """When a model version's acceptance counts as having dropped."""

    recent_days: float = 7.0
    baseline_days: float = 28.0
    margin: float = 0.10  # absolute drop in acceptance rate
    min_samples: int = 30  # verdicts in each window
    alpha: float = 0.05  # one-sided two-proportion z-test

    @classmethod
    def from_settings(cls, settings: Settings) -> RegressionPolicy:
        """The margin and sample size from `metrics.regression_*`; windows and alpha fixed."""
        section = settings.metrics
        return cls(margin=section.regression_margin, min_samples=section.regression_min_samples)


@dataclass(frozen=True)
class Regression:
    """A model version whose acceptance (or eval pass rate) fell against its baseline."""

    model: str
    model_version: str
    recent_accepted: int
    recent_total: int
    baseline_accepted: int
    baseline_total: int
    z: float
    p_value: float
    signal: Literal["acceptance", "eval"] = "acceptance"
    suite: str = ""

    @property
    def recent_rate(self) -> float:
        return self.recent_accepted / self.recent_total

    @property
    def baseline_rate(self) -> float:
        return self.baseline_accepted / self.baseline_total

    @property
    def key(self) -> str:
        """What the editor is warned about once."""
        return f"{self.signal}:{self.suite}:{self.model}@{self.model_version}"

    def message(self) -> str:
        version = f" ({self.model_version})" if self.model_version else ""
        what = "acceptance" if self.signal == "acceptance" else f"eval pass rate on {self.suite}"
        return (
            f"mmx: {what} of {self.model}{version} fell to {self.recent_rate:.0%} "
            f"({self.recent_accepted}/{self.recent_total}) from {self.baseline_rate:.0%} "
            f"({self.baseline_accepted}/{self.baseline_total}) before; p = {self.p_value:.3f}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "suite": self.suite,
            "model": self.model,
            "model_version": self.model_version,
            "recent_rate": self.recent_rate,
            "recent_total": self.recent_total,
            "baseline_rate": self.baseline_rate,
            "baseline_total": self.baseline_total,
            "z": self.z,
            "p_value": self.p_value,
            "message": self.message(),
        }


def two_proportion_z(
    successes_a: int, total_a: int, successes_b: int, total_b: int
) -> tuple[float, float]:
    """z and the one-sided p-value that proportion a is greater than proportion b."""
    if total_a == 0 or total_b == 0:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (total_a + total_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    if spread == 0:
        return 0.0, 1.0
    z = (successes_a / total_a - successes_b / total_b) / spread
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def _windows(policy: RegressionPolicy, now: float | None) -> tuple[dt.date, dt.date]:
    today = dt.date.fromtimestamp(time.time() if now is None else now)
    recent_start = today - dt.timedelta(days=max(1, int(policy.recent_days)) - 1)
    return recent_start - dt.timedelta(days=int(policy.baseline_days)), recent_start


def _dropped(
    policy: RegressionPolicy,
    baseline: tuple[int, int],
    recent: tuple[int, int],
) -> tuple[float, float] | None:
    """z and p when the recent rate fell significantly by more than the margin, else None."""
    (base_ok, base_total), (ok, total) = baseline, recent
    if min(total, base_total) < policy.min_samples:
        return None
    drop = base_ok / base_total - ok / total
    z, p_value = two_proportion_z(base_ok, base_total, ok, total)
    return (z, p_value) if drop > policy.margin and p_value < policy.alpha else None


def find_regressions(
    conn: sqlite3.Connection, policy: RegressionPolicy, *, now: float | None = None
) -> list[Regression]:
    """Model versions whose acceptance, or pass rate on an eval suite, in the recent days is
    below the same model's baseline days by more than the margin, with enough samples on
    both sides and a significant one-sided two-proportion z-test. Windows are whole local
    days, today included."""
    baseline_start, recent_start = _windows(policy, now)
    base_day, recent_day = baseline_start.isoformat(), recent_start.isoformat()
    baseline = {
        model: (int(accepted), int(total))
        for model, accepted, total in conn.execute(
            "SELECT model, SUM(accepted), SUM(accepted + rejected) FROM daily "
            "WHERE day >= ? AND day < ? GROUP BY model",
            (base_day, recent_day),
        )
    }
    found = []
    for model, version, accepted, total in conn.execute(
        "SELECT model, model_version, SUM(accepted), SUM(accepted + rejected) FROM daily "
        "WHERE day >= ? GROUP BY 1, 2 ORDER BY 1, 2",
        (recent_day,),
    ):
        if model not in baseline:
            continue
        dropped = _dropped(policy, baseline[model], (int(accepted), int(total)))
        if dropped is not None:
            base_ok, base_total = baseline[model]
            found.append(
                Regression(model, version, int(accepted), int(total), base_ok, base_total, *dropped)
            )
    return found + find_eval_regressions(conn, policy, baseline_start, recent_start)


def find_eval_regressions(
    conn: sqlite3.Connection,
    policy: RegressionPolicy,
    baseline_start: dt.date,
    recent_start: dt.date,
) -> list[Regression]:
    """The same test over `mmx-lsp eval` results, per suite and model version."""
    low, high = _local_midnight(baseline_start), _local_midnight(recent_start)
    baseline = {
        (suite, model): (int(passed), int(total))
        for suite, model, passed, total in conn.execute(
            "SELECT suite, model, SUM(passed), COUNT(*) FROM evals "
            "WHERE ts >= ? AND ts < ? GROUP BY 1, 2",
            (low, high),
        )
    }
    found = []
    for suite, model, version, passed, total in conn.execute(
        "SELECT suite, model, model_version, SUM(passed), COUNT(*) FROM evals "
        "WHERE ts >= ? GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (high,),
    ):
        base = baseline.get((suite, model))
        if base is None:
            continue
        dropped = _dropped(policy, base, (int(passed), int(total)))
        if dropped is not None:
            found.append(
                Regression(model, version, int(passed), int(total), *base, *dropped, "eval", suite)
            )
    return found


EVAL_COLUMNS = (
    "ts",
    "run_id",
    "suite",
    "task",
    "kind",
    "language",
    "model",
    "model_version",
    "tier",
    "passed",
    "latency_ms",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_pusd",
    "error",
)


def record_eval_results(path: Path, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Append one eval run's per-task results to the metrics database at `path` (table
    `evals`), in one transaction. Returns warnings (a damaged database moved aside)."""
    rows = [
        (
            float(r["ts"]),
            str(r["run_id"]),
            str(r["suite"]),
            str(r["task"]),
            str(r["kind"]),
            str(r.get("language") or ""),
            str(r["model"]),
            str(r.get("model_version") or ""),
            str(r.get("tier") or ""),
            int(bool(r["passed"])),
            None if r.get("latency_ms") is None else float(r["latency_ms"]),
            int(r.get("input_tokens") or 0),
            int(r.get("cached_input_tokens") or 0),
            int(r.get("output_tokens") or 0),
            to_pico(r.get("cost_usd")) or 0,
            None if r.get("error") is None else str(r["error"]),
        )
        for r in results
    ]
    conn, warnings = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO evals ({', '.join(EVAL_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVAL_COLUMNS)})",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    return warnings


def recent_versions(conn: sqlite3.Connection, since: float) -> dict[str, list[str]]:
    """Model versions seen per model since a time (for `models`)."""
    seen: dict[str, list[str]] = {}
    for model, version in conn.execute(
        "SELECT DISTINCT model, model_version FROM daily "
        "WHERE day >= ? AND model_version != '' ORDER BY 1, 2",
        (day_of(since),),
    ):
        seen.setdefault(model, []).append(version)
    return seen


# --------------------------------------------------------------------------- exporters


def _label(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def prometheus_text(summary: Mapping[str, Any], regressions: Sequence[Regression] = ()) -> str:
    """Prometheus text exposition (0.0.4) of a by-model summary. The values cover the
    summary's window, so they are gauges: retention makes them fall as well as rise."""
    rows = summary.get("by_model", [])
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    def labels(row: Mapping[str, Any], **more: str) -> str:
        pairs = {"model": row["model"], "tier": row["tier"], **more}
        return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"

    gauges = (
        ("mmx_requests", "requests", "Requests routed in the window."),
        ("mmx_cache_hits", "cache_hits", "Requests answered from the cache."),
        ("mmx_input_tokens", "input_tokens", "Input tokens reported by the provider."),
        ("mmx_output_tokens", "output_tokens", "Output tokens reported by the provider."),
        ("mmx_cost_usd", "cost_usd", "Spend in US dollars."),
        ("mmx_saved_usd", "saved_usd", "Saved against sending every request to premium."),
        ("mmx_escalations", "escalated", "Requests escalated to the next tier."),
        ("mmx_errors", "errors", "Requests that failed (cancellations excluded)."),
    )
    for name, key, help_text in gauges:
        family(name, "gauge", help_text)
        lines.extend(f"{name}{labels(row)} {_number(row[key])}" for row in rows)
    family("mmx_verdicts", "gauge", "The editor's verdicts on answers.")
    for row in rows:
        for verdict in ("accepted", "rejected"):
            lines.append(f"mmx_verdicts{labels(row, verdict=verdict)} {row[verdict]}")
    family("mmx_latency_ms", "summary", "Request latency in milliseconds (cache hits excluded).")
    for row in rows:
        for quantile, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
            lines.append(f"mmx_latency_ms{labels(row, quantile=quantile)} {_number(row[key])}")
        lines.append(f"mmx_latency_ms_sum{labels(row)} {_number(row['latency_sum_ms'])}")
        lines.append(f"mmx_latency_ms_count{labels(row)} {row['latency_count']}")
    family("mmx_acceptance_regression", "gauge", "1 when a model version's acceptance fell.")
    for found in regressions:
        pairs = f'model="{_label(found.model)}",model_version="{_label(found.model_version)}"'
        lines.append(f"mmx_acceptance_regression{{{pairs}}} 1")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers (node_exporter's textfile collector) never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
