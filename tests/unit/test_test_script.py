"""scripts/test, the README's test command: it says what it installs and why, and keeps
pytest's exit status."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test"


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def test_readme_and_ci_run_the_same_test_command() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines()[1:]]
    # The test command is the Quick start's last.
    command = [c for c in commands if c][-1]
    assert command == "scripts/test"
    ci = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    assert command in [line.strip() for line in ci]


def test_check_names_what_is_missing_and_why_and_installs_nothing(tmp_path: Path) -> None:
    # A PATH with the shell's few tools and no redis-server, chromium or npm.
    for tool in ("bash", "dirname", "date", "sed", "id"):
        found = shutil.which(tool)
        assert found is not None, tool
        (tmp_path / tool).symlink_to(found)
    done = run("--check", "--fast", path=str(tmp_path))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert any(
        line.startswith("scripts/test: missing: redis-server") and "Redis cache tests" in line
        for line in lines
    ), lines
    assert any(line.startswith("scripts/test: missing: chromium") for line in lines), lines
    assert not any("installing" in line for line in lines), lines
    assert lines[-1] == "scripts/test: 2 missing; scripts/test installs them"
    assert done.stdout == ""


def test_no_collected_test_keeps_pytests_exit_status_5() -> None:
    done = run("--fast", "-q", "-k", "no_test_has_this_name")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "deselected" in done.stdout
