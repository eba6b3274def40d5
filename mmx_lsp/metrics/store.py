"""MetricsStore: the background writer thread that records requests and verdicts."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mmx_lsp.metrics.records import Record, _row, as_record
from mmx_lsp.metrics.regressions import Regression, RegressionPolicy, find_regressions
from mmx_lsp.metrics.rollups import insert_requests, prune
from mmx_lsp.metrics.schema import (
    VERDICTS,
    MetricsError,
    default_path,
    is_busy,
    is_corrupt,
    is_full,
    log,
    move_aside,
    open_database,
    path_from_settings,
)
from mmx_lsp.metrics.summaries import recent_sizes, summarize

if TYPE_CHECKING:
    from mmx_lsp.answer_sizes import SizedRequest
    from mmx_lsp.config import Settings

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
        self,
        since: float | str | None = None,
        by: str = "model",
        *,
        flush: bool = True,
        session: tuple[str, float] | None = None,
    ) -> dict[str, Any]:
        """DESIGN.md's `mmx.stats` summary (see `summarize`; `session`: one server session's
        requests). Raises MetricsError when nothing is being recorded, saying why."""
        if flush:
            self.flush()
        if self._disabled is not None:
            raise MetricsError(
                f"no metrics are being recorded in {self.path}: {self._disabled} "
                "(metrics.path names the file)"
            )
        with self.reader() as conn:
            return summarize(conn, since=since, by=by, now=self._clock(), session=session)

    def recent_sizes(self, limit: int = 2000) -> list[SizedRequest]:
        """`summaries.recent_sizes`: the calls of the newest requests, as a restarted server
        learns its models' answer and prompt sizes from them (nothing when no metrics are
        recorded)."""
        if self._disabled is not None:
            return []
        with self.reader() as conn:
            return recent_sizes(conn, limit)

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
