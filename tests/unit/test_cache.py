"""Cache backends (disk, a real redis-server), cache keys and single flight."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from mmx_lsp.cache import (
    DiskCache,
    NullCache,
    RedisCache,
    SingleFlight,
    cache_key,
    make_cache,
    normalize_context,
)
from mmx_lsp.config import CacheConfig
from tests.support.redis_server import RedisServer, RedisServerMissing

KEY_PARTS = {
    "model": "gpt-5-mini",
    "model_version": "2025-08-07",
    "template_version": "inline-chat/1",
    "context": "def add(a, b):\n    return <FILL>\n",
}


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("part", "other"),
    [
        ("model", "gpt-5.5"),
        ("model_version", "2026-01-01"),
        ("template_version", "inline-chat/2"),
        ("context", "def add(a, b):\n    return a<FILL>\n"),
    ],
    ids=["model", "model-version", "template-version", "context"],
)
def test_a_change_of_any_key_part_misses(part: str, other: str) -> None:
    assert cache_key(**KEY_PARTS) != cache_key(**{**KEY_PARTS, part: other})


def test_key_ignores_trailing_whitespace_and_line_endings() -> None:
    messy = "def add(a, b):   \r\n    return <FILL>\t\r\n\n"
    assert cache_key(**{**KEY_PARTS, "context": messy}) == cache_key(**KEY_PARTS)
    assert len(cache_key(**KEY_PARTS)) == 64


@given(st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\u2028\u3000ab"))
def test_normalizing_strips_exactly_trailing_whitespace(text: str) -> None:
    # The definition, as a regular expression: whitespace other than a newline, before a
    # newline or the end, goes; so do newlines at the end.
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    expected = re.sub(r"[^\S\n]+(?=\n|\Z)", "", unified).rstrip("\n")
    assert normalize_context(text) == expected


def test_key_parts_cannot_run_into_each_other() -> None:
    one = cache_key(model="ab", model_version="c", template_version="t", context="x")
    two = cache_key(model="a", model_version="bc", template_version="t", context="x")
    assert one != two


# --------------------------------------------------------------------------- disk


def test_disk_cache_round_trip_survives_a_restart(tmp_path: Path) -> None:
    first = DiskCache(tmp_path / "c", 10 * 1024 * 1024, 3600)
    assert first.get("k") is None
    first.set("k", b"return a + b")
    assert first.get("k") == b"return a + b"
    first.close()
    second = DiskCache(tmp_path / "c", 10 * 1024 * 1024, 3600)
    assert second.get("k") == b"return a + b"
    second.close()


def test_disk_cache_entries_expire(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, 1024 * 1024, 0.2)
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    time.sleep(0.3)
    assert cache.get("k") is None
    cache.close()


def test_corrupted_cache_directory_is_a_miss_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    cache = DiskCache(tmp_path, 1024 * 1024, 3600)
    with caplog.at_level(logging.WARNING, logger="mmx_lsp.cache"):
        for _ in range(3):
            assert cache.get("k") is None
            cache.set("k", b"v")
    cache.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(tmp_path) in warnings[0].getMessage()
    assert "deleting that directory resets it" in warnings[0].getMessage()


def test_cache_directory_that_is_a_file_is_a_miss(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cache = DiskCache(blocker, 1024 * 1024, 3600)
    cache.set("k", b"v")
    assert cache.get("k") is None
    cache.close()


def test_make_cache_picks_the_backend(tmp_path: Path) -> None:
    off = make_cache(CacheConfig(backend="off"))
    assert isinstance(off, NullCache)
    off.set("k", b"v")
    assert off.get("k") is None
    disk = make_cache(CacheConfig(backend="disk", dir=str(tmp_path)))
    assert isinstance(disk, DiskCache) and disk.directory == tmp_path
    disk.close()
    shared = make_cache(CacheConfig(backend="redis", url="redis://127.0.0.1:6379/0"))
    assert isinstance(shared, RedisCache)
    shared.close()
    fallback = make_cache(CacheConfig(backend="redis", url="", dir=str(tmp_path)))
    assert isinstance(fallback, DiskCache)
    fallback.close()


# --------------------------------------------------------------------------- redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer | str]:
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        yield str(exc)
        return
    with server:
        yield server


def started(server: RedisServer | str) -> RedisServer:
    """The running server, or a test failure saying how to install redis-server."""
    if isinstance(server, str):
        pytest.fail(server)
    return server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_cache_round_trip_with_prefix_and_ttl(redis_server: RedisServer | str) -> None:
    server = started(redis_server)
    cache = RedisCache(server.url, "mmx-test:", 120)
    other = RedisCache(server.url, "mmx-test:", 120)
    try:
        assert cache.get("k1") is None
        cache.set("k1", b"return a + b")
        assert other.get("k1") == b"return a + b", "a second client (a teammate) sees it"
        raw = redis.Redis.from_url(server.url)
        try:
            assert raw.get("mmx-test:k1") == b"return a + b"
            assert 0 < raw.ttl("mmx-test:k1") <= 120
        finally:
            raw.close()
    finally:
        cache.close()
        other.close()


def test_redis_over_tcp_loopback() -> None:
    try:
        server = RedisServer(unix_socket=False)
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    with server:
        assert server.url.startswith("redis://127.0.0.1:")
        cache = RedisCache(server.url, "mmx:", 60)
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
        cache.close()
    assert server.process.poll() is not None, "stopped by its PID"


def test_unreachable_redis_is_a_quick_miss_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    cache = RedisCache(url, "mmx:", 60)
    started_at = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mmx_lsp.cache"):
        for _ in range(5):
            assert cache.get("k") is None
            cache.set("k", b"v")
    cache.close()
    assert time.monotonic() - started_at < 1.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lookups are misses" in warnings[0]
    assert "hunter2-password" not in warnings[0], "the password is not logged"


def test_redis_that_goes_away_becomes_a_miss_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    cache = RedisCache(server.url, "mmx:", 60, pause_s=0.1)
    try:
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
    finally:
        server.stop()
    with caplog.at_level(logging.INFO, logger="mmx_lsp.cache"):
        assert cache.get("k") is None
        cache.set("k2", b"v2")
    cache.close()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


# --------------------------------------------------------------------------- single flight


async def test_identical_requests_in_flight_make_one_call() -> None:
    flights = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call_model() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "return a + b"

    first = asyncio.ensure_future(flights.run("k", call_model))
    second = asyncio.ensure_future(flights.run("k", call_model))
    other = asyncio.ensure_future(flights.run("other", call_model))
    await asyncio.sleep(0.01)
    assert flights.in_flight("k") and len(flights) == 2
    release.set()
    assert await asyncio.gather(first, second, other) == ["return a + b"] * 3
    assert calls == 2, "one call for 'k', one for 'other'"
    assert len(flights) == 0


async def test_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    flights = SingleFlight()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("provider down")

    results = await asyncio.gather(
        flights.run("k", failing), flights.run("k", failing), return_exceptions=True
    )
    assert [str(r) for r in results] == ["provider down", "provider down"]
    assert calls == 1
    with pytest.raises(RuntimeError):
        await flights.run("k", failing)
    assert calls == 2


async def test_cancelled_waiter_leaves_the_others_their_answer() -> None:
    flights = SingleFlight()
    release = asyncio.Event()

    async def call_model() -> str:
        await release.wait()
        return "answer"

    first = asyncio.ensure_future(flights.run("k", call_model))
    second = asyncio.ensure_future(flights.run("k", call_model))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await second == "answer"
    assert first.cancelled()


async def test_call_is_cancelled_when_every_waiter_is_gone() -> None:
    flights = SingleFlight()
    cancelled = asyncio.Event()

    async def call_model() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    first = asyncio.ensure_future(flights.run("k", call_model))
    second = asyncio.ensure_future(flights.run("k", call_model))
    await asyncio.sleep(0.01)
    first.cancel()
    second.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)
    await asyncio.sleep(0)
    assert not flights.in_flight("k")
