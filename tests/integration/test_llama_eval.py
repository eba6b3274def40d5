"""`mmx-lsp eval` against a real OpenAI-compatible server: llama.cpp with a tiny model.

The model's answers are gibberish (random weights), so tasks are not expected to pass: the
run must complete, every task must get an answer from the server, priced exactly, and pass
or fail must be what the task's checks say of that answer. The cheap tier uses the
completions API (fill-in-the-middle), the premium tier chat. llama-cpp-python's server
answers one request at a time and cuts a stream short when another request comes, so the
run uses one job; its streams carry no usage, so the token counts are estimates (and say so).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from mmx_lsp.evaluation import check, load_suite
from tests.e2e.conftest import isolated_env

from .conftest import REPO, LlamaServer

SUITE = load_suite(REPO / "fixtures" / "eval")
PRICES = {"cheap": (Decimal("0.10"), Decimal("0.20")), "premium": (Decimal("3"), Decimal("15"))}
MAX_OUTPUT_TOKENS = 24
MILLION = Decimal(1_000_000)


def workspace(tmp: Path, server: LlamaServer) -> Path:
    (tmp / "mmx.toml").write_text(
        f"""
[providers.llama]
base_url = "{server.base_url}"
api_key_env = ""
timeout_s = 120
max_retries = 0

[tiers.cheap]
provider = "llama"
model = "{server.model}"
api = "completions"
input_usd_per_mtok = "{PRICES["cheap"][0]}"
output_usd_per_mtok = "{PRICES["cheap"][1]}"
max_output_tokens = {MAX_OUTPUT_TOKENS}

[tiers.premium]
provider = "llama"
model = "{server.model}"
api = "chat"
input_usd_per_mtok = "{PRICES["premium"][0]}"
output_usd_per_mtok = "{PRICES["premium"][1]}"
max_output_tokens = {MAX_OUTPUT_TOKENS}
""",
        "utf-8",
    )
    return tmp


def test_the_suite_runs_against_llama_cpp(llama_server: LlamaServer, tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmx_lsp",
            "eval",
            str(SUITE.path),
            "--format",
            "json",
            "--jobs",
            "1",
            "--workspace",
            str(workspace(tmp_path, llama_server)),
            "--db",
            str(db),
        ],
        cwd=REPO,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows: dict[str, dict[str, Any]] = {row["label"]: row for row in data["rows"]}
    assert list(rows) == ["cheap", "premium", "auto"]
    tasks = {task.name: task for task in SUITE.tasks}
    for tier in ("cheap", "premium"):
        row = rows[tier]
        errors = [r["error"] for r in row["results"] if r["error"]]
        assert row["tasks"] == len(tasks) and row["errors"] == 0, errors
        assert [r["task"] for r in row["results"]] == list(tasks)
        price_in, price_out = PRICES[tier]
        total = Decimal(0)
        for outcome in row["results"]:
            task = tasks[outcome["task"]]
            assert outcome["error"] is None and outcome["model_version"], outcome
            # llama-cpp-python's streams carry no usage: counted from the text, and marked.
            assert isinstance(outcome["usage_estimated"], bool)
            assert outcome["input_tokens"] > 0 and outcome["output_tokens"] > 0, outcome
            assert outcome["answer"].strip() or outcome["reason"] == "no answer"
            cost = (
                outcome["input_tokens"] * price_in + outcome["output_tokens"] * price_out
            ) / MILLION
            assert Decimal(outcome["cost_usd"]) == cost
            total += cost
            # Pass or fail is the task's checks on the answer the model gave.
            verdict = asyncio.run(check(task, outcome["answer"]))
            assert (outcome["passed"], outcome["reason"]) == (verdict.passed, verdict.reason)
        assert Decimal(row["cost_usd"]) == total
        assert row["versions"] == [llama_server.model]
        assert 0 < row["p50_ms"] <= row["p95_ms"]
    auto = rows["auto"]
    assert auto["tasks"] == len(tasks) and auto["errors"] == 0
    assert sum(auto["routed"].values()) == len(tasks)
    assert f"{2 * len(tasks)} results recorded in {db}" in result.stderr
