"""Documents: UTF-16 positions, incremental edits and trees that match a fresh parse."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmx_lsp.documents import Document, Documents, split_lines, utf16_len, utf16_to_index
from mmx_lsp.excerpts import excerpt as take_excerpt

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TEXT = st.text(
    alphabet=st.sampled_from([*list("ab \t(){}:=\n\r"), "é", "中", "😀", "𝄞"]), max_size=80
)


def reference_offset(text: str, line: int, character: int) -> int:
    """Offset of an LSP position by the spec's definition, written the slow, obvious way."""
    lines = split_lines(text)
    if line >= len(lines):  # past the last line: the end of the document
        return len(text)
    body = lines[line].rstrip("\r\n")
    units = 0
    index = 0
    while index < len(body) and units < character:
        units += 2 if ord(body[index]) > 0xFFFF else 1
        index += 1
    return sum(len(x) for x in lines[:line]) + index


@given(st.text(max_size=40), st.integers(0, 60))
def test_utf16_index_round_trips(line: str, character: int) -> None:
    line = line.replace("\n", "").replace("\r", "")
    index = utf16_to_index(line, character)
    assert 0 <= index <= len(line)
    assert utf16_len(line[:index]) >= min(character, utf16_len(line)) - 1


def test_emoji_and_cjk_columns_are_utf16_code_units() -> None:
    doc = Document.open("file:///a.py", "python", 1, "s = '😀中x'\n")
    # '😀' is two UTF-16 units: character 7 is after it, 8 after 中.
    assert doc.clamp(0, 7) == (0, 6)
    assert doc.clamp(0, 8) == (0, 7)
    assert doc.to_lsp(0, 7) == (0, 8)


@settings(max_examples=150, deadline=None)
@given(
    TEXT,
    st.lists(
        st.tuples(
            st.integers(0, 8), st.integers(0, 12), st.integers(0, 8), st.integers(0, 12), TEXT
        ),
        max_size=12,
    ),
)
def test_incremental_edits_match_the_reference_text_and_a_fresh_parse(
    text: str, edits: list[tuple[int, int, int, int, str]]
) -> None:
    doc = Document.open("file:///a.py", "python", 0, text)
    doc.tree()
    expected = text
    for version, (l0, c0, l1, c1, new) in enumerate(edits, start=1):
        a = reference_offset(expected, l0, c0)
        b = reference_offset(expected, l1, c1)
        if b < a:
            a, b = b, a
            (l0, c0), (l1, c1) = (l1, c1), (l0, c0)
        doc.apply((l0, c0), (l1, c1), new, version)
        expected = expected[:a] + new + expected[b:]
        assert doc.text() == expected
    tree = doc.tree()
    assert tree is not None and doc.parser is not None
    fresh = doc.parser.parse(expected.encode("utf-8"))
    assert str(tree.root_node) == str(fresh.root_node)


def test_byte_offsets_stay_right_after_edits_far_apart() -> None:
    source = (FIXTURES / "python" / "typing_cpython.py").read_text()
    doc = Document.open("file:///t.py", "python", 0, source)
    doc.apply((3000, 0), (3000, 0), "é\n", 1)
    doc.apply((10, 0), (10, 0), "😀", 2)
    text = doc.text()
    for row in (0, 10, 11, 2999, 3000, 3001, doc.line_count - 1):
        expected = len("".join(split_lines(text)[:row]).encode("utf-8"))
        assert doc.line_start(row) == expected


def test_only_recent_documents_keep_their_trees() -> None:
    docs = Documents(max_trees=2)
    opened = [docs.open(f"file:///{i}.py", "python", 0, "x = 1\n") for i in range(3)]
    for doc in opened:
        doc.tree()
        docs.touch(doc)
    assert not opened[0].has_tree
    assert opened[1].has_tree and opened[2].has_tree
    # An evicted tree is rebuilt on demand.
    assert docs.get("file:///0.py") is opened[0]
    assert opened[0].tree() is not None


def test_region_is_the_enclosing_definition_not_the_file() -> None:
    source = (FIXTURES / "python" / "typing_cpython.py").read_text()
    doc = Document.open("file:///t.py", "python", 0, source)
    r0, r1 = doc.region_rows(1500, 1500)
    assert r1 - r0 < 400
    assert r0 <= 1500 <= r1


def test_binary_and_unknown_languages_have_no_tree() -> None:
    assert Document.open("file:///b.bin", "plaintext", 0, "\x00abc").spec is None
    assert Document.open("file:///n.xyz", "cobol", 0, "MOVE A TO B.").spec is None
    assert Document.open("file:///n.rs", "plaintext", 0, "fn main() {}").language == "rust"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),
            st.integers(0, 30),
            st.sampled_from(["x", " ", "(", ")", ":", "\n", "\n    ", "é", "", "😀"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_span_trees_reparsed_incrementally_match_a_fresh_parse(
    keystrokes: list[tuple[int, int, str]],
) -> None:
    text = (FIXTURES / "python" / "ledger.py").read_text()
    doc = Document.open("file:///l.py", "python", 0, text)
    base = next(i for i, line in enumerate(text.splitlines()) if "def statement" in line)
    for version, (row, column, typed) in enumerate(keystrokes, start=1):
        target = base + 1 + row
        doc.apply((target, column), (target, column), typed, version)
        span = doc.span(target, target)
        assert span is not None and doc.parser is not None
        assert span.text == "".join(doc.lines[span.start_row : span.end_row + 1]).encode()
        fresh = doc.parser.parse(span.text)
        assert str(span.tree.root_node) == str(fresh.root_node)


@pytest.mark.parametrize(
    "path",
    ["python/typing_cpython.py", "go/ratelimit.go", "cpp/llama_vocab.cpp", "javascript/acorn.js"],
)
def test_excerpt_keeps_the_request_its_scope_and_the_imports(path: str) -> None:
    from mmx_lsp.languages import language_of_path

    text = (FIXTURES / path).read_text()
    doc = Document.open(f"file:///{path}", language_of_path(path), 0, text)
    rows = text.splitlines()
    for row in range(7, len(rows), max(1, len(rows) // 40)):
        column = len(rows[row]) // 2
        excerpt = take_excerpt(doc, (row, column), (row, column), 2000)
        assert excerpt.text[excerpt.start - column : excerpt.start] == rows[row][:column]
        assert excerpt.text[excerpt.start :].split("\n", 1)[0] == rows[row][column:]
        lines = excerpt.text.splitlines()
        scope = doc.scope_rows(row, row)
        if excerpt.scope is not None and scope is not None:
            if row - scope[0] <= 400:  # a nearby definition's first line is always shown
                assert lines[excerpt.scope[0]] == rows[scope[0]]
            # ... and its last line, unless the window ends inside the definition.
            assert lines[excerpt.scope[1]] == rows[scope[1]] or excerpt.scope[1] == len(lines) - 1
        for number in excerpt.imports:
            assert any(lines[number] == line.rstrip("\r\n") for _, line in doc.import_lines())
        assert (
            len(excerpt.text) < 4 * 2000 + sum(len(line) for _, line in doc.import_lines()) + 20_000
        )


def test_excerpt_prompt_matches_the_whole_file_prompt_near_the_cursor() -> None:
    from mmx_lsp import prompts

    text = (FIXTURES / "python" / "ledger.py").read_text()
    doc = Document.open("file:///l.py", "python", 0, text)
    row = next(i for i, line in enumerate(text.splitlines()) if "running += posting.amount" in line)
    excerpt = take_excerpt(doc, (row, 20), (row, 20), 2000)
    offset = sum(len(line) for line in doc.lines[:row]) + 20
    mine = prompts.build_inline(
        excerpt.text, excerpt.start, "python", 500, "chat", outline=excerpt.outline
    )
    whole = prompts.build_inline(text, offset, "python", 500, "chat")
    assert mine.messages == whole.messages


def test_import_lines_follow_edits_above_them() -> None:
    doc = Document.open(
        "file:///i.py", "python", 0, "import os\nimport sys\n\n\ndef f():\n    pass\n"
    )
    assert [row for row, _ in doc.import_lines()] == [0, 1]
    doc.apply((0, 0), (0, 0), "# header\n", 1)
    assert [(row, line) for row, line in doc.import_lines()] == [
        (1, "import os\n"),
        (2, "import sys\n"),
    ]
