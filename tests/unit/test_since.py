"""One reading of `since` for mmx.stats (the session) and mmx-lsp stats (the database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from mmx_lsp.metrics import MetricsStore
from mmx_lsp.since import parse_since

NOW = dt.datetime(2026, 11, 20, 12, 0).astimezone().timestamp()
HOUR = 3600.0


def record(n: int, when: float) -> dict[str, object]:
    return {
        "request_id": f"r{n}",
        "time": when,
        "kind": "inline",
        "tier": "cheap",
        "model": "m",
        "cached": False,
        "reused": False,
        "escalated": False,
        "fallback": None,
        "preview": False,
        "cancelled": False,
        "error": None,
        "latency_ms": 10.0,
        "input_tokens": 1,
        "output_tokens": 1,
        "cost_usd": Decimal("0.001"),
        "saved_usd": None,
        "attempts": [],
        "verdict": None,
    }


@pytest.mark.parametrize("since", ["7d", "30h", "2026-11-19", "2026-11-19T06:00", 1_700_000_000])
def test_a_session_and_the_database_read_since_the_same_way(
    tmp_path: Path, since: str | int
) -> None:
    # Two editors share one database: mmx.stats reads one server session's requests
    # (those since it started), `mmx-lsp stats` all of them, with one reading of `since`.
    times = [NOW - h * HOUR for h in (1, 20, 40, 100, 24 * 10)]
    started = NOW - 50 * HOUR
    with MetricsStore(tmp_path / "m.sqlite3", clock=lambda: NOW, linger_s=0) as store:
        for n, when in enumerate(times):
            store.record({**record(n, when), "session": "ours" if when >= started else "old"})
            store.record({**record(100 + n, when), "session": "theirs"})
        assert store.flush()
        in_db = store.summary(since=since)["totals"]["requests"]
        ours = store.summary(since=since, session=("ours", started))["totals"]["requests"]
    cutoff = parse_since(since, NOW)
    assert cutoff is not None
    expected = sum(1 for t in times if t >= cutoff)
    assert in_db == 2 * expected
    assert ours == sum(1 for t in times if t >= max(cutoff, started))


def test_a_time_without_a_zone_is_local_and_one_with_a_zone_is_that_zone() -> None:
    local = dt.datetime(2026, 11, 19, 9, 30).astimezone().timestamp()
    assert parse_since("2026-11-19T09:30", NOW) == local
    assert (
        parse_since("2026-11-19T09:30Z", NOW)
        == dt.datetime(2026, 11, 19, 9, 30, tzinfo=dt.UTC).timestamp()
    )
    assert parse_since("7d", NOW) == NOW - 7 * 86400
    assert parse_since(None) is None and parse_since("") is None
    with pytest.raises(ValueError, match="7d"):
        parse_since(["7d"], NOW)  # type: ignore[arg-type]
