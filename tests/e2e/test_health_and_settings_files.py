"""`mmx.health` and settings that change under a running server: the real server over stdio,
real OpenAI-compatible stubs on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities

from tests.e2e.conftest import command, open_text, start, stop
from tests.support.openai_stub import StubServer

pytestmark = pytest.mark.e2e

SECRET = "sk-health-check-secret-9911"
DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
TIMEOUT_S = 15.0


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def settings(cheap_url: str, premium_url: str, *, cheap_api: str = "chat") -> dict[str, Any]:
    return {
        "providers": {
            "local": {"base_url": cheap_url, "api_key_env": "MMX_HEALTH_KEY", "max_retries": 0},
            "remote": {"base_url": premium_url, "api_key_env": "MMX_HEALTH_KEY"},
        },
        "tiers": {
            "cheap": {"provider": "local", "model": "stub-cheap", "api": cheap_api},
            "premium": {"provider": "remote", "model": "stub-premium"},
        },
    }


async def health(client: LanguageClient, **args: Any) -> dict[str, Any]:
    result = await asyncio.wait_for(command(client, "mmx.health", args), TIMEOUT_S)
    assert SECRET not in json.dumps(result), "the key never appears in the result"
    return {t["tier"]: t for t in result["tiers"]} | {"ok": result["ok"]}


async def eventually(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


# --- mmx.health ----------------------------------------------------------------------------------


async def test_health_reports_each_reachable_tier_with_its_latency(
    tmp_path: Path, stub: StubServer
) -> None:
    client = await start(
        tmp_path,
        init_options=settings(stub.base_url, stub.base_url),
        env={"MMX_HEALTH_KEY": SECRET},
    )
    try:
        found = await health(client)
        assert found["ok"] is True
        for tier in ("cheap", "premium"):
            t = found[tier]
            assert (t["reachable"], t["model_listed"], t["problem"], t["ok"]) == (
                True,
                True,
                None,
                True,
            )
            assert isinstance(t["latency_ms"], int) and t["latency_ms"] >= 0
            assert t["fim"] == "n/a", "a chat tier does not fill in the middle"
        # The check only reads the model list: no completion was asked for a chat tier.
        assert stub.requests == []
        assert stub.request_headers == [], "GET requests are not recorded as bodies"
    finally:
        await stop(client)


async def test_health_says_what_to_fix_when_an_endpoint_is_down_or_lacks_the_model(
    tmp_path: Path, stub: StubServer
) -> None:
    options = settings(stub.base_url, DEAD_URL)
    options["tiers"]["cheap"]["model"] = "no-such-model"
    client = await start(tmp_path, init_options=options, env={"MMX_HEALTH_KEY": SECRET})
    try:
        found = await health(client)
        assert found["ok"] is False
        premium = found["premium"]
        assert premium["reachable"] is False and premium["ok"] is False
        assert "cannot reach http://127.0.0.1:9/v1" in premium["problem"]
        assert "start the model server" in premium["problem"]
        cheap = found["cheap"]
        assert cheap["reachable"] is True and cheap["model_listed"] is False
        assert "does not list model 'no-such-model'" in cheap["problem"]
        assert "stub-cheap" in cheap["problem"] and "tiers.cheap.model" in cheap["problem"]
    finally:
        await stop(client)


async def test_health_without_a_key_names_the_variable_and_calls_nothing(
    tmp_path: Path, stub: StubServer
) -> None:
    # A key is needed off loopback: an endpoint named by a non-loopback host with no key set.
    options = settings(stub.base_url, "https://models.example.invalid/v1")
    client = await start(tmp_path, init_options=options)
    try:
        found = await health(client)
        premium = found["premium"]
        assert premium["reachable"] is None, "not called without its key"
        assert "set MMX_HEALTH_KEY" in premium["problem"]
        assert found["cheap"]["ok"] is True, "loopback needs no key"
    finally:
        await stop(client)


@pytest.mark.parametrize(
    ("fim", "verdict", "detail"),
    [
        pytest.param("ok", "unknown", "accepted a suffix", id="accepted"),
        pytest.param("reject", "no", "refused a completion with a suffix", id="rejected"),
        pytest.param("swap", "no", "suffix before the prefix", id="suffix-first"),
    ],
)
async def test_health_probes_whether_a_completions_tier_fills_in_the_middle(
    tmp_path: Path, stub: StubServer, fim: str, verdict: str, detail: str
) -> None:
    stub.fim = fim
    options = settings(stub.base_url, stub.base_url, cheap_api="completions")
    client = await start(tmp_path, init_options=options, env={"MMX_HEALTH_KEY": SECRET})
    try:
        cheap = (await health(client))["cheap"]
        assert cheap["fim"] == verdict
        assert detail in cheap["fim_detail"]
        if verdict == "no":
            assert 'api = "chat"' in cheap["problem"]
        else:
            assert cheap["problem"] is None
        [probe] = stub.requests
        assert probe["suffix"] and probe["max_tokens"] == 1, "one tiny completion"
        # Without the probe, only the model list is read.
        stub.requests.clear()
        cheap = (await health(client, probe_fim=False))["cheap"]
        assert (cheap["fim"], stub.requests) == ("unknown", [])
    finally:
        await stop(client)


# --- settings ------------------------------------------------------------------------------------


async def test_an_empty_list_of_settings_is_no_settings(tmp_path: Path, stub: StubServer) -> None:
    """Neovim sends an empty Lua table as `[]`: that is not an error, at start or on a push."""
    client = await start(tmp_path, init_options=[], capabilities="neovim")
    try:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"mmx": []})
        )
        found = await command(client, "mmx.health", {"probe_fim": False})
        assert [t["tier"] for t in found["tiers"]] == ["cheap", "premium"]
        errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
        assert errors == []
        logged = " ".join(m.message for m in client.log_messages)
        assert "expected a table" not in logged
    finally:
        await stop(client)


def _explain_model(result: dict[str, Any]) -> str:
    return str(result["model"])


async def test_editing_mmx_toml_applies_without_a_restart(tmp_path: Path, stub: StubServer) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    toml = workspace / "mmx.toml"

    def write(model: str) -> None:
        toml.write_text(
            f'[providers.local]\nbase_url = "{stub.base_url}"\napi_key_env = "MMX_HEALTH_KEY"\n'
            f'[tiers.cheap]\nprovider = "local"\nmodel = "{model}"\n'
            '[tiers.premium]\nprovider = "local"\nmodel = "stub-premium"\n'
        )

    write("stub-cheap")
    client = await start(tmp_path, workspace=workspace)
    try:
        uri = open_text(client, (workspace / "add.py").as_uri(), "def add(a, b):\n    \n", "python")
        position = {"line": 1, "character": 4}
        decision = await command(client, "mmx.explain", {"uri": uri, "position": position})
        assert _explain_model(decision) == "stub-cheap"

        write("stub-cheap-2")
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[types.FileEvent(uri=toml.as_uri(), type=types.FileChangeType.Changed)]
            )
        )
        await eventually(lambda: any("settings reloaded" in m.message for m in client.log_messages))
        decision = await command(client, "mmx.explain", {"uri": uri, "position": position})
        assert _explain_model(decision) == "stub-cheap-2"

        # A broken file is reported like any other source, naming the file and the key; the
        # settings from the other sources stay in force.
        toml.write_text('[routing]\npremium_above = "high"\n')
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[types.FileEvent(uri=toml.as_uri(), type=types.FileChangeType.Changed)]
            )
        )
        await eventually(lambda: any("premium_above" in m.message for m in client.messages))
        [error] = [m for m in client.messages if "premium_above" in m.message]
        assert error.type == types.MessageType.Error and str(toml) in error.message

        # A file the settings do not come from changes nothing.
        before = len(client.log_messages)
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(
                        uri=(workspace / "sub" / "mmx.toml").as_uri(),
                        type=types.FileChangeType.Created,
                    )
                ]
            )
        )
        await command(client, "mmx.stats", {})
        assert not any("settings reloaded" in m.message for m in client.log_messages[before:])
    finally:
        await stop(client)


async def test_the_server_asks_the_editor_to_watch_its_settings_files(tmp_path: Path) -> None:
    """With dynamic registration (VS Code's capabilities) the server registers watchers for
    the workspace's mmx.toml and pyproject.toml and the user's config.toml."""
    workspace = tmp_path / "project"
    workspace.mkdir()
    (tmp_path / "xdg_config_home" / "mmx").mkdir(parents=True)
    client = await start(tmp_path, workspace=workspace)
    try:
        registered: list[types.RegistrationParams] = client.registrations  # type: ignore[attr-defined]
        await eventually(lambda: bool(registered))
        [registration] = registered[0].registrations
        assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        options = registration.register_options
        assert isinstance(options, dict)
        patterns = [w["globPattern"] for w in options["watchers"]]
        user = tmp_path / "xdg_config_home" / "mmx"
        caps = client_capabilities("visual_studio_code").workspace
        assert caps is not None and caps.did_change_watched_files is not None
        if caps.did_change_watched_files.relative_pattern_support:
            assert {(p["baseUri"], p["pattern"]) for p in patterns} == {
                (workspace.as_uri(), "mmx.toml"),
                (workspace.as_uri(), "pyproject.toml"),
                (user.as_uri(), "config.toml"),
            }
        else:  # plain globs; the server keeps to the files it reads
            assert patterns == ["**/mmx.toml", "**/pyproject.toml", str(user / "config.toml")]
    finally:
        await stop(client)


async def test_without_file_watching_the_log_says_a_change_needs_a_restart(
    tmp_path: Path,
) -> None:
    client = await start(tmp_path, capabilities="neovim")
    try:
        caps = client_capabilities("neovim").workspace
        assert caps is not None
        watching = caps.did_change_watched_files
        if watching is not None and watching.dynamic_registration:
            pytest.fail("these Neovim capabilities register watchers: pick a client without")
        await eventually(
            lambda: any(
                "does not let the server watch files" in m.message for m in client.log_messages
            )
        )
    finally:
        await stop(client)


# --- overrides -----------------------------------------------------------------------------------


def _inline_params(uri: str) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri),
        position=types.Position(1, 4),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )


async def test_a_next_override_is_spent_only_by_a_request_whose_answer_is_delivered(
    tmp_path: Path, stub: StubServer
) -> None:
    """`premium for the next request`, then a request cancelled while premium thinks: the
    override stays, and the next request that answers goes to premium (DESIGN.md)."""
    stub.mode, stub.delay_s = "slow", 3.0
    client = await start(tmp_path, init_options=settings(stub.base_url, stub.base_url))
    try:
        statuses: list[Any] = []

        @client.feature("mmx/status")
        def on_status(ls: LanguageClient, params: Any) -> None:
            statuses.append(params)

        uri = open_text(client, (tmp_path / "add.py").as_uri(), "def add(a, b):\n    \n", "python")
        await command(client, "mmx.setTier", {"tier": "premium", "scope": "next"})
        pending = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline_params(uri), msg_id="cancel-me"
            )
        )
        await eventually(lambda: len(stub.requests) == 1)
        assert stub.requests[0]["model"] == "stub-premium"
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(pending, TIMEOUT_S)

        stub.mode = "ok"
        await client.text_document_inline_completion_async(_inline_params(uri))
        await client.text_document_inline_completion_async(_inline_params(uri))
        await eventually(lambda: len(statuses) == 2)
        assert [s.tier for s in statuses] == ["premium", "cheap"], "spent by the delivered one"
        assert [r["model"] for r in stub.requests] == ["stub-premium", "stub-premium", "stub-cheap"]
    finally:
        await stop(client)
