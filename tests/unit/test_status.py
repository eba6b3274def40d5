"""The quiet-message policy of status.Reporter: at most once per kind of message per minute."""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from mmx_lsp.status import Reporter


class _Shown:
    """Stands in for the server's `show` (window/showMessage): records what was shown."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def show(self, message: str, kind: types.MessageType) -> None:
        self.messages.append(message)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reporter() -> tuple[Reporter, _Shown, _Clock]:
    shown, clock = _Shown(), _Clock()
    server: Any = shown
    return Reporter(server, clock=clock), shown, clock


def test_a_burst_of_failures_shows_one_message() -> None:
    reporter, shown, clock = _reporter()
    for second in range(0, 600, 5):  # a request every 5 s for ten minutes
        clock.now = second
        reporter.show_once("provider:cheap", "down", types.MessageType.Error)
    assert shown.messages == ["down"]


def test_a_failure_that_comes_and_goes_is_shown_at_most_once_a_minute() -> None:
    reporter, shown, clock = _reporter()
    for second in range(0, 300, 10):  # fails, recovers, fails again every 10 s
        clock.now = second
        reporter.show_once("provider:cheap", "down", types.MessageType.Error)
        reporter.settle("provider:cheap")
    assert len(shown.messages) == 5  # at 0, 60, 120, 180, 240 s


def test_each_kind_of_failure_has_its_own_minute() -> None:
    reporter, shown, clock = _reporter()
    reporter.show_once("provider:cheap", "cheap down", types.MessageType.Error)
    reporter.show_once("provider:premium", "premium down", types.MessageType.Error)
    clock.now = 45  # a new burst, but less than a minute after the last message
    reporter.show_once("provider:cheap", "cheap down", types.MessageType.Error)
    assert shown.messages == ["cheap down", "premium down"]
    clock.now = 110
    reporter.show_once("provider:cheap", "cheap down", types.MessageType.Error)
    assert shown.messages == ["cheap down", "premium down", "cheap down"]


def test_a_cost_billed_on_estimated_tokens_is_marked_as_such() -> None:
    from decimal import Decimal

    from mmx_lsp.status import Status

    status = Status("r1", "inline", "cheap", "small", "why", latency_ms=10.0)
    status.cost_usd, status.input_tokens, status.output_tokens = Decimal("0.0001"), 90, 9
    assert "≈" not in status.line() and status.to_json()["usage_estimated"] is False
    status.usage_estimated = True
    assert "≈$0.0001" in status.line() and "≈90+9 tokens" in status.line()
    assert status.to_json()["usage_estimated"] is True
