"""Model calls end to end: the real server over stdio and real OpenAI-compatible stubs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from mmx_lsp import calls
from mmx_lsp.config import Settings
from tests.e2e.conftest import command, open_text, start, stop
from tests.support.openai_stub import StubServer, _prompt_text, estimate_tokens

pytestmark = pytest.mark.e2e

CHEAP_PRICE = (Decimal("0.25"), Decimal("2.0"))
PREMIUM_PRICE = (Decimal("5"), Decimal("40"))
MILLION = Decimal(1_000_000)

FUNCTION = "def add(a, b):\n    \n"
# Generous: a loaded CI machine can take seconds to start the server and import the client.
TIMEOUT_S = 15.0
BODY = types.Position(1, 4)


@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[StubServer, StubServer]]:
    with StubServer() as cheap, StubServer() as premium:
        yield cheap, premium


@pytest.fixture
def cheap(stubs: tuple[StubServer, StubServer]) -> StubServer:
    stubs[0].reset()
    return stubs[0]


@pytest.fixture
def premium(stubs: tuple[StubServer, StubServer]) -> StubServer:
    stubs[1].reset()
    return stubs[1]


def settings(tmp: Path, cheap: StubServer, premium: StubServer, **routing: Any) -> dict[str, Any]:
    """Two tiers on two stubs (no key needed on loopback), prices in the configuration."""
    return {
        "providers": {
            "cheapco": {
                "base_url": cheap.base_url,
                "api_key_env": "MMX_TEST_KEY",
                "max_retries": 0,
            },
            "premiumco": {
                "base_url": premium.base_url,
                "api_key_env": "MMX_TEST_KEY",
                "max_retries": 0,
            },
        },
        "tiers": {
            "cheap": {
                "provider": "cheapco",
                "model": "stub-cheap",
                "input_usd_per_mtok": str(CHEAP_PRICE[0]),
                "output_usd_per_mtok": str(CHEAP_PRICE[1]),
            },
            "premium": {
                "provider": "premiumco",
                "model": "stub-premium",
                "input_usd_per_mtok": str(PREMIUM_PRICE[0]),
                "output_usd_per_mtok": str(PREMIUM_PRICE[1]),
            },
        },
        # Everything cheap unless a test says otherwise, so that routing is not under test.
        "routing": {"premium_above": 0.99, **routing},
        "cache": {"dir": str(tmp / "cache")},
    }


def expected_cost(body: dict[str, Any], reply: str, price: tuple[Decimal, Decimal]) -> Decimal:
    """What the stub reports for a request, priced exactly."""
    tokens_in, tokens_out = estimate_tokens(_prompt_text(body)), estimate_tokens(reply)
    return (tokens_in * price[0] + tokens_out * price[1]) / MILLION


def waiter(client: LanguageClient, method: str = "mmx/status") -> asyncio.Future[Any]:
    return asyncio.ensure_future(client.wait_for_notification(method))


async def inline(
    client: LanguageClient, uri: str, position: types.Position = BODY
) -> types.InlineCompletionList | list[types.InlineCompletionItem] | None:
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=position,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )


def items(result: Any) -> list[types.InlineCompletionItem]:
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


async def test_inline_completion_is_answered_with_model_tokens_and_exact_cost(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        status_future = waiter(client)
        result = items(await inline(client, uri))
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert [i.insert_text for i in result] == ["return a + b"]
        assert result[0].command is not None
        assert result[0].command.command == "mmx.accepted"
        assert list(result[0].command.arguments or []) == [{"request_id": status.request_id}]
        assert len(cheap.requests) == 1 and not premium.requests
        cost = expected_cost(cheap.requests[0], "return a + b", CHEAP_PRICE)
        assert (status.kind, status.tier, status.model) == ("inline", "cheap", "stub-cheap")
        assert status.cached is False and status.escalated is False
        assert Decimal(status.cost_usd_exact) == cost
        assert status.cost_usd == float(cost)
        assert status.input_tokens == estimate_tokens(_prompt_text(cheap.requests[0]))
        assert status.output_tokens == estimate_tokens("return a + b")
        assert status.session_cost_usd == float(cost)
        assert status.saved_usd > 0
        assert status.latency_ms >= 0
        assert [a.model for a in status.attempts] == ["stub-cheap"]
        assert status.attempts[0].passed is True
        assert not hasattr(status, "error")
        # Clients that do not know mmx/status see the choice in the log and in $/progress.
        await eventually(
            lambda: any("mmx inline → cheap" in m.message for m in client.log_messages)
        )
        await eventually(
            lambda: any(
                isinstance(v, types.WorkDoneProgressEnd) and "stub-cheap" in (v.message or "")
                for values in client.progress_reports.values()
                for v in values
            )
        )
    finally:
        await stop(client)


async def test_second_identical_request_is_served_from_cache_for_nothing(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        first_status = waiter(client)
        first = items(await inline(client, uri))
        await asyncio.wait_for(first_status, TIMEOUT_S)
        second_status = waiter(client)
        second = items(await inline(client, uri))
        status = await asyncio.wait_for(second_status, TIMEOUT_S)
        assert [i.insert_text for i in second] == [i.insert_text for i in first] != []
        assert status.cached is True
        assert status.cost_usd == 0
        assert status.saved_usd > 0
        assert len(cheap.requests) == 1
        position = {"line": BODY.line, "character": BODY.character}
        decision = await command(client, "mmx.explain", {"uri": uri, "position": position})
        assert decision["cached"] is True
        elsewhere = await command(
            client, "mmx.explain", {"uri": uri, "position": {"line": 0, "character": 0}}
        )
        assert elsewhere["cached"] is False
    finally:
        await stop(client)


async def test_without_a_key_requests_are_routed_and_priced_but_not_sent(
    tmp_path: Path,
) -> None:
    client = await start(tmp_path, init_options={"cache": {"dir": str(tmp_path / "cache")}})
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = []
        for _ in range(3):
            status_future = waiter(client)
            assert items(await inline(client, uri)) == []
            statuses.append(await asyncio.wait_for(status_future, TIMEOUT_S))
        for status in statuses:
            assert status.tier in ("cheap", "premium")
            assert status.model in ("gpt-5-mini", "gpt-5.5")
            assert "OPENAI_API_KEY" in status.preview
            assert not hasattr(status, "error")
            assert status.cost_usd == 0
            assert status.estimate_usd.premium > status.estimate_usd.cheap > 0
        await asyncio.sleep(0.2)
        previews = [m for m in client.messages if "OPENAI_API_KEY" in m.message]
        assert len(previews) == 1, "one message for a burst of requests, not one per keystroke"
    finally:
        await stop(client)


def collect_statuses(client: LanguageClient) -> list[Any]:
    """Every mmx/status from now on, in order."""
    received: list[Any] = []

    @client.feature("mmx/status")
    def on_status(ls: LanguageClient, params: Any) -> None:
        received.append(params)

    return received


async def eventually(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_cheap_answer_that_breaks_the_syntax_escalates_to_premium(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return (a +"
    premium.reply = "return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        status_future = waiter(client)
        result = items(await inline(client, uri))
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert [i.insert_text for i in result] == ["return a + b"]
        assert status.escalated is True
        assert (status.tier, status.model) == ("premium", "stub-premium")
        assert [(a.model, a.passed) for a in status.attempts] == [
            ("stub-cheap", False),
            ("stub-premium", True),
        ]
        first = expected_cost(cheap.requests[0], "return (a +", CHEAP_PRICE)
        second = expected_cost(premium.requests[0], "return a + b", PREMIUM_PRICE)
        assert Decimal(status.cost_usd_exact) == first + second
        assert [a.cost_usd for a in status.attempts] == [float(first), float(second)]
        assert status.input_tokens == sum(a.input_tokens for a in status.attempts)
        assert status.saved_usd < 0, "an escalation costs more than premium alone"
    finally:
        await stop(client)


async def test_a_tier_whose_endpoint_fails_falls_back_to_the_other(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.mode = "500"
    premium.reply = "return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        first = items(await inline(client, uri))
        await eventually(lambda: len(statuses) == 1)
        assert [i.insert_text for i in first] == ["return a + b"]
        status = statuses[0]
        assert (status.tier, status.model) == ("premium", "stub-premium")
        assert "cheap tier down" in status.fallback
        assert not hasattr(status, "error")
        assert len(cheap.requests) == 1 and len(premium.requests) == 1
        # A second request in the same burst: still answered, no second message.
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(0, 0), types.Position(0, 0)),
                        text="# sums\n",
                    )
                ],
            )
        )
        await inline(client, uri, types.Position(2, 4))
        await eventually(lambda: len(statuses) == 2)
        shown = [m for m in client.messages if "HTTP 500" in m.message]
        assert len(shown) == 1
        assert "stub internal error" in shown[0].message
    finally:
        await stop(client)


async def test_both_tiers_down_reports_the_error_and_the_tier_tried(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.mode = premium.mode = "500"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        status_future = waiter(client)
        assert items(await inline(client, uri)) == []
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert "HTTP 500" in status.error
        assert (status.tier, status.model, status.cost_usd) == ("premium", "stub-premium", 0)
    finally:
        await stop(client)


async def test_cancelled_request_aborts_the_call_and_is_not_billed(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b + 0 + 0 + 0 + 0 + 0 + 0"
    cheap.chunk_delay_s = 0.3
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=BODY,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        pending = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="inline-to-cancel"
            )
        )
        await eventually(lambda: len(cheap.requests) == 1)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="inline-to-cancel"))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(pending, TIMEOUT_S)
        assert await asyncio.to_thread(cheap.wait_for_disconnect, TIMEOUT_S)
        stats = await command(client, "mmx.stats", {})
        assert stats["totals"]["requests"] == 1
        assert stats["totals"]["cancelled"] == 1
        assert stats["totals"]["cost_usd"] == 0
        assert statuses == [], "a cancelled request gets no status"
        assert len(cheap.requests) == 1 and not premium.requests
        # The same request again makes a new call, billed once.
        cheap.chunk_delay_s = 0.0
        await inline(client, uri)
        await eventually(lambda: len(statuses) == 1)
        assert len(cheap.requests) == 2
        assert statuses[0].cached is False and statuses[0].cost_usd > 0
        stats = await command(client, "mmx.stats", {})
        assert stats["totals"]["requests"] == 2
        assert stats["totals"]["cost_usd"] == statuses[0].cost_usd
        assert statuses[0].session_cost_usd == statuses[0].cost_usd
    finally:
        await stop(client)


async def test_identical_requests_in_flight_make_one_call(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    cheap.chunk_delay_s = 0.2
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        both = await asyncio.gather(inline(client, uri), inline(client, uri))
        await eventually(lambda: len(statuses) == 2)
        assert [[i.insert_text for i in items(r)] for r in both] == [["return a + b"]] * 2
        assert len(cheap.requests) == 1
        costs = sorted(s.cost_usd for s in statuses)
        assert costs[0] == 0 and costs[1] > 0, "the shared call is billed once"
        stats = await command(client, "mmx.stats", {})
        assert stats["totals"]["cost_usd"] == costs[1]
    finally:
        await stop(client)


async def test_typing_the_start_of_a_suggestion_serves_the_rest_without_a_call(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        await inline(client, uri)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(BODY, BODY), text="ret"
                    )
                ],
            )
        )
        rest = items(await inline(client, uri, types.Position(1, 7)))
        await eventually(lambda: len(statuses) == 2)
        assert [i.insert_text for i in rest] == ["urn a + b"]
        assert statuses[1].cached is True and statuses[1].cost_usd == 0
        assert len(cheap.requests) == 1
    finally:
        await stop(client)


async def test_excluded_document_sends_nothing_to_any_model(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        secret = tmp_path / "secrets" / "add.py"
        uri = open_text(client, secret.as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        assert items(await inline(client, uri)) == []
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri),
                range=types.Range(types.Position(0, 0), types.Position(2, 0)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        assert [a.title for a in actions or [] if "mmx: use" not in a.title] == []
        # An action made up by a client for the excluded file is not resolved either.
        crafted = types.CodeAction(
            title="mmx: Refactor selection",
            kind="refactor.rewrite.mmx",
            data={
                "uri": uri,
                "kind": "refactor",
                "range": {
                    "start": {"line": 0, "character": 0},
                    "end": {"line": 2, "character": 0},
                },
                "tier": "cheap",
            },
        )
        resolved = await client.code_action_resolve_async(crafted)
        assert resolved.edit is None
        await asyncio.sleep(0.3)
        assert statuses == []
        assert not cheap.requests and not premium.requests
    finally:
        await stop(client)


async def test_completion_fallback_returns_the_suggestion_as_one_item(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    client = await start(
        tmp_path, init_options=settings(tmp_path, cheap, premium), capabilities="neovim"
    )
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        status_future = waiter(client)
        result = await client.text_document_completion_async(
            types.CompletionParams(text_document=types.TextDocumentIdentifier(uri), position=BODY)
        )
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert isinstance(result, types.CompletionList)
        [item] = result.items
        assert isinstance(item.text_edit, types.TextEdit)
        assert item.text_edit.new_text == "return a + b"
        assert item.command is not None and item.command.command == "mmx.accepted"
        assert status.kind == "completion"
    finally:
        await stop(client)


def action_params(uri: str, rng: types.Range, kind: str) -> types.CodeActionParams:
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri),
        range=rng,
        context=types.CodeActionContext(diagnostics=[], only=[kind]),
    )


SMALL = "def add(a, b):\n    return a+b\n\n\nprint(add(1, 2))\n"
SELECTION = types.Range(types.Position(0, 0), types.Position(2, 0))
REFACTOR_SELECTION = {
    "kind": "refactor",
    "range": {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}},
}


async def refactor_action(client: LanguageClient, uri: str) -> types.CodeAction:
    """The one *Refactor selection* action listed for SELECTION (not yet resolved)."""
    [action] = await client.text_document_code_action_async(
        action_params(uri, SELECTION, "refactor.rewrite.mmx")
    )
    assert isinstance(action, types.CodeAction)
    return action


async def resolve_refactor(client: LanguageClient, uri: str) -> tuple[types.CodeAction, Any]:
    """The *Refactor selection* action on SELECTION, resolved, and the status it sent."""
    action = await refactor_action(client, uri)
    status_future = waiter(client)
    resolved = await client.code_action_resolve_async(action)
    return resolved, await asyncio.wait_for(status_future, TIMEOUT_S)


async def test_refactor_resolve_returns_a_workspace_edit_on_the_range(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "```python\ndef add(a, b):\n    return a + b\n```"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        action = await refactor_action(client, uri)
        assert not cheap.requests, "listing actions never calls a model"
        status_future = waiter(client)
        resolved = await client.code_action_resolve_async(action)
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert resolved.edit is not None and resolved.edit.changes is not None
        [edit] = resolved.edit.changes[uri]
        assert edit.range == SELECTION
        assert edit.new_text == "def add(a, b):\n    return a + b\n"
        assert status.kind == "refactor" and status.cost_usd > 0
        assert len(cheap.requests) == 1
        reports = [v for values in client.progress_reports.values() for v in values]
        assert any(
            isinstance(v, types.WorkDoneProgressEnd) and "refactor" in (v.message or "")
            for v in reports
        )
    finally:
        await stop(client)


async def test_an_edit_cut_off_at_its_length_cap_is_not_applied(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """The endpoint says it stopped at max_tokens: the start of the rewrite parses, but
    applied it would delete the rest of the selection."""
    cheap.reply = "def add(a, b):\n    return a"
    cheap.finish_reason = "length"
    premium.reply = "def add(a, b):\n    return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        resolved, status = await resolve_refactor(client, uri)
        assert resolved.edit is not None and resolved.edit.changes is not None
        assert resolved.edit.changes[uri][0].new_text == "def add(a, b):\n    return a + b\n"
        assert status.escalated and [(a.tier, a.passed) for a in status.attempts] == [
            ("cheap", False),
            ("premium", True),
        ]
        # The cheap model ran to its cap: its next edit is expected to run to it too.
        explained = await command(client, "mmx.explain", {"uri": uri, **REFACTOR_SELECTION})
        cap = calls.request_shape(Settings(), "refactor", "selection").max_output_tokens
        assert explained["estimate_tokens"]["cheap"][1] == cap
        assert explained["estimate_tokens"]["premium"][1] < cap
        premium.finish_reason = "length"  # both cut off: nothing is applied, and the user told
        other = open_text(client, (tmp_path / "sub.py").as_uri(), SMALL.replace("+", "-"), "python")
        resolved, status = await resolve_refactor(client, other)
        assert resolved.edit is None
        assert "cut off at its length cap" in status.error
        assert "max_output_tokens" in status.error
    finally:
        await stop(client)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            "```python\ndef add(a, b):\n" + "    # add a and b, then return\n" * 400,
            "repeated itself: '# add a and b, then return'",
        ),
        (
            "Language: python\n\nCode before the selection:\n"
            + "".join(f"def add{n}(a, b):\n    return a + {n}\n" for n in range(400)),
            "writes back the request's own words ('Language: python')",
        ),
    ],
    ids=["loop", "prompt-written-back"],
)
async def test_an_answer_that_runs_away_is_stopped_and_premium_asked(
    tmp_path: Path, cheap: StubServer, premium: StubServer, reply: str, reason: str
) -> None:
    """A small model may write the same lines until its cap, or write its prompt back (a
    minute on a laptop's CPU): the stream is closed once that shows, and the answer fails."""
    cheap.reply = reply
    cheap.chunk_delay_s = 0.005
    premium.reply = "def add(a, b):\n    return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        resolved, status = await resolve_refactor(client, uri)
        assert await asyncio.to_thread(cheap.wait_for_disconnect, TIMEOUT_S)
        assert resolved.edit is not None and resolved.edit.changes is not None
        assert resolved.edit.changes[uri][0].new_text == "def add(a, b):\n    return a + b\n"
        first, second = status.attempts
        assert (first.tier, first.passed, second.tier, second.passed) == (
            "cheap",
            False,
            "premium",
            True,
        )
        assert reason in first.reason
        # Billed for what the model wrote before it was stopped, not for 400 lines.
        assert 0 < first.output_tokens < 200
    finally:
        await stop(client)


async def test_explain_resolve_sends_the_explanation(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "`add` returns the **sum** of its two arguments."
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        [action] = await client.text_document_code_action_async(
            action_params(uri, SELECTION, "refactor.mmx.explain")
        )
        explanation_future = waiter(client, "mmx/explanation")
        resolved = await client.code_action_resolve_async(action)
        explanation = await asyncio.wait_for(explanation_future, TIMEOUT_S)
        assert resolved.edit is None
        assert explanation.markdown == cheap.reply
        assert explanation.uri == uri
        assert explanation.range.start.line == 0 and explanation.range.end.line == 2
        await eventually(lambda: any(cheap.reply == m.message for m in client.messages))
    finally:
        await stop(client)


async def read_back_at_start(
    tmp_path: Path,
    options: dict[str, Any],
    text: str,
    estimated: Callable[[LanguageClient, str], Awaitable[Any]],
    guess: Any,
    learned: Any,
) -> None:
    """A server started again on the same metrics database: its estimate for `text` is the
    guess until it has read the database, then what the last server had learned."""
    client = await start(tmp_path, init_options=options)
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), text, "python")
        deadline = asyncio.get_running_loop().time() + TIMEOUT_S
        while (estimate := await estimated(client, uri)) != learned:
            assert estimate == guess, "only the guess, before the database is read"
            assert asyncio.get_running_loop().time() < deadline, "nothing was read back"
            await asyncio.sleep(0.05)
    finally:
        await stop(client)


async def test_a_restarted_server_estimates_with_the_answer_lengths_it_recorded(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """Each model's answer lengths, and how its provider counts prompt tokens against the
    server's count, are read back from the metrics database at start, so the next session's
    pre-call estimates know them before its first answer."""
    cheap.reply = "\n    ".join(f"total_{i} = a * {i} + b" for i in range(40))
    options = settings(tmp_path, cheap, premium)
    where = {"position": {"line": BODY.line, "character": BODY.character}}

    async def estimated(client: LanguageClient, uri: str) -> tuple[int, int]:
        explained = await command(client, "mmx.explain", {"uri": uri, **where})
        tokens_in, tokens_out = explained["estimate_tokens"]["cheap"]
        return int(tokens_in), int(tokens_out)

    client = await start(tmp_path, init_options=options)
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        guess = await estimated(client, uri)
        statuses = collect_statuses(client)
        await inline(client, uri)
        await eventually(lambda: len(statuses) == 1)
        answered = statuses[0].output_tokens
        assert answered > guess[1]
    finally:
        await stop(client)
    with sqlite3.connect(tmp_path / "xdg_data_home" / "mmx" / "metrics.sqlite3") as db:
        [(counted, reported)] = db.execute(
            "SELECT json_extract(extra, '$.calls[0].counted_input_tokens'), input_tokens "
            "FROM requests"
        ).fetchall()
    assert reported == statuses[0].input_tokens and reported != counted
    # The median of the guess and the one answer; of the server's count and the provider's.
    learned = (round(guess[0] * (1 + reported / counted) / 2), round((guess[1] + answered) / 2))
    await read_back_at_start(tmp_path, options, FUNCTION, estimated, guess, learned)


async def test_a_restarted_server_expects_what_the_running_one_learned_from_every_call(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """A cheap answer stopped as it wrote its prompt back, then premium's: the running server
    learns both models' answer lengths from them, and a restarted one reads the same back
    from the metrics database (it used to read only requests answered by one call)."""
    cheap.reply = "Language: python\n\nCode before the selection:\n" + "x = 1\n" * 400
    cheap.chunk_delay_s = 0.005
    premium.reply = "def add(a, b):\n    " + "\n    ".join(f"c{i} = a * {i}" for i in range(30))
    premium.reply += "\n    return a + b"
    options = settings(tmp_path, cheap, premium)

    async def estimated(client: LanguageClient, uri: str) -> dict[str, list[int]]:
        explained = await command(client, "mmx.explain", {"uri": uri, **REFACTOR_SELECTION})
        return explained["estimate_tokens"]

    client = await start(tmp_path, init_options=options)
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        guess = await estimated(client, uri)
        _, status = await resolve_refactor(client, uri)
        assert [a.passed for a in status.attempts] == [False, True]
        learned = await estimated(client, uri)
        assert learned["cheap"][1] < guess["cheap"][1], "the stopped answer was short"
        assert learned["premium"][1] > guess["premium"][1], "premium wrote more than guessed"
    finally:
        await stop(client)
    await read_back_at_start(tmp_path, options, SMALL, estimated, guess, learned)


async def test_stats_sum_requests_and_count_verdicts(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        await inline(client, uri)
        await inline(client, uri)  # from the cache
        await eventually(lambda: len(statuses) == 2)
        accepted = await command(client, "mmx.accepted", {"request_id": statuses[0].request_id})
        assert accepted["recorded"] is True
        await command(client, "mmx.rejected", {"request_id": statuses[1].request_id})
        stats = await command(client, "mmx.stats", {})
        totals = stats["totals"]
        assert totals["requests"] == 2 and totals["cache_hits"] == 1
        assert totals["cost_usd"] == statuses[0].cost_usd
        assert totals["saved_usd"] == pytest.approx(statuses[0].saved_usd + statuses[1].saved_usd)
        [row] = stats["by_model"]
        assert (row["model"], row["tier"], row["requests"]) == ("stub-cheap", "cheap", 2)
        assert (row["accepted"], row["rejected"], row["cache_hits"]) == (1, 1, 1)
        assert row["p50_ms"] is not None and row["p95_ms"] >= row["p50_ms"]
        assert row["input_tokens"] == statuses[0].input_tokens
        later = await command(client, "mmx.stats", {"since": "2999-01-01T00:00:00Z"})
        assert later["totals"]["requests"] == 0
    finally:
        await stop(client)


async def test_premium_for_the_next_request_is_used_once(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium, cascade=False))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        await command(client, "mmx.setTier", {"tier": "premium", "scope": "next"})
        statuses = collect_statuses(client)
        await inline(client, uri)
        await inline(client, uri, types.Position(0, 0))
        await eventually(lambda: len(statuses) == 2)
        assert [s.tier for s in statuses] == ["premium", "cheap"]
        assert len(premium.requests) == 1
        state = await command(
            client, "mmx.setTier", {"tier": "auto", "scope": "document", "uri": uri}
        )
        assert state["next"] is None
    finally:
        await stop(client)


async def test_spending_past_the_daily_budget_warns_once(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.reply = "return a + b"
    options = settings(tmp_path, cheap, premium, daily_budget_usd="0.00001")
    client = await start(tmp_path, init_options=options)
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        await inline(client, uri)
        await inline(client, uri, types.Position(0, 0))
        await eventually(lambda: len(statuses) == 2)
        assert statuses[0].budget_left_usd == pytest.approx(0.00001 - statuses[0].cost_usd)
        assert statuses[1].budget_left_usd < statuses[0].budget_left_usd < 0
        warnings = [m for m in client.messages if "budget" in m.message]
        assert len(warnings) == 1 and "is spent" in warnings[0].message
    finally:
        await stop(client)


FIM_TEXT = "def add(a, b):\n    \n\n\nprint(add(1, 2))\n"


async def fim_client(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> tuple[LanguageClient, str]:
    """A server whose cheap tier fills in the middle (`api = "completions"`), with FIM_TEXT
    open."""
    cheap.reply = "return a + b"
    options = settings(tmp_path, cheap, premium)
    options["tiers"]["cheap"]["api"] = "completions"
    client = await start(tmp_path, init_options=options)
    return client, open_text(client, (tmp_path / "add.py").as_uri(), FIM_TEXT, "python")


async def test_fill_in_the_middle_tier_gets_prompt_and_suffix(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    client, uri = await fim_client(tmp_path, cheap, premium)
    try:
        status_future = waiter(client)
        result = items(await inline(client, uri))
        status = await asyncio.wait_for(status_future, TIMEOUT_S)
        assert [i.insert_text for i in result] == ["return a + b"]
        [body] = completions(cheap)
        assert "messages" not in body
        assert body["prompt"].endswith("def add(a, b):\n    ")
        assert "print(add(1, 2))" in body["suffix"]
        assert Decimal(status.cost_usd_exact) == expected_cost(body, "return a + b", CHEAP_PRICE)
        # The tier was probed for fill-in-the-middle once, in the background: it does.
        await eventually(lambda: len(cheap.requests) == 2)
        [probe] = [b for b in cheap.requests if b.get("max_tokens") == 1]
        assert "MMX-SUFFIX" in probe["suffix"]
    finally:
        await stop(client)


def completions(stub: StubServer) -> list[dict[str, Any]]:
    """The completion requests a stub received, without the fill-in-the-middle probe."""
    return [b for b in stub.requests if b.get("max_tokens") != 1]


async def test_a_tier_that_does_not_fill_in_the_middle_is_sent_no_suffix_and_the_user_told(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.fim = "swap"  # the server puts the suffix before the prefix
    client, uri = await fim_client(tmp_path, cheap, premium)
    where = {"uri": uri, "position": {"line": BODY.line, "character": BODY.character}}

    async def estimated_input() -> int:
        return int((await command(client, "mmx.explain", where))["estimate_tokens"]["cheap"][0])

    try:
        with_suffix = await estimated_input()
        await inline(client, uri)
        await eventually(lambda: any("fill in the middle" in m.message for m in client.messages))
        # Pre-call estimates count the prompt now sent: without the code after the cursor.
        assert await estimated_input() < with_suffix
        [warning] = [m for m in client.messages if "fill in the middle" in m.message]
        assert warning.type == types.MessageType.Warning
        assert "suffix before the prefix" in warning.message and 'api = "chat"' in warning.message
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangeWholeDocument(
                        FIM_TEXT.replace("    \n", "    c = \n", 1)
                    )
                ],
            )
        )
        await inline(client, uri, types.Position(1, 8))
        first, second = completions(cheap)
        assert "print(add(1, 2))" in first["suffix"]
        assert "suffix" not in second or second["suffix"] is None
        assert second["prompt"].endswith("def add(a, b):\n    c = ")
        await inline(client, uri, types.Position(1, 8))
        assert sum("fill in the middle" in m.message for m in client.messages) == 1
    finally:
        await stop(client)


async def test_a_code_action_on_a_fill_in_the_middle_tier_is_sent_as_chat(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """FIM is for completing at a cursor; the same server's chat endpoint takes the action."""
    cheap.reply = "def add(a, b):\n    return a + b"
    options = settings(tmp_path, cheap, premium)
    options["tiers"]["cheap"]["api"] = "completions"
    client = await start(tmp_path, init_options=options)
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), SMALL, "python")
        action = await refactor_action(client, uri)
        resolved = await client.code_action_resolve_async(action)
        assert resolved.edit is not None and resolved.edit.changes is not None
        assert resolved.edit.changes[uri][0].new_text == "def add(a, b):\n    return a + b\n"
        [body] = cheap.requests
        assert "prompt" not in body
        assert "<selection>\ndef add(a, b):\n    return a+b\n" in body["messages"][-1]["content"]
    finally:
        await stop(client)


async def test_a_completion_for_an_older_text_is_cancelled_by_the_next_one(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """The latest completion of a document wins: the editor did not cancel the first one, but
    the text changed and a new one was asked for, so the stale call is closed (a model on the
    same machine serves one call at a time) and only the new one is answered."""
    cheap.chunk_delay_s = 0.5
    client = await start(tmp_path, init_options=settings(tmp_path, cheap, premium))
    try:
        uri = open_text(client, (tmp_path / "add.py").as_uri(), FUNCTION, "python")
        statuses = collect_statuses(client)
        first = asyncio.ensure_future(inline(client, uri))
        await eventually(lambda: len(cheap.requests) == 1)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(version=2, uri=uri),
                content_changes=[
                    types.TextDocumentContentChangePartial(types.Range(BODY, BODY), "r")
                ],
            )
        )
        cheap.chunk_delay_s = 0.0
        second = await inline(client, uri, types.Position(1, 5))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(first, TIMEOUT_S)
        assert await asyncio.to_thread(cheap.wait_for_disconnect, TIMEOUT_S)
        assert items(second)
        await eventually(lambda: len(statuses) == 1)
        stats = await command(client, "mmx.stats", {})
        assert stats["totals"]["cancelled"] == 1 and stats["totals"]["requests"] == 2
    finally:
        await stop(client)
