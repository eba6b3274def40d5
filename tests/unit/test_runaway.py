"""Answers that run away from their task are stopped while they stream: a model caught in a
loop, and one that writes its prompt back."""

from __future__ import annotations

import pytest

from mmx_lsp import calls, config, prompts
from mmx_lsp.documents import Document
from mmx_lsp.runaway import LOOP_COPIES, echo_end, echoes_request, loop_end, repeats_itself

LOOPED = "- missing return (compiler: MissingReturn)\n"


def test_a_model_caught_in_a_loop_is_stopped_at_the_last_copy_that_proves_it() -> None:
    before = "func take() int {\n"
    assert loop_end(before + LOOPED * (LOOP_COPIES - 1)) is None
    text = before + LOOPED * LOOP_COPIES
    assert loop_end(text) == len(text)
    assert loop_end(text + "- missing ret") == len(text), "a line still being written waits"
    block = "    total += 1\n    print(total)\n    check(total)\n"
    assert loop_end(before + block * (LOOP_COPIES - 1)) is None
    assert loop_end(before + block * LOOP_COPIES) is not None
    # A longer block needs fewer copies: a six-line function, eight times (48 lines).
    function = "\n// Allow takes a token.\nfunc Allow() bool {\n\tb.mu.Lock()\n\treturn false\n}\n"
    assert loop_end(before + function * 7) is None
    assert loop_end(before + function * 8) is not None


@pytest.mark.parametrize(
    "text",
    [
        "    None,\n" * 40,  # rows of a data table
        "    '\\ufffe',\n" * 40,
        "}\n" * 40,
        "\n" * 40,
        "".join(f"    row{i} = compute(row{i - 1})\n" for i in range(40)),
        # Code pasted three times over is not a loop.
        "def test_a():\n    parser = make_parser()\n    parser.feed(DATA)\n\n" * 3,
    ],
)
def test_tables_and_closing_brackets_are_not_a_loop(text: str) -> None:
    assert loop_end(text) is None and repeats_itself(text) is None


DIAGNOSTICS = ["missing return (compiler: MissingReturn)", "E1"]
GO = """package take

func take(n int) int {
\tif n > 0 {
\t\treturn n
\t}
}
"""


def test_an_action_prompt_names_the_words_it_puts_around_the_code() -> None:
    words = prompts.request_words("fix", "go", DIAGNOSTICS)
    assert words == (
        "Language: go",
        "Code before the selection:",
        "Code after the selection:",
        "Diagnostics in the selection:",
        "- missing return (compiler: MissingReturn)",
    ), "a diagnostic as short as '- E1' could begin a line of Markdown"
    prompt = prompts.build_action("fix", GO, 14, len(GO) - 1, "go", DIAGNOSTICS, None)
    assert prompt.words == words
    sent = prompt.messages[-1]["content"].split("\n") if prompt.messages else []
    assert all(any(line.startswith(word) for line in sent) for word in words[:1] + words[3:])
    assert prompts.request_words("explain", "go", DIAGNOSTICS) == words[:4], "may list them"
    assert prompts.request_words("inline", "go", DIAGNOSTICS) == ()


def test_an_answer_that_writes_its_prompt_back_is_stopped_after_that_line() -> None:
    words = prompts.request_words("fix", "go", DIAGNOSTICS)
    cut = echo_end(words, GO)
    assert cut("func take(n int) int {\n") is None
    assert cut("func take(n int) int {\n- missing ret") is None, "a line being written waits"
    text = "func take(n int) int {\n- missing return (compiler: MissingReturn) again\n"
    assert cut(text + "- missing return") == len(text)
    # A copy of a diagnostic whose end the model changed is still a copy.
    changed = "  - missing return (compiler: MissingReturnStatement)\n"
    assert echo_end(words, GO)(changed) == len(changed)
    # Read from the start again when the request is sent again (a retry after a dropped
    # stream), however much of the new answer has come.
    cut = echo_end(words, GO)
    first = "func take(n int) int {\n\tif n > 0 {\n\t\treturn n\n"
    assert cut(first) is None
    assert cut("Language: go\n" + first) == len("Language: go\n")
    message = echoes_request("Language: go\nfunc take() {}", words, GO)
    assert message is not None and "the request's own words ('Language: go')" in message
    assert "send these requests to a larger one with a routing.rules entry" in message
    assert echoes_request("func take() {}\n", words, GO) is None


def test_a_line_the_code_itself_begins_with_is_not_an_echo() -> None:
    """A Markdown or YAML file may hold such a line: an answer may keep it."""
    readme = "Language: go\nLicense: MIT\n"
    words = prompts.request_words("refactor", "markdown", [])
    assert words[0] == "Language: plain text"
    words = ("Language: go", *words)
    assert echo_end(words, readme)(readme) is None
    assert echoes_request("Intro.\nThe Language: go header.\n", words, "") is None


def test_the_server_fails_an_answer_that_writes_its_prompt_back() -> None:
    doc = Document.open("file:///w/take.go", "go", 1, GO)
    settings = config.load([]).settings
    shape = calls.request_shape(settings, "fix")
    snap = calls.take_snapshot(doc, (2, 0), (6, 1), context_tokens=shape.context_tokens)
    tier = settings.tiers["cheap"]
    prompt = calls.build_prompt("fix", snap, tier, DIAGNOSTICS, shape)
    request = calls.model_request("cheap", tier, "fix", prompt, shape, snap)
    answer = "- missing return (compiler: MissingReturn)\n"
    assert request.cut is not None and request.cut(answer + "- missing") == len(answer)
    verdict = calls.verify_answer(snap, "fix", answer, prompt.words)
    assert not verdict.ok and "own words" in verdict.reason
    fixed = "func take(n int) int {\n\tif n > 0 {\n\t\treturn n\n\t}\n\treturn 0\n}"
    assert calls.verify_answer(snap, "fix", fixed, prompt.words).ok
