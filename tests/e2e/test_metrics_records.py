"""Every routed request leaves a row in the metrics database, read back by `mmx-lsp stats`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from mmx_lsp.metrics import MetricsStore
from mmx_lsp.server import REGRESSION_FIRST_CHECK_S
from tests.e2e.conftest import command, open_text, start, stats_json, stop
from tests.e2e.test_model_calls import FUNCTION, collect_statuses, eventually, inline, settings
from tests.support.openai_stub import StubServer

pytestmark = pytest.mark.e2e


def database_rows(tmp: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the metrics database the server wrote in the isolated data directory."""
    (path,) = (tmp / "xdg_data_home").rglob("metrics.sqlite3")
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def type_text(
    client: LanguageClient, uri: str, version: int, at: types.Position, text: str
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)
            ],
        )
    )


async def test_requests_and_verdicts_reach_the_metrics_database(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        cheap.reported_model = "stub-cheap-2026-10-01"
        client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
        try:
            statuses = collect_statuses(client)
            uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
            await inline(client, uri)
            await inline(client, uri)  # the same again: from the cache
            await eventually(lambda: len(statuses) == 2)
            await command(client, "mmx.accepted", {"request_id": statuses[0].request_id})
        finally:
            await stop(client)  # shutdown writes every queued record
    summary = stats_json(tmp_path)
    assert summary["totals"]["requests"] == 2
    assert summary["totals"]["cache_hits"] == 1
    row = next(r for r in summary["by_model"] if r["model"] == "stub-cheap")
    assert row["accepted"] == 1
    assert row["cost_usd"] == pytest.approx(float(statuses[0].cost_usd))

    # The row says which model version answered (as the provider named it) and which
    # prompt template asked; the cache hit keeps the version of the answer it reuses.
    assert database_rows(
        tmp_path, "SELECT model, model_version, template_version, cached FROM requests ORDER BY id"
    ) == [
        ("stub-cheap", "stub-cheap-2026-10-01", "inline-chat/1", 0),
        ("stub-cheap", "stub-cheap-2026-10-01", "inline-chat/1", 1),
    ]
    ((queue_ms, model_ms, total_ms),) = database_rows(
        tmp_path, "SELECT queue_ms, model_ms, total_ms FROM requests WHERE cached = 0"
    )
    assert 0 <= queue_ms < total_ms and 0 < model_ms <= total_ms


async def test_a_suggestion_typed_over_counts_as_not_accepted(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
        try:
            statuses = collect_statuses(client)
            uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
            await inline(client, uri)  # "return a + b" shown at (1, 4)
            await eventually(lambda: len(statuses) == 1)
            # Typing its start keeps it alive: the rest is served without a call.
            type_text(client, uri, 2, types.Position(1, 4), "ret")
            await inline(client, uri, types.Position(1, 7))
            await eventually(lambda: len(statuses) == 2)
            assert statuses[1].cached and len(cheap.requests) == 1
            # Then the user types something else over it.
            type_text(client, uri, 3, types.Position(1, 7), "ry")
            await inline(client, uri, types.Position(1, 9))
            await eventually(lambda: len(statuses) == 3)
            stats = await command(client, "mmx.stats", {})
        finally:
            await stop(client)
    row = next(r for r in stats["by_model"] if r["model"] == "stub-cheap")
    assert (row["accepted"], row["rejected"]) == (0, 1)
    assert database_rows(
        tmp_path, "SELECT request_id, verdict FROM requests WHERE verdict IS NOT NULL"
    ) == [(statuses[0].request_id, "rejected")]


async def test_an_accepted_suggestion_is_not_counted_as_typed_over(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
        try:
            statuses = collect_statuses(client)
            uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
            await inline(client, uri)
            await eventually(lambda: len(statuses) == 1)
            # Accepted: the editor inserts it, the user types on, the editor asks again; the
            # editor's report of the acceptance arrives last.
            type_text(client, uri, 2, types.Position(1, 4), "return a + b ")
            await inline(client, uri, types.Position(1, 17))
            await eventually(lambda: len(statuses) == 2)
            await command(client, "mmx.accepted", {"request_id": statuses[0].request_id})
            stats = await command(client, "mmx.stats", {})
        finally:
            await stop(client)
    row = next(r for r in stats["by_model"] if r["model"] == "stub-cheap")
    assert (row["accepted"], row["rejected"]) == (1, 0)


async def test_mmx_stats_counts_this_sessions_requests_in_a_shared_database(
    tmp_path: Path,
) -> None:
    """Two editors write one metrics database; each one's mmx.stats is its own session's,
    read from the database (with the verdicts written there), and `stats` shows both."""
    shared = tmp_path / "team.sqlite3"
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        options = {**settings(tmp_path, cheap, premium), "metrics": {"path": str(shared)}}
        first = await start(tmp_path / "one", init_options=options)
        second = await start(tmp_path / "two", init_options=options)
        try:
            statuses = collect_statuses(first)
            uri = open_text(first, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
            await inline(first, uri)
            await eventually(lambda: len(statuses) == 1)
            await command(first, "mmx.rejected", {"request_id": statuses[0].request_id})
            other = collect_statuses(second)
            for n in range(3):
                uri = open_text(second, (tmp_path / f"b{n}.py").as_uri(), FUNCTION, "python")
                await inline(second, uri)
            await eventually(lambda: len(other) == 3)
            mine = await command(first, "mmx.stats", {})
            theirs = await command(second, "mmx.stats", {})
        finally:
            await stop(first)
            await stop(second)
    assert mine["totals"]["requests"] == 1
    # (The second editor's answers come from the cache the first one filled.)
    assert theirs["totals"]["requests"] == 3
    assert theirs["totals"]["cache_hits"] == sum(1 for s in other if s.cached) == 3
    [row] = mine["by_model"]
    assert (row["model"], row["rejected"], row["accepted"]) == ("stub-cheap", 1, 0)
    assert row["cost_usd"] == pytest.approx(float(statuses[0].cost_usd))
    with MetricsStore(shared) as store:
        assert store.summary()["totals"]["requests"] == 4


async def test_estimates_follow_each_models_answers_from_the_database_and_the_session(
    tmp_path: Path,
) -> None:
    """A refactor's pre-call estimate uses what the model wrote before: the metrics
    database's answers at start, then the session's own."""
    path = tmp_path / "metrics.sqlite3"
    source = "def add(a, b):\n    total = a + b\n    return total\n"
    refactor = {"kind": "refactor", "range": {"start": {"line": 0, "character": 0}}}
    refactor["range"]["end"] = {"line": 2, "character": 16}
    with StubServer(reply="x = 1") as cheap, StubServer(reply="x = 1") as premium:
        options = {**settings(tmp_path, cheap, premium), "metrics": {"path": str(path)}}
        client = await start(tmp_path / "fresh", init_options=options)
        try:
            uri = open_text(client, (tmp_path / "add.py").as_uri(), source, "python")
            fresh = await command(client, "mmx.explain", {"uri": uri, **refactor})
            # A body answer of 3 tokens, where 200 were guessed: the next guess is lower.
            statuses = collect_statuses(client)
            body = {"uri": open_text(client, (tmp_path / "b.py").as_uri(), FUNCTION, "python")}
            body["position"] = {"line": 1, "character": 4}
            guessed = await command(client, "mmx.explain", body)
            await inline(client, body["uri"])
            await eventually(lambda: len(statuses) == 1)
            learned = await command(client, "mmx.explain", body)
            # The request path prices with the same learned sizes.
            other_text = FUNCTION.replace("add", "sum")  # another answer: not from the cache
            other = open_text(client, (tmp_path / "c.py").as_uri(), other_text, "python")
            await inline(client, other)
            await eventually(lambda: len(statuses) == 2)
        finally:
            await stop(client)
        assert not statuses[1].cached
        assert statuses[1].estimate_usd.cheap == learned["estimate_usd"]["cheap"]
        assert learned["estimate_usd"]["cheap"] < guessed["estimate_usd"]["cheap"]
        assert guessed["features"]["hole"] == "body"
        written = statuses[0].output_tokens
        assert learned["estimate_tokens"]["cheap"][1] == round(
            (guessed["estimate_tokens"]["cheap"][1] + written) / 2
        )
        with MetricsStore(path, linger_s=0) as store:
            for n in range(3):  # a verbose model: 30 times the selection
                store.record(
                    {
                        "request_id": f"old{n}",
                        "kind": "refactor",
                        "tier": "cheap",
                        "model": "stub-cheap",
                        "output_tokens": 600,
                        "features": {"hole": "selection", "selection_tokens": 20},
                    }
                )
        client = await start(tmp_path / "seeded", init_options=options)
        try:
            uri = open_text(client, (tmp_path / "add.py").as_uri(), source, "python")

            async def cheap_output() -> int:
                found = await command(client, "mmx.explain", {"uri": uri, **refactor})
                return int(found["estimate_tokens"]["cheap"][1])

            fresh_output = fresh["estimate_tokens"]["cheap"][1]
            deadline = time.monotonic() + 15
            while (seeded := await cheap_output()) == fresh_output:
                assert time.monotonic() < deadline, "the database's answers were not read"
                await asyncio.sleep(0.05)
            selection = fresh["features"]["selection_tokens"]
            assert seeded == 30 * selection
            premium_now = await command(client, "mmx.explain", {"uri": uri, **refactor})
            assert premium_now["estimate_tokens"]["premium"] == fresh["estimate_tokens"]["premium"]
        finally:
            await stop(client)


async def test_mmx_stats_says_why_when_nothing_is_recorded(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    options = {"metrics": {"path": str(blocker / "metrics.sqlite3")}}
    client = await start(tmp_path, init_options=options)
    try:
        with pytest.raises(Exception, match="no metrics are being recorded") as failed:
            await command(client, "mmx.stats", {})
        assert "metrics.path" in str(failed.value)
        # The server goes on answering.
        assert await command(client, "mmx.setTier", {"tier": "cheap", "scope": "next"})
    finally:
        await stop(client)


async def test_a_regression_is_shown_in_the_editor_once(tmp_path: Path) -> None:
    """Acceptance of a new model version fell: the editor is told once, not at every start."""
    path = tmp_path / "metrics.sqlite3"
    now = time.time()
    with MetricsStore(path, linger_s=0) as store:
        for i in range(130):
            recent = i >= 80
            request_id = f"r{i}"
            store.record(
                {
                    "request_id": request_id,
                    "time": now - (3600 if recent else 20 * 86400),
                    "kind": "inline",
                    "tier": "cheap",
                    "model": "stub-cheap",
                    "model_version": "stub-cheap-2026-11-20" if recent else "stub-cheap-2026-10-01",
                }
            )
            accepted = i < 72 if not recent else i < 95  # 90% before, 30% now
            store.verdict(request_id, "accepted" if accepted else "rejected")
    options = {"metrics": {"path": str(path)}}
    for start_number in (1, 2):
        client = await start(tmp_path, init_options=options)
        try:
            await asyncio.sleep(REGRESSION_FIRST_CHECK_S + 2.0)
            warnings = [m.message for m in client.messages if "fell to" in m.message]
        finally:
            await stop(client)
        if start_number == 1:
            assert warnings == [
                "mmx: acceptance of stub-cheap (stub-cheap-2026-11-20) fell to 30% (15/50) "
                "from 90% (72/80) before; p = 0.000. Compare models with `mmx-lsp eval`, or "
                "pin the previous version as the tier's model."
            ]
        else:
            assert warnings == []
