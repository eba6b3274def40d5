"""`mmx-lsp replay`: a recorded editing session through the real server, with no key."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

pytestmark = pytest.mark.e2e

SESSION = REPO / "fixtures" / "sessions" / "vscode" / "ledger_close_period.jsonl"


def run_replay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # Any proxy would be a network path; the replay must not need one.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    return subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "replay", str(SESSION), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )


def test_session_file_is_what_its_script_writes(tmp_path: Path) -> None:
    script = SESSION.parent / "make_session.py"
    assert SESSION.exists()
    spec = importlib.util.spec_from_file_location("make_session", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = module.build()
    written = [json.loads(line) for line in SESSION.read_text().splitlines()]
    assert written == records
    keystrokes = [r for r in written if r["message"]["method"] == "textDocument/didChange"]
    assert len(keystrokes) >= 500


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    done = run_replay(tmp_path_factory.mktemp("replay"))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_replay_prints_every_decision_with_tier_model_and_estimate(replayed: list[str]) -> None:
    assert replayed[0].split() == [
        "#",
        "request",
        "at",
        "kind",
        "tier",
        "model",
        "estimate",
        "premium",
    ]
    rows = [row for row in map(str.split, replayed[1:]) if row and row[0].isdigit()]
    rows = [row for row in rows if row[1] in ("inline", "action")]
    messages = [json.loads(line)["message"] for line in SESSION.read_text().splitlines()]
    routed = [
        m
        for m in messages
        if m["method"] in ("textDocument/inlineCompletion", "codeAction/resolve")
    ]
    assert len(rows) == len(routed), "one decision per routed request"
    assert {row[3] for row in rows} == {"inline", "refactor", "docstring", "explain"}
    for row in rows:
        assert row[4] in ("cheap", "premium")
        assert row[5] in ("gpt-5-mini", "gpt-5.5")
        estimate, premium = float(row[6].lstrip("$")), float(row[7].lstrip("$"))
        assert 0 < estimate <= premium


def test_replay_totals_the_session_against_always_premium(replayed: list[str]) -> None:
    [total] = [line for line in replayed if line.startswith("total: ")]
    words = total.split()
    routed, premium = float(words[2].lstrip("$")), float(words[5].rstrip(":").lstrip("$"))
    assert 0 < routed < premium
    [counts] = [line for line in replayed if " keystrokes, " in line]
    assert int(counts.split()[0]) >= 500
    assert "no API key, no network" in replayed[-1]
