"""`mmx-lsp replay`: recorded editing sessions through the real server, with no key; the
account it prints, and the demo database that `stats --demo` and `report --demo` read."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from mmx_lsp.pricing import format_usd
from tests.e2e.conftest import REPO

pytestmark = pytest.mark.e2e

SESSIONS = REPO / "fixtures" / "sessions" / "vscode"
LEDGER = SESSIONS / "ledger_hour.jsonl"
RATELIMIT = SESSIONS / "ratelimit_hour.jsonl"


def mmx(data_home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # Any proxy would be a network path; the replay must not need one.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env["XDG_DATA_HOME"] = str(data_home)
    return subprocess.run(
        [sys.executable, "-m", "mmx_lsp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=data_home,
        env=env,
    )


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(script, SESSIONS / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[script] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def messages(path: Path) -> list[dict]:
    return [json.loads(line)["message"] for line in path.read_text().splitlines()]


def test_session_files_are_what_their_scripts_write() -> None:
    session = SESSIONS / "ledger_close_period.jsonl"
    written = [json.loads(line) for line in session.read_text().splitlines()]
    assert written == load("make_session").build()
    hour = load("make_hour")
    for spec in hour.SESSIONS:
        written = [json.loads(line) for line in (SESSIONS / spec.output).read_text().splitlines()]
        assert written == hour.build(spec), spec.output


@pytest.mark.parametrize("session", [LEDGER, RATELIMIT], ids=["python", "go"])
def test_an_hour_holds_completions_a_body_a_fix_a_docstring_and_a_refactor(
    session: Path,
) -> None:
    sent = messages(session)
    resolved = [m["params"] for m in sent if m["method"] == "codeAction/resolve"]
    assert [a["data"]["kind"] for a in resolved] == ["fix", "docstring", "refactor", "explain"]
    [fix] = [a for a in resolved if a["data"]["kind"] == "fix"]
    quoted = fix["title"].removeprefix("mmx: Fix “").removesuffix("”")
    assert fix["diagnostics"][0]["message"].startswith(quoted)
    keys = [m for m in sent if m["method"] == "textDocument/didChange"]
    completions = [m for m in sent if m["method"] == "textDocument/inlineCompletion"]
    assert len(keys) >= 300 and len(completions) >= 100


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], float]:
    home = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    done = mmx(home, "replay", str(LEDGER), str(RATELIMIT))
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return home, done.stdout.splitlines(), seconds


def decisions_shown(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """(tier, kind, place, reason) of the account's representative decisions."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Where requests went"))
    shown = []
    for head, reason in zip(lines[start + 1 :: 2], lines[start + 2 :: 2], strict=False):
        if not head.strip():
            break
        tier, kind, place, _estimate = head.split()
        shown.append((tier, kind, place, reason.strip()))
    return shown


def test_the_account_shows_premium_and_cheap_decisions_with_their_reasons(
    demo: tuple[Path, list[str], float],
) -> None:
    _, lines, _ = demo
    assert lines[0].startswith("Replayed ledger_hour.jsonl, ratelimit_hour.jsonl: ")
    assert "ledger.py, ratelimit.go" in lines[0]
    shown = decisions_shown(lines)
    premium = [d for d in shown if d[0] == "premium"]
    assert {(d[1], d[2].split(":")[0]) for d in premium} == {
        ("refactor", "ledger.py"),
        ("refactor", "ratelimit.go"),
    }
    for _tier, _kind, _place, reason in premium:
        assert re.search(r"spanning \d definitions.*above threshold", reason), reason
    cheap_kinds = {d[1] for d in shown if d[0] == "cheap"}
    assert {"fix", "docstring", "explain", "inline"} <= cheap_kinds
    for _tier, kind, _place, reason in shown:
        assert reason, "every decision shown says why"
        if kind != "inline":
            assert re.search(r"score \d\.\d\d (above|at or below) threshold", reason), reason
    assert len(lines) < 60, "a short account"


def amounts(line: str) -> list[Decimal]:
    return [Decimal(a) for a in re.findall(r"\$([0-9.]+)", line)]


def test_the_account_prices_each_tier_and_both_baselines(
    demo: tuple[Path, list[str], float],
) -> None:
    _, lines, _ = demo

    def row(label: str) -> str:
        [line] = [line for line in lines if line.startswith(f"  {label}")]
        return line

    cheap, premium, routed = row("cheap ("), row("premium ("), row("routed ")
    always_premium, always_cheap = row("always premium"), row("always cheap")
    assert int(premium.split()[2]) == 2
    # Each amount is shown to two significant digits.
    parts = float(amounts(cheap)[0] + amounts(premium)[0])
    assert parts == pytest.approx(float(amounts(routed)[0]), rel=0.1)
    assert amounts(always_cheap)[0] < amounts(routed)[0] < amounts(always_premium)[0]
    assert "% less" in always_premium


def test_the_account_counts_the_calls_cancellation_saved(
    demo: tuple[Path, list[str], float],
) -> None:
    _, lines, _ = demo
    sent = messages(LEDGER) + messages(RATELIMIT)
    routed = sum(
        1 for m in sent if m["method"] in ("textDocument/inlineCompletion", "codeAction/resolve")
    )
    cancels = sum(1 for m in sent if m["method"] == "$/cancelRequest")
    [line] = [line for line in lines if line.startswith("Cancellation: ")]
    assert f"of {routed} routed requests the editor cancelled {cancels} " in line
    assert f"{routed - cancels} were answered" in line
    [reuse] = [line for line in lines if line.startswith("Reuse: ")]
    assert "from the cache" in reuse and "typed ahead" in reuse


def test_the_demo_database_holds_the_session_for_stats_and_report(
    demo: tuple[Path, list[str], float],
) -> None:
    home, lines, _ = demo
    database = home / "mmx" / "demo.sqlite3"
    [recorded] = [line for line in lines if line.startswith("Recorded ")]
    assert str(database) in recorded
    commands = [line.strip() for line in lines]
    assert "mmx-lsp stats --demo" in commands and "mmx-lsp report --demo" in commands
    conn = sqlite3.connect(database)
    count, premium = conn.execute("SELECT count(*), sum(tier = 'premium') FROM requests").fetchone()
    conn.close()
    assert f"Recorded {count} requests" in recorded
    assert premium == 2
    # No model was called: what each answered request would have cost is recorded as such.
    conn = sqlite3.connect(database)
    answered = conn.execute(
        "SELECT cost_pusd, input_tokens, json_extract(extra, '$.usage_estimated')"
        " FROM requests WHERE cancelled = 0"
    ).fetchall()
    conn.close()
    assert answered and all(cost > 0 and tokens > 0 and marked for cost, tokens, marked in answered)
    total = Decimal(sum(cost for cost, _, _ in answered)) / 10**12
    [routed] = [line for line in lines if line.startswith("  routed ")]
    assert routed.split()[-1] == format_usd(total)

    stats = mmx(home, "stats", "--demo")
    assert stats.returncode == 0, stats.stderr
    assert int(total_line(stats.stdout).split("│")[3]) == count
    assert "gpt-5.5" in stats.stdout and str(database) in stats.stdout
    assert format_usd(total) in total_line(stats.stdout)
    assert "costs are the router's estimates" in stats.stdout

    report = mmx(home, "report", "--demo", "--out", str(home / "report"))
    assert report.returncode == 0, report.stderr
    page = (home / "report" / "index.html").read_text()
    charts = sorted(p.name for p in (home / "report").glob("*.png"))
    assert "spend_per_day.png" in charts and "tier_mix.png" in charts
    assert page.count('src="data:image/png;base64,') == len(charts)


def total_line(table: str) -> str:
    return next(line for line in table.splitlines() if "total" in line)


def test_a_replay_replaces_the_demo_database(demo: tuple[Path, list[str], float]) -> None:
    home, _, _ = demo
    done = mmx(home, "replay", str(RATELIMIT))
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(home / "mmx" / "demo.sqlite3")
    [count] = conn.execute("SELECT count(*) FROM requests").fetchone()
    conn.close()
    assert f"Recorded {count} requests" in done.stdout
    conn = sqlite3.connect(home / "mmx" / "demo.sqlite3")
    languages = {row[0] for row in conn.execute("SELECT DISTINCT language FROM requests")}
    conn.close()
    assert languages == {"go"}


def test_verbose_lists_every_answered_request(tmp_path: Path) -> None:
    done = mmx(tmp_path, "replay", "--verbose", "--no-record", str(LEDGER))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:8] == [
        "#",
        "request",
        "at",
        "kind",
        "tier",
        "model",
        "estimate",
        "premium",
    ]
    rows = [line.split() for line in lines[1:] if line.split() and line.split()[0].isdigit()]
    sent = messages(LEDGER)
    cancelled = {m["params"]["id"] for m in sent if m["method"] == "$/cancelRequest"}
    answered = [
        m
        for m in sent
        if m["method"] in ("textDocument/inlineCompletion", "codeAction/resolve")
        and m["id"] not in cancelled
    ]
    assert len(rows) == len(answered)
    assert any(line.startswith("Where requests went") for line in lines), "the account follows"
    assert not (tmp_path / "mmx" / "demo.sqlite3").exists(), "--no-record"


def test_realtime_keeps_the_recorded_pace(tmp_path: Path) -> None:
    sent = messages(LEDGER)
    opening = [
        m for m in sent if m["method"] in ("initialize", "initialized", "textDocument/didOpen")
    ]
    uri = opening[-1]["params"]["textDocument"]["uri"]
    request = {
        "jsonrpc": "2.0",
        "id": 90,
        "method": "textDocument/inlineCompletion",
        "params": {
            "textDocument": {"uri": uri},
            "position": {"line": 30, "character": 8},
            "context": {"triggerKind": 2, "selectedCompletionInfo": None},
        },
    }
    records = [{"ms": 0, "message": m} for m in opening] + [
        {"ms": 2500, "message": request},
        {"ms": 3000, "message": {"jsonrpc": "2.0", "id": 91, "method": "shutdown"}},
        {"ms": 3000, "message": {"jsonrpc": "2.0", "method": "exit"}},
    ]
    session = tmp_path / "short.jsonl"
    session.write_text("".join(json.dumps(r) + "\n" for r in records))
    started = time.monotonic()
    done = mmx(tmp_path, "replay", "--realtime", "--json", str(session))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 3.0
    result = json.loads(done.stdout)
    [decision] = result["decisions"]
    assert decision["kind"] == "inline" and decision["tier"] in ("cheap", "premium")
    assert result["recorded"]["requests"] == 1
