"""What the answer cache holds for a request: its key and its entry (the cache's backends are
in `cache`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mmx_lsp import prompts
from mmx_lsp.cache import Cache, cache_key
from mmx_lsp.calls import Shape, Snapshot, context_tokens, request_api, request_shape, template
from mmx_lsp.cascade import Flight
from mmx_lsp.config import Settings
from mmx_lsp.kinds import Kind, Tier, is_tier


def key(
    settings: Settings,
    tier: Tier,
    kind: Kind,
    snap: Snapshot,
    diagnostics: Sequence[str],
    shape: Shape | None = None,
) -> str:
    """The cache key of a request: the model, the prompt template's version and everything
    the prompt is built from (the excerpt, the request's place, the diagnostics, the limits
    that size the prompt and the answer)."""
    tier_config = settings.tiers[tier]
    provider = settings.providers.get(tier_config.provider)
    endpoint = provider.base_url if provider is not None else ""
    name = template(request_api(tier_config, kind), kind)
    shape = shape or request_shape(settings, kind)
    limits = [shape.key, context_tokens(shape, tier_config), shape.max_output_tokens]
    where = json.dumps(
        [kind, snap.language, snap.start, snap.end, limits, list(shape.stop), list(diagnostics)]
    )
    return cache_key(
        model=tier_config.model,
        model_version=f"{tier_config.api}@{endpoint}",
        template_version=f"{name}:{prompts.TEMPLATE_VERSIONS[name]}",
        context=f"{where}\n{snap.text}",
    )


@dataclass(frozen=True)
class Entry:
    """A cached answer and what it cost to make."""

    text: str
    tier: Tier
    model: str
    model_version: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    premium_usd: Decimal | None = None

    @classmethod
    def of(cls, flight: Flight, settings: Settings) -> Entry:
        """The entry for a flight's answer."""
        last = flight.last_reply
        usage = flight.usage
        return cls(
            text=flight.text,
            tier=flight.tier,
            model=settings.tiers[flight.tier].model,
            model_version="" if last is None else last.model_version,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            premium_usd=None if last is None else last.premium_usd,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tier": self.tier,
            "model": self.model,
            "model_version": self.model_version,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "premium_usd": None if self.premium_usd is None else str(self.premium_usd),
        }


def lookup(cache: Cache, cache_key: str) -> Entry | None:
    """The entry under `cache_key`, or None (also for an entry that does not decode)."""
    raw = cache.get(cache_key)
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        return None
    tier = entry.get("tier")
    if not is_tier(tier):
        return None
    premium = entry.get("premium_usd")
    return Entry(
        text=entry["text"],
        tier=tier,
        model=str(entry.get("model") or ""),
        model_version=str(entry.get("model_version") or ""),
        input_tokens=int(entry.get("input_tokens") or 0),
        output_tokens=int(entry.get("output_tokens") or 0),
        premium_usd=None if premium is None else Decimal(str(premium)),
    )


def store(cache: Cache, cache_key: str, entry: Entry) -> None:
    cache.set(cache_key, json.dumps(entry.to_json()).encode("utf-8"))
