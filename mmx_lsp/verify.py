"""Pure answer checks: does the document, with the answer applied in place, still parse, and
do the checks of `checks.py` find nothing wrong with it?"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node, Point, Tree

from mmx_lsp.checks import CHECKS, Finding, review
from mmx_lsp.languages import LanguageSpec, parser_for, spec_for
from mmx_lsp.runaway import repeats_itself

# Kinds whose answer must keep the names the selection defines.
KEEPS_DEFINITIONS = frozenset({"refactor", "docstring"})
# Kinds whose answer is prose, not code: only the empty check applies.
PROSE_KINDS = frozenset({"explain"})
# Kinds whose answer is code written in place, reviewed by the checks of `checks.py`.
REVIEWED_KINDS = frozenset({"inline", "completion", "fix", "refactor"})
# Lines of context around the edit where new syntax errors count (a missing bracket is often
# reported on the line after).
CONTEXT_LINES = 1
# Parent node type -> the field that names an anonymous function or class assigned to it.
_NAMING_PARENTS = {
    "variable_declarator": "name",
    "assignment_expression": "left",
    "pair": "key",
    "public_field_definition": "name",
    "field_definition": "property",
}


@dataclass(frozen=True)
class Verdict:
    """Whether an answer is acceptable here; `reason` says why in one sentence."""

    ok: bool
    reason: str
    # What the checks found; `ok` is False when any of them fired.
    findings: tuple[Finding, ...] = ()


def _normalized(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def _byte_offset(text: str, offset: int) -> int:
    return len(text[:offset].encode("utf-8"))


def _point(data: bytes, byte: int) -> Point:
    line_start = data.rfind(b"\n", 0, byte) + 1
    return Point(data.count(b"\n", 0, byte), byte - line_start)


def _line_span(data: bytes, start: int, end: int, extra: int) -> tuple[int, int]:
    """Bytes [start, end) widened to whole lines, plus `extra` lines on each side."""
    low = data.rfind(b"\n", 0, start) + 1
    for _ in range(extra):
        if low == 0:
            break
        low = data.rfind(b"\n", 0, low - 1) + 1
    high = end
    for _ in range(extra + 1):
        found = data.find(b"\n", high)
        high = len(data) if found < 0 else found + 1
    return low, high


def _problems(node: Node, low: int, high: int) -> Iterator[Node]:
    """ERROR and MISSING nodes that touch bytes [low, high]."""
    if node.end_byte < low or node.start_byte > high:
        return
    if not node.has_error:
        return
    if node.is_error or node.is_missing:
        yield node
    for child in node.children:
        yield from _problems(child, low, high)


def _describe(node: Node) -> str:
    line = node.start_point.row + 1
    if node.is_missing:
        return f"missing '{node.type}' at line {line}"
    return f"syntax error at line {line}"


def _name_of(node: Node) -> str | None:
    named = node.child_by_field_name("name")
    if named is not None and named.text is not None:
        return named.text.decode("utf-8", "replace")
    # C and C++: the name sits in nested declarators.
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in {"identifier", "field_identifier", "qualified_identifier"}:
            return (declarator.text or b"").decode("utf-8", "replace")
        if declarator.type in {"destructor_name", "operator_name"}:
            return (declarator.text or b"").decode("utf-8", "replace")
        declarator = declarator.child_by_field_name("declarator")
    # Rust `impl Type`, Go `type X struct`.
    for field in ("type", "trait"):
        typed = node.child_by_field_name(field)
        if typed is not None and node.type == "impl_item":
            return "impl " + (typed.text or b"").decode("utf-8", "replace")
    for child in node.named_children:
        if child.type == "type_spec":
            return _name_of(child)
    # `const f = () => …`, `obj.f = function () {…}`, `{ f: () => … }`: an anonymous
    # function is named by what it is assigned to.
    parent = node.parent
    if parent is None:
        return None
    naming_field = _NAMING_PARENTS.get(parent.type)
    target = parent.child_by_field_name(naming_field) if naming_field else None
    if target is None or target.id == node.id or target.text is None:
        return None
    return target.text.decode("utf-8", "replace")


def _definitions(node: Node, spec: LanguageSpec, low: int, high: int) -> set[str]:
    """Names of the definitions that lie entirely inside bytes [low, high]."""
    names: set[str] = set()
    if node.end_byte < low or node.start_byte > high:
        return names
    if node.type in spec.definitions and node.start_byte >= low and node.end_byte <= high:
        name = _name_of(node)
        if name:
            names.add(name)
    for child in node.children:
        names |= _definitions(child, spec, low, high)
    return names


def verify_edit(
    language: str,
    text: str,
    start: int,
    end: int,
    replacement: str,
    kind: str,
    *,
    checks: tuple[str, ...] = CHECKS,
) -> Verdict:
    """Check an answer that replaces `text[start:end]` (character offsets) with `replacement`.

    Fails when the answer is empty or repeats itself (a model caught in a loop:
    `runaway.repeats_itself`), all that an explanation is checked for; when it changes
    nothing (trailing whitespace aside), the last check of plain text; when the edited
    region (whole lines, one more on each side) has more ERROR or MISSING nodes after the
    edit than before; and, for a refactor or docstring, when a function or class that the
    selection defined is gone. Code written in place is then reviewed by
    `checks` (see `checks.py`); `text` should be the whole document, so that names defined
    elsewhere in it count.
    """
    start, end = sorted((max(0, min(start, len(text))), max(0, min(end, len(text)))))
    original = text[start:end]
    if not replacement.strip():
        return Verdict(False, "the answer is empty")
    looped = repeats_itself(replacement)
    if looped is not None:
        return Verdict(False, looped)
    if kind in PROSE_KINDS:
        return Verdict(True, "an explanation, not checked as code")
    if _normalized(replacement) == _normalized(original):
        return Verdict(False, "the answer leaves the code unchanged")
    spec = spec_for(language)
    parser = parser_for(language)
    if spec is None or parser is None:
        return Verdict(True, "plain text: no syntax check")

    old_data = text.encode("utf-8")
    start_byte, old_end = _byte_offset(text, start), _byte_offset(text, end)
    new_text = text[:start] + replacement + text[end:]
    new_data = new_text.encode("utf-8")
    new_end = start_byte + len(replacement.encode("utf-8"))

    old_tree: Tree = parser.parse(old_data)
    old_low, old_high = _line_span(old_data, start_byte, old_end, CONTEXT_LINES)
    before = list(_problems(old_tree.root_node, old_low, old_high))
    old_names = (
        _definitions(old_tree.root_node, spec, start_byte, old_end)
        if kind in KEEPS_DEFINITIONS
        else set()
    )

    # Reparse incrementally: the old tree, told about the edit, speeds up the new parse.
    old_tree.edit(
        start_byte=start_byte,
        old_end_byte=old_end,
        new_end_byte=new_end,
        start_point=_point(old_data, start_byte),
        old_end_point=_point(old_data, old_end),
        new_end_point=_point(new_data, new_end),
    )
    new_tree = parser.parse(new_data, old_tree)
    new_low, new_high = _line_span(new_data, start_byte, new_end, CONTEXT_LINES)
    after = list(_problems(new_tree.root_node, new_low, new_high))
    if len(after) > len(before):
        added = len(after) - len(before)
        details = ", ".join(_describe(node) for node in after[:3])
        plural = "s" if added > 1 else ""
        return Verdict(False, f"the answer adds {added} syntax error{plural} ({details})")

    if old_names:
        new_names = _definitions(new_tree.root_node, spec, start_byte, new_end)
        dropped = sorted(old_names - new_names)
        if dropped:
            return Verdict(False, f"the answer drops definitions: {', '.join(dropped)}")
    if kind in REVIEWED_KINDS and checks:
        findings = review(
            language,
            new_tree.root_node,
            new_data,
            start_byte,
            new_end,
            text[:start],
            replacement,
            spec=spec,
            checks=checks,
        )
        if findings:
            return Verdict(False, findings[0].message, tuple(findings))
    if before and len(after) < len(before):
        return Verdict(True, f"parses, with {len(before) - len(after)} syntax error(s) fewer")
    return Verdict(True, "parses without new syntax errors")
