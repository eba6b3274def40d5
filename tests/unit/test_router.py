"""The learned router: its file, inference, fitting, and the expected-cost decision."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from pathlib import Path

import pytest

from mmx_lsp import router as r
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document
from mmx_lsp.engine import decide
from mmx_lsp.scoring import Features, Request

KNOWN = frozenset(Features.__dataclass_fields__) | {
    "doc_words",
    "doc_examples",
    "doc_promises_return",
    "parameters",
    "annotated_share",
    "siblings",
    "siblings_in_doc",
    "members",
    "members_in_doc",
    "imports",
}


def built_in() -> r.Router:
    return r.load_built_in(KNOWN)


def test_the_built_in_router_says_what_it_was_fitted_on_and_reached() -> None:
    router = built_in()
    assert router.version and router.source == "built-in"
    assert router.fitted_on["requests"] > 100 and router.fitted_on["languages"] == ["python"]
    assert {"auroc_cheap_fails_premium_passes", "verifier_recall"} <= set(router.figures)
    assert 0 < router.verifier_recall < 1 and 0 <= router.verifier_false_alarms < 1


def test_estimate_is_a_probability_and_missing_or_nan_features_use_the_mean() -> None:
    router = built_in()
    assert 0 < router.p_cheap_ok({}) < 1
    means = {
        t.name: (math.expm1(t.mean) if t.transform == "log1p" else t.mean) for t in router.terms
    }
    at_mean = router.p_cheap_ok(means)
    nan = {name: float("nan") for name in means}
    assert router.p_cheap_ok(nan) == pytest.approx(at_mean)
    assert router.p_cheap_ok({"doc_words": "many"}) == pytest.approx(
        router.p_cheap_ok({**means, "doc_words": means["doc_words"]}), abs=0.2
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.json"
    path.write_text(text, encoding="utf-8")
    return path


def valid() -> dict:
    return built_in().to_json()


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: "{", "cannot be read"),
        (lambda d: json.dumps(d)[:40], "cannot be read"),
        (lambda d: json.dumps({**d, "format": 99}), "newer than this mmx-lsp"),
        (
            lambda d: json.dumps({**d, "features": [{**d["features"][0], "name": "stars"}]}),
            "fitted on other features",
        ),
        (lambda d: json.dumps({**d, "intercept": "NaN"}), "finite number"),
        (lambda d: json.dumps([1, 2]), "not a JSON object"),
    ],
    ids=["corrupt", "truncated", "future-version", "other-features", "nan", "not-an-object"],
)
def test_an_unusable_router_file_falls_back_to_the_built_in_router_with_a_message(
    tmp_path: Path, mutate, words: str
) -> None:
    path = write(tmp_path, mutate(valid()))
    router, message = r.load(path, KNOWN)
    assert router.version == built_in().version and router.source == "built-in"
    assert message is not None and words in message
    assert str(path) in message and "mmx-lsp calibrate" in message


def test_a_missing_router_file_is_not_an_error(tmp_path: Path) -> None:
    router, message = r.load(tmp_path / "absent.json", KNOWN)
    assert router.source == "built-in" and message is None


def test_a_valid_router_file_is_used(tmp_path: Path) -> None:
    data = {**valid(), "version": "team-7"}
    router, message = r.load(write(tmp_path, json.dumps(data)), KNOWN)
    assert (router.version, message) == ("team-7", None)


def test_fit_recovers_the_direction_of_a_real_effect() -> None:
    rng = random.Random(1)
    rows, labels = [], []
    for _ in range(400):
        x = rng.uniform(0, 10)
        rows.append({"doc_words": x, "imports": rng.uniform(0, 10)})
        labels.append(int(rng.random() < 1 / (1 + math.exp(x - 5))))
    intercept, terms = r.fit(rows, labels, ["doc_words", "imports"], {}, l2=1.0)
    weights = {t.name: t.weight for t in terms}
    assert weights["doc_words"] < -1.0 and abs(weights["imports"]) < 0.3
    model = r.Router("t", intercept, terms, 0.0, 0.0, 0.0)
    scores = [1 - model.p_cheap_ok(row) for row in rows]
    assert r.auroc(scores, [1 - y for y in labels]) > 0.8


def test_fit_with_a_prior_stays_near_it_on_little_data() -> None:
    prior = built_in()
    rows = [{t.name: 1.0 for t in prior.terms} for _ in range(4)]
    names = [t.name for t in prior.terms]
    transforms = {t.name: t.transform for t in prior.terms}
    _, terms = r.fit(
        rows, [1, 0, 1, 0], names, transforms, l2=50.0, prior=(prior.intercept, prior.terms)
    )
    for fitted, old in zip(terms, prior.terms, strict=True):
        assert fitted.weight == pytest.approx(old.weight, abs=0.05)


def test_auroc_of_perfect_reversed_and_tied_scores() -> None:
    assert r.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert r.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert r.auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert math.isnan(r.auroc([0.1, 0.2], [1, 1]))


def test_premium_pays_only_when_failures_cost_more_than_its_price() -> None:
    router = built_in()
    cheap, premium = Decimal("0.0005"), Decimal("0.01")
    free_failures = r.expected_costs(router, 0.3, cheap, premium, Decimal(0))
    assert not free_failures.premium_pays
    costly = r.expected_costs(router, 0.3, cheap, premium, Decimal("10"))
    assert costly.premium_pays
    likely_fine = r.expected_costs(router, 0.99, cheap, premium, Decimal("1"))
    assert not likely_fine.premium_pays


def test_escalation_pays_when_a_flagged_answer_is_worth_more_than_the_premium_call() -> None:
    router = built_in()
    assert r.escalation_pays(router, 0.5, 0.9, Decimal("0.01"), Decimal("0.05"))
    assert not r.escalation_pays(router, 0.5, 0.9, Decimal("1.00"), Decimal("0.05"))


BODY = (
    '''class Cart:
    def __init__(self):
        self.items = []

    def total(self, discount):
        """The sum of the prices, less the discount.
        >>> Cart().total(0)
        0
        """
'''
    + " " * 8
    + "\n"
)


def test_decisions_on_a_body_carry_the_estimate_and_the_router_version() -> None:
    doc = Document.open("file:///cart.py", "python", 1, BODY)
    router = built_in()
    decision = decide(Settings(), doc, Request("inline", (9, 8)), router=router)
    assert decision.router == router.version
    assert decision.p_cheap_ok is not None and 0 < decision.p_cheap_ok < 1
    assert decision.score == pytest.approx(1 - decision.p_cheap_ok, abs=1e-4)
    assert decision.expected_usd is not None and set(decision.expected_usd) == {
        "cheap_first",
        "premium",
    }
    assert "p=" in decision.reason
    baseline = decide(
        Settings(routing={"router": "weights"}), doc, Request("inline", (9, 8)), router=router
    )
    assert baseline.router == "weights/1" and baseline.p_cheap_ok is None


def test_requests_the_router_has_no_data_for_keep_the_weighted_score() -> None:
    doc = Document.open("file:///cart.py", "python", 1, BODY)
    refactor = decide(Settings(), doc, Request("refactor", (4, 0), (8, 0)), router=built_in())
    line = decide(Settings(), doc, Request("inline", (2, 18)), router=built_in())
    assert refactor.router == "weights/1" and refactor.p_cheap_ok is None
    assert line.router == "weights/1"


def test_failures_that_cost_nothing_send_every_body_to_cheap() -> None:
    doc = Document.open("file:///cart.py", "python", 1, BODY)
    settings = Settings(routing={"failed_answer_usd": "0"})
    assert decide(settings, doc, Request("inline", (9, 8)), router=built_in()).tier == "cheap"
    pricey = Settings(routing={"failed_answer_usd": "1000"})
    assert decide(pricey, doc, Request("inline", (9, 8)), router=built_in()).tier == "premium"


def test_unpriced_models_leave_the_estimate_to_the_threshold() -> None:
    doc = Document.open("file:///cart.py", "python", 1, BODY)
    settings = Settings(
        tiers={
            "cheap": {"provider": "openai", "model": "house-small"},
            "premium": {"provider": "openai", "model": "house-large"},
        }
    )
    decision = decide(settings, doc, Request("inline", (9, 8)), router=built_in())
    assert decision.p_cheap_ok is not None and decision.expected_usd is None
    assert decision.tier == ("premium" if decision.score > 0.55 else "cheap")
    assert "threshold" in decision.reason


def test_values_far_outside_the_fitted_data_are_clipped_not_extrapolated() -> None:
    term = r.Term("annotated_share", "identity", mean=0.005, scale=0.072, weight=-0.2)
    assert term.value({"annotated_share": 1.0}) == r.CLIP
    assert term.value({"annotated_share": 0.005}) == 0.0
