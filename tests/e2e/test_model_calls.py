"""Model calls end to end: the real server over stdio and real OpenAI-compatible stubs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import open_text, start, stop
from tests.support.openai_stub import StubServer, _prompt_text, estimate_tokens

pytestmark = pytest.mark.e2e

CHEAP_PRICE = (Decimal("0.25"), Decimal("2.0"))
PREMIUM_PRICE = (Decimal("5"), Decimal("40"))
MILLION = Decimal(1_000_000)

FUNCTION = "def add(a, b):\n    \n"
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
        status = await asyncio.wait_for(status_future, 5)
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
        await asyncio.wait_for(first_status, 5)
        second_status = waiter(client)
        second = items(await inline(client, uri))
        status = await asyncio.wait_for(second_status, 5)
        assert [i.insert_text for i in second] == [i.insert_text for i in first] != []
        assert status.cached is True
        assert status.cost_usd == 0
        assert status.saved_usd > 0
        assert len(cheap.requests) == 1
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
            statuses.append(await asyncio.wait_for(status_future, 5))
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
