"""The per-tier circuit breaker: pure state with a fake clock, then Providers on a real stub."""

from __future__ import annotations

import time

import pytest

from mmx_lsp.breaker import Breaker
from mmx_lsp.errors import ProviderUnavailable, RateLimited, TierSkipped
from mmx_lsp.providers import Providers
from tests.support.openai_stub import StubServer
from tests.unit.test_providers import chat, make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_three_failures_open_the_breaker_for_the_cool_down() -> None:
    clock = Clock()
    breaker = Breaker("cheap", clock=clock)
    assert not breaker.failed() and not breaker.failed()
    assert breaker.skip_reason() is None, "two failures: still closed"
    assert breaker.failed()
    assert breaker.state == "open"
    assert breaker.skip_reason() == (
        "cheap tier skipped for 30 s after 3 failures (next try in 30 s)"
    )
    clock.now += 29
    assert "next try in 1 s" in (breaker.skip_reason() or "")


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes() -> None:
    clock = Clock()
    breaker = Breaker("cheap", clock=clock)
    for _ in range(3):
        breaker.failed()
    clock.now += 30
    assert breaker.state == "half-open"
    assert breaker.skip_reason() is None, "the probe"
    assert "probe call is under way" in (breaker.skip_reason() or ""), "only one probe"
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.skip_reason() is None


def test_a_failed_probe_opens_the_breaker_again_and_a_cancelled_one_frees_the_slot() -> None:
    clock = Clock()
    breaker = Breaker("premium", clock=clock)
    for _ in range(3):
        breaker.failed()
    clock.now += 31
    assert breaker.skip_reason() is None
    breaker.abandoned()
    assert breaker.skip_reason() is None, "a cancelled probe lets the next request probe"
    assert breaker.failed(), "a failed probe opens it at once"
    assert breaker.state == "open"


def test_a_success_resets_the_count() -> None:
    breaker = Breaker("cheap", clock=Clock())
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    assert not breaker.failed()
    assert breaker.state == "closed"


async def test_a_tier_that_keeps_failing_is_skipped_without_a_call_until_the_cool_down() -> None:
    clock = Clock()
    with StubServer(mode="500") as stub:
        providers = Providers(
            make_settings(stub.base_url, max_retries=0),
            {},
            backoff_s=0.01,
            breaker=lambda tier: Breaker(tier, clock=clock),
        )
        try:
            for _ in range(3):
                with pytest.raises(ProviderUnavailable, match="HTTP 500"):
                    await providers.complete(chat(), deadline_s=2)
            started = time.monotonic()
            with pytest.raises(TierSkipped, match="cheap tier skipped for 30 s after 3 failures"):
                await providers.complete(chat(), deadline_s=2)
            assert time.monotonic() - started < 0.05
            assert len(stub.requests) == 3, "no call while the breaker is open"
            # The premium tier has its own breaker (same endpoint here, a different tier).
            stub.mode = "ok"
            await providers.complete(chat("premium"), deadline_s=2)
            # After the cool-down one probe call goes through; it succeeds and closes it.
            clock.now += 30
            reply = await providers.complete(chat(), deadline_s=2)
            assert reply.text and providers.breakers["cheap"].state == "closed"
        finally:
            await providers.aclose()


async def test_retries_stop_once_the_breaker_opens() -> None:
    with StubServer(mode="500") as stub:
        providers = Providers(make_settings(stub.base_url, max_retries=5), {}, backoff_s=0.01)
        try:
            with pytest.raises(ProviderUnavailable, match="cheap tier skipped for 30 s"):
                await providers.complete(chat(), deadline_s=5)
            assert len(stub.requests) == 3
        finally:
            await providers.aclose()


async def test_rate_limits_do_not_open_the_breaker() -> None:
    with StubServer(mode="429") as stub:
        stub.retry_after = 0
        providers = Providers(make_settings(stub.base_url, max_retries=0), {})
        try:
            for _ in range(4):
                with pytest.raises(RateLimited):
                    await providers.complete(chat(), deadline_s=2)
            assert providers.breakers["cheap"].state == "closed"
        finally:
            await providers.aclose()


async def test_without_a_breaker_every_call_goes_through() -> None:
    with StubServer(mode="500") as stub:
        providers = Providers(make_settings(stub.base_url, max_retries=0), {}, breaker=None)
        try:
            for _ in range(5):
                with pytest.raises(ProviderUnavailable, match="HTTP 500"):
                    await providers.complete(chat(), deadline_s=2)
            assert len(stub.requests) == 5
        finally:
            await providers.aclose()


def test_a_slow_tier_is_not_a_down_tier_until_its_timeouts_repeat() -> None:
    breaker = Breaker("cheap", clock=Clock())
    for _ in range(5):
        assert not breaker.timed_out()
    assert breaker.state == "closed" and breaker.skip_reason() is None
    breaker.succeeded()  # an answer in between starts the count again
    for _ in range(5):
        assert not breaker.timed_out()
    assert breaker.timed_out() and breaker.state == "open"
