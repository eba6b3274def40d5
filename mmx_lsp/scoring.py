"""Pure scoring: the features of a request, measured with tree-sitter, and a score in [0, 1]."""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Literal

from mmx_lsp.config import default_context_tokens, limit_key
from mmx_lsp.kinds import Kind
from mmx_lsp.languages import LanguageSpec, grammar
from mmx_lsp.place import HEADER_ROWS, Place, measure_place
from mmx_lsp.tokens import tokens_for_bytes

if TYPE_CHECKING:
    from tree_sitter import Node, Query

    from mmx_lsp.documents import Document

Hole = Literal["expression", "line", "block", "body", "selection"]

# Every weight of the score lives here, as data. A feature's contribution is its weight
# times a value normalised to [0, 1]; the score is the clamped sum.
WEIGHTS: dict[str, float] = {
    "kind.inline": 0.0,
    "kind.completion": 0.0,
    "kind.explain": 0.05,
    "kind.docstring": 0.10,
    "kind.fix": 0.25,
    "kind.refactor": 0.30,
    "hole.expression": 0.0,
    "hole.line": 0.05,
    "hole.block": 0.12,
    "hole.body": 0.25,
    "hole.selection": 0.0,
    "context_tokens": 0.25,  # log-scaled between the two bounds below
    "selected_lines": 0.35,  # linear up to the kind's "large selection"
    "definitions_touched": 0.30,  # when a selection spans two or more definitions
    "nesting_depth": 0.08,  # linear up to 8 levels
    "external_identifiers": 0.10,  # linear up to 20 names
    "syntax_errors": 0.05,  # any ERROR/MISSING node near the request
}
CONTEXT_TOKENS_LOW = 300
CONTEXT_TOKENS_HIGH = 6000
# Lines at which a selection counts as large, per kind (DESIGN.md: ~40 for a refactor).
LARGE_SELECTION = {"refactor": 40, "fix": 40, "docstring": 80, "explain": 300}
NEAR_ROWS = 5

# Rough output sizes (tokens) for the estimate of a request's cost, before a model's own
# answers are known (`answer_sizes`). A whole body: the method bodies GPT-3.5-Turbo and
# GPT-4-Turbo wrote on ClassEval (routing-data) have a median of 42 and quartiles 26–65.
OUTPUT_TOKENS = {"expression": 16, "line": 32, "block": 96, "body": 48}
PROMPT_OVERHEAD_TOKENS = {
    "inline": 90,
    "completion": 90,
    "refactor": 140,
    "fix": 150,
    "explain": 110,
    "docstring": 120,
}

_PY_BUILTINS = frozenset(dir(builtins)) | {"self", "cls"}


@dataclass(frozen=True)
class Features:
    kind: Kind
    language: str
    context_tokens: int
    selection_tokens: int
    selected_lines: int
    definitions_touched: int
    nodes_spanned: int
    hole: Hole
    nesting_depth: int
    external_identifiers: int
    syntax_errors: int
    enclosing_lines: int
    estimated_input_tokens: int
    estimated_output_tokens: int
    # What a completion is asked to write (zero for selections and plain text).
    place: Place = field(default_factory=Place)

    def as_dict(self) -> dict[str, int | str | float]:
        values: dict[str, int | str | float] = {k: v for k, v in vars(self).items() if k != "place"}
        values.update(vars(self.place))
        return values


# Holes whose place is measured (place.py): where a completion writes whole statements.
PLACE_HOLES = frozenset({"block", "body"})

# Every name in a Features.as_dict(): what a router file may name.
FEATURE_NAMES = frozenset(
    [f for f in Features.__dataclass_fields__ if f != "place"] + list(Place.__dataclass_fields__)
)


@dataclass(frozen=True)
class Request:
    """What is being asked, in document rows and Python string indexes."""

    kind: Kind
    start: tuple[int, int]
    end: tuple[int, int] | None = None  # None for a cursor position

    @property
    def is_selection(self) -> bool:
        return self.end is not None and self.end != self.start


def _walk(node: Node) -> Iterator[Node]:
    for item, _field in _walk_fields(node):
        yield item


def _walk_fields(node: Node) -> Iterator[tuple[Node, str | None]]:
    """Pre-order walk of a subtree, with the field name each node has in its parent."""
    cursor = node.walk()
    depth = 0
    while True:
        yield cursor.node, cursor.field_name  # type: ignore[misc]
        if cursor.goto_first_child():
            depth += 1
            continue
        while not cursor.goto_next_sibling():
            if depth == 0 or not cursor.goto_parent():
                return
            depth -= 1
            if depth == 0:
                return


def _rows(node: Node) -> int:
    return node.end_point.row - node.start_point.row + 1


def measure(doc: Document, request: Request) -> Features:
    """All the features of one request; reads only the region around it."""
    kind = request.kind
    (r0, i0) = request.start
    (r1, i1) = request.end if request.end is not None else request.start
    if (r1, i1) < (r0, i0):
        (r0, i0), (r1, i1) = (r1, i1), (r0, i0)
    selection = request.is_selection
    selected_lines = (r1 - r0 + 1 if i1 > 0 or r1 == r0 else r1 - r0) if selection else 0
    selection_text = doc.slice((r0, i0), (r1, i1)) if selection else ""
    selection_tokens = tokens_for_bytes(len(selection_text.encode("utf-8"))) if selection else 0

    span = doc.span(r0, r1)
    if span is None:
        return _plain_features(doc, request, r0, r1, selected_lines, selection_tokens)

    local_r0, local_r1 = r0 - span.start_row, r1 - span.start_row
    root = span.tree.root_node
    spec = doc.spec
    assert spec is not None
    col0 = len(doc.lines[r0][:i0].encode("utf-8"))
    col1 = len(doc.lines[r1][:i1].encode("utf-8"))
    at = root.named_descendant_for_point_range((local_r0, col0), (local_r1, col1)) or root

    # Enclosing definitions, innermost first, and nesting depth.
    enclosing: list[Node] = []
    depth = 0
    node: Node | None = at
    while node is not None:
        if node.type in spec.definitions:
            enclosing.append(node)
        if node.type in spec.blocks or (node.type in spec.statements and node != at):
            depth += 1
        node = node.parent
    innermost = enclosing[0] if enclosing else None
    enclosing_lines = _rows(innermost) if innermost else 0

    # Context the request needs: the innermost definition, or the region around it.
    if innermost is not None and not selection:
        context_bytes = innermost.end_byte - innermost.start_byte
    else:
        context_bytes = len(span.text)
    context_tokens = tokens_for_bytes(context_bytes)
    if selection:
        context_tokens = max(context_tokens, selection_tokens)

    definitions_touched = 0
    nodes_spanned = 0
    if selection:
        definitions_touched = _definitions_touched(root, spec, local_r0, local_r1)
        container = at
        while container.parent is not None and not _covers(container, local_r0, local_r1):
            container = container.parent
        nodes_spanned = (
            sum(1 for c in container.named_children if _overlaps(c, local_r0, local_r1)) or 1
        )

    hole: Hole = "selection" if selection else _hole(doc, r0, i0, local_r0, root, spec)

    scope = innermost or root
    external = _external_identifiers(scope, span.text, spec)
    errors = _errors_near(root, local_r0 - NEAR_ROWS, local_r1 + NEAR_ROWS)

    input_tokens = _input_estimate(kind, hole, context_tokens, selection_tokens)
    output_tokens = _output_estimate(kind, hole, selection_tokens, enclosing_lines)
    # What a body or block is asked to write; a keystroke inside a line needs none of it.
    place = (
        Place()
        if hole not in PLACE_HOLES
        else measure_place(
            root,
            spec,
            local_r0,
            imports=len(doc.import_lines()),
            lines=doc.lines,
            first_row=span.start_row,
        )
    )
    return Features(
        kind=kind,
        language=doc.language,
        context_tokens=context_tokens,
        selection_tokens=selection_tokens,
        selected_lines=selected_lines,
        definitions_touched=definitions_touched,
        nodes_spanned=nodes_spanned,
        hole=hole,
        nesting_depth=depth,
        external_identifiers=external,
        syntax_errors=errors,
        enclosing_lines=enclosing_lines,
        estimated_input_tokens=input_tokens,
        estimated_output_tokens=output_tokens,
        place=place,
    )


def for_kind(features: Features, kind: Kind) -> Features:
    """The same measurements for another request kind over the same place (the code action
    listing routes three kinds over one selection and measures it once)."""
    if kind == features.kind:
        return features
    return replace(
        features,
        kind=kind,
        estimated_input_tokens=_input_estimate(
            kind, features.hole, features.context_tokens, features.selection_tokens
        ),
        estimated_output_tokens=_output_estimate(
            kind, features.hole, features.selection_tokens, features.enclosing_lines
        ),
    )


def _plain_features(
    doc: Document, request: Request, r0: int, r1: int, selected_lines: int, selection_tokens: int
) -> Features:
    """Text without a grammar (or too large, or binary): scored by size alone."""
    lo, hi = max(0, r0 - 40), min(doc.line_count - 1, r1 + 40)
    kind = request.kind
    # What a prompt could draw on around the request: a huge line (minified code) counts
    # only up to twice the prompt's budget, and is not copied to be measured.
    cap = 2 * default_context_tokens(limit_key(kind, "line"))
    chars = 0 if doc.binary else sum(map(len, doc.lines[lo : hi + 1]))
    if chars > cap * 8:
        context_tokens = max(cap, selection_tokens)
    else:
        context = "" if doc.binary else "".join(doc.lines[lo : hi + 1])
        context_tokens = max(tokens_for_bytes(len(context.encode("utf-8"))), selection_tokens)
    hole: Hole = "selection" if request.is_selection else "line"
    return Features(
        kind=kind,
        language=doc.language,
        context_tokens=context_tokens,
        selection_tokens=selection_tokens,
        selected_lines=selected_lines,
        definitions_touched=0,
        nodes_spanned=0,
        hole=hole,
        nesting_depth=0,
        external_identifiers=0,
        syntax_errors=0,
        enclosing_lines=0,
        estimated_input_tokens=_input_estimate(kind, hole, context_tokens, selection_tokens),
        estimated_output_tokens=_output_estimate(kind, hole, selection_tokens, 0),
    )


def _input_estimate(kind: Kind, hole: Hole, context_tokens: int, selection_tokens: int) -> int:
    """Tokens the prompt would carry: the context up to the prompt's budget (the default
    `limits` of config.py), the selection (always sent whole) and the template's own words."""
    context = min(context_tokens, default_context_tokens(limit_key(kind, hole)))
    return context + selection_tokens + PROMPT_OVERHEAD_TOKENS.get(kind, 100)


def _output_estimate(kind: str, hole: Hole, selection_tokens: int, enclosing_lines: int) -> int:
    if kind in ("inline", "completion"):
        return OUTPUT_TOKENS.get(hole, 32)
    if kind == "explain":
        return 250 + selection_tokens // 10
    if kind == "docstring":  # the selection again, with its documentation
        return int(selection_tokens * 1.1) + 60
    return int(selection_tokens * 1.1) + 20 if selection_tokens else 8 * max(enclosing_lines, 4)


@cache
def _definition_query(spec: LanguageSpec) -> Query:
    from tree_sitter import Query, QueryError

    language = grammar(spec)
    valid = []
    for node_type in sorted(spec.definitions):
        try:
            Query(language, f"({node_type}) @definition")
        except QueryError:  # a node type this grammar version does not have
            continue
        valid.append(f"({node_type})")
    return Query(language, f"[{' '.join(valid)}] @definition")


def _definitions_touched(root: Node, spec: LanguageSpec, r0: int, r1: int) -> int:
    """Outermost definitions a selection reaches into; 1 inside a single definition."""
    from tree_sitter import QueryCursor

    cursor = QueryCursor(_definition_query(spec))
    cursor.set_point_range((r0, 0), (r1 + 1, 0))
    found = cursor.captures(root).get("definition", [])
    touched = 0
    covered = False
    for node in found:
        if not _overlaps(node, r0, r1):
            continue
        if _covers(node, r0, r1) and not _inside(node, r0, r1):
            covered = True
            continue
        outer = _parent_definition(node, spec.definitions)
        if (
            outer is None
            or not _overlaps(outer, r0, r1)
            or (_covers(outer, r0, r1) and not _inside(outer, r0, r1))
        ):
            touched += 1
    return touched or int(covered)


def _overlaps(node: Node, r0: int, r1: int) -> bool:
    return node.start_point.row <= r1 and node.end_point.row >= r0


def _inside(node: Node, r0: int, r1: int) -> bool:
    return node.start_point.row >= r0 and node.end_point.row <= r1


def _covers(node: Node, r0: int, r1: int) -> bool:
    return node.start_point.row <= r0 and node.end_point.row >= r1


def _parent_definition(node: Node, definitions: frozenset[str]) -> Node | None:
    parent = node.parent
    while parent is not None:
        if parent.type in definitions:
            return parent
        parent = parent.parent
    return None


_OPENERS = re.compile(r"(:|\{|=>|\bdo|\bthen)\s*(#.*|//.*)?$")


def _hole(doc: Document, row: int, index: int, local_row: int, root: Node, spec: object) -> Hole:
    """What the completion must write: finish an expression, a line, a block or a body."""
    line = doc.line_text(row)
    before = line[:index]
    if before.strip():
        return "expression"
    if line[index:].strip():
        return "line"
    # An empty line: look at the code above it (skipping blank lines).
    above_row = row - 1
    while above_row >= 0 and not doc.line_text(above_row).strip():
        above_row -= 1
    above = doc.line_text(above_row).rstrip() if above_row >= 0 else ""
    is_docstring_end = above.endswith(('"""', "'''", "*/"))
    opens = bool(_OPENERS.search(above))
    definition_above = _definition_header_above(
        root, local_row - (row - above_row), len(above) - len(above.lstrip()), spec
    )
    if definition_above and (opens or is_docstring_end) and not _has_body_below(doc, row):
        return "body"
    if opens:
        return "block"
    return "line"


def _definition_header_above(root: Node, local_row: int, column: int, spec: object) -> bool:
    """Whether the code at (`local_row`, `column`, the line's first character) belongs to a
    definition whose header is at most HEADER_ROWS above (a docstring or signature)."""
    if local_row < 0:
        return False
    node = root.named_descendant_for_point_range((local_row, column), (local_row, column))
    definitions: frozenset[str] = getattr(spec, "definitions", frozenset())
    while node is not None:
        if node.type in definitions:
            return node.start_point.row >= local_row - HEADER_ROWS
        node = node.parent
    return False


def _has_body_below(doc: Document, row: int) -> bool:
    """True when the next non-blank line is indented deeper than the cursor (an existing body)."""
    indent = len(doc.line_text(row)) - len(doc.line_text(row).lstrip())
    for below in range(row + 1, min(doc.line_count, row + 20)):
        text = doc.line_text(below)
        if text.strip():
            return len(text) - len(text.lstrip()) >= indent and not text.strip().startswith(
                ("}", "def ", "class ", "func ", "fn ")
            )
    return False


# Where an identifier binds a name rather than uses one, or names a member (obj.attr).
# Patterns a grammar does not know are dropped when its query is built.
_NOT_USES = (
    "(_ name: (identifier) @bound)",
    "(_ left: (identifier) @bound)",
    "(_ pattern: (identifier) @bound)",
    "(_ declarator: (identifier) @bound)",
    "(_ alias: (identifier) @bound)",
    "(_ attribute: (identifier) @bound)",
    "(_ property: (identifier) @bound)",
    "(_ field: (identifier) @bound)",
    "(parameters (identifier) @bound)",
    "(lambda_parameters (identifier) @bound)",
    "(formal_parameters (identifier) @bound)",
    "(parameter_list (identifier) @bound)",
    "(typed_parameter (identifier) @bound)",
    "(pattern_list (identifier) @bound)",
    "(tuple_pattern (identifier) @bound)",
    "(dotted_name (identifier) @bound)",
    "(identifier_pattern (identifier) @bound)",
    "(for_in_statement left: (identifier) @bound)",
    "(as_pattern_target (identifier) @bound)",
    "(catch_clause parameter: (identifier) @bound)",
)


@cache
def identifier_query(spec: LanguageSpec) -> Query:
    """Identifiers captured as `@use`, and as `@bound` where they bind or name a member."""
    from tree_sitter import Query, QueryError

    language = grammar(spec)
    valid = ["(identifier) @use"]
    for pattern in _NOT_USES:
        try:
            Query(language, pattern)
        except QueryError:
            continue
        valid.append(pattern)
    return Query(language, "\n".join(valid))


def _external_identifiers(scope: Node, source: bytes, spec: LanguageSpec) -> int:
    """Distinct names used in the scope but bound outside it (imports, other definitions)."""
    from tree_sitter import QueryCursor

    captures = QueryCursor(identifier_query(spec)).captures(scope)
    not_uses = {(n.start_byte, n.end_byte) for n in captures.get("bound", ())}
    used: set[bytes] = set()
    bound: set[bytes] = set()
    for node in captures.get("use", ()):
        span = (node.start_byte, node.end_byte)
        name = source[span[0] : span[1]]
        if span in not_uses:
            bound.add(name)
        else:
            used.add(name)
    free = used - bound
    if spec.name == "python":
        free = {name for name in free if name.decode("utf-8", "replace") not in _PY_BUILTINS}
    return len(free)


def _errors_near(root: Node, row0: int, row1: int) -> int:
    if not root.has_error:
        return 0
    count = 0
    for node in _walk(root):
        if node.end_point.row < row0 or node.start_point.row > row1:
            continue
        if node.is_error or node.is_missing:
            count += 1
    return count


def score(
    features: Features, weights: dict[str, float] | None = None
) -> tuple[float, dict[str, float]]:
    """The complexity score in [0, 1] and each feature's contribution to it."""
    w = weights or WEIGHTS
    parts: dict[str, float] = {}
    parts["kind"] = w.get(f"kind.{features.kind}", 0.0)
    parts["hole"] = w.get(f"hole.{features.hole}", 0.0)
    tokens = max(features.context_tokens, 1)
    span = math.log(CONTEXT_TOKENS_HIGH / CONTEXT_TOKENS_LOW)
    parts["context_tokens"] = w["context_tokens"] * _clamp(
        math.log(max(tokens, CONTEXT_TOKENS_LOW) / CONTEXT_TOKENS_LOW) / span
    )
    large = LARGE_SELECTION.get(features.kind, 40)
    parts["selected_lines"] = w["selected_lines"] * _clamp(features.selected_lines / large)
    parts["definitions_touched"] = (
        w["definitions_touched"] if features.definitions_touched >= 2 else 0.0
    )
    parts["nesting_depth"] = w["nesting_depth"] * _clamp(features.nesting_depth / 8)
    parts["external_identifiers"] = w["external_identifiers"] * _clamp(
        features.external_identifiers / 20
    )
    parts["syntax_errors"] = w["syntax_errors"] if features.syntax_errors else 0.0
    total = _clamp(sum(parts.values()))
    return round(total, 4), {k: round(v, 4) for k, v in parts.items() if v}


def _clamp(value: float) -> float:
    return 0.0 if value < 0 else 1.0 if value > 1 else value
