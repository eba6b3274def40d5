"""The command line as a user runs it: explain and config, with no server and no key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mmx_lsp", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explain_prints_the_decision_and_its_features() -> None:
    result = run("explain", "fixtures/python/ledger.py:21", "--to", "45")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "refactor → premium (gpt-5.5)" in out
    assert "spanning 4 definitions" in out
    assert "estimate: cheap ≈$" in out and "premium ≈$" in out
    assert "definitions_touched" in out


def test_explain_json_is_the_decision() -> None:
    result = run("explain", "fixtures/go/ratelimit.go:45:18", "--json")
    decision = json.loads(result.stdout)
    assert decision["kind"] == "inline" and decision["tier"] == "cheap"
    assert decision["features"]["language"] == "go"
    assert set(decision["estimate_usd"]) == {"cheap", "premium"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "fixtures/python/ledger.py"], "FILE:LINE"),
        (["explain", "fixtures/python/nope.py:3"], "cannot read"),
        (["explain", "fixtures/python/ledger.py:0"], "start at 1"),
        (["explain", "fixtures/python/ledger.py:9999"], "has 58 lines"),
        (["explain", "fixtures/python/ledger.py:3", "--to", "x"], "LINE[:COL]"),
    ],
    ids=["no-line", "missing-file", "line-zero", "past-the-end", "bad-to"],
)
def test_explain_bad_input_says_what_to_fix(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_reads_invalid_utf8_and_binary_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"def f():\n    return '\xff\xfe'\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02" * 1000)
    assert run("explain", f"{bad}:2:5").returncode == 0
    result = run("explain", f"{blob}:1:1", "--json")
    assert json.loads(result.stdout)["features"]["language"] == "plaintext"


def test_config_shows_each_value_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "mmx.toml").write_text(
        '[routing]\npremium_above = 0.7\n[tiers.cheap]\nmodel = "gpt-4.1-mini"\n'
    )
    result = run(
        "config", "--workspace", str(tmp_path), env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["routing.premium_above"].endswith(f"# {tmp_path / 'mmx.toml'}")
    assert "0.7" in lines["routing.premium_above"]
    assert lines["routing.cascade"].endswith("# default")
    assert '"gpt-4.1-mini"' in lines["tiers.cheap.model"]


def test_config_reports_bad_files_and_keeps_defaults(tmp_path: Path) -> None:
    (tmp_path / "mmx.toml").write_text("[routing]\npremium_above = 3\n")
    result = run(
        "config",
        "--workspace",
        str(tmp_path),
        "--json",
        env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")},
    )
    assert "routing.premium_above" in result.stderr and "mmx.toml" in result.stderr
    assert json.loads(result.stdout)["routing.premium_above"] == {
        "value": 0.55,
        "source": "default",
    }


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("mmx-lsp ")
    assert "explain" in run("--help").stdout
