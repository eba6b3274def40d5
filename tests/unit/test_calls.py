"""Right-sized requests: limits per hole and kind, stop sequences, the end of a block."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmx_lsp import calls, config, engine, runaway
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document
from mmx_lsp.scoring import Request

SOURCE = '''import json


def load(path):
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def save(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle)
'''


def fim_settings(**limits: object) -> Settings:
    data = {
        "providers": {"local": {"base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
        "tiers": {
            "cheap": {"provider": "local", "model": "small", "api": "completions"},
            "premium": {"provider": "local", "model": "big", "max_context_tokens": 100},
        },
        "limits": limits,
    }
    loaded = config.load([config.Source("test", data)])
    assert not loaded.issues, loaded.issues
    return loaded.settings


@pytest.mark.parametrize(
    ("kind", "hole", "key"),
    [
        ("inline", "expression", "line"),
        ("inline", "line", "line"),
        ("completion", "block", "block"),
        ("inline", "body", "body"),
        ("refactor", "selection", "refactor"),
        ("explain", None, "explain"),
    ],
)
def test_each_request_follows_the_limits_of_its_hole_or_kind(
    kind: calls.Kind, hole: str | None, key: str
) -> None:
    assert calls.request_shape(Settings(), kind, hole).key == key


def test_a_line_completion_is_small_and_ends_at_the_line_on_a_fim_tier() -> None:
    settings = fim_settings()
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE)
    shape = calls.request_shape(settings, "inline", "expression")
    snap = calls.take_snapshot(doc, (6, 15), context_tokens=shape.context_tokens)
    cheap = settings.tiers["cheap"]
    prompt = calls.build_prompt("inline", snap, cheap, (), shape)
    request = calls.model_request("cheap", cheap, "inline", prompt, shape, snap)
    assert request.stop == ["\n"] and request.max_tokens == 48
    # Every answer is stopped when the model is caught in a loop; a line needs nothing else.
    assert request.cut is not None
    assert request.cut("a +" * 10) is None
    looped = "total = total + 1\n" * runaway.LOOP_COPIES
    assert request.cut(looped + "total") == len(looped)
    # A chat tier gets no stop sequences (its answer may open with a fence), and its own
    # context cap applies.
    premium = settings.tiers["premium"]
    chat = calls.model_request("premium", premium, "inline", prompt, shape, snap)
    assert chat.stop is None
    assert calls.context_tokens(shape, premium) == 100


def test_limits_are_settings() -> None:
    settings = fim_settings(line={"deadline_s": 2.5, "stop": ["\n", ";"]})
    shape = calls.request_shape(settings, "inline", "line")
    assert (shape.deadline_s, shape.stop, shape.context_tokens) == (2.5, ("\n", ";"), 192)
    assert calls.request_shape(settings, "inline", "body").deadline_s == 10.0
    bad = config.load([config.Source("test", {"limits": {"line": {"stop": [""]}}})])
    assert bad.issues and "stop" in bad.issues[0].key


def test_a_tier_caps_answers_only_when_told_to() -> None:
    """A refactor may be as long as its kind allows (a tier cap would cut long rewrites off
    and fail them); a tier with a cap of its own, a small model on a CPU, keeps to it."""
    settings = fim_settings()
    shape = calls.request_shape(settings, "refactor", "selection")
    assert calls.output_cap(shape, settings.tiers["cheap"]) == shape.max_output_tokens == 2048
    capped = settings.tiers["cheap"].model_copy(update={"max_output_tokens": 300})
    assert calls.output_cap(shape, capped) == 300
    line = calls.request_shape(settings, "inline", "line")
    assert calls.output_cap(line, capped) == 48, "the kind's cap applies first"


def test_a_body_answer_ends_at_its_dedent_or_where_the_model_loops() -> None:
    settings = fim_settings()
    doc = Document.open(
        "file:///w/a.py", "python", 1, SOURCE.replace("json.dump(data, handle)", "")
    )
    place = (11, 8)  # the empty body of save()
    shape = calls.request_shape(settings, "inline", "body")
    snap = calls.take_snapshot(doc, place, context_tokens=shape.context_tokens)
    cheap = settings.tiers["cheap"]
    prompt = calls.build_prompt("inline", snap, cheap, (), shape)
    request = calls.model_request("cheap", cheap, "inline", prompt, shape, snap)
    assert request.cut is not None
    body = "json.dump(data, handle)\n        return path\n"
    assert request.cut(body + "def other():\n") == len(body) - 1
    looped = "json.dump(data, handle)\n        " + "handle.write(chr(10))\n        " * 12
    assert request.cut(looped) == len(looped) - len("        ")


def test_a_block_answer_ends_at_its_first_line_indented_less_than_the_cursor() -> None:
    cut = calls.dedent_cut("        ")
    assert cut("x = 1") is None
    assert cut("x = 1\n        y = 2\n") is None
    assert cut("x = 1\n        y = 2\n    ") is None, "a blank start says nothing yet"
    text = "x = 1\n        y = 2\n    return y\n"
    assert text[: cut(text) or 0] == "x = 1\n        y = 2"
    assert cut("x = 1\n\n        y") is None, "blank lines do not end a block"


def sent_tokens(
    settings: Settings,
    doc: Document,
    place: tuple[int, int],
    prefix_only: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """The input tokens of the prompt each tier is sent for an inline request at `place`
    (without the suffix for a tier in `prefix_only`)."""
    features = engine.measured(doc, Request("inline", place))
    shape = calls.request_shape(settings, "inline", features.hole)
    snap = calls.take_snapshot(doc, place, context_tokens=shape.context_tokens)
    sent = {}
    for tier, tier_config in settings.tiers.items():
        prompt = calls.build_prompt("inline", snap, tier_config, (), shape)
        sent[tier] = calls.prompt_tokens(prompt.without_suffix() if tier in prefix_only else prompt)
    return sent


FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.mark.parametrize(
    "path", ["python/functools_cpython.py", "go/ratelimit.go", "javascript/acorn.js"]
)
def test_an_inline_estimate_sizes_the_prompt_each_tier_would_be_sent(path: str) -> None:
    # Sized without building the prompt (at every keystroke): within 15 % of the prompt built,
    # at the top and the end of the file and at places in between.
    settings = fim_settings()
    file = FIXTURES / path
    text = file.read_text()
    doc = Document.open(file.as_uri(), file.suffix.lstrip("."), 1, text)
    rows = [0, *range(7, len(doc.lines), len(doc.lines) // 12), len(doc.lines) - 1]
    for row in rows:
        place = (row, len(doc.line_text(row)))
        decision = engine.decide(settings, doc, Request("inline", place))
        for tier, sent in sent_tokens(settings, doc, place).items():
            estimate = decision.estimate_usage[tier].input_tokens
            assert abs(estimate - sent) <= 0.15 * sent + 4, (row, tier, estimate, sent)
    # Premium's context is capped at 100 tokens (its system message comes on top).
    assert decision.estimate_usage["premium"].input_tokens < 300


def test_an_inline_estimate_for_a_tier_sent_no_suffix_counts_the_code_before_the_cursor() -> None:
    settings = fim_settings()
    file = FIXTURES / "go/ratelimit.go"
    doc = Document.open(file.as_uri(), "go", 1, file.read_text())
    row = len(doc.lines) // 2
    for place in [(row, 0), (row, len(doc.line_text(row)) // 2), (len(doc.lines) // 4, 2)]:
        whole = engine.decide(settings, doc, Request("inline", place)).estimate_usage
        cut = engine.decide(
            settings, doc, Request("inline", place), prefix_only=frozenset({"cheap"})
        ).estimate_usage
        sent = sent_tokens(settings, doc, place, frozenset({"cheap"}))["cheap"]
        assert abs(cut["cheap"].input_tokens - sent) <= 0.15 * sent + 4, (place, cut, sent)
        assert cut["cheap"].input_tokens < 0.8 * whole["cheap"].input_tokens
        assert cut["premium"] == whole["premium"]


def test_an_inline_estimate_in_a_short_file_counts_the_file_not_the_budget() -> None:
    settings = fim_settings()
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE)
    decision = engine.decide(settings, doc, Request("inline", (6, 15)))
    sent = sent_tokens(settings, doc, (6, 15))["cheap"]
    assert sent < 192, "the whole file fits the line budget"
    assert abs(decision.estimate_usage["cheap"].input_tokens - sent) <= 0.15 * sent + 4


def test_an_action_estimate_counts_the_prompt_it_would_send() -> None:
    settings = fim_settings()
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE * 40)
    decision = engine.decide(settings, doc, Request("refactor", (3, 0), (6, 32)))
    shape = calls.request_shape(settings, "refactor")
    snap = calls.take_snapshot(doc, (3, 0), (6, 32), context_tokens=shape.context_tokens)
    for tier, tier_config in settings.tiers.items():
        sent = calls.prompt_tokens(calls.build_prompt("refactor", snap, tier_config, (), shape))
        assert decision.estimate_usage[tier].input_tokens == sent
