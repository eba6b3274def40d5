"""One error hierarchy: every error mmx-lsp raises on purpose is an `MmxError`.

Handlers let `InvalidParams` (and any other `MmxError`) reach the LSP layer, where
`transport.lsp_error` maps it to an LSP error reply; the request path turns `ProviderError`s
into the status and messages the user sees; the command line prints `UsageError`s and exits 2.
"""

from __future__ import annotations


class MmxError(Exception):
    """Base of every error mmx-lsp raises on purpose. `str()` is safe to show a user."""


class InvalidParams(MmxError):
    """A request or command whose arguments cannot be used; the message says what to send
    instead (LSP: InvalidParams, see `transport.lsp_error`)."""


class UsageError(MmxError):
    """Command-line arguments a command cannot use (exit status 2)."""


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
