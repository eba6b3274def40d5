"""The checks that catch wrong answers without running them, on answers in place."""

from __future__ import annotations

import pytest

from mmx_lsp.checks import CHECKS
from mmx_lsp.runaway import LOOP_COPIES
from mmx_lsp.verify import verify_edit

PY_CLASS = '''import json
from collections import deque


class Queue:
    """A queue of jobs."""

    def __init__(self, size):
        self.items = deque()
        self.size = size

    def push(self, job):
        """Add a job.
        :return: bool, True when it was added.
        """
        <|hole|>

    def dump(self):
        return json.dumps(list(self.items))
'''


def fill(template: str, answer: str) -> tuple[str, int, int, str]:
    start = template.index("<|hole|>")
    text = template.replace("<|hole|>", "")
    return text, start, start, answer


def findings(language: str, template: str, answer: str, kind: str = "inline") -> set[str]:
    text, start, end, answer = fill(template, answer)
    verdict = verify_edit(language, text, start, end, answer, kind, checks=CHECKS)
    return {f.check for f in verdict.findings}


GOOD = "if len(self.items) >= self.size:\n            return False\n        self.items.append(job)\n        return True"


def test_a_correct_body_passes_every_check() -> None:
    text, start, end, answer = fill(PY_CLASS, GOOD)
    verdict = verify_edit("python", text, start, end, answer, "inline")
    assert verdict.ok, verdict.reason
    assert verdict.findings == ()


@pytest.mark.parametrize(
    ("answer", "check"),
    [
        ("pass", "placeholder"),
        ("raise NotImplementedError", "placeholder"),
        ("# TODO: push the job", "placeholder"),
        ("self.items.append(re.sub('x', '', job))\n        return True", "undefined_name"),
        ("self.queue.append(job)\n        return True", "unknown_attribute"),
        ("self.items.append(job)", "missing_return"),
        (
            "def push(self, job):\n            self.items.append(job)\n            return True",
            "redefines_signature",
        ),
        (
            'def push(self, job):\n        """Add a job.\n        :return: bool, True when it was added.\n        """',
            "repeats_context",
        ),
    ],
    ids=[
        "pass",
        "not-implemented",
        "todo",
        "re-not-imported",
        "queue-never-set",
        "no-return",
        "redefinition",
        "copies-context",
    ],
)
def test_each_check_fires_on_the_wrong_answer_it_names(answer: str, check: str) -> None:
    assert check in findings("python", PY_CLASS, answer)


@pytest.mark.parametrize(
    "answer",
    [
        "import json\n# ...\nclass Queue:\n    # ...\n    def push(self, job):\n        return True",
        "import json\nclass Queue:\n    def push(self, job):\n        return True",
    ],
    ids=["with-elisions", "picked-lines"],
)
def test_an_answer_that_copies_the_prompts_context_header_is_rejected(answer: str) -> None:
    """The prompt shows imports and the enclosing definition's head with `...` between them;
    a model may copy that header instead of writing code (one that ends in an unterminated
    string is also caught by the syntax check, on the whole document)."""
    assert "repeats_context" in findings("python", PY_CLASS, answer)


def test_a_body_that_reuses_a_line_from_above_is_not_a_copy() -> None:
    answer = "if job:\n            self.items.append(job)\n        return True"
    assert "repeats_context" not in findings("python", PY_CLASS, answer)


def test_names_bound_anywhere_in_the_file_are_not_undefined() -> None:
    answer = (
        "try:\n            with open(job) as handle:\n                data = json.load(handle)\n"
        "        except OSError as error:\n            print(error)\n            return False\n"
        "        self.items.extend(x for x in data if x)\n        return True"
    )
    assert findings("python", PY_CLASS, answer) == set()


def test_a_class_with_a_base_may_have_attributes_it_never_sets() -> None:
    template = PY_CLASS.replace("class Queue:", "class Queue(Base):")
    assert "unknown_attribute" not in findings("python", template, "return self.capacity > 0")


def test_a_failed_check_explains_itself() -> None:
    text, start, end, answer = fill(PY_CLASS, "self.jobs.append(job)\n        return True")
    verdict = verify_edit("python", text, start, end, answer, "inline")
    assert not verdict.ok
    assert verdict.reason == "the answer uses self.jobs, which the class never sets"


JS_CLASS = """class Counter {
  constructor() {
    this.count = 0;
  }

  increment() {
    <|hole|>
  }
}
"""


def test_javascript_members_the_class_never_sets_are_caught() -> None:
    assert "unknown_attribute" in findings("javascript", JS_CLASS, "this.total += 1;")
    assert findings("javascript", JS_CLASS, "this.count += 1;") == set()


@pytest.mark.parametrize(
    ("language", "template", "answer"),
    [
        ("python", PY_CLASS, "# Add your queue logic here\n        return True"),
        (
            "python",
            PY_CLASS,
            "self.items.append(job)  # modify the limit as needed\n        return True",
        ),
        (
            "python",
            PY_CLASS,
            "# This is a placeholder for the actual size check\n        return True",
        ),
        ("javascript", JS_CLASS, "// Replace with your real counter key\n    this.count += 1;"),
        (
            "rust",
            "fn add(a: i32, b: i32) -> i32 {\n    <|hole|>\n}\n",
            "// your code here\n    a + b",
        ),
    ],
    ids=["python-here", "python-trailing", "python-placeholder", "javascript", "rust"],
)
def test_a_comment_that_leaves_the_work_to_the_reader_is_caught(
    language: str, template: str, answer: str
) -> None:
    assert "leaves_work" in findings(language, template, answer)


@pytest.mark.parametrize(
    "answer",
    [
        "# Drop the oldest job when full, as the docstring asks\n        return True",
        "# Replace spaces with underscores\n        self.items.append(job.replace(' ', '_'))\n"
        "        return True",
        "self.items.append('# add your logic here')\n        return True",
    ],
    ids=["plain-comment", "replace-in-a-comment", "phrase-in-a-string"],
)
def test_ordinary_comments_and_strings_do_not_leave_work(answer: str) -> None:
    assert "leaves_work" not in findings("python", PY_CLASS, answer)


def test_the_message_quotes_the_comment() -> None:
    text, start, end, answer = fill(PY_CLASS, "# Add your queue logic here\n        return True")
    verdict = verify_edit("python", text, start, end, answer, "inline")
    assert verdict.reason == "the answer leaves the work to you: '# Add your queue logic here'"


def test_open_world_languages_get_no_undefined_name_check() -> None:
    go = "package main\n\nfunc add(a int, b int) int {\n\t<|hole|>\n}\n"
    assert "undefined_name" not in findings("go", go, "return helper(a, b)")


def test_rust_placeholder_macro_is_caught() -> None:
    rust = "fn add(a: i32, b: i32) -> i32 {\n    <|hole|>\n}\n"
    assert "placeholder" in findings("rust", rust, "todo!()")


def test_explanations_are_not_reviewed_as_code() -> None:
    text, start, end, _ = fill(PY_CLASS, "")
    verdict = verify_edit("python", text, start, end, "It pushes a job with re.", "explain")
    assert verdict.ok


def test_an_answer_that_repeats_itself_fails_and_says_what_it_repeated() -> None:
    answer = "x = 1\n        " + "self.items.append(job)\n        " * LOOP_COPIES + "return True"
    text, start, end, answer = fill(PY_CLASS, answer)
    verdict = verify_edit("python", text, start, end, answer, "inline")
    assert not verdict.ok
    assert "repeated itself: 'self.items.append(job)' again and again" in verdict.reason
    prose = "It pushes a job.\n" + "The queue is full.\n" * LOOP_COPIES
    assert not verify_edit("python", text, start, end, prose, "explain").ok
