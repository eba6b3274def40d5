"""The Neovim plugin (editors/nvim) driven in a real headless Neovim, against the real server.

Each test runs one scenario script from editors/nvim/tests/ in Neovim 0.11.4 (ghost text drawn
by the plugin) and in a 0.12 development build (Neovim's own vim.lsp.inline_completion).
Install both with scripts/install-nvim.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.editors

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "nvim"
SCENARIOS = PLUGIN / "tests"
NVIM_DIR = REPO / ".cache" / "nvim"
STUB = REPO / "tests" / "support" / "openai_stub.py"
STUB_REPLY = "return a + b"
SERVER_CMD = [sys.executable, "-m", "mmx_lsp"]

BUILDS = [
    pytest.param("0.11", id="nvim-0.11"),
    pytest.param("0.12", id="nvim-0.12"),
]


@pytest.fixture(params=BUILDS)
def nvim(request: pytest.FixtureRequest) -> Path:
    """The Neovim binary of a build; run_scenario fails (never skips) when it is missing."""
    return NVIM_DIR / request.param / "bin" / "nvim"


def _stub(*args: str) -> Iterator[str]:
    """Runs the loopback OpenAI-compatible server with ARGS; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0", "--reply", STUB_REPLY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"the OpenAI stub did not start (first line: {url!r})")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    """The stub answering every request with STUB_REPLY."""
    yield from _stub()


@pytest.fixture(scope="module")
def failing_stub_url() -> Iterator[str]:
    """The stub answering every request with HTTP 500."""
    yield from _stub("--mode", "500")


@pytest.fixture(scope="module")
def slow_stub_url() -> Iterator[str]:
    """The stub waiting 3 s before each answer."""
    yield from _stub("--mode", "slow", "--delay", "3")


def _text(data: str | bytes | None) -> str:
    """Output captured before a timeout (bytes even in text mode)."""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def run_scenario(
    nvim: Path,
    name: str,
    tmp_path: Path,
    stub_url: str = "http://127.0.0.1:9/v1",
    server_cmd: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 90,
) -> str:
    """Runs editors/nvim/tests/NAME.lua in a headless Neovim; fails with its output on error."""
    if not nvim.exists():
        pytest.fail(f"Neovim not found at {nvim}: run scripts/install-nvim.sh first", pytrace=False)
    script = SCENARIOS / f"{name}.lua"
    assert script.exists(), script
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    full_env = dict(os.environ)
    for var in ("CONFIG", "CACHE", "DATA", "STATE"):
        d = tmp_path / f"xdg-{var.lower()}"
        d.mkdir(exist_ok=True)
        full_env[f"XDG_{var}_HOME"] = str(d)
    full_env.update(
        {
            "MMX_TEST_PLUGIN": str(PLUGIN),
            "MMX_TEST_SERVER_CMD": json.dumps(server_cmd or SERVER_CMD),
            "MMX_TEST_STUB_URL": stub_url,
            "MMX_TEST_WORKDIR": str(work),
            "MMX_TEST_TIMEOUT_MS": str(int((timeout_s - 10) * 1000)),
            "MMX_STUB_KEY": "sk-test-not-a-secret-4242",
        }
    )
    # `mmx-lsp` from the same installation as this Python, for the scenarios that use $PATH.
    full_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), full_env.get("PATH", "")])
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            [str(nvim), "--headless", "--clean", "-c", f"luafile {script}"],
            cwd=work,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (_text(exc.stdout), _text(exc.stderr))
        pytest.fail(f"{name}: Neovim did not exit in {timeout_s} s\n{out}\n{err}", pytrace=False)
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    if proc.returncode != 0:
        pytest.fail(f"{name}: exit code {proc.returncode}\n{output}", pytrace=False)
    return output


# --- options, installation, faults that need no model call ------------------------------------


def test_options_of_the_wrong_type_are_reported_and_editing_goes_on(
    nvim: Path, tmp_path: Path
) -> None:
    run_scenario(nvim, "bad_options", tmp_path)


def test_plugin_loads_from_a_plain_packpath(nvim: Path, tmp_path: Path) -> None:
    run_scenario(nvim, "packpath", tmp_path)


def test_malformed_status_is_ignored_with_a_warning(nvim: Path, tmp_path: Path) -> None:
    run_scenario(nvim, "malformed_status", tmp_path)


def test_missing_server_is_reported_and_editing_goes_on(nvim: Path, tmp_path: Path) -> None:
    run_scenario(nvim, "server_missing", tmp_path)


# --- against the real server: routing, overrides, health, faults ----------------------------


def test_checkhealth_runs_clean_with_the_server_attached(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "checkhealth", tmp_path, stub_url)


def test_tier_command_overrides_the_route_and_explain_shows_it(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "tier_command", tmp_path, stub_url)


def test_code_actions_show_tier_and_cost_and_override_the_tier(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "code_actions", tmp_path, stub_url)


def test_settings_changes_reach_the_running_server(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "settings_change", tmp_path, stub_url)


def test_server_crash_is_reported_and_editing_goes_on(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "server_crash", tmp_path, stub_url)


# --- ghost text, status and verdicts: answers from the stub through the real server ----------


def test_ghost_text_appears_and_tab_accepts_it_and_reports_acceptance(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "inline_accept", tmp_path, stub_url)


def test_dismissing_ghost_text_reports_rejection_and_tab_falls_through(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "dismiss", tmp_path, stub_url)


def test_typing_on_cancels_the_request_in_flight(
    nvim: Path, tmp_path: Path, slow_stub_url: str
) -> None:
    run_scenario(nvim, "cancel", tmp_path, slow_stub_url)


def test_statusline_shows_tier_model_and_cost(nvim: Path, tmp_path: Path, stub_url: str) -> None:
    run_scenario(nvim, "statusline", tmp_path, stub_url)


def test_tier_override_changes_the_next_request_tier(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "tier_next", tmp_path, stub_url)


def test_stats_show_in_a_floating_table(nvim: Path, tmp_path: Path, stub_url: str) -> None:
    run_scenario(nvim, "stats", tmp_path, stub_url)


def test_explain_action_answer_shows_in_a_markdown_float(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "explanation", tmp_path, stub_url)


def test_provider_failure_is_notified_and_editing_goes_on(
    nvim: Path, tmp_path: Path, failing_stub_url: str
) -> None:
    run_scenario(nvim, "error_status", tmp_path, failing_stub_url)


def test_vim_lsp_enable_alone_starts_the_server_from_lsp_mmx_lua(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "enable_only", tmp_path, stub_url)


def test_lua_sources_are_stylua_formatted() -> None:
    stylua = NVIM_DIR / "stylua" / "node_modules" / ".bin" / "stylua"
    if not stylua.exists():
        found = shutil.which("stylua")
        if not found:
            pytest.fail("stylua not found: run scripts/install-nvim.sh first", pytrace=False)
        stylua = Path(found)
    proc = subprocess.run(
        [str(stylua), "--check", "."], cwd=PLUGIN, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
