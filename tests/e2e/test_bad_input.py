"""Bad input gets an empty answer or a clear error, and the server keeps running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from tests.e2e.conftest import FIXTURES, command, open_file, open_text, start, stop

pytestmark = pytest.mark.e2e


async def alive(client: LanguageClient) -> None:
    """The server still answers a real request."""
    uri = open_text(client, "file:///tmp/alive.py", "x = 1\n", "python")
    decision = await command(
        client, "mmx.explain", {"uri": uri, "position": {"line": 0, "character": 5}}
    )
    assert decision["tier"] == "cheap"


@pytest.mark.parametrize(
    "argument, message",
    [
        ({"tier": "gold", "scope": "next"}, "tier must be one of"),
        ({"tier": "premium", "scope": "forever"}, "scope must be one of"),
        ({"tier": "premium", "scope": "document"}, "needs the document's uri"),
        ("premium", "expected one JSON object"),
    ],
    ids=["bad-tier", "bad-scope", "document-without-uri", "not-an-object"],
)
async def test_malformed_set_tier_is_refused_clearly(
    client: LanguageClient, argument: object, message: str
) -> None:
    with pytest.raises(JsonRpcException, match=message):
        await command(client, "mmx.setTier", argument)
    await alive(client)


async def test_explain_with_malformed_position_is_refused(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException, match="position must be"):
        await command(client, "mmx.explain", {"uri": "file:///x.py", "position": {"line": "a"}})
    await alive(client)


async def test_unknown_uri_gets_empty_answers(client: LanguageClient) -> None:
    uri = "file:///never/opened.py"
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            types.TextDocumentIdentifier(uri),
            types.Range(types.Position(0, 0), types.Position(1, 0)),
            types.CodeActionContext(diagnostics=[]),
        )
    )
    assert not actions
    with pytest.raises(JsonRpcException, match="is not open"):
        await command(client, "mmx.explain", {"uri": uri, "position": {"line": 0, "character": 0}})
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [types.TextDocumentContentChangeWholeDocument(text="x")],
        )
    )
    await alive(client)


async def test_positions_past_the_end_and_reversed_ranges_are_clamped(
    client: LanguageClient,
) -> None:
    uri = open_file(client, FIXTURES / "python" / "ledger.py")
    past = await command(
        client, "mmx.explain", {"uri": uri, "position": {"line": 10_000, "character": 999}}
    )
    assert past["tier"] in ("cheap", "premium")
    reversed_ = await command(
        client,
        "mmx.explain",
        {
            "uri": uri,
            "range": {"start": {"line": 45, "character": 0}, "end": {"line": 20, "character": 0}},
        },
    )
    assert reversed_["features"]["selected_lines"] == 25
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            types.TextDocumentIdentifier(uri),
            types.Range(types.Position(9000, 3), types.Position(10, 0)),
            types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions


async def test_huge_binary_and_unknown_documents_are_scored_by_size(client: LanguageClient) -> None:
    huge = "x = 1  # " + "a" * 90 + "\n"
    huge_uri = open_text(client, "file:///tmp/huge.py", huge * 100_000, "python")  # 10 MB
    binary_uri = open_text(
        client, "file:///tmp/blob.bin", "\x00\x01\x02PNG\x00" * 1000, "plaintext"
    )
    odd_uri = open_text(client, "file:///tmp/notes.xyz", "some\nwords\n" * 50, "cobol-2099")
    # What an editor sends for a file that was not valid UTF-8: replacement characters.
    bad_utf = open_text(client, "file:///tmp/bad.py", "s = '\ufffd\ufffd'\n" * 5, "python")
    for uri in (huge_uri, binary_uri, odd_uri, bad_utf):
        decision = await asyncio.wait_for(
            command(client, "mmx.explain", {"uri": uri, "position": {"line": 3, "character": 2}}),
            30,
        )
        assert decision["tier"] in ("cheap", "premium"), uri
    assert (
        await command(
            client, "mmx.explain", {"uri": huge_uri, "position": {"line": 5, "character": 0}}
        )
    )["features"]["language"] == "plaintext"
    await alive(client)


async def test_wrongly_typed_initialization_options_are_reported_not_fatal(tmp_path: Path) -> None:
    lsp = await start(tmp_path, init_options={"routing": {"premium_above": "high"}, "tpyo": 1})
    try:
        await lsp.wait_for_notification(types.WINDOW_SHOW_MESSAGE) if not lsp.messages else None
        errors = [m.message for m in lsp.messages if m.type == types.MessageType.Error]
        assert any("initializationOptions" in m and "routing.premium_above" in m for m in errors), (
            errors
        )
        await alive(lsp)
    finally:
        await stop(lsp)


async def test_invalid_settings_change_keeps_the_last_good_settings(tmp_path: Path) -> None:
    lsp = await start(tmp_path, init_options={"routing": {"premium_above": 0.9}})
    try:
        uri = open_file(lsp, FIXTURES / "python" / "ledger.py")
        selection = {
            "uri": uri,
            "range": {"start": {"line": 20, "character": 0}, "end": {"line": 45, "character": 0}},
        }
        assert (await command(lsp, "mmx.explain", selection))["threshold"] == 0.9
        waiter = asyncio.ensure_future(lsp.wait_for_notification(types.WINDOW_SHOW_MESSAGE))
        lsp.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"mmx": {"routing": {"premium_above": 7}}})
        )
        shown = await asyncio.wait_for(waiter, 10)
        assert "settings" in shown.message and "routing.premium_above" in shown.message
        assert (await command(lsp, "mmx.explain", selection))["threshold"] == 0.9
        lsp.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"mmx": {"routing": {"premium_above": 0.2}}}
            )
        )
        await asyncio.sleep(0.2)
        assert (await command(lsp, "mmx.explain", selection))["threshold"] == 0.2
    finally:
        await stop(lsp)


async def test_workspace_file_and_pyproject_are_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.mmx.tiers.cheap]\nmodel = "gpt-4.1-mini"\n'
    )
    lsp = await start(tmp_path)
    try:
        uri = open_file(lsp, FIXTURES / "python" / "ledger.py")
        decision = await command(
            lsp, "mmx.explain", {"uri": uri, "position": {"line": 5, "character": 4}}
        )
        assert decision["model"] == "gpt-4.1-mini"
    finally:
        await stop(lsp)
