"""Metrics store: records, verdicts, summaries, migrations, faults, regression watch."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mmx_lsp import metrics, stats_cli
from mmx_lsp.answer_sizes import Sized, SizedRequest
from mmx_lsp.metrics import (
    SCHEMA_V1,
    SCHEMA_VERSION,
    MetricsStore,
    RegressionPolicy,
    find_regressions,
    open_database,
    parse_since,
    percentile,
    record_eval_results,
    summarize,
    two_proportion_z,
)
from mmx_lsp.status import Attempt, Status

NOW = dt.datetime(2026, 11, 20, 15, 0).astimezone().timestamp()
DAY = 86400.0


def pipeline_record(i: int, **changes: Any) -> dict[str, Any]:
    """A record shaped like the one Pipeline._record writes."""
    record: dict[str, Any] = {
        "request_id": f"req{i:05d}",
        "time": NOW - 60,
        "kind": "inline",
        "tier": "cheap",
        "model": "gpt-5-mini",
        "cached": False,
        "reused": False,
        "escalated": False,
        "fallback": None,
        "preview": False,
        "cancelled": False,
        "error": None,
        "latency_ms": 400.0,
        "input_tokens": 930,
        "output_tokens": 41,
        "cost_usd": Decimal("0.0003145"),
        "saved_usd": Decimal("0.0042"),
        "attempts": 1,
        "verdict": None,
    }
    record.update(changes)
    return record


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user configuration or data directory of the machine running the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    s = MetricsStore(tmp_path / "metrics.sqlite3", clock=lambda: NOW, linger_s=0.0)
    yield s
    s.close()


def rows(path: Path, sql: str = "SELECT count(*) FROM requests") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------- records and stats


def test_summary_has_the_mmx_stats_shape(store: MetricsStore) -> None:
    for i in range(3):
        store.record(pipeline_record(i))
    store.record(pipeline_record(3, tier="premium", model="gpt-5.5", cost_usd=Decimal("0.01")))
    result = store.summary()
    assert {"requests", "cost_usd", "saved_usd", "cache_hits"} <= set(result["totals"])
    row_keys = {
        "model",
        "tier",
        "requests",
        "cache_hits",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "p50_ms",
        "p95_ms",
        "accepted",
        "rejected",
    }
    assert all(row_keys <= set(row) for row in result["by_model"])
    assert [(r["model"], r["tier"], r["requests"]) for r in result["by_model"]] == [
        ("gpt-5-mini", "cheap", 3),
        ("gpt-5.5", "premium", 1),
    ]
    assert result["totals"]["requests"] == 4


def test_money_sums_are_exact(store: MetricsStore) -> None:
    for i in range(3):
        store.record(pipeline_record(i, cost_usd=Decimal("0.0002325")))
    totals = store.summary()["totals"]
    assert totals["cost_usd_exact"] == "0.0006975"
    assert totals["saved_usd_exact"] == "0.0126"
    assert rows(store.path, "SELECT cost_usd, cost_pusd FROM requests LIMIT 1") == [
        ("0.0002325", 232_500_000)
    ]


def test_costs_billed_on_estimated_tokens_are_counted_per_group(store: MetricsStore) -> None:
    store.record(pipeline_record(0))
    store.record(pipeline_record(1, usage_estimated=True))
    store.record(pipeline_record(2, tier="premium", model="gpt-5.5", usage_estimated=True))
    result = store.summary()
    assert result["totals"]["estimated_requests"] == 2
    assert [(r["model"], r["estimated_requests"]) for r in result["by_model"]] == [
        ("gpt-5-mini", 1),
        ("gpt-5.5", 1),
    ]
    by_kind = store.summary(by="kind")
    assert [(r["kind"], r["estimated_requests"]) for r in by_kind["by_kind"]] == [("inline", 2)]


def test_each_call_a_record_lists_is_read_back_for_answer_sizes(store: MetricsStore) -> None:
    """What `answer_sizes` learns from at start: every call a request made, as the running
    server learned from it, a failed or stopped answer as much as a used one."""
    features = {"hole": "selection", "selection_tokens": 45, "estimated_output_tokens": 69}
    calls = [
        Sized("small", 12, counted_input_tokens=300, input_tokens=420).to_json(),
        Sized("big", 80, cut_off=True, counted_input_tokens=300).to_json(),
    ]
    store.record(pipeline_record(0, kind="fix", features=features, escalated=True, calls=calls))
    store.record(pipeline_record(1, kind="fix", features=features, calls=[{"model": 3}]))
    store.flush()
    assert store.recent_sizes() == [
        SizedRequest(
            "fix",
            "selection",
            45,
            69,
            [Sized("small", 12, False, 300, 420), Sized("big", 80, True, 300, 0)],
        )
    ], "a damaged list of calls is left out"


def test_older_records_are_read_back_by_their_one_call(store: MetricsStore) -> None:
    """Records from before each listed its calls: one model call each; an edit cut off at
    its length cap failed, but its length says the model runs to its cap."""
    features = {"hole": "selection", "selection_tokens": 45, "estimated_output_tokens": 69}
    fix = {"kind": "fix", "features": features, "counted_input_tokens": 900}
    store.record(pipeline_record(0, output_tokens=80, **fix))
    store.record(pipeline_record(1, output_tokens=512, error="cut off", cut_off=True, **fix))
    store.record(pipeline_record(2, output_tokens=50, error="the endpoint failed", **fix))
    store.record(pipeline_record(3, output_tokens=600, escalated=True, cut_off=True, **fix))
    store.record(pipeline_record(4, output_tokens=70, usage_estimated=True, **fix))
    store.flush()
    assert [request.calls for request in store.recent_sizes()] == [
        [Sized("gpt-5-mini", 80, False, 900, 930)],
        [Sized("gpt-5-mini", 512, True, 0, 0)],
        [Sized("gpt-5-mini", 70, False, 0, 0)],
    ]


def test_verdict_counts_acceptance_and_can_change(store: MetricsStore) -> None:
    for i in range(3):
        store.record(pipeline_record(i))
    store.verdict("req00000", "accepted")
    store.verdict("req00001", "rejected")
    store.verdict("req00002", "rejected")
    store.verdict("req00002", "accepted")  # the user changed their mind
    row = store.summary()["by_model"][0]
    assert (row["accepted"], row["rejected"]) == (2, 1)
    assert row["acceptance_rate"] == pytest.approx(2 / 3)


def test_unknown_verdict_value_is_refused(store: MetricsStore) -> None:
    with pytest.raises(ValueError, match="accepted"):
        store.verdict("req00000", "maybe")


def test_cached_answers_count_as_hits_and_stay_out_of_latency(store: MetricsStore) -> None:
    store.record(pipeline_record(0, latency_ms=1000.0))
    store.record(pipeline_record(1, cached=True, latency_ms=0.2, cost_usd=Decimal(0)))
    row = store.summary()["by_model"][0]
    assert row["cache_hits"] == 1
    assert row["cache_hit_rate"] == 0.5
    assert row["p50_ms"] == pytest.approx(1000, rel=0.02)


def test_prompt_text_is_kept_only_when_store_prompts_is_on(tmp_path: Path) -> None:
    for allowed in (False, True):
        path = tmp_path / f"{allowed}.sqlite3"
        with MetricsStore(path, store_prompts=allowed, linger_s=0) as s:
            s.record(pipeline_record(0, prompt="def secret(): ..."))
        expected = "def secret(): ..." if allowed else None
        assert rows(path, "SELECT prompt FROM requests") == [(expected,)]


def test_facts_without_a_column_never_carry_text(store: MetricsStore) -> None:
    store.record(
        pipeline_record(
            0,
            reused=True,
            fallback="premium",
            preview="def handler(secret): ...",
            messages=[{"role": "user", "content": "code"}],
            notes="x" * 1000,
            estimate_usd={"cheap": Decimal("0.001"), "premium": Decimal("0.02")},
        )
    )
    store.flush()
    (extra,) = rows(store.path, "SELECT extra FROM requests")[0]
    assert json.loads(extra) == {
        "estimate_usd": {"cheap": "0.001", "premium": "0.02"},
        "fallback": "premium",
        "reused": True,
    }


def test_a_status_dataclass_with_attempts_and_decision_facts_is_recorded(
    store: MetricsStore,
) -> None:
    status = Status(
        request_id="st1",
        kind="refactor",
        tier="premium",
        model="gpt-5.5",
        reason="large selection",
        escalated=True,
        latency_ms=2100.0,
        input_tokens=3000,
        output_tokens=200,
        cost_usd=Decimal("0.021"),
        attempts=[
            Attempt("cheap", "gpt-5-mini", 3000, 180, Decimal("0.00111"), False, "ERROR", 900),
            Attempt("premium", "gpt-5.5", 3000, 200, Decimal("0.021"), True, "", 1200),
        ],
    )
    store.record(status)  # no time of its own: the time of the record() call
    store.record(
        pipeline_record(
            9,
            language="python",
            features={"lines": 3},
            score=0.2,
            rule={"when": {"kind": "inline"}, "tier": "cheap"},
            model_version="2025-08-07",
            template_version="inline-chat/1",
            queue_ms=1.5,
            model_ms=380.0,
            cached_input_tokens=512,
        )
    )
    store.flush()
    (attempts, escalated) = rows(
        store.path, "SELECT attempts, escalated FROM requests WHERE request_id = 'st1'"
    )[0]
    assert '"passed":false' in attempts and escalated == 1
    assert rows(store.path, "SELECT ts FROM requests WHERE request_id = 'st1'") == [(NOW,)]
    found = rows(
        store.path,
        "SELECT language, features, score, rule, model_version, template_version, queue_ms, "
        "model_ms, cached_input_tokens, extra FROM requests WHERE request_id = 'req00009'",
    )[0]
    assert found[:3] == ("python", '{"lines":3}', 0.2)
    assert found[4:9] == ("2025-08-07", "inline-chat/1", 1.5, 380.0, 512)
    assert found[9] is None  # reused/fallback/preview were all false or empty


@pytest.mark.parametrize(
    ("by", "key", "expected"),
    [
        ("model", ("gpt-5-mini", "cheap"), 2),
        ("tier", ("premium",), 1),
        ("kind", ("refactor",), 1),
        ("language", ("go",), 1),
        ("day", (dt.date.fromtimestamp(NOW).isoformat(),), 2),
    ],
    ids=["model", "tier", "kind", "language", "day"],
)
def test_summary_groups_by_each_dimension(
    store: MetricsStore, by: str, key: tuple[str, ...], expected: int
) -> None:
    store.record(pipeline_record(0, language="python"))
    store.record(pipeline_record(1, language="go", kind="refactor"))
    store.record(pipeline_record(2, tier="premium", model="gpt-5.5", time=NOW - 3 * DAY))
    result = store.summary(by=by)
    names = ("model", "tier") if by == "model" else (by,)
    found = {tuple(r[n] for n in names): r["requests"] for r in result[f"by_{by}"]}
    assert found[key] == expected
    assert result["totals"]["requests"] == 3


def test_unknown_grouping_is_refused(store: MetricsStore) -> None:
    with pytest.raises(ValueError, match="model, tier, kind, language, day"):
        store.summary(by="colour")


def test_since_counts_exactly_inside_a_day_and_across_days(store: MetricsStore) -> None:
    # One record an hour for three days: the window starts mid-day, so part of it comes from
    # the requests themselves and the rest from the daily tables.
    for h in range(72):
        store.record(pipeline_record(h, time=NOW - h * 3600 - 1))
    assert store.summary(since="24h")["totals"]["requests"] == 24
    assert store.summary(since="30h")["totals"]["requests"] == 30
    assert store.summary(since=NOW - 50 * 3600)["totals"]["requests"] == 50
    assert store.summary()["totals"]["requests"] == 72


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("7d", 7 * DAY), ("24h", DAY), ("30m", 1800), ("2w", 14 * DAY)],
    ids=["days", "hours", "minutes", "weeks"],
)
def test_since_reads_durations(text: str, seconds_ago: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(NOW - seconds_ago)


def test_since_reads_dates_and_epoch_seconds() -> None:
    midnight = dt.datetime(2026, 11, 1).astimezone().timestamp()
    assert parse_since("2026-11-01", NOW) == midnight
    assert (
        parse_since("2026-11-01T00:00:00Z", NOW)
        == dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    )
    assert parse_since(1_700_000_000, NOW) == 1_700_000_000


@pytest.mark.parametrize("text", ["yesterday", "7 parsecs", "2026-13-01", "d7"])
def test_malformed_since_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"7d, 24h .*2026-11-01"):
        parse_since(text, NOW)


def test_percentile_is_nearest_rank_within_bucket_error() -> None:
    values = list(range(1, 1001))
    hist: dict[int, int] = {}
    for v in values:
        b = metrics.bucket_ms(v)
        hist[b] = hist.get(b, 0) + 1
    assert percentile(hist, 0.5) == pytest.approx(500, rel=0.02)
    assert percentile(hist, 0.95) == pytest.approx(950, rel=0.02)
    assert percentile({}, 0.5) is None
    assert metrics.bucket_ms(37.9) == 37  # below 64 ms buckets are whole milliseconds


def test_retention_removes_whole_days_older_than_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with MetricsStore(path, retention_days=None, clock=lambda: NOW, linger_s=0) as s:
        s.record(pipeline_record(0, time=NOW - 40 * DAY))
        s.record(pipeline_record(1, time=NOW - 2 * DAY))
    with MetricsStore(path, retention_days=30, clock=lambda: NOW, linger_s=0) as s:
        s.wait_ready()
        s.flush()
        totals = s.summary()["totals"]
    assert totals["requests"] == 1
    assert rows(path) == [(1,)]
    assert rows(path, "SELECT count(*) FROM daily WHERE requests > 0") == [(1,)]


# --------------------------------------------------------------------------- schema


def make_v1(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_V1)
    conn.executemany(
        "INSERT INTO requests (ts, request_id, kind, tier, model, cached, latency_ms, "
        "input_tokens, output_tokens, cost_usd, saved_usd, verdict) "
        "VALUES (?, ?, 'inline', 'cheap', 'gpt-5-mini', 0, ?, 900, 40, ?, ?, ?)",
        [
            (NOW - 100, "old1", 300.0, "0.0001", "0.002", "accepted"),
            (NOW - 90, "old2", 500.0, "0.0002325", None, None),
        ],
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_version_1_database_is_upgraded_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    make_v1(path)
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as s:
        s.record(pipeline_record(0, model_version="2025-08-07"))
        s.verdict("old2", "rejected")
        result = s.summary()
        assert s.take_warnings() == []
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT request_id, total_ms, cost_pusd FROM requests ORDER BY id")[:2] == [
        ("old1", 300.0, 100_000_000),
        ("old2", 500.0, 232_500_000),
    ]
    row = result["by_model"][0]
    assert (row["requests"], row["accepted"], row["rejected"]) == (3, 1, 1)
    assert Decimal(result["totals"]["cost_usd_exact"]) == (
        Decimal("0.0001") + Decimal("0.0002325") + Decimal("0.0003145")
    )


def test_a_database_from_a_newer_version_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE requests (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with MetricsStore(path, linger_s=0) as s:
        s.record(pipeline_record(0))
        s.flush()
        warnings = s.take_warnings()
    assert any("newer" in w for w in warnings)
    assert rows(path, "PRAGMA user_version") == [(99,)]


def test_two_openers_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    make_v1(path)
    first, _ = open_database(path)
    second, _ = open_database(path)
    assert second.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    first.close()
    second.close()


# --------------------------------------------------------------------------- faults


def test_a_corrupt_database_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    warned: list[str] = []
    with MetricsStore(path, on_warning=warned.append, linger_s=0) as s:
        s.record(pipeline_record(0))
        s.flush()
        taken = s.take_warnings()
    assert taken == warned and len(taken) == 1
    assert "moved to metrics.sqlite3.corrupt-" in taken[0]
    assert len(list(tmp_path.glob("metrics.sqlite3.corrupt-*"))) == 1
    assert rows(path) == [(1,)]


def test_damage_found_while_writing_starts_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metrics.sqlite3"
    real_insert = metrics.insert_requests
    calls = {"n": 0}

    def damaged_once(conn: sqlite3.Connection, *args: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real_insert(conn, *args)

    monkeypatch.setattr(metrics.store, "insert_requests", damaged_once)
    with MetricsStore(path, linger_s=0) as s:
        s.record(pipeline_record(0))
        s.flush()
        s.record(pipeline_record(1))
        s.flush()
        warnings = s.take_warnings()
    assert len(warnings) == 1 and "a new metrics database was started" in warnings[0]
    assert rows(path, "SELECT request_id FROM requests") == [("req00001",)]
    moved = [p for p in tmp_path.glob("metrics.sqlite3.corrupt-*") if p.name[-4:] != "-wal"]
    (moved,) = [p for p in moved if p.name[-4:] != "-shm"]
    assert rows(moved, "SELECT request_id FROM requests") == [("req00000",)]


def test_a_locked_database_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with MetricsStore(path, busy_timeout_ms=20, linger_s=0) as s:
        s.wait_ready()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        started = time.perf_counter()
        for i in range(50):
            s.record(pipeline_record(i))
        assert time.perf_counter() - started < 0.2  # the lock never reaches the caller
        time.sleep(0.5)
        other.execute("COMMIT")
        other.close()
        assert s.flush(10)
        assert s.stats.retries > 0
        assert any("locked" in w for w in s.take_warnings())
    assert rows(path) == [(50,)]


def test_a_full_database_warns_and_recording_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with MetricsStore(path, max_bytes=96 * 1024, store_prompts=True, linger_s=0) as s:
        started = time.perf_counter()
        for i in range(200):
            s.record(pipeline_record(i, prompt="x" * 4000))  # never raises
        assert time.perf_counter() - started < 1.0
        s.flush()
        warnings = s.take_warnings()
        assert s.stats.dropped > 0
    assert len([w for w in warnings if "full" in w]) == 1  # said once, not per batch


def test_two_stores_on_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    a = MetricsStore(path, linger_s=0.01)
    b = MetricsStore(path, linger_s=0.01)

    def write(s: MetricsStore, prefix: str) -> None:
        for i in range(300):
            s.record(pipeline_record(i, request_id=f"{prefix}{i}"))

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()
    assert rows(path) == [(600,)]
    assert rows(path, "SELECT sum(requests) FROM daily") == [(600,)]


WRITER = """
import sys
from decimal import Decimal
from mmx_lsp.metrics import MetricsStore
with MetricsStore(sys.argv[1], linger_s=0.005, busy_timeout_ms=50) as store:
    for i in range(400):
        store.record({"request_id": f"p{i}", "kind": "inline", "tier": "cheap",
                      "model": "gpt-5-mini", "latency_ms": 300.0,
                      "cost_usd": Decimal("0.000001")})
    assert store.flush(30)
    print(store.stats.written)
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [out.strip() for out, _err in outputs] == ["400", "400"]
    assert rows(path) == [(800,)]
    assert rows(path, "SELECT sum(requests), sum(cost_pusd) FROM daily") == [(800, 800_000_000)]


def test_record_after_close_is_ignored(tmp_path: Path) -> None:
    s = MetricsStore(tmp_path / "m.sqlite3", linger_s=0)
    s.close()
    s.record(pipeline_record(0))
    assert s.flush() is True


# --------------------------------------------------------------------------- regression watch


def test_two_proportion_z_matches_a_hand_computed_value() -> None:
    # 80/100 against 50/100: pooled 0.65, se = sqrt(0.65*0.35*0.02) = 0.06745
    z, p = two_proportion_z(80, 100, 50, 100)
    assert z == pytest.approx(4.4477, abs=1e-3)
    assert p < 1e-4
    assert two_proportion_z(0, 0, 1, 1) == (0.0, 1.0)


def _verdicts(
    s: MetricsStore, start: int, when: float, version: str, accepted: int, total: int
) -> int:
    for i in range(total):
        rid = f"v{start + i}"
        s.record(pipeline_record(start + i, request_id=rid, time=when, model_version=version))
        s.verdict(rid, "accepted" if i < accepted else "rejected")
    return start + total


def test_a_significant_drop_for_a_new_model_version_is_reported_once(
    store: MetricsStore,
) -> None:
    n = _verdicts(store, 0, NOW - 20 * DAY, "2025-08-07", 80, 100)
    _verdicts(store, n, NOW - DAY, "2026-11-15", 25, 50)
    policy = RegressionPolicy(margin=0.1, min_samples=30)
    found = store.regressions(policy)
    assert [(r.model, r.model_version) for r in found] == [("gpt-5-mini", "2026-11-15")]
    assert "fell to 50% (25/50) from 80% (80/100)" in found[0].message()
    assert len(store.new_regressions(policy)) == 1
    assert store.new_regressions(policy) == []  # warned once


@pytest.mark.parametrize(
    ("recent", "policy"),
    [
        ((10, 20), RegressionPolicy(min_samples=30)),  # too few verdicts
        ((37, 50), RegressionPolicy(margin=0.1)),  # 74% vs 80%: within the margin
        ((7, 12), RegressionPolicy(margin=0.1, min_samples=10, alpha=0.01)),  # not significant
    ],
    ids=["small-sample", "within-margin", "not-significant"],
)
def test_no_regression_is_reported_without_enough_evidence(
    store: MetricsStore, recent: tuple[int, int], policy: RegressionPolicy
) -> None:
    n = _verdicts(store, 0, NOW - 20 * DAY, "a", 80, 100)
    _verdicts(store, n, NOW - DAY, "b", *recent)
    assert store.regressions(policy) == []


def test_regressions_read_a_database_directly(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as s:
        n = _verdicts(s, 0, NOW - 20 * DAY, "a", 90, 100)
        _verdicts(s, n, NOW - 2 * DAY, "b", 20, 60)
    conn, _ = open_database(path)
    found = find_regressions(conn, RegressionPolicy(), now=NOW)
    assert summarize(conn, now=NOW)["totals"]["requests"] == 160
    conn.close()
    assert found and found[0].recent_total == 60


def _eval_run(when: float, version: str, passed: int, total: int) -> list[dict[str, Any]]:
    return [
        {
            "ts": when,
            "run_id": f"run-{version}-{when}",
            "suite": "fixtures/eval",
            "task": f"task{i}",
            "kind": "refactor",
            "language": "python",
            "model": "gpt-5-mini",
            "model_version": version,
            "tier": "cheap",
            "passed": i < passed,
            "latency_ms": 120.5,
            "input_tokens": 900,
            "cached_input_tokens": 100,
            "output_tokens": 40,
            "cost_usd": Decimal("0.0001234"),
            "error": None if i < passed else "the answer adds 1 syntax error",
        }
        for i in range(total)
    ]


def test_eval_results_are_stored_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    assert record_eval_results(path, _eval_run(NOW, "2025-08-07", 3, 4)) == []
    assert rows(path, "SELECT task, passed, cost_pusd, error FROM evals ORDER BY id")[2:] == [
        ("task2", 1, 123_400_000, None),
        ("task3", 0, 123_400_000, "the answer adds 1 syntax error"),
    ]


def test_a_drop_in_eval_pass_rate_is_a_regression(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    record_eval_results(path, _eval_run(NOW - 20 * DAY, "2025-08-07", 38, 40))
    record_eval_results(path, _eval_run(NOW - DAY, "2026-11-15", 20, 40))
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as s:
        found = s.new_regressions(RegressionPolicy(min_samples=30))
        assert s.new_regressions(RegressionPolicy(min_samples=30)) == []  # warned once
    assert [(r.signal, r.model_version) for r in found] == [("eval", "2026-11-15")]
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as again:  # the editor restarted
        assert again.regressions(RegressionPolicy(min_samples=30)) == found
        assert again.new_regressions(RegressionPolicy(min_samples=30)) == []  # said already
    assert "eval pass rate on fixtures/eval of gpt-5-mini (2026-11-15) fell to 50% (20/40)" in (
        found[0].message()
    )
    # Too few tasks in the recent runs: no verdict either way.
    quiet = tmp_path / "q.sqlite3"
    record_eval_results(quiet, _eval_run(NOW - 20 * DAY, "a", 38, 40))
    record_eval_results(quiet, _eval_run(NOW - DAY, "b", 2, 10))
    conn, _ = open_database(quiet)
    assert find_regressions(conn, RegressionPolicy(min_samples=30), now=NOW) == []
    conn.close()


def test_a_version_2_database_gains_the_eval_table(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    make_v1(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    metrics._migrate_1_to_2(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("COMMIT")
    conn.close()
    record_eval_results(path, _eval_run(NOW, "v", 1, 1))
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path) == [(2,)]
    assert rows(path, "SELECT count(*) FROM evals") == [(1,)]


def test_stats_find_the_estimated_requests_through_their_index(tmp_path: Path) -> None:
    """A version 3 database gains the index of estimated requests, and the summary's query
    reads it instead of every row's JSON (which took 1.8 s over a million rows)."""
    path = tmp_path / "v3.sqlite3"
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as s:
        s.record(pipeline_record(0))
        s.record(pipeline_record(1, usage_estimated=True))
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX requests_estimated")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with MetricsStore(path, clock=lambda: NOW, linger_s=0) as s:
        assert s.summary()["totals"]["estimated_requests"] == 1
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    conn, _ = open_database(path)
    try:
        sent: list[str] = []
        conn.set_trace_callback(sent.append)
        summarize(conn, now=NOW)
        conn.set_trace_callback(None)
        [query] = [q for q in sent if "usage_estimated" in q]
        plan = conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    finally:
        conn.close()
    assert any("USING INDEX requests_estimated" in str(step) for step in plan), plan


# --------------------------------------------------------------------------- the commands


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "cli.sqlite3"
    now = time.time()
    with MetricsStore(path, linger_s=0) as s:
        for i in range(4):
            s.record(pipeline_record(i, time=now - 60, model_version="2025-08-07"))
        s.record(pipeline_record(9, time=now - 60, tier="premium", model="gpt-5.5"))
        s.verdict("req00000", "accepted")
    return path


def test_stats_prints_a_table_with_rates_and_savings(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats_cli.stats_main(["--db", str(filled)]) == 0
    out = capsys.readouterr().out
    assert "gpt-5-mini" in out and "gpt-5.5" in out
    assert "100% of 1" in out  # acceptance rate and how many verdicts it rests on
    assert "Saved $0.021 against sending every request to premium" in out


def test_stats_json_is_the_summary(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats_cli.stats_main(["--db", str(filled), "--json", "--since", "1h"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["requests"] == 5 and data["by"] == "model"
    assert data["regressions"] == []


def test_stats_csv_has_one_row_per_group(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats_cli.stats_main(["--db", str(filled), "--csv", "--by", "tier"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tier,requests,accepted")
    assert [line.split(",")[:2] for line in lines[1:]] == [["cheap", "4"], ["premium", "1"]]


def test_stats_prometheus_exposition(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats_cli.stats_main(["--db", str(filled), "--prometheus"]) == 0
    text = capsys.readouterr().out
    assert "# TYPE mmx_requests gauge" in text
    assert 'mmx_requests{model="gpt-5-mini",tier="cheap"} 4' in text
    assert 'mmx_verdicts{model="gpt-5-mini",tier="cheap",verdict="accepted"} 1' in text
    assert 'mmx_latency_ms{model="gpt-5-mini",tier="cheap",quantile="0.95"}' in text
    assert 'mmx_latency_ms_count{model="gpt-5-mini",tier="cheap"} 4' in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? \S+", line), line


def test_stats_prometheus_file_is_written_whole(filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "mmx.prom"
    assert stats_cli.stats_main(["--db", str(filled), "--prometheus-file", str(target)]) == 0
    assert "mmx_cost_usd" in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["mmx.prom"]  # no temporary left


def test_prometheus_labels_are_escaped() -> None:
    row = {
        "model": 'we"ird\\model\n',
        "tier": "cheap",
        **{k: 0 for k in ("requests", "cache_hits", "input_tokens", "output_tokens")},
        **{k: 0 for k in ("cost_usd", "saved_usd", "escalated", "errors", "accepted")},
        **{"rejected": 0, "p50_ms": None, "p95_ms": None, "latency_sum_ms": 0.0},
        "latency_count": 0,
    }
    text = metrics.prometheus_text({"by_model": [row]})
    assert 'model="we\\"ird\\\\model\\n"' in text
    assert 'quantile="0.5"} NaN' in text


def test_stats_malformed_since_is_a_usage_error(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats_cli.stats_main(["--db", str(filled), "--since", "last tuesday"]) == 2
    err = capsys.readouterr().err
    assert "--since: cannot read since='last tuesday'" in err and "7d" in err


def test_stats_without_a_database_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.sqlite3"
    assert stats_cli.stats_main(["--db", str(missing), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["totals"]["requests"] == 0
    assert "no metrics recorded yet" in captured.err
    assert not missing.exists()


def test_models_lists_tiers_prices_and_their_sources(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mmx.toml").write_text(
        '[tiers.premium]\nmodel = "my-model"\ninput_usd_per_mtok = 1.5\noutput_usd_per_mtok = 6\n'
    )
    argv = ["--db", str(filled), "--workspace", str(tmp_path), "--json", "--all"]
    assert stats_cli.models_main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    tiers = {row["tier"]: row for row in data["tiers"]}
    assert tiers["cheap"]["model"] == "gpt-5-mini"
    assert tiers["cheap"]["price_source"].startswith("built-in table (")
    assert data["builtin_as_of"] in tiers["cheap"]["price_source"]
    assert tiers["cheap"]["versions_seen"] == ["2025-08-07"]
    assert tiers["premium"]["price_source"] == "configuration"
    assert tiers["premium"]["input_usd_per_mtok"] == "1.5"
    assert any(row["model"] == "gpt-5-mini" for row in data["builtin"])


def test_models_table_names_the_price_date(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats_cli.models_main(["--db", str(filled), "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpt-5-mini" in out and "built-in table" in out and "unpinned" in out


def test_the_module_entry_point_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    assert stats_cli.main(["nonsense"]) == 2
    assert "stats" in capsys.readouterr().err


def test_store_and_policy_follow_the_settings(tmp_path: Path) -> None:
    from mmx_lsp.config import Settings

    settings = Settings.model_validate(
        {
            "metrics": {"path": str(tmp_path / "custom.sqlite3"), "retention_days": 5},
            "privacy": {"store_prompts": True},
        }
    )
    with MetricsStore.from_settings(settings, linger_s=0) as s:
        assert (s.path, s.retention_days, s.store_prompts) == (
            tmp_path / "custom.sqlite3",
            5,
            True,
        )
        s.record(pipeline_record(0))
    assert (tmp_path / "custom.sqlite3").exists()
    assert RegressionPolicy.from_settings(settings) == RegressionPolicy()


def test_the_default_path_is_in_the_user_data_directory(tmp_path: Path) -> None:
    assert metrics.default_path() == tmp_path / "data" / "mmx" / "metrics.sqlite3"


def test_stats_and_report_mark_estimated_costs_with_an_approx_sign(
    store: MetricsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmx_lsp import report, stats_cli

    store.record(pipeline_record(0))
    store.record(pipeline_record(1, usage_estimated=True))
    store.flush()
    assert stats_cli.stats_main(["--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    note = metrics.estimated_note(1)
    assert "≈$" in out and note in out
    page = report.render_html(store.summary(), [], [], window="all")
    assert "≈$" in page and f'<p class="note">{note}</p>' in page
    store.record(pipeline_record(2, time=NOW + 1))
    exact = report.render_html(store.summary(since=NOW + 1), [], [], window="now")
    assert "≈" not in exact, "no note, and no mark, without estimated costs"


def _routed(
    s: MetricsStore, start: int, when: float, router: str, accepted: int, total: int
) -> int:
    """Verdicts on completions a router decided, all on the same model version."""
    for i in range(total):
        rid = f"r{start + i}"
        s.record(
            pipeline_record(start + i, request_id=rid, time=when, model_version="v", router=router)
        )
        s.verdict(rid, "accepted" if i < accepted else "rejected")
    return start + total


def test_a_drop_in_acceptance_after_the_router_changed_is_a_regression(
    store: MetricsStore,
) -> None:
    n = _routed(store, 0, NOW - 20 * DAY, "classeval-1", 80, 100)
    _routed(store, n, NOW - DAY, "calibrated-20261119", 25, 50)
    found = store.regressions(RegressionPolicy(margin=0.1, min_samples=30))
    # The model's acceptance fell too; the router watch names the router that changed.
    [router] = [r for r in found if r.signal == "router"]
    assert router.model_version == "calibrated-20261119"
    assert "since router calibrated-20261119 took over" in router.message()
    assert "from 80% (80/100)" in router.message()
    assert len({r.key for r in found}) == len(found) == 2


def test_a_router_in_force_before_and_after_is_not_a_router_regression(
    store: MetricsStore,
) -> None:
    n = _routed(store, 0, NOW - 20 * DAY, "classeval-1", 80, 100)
    _routed(store, n, NOW - DAY, "classeval-1", 78, 100)
    assert [r for r in store.regressions() if r.signal == "router"] == []
