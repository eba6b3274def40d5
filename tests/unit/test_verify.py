"""Answer verification on real code in several languages."""

from __future__ import annotations

import textwrap

import pytest

from mmx_lsp.verify import Verdict, verify_edit

PYTHON = textwrap.dedent(
    """\
    import json


    def load(path):
        with open(path) as handle:
            return json.load(handle)


    def total(items):
        result = 0
        for item in items:
            result += item["price"] * item["quantity"]
        return result


    class Cart:
        def __init__(self):
            self.items = []

        def add(self, item):
            self.items.append(item)
    """
)

JAVASCRIPT = textwrap.dedent(
    """\
    const square = (x) => x * x;

    function sumOfSquares(values) {
      let sum = 0;
      for (const v of values) {
        sum += square(v);
      }
      return sum;
    }

    module.exports = { square, sumOfSquares };
    """
)

GO = textwrap.dedent(
    """\
    package main

    import "fmt"

    func double(n int) int {
    \treturn n * 2
    }

    func main() {
    \tfmt.Println(double(21))
    }
    """
)

RUST = textwrap.dedent(
    """\
    struct Counter {
        count: u32,
    }

    impl Counter {
        fn new() -> Self {
            Counter { count: 0 }
        }

        fn tick(&mut self) -> u32 {
            self.count += 1;
            self.count
        }
    }
    """
)

JAVA = textwrap.dedent(
    """\
    public class Greeter {
        private final String name;

        public Greeter(String name) {
            this.name = name;
        }

        public String greet() {
            return "Hello, " + name;
        }
    }
    """
)

C = textwrap.dedent(
    """\
    #include <stdio.h>

    static int clamp(int value, int low, int high) {
        if (value < low) return low;
        if (value > high) return high;
        return value;
    }

    int main(void) {
        printf("%d\\n", clamp(12, 0, 10));
        return 0;
    }
    """
)


def span(text: str, fragment: str) -> tuple[int, int]:
    start = text.index(fragment)
    return start, start + len(fragment)


def check(
    language: str, text: str, fragment: str, replacement: str, kind: str = "refactor"
) -> Verdict:
    start, end = span(text, fragment)
    return verify_edit(language, text, start, end, replacement, kind)


# --------------------------------------------------------------------------- empty / unchanged


@pytest.mark.parametrize("language", ["python", "plaintext"])
def test_empty_answer_fails(language: str) -> None:
    verdict = check(language, PYTHON, "    return result\n", "  \n")
    assert verdict == Verdict(False, "the answer is empty")


@pytest.mark.parametrize(
    "replacement",
    ["    return result\n", "    return result   \n\n"],
    ids=["identical", "only-trailing-whitespace"],
)
def test_unchanged_answer_fails(replacement: str) -> None:
    verdict = check("python", PYTHON, "    return result\n", replacement)
    assert not verdict.ok and "unchanged" in verdict.reason


def test_plain_text_gets_only_the_empty_and_unchanged_checks() -> None:
    text = "Shopping list:\n- eggs\n- milk (\n"
    verdict = check("plaintext", text, "- eggs\n", "- eggs\n- flour ((\n")
    assert verdict == Verdict(True, "plain text: no syntax check")


def test_explanation_is_not_parsed() -> None:
    verdict = check("python", PYTHON, "def total(items):", "Sums `price * quantity`.", "explain")
    assert verdict.ok


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("language", "text", "fragment", "replacement"),
    [
        ("python", PYTHON, "    return result\n", "    return round(result, 2)\n"),
        ("javascript", JAVASCRIPT, "sum += square(v);", "sum += v ** 2;"),
        ("go", GO, "\treturn n * 2\n", "\treturn n + n\n"),
        ("rust", RUST, "self.count += 1;", "self.count = self.count.wrapping_add(1);"),
        ("java", JAVA, 'return "Hello, " + name;', 'return String.format("Hello, %s", name);'),
        ("c", C, "return value;", "return value < low ? low : value;"),
    ],
    ids=["python", "javascript", "go", "rust", "java", "c"],
)
def test_valid_edit_passes(language: str, text: str, fragment: str, replacement: str) -> None:
    verdict = check(language, text, fragment, replacement)
    assert verdict == Verdict(True, "parses without new syntax errors")


@pytest.mark.parametrize(
    ("language", "text", "fragment", "replacement"),
    [
        ("python", PYTHON, "    return result\n", "    return round(result, 2\n"),
        ("javascript", JAVASCRIPT, "sum += square(v);", "sum += square(v;"),
        ("go", GO, "\treturn n * 2\n", "\treturn n * (2\n"),
        ("rust", RUST, "self.count += 1;", "self.count += ;"),
        ("java", JAVA, 'return "Hello, " + name;', 'return "Hello, " + name'),
        ("c", C, "return value;", "return value +;"),
    ],
    ids=["python-paren", "javascript-paren", "go-paren", "rust-operand", "java-semicolon", "c"],
)
def test_edit_that_breaks_the_syntax_fails(
    language: str, text: str, fragment: str, replacement: str
) -> None:
    verdict = check(language, text, fragment, replacement)
    assert not verdict.ok
    assert "syntax error" in verdict.reason or "missing" in verdict.reason


def test_missing_node_is_reported_by_name() -> None:
    verdict = check("java", JAVA, 'return "Hello, " + name;', 'return "Hello, " + name')
    assert verdict.reason.startswith("the answer adds 1 syntax error (missing ';' at line 9")


def test_inline_completion_at_the_cursor() -> None:
    text = "def area(width, height):\n    return \n"
    cursor = text.index("return ") + len("return ")
    good = verify_edit("python", text, cursor, cursor, "width * height", "inline")
    bad = verify_edit("python", text, cursor, cursor, "width * (height", "inline")
    assert good.ok, good.reason
    assert not bad.ok


def test_errors_elsewhere_in_the_file_do_not_count() -> None:
    broken_elsewhere = PYTHON.replace("self.items.append(item)", "self.items.append(item")
    verdict = check("python", broken_elsewhere, "    return result\n", "    return 0\n")
    assert verdict.ok, verdict.reason


def test_fix_that_removes_an_error_passes() -> None:
    broken = PYTHON.replace("return json.load(handle)", "return json.load(handle")
    verdict = check("python", broken, "return json.load(handle", "return json.load(handle)", "fix")
    assert verdict.ok and "fewer" in verdict.reason


def test_offsets_are_characters_not_bytes() -> None:
    text = 'GREETING = "héllo wörld ✓"\n\ndef shout():\n    return GREETING.upper()\n'
    verdict = check("python", text, "GREETING.upper()", "GREETING.upper() + '!'")
    assert verdict.ok, verdict.reason
    broken = check("python", text, "GREETING.upper()", "GREETING.upper(")
    assert not broken.ok


# --------------------------------------------------------------------------- definitions


def test_refactor_that_drops_a_function_fails() -> None:
    selection = PYTHON[PYTHON.index("def load") : PYTHON.index("class Cart")]
    replacement = "def total(items):\n    return sum(i['price'] * i['quantity'] for i in items)\n"
    verdict = check("python", PYTHON, selection, replacement)
    assert verdict == Verdict(False, "the answer drops definitions: load")


def test_refactor_that_keeps_the_functions_passes() -> None:
    selection = PYTHON[PYTHON.index("def total") : PYTHON.index("class Cart")]
    replacement = (
        "def total(items):\n"
        '    return sum(item["price"] * item["quantity"] for item in items)\n\n\n'
    )
    assert check("python", PYTHON, selection, replacement).ok


def test_refactor_that_drops_a_method_fails() -> None:
    selection = PYTHON[PYTHON.index("class Cart") :]
    replacement = "class Cart:\n    def __init__(self):\n        self.items = []\n"
    verdict = check("python", PYTHON, selection, replacement)
    assert verdict == Verdict(False, "the answer drops definitions: add")


def test_docstring_must_keep_definitions_but_fix_need_not() -> None:
    selection = PYTHON[PYTHON.index("def load") : PYTHON.index("def total")]
    replacement = "import pathlib\n\n\n"
    assert not check("python", PYTHON, selection, replacement, "docstring").ok
    assert check("python", PYTHON, selection, replacement, "fix").ok


def test_javascript_arrow_function_is_named_by_its_variable() -> None:
    selection = JAVASCRIPT[: JAVASCRIPT.index("module.exports")]
    replacement = (
        "function sumOfSquares(values) {\n  return values.reduce((s, v) => s + v * v, 0);\n}\n\n"
    )
    verdict = check("javascript", JAVASCRIPT, selection, replacement)
    assert verdict == Verdict(False, "the answer drops definitions: square")


@pytest.mark.parametrize(
    ("language", "text", "start_at", "replacement", "dropped"),
    [
        ("go", GO, "func double", "func main() {\n\tfmt.Println(42)\n}\n", "double"),
        (
            "rust",
            RUST,
            "impl Counter",
            "impl Counter {\n    fn new() -> Self {\n        Counter { count: 0 }\n    }\n}\n",
            "tick",
        ),
        (
            "java",
            JAVA,
            "    public Greeter(",
            '    public String greet() {\n        return "Hello";\n    }\n}\n',
            "Greeter",
        ),
        ("c", C, "static int clamp", "int main(void) {\n    return 0;\n}\n", "clamp"),
    ],
    ids=["go-func", "rust-method", "java-constructor", "c-function"],
)
def test_dropped_definitions_in_other_languages(
    language: str, text: str, start_at: str, replacement: str, dropped: str
) -> None:
    start = text.index(start_at)
    verdict = verify_edit(language, text, start, len(text), replacement, "refactor")
    assert verdict == Verdict(False, f"the answer drops definitions: {dropped}")


def test_functions_named_by_an_object_key_are_definitions() -> None:
    text = "const handlers = {\n  open: () => start(),\n  close: () => stop(),\n};\n"
    verdict = check("javascript", text, text, "const handlers = {\n  open: () => start(),\n};\n")
    assert verdict == Verdict(False, "the answer drops definitions: close")
