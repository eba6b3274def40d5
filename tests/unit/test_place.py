"""What a completion at a place is asked to write, measured the same way in each language."""

from __future__ import annotations

from mmx_lsp.documents import Document
from mmx_lsp.scoring import Request, measure

PYTHON = '''import os


class Store:
    def __init__(self, root):
        self.root = root
        self.cache = {}

    def load(self, name: str, fresh: bool = False) -> bytes:
        """Read `name` under self.root, through cache unless fresh.
        >>> Store("/tmp").load("a")
        b''
        :return: bytes
        """
$INDENT

    def save(self, name, data):
        pass
'''.replace("$INDENT", " " * 8)

GO = """package store

import "os"

// Load reads name under the root, through the cache unless fresh.
// It returns the bytes, e.g. Load("a", false).
func (s *Store) Load(name string, fresh bool) ([]byte, error) {
\t
}
"""


def place(language: str, text: str, row: int, col: int) -> dict:
    doc = Document.open(f"file:///x.{language}", language, 1, text)
    return measure(doc, Request("inline", (row, col))).as_dict()


def test_python_body_after_docstring() -> None:
    found = place("python", PYTHON, 14, 8)
    assert found["hole"] == "body"
    assert found["parameters"] == 2 and found["annotated_share"] == 1.0
    assert found["doc_examples"] == 1 and found["doc_promises_return"] == 1
    assert found["siblings"] == 2  # __init__ and save
    assert found["members"] == 2 and found["members_in_doc"] == 2  # root and cache
    assert found["imports"] == 1
    assert found["doc_words"] > 10


def test_go_body_after_a_comment_is_measured_through_the_same_tables() -> None:
    found = place("go", GO, 7, 1)
    assert found["parameters"] == 2 and found["annotated_share"] == 1.0
    assert found["doc_examples"] == 1 and found["doc_promises_return"] == 1
    assert found["doc_words"] > 10
    assert found["imports"] == 2  # the package clause and the import


def test_a_selection_has_no_place_measures() -> None:
    doc = Document.open("file:///x.py", "python", 1, PYTHON)
    found = measure(doc, Request("refactor", (8, 0), (15, 0))).as_dict()
    assert found["doc_words"] == 0 and found["parameters"] == 0
