"""Pure: what a completion at a place is asked to write, read from the tree around it — the
definition it belongs to, what its documentation asks for, its parameters and annotations, the
siblings and members it can use, the imports it can lean on.

Every measure is defined through node types and field names that the grammars share (a
`parameters` field, definitions from `languages.py`, comments, a string as the first statement
of a body), so it means the same in each language with a grammar; a language without a grammar
gets the zero `Place`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmx_lsp.languages import LanguageSpec

if TYPE_CHECKING:
    from tree_sitter import Node

# Parameter node types that carry a type annotation, across grammars.
_TYPED_PARAMETERS = frozenset(
    {
        "typed_parameter",
        "typed_default_parameter",
        "required_parameter",
        "optional_parameter",
        "parameter_declaration",  # Go, C, C++
        "parameter",  # Rust
        "formal_parameter",  # Java
        "spread_parameter",
    }
)
_RECEIVERS = frozenset({"self", "cls", "this", "&self", "&mut self", "mut self"})
# A documentation line that shows an example: a doctest prompt, a fenced block, "e.g.".
_EXAMPLE = re.compile(r"^(>>>|```|@example|examples?:)|\be\.g\.", re.IGNORECASE)
_COMMENT_MARKS = " \t/#*!-"
_COMMENT_STARTS = ("//", "#", "/*", "*", "--")
_RETURNS = re.compile(r"(:returns?:|@returns?\b|\breturns?\b)", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How far above the cursor a definition's header may be for the cursor to be writing its body.
HEADER_ROWS = 40


@dataclass(frozen=True)
class Place:
    """The measures of one place; all zero where there is no definition to write."""

    doc_words: int = 0
    doc_examples: int = 0
    doc_promises_return: int = 0
    parameters: int = 0
    annotated_share: float = 0.0
    siblings: int = 0
    siblings_in_doc: int = 0
    members: int = 0
    members_in_doc: int = 0
    imports: int = 0


def node_text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.named_children)


def target_definition(root: Node, spec: LanguageSpec, row: int) -> Node | None:
    """The definition whose body a cursor on `row` is writing: the innermost definition that
    holds the row, or whose header starts at most HEADER_ROWS above it and which ends just
    above it (a Python body after a docstring lies past the node's end)."""
    best: Node | None = None
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.named_children:
            if child.start_point.row > row:
                break
            if child.type in spec.definitions:
                holds = child.end_point.row >= row
                header_near = row - child.start_point.row <= HEADER_ROWS
                if holds or header_near:
                    if best is None or child.start_point.row >= best.start_point.row:
                        best = child
            if child.end_point.row >= row - 1:
                stack.append(child)
    return best


def documentation(definition: Node) -> str:
    """The definition's docstring (a string first in its body) or the comments just above."""
    body = definition.child_by_field_name("body")
    if body is not None and body.named_children:
        first = body.named_children[0]
        if first.type == "expression_statement" and first.named_children:
            if first.named_children[0].type == "string":
                return node_text(first.named_children[0])
    comments: list[str] = []
    sibling = definition.prev_named_sibling
    while sibling is not None and "comment" in sibling.type:
        comments.append(node_text(sibling))
        sibling = sibling.prev_named_sibling
    return "\n".join(reversed(comments))


def _parameters(definition: Node) -> list[Node]:
    parameters = definition.child_by_field_name("parameters")
    if parameters is None:  # C and C++: in the declarator
        declarator = definition.child_by_field_name("declarator")
        while declarator is not None and parameters is None:
            parameters = declarator.child_by_field_name("parameters")
            declarator = declarator.child_by_field_name("declarator")
    if parameters is None:
        return []
    return [
        p
        for p in parameters.named_children
        if "comment" not in p.type and node_text(p).split(":")[0].strip() not in _RECEIVERS
    ]


def _container(definition: Node, spec: LanguageSpec) -> Node | None:
    parent = definition.parent
    while parent is not None and parent.type not in spec.definitions:
        parent = parent.parent
    return parent


def _name(node: Node) -> str:
    return node_text(node.child_by_field_name("name"))


def comments_above(lines: Sequence[str], row: int) -> str:
    """The comment lines just above `row` (a definition's header), any language's markers."""
    found: list[str] = []
    above = row - 1
    while above >= 0 and above >= row - HEADER_ROWS:
        text = lines[above].strip()
        if not text.startswith(_COMMENT_STARTS):
            break
        found.append(text)
        above -= 1
    return "\n".join(reversed(found))


def measure_place(
    root: Node, spec: LanguageSpec, row: int, imports: int, lines: Sequence[str], first_row: int
) -> Place:
    """The measures of a completion on `row` of the tree `root` (rows local to the tree, which
    starts at `first_row` of the document's `lines`), in a file with `imports` import lines."""
    definition = target_definition(root, spec, row)
    if definition is None:
        return Place(imports=imports)
    doc = documentation(definition) or comments_above(lines, first_row + definition.start_point.row)
    doc_lines = doc.splitlines()
    words = set(_WORD.findall(doc))
    parameters = _parameters(definition)
    typed = sum(1 for p in parameters if p.type in _TYPED_PARAMETERS)
    container = _container(definition, spec)
    siblings: set[str] = set()
    members: set[str] = set()
    if container is not None:
        for node in _walk(container):
            if node.type in spec.definitions and node != definition and node != container:
                name = _name(node)
                if name:
                    siblings.add(name)
            if node.type in ("attribute", "member_expression", "field_access"):
                receiver = node.child_by_field_name("object")
                member = (
                    node.child_by_field_name("attribute")
                    or node.child_by_field_name("property")
                    or node.child_by_field_name("field")
                )
                if node_text(receiver) in _RECEIVERS and member is not None:
                    members.add(node_text(member))
            elif node.type in ("field_declaration", "public_field_definition"):
                declared = node.child_by_field_name("name") or node.child_by_field_name(
                    "declarator"
                )
                if declared is not None:
                    members.add(node_text(declared))
    return Place(
        doc_words=len(_WORD.findall(doc)),
        doc_examples=sum(1 for line in doc_lines if _EXAMPLE.search(line.lstrip(_COMMENT_MARKS))),
        doc_promises_return=int(bool(_RETURNS.search(doc))),
        parameters=len(parameters),
        annotated_share=round(typed / len(parameters), 3) if parameters else 0.0,
        siblings=len(siblings),
        siblings_in_doc=len(siblings & words),
        members=len(members),
        members_in_doc=len(members & words),
        imports=imports,
    )
