"""The names a request carries everywhere: its kind and the tier that answers it.

Typed as Literals end to end (settings, routing, the cascade, prompts, records), so a
misspelt tier or kind is a type error, not a KeyError at run time.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

Kind = Literal["inline", "completion", "refactor", "fix", "explain", "docstring"]
KINDS: tuple[Kind, ...] = get_args(Kind)
# Kinds answered with ghost text at the cursor; the others are edits (or prose) on a selection.
InlineKind = Literal["inline", "completion"]
INLINE_KINDS: frozenset[Kind] = frozenset(get_args(InlineKind))
# Kinds made from a code action on a selection.
ActionKind = Literal["refactor", "fix", "docstring", "explain"]
ACTION_KINDS: frozenset[Kind] = frozenset(get_args(ActionKind))
# Code actions whose answer replaces the selection.
EDIT_KINDS: frozenset[Kind] = ACTION_KINDS - {"explain"}

Tier = Literal["cheap", "premium"]
TIERS: tuple[Tier, ...] = get_args(Tier)


def other_tier(tier: Tier) -> Tier:
    return "premium" if tier == "cheap" else "cheap"


def is_kind(value: object) -> TypeGuard[Kind]:
    return value in KINDS


def is_action_kind(value: object) -> TypeGuard[ActionKind]:
    return value in ACTION_KINDS


def is_tier(value: object) -> TypeGuard[Tier]:
    return value in TIERS
