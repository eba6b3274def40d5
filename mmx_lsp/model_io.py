"""What one model call is asked and what it answers, and what the answer cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from mmx_lsp.kinds import Tier
from mmx_lsp.pricing import Price, Usage, cost_usd


@dataclass(frozen=True)
class ModelRequest:
    """One call: chat `messages` (api="chat") or a FIM `prompt` + `suffix` (api="completions")."""

    tier: Tier
    api: Literal["chat", "completions"]
    messages: list[dict[str, str]] | None
    prompt: str | None
    suffix: str | None
    max_tokens: int
    stop: list[str] | None = None
    temperature: float = 0.0
    # Where the answer ends, found in the text streamed so far (None: not yet): the stream
    # is closed there, which stops the model, and the text after it is dropped.
    cut: Callable[[str], int | None] | None = None


@dataclass(frozen=True)
class ModelReply:
    """The answer of one `Providers.complete` call.

    `latency_ms` is the wall time of the whole call, retries included; `attempts` counts the
    HTTP requests made. `usage_source` says where the token counts come from: "provider"
    (the endpoint's usage), "tokenizer" (the endpoint reported none, and its model's own
    tokenizer counted what was sent and received: llama.cpp's `/tokenize`) or "estimate"
    (neither: `tokens.estimate_tokens`); `usage_estimated` is True for the last. `cut_off`:
    the endpoint stopped the answer at `max_tokens` (finish reason "length").
    """

    text: str
    model: str
    usage: Usage
    reported_cost_usd: Decimal | None
    latency_ms: float
    attempts: int
    usage_estimated: bool = False
    usage_source: str = "provider"
    cut_off: bool = False


def reply_cost(reply: ModelReply, price: Price | None) -> Decimal:
    """The cost the provider reported when it did, else usage times the price (0 if unknown)."""
    if reply.reported_cost_usd is not None:
        return reply.reported_cost_usd
    return cost_usd(reply.usage, price)
