"""Every routed request leaves a row in the metrics database, read back by `mmx-lsp stats`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import command, isolated_env, open_text, start, stop
from tests.e2e.test_model_calls import FUNCTION, collect_statuses, eventually, inline, settings
from tests.support.openai_stub import StubServer

pytestmark = pytest.mark.e2e


async def test_requests_and_verdicts_reach_the_metrics_database(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
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
    result = subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "stats", "--json"],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"]["requests"] == 2
    assert summary["totals"]["cache_hits"] == 1
    row = next(r for r in summary["by_model"] if r["model"] == "stub-cheap")
    assert row["accepted"] == 1
    assert row["cost_usd"] == pytest.approx(float(statuses[0].cost_usd))
