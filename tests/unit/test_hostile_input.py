"""Text no editor should send but some do: lone surrogates, megabyte lines, keys as names."""

from __future__ import annotations

import time

import pytest

from mmx_lsp import calls, config, engine
from mmx_lsp.documents import (
    MAX_PARSE_LINE_CHARS,
    Document,
    clean_text,
    index_to_utf16,
    utf16_to_index,
)
from mmx_lsp.providers import Providers
from mmx_lsp.scoring import Request
from mmx_lsp.tokens import estimate_tokens


def _slow_utf16_to_index(line: str, character: int) -> int:
    units = 0
    for index, char in enumerate(line):
        if units >= character:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(line)


@pytest.mark.parametrize(
    "line", ["plain ascii", "naïve café", "a😀b😀😀c", "😀", "é😀", ""], ids=str
)
def test_utf16_columns_match_a_character_by_character_count(line: str) -> None:
    for column in range(0, 2 * len(line) + 3):
        assert utf16_to_index(line, column) == _slow_utf16_to_index(line, column)
    for index in range(len(line) + 1):
        assert index_to_utf16(line, index) == len(line[:index].encode("utf-16-le")) // 2


def test_lone_surrogates_are_read_as_replacement_characters_keeping_positions() -> None:
    text, replaced = clean_text("a = '\ud800'\nb = '\udfff😀'\n")
    assert replaced == 2
    assert text == "a = '\ufffd'\nb = '\ufffd😀'\n"
    doc = Document.open("file:///w/s.py", "python", 1, "x = '\ud800'\ny = 1\n")
    assert doc.replaced_chars == 1
    assert doc.size_bytes == len(doc.text().encode("utf-8"))  # encodable: no error
    doc.apply((1, 5), (1, 5), "\udc00", 2)
    assert doc.replaced_chars == 2
    assert doc.line_text(1) == "y = 1\ufffd"
    features = engine.measured(doc, Request("inline", (1, 6)))
    assert features.language == "python"


def _minified(chars: int) -> str:
    unit = "function f(a,b){return a+b}var x=[1,2,3].map(function(v){return v*2});"
    return (unit * (chars // len(unit) + 1))[:chars]


def test_a_huge_single_line_is_text_only_and_a_keystroke_stays_fast() -> None:
    doc = Document.open("file:///w/app.min.js", "javascript", 1, _minified(3_600_000))
    assert doc.spec is None
    assert "minified" in (doc.text_only_reason() or "")
    settings = config.load([]).settings
    column = 1_800_000
    started = time.perf_counter()
    doc.apply((0, column), (0, column), "x", 2)
    decision = engine.decide(settings, doc, Request("inline", (0, column + 1)))
    snap = calls.take_snapshot(doc, (0, column + 1))
    prompt = calls.build_prompt("inline", snap, settings.tiers["cheap"])
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert elapsed_ms < 250  # 50 ms on an idle machine; generous for a loaded CI runner
    assert len(snap.text) <= 4 * settings.limits["line"].context_tokens * 4 + 1
    sent = sum(len(m["content"]) for m in prompt.messages or []) / 4  # the stub's count
    estimated = decision.estimate_usage["cheap"].input_tokens
    assert sent / 2 <= estimated <= sent * 2


def test_a_refactor_in_a_minified_line_is_priced_from_what_is_sent() -> None:
    doc = Document.open("file:///w/app.min.js", "javascript", 1, _minified(3_600_000))
    settings = config.load([]).settings
    start, end = (0, 2_000_000), (0, 2_000_100)
    decision = engine.decide(settings, doc, Request("refactor", start, end))
    snap = calls.take_snapshot(doc, start, end)
    prompt = calls.build_prompt("refactor", snap, settings.tiers["premium"])
    sent = sum(estimate_tokens(m["content"]) for m in prompt.messages or [])
    estimated = decision.estimate_usage["premium"].input_tokens
    assert sent / 2 <= estimated <= sent * 2
    assert decision.estimate_usd["premium"] < 1  # not the dollars the whole line would cost


def test_a_line_growing_past_the_limit_makes_the_document_text_only() -> None:
    doc = Document.open("file:///w/a.js", "javascript", 1, "let a = 1;\n")
    assert doc.spec is not None and doc.tree() is not None
    doc.apply((0, 10), (0, 10), "x" * (MAX_PARSE_LINE_CHARS + 1), 2)
    assert doc.spec is None and not doc.has_tree
    assert engine.measured(doc, Request("inline", (0, 5))).language == "plaintext"


@pytest.mark.parametrize(
    "value, key_like",
    [
        ("OPENAI_API_KEY", False),
        ("MY_LLM_KEY_2", False),
        ("sk-proj-Abc123def456ghi789jkl012", True),
        ("gsk_4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", True),
        ("has space", True),
        ("", False),
    ],
)
def test_a_key_pasted_as_api_key_env_is_recognised(value: str, key_like: bool) -> None:
    assert config.looks_like_key(value) is key_like


def test_a_key_pasted_as_api_key_env_is_never_echoed() -> None:
    key = "sk-live-Zq8XwV7uT6sR5qP4oN3mL2kJ1"
    loaded = config.load(
        [config.Source("mmx.toml", {"providers": {"openai": {"api_key_env": key}}})]
    )
    texts = [str(issue) for issue in loaded.issues]
    assert any(config.KEY_IN_KEY_ENV in text for text in texts)
    providers = Providers(loaded.settings, environ={})
    problem = providers.configured("cheap") or ""
    assert "looks like a key itself" in problem
    rows = config.effective_items(loaded)
    everything = "\n".join(texts + [problem] + [f"{k}={v}" for k, v, _ in rows])
    assert key not in everything
    assert key in providers.secrets()  # so that the log filter hides it too
