"""A real OpenAI-compatible server for the integration tests: llama.cpp with a tiny model.

`scripts/install-llama.sh` installs `llama-cpp-python[server]` and writes the model. The
server is started once per test session on a free loopback port and stopped by its PID.
Nothing here skips: a missing install is a failure that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / ".cache" / "models" / "tiny-llama.gguf"
MODEL_ALIAS = "tiny"
INSTALL_HINT = "run `scripts/install-llama.sh` (as root, from the repository root) first"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LlamaServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the alias the server answers to
    pid: int
    startup_s: float
    log_path: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_installed(model: Path) -> None:
    missing = [
        name
        for name in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.fail(
            f"llama.cpp server is not installed (missing: {', '.join(missing)}): {INSTALL_HINT}",
            pytrace=False,
        )
    if not model.is_file():
        pytest.fail(f"the tiny test model {model} is missing: {INSTALL_HINT}", pytrace=False)


def _models_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(row.get("id") == MODEL_ALIAS for row in body.get("data", []))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _start(
    model: Path, log_path: Path, interrupt: bool
) -> tuple[subprocess.Popen[bytes], LlamaServer]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
        # As the README starts it: a request that arrives waits for the running one, which
        # llama-cpp-python otherwise ends at once (a code action cut short by a completion).
        "--interrupt_requests",
        str(interrupt),
    ]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
    try:
        deadline = started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with code {process.returncode}")
            if _models_ready(base_url):
                server = LlamaServer(
                    base_url, MODEL_ALIAS, process.pid, time.monotonic() - started, log_path
                )
                return process, server
            time.sleep(0.1)
        raise RuntimeError(f"llama.cpp server not ready after {READY_TIMEOUT_S:.0f} s")
    except BaseException:
        _stop(process)
        raise


def _serve(factory: pytest.TempPathFactory, *, interrupt: bool) -> Iterator[LlamaServer]:
    model = Path(os.environ.get("MMX_TEST_LLAMA_MODEL", DEFAULT_MODEL))
    _check_installed(model)
    log_dir = factory.mktemp("llama-server")
    errors: list[str] = []
    for attempt in range(3):  # another process may take the free port before the server
        log_path = log_dir / f"server-{attempt}.log"
        try:
            process, server = _start(model, log_path, interrupt)
        except RuntimeError as exc:
            errors.append(f"{exc}\n{_tail(log_path)}")
            continue
        try:
            yield server
        finally:
            _stop(process)
        return
    pytest.fail("could not start the llama.cpp server:\n" + "\n---\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A running llama.cpp server with the tiny model, started as the README says; stopped at
    the end of the session."""
    yield from _serve(tmp_path_factory, interrupt=False)


@pytest.fixture(scope="module")
def interrupting_llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The same server with llama-cpp-python's default: each new request ends the running one."""
    yield from _serve(tmp_path_factory, interrupt=True)


@pytest.fixture(scope="session")
def llama_base_url(llama_server: LlamaServer) -> str:
    """`http://127.0.0.1:PORT/v1` of the running llama.cpp server."""
    return llama_server.base_url
