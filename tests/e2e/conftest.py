"""Start the real server as a subprocess over stdio, the way an editor does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
LANGUAGE_IDS = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".cpp": "cpp",
}


def isolated_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[name] = str(tmp / name.lower())
    return env


def spawn_stdio(tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    """The server as an editor starts it, on raw pipes: for tests that write the bytes."""
    return subprocess.Popen(
        [sys.executable, "-m", "mmx_lsp", *args],
        env=isolated_env(tmp),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def stats_json(tmp: Path) -> dict[str, Any]:
    """What `mmx-lsp stats --json` prints for the isolated data directory."""
    result = subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "stats", "--json"],
        env=isolated_env(tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


async def start(
    tmp: Path,
    *,
    init_options: Any = None,
    capabilities: str = "visual_studio_code",
    workspace: Path | None = None,
    env: dict[str, str] | None = None,
    before_initialize: Callable[[LanguageClient], None] | None = None,
) -> LanguageClient:
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "mmx_lsp"],
        server_env={**isolated_env(tmp), **(env or {})},
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    # The server asks to watch its settings files (client/registerCapability) when the
    # client supports it; answer as VS Code does, and keep what was asked for the tests.
    registrations: list[types.RegistrationParams] = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        registrations.append(params)

    client.registrations = registrations  # type: ignore[attr-defined]
    if before_initialize is not None:  # e.g. handlers for requests the server sends at once
        before_initialize(client)
    root = workspace or tmp
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(capabilities),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=init_options,
        )
    )
    client.server_capabilities = result.capabilities  # type: ignore[attr-defined]
    return client


async def stop(client: LanguageClient) -> None:
    await client.shutdown_session()


def open_file(client: LanguageClient, path: Path, language_id: str | None = None) -> str:
    uri = path.resolve().as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(
                uri=uri,
                language_id=language_id or LANGUAGE_IDS.get(path.suffix, "plaintext"),
                version=1,
                text=path.read_text("utf-8"),
            )
        )
    )
    return uri


def open_text(client: LanguageClient, uri: str, text: str, language_id: str) -> str:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, language_id, 1, text))
    )
    return uri


async def command(client: LanguageClient, name: str, argument: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=[argument])
    )


@pytest_asyncio.fixture(
    params=["visual_studio_code", "neovim"],
    ids=["vscode", "neovim"],
    loop_scope="module",
    scope="module",
)
async def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LanguageClient]:
    tmp = tmp_path_factory.mktemp("server")
    lsp = await start(tmp, capabilities=request.param)
    yield lsp
    await stop(lsp)
