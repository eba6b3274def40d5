"""Providers against the real OpenAI-compatible stub over loopback (no mocked client)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from mmx_lsp.config import ProviderConfig, Settings, TierConfig
from mmx_lsp.errors import (
    BadResponse,
    NotConfigured,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from mmx_lsp.model_io import ModelReply, ModelRequest, reply_cost
from mmx_lsp.pricing import Price, Usage
from mmx_lsp.providers import PLACEHOLDER_KEY, Providers, is_loopback
from mmx_lsp.redaction import RedactingFilter, install_redaction, redact
from tests.support.openai_stub import StubServer

SECRET = "sk-test-Zq8LmN4pR7sT1uV2wX3y"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_stub(stub: StubServer) -> None:
    stub.reset()


def make_settings(
    base_url: str,
    *,
    max_retries: int = 2,
    api_key_env: str | None = "STUB_KEY",
    cheap_model: str = "stub-cheap",
    headers: dict[str, str] | None = None,
) -> Settings:
    return Settings(
        providers={
            "stub": ProviderConfig(
                base_url=base_url,
                api_key_env=api_key_env,
                max_retries=max_retries,
                timeout_s=5,
                headers=headers or {},
            )
        },
        tiers={
            "cheap": TierConfig(provider="stub", model=cheap_model),
            "premium": TierConfig(provider="stub", model="stub-premium", api="completions"),
        },
    )


@pytest.fixture
async def providers(stub: StubServer) -> AsyncIterator[Providers]:
    instance = Providers(make_settings(stub.base_url), {}, backoff_s=0.01)
    yield instance
    await instance.aclose()


def chat(tier: str = "cheap", text: str = "def add(a, b):\n    <FILL>") -> ModelRequest:
    return ModelRequest(
        tier=tier,
        api="chat",
        messages=[
            {"role": "system", "content": "Fill the hole."},
            {"role": "user", "content": text},
        ],
        prompt=None,
        suffix=None,
        max_tokens=64,
    )


def fim(tier: str = "premium") -> ModelRequest:
    return ModelRequest(
        tier=tier,
        api="completions",
        messages=None,
        prompt="def add(a, b):\n    ",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=32,
        stop=["\n\n"],
    )


async def test_chat_streams_text_and_reports_usage(stub: StubServer, providers: Providers) -> None:
    stub.reply = "return a + b  # sum"
    seen: list[str] = []
    reply = await providers.complete(chat(), deadline_s=2, on_text=seen.append)
    assert reply.text == "return a + b  # sum"
    assert seen[-1] == reply.text and len(seen) > 1, "on_text gets the text so far, piece by piece"
    assert all(reply.text.startswith(s) for s in seen)
    assert reply.model == "stub-cheap"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens == 5
    assert reply.attempts == 1 and reply.latency_ms > 0 and not reply.usage_estimated
    body = stub.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "stub-cheap" and body["max_tokens"] == 64
    assert body["messages"][1]["content"].endswith("<FILL>")


async def test_completions_sends_prompt_and_suffix(stub: StubServer, providers: Providers) -> None:
    stub.reply_by_model = {"stub-premium": "return a + b"}
    reply = await providers.complete(fim(), deadline_s=2)
    assert reply.text == "return a + b"
    body = stub.requests[-1]
    assert body["prompt"] == "def add(a, b):\n    "
    assert body["suffix"] == "\n\nprint(add(1, 2))\n"
    assert body["stop"] == ["\n\n"]
    assert "messages" not in body


async def test_reply_names_the_model_the_provider_reported(
    stub: StubServer, providers: Providers
) -> None:
    stub.reported_model = "stub-cheap-2026-01-15"
    reply = await providers.complete(chat(), deadline_s=2)
    assert reply.model == "stub-cheap-2026-01-15"


async def test_cached_tokens_are_priced_separately(stub: StubServer, providers: Providers) -> None:
    stub.cached_tokens = 4
    reply = await providers.complete(chat(), deadline_s=2)
    assert reply.usage.cached_input_tokens == 4
    assert reply.reported_cost_usd is None
    price = Price(Decimal("1.00"), Decimal("4.00"), Decimal("0.10"), "test", "2026-01-01")
    fresh = reply.usage.input_tokens - 4
    expected = (fresh * Decimal("1.00") + 4 * Decimal("0.10") + reply.usage.output_tokens * 4) / (
        Decimal(1_000_000)
    )
    assert reply_cost(reply, price) == expected


@pytest.mark.parametrize(
    ("usage_cost", "litellm_cost", "expected"),
    [
        (0.00042, None, Decimal("0.00042")),
        (None, "0.0013", Decimal("0.0013")),
        ("0.0001", "0.9", Decimal("0.0001")),
    ],
    ids=["openrouter-usage-cost", "litellm-header", "usage-cost-wins-over-header"],
)
async def test_reported_cost_is_preferred_to_the_price_table(
    stub: StubServer,
    providers: Providers,
    usage_cost: float | str | None,
    litellm_cost: str | None,
    expected: Decimal,
) -> None:
    stub.usage_cost = usage_cost
    stub.litellm_cost = litellm_cost
    reply = await providers.complete(chat(), deadline_s=2)
    assert reply.reported_cost_usd == expected
    price = Price(Decimal(100), Decimal(100), Decimal(100), "test", "2026-01-01")
    assert reply_cost(reply, price) == expected


def test_reply_cost_without_price_or_report_is_zero() -> None:
    reply = ModelReply("x", "m", Usage(10, 10), None, 1.0, 1)
    assert reply_cost(reply, None) == Decimal(0)


async def test_rate_limit_then_ok_waits_for_retry_after(
    stub: StubServer, providers: Providers
) -> None:
    stub.retry_after = 0.3
    stub.queue_modes("429")
    started = time.monotonic()
    reply = await providers.complete(chat(), deadline_s=2)
    elapsed = time.monotonic() - started
    assert reply.text == "return a + b"
    assert reply.attempts == 2 and len(stub.requests) == 2
    assert elapsed >= 0.3, "Retry-After (0.3 s) is honoured, not the 0.01 s backoff"


async def test_rate_limit_beyond_the_deadline_is_raised_at_once(
    stub: StubServer, providers: Providers
) -> None:
    stub.mode = "429"
    stub.retry_after = 30
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await providers.complete(chat(), deadline_s=1)
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after_s == 30
    assert "retry after 30 s" in str(caught.value) and "cheap tier" in str(caught.value)
    assert len(stub.requests) == 1


async def test_server_error_is_unavailable_after_retries(
    stub: StubServer, providers: Providers
) -> None:
    stub.mode = "500"
    with pytest.raises(ProviderUnavailable, match=r"HTTP 500.*stub internal error"):
        await providers.complete(chat(), deadline_s=2)
    assert len(stub.requests) == 3, "one call and max_retries=2 retries"


async def test_server_error_then_ok_is_retried(stub: StubServer, providers: Providers) -> None:
    stub.queue_modes("500", "500")
    reply = await providers.complete(chat(), deadline_s=2)
    assert reply.attempts == 3


async def test_slow_endpoint_times_out_by_the_deadline(
    stub: StubServer, providers: Providers
) -> None:
    stub.mode = "slow"
    stub.delay_s = 5
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"within 0\.3 s"):
        await providers.complete(chat(), deadline_s=0.3)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_garbage_is_a_bad_response(stub: StubServer, providers: Providers, api: str) -> None:
    stub.mode = "garbage"
    request = chat() if api == "chat" else fim()
    with pytest.raises(BadResponse, match="not OpenAI-compatible"):
        await providers.complete(request, deadline_s=2)
    assert len(stub.requests) == 1, "a bad response is not retried"


async def test_disconnect_mid_stream_is_unavailable(stub: StubServer) -> None:
    stub.mode = "disconnect"
    stub.reply = "return a + b"
    instance = Providers(make_settings(stub.base_url, max_retries=0), {})
    seen: list[str] = []
    try:
        with pytest.raises(ProviderUnavailable, match="connection failed or dropped"):
            await instance.complete(chat(), deadline_s=2, on_text=seen.append)
    finally:
        await instance.aclose()
    assert seen == ["return "], "the first piece arrived before the connection dropped"


async def test_connection_refused_is_unavailable() -> None:
    with StubServer() as gone:
        url = gone.base_url
    instance = Providers(make_settings(url, max_retries=1), {}, backoff_s=0.01)
    try:
        with pytest.raises(ProviderUnavailable, match="is reachable"):
            await instance.complete(chat(), deadline_s=2)
    finally:
        await instance.aclose()


async def test_cancellation_closes_the_http_stream(stub: StubServer, providers: Providers) -> None:
    stub.reply = " ".join(f"word{i}" for i in range(200))
    stub.chunk_delay_s = 0.02
    first_piece = asyncio.Event()
    task = asyncio.ensure_future(
        providers.complete(chat(), deadline_s=10, on_text=lambda _: first_piece.set())
    )
    await asyncio.wait_for(first_piece.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saw = await asyncio.to_thread(stub.wait_for_disconnect, 1.5)
    assert saw, "the stub saw the client close the stream"


async def test_key_never_in_error_messages_or_logs(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    instance = Providers(make_settings(stub.base_url), {"STUB_KEY": SECRET}, backoff_s=0.01)
    install_redaction(instance.secrets(), logging.getLogger())
    try:
        stub.mode = "401"
        with pytest.raises(NotConfigured) as refused:
            await instance.complete(chat(), deadline_s=2)
        stub.mode = "500"
        with pytest.raises(ProviderUnavailable) as failed:
            await instance.complete(chat(), deadline_s=2)
        logging.getLogger("mmx_lsp.test").warning("calling with key %s", SECRET)
    finally:
        await instance.aclose()
        for handler_or_logger in [logging.getLogger(), *logging.getLogger().handlers]:
            for f in list(handler_or_logger.filters):
                if isinstance(f, RedactingFilter):
                    handler_or_logger.removeFilter(f)
    assert stub.request_headers[0]["authorization"] == f"Bearer {SECRET}", "the key was sent"
    assert "STUB_KEY" in str(refused.value), "the message names the variable to check"
    for message in (str(refused.value), str(failed.value), caplog.text):
        assert SECRET not in message
        assert SECRET[8:] not in message


async def test_missing_key_is_not_configured_with_a_clear_sentence() -> None:
    settings = make_settings("https://api.example.invalid/v1", api_key_env="EXAMPLE_API_KEY")
    instance = Providers(settings, {})
    sentence = "set EXAMPLE_API_KEY, the key for provider 'stub'"
    assert instance.configured("cheap") == sentence
    with pytest.raises(NotConfigured) as caught:
        await instance.complete(chat(), deadline_s=1)
    assert str(caught.value) == sentence
    assert Providers(settings, {"EXAMPLE_API_KEY": "k-123456"}).configured("cheap") is None


async def test_loopback_endpoint_needs_no_key(stub: StubServer, providers: Providers) -> None:
    assert providers.configured("cheap") is None
    await providers.complete(chat(), deadline_s=2)
    assert stub.request_headers[-1]["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_unknown_tier_is_not_configured(stub: StubServer) -> None:
    problem = Providers(make_settings(stub.base_url), {}).configured("turbo")
    assert problem == "tier 'turbo' is not configured: add a [tiers.turbo] section"


async def test_provider_headers_are_sent(stub: StubServer) -> None:
    settings = make_settings(stub.base_url, headers={"HTTP-Referer": "https://mmx.example"})
    instance = Providers(settings, {})
    try:
        await instance.complete(chat(), deadline_s=2)
    finally:
        await instance.aclose()
    assert stub.request_headers[-1]["http-referer"] == "https://mmx.example"


async def test_reasoning_models_get_max_completion_tokens(stub: StubServer) -> None:
    instance = Providers(make_settings(stub.base_url, cheap_model="gpt-5-mini"), {})
    try:
        await instance.complete(chat(), deadline_s=2)
    finally:
        await instance.aclose()
    body = stub.requests[-1]
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body and "temperature" not in body


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
    ],
    ids=["ipv4", "localhost", "ipv6", "openai", "lan"],
)
def test_is_loopback(url: str, expected: bool) -> None:
    assert is_loopback(url) is expected


@pytest.mark.parametrize(
    "text",
    [
        "key sk-proj-abcdefghijklmnop1234 leaked",
        "Authorization: Bearer abc.def-ghi_jkl",
        '{"api_key": "zzz-not-shaped-like-a-key"}',
        f"the secret {SECRET[3:]} alone",
    ],
    ids=["sk-key", "bearer", "api-key-field", "given-secret"],
)
def test_redact_removes_key_shaped_strings(text: str) -> None:
    clean = redact(text, [SECRET[3:]])
    assert "[redacted]" in clean
    for leaked in ("abcdefghijklmnop1234", "abc.def-ghi_jkl", "zzz-not-shaped", SECRET[3:]):
        assert leaked not in clean


def test_redacting_filter_cleans_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("mmx_lsp.test_redaction")
    logger.propagate = False
    handler = Collect()
    logger.addHandler(handler)
    install_redaction(["hunter2-secret"], logger)
    try:
        logger.error("token=%s header=%s", "hunter2-secret", "Bearer sk-live-1234567890abcdef")
        try:
            raise ValueError("bad key hunter2-secret")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "hunter2-secret" not in text and "1234567890abcdef" not in text
    assert "ValueError: bad key [redacted]" in text


async def test_deadline_in_the_middle_of_a_stream_closes_it(
    stub: StubServer, providers: Providers
) -> None:
    stub.reply = " ".join(f"word{i}" for i in range(200))
    stub.chunk_delay_s = 0.05
    providers.warm_up()
    seen: list[str] = []
    with pytest.raises(ProviderTimeout):
        await providers.complete(chat(), deadline_s=0.3, on_text=seen.append)
    assert seen, "part of the answer had arrived"
    assert await asyncio.to_thread(stub.wait_for_disconnect, 1.5)


async def test_cancellation_before_the_answer_starts_is_prompt(
    stub: StubServer, providers: Providers
) -> None:
    stub.mode = "slow"
    stub.delay_s = 5
    task = asyncio.ensure_future(providers.complete(chat(), deadline_s=10))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5


async def test_stub_runs_as_a_script_with_the_reply_from_the_environment() -> None:
    script = Path(__file__).resolve().parents[1] / "support" / "openai_stub.py"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "MMX_STUB_REPLY": "x = 42"},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 5)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        instance = Providers(make_settings(base_url), {})
        try:
            reply = await instance.complete(fim(), deadline_s=2)
        finally:
            await instance.aclose()
        assert reply.text == "x = 42"
    finally:
        process.terminate()
        await process.wait()


async def test_a_tokenizer_that_did_not_answer_this_time_is_asked_again(
    stub: StubServer,
) -> None:
    """A timeout or a refused connection says nothing about the endpoint's tokenizer: only
    an endpoint that answers without one is remembered as having none."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down = Providers(make_settings(f"http://127.0.0.1:{closed}/v1", max_retries=0), {})
    up = Providers(make_settings(stub.base_url), {})
    try:
        assert await down._count_tokens(down._target("cheap"), ["x = 1"]) is None
        assert "stub" not in down._tokenizers
        assert await up._count_tokens(up._target("cheap"), ["x = 1"]) is None
        assert up._tokenizers["stub"] is None, "the stub has no tokenize endpoint"
    finally:
        await down.aclose()
        await up.aclose()
