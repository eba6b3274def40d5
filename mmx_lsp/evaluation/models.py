"""The models in the matrix: tiers, `tier:model` and model ids (`--models`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmx_lsp.config import Settings
from mmx_lsp.kinds import Tier, is_tier
from mmx_lsp.pricing import Price, price_for
from mmx_lsp.providers import Providers

# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Contender:
    """One model in the matrix: a tier's provider, api and limits, with `model` sent.

    `settings` are the run's settings with the tier's model replaced (and its configured
    prices dropped: the model is priced from the built-in table) when `model` is not the
    tier's own."""

    label: str
    tier: Tier
    model: str
    settings: Settings
    price: Price | None
    as_configured: bool = True  # the tier's own model, at the tier's prices

    @property
    def key(self) -> tuple[str, str]:
        return self.tier, self.model

    @classmethod
    def for_tier(cls, settings: Settings, tier: Tier, label: str | None = None) -> Contender:
        config = settings.tiers[tier]
        return cls(label or tier, tier, config.model, settings, price_for(config))

    @classmethod
    def for_model(cls, settings: Settings, tier: Tier, model: str, label: str) -> Contender:
        config = settings.tiers[tier]
        if model == config.model:
            return cls.for_tier(settings, tier, label)
        replaced = config.model_copy(
            update={
                "model": model,
                "input_usd_per_mtok": None,
                "cached_input_usd_per_mtok": None,
                "output_usd_per_mtok": None,
            }
        )
        changed = settings.model_copy(update={"tiers": {**settings.tiers, tier: replaced}})
        return cls(label, tier, model, changed, price_for(replaced), as_configured=False)


def _contender(settings: Settings, entry: str) -> Contender:
    tiers = list(settings.tiers)
    if is_tier(entry):
        return Contender.for_tier(settings, entry)
    name, sep, model = entry.partition(":")
    tier: Tier = "premium"
    if not sep:
        model = entry
    elif not is_tier(name):
        raise ValueError(f"--models {entry}: no tier {name!r} (tiers: {', '.join(tiers)})")
    elif not model.strip():
        raise ValueError(f"--models {entry}: give the model id after the colon")
    else:
        tier = name
    return Contender.for_model(settings, tier, model.strip(), entry)


def contenders(settings: Settings, entries: Sequence[str] | None = None) -> list[Contender]:
    """The models of `--models`: a tier name, `tier:model`, or a model id (premium's
    provider). Default: every tier. Raises ValueError saying what to fix: first a badly
    written entry, then a tier that cannot be called."""
    names = [e.strip() for e in (entries if entries is not None else list(settings.tiers))]
    if not all(names):
        raise ValueError("--models has an empty entry; give tiers or model ids, e.g. cheap,premium")
    found: list[Contender] = []
    for contender in [_contender(settings, name) for name in names]:
        if all(c.key != contender.key for c in found):
            found.append(contender)
    for contender in found:
        problem = Providers(contender.settings).configured(contender.tier)
        if problem is not None:
            where = f"{contender.label} tier" if entries is None else f"--models {contender.label}"
            raise ValueError(f"{where}: {problem}")
    return found
