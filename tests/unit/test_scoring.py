"""Each feature of a request, measured on real code."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmx_lsp.documents import Document
from mmx_lsp.scoring import (
    WEIGHTS,
    Request,
    measure,
    score,
)
from mmx_lsp.tokens import TOKENS_PER_BYTE, estimate_tokens, tokens_for_bytes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LEDGER = (FIXTURES / "python" / "ledger.py").read_text()


def doc_of(text: str, language: str = "python") -> Document:
    return Document.open(f"file:///x.{language}", language, 0, text)


def row_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.mark.parametrize(
    "needle, column, hole",
    [
        ("total = sum(", 20, "expression"),
        ('"""Move every income', None, "body"),
        ("for posting in postings:", None, "block"),
    ],
    ids=["expression", "body-after-docstring", "block-after-opener"],
)
def test_hole_kind(needle: str, column: int | None, hole: str) -> None:
    doc = doc_of(LEDGER)
    row = row_of(LEDGER, needle)
    if column is None:  # the empty line just below
        if hole == "block":
            doc.apply((row + 1, 0), (row + 1, 0), "\n", 1)
        row, column = row + 1, 8
        if hole == "body":
            doc.apply((row, 0), (row, 0), "        \n", 2)
    features = measure(doc, Request("inline", doc.clamp(row, column)))
    assert features.hole == hole


def test_a_line_between_statements_is_a_line() -> None:
    text = "def f(a):\n    x = a + 1\n\n    return x\n"
    doc = doc_of(text)
    assert measure(doc, Request("inline", (2, 4))).hole == "line"


def test_definitions_touched_counts_outermost_definitions_in_the_selection() -> None:
    doc = doc_of(LEDGER)
    start = row_of(LEDGER, "def balance")
    end = row_of(LEDGER, "def statement")
    two = measure(doc, Request("refactor", (start, 0), (end - 1, 0)))
    inside = measure(doc, Request("refactor", (start + 1, 0), (start + 2, 0)))
    assert two.definitions_touched == 2
    assert inside.definitions_touched == 1
    assert two.selected_lines == end - 1 - start


def test_nesting_depth_grows_with_blocks() -> None:
    text = "def f(xs):\n    for x in xs:\n        if x:\n            while x:\n                x -= 1\n"
    doc = doc_of(text)
    shallow = measure(doc, Request("inline", (1, 8))).nesting_depth
    deep = measure(doc, Request("inline", (4, 20))).nesting_depth
    assert deep > shallow >= 1


def test_external_identifiers_are_names_bound_elsewhere() -> None:
    text = (
        "import os\nfrom pathlib import Path\n\n\n"
        "def load(name, default=None):\n"
        "    base = Path(os.environ['HOME'])\n"
        "    value = read_config(base / name)\n"
        "    return value if value is not None else default\n"
    )
    features = measure(doc_of(text), Request("inline", (6, 10)))
    # Path, os and read_config; not the parameters, locals or builtins.
    assert features.external_identifiers == 3


def test_syntax_errors_near_the_cursor_are_counted() -> None:
    broken = "def f(x):\n    return (x +\n\n\ndef g():\n    pass\n"
    assert measure(doc_of(broken), Request("inline", (1, 15))).syntax_errors > 0
    fine = "def f(x):\n    return x + 1\n"
    assert measure(doc_of(fine), Request("inline", (1, 15))).syntax_errors == 0


def test_context_tokens_follow_the_enclosing_definition_not_the_file() -> None:
    big = (FIXTURES / "python" / "typing_cpython.py").read_text()
    doc = doc_of(big)
    features = measure(doc, Request("inline", (row_of(big, "def _type_check(") + 3, 8)))
    assert 20 < features.context_tokens < 3000
    assert estimate_tokens(big) > 20_000


@pytest.mark.parametrize(
    "language, path",
    [("go", "go/ratelimit.go"), ("rust", "rust/lru.rs"), ("java", "java/Inventory.java")],
)
def test_other_languages_measure_definitions(language: str, path: str) -> None:
    text = (FIXTURES / path).read_text()
    doc = Document.open(f"file:///{path}", language, 0, text)
    lines = len(text.splitlines())
    features = measure(doc, Request("refactor", (lines // 3, 0), (lines - 3, 0)))
    assert features.definitions_touched >= 2
    assert features.language == language


def test_plain_text_is_scored_by_size() -> None:
    doc = Document.open("file:///notes.txt", "plaintext", 0, "word " * 5000)
    features = measure(doc, Request("explain", (0, 0), (0, 100)))
    assert features.language == "plaintext" and features.context_tokens > 1000


def test_score_is_bounded_and_weights_are_data() -> None:
    doc = doc_of(LEDGER)
    small = measure(doc, Request("inline", (row_of(LEDGER, "total = sum("), 20)))
    large = measure(doc, Request("refactor", (0, 0), (doc.line_count - 1, 0)))
    s_small, _ = score(small)
    s_large, parts = score(large)
    assert 0 <= s_small < 0.2 < 0.55 < s_large <= 1
    assert set(parts) <= {k.split(".")[0] for k in WEIGHTS}
    zero = {k: 0.0 for k in WEIGHTS}
    assert score(large, zero)[0] == 0.0


@pytest.mark.parametrize(
    "path", sorted(p.name for p in FIXTURES.glob("*/*.*") if p.suffix != ".toml")
)
def test_token_estimate_is_three_to_five_characters_a_token(path: str) -> None:
    text = next(FIXTURES.glob(f"*/{path}")).read_text()
    assert 3.0 <= len(text) / estimate_tokens(text) <= 5.5


def test_byte_rate_is_calibrated_against_the_token_estimate() -> None:
    ratios = []
    for path in FIXTURES.glob("*/*.*"):
        if path.suffix == ".toml":
            continue
        text = path.read_text()
        ratios.append(estimate_tokens(text) / len(text.encode("utf-8")))
    ratios.sort()
    median = ratios[len(ratios) // 2]
    assert abs(median - TOKENS_PER_BYTE) / median < 0.2
    assert tokens_for_bytes(4000) == round(4000 * TOKENS_PER_BYTE)


@pytest.mark.parametrize("kind", ["refactor", "fix", "docstring", "explain"])
def test_measuring_once_for_several_kinds_matches_measuring_each(kind: str) -> None:
    from mmx_lsp.scoring import for_kind

    doc = doc_of(LEDGER)
    start, end = (row_of(LEDGER, "def balance"), 0), (row_of(LEDGER, "def statement") + 3, 0)
    once = for_kind(measure(doc, Request("refactor", start, end)), kind)
    assert once == measure(doc, Request(kind, start, end))


def test_past_the_last_node_a_region_starts_where_code_starts_never_in_a_docstring() -> None:
    """At the end of a file, past every top-level node, the region parsed on its own starts
    where the code before it starts: cut into a docstring, its quotes pair the wrong way and
    the body after the last docstring reads as a line."""
    from mmx_lsp.documents import Document
    from mmx_lsp.scoring import Request, measure

    methods = "".join(
        f'\n    @staticmethod\n    def m{i}(n):\n        """\n'
        + "        Generates a list of all arrangements by selecting items.\n" * 3
        + "        :return: List, a list of all arrangements.\n"
        + f"        >>> K.m{i}(4)\n        [[1], [2], [1, 2], [2, 1]]\n\n"
        + '        """\n        \n'
        for i in range(6)
    )
    doc = Document.open("file:///k.py", "python", 1, "class K:\n" + methods)
    last = len(doc.lines) - 2  # the indented blank line after the last docstring
    assert doc.line_text(last) == " " * 8
    first, _ = doc.region_rows(last, last)
    assert doc.line_text(first).startswith(("class ", "    @staticmethod", "    def "))
    features = measure(doc, Request("inline", (last, 8)))
    assert features.hole == "body" and features.place.doc_examples == 1
