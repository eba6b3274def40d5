"""Is there anything in a request's text that predicts where the cheap model fails?

The router's features are measured with tree-sitter and chosen by hand; when none of them
carries signal, the question is whether another feature would. This asks the text itself,
with nothing chosen: a multinomial naive Bayes over the words (identifiers split into their
parts, and pairs of them) and the character 3–5-grams of the method's signature and
docstring, fitted and judged cross-validated by class like the router. If this finds nothing
either, the requests' text does not say which ones the cheap model gets wrong.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

from benchmarks import routing_data as rd
from mmx_lsp.router import auroc

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\sA-Za-z\d]")


def method_text(item: rd.Item) -> str:
    """The method as the request shows it: its `def` line down to the cursor."""
    lines = item.text.splitlines()
    first = item.row
    while first > 0 and not lines[first].lstrip().startswith(("def ", "async def ")):
        first -= 1
    return "\n".join(lines[first : item.row + 1])


def terms(text: str) -> Counter[str]:
    """Words (lowercased parts of identifiers), pairs of words, and character 3–5-grams."""
    words = [w.lower() for w in _WORD.findall(text)]
    found: Counter[str] = Counter(f"w:{w}" for w in words)
    found.update(f"p:{a} {b}" for a, b in pairwise(words))
    squeezed = " ".join(text.split())
    for n in (3, 4, 5):
        found.update(f"c:{squeezed[i : i + n]}" for i in range(len(squeezed) - n + 1))
    return found


class NaiveBayes:
    """Multinomial naive Bayes with add-one smoothing, over terms seen in ≥ 2 requests."""

    def __init__(self, documents: Sequence[Counter[str]], labels: Sequence[int]) -> None:
        seen = Counter(t for doc in documents for t in doc)
        self.vocabulary = {t for t, n in seen.items() if n >= 2}
        counts = [Counter[str](), Counter[str]()]
        for doc, label in zip(documents, labels, strict=True):
            counts[label].update({t: n for t, n in doc.items() if t in self.vocabulary})
        size = len(self.vocabulary)
        self.totals = [sum(c.values()) + size for c in counts]
        self.counts = counts
        positives = sum(labels)
        self.prior = math.log((positives + 1) / (len(labels) - positives + 1))

    def log_odds(self, doc: Counter[str]) -> float:
        """log P(label 1 | doc) − log P(label 0 | doc)."""
        odds = self.prior
        for t, n in doc.items():
            if t in self.vocabulary:
                one = (self.counts[1][t] + 1) / self.totals[1]
                zero = (self.counts[0][t] + 1) / self.totals[0]
                odds += n * math.log(one / zero)
        return odds


def cross_validated_auroc(items: Sequence[rd.Item], labels: Sequence[int]) -> float:
    """AUROC of naive Bayes' odds for `labels`, each class scored by a model fitted without
    it (the router's folds)."""
    documents = [terms(method_text(it)) for it in items]
    odds = [0.0] * len(items)
    for test in rd.folds(items):
        held = set(test)
        train = [i for i in range(len(items)) if i not in held]
        model = NaiveBayes([documents[i] for i in train], [labels[i] for i in train])
        for i in test:
            odds[i] = model.log_odds(documents[i])
    return auroc(odds, labels)


def signal_lines(items: Sequence[rd.Item]) -> list[str]:
    lines = [
        "5. Is the signal anywhere in the request's text? Naive Bayes over the words and",
        "   character 3–5-grams of the method's signature and docstring (nothing chosen by hand),",
        "   cross-validated by class, AUROC (0.5 = none):",
        f"   {'cheap model':30} {'cheap fails':>12} {'only premium passes':>20}",
    ]
    for cheap in rd.models(items):
        if cheap == rd.PREMIUM_MODEL:
            continue
        fails = [int(not it.passes(cheap)) for it in items]
        gain = [int(not it.passes(cheap) and it.passes(rd.PREMIUM_MODEL)) for it in items]
        a, b = cross_validated_auroc(items, fails), cross_validated_auroc(items, gain)
        lines.append(f"   {cheap:30} {a:12.2f} {b:20.2f}")
    # The probe's power: a label the text does decide is found across classes.
    says_list = [int("list" in method_text(it).lower()) for it in items]
    control = cross_validated_auroc(items, says_list)
    lines.append(
        f"   for comparison, a label the text decides (the method mentions 'list'): {control:.2f}"
    )
    return lines
