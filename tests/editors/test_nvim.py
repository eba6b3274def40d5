"""The Neovim plugin (editors/nvim) driven in a real headless Neovim, against the real server.

Each test runs one scenario script from editors/nvim/tests/ in Neovim 0.11.4 (ghost text drawn
by the plugin) and in a 0.12 development build (Neovim's own vim.lsp.inline_completion).
Install both with scripts/install-nvim.sh.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
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


def _scenario_env(
    nvim: Path,
    name: str,
    tmp_path: Path,
    stub_url: str,
    server_cmd: list[str] | None,
    env: dict[str, str] | None,
    timeout_s: float,
) -> tuple[Path, Path, dict[str, str]]:
    """The scenario script, its work dir and its environment (XDG dirs of its own)."""
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
    return script, work, full_env


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
    script, work, full_env = _scenario_env(
        nvim, name, tmp_path, stub_url, server_cmd, env, timeout_s
    )
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


# Lines of Neovim's screen that mean a prompt waits for a key: typing would go to it.
PROMPTS = ("Press ENTER", "-- More --", "Hit ENTER")


def run_in_terminal(
    nvim: Path,
    name: str,
    tmp_path: Path,
    stub_url: str,
    typing: list[str | float],
    timeout_s: float = 120,
) -> list[str]:
    """Runs editors/nvim/tests/NAME.lua in Neovim's real terminal UI inside tmux and types
    `typing` (text, or seconds to pause) as keys from the terminal once the scenario writes
    `ready`; fails if a screen ever shows a prompt or the scenario fails. Returns the screens.
    """
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux not found: apt-get install tmux", pytrace=False)
    log = tmp_path / "scenario.log"
    script, work, env = _scenario_env(
        nvim, name, tmp_path, stub_url, None, {"MMX_TEST_LOG": str(log)}, timeout_s
    )
    rc_file = work / "exit-code"
    runner = tmp_path / "run.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.isidentifier())
    runner.write_text(
        f"{exports}cd {shlex.quote(str(work))}\n"
        f"{shlex.quote(str(nvim))} --clean -c {shlex.quote(f'luafile {script}')}\n"
        f"echo $? > {shlex.quote(str(rc_file))}\n"
    )
    socket = f"mmx-test-{os.getpid()}-{name}"
    base = [tmux, "-L", socket]
    subprocess.run(
        [*base, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", f"sh {runner}"],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    screens: list[str] = []

    def screen() -> str:
        text = subprocess.run(
            [*base, "capture-pane", "-p"], capture_output=True, text=True, check=False
        ).stdout
        screens.append(text)
        for prompt in PROMPTS:
            if prompt in text:
                pytest.fail(f"{name}: a prompt blocks typing:\n{text}\n{_read(log)}", pytrace=False)
        return text

    def wait_for(path: Path, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            screen()
            if time.monotonic() > deadline:
                pytest.fail(f"{name}: no {what} in {timeout_s} s\n{screens[-1]}\n{_read(log)}")
            time.sleep(0.2)

    try:
        wait_for(work / "ready", "ready signal")
        for step in typing:
            if isinstance(step, float):
                end = time.monotonic() + step
                while time.monotonic() < end:
                    screen()
                    time.sleep(0.2)
                continue
            for char in step:
                subprocess.run([*base, "send-keys", "-l", char], check=True)
                time.sleep(0.08)
                screen()
        wait_for(rc_file, "exit")
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, check=False)
    code = rc_file.read_text().strip()
    if code != "0":
        pytest.fail(f"{name}: exit code {code}\n{screens[-1]}\n{_read(log)}", pytrace=False)
    return screens


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


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


def test_setup_with_no_options_starts_quietly(nvim: Path, tmp_path: Path) -> None:
    run_scenario(nvim, "setup_quiet", tmp_path)


def test_checkhealth_reports_endpoints_that_are_down_and_what_to_fix(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "checkhealth_down", tmp_path, stub_url)


def test_editing_mmx_toml_applies_without_a_restart(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "settings_file", tmp_path, stub_url)


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


def test_a_next_override_survives_a_cancelled_request(
    nvim: Path, tmp_path: Path, slow_stub_url: str
) -> None:
    run_scenario(nvim, "tier_next_cancel", tmp_path, slow_stub_url)


def test_stats_show_in_a_floating_table(nvim: Path, tmp_path: Path, stub_url: str) -> None:
    run_scenario(nvim, "stats", tmp_path, stub_url)


def test_a_long_code_action_shows_progress_and_typing_goes_on(
    nvim: Path, tmp_path: Path, slow_stub_url: str
) -> None:
    run_scenario(nvim, "progress", tmp_path, slow_stub_url)


def test_explain_action_answer_shows_in_a_markdown_float(
    nvim: Path, tmp_path: Path, stub_url: str
) -> None:
    run_scenario(nvim, "explanation", tmp_path, stub_url)


def test_provider_failure_is_notified_and_editing_goes_on(
    nvim: Path, tmp_path: Path, failing_stub_url: str
) -> None:
    run_scenario(nvim, "error_status", tmp_path, failing_stub_url)


def test_a_failing_provider_never_blocks_typing_in_a_real_terminal(
    nvim: Path, tmp_path: Path, failing_stub_url: str
) -> None:
    """HTTP 500 on every request while keys come from a terminal: no prompt on any screen,
    Insert mode throughout, every key in the buffer (the scenario checks those two)."""
    screens = run_in_terminal(
        nvim,
        "no_blocking",
        tmp_path,
        failing_stub_url,
        ["x = ", 2.5, "compute(a, ", 2.5, "b)  # DONE"],
    )
    assert any("error" in s for s in screens), "the statusline showed the failure"


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
