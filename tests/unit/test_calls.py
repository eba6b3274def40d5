"""Right-sized requests: limits per hole and kind, stop sequences, the end of a block."""

from __future__ import annotations

import pytest

from mmx_lsp import calls, config, engine
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
    assert request.cut is None
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


def test_a_block_answer_ends_at_its_first_line_indented_less_than_the_cursor() -> None:
    cut = calls.dedent_cut("        ")
    assert cut("x = 1") is None
    assert cut("x = 1\n        y = 2\n") is None
    assert cut("x = 1\n        y = 2\n    ") is None, "a blank start says nothing yet"
    text = "x = 1\n        y = 2\n    return y\n"
    assert text[: cut(text) or 0] == "x = 1\n        y = 2"
    assert cut("x = 1\n\n        y") is None, "blank lines do not end a block"


def test_a_pre_call_estimate_counts_the_prompt_each_tier_would_be_sent() -> None:
    settings = fim_settings()
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE * 40)
    decision = engine.decide(settings, doc, Request("inline", (6, 15)))
    shape = calls.request_shape(settings, "inline", decision.features["hole"])
    snap = calls.take_snapshot(doc, (6, 15), context_tokens=shape.context_tokens)
    for tier, tier_config in settings.tiers.items():
        sent = calls.prompt_tokens(calls.build_prompt("inline", snap, tier_config, (), shape))
        assert decision.estimate_usage[tier].input_tokens == sent
    # Premium's context is capped at 100 tokens (its system message comes on top).
    assert decision.estimate_usage["premium"].input_tokens < 300
