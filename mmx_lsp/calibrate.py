"""`mmx-lsp calibrate`: refit the router from this user's (or team's) own verdicts.

A completion answered by the cheap tier and accepted is a good cheap answer; one rejected or
typed over, or one the verifier sent to premium, is a bad one. The router in force is refitted
on those records with its weights as the prior (a few hundred verdicts refine it, they do not
replace it), judged before and after on records held out by file (grouped, so a file's
requests never score a model fitted on the same file), and written as a new versioned router
file that running servers pick up without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmx_lsp.errors import MmxError
from mmx_lsp.router import KINDS, Router, auroc, fit

# Fewer verdicts than this (or no good or no bad answer among them) teach nothing.
MIN_RECORDS = 40
MIN_PER_CLASS = 5
MIN_FILES = 3
FOLDS = 5
# How strongly the refit stays near the router it starts from.
PRIOR_STRENGTH = 10.0


class CalibrationError(MmxError):
    """Why there is nothing to calibrate, in words the user can act on."""


@dataclass(frozen=True)
class Example:
    features: dict[str, Any]
    good: int  # 1: the cheap answer was good
    group: str  # the file it was asked in (hashed), for held-out evaluation


@dataclass(frozen=True)
class Heldout:
    """How the router before and after ranks and predicts held-out verdicts."""

    records: int
    auroc_before: float
    auroc_after: float
    log_loss_before: float
    log_loss_after: float


def read_examples(path: Path) -> list[Example]:
    """The labelled completions in a metrics database (read-only)."""
    if not path.exists():
        raise CalibrationError(f"no metrics database at {path}: use mmx-lsp for a while first")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CalibrationError(f"cannot open {path}: {exc}") from exc
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    try:
        rows = conn.execute(
            "SELECT features, tier, escalated, verdict, extra FROM requests "
            f"WHERE kind IN ({kinds}) AND cancelled = 0 AND error IS NULL "
            "AND features IS NOT NULL"
        ).fetchall()
    except sqlite3.Error as exc:
        raise CalibrationError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()
    examples = []
    for features_json, tier, escalated, verdict, extra_json in rows:
        extra = _loads(extra_json)
        if extra.get("preview"):
            continue  # routed and priced, never answered
        if escalated:
            good = 0  # the verifier caught the cheap answer
        elif tier == "cheap" and verdict in ("accepted", "rejected"):
            good = int(verdict == "accepted")
        else:
            continue
        features = _loads(features_json)
        if not features:
            continue
        examples.append(Example(features, good, str(extra.get("file") or "?")))
    return examples


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check_enough(examples: Sequence[Example]) -> None:
    good = sum(e.good for e in examples)
    bad = len(examples) - good
    files = len({e.group for e in examples})
    if len(examples) < MIN_RECORDS or min(good, bad) < MIN_PER_CLASS or files < MIN_FILES:
        raise CalibrationError(
            f"too few verdicts to calibrate: {len(examples)} completions answered by the cheap "
            f"tier with a verdict ({good} accepted, {bad} rejected, typed over or escalated) "
            f"in {files} files; calibrating needs at least {MIN_RECORDS}, with "
            f"{MIN_PER_CLASS} of each and {MIN_FILES} files. Keep using mmx-lsp (accepting "
            "and rejecting suggestions) and run it again."
        )


def refit(base: Router, examples: Sequence[Example]) -> Router:
    """The base router's weights moved toward what the examples show."""
    names = [t.name for t in base.terms]
    intercept, terms = fit(
        [e.features for e in examples],
        [e.good for e in examples],
        names,
        {t.name: t.transform for t in base.terms},
        l2=PRIOR_STRENGTH,
        prior=(base.intercept, base.terms),
    )
    return Router(
        version=base.version,
        intercept=intercept,
        terms=terms,
        premium_uplift=base.premium_uplift,
        verifier_recall=base.verifier_recall,
        verifier_false_alarms=base.verifier_false_alarms,
        fitted_on=dict(base.fitted_on),
        figures=dict(base.figures),
    )


def evaluate(base: Router, examples: Sequence[Example], seed: int = 11) -> Heldout:
    """Refit on the other files' records, score each file's: before against after."""
    groups = sorted({e.group for e in examples})
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % min(FOLDS, len(groups)) for i, g in enumerate(groups)}
    before: list[float] = []
    after: list[float] = []
    labels: list[int] = []
    for fold in range(min(FOLDS, len(groups))):
        train = [e for e in examples if fold_of[e.group] != fold]
        test = [e for e in examples if fold_of[e.group] == fold]
        if not test or not train:
            continue
        fitted = refit(base, train)
        for e in test:
            before.append(base.p_cheap_ok(e.features))
            after.append(fitted.p_cheap_ok(e.features))
            labels.append(e.good)
    return Heldout(
        records=len(labels),
        auroc_before=auroc(before, labels),
        auroc_after=auroc(after, labels),
        log_loss_before=_log_loss(before, labels),
        log_loss_after=_log_loss(after, labels),
    )


def _log_loss(predictions: Sequence[float], labels: Sequence[int]) -> float:
    total = 0.0
    for p, y in zip(predictions, labels, strict=True):
        p = min(max(p, 1e-6), 1 - 1e-6)
        total -= math.log(p) if y else math.log(1 - p)
    return total / max(len(labels), 1)


def calibrate(
    base: Router, examples: Sequence[Example], now: dt.datetime | None = None
) -> tuple[Router, Heldout]:
    """A new versioned router from the examples, and its held-out figures."""
    check_enough(examples)
    heldout = evaluate(base, examples)
    fitted = refit(base, examples)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    good = sum(e.good for e in examples)
    return (
        Router(
            version=f"calibrated-{stamp}",
            intercept=fitted.intercept,
            terms=fitted.terms,
            premium_uplift=fitted.premium_uplift,
            verifier_recall=fitted.verifier_recall,
            verifier_false_alarms=fitted.verifier_false_alarms,
            fitted_on={
                **base.fitted_on,
                "base": base.version,
                "verdicts": len(examples),
                "good": good,
                "files": len({e.group for e in examples}),
                "calibrated": stamp,
            },
            figures={
                **base.figures,
                "heldout_records": heldout.records,
                "heldout_auroc_before": _round(heldout.auroc_before),
                "heldout_auroc_after": _round(heldout.auroc_after),
                "heldout_log_loss_before": _round(heldout.log_loss_before),
                "heldout_log_loss_after": _round(heldout.log_loss_after),
            },
        ),
        heldout,
    )


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def write(router: Router, path: Path) -> Path:
    """Write the router to `path` (atomically) and a copy named by its version beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(router.to_json(), indent=2) + "\n"
    versioned = path.with_name(f"router-{router.version}.json")
    versioned.write_text(text, encoding="utf-8")
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
    return versioned


def _figure(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def main(db: Path | None, out: Path | None, json_output: bool) -> int:
    """The command: read the records, refit, print before and after, write the file."""
    import sys

    from mmx_lsp.cli import workspace_settings
    from mmx_lsp.metrics import path_from_settings
    from mmx_lsp.router_file import RouterSource, path_for

    settings = workspace_settings(Path.cwd()).settings
    database = db or path_from_settings(settings)
    target = out or path_for(settings.routing.router_file)
    base = RouterSource(
        lambda: settings.routing.router_file,
        lambda message: print(f"mmx-lsp calibrate: {message}", file=sys.stderr),
    ).current()
    try:
        examples = read_examples(database)
        router, heldout = calibrate(base, examples)
    except CalibrationError as exc:
        print(f"mmx-lsp calibrate: {exc}", file=sys.stderr)
        return 2
    versioned = write(router, target)
    if json_output:
        print(json.dumps({"router": router.to_json(), "path": str(target)}, indent=2))
        return 0
    good = router.fitted_on["good"]
    print(
        f"calibrated from {len(examples)} verdicts ({good} good cheap answers, "
        f"{len(examples) - good} bad) in {router.fitted_on['files']} files of {database}"
    )
    print(f"held out by file ({heldout.records} records):   before ({base.version})   after")
    print(
        f"  AUROC (good vs bad cheap answers)   "
        f"{_figure(heldout.auroc_before):>10}   {_figure(heldout.auroc_after):>6}"
    )
    print(
        f"  log loss (lower is better)          "
        f"{_figure(heldout.log_loss_before):>10}   {_figure(heldout.log_loss_after):>6}"
    )
    print(f"wrote router {router.version} to {target} (and {versioned.name} beside it)")
    print("running servers pick it up within seconds; no restart needed")
    return 0
