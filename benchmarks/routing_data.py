"""The routing data set (../shared/routing-data): requests, outcomes, features, and the figure
its README defines — premium cost saved at ≥ 95 % of premium's pass rate."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmx_lsp.documents import Document
from mmx_lsp.router import Router, fit
from mmx_lsp.scoring import Request, measure, score

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "routing-data" / "classeval-train.jsonl"
# The data is not shipped: it sits in the project's shared folder beside the repository.
PREMIUM_MODEL = "GPT-4-Turbo"
CHEAP_MODEL = "GPT-3.5-Turbo"
PREMIUM_PRICE_RATIO = 20  # premium costs 20 times cheap (the data's README)
QUALITY_SHARE = 0.95


@dataclass
class Item:
    task_id: str
    method: str
    text: str
    row: int
    character: int
    results: dict[str, str | None]
    answers: dict[str, str | None]
    features: dict[str, Any]
    old_score: float

    @property
    def size(self) -> int:
        """The cost of a request is proportional to its file's length."""
        return len(self.text)

    def passes(self, model: str) -> bool:
        return self.results.get(model) == "pass"


def load(path: Path = DEFAULT_DATA) -> list[Item]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        doc = Document.open(f"file:///data/{raw['file']}", "python", 1, raw["text"])
        cursor = raw["cursor"]
        features = measure(doc, Request("inline", (cursor["line"], cursor["character"])))
        value, _ = score(features)
        items.append(
            Item(
                task_id=raw["task_id"],
                method=raw["method_name"],
                text=raw["text"],
                row=cursor["line"],
                character=cursor["character"],
                results=raw["results"],
                answers=raw["answers"],
                features=features.as_dict(),
                old_score=value,
            )
        )
    return items


def models(items: Sequence[Item]) -> list[str]:
    return list(items[0].results)


def folds(items: Sequence[Item], k: int = 5, seed: int = 7) -> list[list[int]]:
    """Indexes of k test folds, whole classes (task ids) to a fold, never split."""
    groups = sorted({it.task_id for it in items})
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % k for i, g in enumerate(groups)}
    out: list[list[int]] = [[] for _ in range(k)]
    for index, it in enumerate(items):
        out[fold_of[it.task_id]].append(index)
    return out


@dataclass(frozen=True)
class Outcome:
    quality: float  # share of methods passing with the answer delivered
    cost: float  # relative to sending everything to premium
    premium_share: float


def routed(items: Sequence[Item], to_premium: Sequence[bool], cheap: str) -> Outcome:
    total = sum(it.size for it in items)
    cost = sum(
        it.size if p else it.size / PREMIUM_PRICE_RATIO
        for it, p in zip(items, to_premium, strict=True)
    )
    passed = sum(
        it.passes(PREMIUM_MODEL if p else cheap) for it, p in zip(items, to_premium, strict=True)
    )
    return Outcome(passed / len(items), cost / total, sum(to_premium) / len(items))


def premium_quality(items: Sequence[Item]) -> float:
    return sum(it.passes(PREMIUM_MODEL) for it in items) / len(items)


def best_saving(items: Sequence[Item], risk: Sequence[float], cheap: str) -> tuple[float, float]:
    """The largest premium cost saved, over every threshold on `risk` (higher = premium),
    with quality ≥ 95 % of premium's; and the threshold. 0 when no threshold reaches it."""
    target = QUALITY_SHARE * premium_quality(items)
    best = (0.0, float("inf"))
    for t in [*sorted(set(risk)), float("-inf")]:
        outcome = routed(items, [r > t for r in risk], cheap)
        if outcome.quality >= target - 1e-12:
            best = max(best, (1 - outcome.cost, t))
    return best


def saving_at(items: Sequence[Item], to_premium: Sequence[bool], cheap: str) -> float | None:
    """Premium cost saved by these decisions, or None when they miss 95 % of premium's."""
    outcome = routed(items, to_premium, cheap)
    if outcome.quality < QUALITY_SHARE * premium_quality(items) - 1e-12:
        return None
    return 1 - outcome.cost


def random_saving(items: Sequence[Item], cheap: str, trials: int = 200, seed: int = 3) -> float:
    """Expected saving of random routing at the smallest premium share that meets 95 %."""
    rng = random.Random(seed)
    target = QUALITY_SHARE * premium_quality(items)
    for share in [i / 100 for i in range(101)]:
        outcomes = [
            routed(items, [rng.random() < share for _ in items], cheap) for _ in range(trials)
        ]
        if sum(o.quality for o in outcomes) / trials >= target:
            return 1 - sum(o.cost for o in outcomes) / trials
    return 0.0


def oracle(items: Sequence[Item], cheap: str) -> list[bool]:
    """Premium exactly where only premium passes."""
    return [it.passes(PREMIUM_MODEL) and not it.passes(cheap) for it in items]


def cross_validated(
    items: Sequence[Item], fit_predict: Callable[[list[Item], list[Item]], list[float]]
) -> list[float]:
    """Out-of-fold predictions: each class scored by a model fitted without it."""
    predictions = [0.0] * len(items)
    for test in folds(items):
        held = set(test)
        train = [it for i, it in enumerate(items) if i not in held]
        for i, p in zip(test, fit_predict(train, [items[i] for i in test]), strict=True):
            predictions[i] = p
    return predictions


# ---------------------------------------------------------------- the learned router

# What the router is fitted on: the measures of what the request asks for (place.py). All
# counts are log-scaled; shares are kept as they are. Left out, because this data hardly varies
# them, so a weight would be learned from nothing and applied to every other codebase:
# annotated_share (one annotated method in 193), external_identifiers (skeletons have no
# bodies) and context_tokens (every file is one small class).
FEATURES = (
    "doc_words",
    "doc_examples",
    "doc_promises_return",
    "parameters",
    "siblings_in_doc",
    "members_in_doc",
    "imports",
)
TRANSFORMS = {name: "log1p" for name in FEATURES} | {"doc_promises_return": "identity"}
# Strong: no feature predicts the outcome under cross-validation (benchmarks/routing_quality.py
# part 2), so the estimate stays near the data's base rate instead of fitting its noise.
L2 = 100.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def fit_router(
    items: Sequence[Item],
    cheap: str,
    *,
    version: str,
    verifier: tuple[float, float] = (0.0, 0.0),
    figures: dict[str, Any] | None = None,
) -> Router:
    """The router fitted on these items, with `cheap` as the cheap tier's model."""
    intercept, terms = fit(
        [it.features for it in items],
        [int(it.passes(cheap)) for it in items],
        FEATURES,
        TRANSFORMS,
        l2=L2,
    )
    cheap_rate = sum(it.passes(cheap) for it in items) / len(items)
    premium_rate = premium_quality(items)
    return Router(
        version=version,
        intercept=intercept,
        terms=terms,
        premium_uplift=round(_logit(premium_rate) - _logit(cheap_rate), 6),
        verifier_recall=verifier[0],
        verifier_false_alarms=verifier[1],
        fitted_on={
            "data": "ClassEval (FudanSELab/ClassEval eaeac44d), routing-data/classeval-train.jsonl",
            "requests": len(items),
            "classes": len({it.task_id for it in items}),
            "kinds": ["inline"],
            # Every request of the data writes a whole method body (its README), whatever the
            # hole measure says of a few; the router applies to bodies only.
            "holes": ["body"],
            "languages": ["python"],
            "cheap": cheap,
            "premium": PREMIUM_MODEL,
            "l2": L2,
        },
        figures=figures or {},
    )
