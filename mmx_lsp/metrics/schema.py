"""The metrics database: its schema, migrations, where it lives and how it is opened."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmx_lsp.errors import MmxError

if TYPE_CHECKING:
    from mmx_lsp.config import Settings

log = logging.getLogger("mmx_lsp.metrics")

SCHEMA_VERSION = 4
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
    # Records and rollups build on the schema: imported when a migration needs them.
    from mmx_lsp.metrics.records import to_pico
    from mmx_lsp.metrics.rollups import ROLLUP_DDL, rebuild_rollups

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


# Version 4: an index of the requests whose tokens and cost were estimated (few), so that
# `stats` marks them without reading every row's JSON (1.8 s over a million rows). A query
# uses it only when its condition is this very expression.
ESTIMATED = "json_extract(extra, '$.usage_estimated')"
ESTIMATED_DDL = f"CREATE INDEX requests_estimated ON requests (ts) WHERE {ESTIMATED}"


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    conn.execute(ESTIMATED_DDL)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
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
