"""Pure prompt building and answer clean-up: document + cursor or selection -> messages or FIM."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tree_sitter import Node

from mmx_lsp.kinds import ACTION_KINDS, EDIT_KINDS, ActionKind, Kind
from mmx_lsp.languages import IMPORT_TYPES, parser_for, spec_for
from mmx_lsp.tokens import chars_for_tokens

FILL = "<FILL>"

# Bump a version whenever its template's wording or layout changes: cached answers of the
# old template then miss.
TEMPLATE_VERSIONS: dict[str, str] = {
    "inline-chat": "inline-chat/1",
    "inline-fim": "inline-fim/1",
    "refactor": "refactor/1",
    "fix": "fix/1",
    "docstring": "docstring/1",
    "explain": "explain/1",
}

_COMMENT = {
    "python": "#",
    "go": "//",
    "rust": "//",
    "java": "//",
    "c": "//",
    "cpp": "//",
    "javascript": "//",
    "javascriptreact": "//",
    "typescript": "//",
    "typescriptreact": "//",
}


@dataclass(frozen=True)
class Prompt:
    """What to send: chat `messages`, or a FIM `prompt` + `suffix` (the completions API).

    `cache_context` is the exact text the prompt was built from, for `cache.cache_key`;
    `words`, the lines it puts around the code (`request_words`).
    """

    template_version: str
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    suffix: str | None = None
    words: tuple[str, ...] = ()

    @property
    def cache_context(self) -> str:
        if self.messages is not None:
            return json.dumps(self.messages, ensure_ascii=False, sort_keys=True)
        return (self.prompt or "") + "\x00" + (self.suffix or "")

    def without_suffix(self) -> Prompt:
        """The same completion without the code after the cursor: for a tier that does not
        fill in the middle (`health.FimWatch`)."""
        return dataclasses.replace(self, suffix=None)


# --------------------------------------------------------------------------- context selection


def _line_index(starts: Sequence[int], offset: int) -> int:
    low, high = 0, len(starts) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if starts[middle] <= offset:
            low = middle
        else:
            high = middle - 1
    return low


def _scope_and_imports(
    text: str, language: str, first: int, last: int
) -> tuple[tuple[int, int] | None, list[int]]:
    """The innermost definition around lines first..last (as line numbers), and import lines."""
    spec = spec_for(language)
    parser = parser_for(language)
    if spec is None or parser is None:
        return None, []
    tree = parser.parse(text.encode("utf-8"))
    imports: list[int] = []
    for child in tree.root_node.children:
        if child.type in IMPORT_TYPES:
            imports.extend(range(child.start_point.row, child.end_point.row + 1))
    scope: tuple[int, int] | None = None
    node: Node | None = tree.root_node
    while node is not None:
        inner: Node | None = None
        for child in node.children:
            if child.start_point.row <= first and child.end_point.row >= last:
                inner = child
                break
        if inner is None:
            break
        if inner.type in spec.definitions and inner.start_point.row < inner.end_point.row:
            scope = (inner.start_point.row, inner.end_point.row)
        node = inner
    return scope, imports


def _expand(
    chosen: set[int],
    sizes: Sequence[int],
    low: int,
    high: int,
    bounds: tuple[int, int],
    budget: int,
    before_per_after: int = 2,
) -> tuple[int, int, int]:
    """Grow [low, high] inside bounds, `before_per_after` lines up for each line down."""
    lo_bound, hi_bound = bounds
    up_open, down_open = True, True
    while up_open or down_open:
        for _ in range(before_per_after):
            if up_open and low - 1 >= lo_bound:
                line = low - 1
                if line in chosen or sizes[line] <= budget:
                    budget -= 0 if line in chosen else sizes[line]
                    chosen.add(line)
                    low = line
                else:
                    up_open = False
            else:
                up_open = False
        if down_open and high + 1 <= hi_bound:
            line = high + 1
            if line in chosen or sizes[line] <= budget:
                budget -= 0 if line in chosen else sizes[line]
                chosen.add(line)
                high = line
            else:
                down_open = False
        else:
            down_open = False
    return low, high, budget


# The innermost definition's (first, last) line and the import lines, when the caller knows
# them already (from the document's own trees); otherwise the text is parsed to find them.
Outline = tuple[tuple[int, int] | None, list[int]]


def _select(
    text: str,
    lines: Sequence[str],
    first: int,
    last: int,
    language: str,
    budget: int,
    outline: Outline | None = None,
) -> set[int]:
    """Line numbers to show, besides the mandatory lines first..last.

    The enclosing scope comes first (its first line, then lines outward from the request),
    then neighbouring lines outside it, then the file's imports with what is left (a quarter
    of the remainder is kept for them while the neighbours grow).
    """
    sizes = [len(line) for line in lines]
    chosen = set(range(first, last + 1))
    budget -= sum(sizes[first : last + 1])
    if budget <= 0:
        return chosen
    scope, imports = outline or _scope_and_imports(text, language, first, last)
    low, high = first, last
    if scope is not None:
        head = scope[0]
        if head not in chosen and sizes[head] <= budget:
            chosen.add(head)
            budget -= sizes[head]
        low, high, budget = _expand(chosen, sizes, low, high, scope, budget)
    import_cost = sum(sizes[i] for i in imports if i not in chosen)
    reserve = min(import_cost, budget // 4)
    low, high, spare = _expand(chosen, sizes, low, high, (0, len(lines) - 1), budget - reserve)
    budget = spare + reserve
    for line in imports:
        if line not in chosen and sizes[line] <= budget:
            chosen.add(line)
            budget -= sizes[line]
    return chosen


def _ends_line(line: str) -> bool:
    """True when `line` ends with a line break of any kind str.splitlines knows."""
    return bool(line) and len(line.splitlines()[-1]) < len(line.splitlines(keepends=True)[-1])


def _render(lines: Sequence[str], chosen: set[int], low: int, high: int, language: str) -> str:
    """Lines low..high that were chosen, with a comment line where non-blank ones were left out."""
    marker = (_COMMENT.get(language, "") + " ...").strip() + "\n"
    out: list[str] = []
    skipped = False
    for number in range(low, high + 1):
        if number in chosen:
            if skipped:
                out.append(marker)
                skipped = False
            out.append(lines[number])
        elif lines[number].strip():
            skipped = True
    if skipped:
        if out and not _ends_line(out[-1]):
            out[-1] += "\n"
        out.append(marker)
    return "".join(out)


def _split_lines(text: str) -> tuple[list[str], list[int]]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[-1].endswith(("\n", "\r")):
        lines.append("")
    starts, position = [], 0
    for line in lines:
        starts.append(position)
        position += len(line)
    return lines, starts


def _around(
    text: str, start: int, end: int, language: str, budget: int, outline: Outline | None = None
) -> tuple[str, str]:
    """Context before `start` and after `end`, chosen line by line within `budget` chars."""
    lines, starts = _split_lines(text)
    first, last = _line_index(starts, start), _line_index(starts, max(start, end))
    head = text[starts[first] : start]
    tail_end = starts[last] + len(lines[last])
    tail = text[end:tail_end]
    fixed = len(text[start:end])
    if len(head) + len(tail) + fixed > budget:
        # One huge line (minified code): keep the characters nearest the request.
        room = max(0, budget - fixed)
        keep_head = min(len(head), max(room * 3 // 4, room - len(tail)))
        head = head[len(head) - keep_head :]
        tail = tail[: max(0, room - keep_head)]
        return head, tail
    chosen = _select(text, lines, first, last, language, budget, outline)
    before = _render(lines, chosen, 0, first - 1, language)
    after = _render(lines, chosen, last + 1, len(lines) - 1, language)
    return before + head, tail + after


# --------------------------------------------------------------------------- builders


def build_inline(
    text: str,
    offset: int,
    language: str,
    context_tokens: int,
    api: str,
    *,
    outline: Outline | None = None,
) -> Prompt:
    """The prompt of an inline completion at character `offset` of `text`.

    `api="chat"` gives a hole-filler (system + user message with a `<FILL>` marker);
    `api="completions"` gives a fill-in-the-middle `prompt` and `suffix`. The context is
    trimmed to about `context_tokens` tokens (`tokens.chars_for_tokens`). `outline` saves a
    parse when the caller knows the enclosing definition and the import lines.
    """
    offset = max(0, min(offset, len(text)))
    budget = chars_for_tokens(max(1, context_tokens))
    before, after = _around(text, offset, offset, language, budget, outline)
    if api == "completions":
        return Prompt(TEMPLATE_VERSIONS["inline-fim"], prompt=before, suffix=after)
    name = language if spec_for(language) else "plain text"
    system = (
        f"You are a code completion engine for {name}. The user sends a file excerpt with "
        f"one hole marked {FILL}. Answer with only the code that replaces {FILL}: no "
        "explanation, no Markdown fences, and do not repeat the code before or after the "
        "hole. Continue the indentation of the surrounding code. If nothing fits, answer "
        "with nothing."
    )
    user = f"{before}{FILL}{after}"
    return Prompt(
        TEMPLATE_VERSIONS["inline-chat"],
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
    )


_ACTION_SYSTEM: dict[str, str] = {
    "refactor": (
        "Rewrite the selected {language} code so that it is clearer and simpler, without "
        "changing what it does. Keep every function and class the selection defines, with "
        "the same names and signatures. Answer with only the code that replaces the "
        "selection: no explanation, no Markdown fences."
    ),
    "fix": (
        "Fix the problems in the selected {language} code; the diagnostics reported for it "
        "are listed. Change as little as possible. Answer with only the corrected code that "
        "replaces the selection: no explanation, no Markdown fences."
    ),
    "docstring": (
        "Add or update the documentation (docstrings or doc comments, in the usual style of "
        "{language}) of the functions and classes in the selection. Do not change the code "
        "itself. Answer with only the code that replaces the selection: no explanation, no "
        "Markdown fences."
    ),
    "explain": (
        "Explain what the selected {language} code does and why, for a developer who is "
        "about to change it. Be concise; answer in Markdown."
    ),
}


# The headers of an action's prompt (`build_action`, `request_words`).
_LANGUAGE = "Language: {}"
_BEFORE = "Code before the selection:"
_AFTER = "Code after the selection:"
_DIAGNOSTICS = "Diagnostics in the selection:"
_INSTRUCTION = "Instruction: {}"
_SELECTION_TAGS = ("<selection>", "</selection>")
_WORD_CHARS = 10


def build_action(
    kind: ActionKind,
    text: str,
    start: int,
    end: int,
    language: str,
    diagnostics: list[str],
    instruction: str | None,
    *,
    context_tokens: int = 2000,
    outline: Outline | None = None,
) -> Prompt:
    """The chat prompt of a code action on `text[start:end]` (character offsets).

    The selection is always sent whole; `context_tokens` (an addition, default 2000) bounds
    the surrounding code, chosen like the inline context.
    """
    start, end = sorted((max(0, min(start, len(text))), max(0, min(end, len(text)))))
    selection = text[start:end]
    budget = max(0, chars_for_tokens(context_tokens) - len(selection))
    before, after = _around(text, start, end, language, budget + len(selection), outline)
    name = language if spec_for(language) else "plain text"
    parts = [_LANGUAGE.format(name)]
    if before.strip():
        parts.append(f"{_BEFORE}\n{before}")
    parts.append(f"{_SELECTION_TAGS[0]}\n{selection}\n{_SELECTION_TAGS[1]}")
    if after.strip():
        parts.append(f"{_AFTER}\n{after}")
    if diagnostics:
        parts.append(_DIAGNOSTICS + "\n" + "\n".join(f"- {d}" for d in diagnostics))
    if instruction:
        parts.append(_INSTRUCTION.format(instruction))
    return Prompt(
        TEMPLATE_VERSIONS[kind],
        messages=[
            {"role": "system", "content": _ACTION_SYSTEM[kind].format(language=name)},
            {"role": "user", "content": "\n\n".join(parts)},
        ],
        words=request_words(kind, language, diagnostics, instruction),
    )


def request_words(
    kind: Kind, language: str, diagnostics: Sequence[str], instruction: str | None = None
) -> tuple[str, ...]:
    """The lines an action's prompt puts around the code (`build_action`: its headers, the
    first line of each diagnostic and of the instruction), which no answer has a reason to
    write (`runaway.echo_end`); none for a completion, whose prompt is the code itself or
    asks for a hole. An explanation may list the diagnostics: only the headers count there."""
    if kind not in ACTION_KINDS:
        return ()
    name = language if spec_for(language) else "plain text"
    words = [_LANGUAGE.format(name), _BEFORE, _AFTER, _DIAGNOSTICS]
    if kind in EDIT_KINDS:
        words += [f"- {d}".split("\n")[0] for d in diagnostics]
    if instruction:
        words.append(_INSTRUCTION.format(instruction).split("\n")[0])
    # A diagnostic as short as "- E1" could be the start of a line of Markdown or code.
    return tuple(dict.fromkeys(w.strip() for w in words if len(w.strip()) >= _WORD_CHARS))


# --------------------------------------------------------------------------- answer clean-up

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n?", re.MULTILINE)
_PROSE_START = re.compile(
    r"^\s*(here(?:'s| is| are)|sure\b|certainly|of course|below\b|okay\b|ok,|i(?:'ve| have)\b|"
    r"the (?:completed|completion|missing|corrected|refactored|updated|fixed|rewritten)\b)",
    re.IGNORECASE,
)
_PROSE_END = re.compile(
    r"^\s*(this (?:code|change|version|completes|implementation|function|fix)\b|"
    r"explanation\b|note\b|the (?:code|change|function) (?:above|now)\b|i (?:changed|added)\b)",
    re.IGNORECASE,
)


def strip_fences(answer: str) -> str:
    """The content of the first Markdown code block, or the answer when it has none.

    An unterminated block (an answer cut by max_tokens) keeps everything after its opening.
    """
    opening = _FENCE.search(answer)
    if opening is None:
        single = answer.strip()
        quoted = len(single) > 1 and single[0] == single[-1] == "`"
        return single.strip("`") if quoted and "\n" not in single else answer
    body_start = opening.end()
    closing = re.compile(r"^[ \t]*" + re.escape(opening.group(1)) + r"[ \t]*$", re.MULTILINE)
    found = closing.search(answer, body_start)
    body = answer[body_start : found.start()] if found else answer[body_start:]
    return body.removesuffix("\n")


def _strip_prose(answer: str) -> str:
    lines = answer.split("\n")
    while lines and _PROSE_START.match(lines[0]) and lines[0].rstrip().endswith((":", ".", "!")):
        lines.pop(0)
        while lines and not lines[0].strip():
            lines.pop(0)
    for number in range(1, len(lines)):
        if not lines[number - 1].strip() and _PROSE_END.match(lines[number]):
            lines = lines[: number - 1]
            break
    return "\n".join(lines)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _common_indent(lines: Iterable[str]) -> str:
    indents = [_indent_of(line) for line in lines if line.strip()]
    if not indents:
        return ""
    common = indents[0]
    for indent in indents[1:]:
        while not indent.startswith(common):
            common = common[:-1]
    return common


def _overlap(end_of: str, start_of: str) -> int:
    """Length of the longest suffix of `end_of` that is a prefix of `start_of`."""
    for size in range(min(len(end_of), len(start_of)), 0, -1):
        if end_of.endswith(start_of[:size]):
            return size
    return 0


def postprocess_inline(answer: str, before_cursor_line: str, after_cursor: str) -> str:
    """Clean a model's inline answer so it can be inserted at the cursor as is.

    `before_cursor_line` is the cursor's line up to the cursor; `after_cursor` is the text
    from the cursor on. Removes Markdown fences and explanations, an echo of the line before
    the cursor, text that the document already has after the cursor, and re-indents
    multi-line answers to the cursor line's indentation.
    """
    text = _strip_prose(strip_fences(answer)).replace(FILL, "")
    if not text.strip():
        return ""
    base = _indent_of(before_cursor_line)
    at_line_start = not before_cursor_line.strip()
    # The model repeated (part of) the line before the cursor.
    stripped_line = before_cursor_line.strip()
    if stripped_line:
        candidate = text.lstrip()
        echo = _overlap(before_cursor_line, candidate)
        head = before_cursor_line[: len(before_cursor_line) - echo]
        at_boundary = not head or not (head[-1].isalnum() or head[-1] == "_")
        if echo and at_boundary and (echo >= 2 or echo == len(stripped_line)):
            text = candidate[echo:]
    lines = text.split("\n")
    if at_line_start:
        first_indent = _indent_of(lines[0])
        rest = lines[1:]
        lines[0] = lines[0].lstrip(" \t")
        if rest:
            # Re-base the block: the first line sits at the cursor's column.
            shift = len(first_indent)
            relative = _common_indent(rest)
            if len(relative) < len(base) or shift != len(base):
                lines[1:] = [
                    (base + line[min(shift, len(_indent_of(line))) :]) if line.strip() else ""
                    for line in rest
                ]
    elif len(lines) > 1 and base and not _common_indent(lines[1:]):
        lines[1:] = [base + line if line.strip() else line for line in lines[1:]]
    text = "\n".join(lines).rstrip()
    # Drop what the document already has after the cursor (a closing bracket, a next line),
    # unless the answer needs it to close what it opened.
    if after_cursor:
        size = _overlap(text, after_cursor)
        if size and after_cursor[:size].strip() and _may_drop(text, text[-size:]):
            text = text[:-size]
        answer_lines = text.split("\n")
        following = [line.strip() for line in after_cursor.split("\n") if line.strip()]
        for count in range(min(len(answer_lines) - 1, len(following)), 0, -1):
            tail = answer_lines[-count:]
            if [line.strip() for line in tail] == following[:count]:
                if _may_drop(text, "\n".join(tail)):
                    answer_lines = answer_lines[:-count]
                break
        text = "\n".join(answer_lines).rstrip("\n")
    return text


_STRING_LITERAL = re.compile(r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""")
_OPENERS, _CLOSERS = "([{", ")]}"


def _unclosed(code: str) -> int:
    """Closing brackets minus opening ones, outside string literals (a rough count)."""
    bare = _STRING_LITERAL.sub("", code)
    return sum(bare.count(c) for c in _CLOSERS) - sum(bare.count(c) for c in _OPENERS)


def _may_drop(answer: str, tail: str) -> bool:
    """Whether the end `tail` of `answer` can go because the document has it already: not
    when it closes brackets the answer itself opened."""
    closes = _unclosed(tail)
    return closes <= 0 or _unclosed(answer) >= closes


def postprocess_edit(answer: str, original_selection: str) -> str:
    """Clean a model's replacement for a selection: no fences or explanations, and the
    selection's base indentation (and its trailing newline, or lack of one) kept.
    """
    text = _strip_prose(strip_fences(answer))
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    tagged = (lines[0].strip(), lines[-1].strip()) == _SELECTION_TAGS if lines else False
    if tagged and not original_selection.lstrip().startswith(_SELECTION_TAGS[0]):
        lines = lines[1:-1]  # the answer in the tags its selection came in
    if not lines:
        return ""
    selection_lines = original_selection.split("\n")
    answer_indent = _common_indent(lines)
    lines = [line[len(answer_indent) :] if line.strip() else "" for line in lines]
    first_line_indent = _indent_of(selection_lines[0])
    if first_line_indent or not selection_lines[0].strip():
        base = _common_indent(selection_lines)
        lines = [base + line if line.strip() else "" for line in lines]
    else:
        # The selection starts after the indentation of its first line, whose column is
        # unknown: infer it from how much deeper the following lines are.
        selection_rest = _common_indent(selection_lines[1:])
        answer_rest = _common_indent(lines[1:])
        width = max(0, len(selection_rest) - len(answer_rest))
        unit = "\t" if selection_rest.startswith("\t") else " "
        base = (selection_rest[:width] if len(selection_rest) >= width else unit * width) or ""
        lines = [lines[0]] + [base + line if line.strip() else "" for line in lines[1:]]
    result = "\n".join(line.rstrip() for line in lines)
    if original_selection.endswith("\n"):
        result += "\n"
    return result
