"""Pure checks that catch wrong answers without running them: names defined nowhere,
attributes the class never sets, placeholders, comments that leave the work to the reader,
promised values never returned, an answer that repeats the code above it or redefines its own
signature (a model caught in a loop, or writing its prompt back: `runaway`).

Each check reads the document with the answer in place (a tree-sitter tree of the whole text)
and the byte range the answer occupies. They are deliberately lenient: a name bound anywhere
in the file counts as defined, and a class with a base class may get attributes from it, so a
check that fires is usually right. `benchmarks/routing_quality.py` reports each check's catches
and false alarms on real answers; `CHECKS` lists the ones the server applies.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from mmx_lsp.languages import LanguageSpec
from mmx_lsp.place import documentation, node_text

if TYPE_CHECKING:
    from tree_sitter import Node, Query


@dataclass(frozen=True)
class Finding:
    """One reason to distrust an answer: the check's name and a sentence for the user."""

    check: str
    message: str


# The checks the cascade acts on, in the order they are reported. `unused_parameter` is
# measured but not acted on: on real answers it fires on good ones as often as on bad ones.
CHECKS = (
    "placeholder",
    "leaves_work",
    "redefines_signature",
    "repeats_context",
    "undefined_name",
    "unknown_attribute",
    "missing_return",
)
MEASURED_ONLY = ("unused_parameter",)
# Checks that need the whole file (a name may be defined anywhere in it).
WHOLE_FILE_CHECKS = frozenset({"undefined_name", "unknown_attribute"})
# Checks of what a whole body must do; a line typed inside a body is not held to them.
_BODY_CHECKS = frozenset({"placeholder", "missing_return", "unused_parameter"})

# The receiver of an instance's own members, per language.
_SELF_NAMES = {
    "python": frozenset({"self"}),
    "javascript": frozenset({"this"}),
    "javascriptreact": frozenset({"this"}),
    "typescript": frozenset({"this"}),
    "typescriptreact": frozenset({"this"}),
    "java": frozenset({"this"}),
}
# Member access node -> (object field, member field), per grammar family.
_MEMBER_ACCESS = {
    "attribute": ("object", "attribute"),  # Python
    "member_expression": ("object", "property"),  # JavaScript, TypeScript
    "field_access": ("object", "field"),  # Java
}
# Names a Python module sees without defining them.
_PY_IMPLICIT = frozenset(dir(builtins)) | {
    "self",
    "cls",
    "__file__",
    "__name__",
    "__class__",
    "__module__",
    "__qualname__",
}
# Languages whose file is a closed world of names: every name is bound in the file, imported
# or built in. Go, Java, Rust and C see names from other files of their package or headers.
_CLOSED_WORLD = {"python": _PY_IMPLICIT}

_PLACEHOLDER_CALLS = re.compile(
    r"\b(NotImplementedError|NotImplementedException|UnsupportedOperationException"
    r"|todo!|unimplemented!)"
)
_PLACEHOLDER_ONLY = re.compile(r"^(pass|\.\.\.|;|\{\s*\}|return;?|return None;?)$")
# A comment that tells the reader to finish the code: the model did not know what to write
# and said so ("# Add your logic here", "// replace with the actual key", "# modify as
# needed", "# a placeholder for the real algorithm"). Matched on comment nodes only. On
# comments people wrote, the phrases fire on none of CPython's standard library (89,000) and
# on 7 of 349,000 in a set of installed packages, most of them placeholders themselves;
# `benchmarks/routing_quality.py` re-measures the first.
LEAVES_WORK = re.compile(
    "|".join(
        (
            r"\byour\b[^.;]*\bhere\b",
            r"\b(add|put|insert|write|implement)\b[^.;]*\b(code|logic|implementation)\b[^.;]*\bhere\b",
            r"\breplace\b[^.;]*\b(your|actual|real)[^.;]*\b(key|value|code|logic|data|name)",
            r"\bplaceholder\b[^.;]*\b(your|actual|real)\b",
            r"\b(actual|real) (implementation|logic)\b[^.;]*\b(would|will|depends?|goes)\b",
            r"\b(modify|adjust|change|customi[sz]e|tweak)\b[^.;]*"
            r"\bas (needed|required|necessary)\b",
            r"\bexample (modification|implementation|logic)\b",
        )
    ),
    re.IGNORECASE,
)
_COMMENT_LINE = re.compile(r"^\s*(#|//|/\*|\*|--)")
_RETURN_DOC = re.compile(
    r"(:returns?:|@returns?\b|^\s*Returns?\s*:|^\s*Returns?\b|\breturns?\s+(the|a|an|true|false)\b)",
    re.IGNORECASE | re.MULTILINE,
)
_RETURNS_NOTHING = re.compile(r"(:returns?:|@returns?)\s*(None|nothing|void)\b", re.IGNORECASE)


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _within(node: Node, low: int, high: int) -> bool:
    return node.start_byte >= low and node.end_byte <= high


@cache
def _binding_query(spec: LanguageSpec) -> Query:
    """Identifiers in a position that binds or names rather than uses (shared with scoring)."""
    from mmx_lsp.scoring import identifier_query

    return identifier_query(spec)


def _enclosing(node: Node, types: frozenset[str]) -> Node | None:
    parent = node.parent
    while parent is not None:
        if parent.type in types:
            return parent
        parent = parent.parent
    return None


def _definition_at(root: Node, spec: LanguageSpec, low: int, high: int) -> Node | None:
    """The innermost definition that holds the answer's bytes."""
    node = root.descendant_for_byte_range(low, max(low, high - 1))
    while node is not None and not (
        node.type in spec.definitions and node.start_byte < low and node.end_byte >= high
    ):
        node = node.parent
    return node


def _code_lines(answer: str) -> list[str]:
    return [
        line.strip()
        for line in answer.splitlines()
        if line.strip() and not _COMMENT_LINE.match(line)
    ]


def _writes_whole_body(root: Node, spec: LanguageSpec, low: int, high: int) -> bool:
    """Whether the answer is the whole body of its definition (past a docstring or comment):
    the checks about what a body must do apply only then, not to a line in a body being typed."""
    definition = _definition_at(root, spec, low, high)
    if definition is None or definition.type.startswith("class"):
        return False
    body = definition.child_by_field_name("body")
    if body is None:
        return False
    statements = [c for c in body.named_children if "comment" not in c.type]
    if (
        statements
        and statements[0].type == "expression_statement"
        and statements[0].end_byte <= low
    ):
        first = statements[0].named_children
        if first and first[0].type == "string":
            statements = statements[1:]
    # No statement but the answer's own (or none at all: a comment is all it wrote).
    return all(c.start_byte >= low - 1 and c.end_byte <= high + 1 for c in statements)


def _placeholder(answer: str) -> str | None:
    if _PLACEHOLDER_CALLS.search(answer):
        return "the answer is a placeholder: it raises 'not implemented'"
    lines = [line for line in _code_lines(answer) if not line.startswith(('"""', "'''"))]
    if lines and all(_PLACEHOLDER_ONLY.match(line) for line in lines):
        return "the answer is a placeholder: it does nothing"
    if not lines and re.search(r"\b(TODO|FIXME)\b", answer):
        return "the answer is only a TODO comment"
    return None


def _leaves_work(root: Node, low: int, high: int) -> str | None:
    """A comment in the answer that leaves the work to the reader."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.end_byte <= low or node.start_byte >= high:
            continue
        stack.extend(node.children)
        if "comment" not in node.type or not _within(node, low, high):
            continue
        text = " ".join(node_text(node).split())
        if LEAVES_WORK.search(text):
            shown = text if len(text) <= 60 else text[:59] + "…"
            return f"the answer leaves the work to you: {shown!r}"
    return None


def _redefines(root: Node, spec: LanguageSpec, low: int, high: int) -> str | None:
    definition = _definition_at(root, spec, low, high)
    if definition is None:
        return None
    name = node_text(definition.child_by_field_name("name"))
    if not name:
        return None
    for node in _walk(definition):
        if (
            node != definition
            and node.type == definition.type
            and _within(node, low, high)
            and node_text(node.child_by_field_name("name")) == name
        ):
            return f"the answer redefines {name} inside itself"
    return None


def _repeats_context(before: str, answer: str) -> str | None:
    """The answer starts with two or more lines that stand just above it (a copy of the
    prompt's context, not new code)."""
    wanted = _code_lines(answer)[:6]
    above = [line.strip() for line in before.splitlines()[-40:] if line.strip()]
    if len(wanted) < 2 or len(above) < 2:
        return None
    for size in range(min(len(wanted), len(above)), 1, -1):
        head = wanted[:size]
        if sum(len(line) for line in head) < 16:
            continue
        for start in range(len(above) - size + 1):
            if above[start : start + size] == head:
                return f"the answer repeats {size} lines of the code above it"
    return _copies_prompt(before, answer)


# The line a prompt puts where it left lines out (prompts._render): `# ...`, `// ...`.
_ELISION = re.compile(r"^\s*(#|//|--|;)\s*\.\.\.\s*$")


def _copies_prompt(before: str, answer: str) -> str | None:
    """The answer starts with lines from anywhere above it, as a prompt shows them: picked
    out of the file (imports, the enclosing definition's head) with `...` where lines were
    left out. A model that copies its prompt's context writes such lines; they are not in
    the document in that order and place, so the plain repetition check misses them."""
    lines = [line.strip() for line in answer.splitlines() if line.strip()][:8]
    elided = any(_ELISION.match(line) for line in lines)
    head = [line for line in lines if not _ELISION.match(line)]
    above = [line.strip() for line in before.splitlines() if line.strip()]
    if elided and len(head) >= 2:
        # Every line but a last one cut short (the copy may stop mid-line).
        whole = head[:-1] if len(head) > 2 else head
        if all(line in above for line in whole):
            return "the answer copies the prompt's context: lines from above, with its '...'"
    if len(head) < 3 or sum(len(line) for line in head[:3]) < 40:
        return None
    # Three lines from above, in order, within a dozen lines of each other.
    for start, line in enumerate(above):
        if line != head[0]:
            continue
        window = above[start : start + 12]
        second = next((i for i, x in enumerate(window) if x == head[1] and i > 0), None)
        if second is not None and head[2] in window[second + 1 :]:
            return "the answer copies lines from the code above it (the prompt's context)"
    return None


def _bindings(root: Node, spec: LanguageSpec, source: bytes) -> set[bytes]:
    """Names bound (or named) anywhere in the file."""
    from tree_sitter import QueryCursor

    captures = QueryCursor(_binding_query(spec)).captures(root)
    bound: set[bytes] = set()
    for node in captures.get("bound", ()):
        bound.add(source[node.start_byte : node.end_byte])
    for node in _walk(root):
        if node.type in ("import_statement", "import_from_statement", "aliased_import"):
            for child in _walk(node):
                if child.type == "identifier":
                    bound.add(source[child.start_byte : child.end_byte])
        elif node.type in spec.definitions:
            name = node.child_by_field_name("name")
            if name is not None:
                bound.add(source[name.start_byte : name.end_byte])
    return bound


def _undefined_names(
    root: Node, spec: LanguageSpec, source: bytes, low: int, high: int
) -> str | None:
    implicit = _CLOSED_WORLD.get(spec.name)
    if implicit is None:
        return None
    from tree_sitter import QueryCursor

    captures = QueryCursor(_binding_query(spec)).captures(root)
    positions = {(n.start_byte, n.end_byte) for n in captures.get("bound", ())}
    bound = _bindings(root, spec, source)
    missing: list[str] = []
    for node in captures.get("use", ()):
        if not _within(node, low, high) or (node.start_byte, node.end_byte) in positions:
            continue
        name = source[node.start_byte : node.end_byte]
        text = name.decode("utf-8", "replace")
        if name in bound or text in implicit or text in missing:
            continue
        missing.append(text)
    if not missing:
        return None
    listed = ", ".join(missing[:4])
    return f"the answer uses {listed}, defined nowhere in the file"


def _unknown_attributes(
    root: Node, spec: LanguageSpec, source: bytes, low: int, high: int
) -> str | None:
    selves = _SELF_NAMES.get(spec.name)
    if not selves:
        return None
    definition = _definition_at(root, spec, low, high)
    container = definition
    while container is not None and not container.type.startswith("class"):
        container = _enclosing(container, spec.definitions)
    if container is None or _has_base(container) or b"setattr" in source or b"__dict__" in source:
        return None
    known: set[str] = set()
    used: list[tuple[str, Node]] = []
    for node in _walk(container):
        if node.type in spec.definitions and node != container:
            known.add(node_text(node.child_by_field_name("name")))
        if node.type in ("assignment", "field_definition", "public_field_definition"):
            target = node.child_by_field_name("left") or node.child_by_field_name("name")
            if target is not None and target.type == "identifier":
                known.add(node_text(target))
            elif target is not None and target.type in ("property_identifier",):
                known.add(node_text(target))
        if node.type == "field_declaration":
            for child in _walk(node):
                if child.type == "identifier":
                    known.add(node_text(child))
        fields = _MEMBER_ACCESS.get(node.type)
        if fields is None:
            continue
        receiver = node.child_by_field_name(fields[0])
        member = node.child_by_field_name(fields[1])
        if receiver is None or member is None or node_text(receiver) not in selves:
            continue
        parent = node.parent
        # `self.x += 1` reads self.x first: it does not set an attribute that is not there.
        assigned = parent is not None and parent.type in (
            "assignment",
            "assignment_expression",
            "pattern_list",
            "tuple_pattern",
        )
        if assigned and parent is not None and parent.child_by_field_name("right") == node:
            assigned = False
        if assigned:
            known.add(node_text(member))
        elif _within(node, low, high):
            used.append((node_text(member), node))
    unknown = sorted(
        {name for name, _node in used if name not in known and not name.startswith("__")}
    )
    if not unknown:
        return None
    own = next(iter(selves))
    listed = ", ".join(f"{own}.{name}" for name in unknown[:4])
    return f"the answer uses {listed}, which the class never sets"


def _has_base(container: Node) -> bool:
    for field in ("superclasses", "heritage", "superclass", "interfaces"):
        if container.child_by_field_name(field) is not None:
            return True
    return any(child.type in ("class_heritage", "superclass") for child in container.children)


def _missing_return(
    root: Node, spec: LanguageSpec, source: bytes, low: int, high: int
) -> str | None:
    definition = _definition_at(root, spec, low, high)
    if definition is None or definition.type.startswith("class"):
        return None
    doc = documentation(definition)
    annotation = node_text(definition.child_by_field_name("return_type"))
    promises = bool(_RETURN_DOC.search(doc)) and not _RETURNS_NOTHING.search(doc)
    if annotation:
        promises = annotation.strip() not in ("None", "void", "NoReturn", "()")
    if not promises:
        return None
    for node in _walk(definition):
        if not _within(node, low, high):
            continue
        if node.type in ("return_statement", "yield", "yield_expression", "yield_statement"):
            if node.type != "return_statement" or node.named_child_count:
                return None
        if node.type == "raise_statement" or node.type == "throw_statement":
            return None
    return "the docstring promises a return value, and the answer returns nothing"


def _unused_parameters(root: Node, spec: LanguageSpec, low: int, high: int) -> str | None:
    definition = _definition_at(root, spec, low, high)
    if definition is None:
        return None
    parameters = definition.child_by_field_name("parameters")
    if parameters is None:
        return None
    names = []
    for child in parameters.named_children:
        target = child.child_by_field_name("name") or child.child_by_field_name("pattern") or child
        if target.type == "identifier":
            names.append(node_text(target))
    names = [n for n in names if n not in ("self", "cls", "_") and not n.startswith("_")]
    used = {
        node_text(n) for n in _walk(definition) if n.type == "identifier" and _within(n, low, high)
    }
    unused = [n for n in names if n not in used]
    if not unused:
        return None
    return f"the answer never uses {', '.join(unused)}"


def review(
    language: str,
    root: Node,
    source: bytes,
    low: int,
    high: int,
    before: str,
    answer: str,
    *,
    spec: LanguageSpec,
    checks: tuple[str, ...] = CHECKS,
) -> list[Finding]:
    """What the named checks find wrong with the answer occupying bytes [low, high) of
    `source` (the document with the answer in place), parsed as `root`."""
    del language  # the spec names it
    found: list[Finding] = []
    whole_body = _writes_whole_body(root, spec, low, high)
    for check in checks:
        if check in _BODY_CHECKS and not whole_body:
            continue
        if check == "placeholder":
            message = _placeholder(answer)
        elif check == "leaves_work":
            message = _leaves_work(root, low, high)
        elif check == "redefines_signature":
            message = _redefines(root, spec, low, high)
        elif check == "repeats_context":
            message = _repeats_context(before, answer)
        elif check == "undefined_name":
            message = _undefined_names(root, spec, source, low, high)
        elif check == "unknown_attribute":
            message = _unknown_attributes(root, spec, source, low, high)
        elif check == "missing_return":
            message = _missing_return(root, spec, source, low, high)
        elif check == "unused_parameter":
            message = _unused_parameters(root, spec, low, high)
        else:
            raise ValueError(f"unknown check {check!r}")
        if message:
            found.append(Finding(check, message))
    return found
