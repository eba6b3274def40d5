"""Prompt building and answer clean-up on real code."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmx_lsp.prompts import (
    FILL,
    TEMPLATE_VERSIONS,
    build_action,
    build_inline,
    postprocess_edit,
    postprocess_inline,
    strip_fences,
)

PYTHON = textwrap.dedent(
    '''\
    """Small inventory helpers."""

    from __future__ import annotations

    import json
    from dataclasses import dataclass
    from pathlib import Path


    @dataclass
    class Item:
        name: str
        quantity: int
        price_cents: int

        def total_cents(self) -> int:
            return self.quantity * self.price_cents


    def load_items(path: Path) -> list[Item]:
        """Read items from a JSON file."""
        with path.open() as handle:
            rows = json.load(handle)
        return [Item(**row) for row in rows]


    def inventory_value(items: list[Item]) -> int:
        """Total value of all items, in cents."""
        total = 0
        for item in items:
            total += item.total_cents()
        return total


    def cheapest(items: list[Item]) -> Item | None:
        if not items:
            return None
        return min(items, key=lambda item: item.price_cents)
    '''
)

JAVASCRIPT = textwrap.dedent(
    """\
    import { readFile } from "node:fs/promises";

    export async function loadConfig(path) {
      const text = await readFile(path, "utf8");
      const config = JSON.parse(text);
      return { ...DEFAULTS, ...config };
    }

    export function mergeHeaders(base, extra) {
      const merged = new Map(Object.entries(base));
      for (const [key, value] of Object.entries(extra)) {
        merged.set(key.toLowerCase(), value);
      }
      return Object.fromEntries(merged);
    }
    """
)

GO = textwrap.dedent(
    """\
    package stats

    import "sort"

    // Median returns the middle value of xs.
    func Median(xs []float64) float64 {
    \tsorted := append([]float64(nil), xs...)
    \tsort.Float64s(sorted)
    \tn := len(sorted)
    \tif n%2 == 1 {
    \t\treturn sorted[n/2]
    \t}
    \treturn (sorted[n/2-1] + sorted[n/2]) / 2
    }
    """
)


def cursor_after(text: str, marker: str) -> int:
    return text.index(marker) + len(marker)


# --------------------------------------------------------------------------- build_inline


def test_chat_prompt_marks_the_hole_at_the_cursor() -> None:
    offset = cursor_after(PYTHON, "        total += ")
    prompt = build_inline(PYTHON, offset, "python", 2000, "chat")
    assert prompt.template_version == TEMPLATE_VERSIONS["inline-chat"]
    assert prompt.prompt is None and prompt.messages is not None
    system, user = prompt.messages
    assert system["role"] == "system" and user["role"] == "user"
    assert FILL in system["content"] and "only the code" in system["content"]
    assert user["content"].count(FILL) == 1
    assert user["content"] == PYTHON[:offset] + FILL + PYTHON[offset:], "all of it fits"


def test_fim_prompt_splits_at_the_cursor() -> None:
    offset = cursor_after(JAVASCRIPT, "const config = ")
    prompt = build_inline(JAVASCRIPT, offset, "javascript", 2000, "completions")
    assert prompt.template_version == TEMPLATE_VERSIONS["inline-fim"]
    assert prompt.messages is None
    assert prompt.prompt == JAVASCRIPT[:offset]
    assert prompt.suffix == JAVASCRIPT[offset:]
    assert FILL not in (prompt.prompt or "") + (prompt.suffix or "")


def test_small_budget_keeps_the_enclosing_function_first() -> None:
    offset = cursor_after(PYTHON, "        total += ")
    prompt = build_inline(PYTHON, offset, "python", 60, "completions")
    before, after = prompt.prompt or "", prompt.suffix or ""
    assert len(before) + len(after) <= 60 * 4 + 3 * len("# ...\n")
    assert "def inventory_value(items: list[Item]) -> int:" in before
    assert before.endswith("    for item in items:\n        total += ")
    assert after.startswith("item.total_cents()\n    return total")
    assert "def cheapest" not in before + after, "a distant function is left out"
    assert "# ...\n" in before, "a gap is marked with a comment"


def test_imports_join_when_the_budget_allows() -> None:
    offset = cursor_after(PYTHON, "    return min(items, key=")
    prompt = build_inline(PYTHON, offset, "python", 110, "completions")
    before = prompt.prompt or ""
    assert "def cheapest(items: list[Item]) -> Item | None:" in before
    assert "import json" in before, "the file's imports come after the scope"
    assert "def load_items" not in before


def test_scope_larger_than_budget_keeps_the_signature_and_the_cursor_lines() -> None:
    body = "".join(f"    value_{i} = compute({i})\n" for i in range(200))
    text = f"def big():\n{body}    return value_\n"
    offset = text.index("return value_") + len("return value_")
    prompt = build_inline(text, offset, "python", 100, "chat")
    user = (prompt.messages or [])[1]["content"]
    assert user.startswith("def big():\n# ...\n")
    assert "    value_199 = compute(199)\n    return value_<FILL>" in user
    assert "value_0 =" not in user
    assert len(user) < 100 * 4 + 40


def test_minified_line_is_trimmed_around_the_cursor() -> None:
    text = "var a=1;" * 2000
    offset = len(text) // 2
    prompt = build_inline(text, offset, "javascript", 50, "completions")
    assert len(prompt.prompt or "") + len(prompt.suffix or "") <= 200
    assert (prompt.prompt or "") + (prompt.suffix or "") in text
    assert text[:offset].endswith(prompt.prompt or "")


def test_plain_text_has_no_grammar_but_gets_lines_around_the_cursor() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    offset = text.index("line 50") + len("line 50")
    prompt = build_inline(text, offset, "plaintext", 20, "completions")
    assert (prompt.prompt or "").endswith("line 49\nline 50")
    assert (prompt.suffix or "").startswith("\nline 51")
    assert "line 0\n" not in (prompt.prompt or "")


def test_go_prompt_uses_go_comments_for_gaps() -> None:
    offset = cursor_after(GO, "\t\treturn sorted[")
    prompt = build_inline(GO, offset, "go", 30, "completions")
    assert "// ...\n" in (prompt.prompt or "") + (prompt.suffix or "")
    assert "func Median(xs []float64) float64 {" in (prompt.prompt or "")


def test_cache_context_changes_with_the_document() -> None:
    offset = cursor_after(PYTHON, "        total += ")
    first = build_inline(PYTHON, offset, "python", 500, "chat")
    changed = PYTHON.replace("Total value", "Sum of the value")
    second = build_inline(changed, offset + 6, "python", 500, "chat")
    again = build_inline(PYTHON, offset, "python", 500, "chat")
    assert first.cache_context == again.cache_context
    assert first.cache_context != second.cache_context


# --------------------------------------------------------------------------- build_action


@pytest.mark.parametrize("kind", ["refactor", "fix", "docstring", "explain"])
def test_action_prompt_sends_the_whole_selection(kind: str) -> None:
    start = PYTHON.index("def inventory_value")
    end = PYTHON.index("def cheapest")
    prompt = build_action(
        kind,  # type: ignore[arg-type]
        PYTHON,
        start,
        end,
        "python",
        ["F821 undefined name 'totl'"],
        "keep it short",
    )
    assert prompt.template_version == TEMPLATE_VERSIONS[kind]
    system, user = prompt.messages or []
    assert f"<selection>\n{PYTHON[start:end]}\n</selection>" in user["content"]
    assert "- F821 undefined name 'totl'" in user["content"]
    assert "Instruction: keep it short" in user["content"]
    assert "python" in system["content"]
    if kind == "explain":
        assert "Markdown" in system["content"]
    else:
        assert "no Markdown fences" in system["content"]


def test_action_prompt_context_is_bounded_but_selection_is_not() -> None:
    start = PYTHON.index("def load_items")
    end = PYTHON.index("def cheapest")
    prompt = build_action("refactor", PYTHON, start, end, "python", [], None, context_tokens=10)
    user = (prompt.messages or [])[1]["content"]
    assert PYTHON[start:end] in user
    assert "Instruction" not in user and "Diagnostics" not in user
    assert "def cheapest" not in user


# --------------------------------------------------------------------------- postprocess_inline


@pytest.mark.parametrize(
    ("answer", "before_line", "after", "expected"),
    [
        ("```python\nreturn a + b\n```", "    ", "\n", "return a + b"),
        (
            "Here is the completion:\n\n```js\nJSON.parse(text);\n```\nThis parses it.",
            "  const config = ",
            "\n",
            "JSON.parse(text);",
        ),
        ("Sure, here is the code:\nreturn a + b", "    ", "", "return a + b"),
        ("`item.total_cents()`", "        total += ", "\n", "item.total_cents()"),
        ("return total + 1", "        return total", "\n", " + 1"),
        ("foo(1)", "x = fo", "", "o(1)"),
        ("a, b)", "    result = add(", ")\n", "a, b"),
        ("a + b", "    return a", "\n", "a + b"),
        (
            "total += item.total_cents()\n        return total",
            "            ",
            "\n        return total\n",
            "total += item.total_cents()",
        ),
        (
            "if not items:\n    return None\nreturn items[0]",
            "    ",
            "\n",
            "if not items:\n        return None\n    return items[0]",
        ),
        (
            "    if not items:\n        return None\n    return items[0]",
            "    ",
            "\n",
            "if not items:\n        return None\n    return items[0]",
        ),
        (f"x + 1{FILL}", "    y = ", "\n", "x + 1"),
        ("return a + b\n\nThis completes the function by adding.", "    ", "", "return a + b"),
        ("   \n", "    ", "", ""),
        ("```\n", "    ", "", ""),
    ],
    ids=[
        "fenced",
        "prose-and-fence",
        "leading-prose",
        "backticks",
        "echo-of-line",
        "echo-of-partial-word",
        "closing-bracket-already-there",
        "one-char-overlap-is-kept",
        "following-line-already-there",
        "block-reindented",
        "block-already-indented",
        "fill-marker-echoed",
        "trailing-explanation",
        "blank",
        "empty-fence",
    ],
)
def test_postprocess_inline(answer: str, before_line: str, after: str, expected: str) -> None:
    assert postprocess_inline(answer, before_line, after) == expected


def test_strip_fences_keeps_an_unterminated_block() -> None:
    assert strip_fences("```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert strip_fences("plain") == "plain"


# --------------------------------------------------------------------------- postprocess_edit


def test_an_edit_answered_in_the_selections_tags_keeps_only_the_code() -> None:
    selection = "def add(a, b):\n    return a+b\n"
    answer = "<selection>\ndef add(a, b):\n    return a + b\n</selection>"
    assert postprocess_edit(answer, selection) == "def add(a, b):\n    return a + b\n"
    xml = "<selection>\n  <option>a</option>\n</selection>\n"
    assert postprocess_edit(xml, xml) == xml, "tags the code itself has are kept"


def test_edit_is_reindented_to_the_selection() -> None:
    selection = (
        "    def total_cents(self) -> int:\n        return self.quantity * self.price_cents\n"
    )
    answer = (
        "```python\ndef total_cents(self) -> int:\n"
        '    """Quantity times unit price."""\n'
        "    return self.quantity * self.price_cents\n```"
    )
    assert postprocess_edit(answer, selection) == (
        "    def total_cents(self) -> int:\n"
        '        """Quantity times unit price."""\n'
        "        return self.quantity * self.price_cents\n"
    )


def test_edit_without_trailing_newline_gets_none() -> None:
    selection = "total = sum(item.total_cents() for item in items)"
    assert postprocess_edit("total = sum(i.total_cents() for i in items)\n\n", selection) == (
        "total = sum(i.total_cents() for i in items)"
    )


def test_edit_of_a_selection_that_starts_after_the_indentation() -> None:
    selection = "for item in items:\n            total += item.total_cents()"
    answer = "Here is the refactored code:\n\nfor item in items:\n    total += item.total_cents()"
    assert postprocess_edit(answer, selection) == (
        "for item in items:\n            total += item.total_cents()"
    )


def test_edit_keeps_tabs_of_go_code() -> None:
    start = GO.index("\tif n%2 == 1 {")
    end = GO.index("\treturn (sorted")
    selection = GO[start:end]
    answer = "```go\nif n%2 != 0 {\n\treturn sorted[n/2]\n}\n```"
    assert postprocess_edit(answer, selection) == "\tif n%2 != 0 {\n\t\treturn sorted[n/2]\n\t}\n"


# --------------------------------------------------------------------------- properties

CODE_TEXT = st.text(
    alphabet=st.sampled_from([*"abc def():\t\n\r{}[]#\"'=", "é", "中", "😀", "\u2028"]),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(text=CODE_TEXT, where=st.floats(0, 1), tokens=st.integers(1, 200))
@pytest.mark.parametrize("language", ["python", "javascript", "plaintext"])
def test_fim_prompt_is_the_whole_text_when_it_fits(
    language: str, text: str, where: float, tokens: int
) -> None:
    offset = int(len(text) * where)
    prompt = build_inline(text, offset, language, tokens, "completions")
    before, after = prompt.prompt or "", prompt.suffix or ""
    if len(text) <= tokens * 4:
        assert (before, after) == (text[:offset], text[offset:])
    else:
        # Gap markers aside (the alphabet has no "." so they cannot come from the text).
        shown = (before + after).replace("# ...\n", "").replace("// ...\n", "")
        assert len(shown.replace("...\n", "")) <= tokens * 4


@settings(max_examples=150, deadline=None)
@given(text=CODE_TEXT, where=st.floats(0, 1), tokens=st.integers(1, 200))
def test_chat_prompt_always_has_one_hole(text: str, where: float, tokens: int) -> None:
    prompt = build_inline(text.replace("<", ""), int(len(text) * where), "python", tokens, "chat")
    assert (prompt.messages or [])[1]["content"].count(FILL) == 1


@settings(max_examples=200, deadline=None)
@given(answer=CODE_TEXT, before=CODE_TEXT, after=CODE_TEXT)
def test_postprocessing_never_fails(answer: str, before: str, after: str) -> None:
    before_line = before.rsplit("\n", 1)[-1]
    assert isinstance(postprocess_inline(answer, before_line, after), str)
    assert isinstance(postprocess_edit(answer, before), str)


@pytest.mark.parametrize(
    ("answer", "before", "after", "expected"),
    [
        # The answer's own closing brace is not the document's next line, which looks the same.
        ("if x > 0 {\n    return 1;\n}", "    ", "\n}\n", "if x > 0 {\n        return 1;\n    }"),
        # A bracket the editor closed already is dropped from the answer ...
        ("a, b)", "foo(", ")\n", "a, b"),
        # ... but not one that closes a call the answer opened.
        ("x(1)", "foo(", ")\n", "x(1)"),
        # Brackets inside strings do not count.
        ('print("(")', "    ", ")\n", 'print("(")'),
        # A repeated closing line that the answer does not need still goes.
        ("total += 1\n}", "    ", "\n}\n", "total += 1"),
    ],
    ids=["own-brace", "editor-closed", "own-paren", "string", "repeated-line"],
)
def test_overlap_with_the_text_after_the_cursor_keeps_brackets_the_answer_needs(
    answer: str, before: str, after: str, expected: str
) -> None:
    assert postprocess_inline(answer, before, after) == expected
