"""The learned router end to end: the real server, a loopback provider per tier, a router file
that changes under a running server, and `mmx-lsp calibrate` on the server's own records."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from mmx_lsp.router import load_built_in
from mmx_lsp.scoring import FEATURE_NAMES
from tests.e2e.conftest import command, isolated_env, open_text, start, stop
from tests.support.openai_stub import StubServer

pytestmark = pytest.mark.e2e
TIMEOUT_S = 15.0

# Six methods whose bodies are to be written, each after its docstring.
CLASS = """class Ledger:
    def __init__(self):
        self.entries = []
{methods}"""
METHOD = '''
    def {name}(self, amount):
        """{doc}
        :return: the new balance
        """
{indent}
'''
DOCS = ["Add an amount.", "Remove an amount, refusing to go below zero unless overdraft is on."]


def ledger(file_index: int) -> tuple[str, list[types.Position]]:
    methods, positions = [], []
    row = 3
    for m in range(6):
        doc = DOCS[m % 2] * (1 + m)
        methods.append(METHOD.format(name=f"op{file_index}_{m}", doc=doc, indent=" " * 8))
        row += 5
        positions.append(types.Position(row, 8))
        row += 1
    return CLASS.format(methods="".join(methods)), positions


def settings(stub: StubServer, tmp: Path, **routing: Any) -> dict[str, Any]:
    return {
        "providers": {"loopback": {"base_url": stub.base_url, "api_key_env": "", "max_retries": 0}},
        "tiers": {
            "cheap": {
                "provider": "loopback",
                "model": "stub-cheap",
                "input_usd_per_mtok": "0.25",
                "output_usd_per_mtok": "2",
            },
            "premium": {
                "provider": "loopback",
                "model": "stub-premium",
                "input_usd_per_mtok": "5",
                "output_usd_per_mtok": "40",
            },
        },
        "routing": {"failed_answer_usd": "0", **routing},
        "cache": {"backend": "off"},
    }


async def inline(client: LanguageClient, uri: str, position: types.Position) -> Any:
    status = asyncio.ensure_future(client.wait_for_notification("mmx/status"))
    await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=position,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    return await asyncio.wait_for(status, TIMEOUT_S)


async def explain(client: LanguageClient, uri: str, position: types.Position) -> dict[str, Any]:
    return await command(
        client,
        "mmx.explain",
        {"uri": uri, "position": {"line": position.line, "character": position.character}},
    )


async def wait_for_router(
    client: LanguageClient, uri: str, position: types.Position, version: str
) -> dict[str, Any]:
    """mmx.explain until it names `version` (the server looks at the file every 2 s)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        decision = await explain(client, uri, position)
        if decision["router"] == version or time.monotonic() > deadline:
            return decision
        await asyncio.sleep(0.3)


async def test_a_body_is_routed_by_the_learned_router_and_the_status_says_which(
    tmp_path: Path,
) -> None:
    built_in = load_built_in(FEATURE_NAMES)
    with StubServer(reply="self.entries.append(amount)\n        return sum(self.entries)") as stub:
        client = await start(tmp_path, init_options=settings(stub, tmp_path))
        try:
            text, positions = ledger(0)
            uri = open_text(client, (tmp_path / "ledger.py").as_uri(), text, "python")
            decision = await explain(client, uri, positions[0])
            assert decision["router"] == built_in.version
            assert 0 < decision["p_cheap_ok"] < 1
            assert decision["score"] == pytest.approx(1 - decision["p_cheap_ok"], abs=1e-4)
            assert set(decision["expected_usd"]) == {"cheap_first", "premium"}
            # Failures that cost nothing: cheap first is always the cheaper way.
            assert decision["tier"] == "cheap"
            status = await inline(client, uri, positions[0])
            assert (status.tier, status.router) == ("cheap", built_in.version)
            assert status.p_cheap_ok == pytest.approx(decision["p_cheap_ok"])
            line = await explain(client, uri, types.Position(2, 20))
            assert line["router"] == "weights/1" and line["p_cheap_ok"] is None
        finally:
            await stop(client)


async def test_a_flagged_body_goes_to_premium_and_a_broken_router_file_is_named_once(
    tmp_path: Path,
) -> None:
    router_file = tmp_path / "team-router.json"
    router_file.write_text('{"format": 1, "version": ', encoding="utf-8")
    with StubServer() as stub:
        stub.reply_by_model = {
            "stub-cheap": "self.balance += amount\n        return self.balance",
            "stub-premium": "self.entries.append(amount)\n        return sum(self.entries)",
        }
        client = await start(
            tmp_path,
            init_options=settings(
                stub, tmp_path, router_file=str(router_file), failed_answer_usd="0.02"
            ),
        )
        try:
            text, positions = ledger(1)
            uri = open_text(client, (tmp_path / "ledger.py").as_uri(), text, "python")
            status = await inline(client, uri, positions[1])
            # The cheap body uses self.balance, which the class never sets: premium's is kept.
            assert status.escalated is True and status.tier == "premium"
            assert [a.model for a in status.attempts] == ["stub-cheap", "stub-premium"]
            await explain(client, uri, positions[2])
            await asyncio.sleep(0.5)
            about_router = [m.message for m in client.messages if "team-router.json" in m.message]
            assert len(about_router) == 1
            assert "built-in router" in about_router[0] and "mmx-lsp calibrate" in about_router[0]
            # Nothing lost: the request is recorded with the router that decided it.
            record = await _record_of(
                tmp_path / "xdg_data_home" / "mmx" / "metrics.sqlite3", status.request_id
            )
            assert record["router"] == load_built_in(FEATURE_NAMES).version
            assert 0 < record["p_cheap_ok"] < 1 and record["file"]
        finally:
            await stop(client)


async def test_calibrate_refits_from_the_servers_own_verdicts_and_the_server_picks_it_up(
    tmp_path: Path,
) -> None:
    env = isolated_env(tmp_path)
    data = tmp_path / "xdg_data_home" / "mmx"
    with StubServer(reply="self.entries.append(amount)\n        return sum(self.entries)") as stub:
        client = await start(tmp_path, init_options=settings(stub, tmp_path))
        try:
            few = await _answer_and_judge(client, tmp_path, files=1, per_file=3)
            database = data / "metrics.sqlite3"
            await _wait_for_rows(database, few)
            refused = _calibrate(env)
            assert refused.returncode == 2
            assert "too few verdicts" in refused.stderr and "at least 40" in refused.stderr
            assert not (data / "router.json").exists()

            total = few + await _answer_and_judge(client, tmp_path, files=7, per_file=6)
            await _wait_for_rows(database, total)
            done = _calibrate(env)
            assert done.returncode == 0, done.stderr
            assert "held out by file" in done.stdout and "AUROC" in done.stdout
            written = json.loads((data / "router.json").read_text(encoding="utf-8"))
            assert written["version"].startswith("calibrated-")
            assert written["fitted_on"]["verdicts"] == total
            assert (data / f"router-{written['version']}.json").exists()

            _text, positions = ledger(0)
            uri = (tmp_path / "file0.py").as_uri()
            decision = await wait_for_router(client, uri, positions[0], written["version"])
            assert decision["router"] == written["version"]
        finally:
            await stop(client)


async def _answer_and_judge(
    client: LanguageClient, tmp_path: Path, *, files: int, per_file: int
) -> int:
    """Inline bodies in several files, accepted when the docstring is short."""
    count = 0
    for f in range(files):
        text, positions = ledger(f)
        uri = open_text(client, (tmp_path / f"file{f}.py").as_uri(), text, "python")
        for m, position in enumerate(positions[:per_file]):
            status = await inline(client, uri, position)
            verdict = "mmx.accepted" if m % 2 == 0 else "mmx.rejected"
            await command(client, verdict, {"request_id": status.request_id})
            count += 1
    return count


async def _wait_for_rows(database: Path, count: int) -> None:
    """Until the server's metrics writer has written `count` verdicts."""
    deadline = time.monotonic() + TIMEOUT_S
    found = 0
    while time.monotonic() < deadline:
        if database.exists():
            try:
                with sqlite3.connect(database) as conn:
                    found = conn.execute(
                        "SELECT COUNT(*) FROM requests WHERE verdict IS NOT NULL"
                    ).fetchone()[0]
            except sqlite3.Error:
                found = 0
            if found >= count:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{found} of {count} verdicts written to {database}")


async def _record_of(database: Path, request_id: str) -> dict[str, Any]:
    """The `extra` facts of a request's row, once the server's writer has written it."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if database.exists():
            try:
                with sqlite3.connect(database) as conn:
                    row = conn.execute(
                        "SELECT extra FROM requests WHERE request_id = ?", (request_id,)
                    ).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None:
                return dict(json.loads(row[0] or "{}"))
        await asyncio.sleep(0.2)
    raise AssertionError(f"no record of {request_id} in {database}")


def _calibrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "calibrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
