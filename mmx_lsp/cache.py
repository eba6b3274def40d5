"""Answer cache behind one small interface: diskcache (default), Redis (shared), or none."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import diskcache
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmx_lsp.config import CacheConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

# Part of every key: bump it when the key layout changes.
KEY_SCHEME = "mmx-cache/1"
# Redis: one lookup must never hold a request up for long.
REDIS_TIMEOUT_S = 0.5
# Redis: after a failure, lookups are misses without a network call for this long.
REDIS_PAUSE_S = 30.0


class Cache(Protocol):
    """Bytes by key. Every backend turns its own failures into misses; none raises."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def close(self) -> None: ...


def normalize_context(context: str) -> str:
    """Line endings unified, trailing whitespace of each line and of the end removed.

    (Split and strip: a regular expression with a look-ahead took 20 times as long on a
    prompt-sized excerpt, and this runs on every request.)"""
    unified = context.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join([line.rstrip() for line in unified.split("\n")]).rstrip("\n")


def cache_key(*, model: str, model_version: str, template_version: str, context: str) -> str:
    """A sha256 hex key; a change of the model, its version, the template or the context
    (beyond trailing whitespace) gives another key."""
    framed = json.dumps(
        [KEY_SCHEME, model, model_version, template_version, normalize_context(context)],
        ensure_ascii=False,
    )
    return hashlib.sha256(framed.encode("utf-8")).hexdigest()


class NullCache:
    """`backend = "off"`: every lookup misses."""

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes) -> None:
        return None

    def close(self) -> None:
        return None


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmx", appauthor=False))


# Bounds on what the disk cache's SQLite keeps in memory (pages of 4 KB; bytes mapped). The
# file is read through the page cache, not mapped: every mapped page an entry was read from
# or written to stays resident, so a map grows the server by each new answer until it is
# full (0.9 KB per request in benchmarks/soak.py with 4 MB mapped; flat without).
SQLITE_CACHE_PAGES = 128
SQLITE_MMAP_BYTES = 0


class DiskCache:
    """diskcache on the local disk, opened on first use.

    A directory that cannot be used (a corrupt database, no permission, a file in the way)
    is reported once and then every lookup misses.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        size_limit_bytes: int = 256 * 1024 * 1024,
        ttl_s: float | None = 7 * 24 * 3600,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self._size_limit = size_limit_bytes
        self._ttl_s = ttl_s
        self._cache: diskcache.Cache | None = None
        self._broken = False

    def _open(self) -> diskcache.Cache | None:
        if self._cache is None and not self._broken:
            try:
                # A short SQLite timeout: a busy cache is a miss, never a stalled request.
                # SQLite's page cache and memory map count in the server's resident memory
                # as the file grows (diskcache's defaults allow 32 MB and 64 MB): half a
                # megabyte of pages holds the index a lookup walks.
                self._cache = diskcache.Cache(
                    str(self.directory),
                    timeout=0.25,
                    size_limit=self._size_limit,
                    sqlite_cache_size=SQLITE_CACHE_PAGES,
                    sqlite_mmap_size=SQLITE_MMAP_BYTES,
                )
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
        return self._cache

    def _fail(self, exc: Exception) -> None:
        if not self._broken:
            log.warning(
                "mmx cache: the disk cache in %s cannot be used (%s: %s); answers are not "
                "cached until it is repaired (deleting that directory resets it)",
                self.directory,
                type(exc).__name__,
                exc,
            )
        self._broken = True
        if self._cache is not None:
            cache, self._cache = self._cache, None
            try:
                cache.close()
            except (sqlite3.Error, OSError):
                pass

    def get(self, key: str) -> bytes | None:
        cache = self._open()
        if cache is None:
            return None
        try:
            value = cache.get(key, default=None, retry=False)
        except diskcache.Timeout:
            log.debug("mmx cache: disk cache busy; lookup counted as a miss")
            return None
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            return None
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes) -> None:
        cache = self._open()
        if cache is None:
            return
        try:
            cache.set(key, value, expire=self._ttl_s, retry=False)
        except diskcache.Timeout:
            log.debug("mmx cache: disk cache busy; answer not stored")
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    def close(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            try:
                cache.close()
            except (sqlite3.Error, OSError) as exc:
                log.debug("mmx cache: closing the disk cache failed: %s", exc)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisCache:
    """A team-shared cache in Redis (`redis://…`, `rediss://…` or `unix://…`).

    Calls are synchronous with a short timeout (`REDIS_TIMEOUT_S`) and no client retries.
    When Redis fails, that is reported once, lookups are misses, and no call is tried for
    `pause_s` seconds; a later success is logged and re-arms the report.
    """

    def __init__(
        self,
        url: str,
        key_prefix: str = "mmx:",
        ttl_s: int | None = 7 * 24 * 3600,
        *,
        pause_s: float = REDIS_PAUSE_S,
    ) -> None:
        self.url = url
        self._prefix = key_prefix
        self._ttl_s = ttl_s
        self._pause_s = pause_s
        self._client: redis.Redis | None = None
        self._down_until = 0.0
        self._warned = False

    def _connect(self) -> redis.Redis | None:
        if time.monotonic() < self._down_until:
            return None
        if self._client is None:
            try:
                self._client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=REDIS_TIMEOUT_S,
                    socket_connect_timeout=REDIS_TIMEOUT_S,
                    retry=Retry(NoBackoff(), 0),
                )
            except (ValueError, redis.RedisError) as exc:
                self._fail(exc)
                return None
        return self._client

    def _fail(self, exc: Exception) -> None:
        if not self._warned:
            log.warning(
                "mmx cache: Redis at %s cannot be used (%s: %s); lookups are misses until it "
                "answers again",
                _safe_url(self.url),
                type(exc).__name__,
                exc,
            )
            self._warned = True
        self._down_until = time.monotonic() + self._pause_s

    def _ok(self) -> None:
        if self._warned:
            log.info("mmx cache: Redis at %s answers again", _safe_url(self.url))
            self._warned = False

    def get(self, key: str) -> bytes | None:
        client = self._connect()
        if client is None:
            return None
        try:
            value: Any = client.get(self._prefix + key)
        except (redis.RedisError, OSError) as exc:
            self._fail(exc)
            return None
        self._ok()
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes) -> None:
        client = self._connect()
        if client is None:
            return
        try:
            client.set(self._prefix + key, value, ex=self._ttl_s)
        except (redis.RedisError, OSError) as exc:
            self._fail(exc)
            return
        self._ok()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except (redis.RedisError, OSError) as exc:
                log.debug("mmx cache: closing the Redis client failed: %s", exc)


def make_cache(config: CacheConfig) -> Cache:
    """The backend the configuration names. `redis` without a URL falls back to disk."""
    if config.backend == "off":
        return NullCache()
    if config.backend == "redis":
        if config.url:
            return RedisCache(config.url, config.key_prefix, config.ttl_s)
        log.warning("mmx cache: backend is 'redis' but cache.url is empty; using the disk cache")
    return DiskCache(config.dir, config.size_limit_mb * 1024 * 1024, config.ttl_s)


# --------------------------------------------------------------------------- single flight


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0


class SingleFlight:
    """Identical requests in flight share one call.

    The first `run(key, factory)` starts `factory()` in its own task; later runs with the
    same key wait for that task. A waiter that is cancelled leaves the others waiting; the
    call itself is cancelled only when every waiter has gone. A failure reaches every
    waiter, and the key is forgotten once the call ends, so a later run calls again.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[Any]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        flight: _Flight[T] | None = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(factory()))
            self._flights[key] = flight
            flight.task.add_done_callback(functools.partial(self._forget, key, flight))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()

    def _forget(self, key: str, flight: _Flight[Any], _task: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        # Nobody may be left to read the outcome (all waiters cancelled): read it here.
        if not flight.task.cancelled():
            flight.task.exception()
