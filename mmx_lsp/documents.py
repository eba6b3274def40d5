"""Open documents: text as lines, UTF-16 positions, and tree-sitter trees kept cheap per keystroke.

The keystroke path never waits for a whole-document reparse. Each change is applied to the
line list and to the document's last tree with `Tree.edit` (cheap); a request then reparses
only the region it needs (the enclosing definitions, found in the edited tree) into a small
local tree. The whole tree is brought up to date incrementally when the editor goes idle or
when something needs the whole file. Only the trees of the most recently used documents are
kept; an evicted tree is rebuilt on demand.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from mmx_lsp import languages

if TYPE_CHECKING:
    from tree_sitter import Node, Parser, Tree

# A region larger than this is narrowed to the innermost definition that holds the request.
MAX_REGION_LINES = 400
# Bytes beyond which a document is kept as text only (no tree, scored by size).
MAX_PARSE_BYTES = 4 * 1024 * 1024
# A line longer than this (minified code, a data blob) makes the document text only too: a
# region is whole lines, and reparsing megabytes per keystroke would stall every request.
MAX_PARSE_LINE_CHARS = 20_000

# Lone UTF-16 surrogates are not text: JSON can carry them, UTF-8 cannot encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> tuple[str, int]:
    """`text` with each lone UTF-16 surrogate (which JSON can carry but UTF-8 cannot encode)
    replaced by U+FFFD, and how many there were. Both take one UTF-16 unit, so the editor's
    positions stay right."""
    if text.isascii():
        return text, 0
    return _SURROGATE.subn("\ufffd", text)


def utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def utf16_to_index(line: str, character: int) -> int:
    """Python index in `line` of an LSP UTF-16 column (clamped to the line).

    Encodes the prefix once (C speed) rather than looping over characters in Python: a
    column in a megabyte-long line must not cost a second."""
    if character <= 0:
        return 0
    if line.isascii():
        return min(character, len(line))
    prefix = line[:character]
    units = prefix.encode("utf-16-le", "surrogatepass")
    if len(units) == 2 * len(prefix):  # nothing outside the BMP before the column
        return len(prefix)
    # A column inside a surrogate pair lands after the character (its half decodes alone).
    return len(units[: 2 * character].decode("utf-16-le", "surrogatepass"))


def index_to_utf16(line: str, index: int) -> int:
    prefix = line[: max(0, index)]
    if prefix.isascii():
        return len(prefix)
    return len(prefix.encode("utf-16-le", "surrogatepass")) // 2


def _strip_eol(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def split_lines(text: str) -> list[str]:
    """Lines with their endings (LSP's: \\n, \\r\\n, \\r); the last has none (maybe empty)."""
    lines = _LINE.findall(text)
    if not lines or lines[-1].endswith(("\n", "\r")):
        lines.append("")
    return lines


def uri_to_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme in ("file", ""):
        return unquote(parsed.path)
    return unquote(parsed.path) or uri


@dataclass
class Span:
    """A region of rows [start_row, end_row] parsed on its own.

    Edits inside it are applied to its tree too (`stale` until reparsed), so typing in one
    function reparses that function incrementally, not the file and not from scratch.
    """

    start_row: int
    end_row: int
    tree: Tree
    text: bytes
    stale: bool = False


# Top-level statements looked at for imports: they come first in real files.
IMPORT_SCAN_LIMIT = 300


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    lines: list[str]
    spec: languages.LanguageSpec | None = None
    binary: bool = False
    _tree: Tree | None = None
    _tree_fresh: bool = False
    _starts: list[int] = field(default_factory=list)  # byte offset of each line start
    _valid: int = 0  # _starts[0.._valid] are correct
    _span: Span | None = None
    _imports: list[tuple[int, str]] | None = None  # (row, line) of each import line
    # Results computed from this version of the text (the features of a request), keyed by
    # what was asked; emptied by every change.
    memo: dict[object, object] = field(default_factory=dict)
    _parser: Parser | None = None
    # Lone surrogates replaced by U+FFFD, and whether the editor has been told.
    replaced_chars: int = 0
    replaced_told: bool = False

    @classmethod
    def open(cls, uri: str, language_id: str, version: int, text: str) -> Document:
        spec = languages.spec_for(language_id)
        if spec is None and language_id in ("", "plaintext"):
            spec = languages.spec_for(languages.language_of_path(uri_to_path(uri)))
        text, replaced = clean_text(text)
        binary = "\x00" in text[:8192]
        lines = split_lines(text)
        doc = cls(uri, language_id, version, lines, spec, binary)
        doc.replaced_chars = replaced
        doc._starts = [0] * len(lines)
        if doc.text_only_reason() is not None:
            doc.spec = None
        return doc

    def text_only_reason(self) -> str | None:
        """Why this document is scored by size without a tree, or None when it can be parsed."""
        if self.binary:
            return "binary content"
        if self.size_bytes > MAX_PARSE_BYTES:
            return "too large to parse"
        if max(map(len, self.lines)) > MAX_PARSE_LINE_CHARS:
            return f"a line of more than {MAX_PARSE_LINE_CHARS:,} characters (minified)"
        if self.spec is None:
            return "no grammar"
        return None

    # ------------------------------------------------------------------ text and positions

    @property
    def path(self) -> str:
        return uri_to_path(self.uri)

    @property
    def name(self) -> str:
        return PurePath(self.path).name

    @property
    def language(self) -> str:
        return self.spec.name if self.spec else "plaintext"

    @property
    def line_count(self) -> int:
        return len(self.lines)

    @property
    def size_bytes(self) -> int:
        return self.line_start(len(self.lines) - 1) + len(self.lines[-1].encode("utf-8"))

    def text(self) -> str:
        return "".join(self.lines)

    def line_text(self, row: int) -> str:
        return _strip_eol(self.lines[row]) if 0 <= row < len(self.lines) else ""

    def clamp(self, line: int, character: int) -> tuple[int, int]:
        """(row, python index) of an LSP position, clamped into the document."""
        if line < 0:
            return 0, 0
        if line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(_strip_eol(self.lines[last]))
        text = _strip_eol(self.lines[line])
        return line, utf16_to_index(text, character)

    def to_lsp(self, row: int, index: int) -> tuple[int, int]:
        return row, index_to_utf16(self.line_text(row), index)

    def line_start(self, row: int) -> int:
        """Byte offset of a row; prefix sums are repaired lazily from the last edit on."""
        if row > self._valid:
            starts, lines = self._starts, self.lines
            offset = starts[self._valid]
            for i in range(self._valid, row):
                offset += len(lines[i].encode("utf-8")) if not lines[i].isascii() else len(lines[i])
                starts[i + 1] = offset
            self._valid = row
        return self._starts[row]

    def byte_point(self, row: int, index: int) -> tuple[int, tuple[int, int]]:
        col = len(self.lines[row][:index].encode("utf-8"))
        return self.line_start(row) + col, (row, col)

    def slice(self, start: tuple[int, int], end: tuple[int, int]) -> str:
        (r0, i0), (r1, i1) = start, end
        if r0 == r1:
            return self.lines[r0][i0:i1]
        return self.lines[r0][i0:] + "".join(self.lines[r0 + 1 : r1]) + self.lines[r1][:i1]

    # ------------------------------------------------------------------ changes

    def replace_all(self, text: str, version: int) -> None:
        text, replaced = clean_text(text)
        self.replaced_chars += replaced
        self.lines = split_lines(text)
        self._starts = [0] * len(self.lines)
        self._valid = 0
        self.version = version
        self._tree = None
        self._tree_fresh = False
        self._span = None
        self._imports = None
        self.memo.clear()
        self.binary = "\x00" in text[:8192]
        if self.text_only_reason() is not None:
            self.spec = None
            self._parser = None

    def apply(
        self, start: tuple[int, int], end: tuple[int, int], new_text: str, version: int
    ) -> None:
        """Apply one incremental change given as LSP positions (UTF-16), clamped and ordered."""
        new_text, replaced = clean_text(new_text)
        self.replaced_chars += replaced
        (r0, i0) = self.clamp(*start)
        (r1, i1) = self.clamp(*end)
        if (r1, i1) < (r0, i0):
            (r0, i0), (r1, i1) = (r1, i1), (r0, i0)
        head = self.lines[r0][:i0]
        tail = self.lines[r1][i1:]
        first, last = r0, r1
        # A lone "\r" next to a "\n" becomes one "\r\n" break: re-split across the boundary.
        if first > 0 and self.lines[first - 1].endswith("\r") and not head:
            first -= 1
            head = self.lines[first] + head
        if last + 1 < len(self.lines) and (tail or new_text or head).endswith("\r"):
            last += 1
            tail += self.lines[last]
        if first == last and "\n" not in new_text and "\r" not in new_text:
            # Typing within a line: no re-split of what may be a megabyte-long line.
            replacement = [head + new_text + tail]
        else:
            replacement = split_lines(head + new_text + tail)
            if last < len(self.lines) - 1:
                replacement.pop()  # the empty line split_lines adds after a final line break
        self.memo.clear()
        if self._tree is None and self._span is None:  # no tree to tell (text only, or evicted)
            self._splice(first, last, replacement, version)
            return
        start_byte, start_point = self.byte_point(r0, i0)
        old_end_byte, old_end_point = self.byte_point(r1, i1)
        encoded = new_text.encode("utf-8")
        parts = split_lines(new_text)
        if len(parts) == 1:
            new_end_point = (r0, start_point[1] + len(encoded))
        else:
            new_end_point = (r0 + len(parts) - 1, len(parts[-1].encode("utf-8")))
        if self._imports is not None and (not self._imports or r0 <= self._imports[-1][0]):
            self._imports = None
        span = self._span
        if span is not None:
            inside = (first, last) == (r0, r1) and span.start_row <= r0 and r1 <= span.end_row
            if inside:
                base = self.line_start(span.start_row)
                row0 = span.start_row
                span.tree.edit(
                    start_byte=start_byte - base,
                    old_end_byte=old_end_byte - base,
                    new_end_byte=start_byte - base + len(encoded),
                    start_point=(r0 - row0, start_point[1]),
                    old_end_point=(r1 - row0, old_end_point[1]),
                    new_end_point=(new_end_point[0] - row0, new_end_point[1]),
                )
                span.end_row += len(replacement) - (last - first + 1)
                span.stale = True
            else:
                self._span = None
        self._splice(first, last, replacement, version)
        if self.spec is None:
            return
        if self._tree is not None:
            self._tree.edit(
                start_byte=start_byte,
                old_end_byte=old_end_byte,
                new_end_byte=start_byte + len(encoded),
                start_point=start_point,
                old_end_point=old_end_point,
                new_end_point=new_end_point,
            )
            self._tree_fresh = False

    def _splice(self, first: int, last: int, replacement: list[str], version: int) -> None:
        """Put `replacement` in place of rows first..last."""
        self.lines[first : last + 1] = replacement
        self._starts[first + 1 : last + 1] = [0] * (len(replacement) - 1)
        self._valid = min(self._valid, first)
        self.version = version
        if self.spec is not None and max(map(len, replacement)) > MAX_PARSE_LINE_CHARS:
            self.drop_tree()  # the document became minified: text only from now on
            self.spec = None
            self._parser = None

    # ------------------------------------------------------------------ trees

    @property
    def parser(self) -> Parser | None:
        if self.spec is None:
            return None
        if self._parser is None:
            from tree_sitter import Parser

            self._parser = Parser(languages.grammar(self.spec))
        return self._parser

    def tree(self) -> Tree | None:
        """The whole document's tree, reparsed incrementally if edits are pending."""
        parser = self.parser
        if parser is None:
            return None
        if self._tree is None or not self._tree_fresh:
            source = self.text().encode("utf-8")
            old = self._tree
            self._tree = parser.parse(source, old) if old is not None else parser.parse(source)
            self._tree_fresh = True
        return self._tree

    def edited_tree(self) -> Tree | None:
        """The last tree with every edit since applied to its positions (may be stale)."""
        if self._tree is None:
            return self.tree()
        return self._tree

    @property
    def has_tree(self) -> bool:
        return self._tree is not None

    @property
    def tree_is_fresh(self) -> bool:
        return self._tree is not None and self._tree_fresh

    def drop_tree(self) -> None:
        self._tree = None
        self._tree_fresh = False
        self._span = None
        self._imports = None

    def _code_points(
        self, start_row: int, end_row: int, row_offset: int = 0
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """From the first non-blank column of start_row to the end of end_row's code."""
        first = self.line_text(start_row)
        indent = len(first.encode("utf-8")) - len(first.lstrip().encode("utf-8"))
        end_col = len(self.line_text(end_row).rstrip().encode("utf-8"))
        if end_row == start_row:
            end_col = max(end_col, indent)
        return (start_row - row_offset, indent), (end_row - row_offset, end_col)

    def region_rows(self, start_row: int, end_row: int) -> tuple[int, int]:
        """Rows of the smallest set of whole definitions around [start_row, end_row]."""
        tree = self.edited_tree()
        if tree is None:
            return max(0, start_row - 40), min(len(self.lines) - 1, end_row + 40)
        root = tree.root_node
        last_row = len(self.lines) - 1
        node = root.named_descendant_for_point_range(*self._code_points(start_row, end_row))
        chosen: Node | None = None
        spec = self.spec
        assert spec is not None
        while node is not None and node != root:
            rows = node.end_point.row - node.start_point.row + 1
            parent = node.parent
            whole = node.type in spec.definitions or (
                parent is not None and (parent == root or parent.type in spec.blocks)
            )
            if whole:
                if rows > MAX_REGION_LINES:
                    chosen = chosen or node
                    break
                chosen = node
            node = parent
        if chosen is None:
            # Between top-level statements (or past them): the neighbours, starting where the
            # code before begins (never inside it: a region cut into a docstring misparses).
            r0 = self._start_of_code_before(root, start_row)
            r1 = min(last_row, end_row + 20)
            return r0, r1
        r0 = min(chosen.start_point.row, start_row)
        r1 = max(chosen.end_point.row, end_row)
        return max(0, r0), min(last_row, r1)

    def _start_of_code_before(self, root: Node, row: int) -> int:
        """The first row of the innermost node of at most MAX_REGION_LINES rows that ends
        before `row` and is the last such at its level (row - 20 when there is none)."""
        cursor = root.walk()
        # (Node.first_named_child_for_byte crashes past the last child; the cursor does not.)
        found = cursor.goto_first_child_for_point((row, 0))
        node: Node | None
        if found is None:
            node = root.named_children[-1] if root.named_child_count else None
        else:
            node = cursor.node
            while node is not None and (node.start_point.row >= row or not node.is_named):
                node = node.prev_named_sibling
        while node is not None and node.end_point.row - node.start_point.row >= MAX_REGION_LINES:
            inner = node.named_children[-1] if node.named_child_count else None
            if inner is None or inner.start_point.row >= row:
                break
            node = inner
        if node is None or row - node.start_point.row > MAX_REGION_LINES:
            return max(0, row - 20)
        return node.start_point.row

    def span(self, start_row: int, end_row: int) -> Span | None:
        """A local tree of the definitions around rows [start_row, end_row]."""
        parser = self.parser
        if parser is None:
            return None
        r0, r1 = self.region_rows(start_row, end_row)
        text = "".join(self.lines[r0 : r1 + 1]).encode("utf-8")
        span = self._span
        if span is not None and (span.start_row, span.end_row) == (r0, r1):
            if span.stale:
                span.tree = parser.parse(text, span.tree)
                span.text = text
                span.stale = False
            return span
        self._span = Span(r0, r1, parser.parse(text), text)
        return self._span

    def scope_rows(self, start_row: int, end_row: int) -> tuple[int, int] | None:
        """Rows of the innermost definition holding rows [start_row, end_row], if any."""
        span = self.span(start_row, end_row)
        if span is None or self.spec is None:
            return None
        root = span.tree.root_node
        node: Node | None = root.named_descendant_for_point_range(
            *self._code_points(start_row, end_row, span.start_row)
        )
        while node is not None and node.type not in self.spec.definitions:
            node = node.parent
        if node is None:
            return None
        return node.start_point.row + span.start_row, node.end_point.row + span.start_row

    def import_lines(self) -> list[tuple[int, str]]:
        """(row, line) of every line of the top-level imports, from the document's tree."""
        if self._imports is not None:
            return self._imports
        found: list[tuple[int, str]] = []
        last = len(self.lines) - 1
        tree = self.edited_tree()
        if tree is not None:
            cursor = tree.walk()
            seen = 0
            if cursor.goto_first_child():
                while seen < IMPORT_SCAN_LIMIT:
                    node = cursor.node
                    if node is not None and node.type in languages.IMPORT_TYPES:
                        last = min(node.end_point.row, len(self.lines) - 1)
                        found.extend(
                            (r, self.lines[r]) for r in range(node.start_point.row, last + 1)
                        )
                    seen += 1
                    if not cursor.goto_next_sibling():
                        break
        self._imports = found
        return found


class Documents:
    """The open documents; keeps trees for the `max_trees` most recently used."""

    def __init__(self, max_trees: int = 4) -> None:
        self._docs: dict[str, Document] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.max_trees = max_trees

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs.values())

    def __len__(self) -> int:
        return len(self._docs)

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = Document.open(uri, language_id, version, text)
        self._docs[uri] = doc
        self.touch(doc)
        return doc

    def get(self, uri: str) -> Document | None:
        doc = self._docs.get(uri)
        if doc is not None:
            self.touch(doc)
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)
        self._recent.pop(uri, None)

    def touch(self, doc: Document) -> None:
        self._recent[doc.uri] = None
        self._recent.move_to_end(doc.uri)
        while len(self._recent) > self.max_trees:
            evicted, _ = self._recent.popitem(last=False)
            if evicted in self._docs:
                self._docs[evicted].drop_tree()
