"""Pure: the learned router — an estimate that the cheap tier's answer is good, from the
features measured at the place, and the expected cost of each way to answer.

The model is data (`data/router.json`, or a file `mmx-lsp calibrate` wrote): a logistic
regression over transformed, standardised features, its version, what it was fitted on and the
figures it reached. Inference is a dot product in plain Python. Fitting (`fit`) is plain Python
too, so the server and `calibrate` need no numerical library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from mmx_lsp.errors import MmxError

FORMAT = 1
# Request kinds the router estimates; other kinds keep the weighted score of scoring.py.
KINDS = ("inline", "completion")
TRANSFORMS = ("identity", "log1p")
CLIP = 3.0


class RouterFileError(MmxError):
    """A router file that cannot be used, with a sentence saying why."""


@dataclass(frozen=True)
class Term:
    name: str
    transform: str
    mean: float
    scale: float
    weight: float

    def value(self, features: Mapping[str, Any]) -> float:
        raw = features.get(self.name)
        if isinstance(raw, bool):
            raw = int(raw)
        if not isinstance(raw, int | float) or math.isnan(raw) or math.isinf(raw):
            return 0.0  # missing or not a number: the mean, which adds nothing
        x = math.log1p(max(float(raw), 0.0)) if self.transform == "log1p" else float(raw)
        z = (x - self.mean) / self.scale if self.scale else 0.0
        # A value far outside what the model was fitted on (another language's or codebase's
        # style) counts as no more than CLIP standard deviations: no extrapolation.
        return min(max(z, -CLIP), CLIP)


@dataclass(frozen=True)
class Router:
    """A fitted model: p(cheap answer good) = sigmoid(intercept + Σ weight·standardised x)."""

    version: str
    intercept: float
    terms: tuple[Term, ...]
    # Logit added for the premium tier's chance on the same request (fitted alongside).
    premium_uplift: float
    # Share of cheap failures the verifier catches, and of cheap passes it flags, on the data.
    verifier_recall: float
    verifier_false_alarms: float
    source: str = "built-in"
    fitted_on: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def covers(self, kind: str, hole: str) -> bool:
        """Whether the router was fitted on requests like this one (a kind and hole it has
        data for); others keep the weighted score."""
        holes = self.fitted_on.get("holes")
        return kind in KINDS and (not holes or hole in holes)

    def p_cheap_ok(self, features: Mapping[str, Any]) -> float:
        z = self.intercept + sum(t.weight * t.value(features) for t in self.terms)
        return _sigmoid(z)

    def p_fails_if_flagged(self, p_cheap: float) -> float:
        """The chance a cheap answer the verifier flagged really fails (Bayes, from the
        verifier's measured catch and false-alarm rates); 1 when nothing was measured."""
        caught = (1 - p_cheap) * self.verifier_recall
        false = p_cheap * self.verifier_false_alarms
        return caught / (caught + false) if caught + false > 0 else 1.0

    def p_premium_ok(self, p_cheap: float) -> float:
        p = min(max(p_cheap, 1e-6), 1 - 1e-6)
        return _sigmoid(math.log(p / (1 - p)) + self.premium_uplift)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "intercept": self.intercept,
            "premium_uplift": self.premium_uplift,
            "verifier": {
                "recall": self.verifier_recall,
                "false_alarms": self.verifier_false_alarms,
            },
            "features": [
                {
                    "name": t.name,
                    "transform": t.transform,
                    "mean": t.mean,
                    "scale": t.scale,
                    "weight": t.weight,
                }
                for t in self.terms
            ],
            "fitted_on": self.fitted_on,
            "figures": self.figures,
        }


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RouterFileError(f"{where}: '{key}' must be a finite number")
    return float(value)


def parse(data: Any, source: str, known_features: frozenset[str]) -> Router:
    """A Router from a router file's JSON, or RouterFileError saying what is wrong."""
    if not isinstance(data, dict):
        raise RouterFileError("not a JSON object")
    fmt = data.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise RouterFileError("'format' is missing")
    if fmt > FORMAT:
        raise RouterFileError(
            f"format {fmt} is newer than this mmx-lsp understands ({FORMAT}); upgrade mmx-lsp"
        )
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RouterFileError("'version' is missing")
    terms = []
    raw_terms = data.get("features")
    if not isinstance(raw_terms, list) or not raw_terms:
        raise RouterFileError("'features' must be a non-empty list")
    for index, raw in enumerate(raw_terms):
        where = f"features[{index}]"
        if not isinstance(raw, dict):
            raise RouterFileError(f"{where} is not an object")
        name = raw.get("name")
        if name not in known_features:
            raise RouterFileError(
                f"{where}: feature {name!r} is not one this mmx-lsp measures "
                "(the file was fitted on other features)"
            )
        transform = raw.get("transform", "identity")
        if transform not in TRANSFORMS:
            raise RouterFileError(f"{where}: unknown transform {transform!r}")
        terms.append(
            Term(
                name=str(name),
                transform=str(transform),
                mean=_number(raw, "mean", where),
                scale=_number(raw, "scale", where),
                weight=_number(raw, "weight", where),
            )
        )
    verifier = data.get("verifier") if isinstance(data.get("verifier"), dict) else {}
    assert isinstance(verifier, dict)
    return Router(
        version=version,
        intercept=_number(data, "intercept", "router"),
        terms=tuple(terms),
        premium_uplift=_number(data, "premium_uplift", "router"),
        verifier_recall=min(max(float(verifier.get("recall", 0.0) or 0.0), 0.0), 1.0),
        verifier_false_alarms=min(max(float(verifier.get("false_alarms", 0.0) or 0.0), 0.0), 1.0),
        source=source,
        fitted_on=dict(data.get("fitted_on") or {}),
        figures=dict(data.get("figures") or {}),
    )


def load(path: Path | None, known_features: frozenset[str]) -> tuple[Router, str | None]:
    """The router in `path`, else the built-in one; and a sentence for the user when `path`
    could not be used (then the built-in router is returned)."""
    built_in = load_built_in(known_features)
    if path is None:
        return built_in, None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return parse(data, str(path), known_features), None
    except FileNotFoundError:
        return built_in, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = f"cannot be read ({exc.__class__.__name__})"
    except RouterFileError as exc:
        reason = str(exc)
    what = reason if reason.startswith("cannot") else f"is unusable: {reason}"
    return built_in, (
        f"The router file {path} {what}; using the built-in router {built_in.version}. "
        "Run `mmx-lsp calibrate` to write a new one."
    )


def load_built_in(known_features: frozenset[str]) -> Router:
    text = resources.files("mmx_lsp").joinpath("data/router.json").read_text(encoding="utf-8")
    return parse(json.loads(text), "built-in", known_features)


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Expectation:
    """Expected dollars of each way to answer one request."""

    cheap_first: Decimal
    premium: Decimal

    @property
    def premium_pays(self) -> bool:
        return self.premium < self.cheap_first


def expected_costs(
    router: Router,
    p_cheap: float,
    cheap_usd: Decimal,
    premium_usd: Decimal,
    failed_answer_usd: Decimal,
) -> Expectation:
    """Cheap first (then premium when the verifier flags the answer) against premium alone,
    each with `failed_answer_usd` for every answer that fails where the other way would not.

    Cheap first pays the cheap call, the premium call when the answer is flagged (a caught
    failure or a false alarm), and the failures the verifier misses that premium would fix.
    """
    p_premium = router.p_premium_ok(p_cheap)
    flagged = (1 - p_cheap) * router.verifier_recall + p_cheap * router.verifier_false_alarms
    fixable = max(p_premium - p_cheap, 0.0) * (1 - router.verifier_recall)
    cheap_first = cheap_usd + premium_usd * _d(flagged) + failed_answer_usd * _d(fixable)
    premium = premium_usd + failed_answer_usd * _d(max(p_cheap - p_premium, 0.0))
    return Expectation(cheap_first=cheap_first, premium=premium)


def escalation_pays(
    router: Router,
    p_cheap: float,
    p_fail_given_flag: float,
    premium_usd: Decimal,
    failed_answer_usd: Decimal,
) -> bool:
    """After a flagged cheap answer: does asking premium save money in expectation?"""
    p_premium = router.p_premium_ok(p_cheap)
    return failed_answer_usd * _d(p_fail_given_flag * p_premium) > premium_usd


def _d(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


# ---------------------------------------------------------------- fitting


def standardise(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], transforms: Mapping[str, str]
) -> list[tuple[str, str, float, float]]:
    """(name, transform, mean, scale) of each feature over the rows."""
    out = []
    for name in names:
        transform = transforms.get(name, "identity")
        xs = [
            math.log1p(max(float(r.get(name, 0) or 0), 0.0))
            if transform == "log1p"
            else float(r.get(name, 0) or 0)
            for r in rows
        ]
        mean = sum(xs) / len(xs) if xs else 0.0
        var = sum((x - mean) ** 2 for x in xs) / len(xs) if xs else 0.0
        out.append((name, transform, mean, math.sqrt(var) or 1.0))
    return out


def fit(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[int],
    names: Sequence[str],
    transforms: Mapping[str, str],
    *,
    l2: float = 1.0,
    weights: Sequence[float] | None = None,
    prior: tuple[float, Sequence[Term]] | None = None,
    iterations: int = 400,
) -> tuple[float, tuple[Term, ...]]:
    """A logistic regression with an L2 penalty, by Newton steps (a handful of features).

    With `prior` (an intercept and terms), the penalty pulls toward the prior's weights
    instead of zero, and features keep the prior's normalisation: a calibration on a few
    hundred verdicts refines the shipped model instead of replacing it.
    """
    if prior is not None:
        known = {t.name: t for t in prior[1]}
        scales = [
            (name, known[name].transform, known[name].mean, known[name].scale)
            if name in known
            else standardise(rows, [name], transforms)[0]
            for name in names
        ]
    else:
        scales = standardise(rows, names, transforms)
    n_features = len(scales)
    terms0 = [Term(name, tr, mean, scale, 0.0) for name, tr, mean, scale in scales]
    xs = [[1.0] + [t.value(r) for t in terms0] for r in rows]
    sample_weights = list(weights) if weights is not None else [1.0] * len(rows)
    center = [0.0] * (n_features + 1)
    if prior is not None:
        prior_weights = {t.name: t.weight for t in prior[1]}
        center = [prior[0]] + [prior_weights.get(name, 0.0) for name, *_ in scales]
    beta = list(center)
    for _ in range(iterations):
        gradient = [0.0] * (n_features + 1)
        hessian = [[0.0] * (n_features + 1) for _ in range(n_features + 1)]
        for x, y, w in zip(xs, labels, sample_weights, strict=True):
            p = _sigmoid(sum(b * v for b, v in zip(beta, x, strict=True)))
            for i in range(n_features + 1):
                gradient[i] += w * (y - p) * x[i]
                for j in range(n_features + 1):
                    hessian[i][j] += w * p * (1 - p) * x[i] * x[j]
        for i in range(1, n_features + 1):  # the intercept is not penalised
            gradient[i] -= l2 * (beta[i] - center[i])
            hessian[i][i] += l2
        step = _solve(hessian, gradient)
        beta = [b + s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-7:
            break
    terms = tuple(
        Term(name, tr, mean, scale, round(beta[i + 1], 6))
        for i, (name, tr, mean, scale) in enumerate(scales)
    )
    return round(beta[0], 6), terms


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a few unknowns)."""
    n = len(vector)
    a = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-12:
            continue
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                for c in range(col, n + 1):
                    a[r][c] -= factor * a[col][c]
    return [a[i][n] / a[i][i] if abs(a[i][i]) > 1e-12 else 0.0 for i in range(n)]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: the chance a positive outranks a negative (ties half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        average_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += average_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
