"""One small error hierarchy; the server maps it to LSP errors and user messages in one place."""

from __future__ import annotations


class MmxError(Exception):
    """Base of every error mmx-lsp raises on purpose. `str()` is safe to show a user."""


class ConfigError(MmxError):
    """Configuration that cannot be used."""


class BadRequest(MmxError):
    """A request whose parameters cannot be served (unknown document, bad range …)."""


class ProviderError(MmxError):
    """A model call that did not produce an answer."""

    retryable: bool = False


class NotConfigured(ProviderError):
    """No endpoint or no API key for the tier: preview mode."""


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """5xx, connection refused, a dropped stream."""

    retryable = True


class TierSkipped(ProviderError):
    """The tier failed repeatedly and is skipped for a cool-down (its circuit breaker is open)."""


class ProviderTimeout(ProviderError):
    retryable = True


class BadResponse(ProviderError):
    """The endpoint answered with something that is not an OpenAI-compatible reply."""


class BudgetExhausted(MmxError):
    """Today's budget is spent and `routing.cache_only_over_budget` is on."""
