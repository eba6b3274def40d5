"""Pre-call estimates learn each model's answer lengths from its answers."""

from __future__ import annotations

from mmx_lsp import calls, config, engine
from mmx_lsp.answer_sizes import UNBOUNDED, AnswerSizes, Sized, SizedRequest
from mmx_lsp.documents import Document
from mmx_lsp.router import load_built_in
from mmx_lsp.scoring import FEATURE_NAMES, Request

SOURCE = "".join(
    f"def f{n}(values):\n    total = 0\n    for v in values:\n        total += v * {n}\n"
    "    return total\n\n\n"
    for n in range(6)
)


def test_without_answers_the_guess_stands() -> None:
    assert AnswerSizes().estimate("m", "fix", "selection", 60, 86) == 86


def test_an_edit_is_sized_relative_to_its_selection() -> None:
    sizes = AnswerSizes()
    for _ in range(3):  # a verbose model: five times its selection
        sizes.observe("small", "fix", "selection", 300, 60)
    # The guess counts as one answer among the model's: the median is the model's habit.
    assert sizes.estimate("small", "fix", "selection", 100, 130) == 500
    assert sizes.estimate("other", "fix", "selection", 100, 130) == 130, "per model"
    assert sizes.estimate("small", "refactor", "selection", 100, 130) == 130, "per kind"


def test_a_models_habit_carries_over_to_a_kind_of_edit_it_has_not_answered_yet() -> None:
    sizes = AnswerSizes()
    for _ in range(3):  # fixes: four times what was guessed
        sizes.observe("small", "fix", "selection", 400, 60, guess=100)
    # No docstring seen yet: its guess, scaled by the model's habit on edits (median of
    # 1 counted once and three answers of 4× the guess).
    assert sizes.estimate("small", "docstring", "selection", 90, 159) == 636
    assert sizes.estimate("other", "docstring", "selection", 90, 159) == 159, "per model"
    assert sizes.estimate("small", "inline", "line", 0, 32) == 32, "edits only"
    sizes.observe("small", "docstring", "selection", 100, 90, guess=159)
    # Once the kind has answers of its own, they decide.
    assert sizes.estimate("small", "docstring", "selection", 90, 159) == round((159 + 100) / 2)


def test_a_model_that_runs_to_its_cap_is_expected_to_run_to_it_again() -> None:
    """An answer cut off at the length cap would have been longer: it counts as longer than
    any cap, and `calls` caps the estimate, whatever the selection's size."""
    sizes = AnswerSizes()
    sizes.observe("small", "fix", "selection", 512, 45, guess=69, cut_off=True)
    # One cut-off answer against the guess: the median is past any cap.
    assert sizes.estimate("small", "fix", "selection", 35, 58) == UNBOUNDED
    sizes.observe("small", "fix", "selection", 120, 40, guess=60)
    sizes.observe("small", "fix", "selection", 130, 40, guess=60)
    # Most answers ended by themselves: a cut-off one is only the largest of them.
    assert sizes.estimate("small", "fix", "selection", 40, 60) == 125
    # Before its first docstring: the model's edits ran to their cap twice in four.
    assert sizes.estimate("small", "docstring", "selection", 90, 159) == round(
        159 * (130 / 60 + 120 / 60) / 2
    )
    sizes.observe("small", "refactor", "selection", 512, 90, guess=200, cut_off=True)
    assert sizes.estimate("small", "docstring", "selection", 90, 159) == round(159 * 130 / 60)
    sizes.observe("small", "refactor", "selection", 512, 90, guess=200, cut_off=True)
    # Now most of them did.
    assert sizes.estimate("small", "docstring", "selection", 90, 159) == UNBOUNDED
    assert sizes.estimate("small", "inline", "line", 0, 32) == 32, "edits only"


def test_a_capped_estimate_is_the_cap() -> None:
    loaded = config.load([config.Source("test", {"tiers": {"cheap": {"model": "small"}}})])
    settings = loaded.settings
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE)
    request = Request("fix", (0, 0), (4, 16))
    sizes = AnswerSizes()
    sizes.observe("small", "fix", "selection", 512, 20, cut_off=True)
    usage = engine.decide(settings, doc, request, sizes=sizes).estimate_usage["cheap"]
    shape = calls.request_shape(settings, "fix", "selection")
    assert usage.output_tokens == calls.output_cap(shape, settings.tiers["cheap"])
    assert usage.output_tokens == shape.max_output_tokens, "no cap on the tier: the kind's"


def test_a_prompt_is_counted_as_its_models_tokenizer_counts() -> None:
    sizes = AnswerSizes()
    assert sizes.input_tokens("small", 200) == 200, "our count until a provider reports"
    sizes.observe_prompt("small", 100, 150)
    assert sizes.input_tokens("small", 200) == 250, "one report counts as much as our count"
    for _ in range(2):
        sizes.observe_prompt("small", 120, 180)
    assert sizes.input_tokens("small", 200) == 300
    assert sizes.input_tokens("big", 200) == 200, "per model"
    unknown = [Sized("big", 5, counted_input_tokens=0, input_tokens=50), Sized("big", 5, False, 50)]
    sizes.learn([SizedRequest("inline", "line", 0, 32, unknown)])
    assert sizes.input_tokens("big", 200) == 200, "nothing counted or reported: left out"


def test_a_completion_is_sized_in_tokens_per_hole() -> None:
    sizes = AnswerSizes()
    for tokens in (12, 20, 16):
        sizes.observe("small", "inline", "body", tokens, 0)
    assert sizes.estimate("small", "inline", "body", 0, 200) == 18
    assert sizes.estimate("small", "inline", "expression", 0, 16) == 16


def test_only_the_newest_answers_count_and_unknown_rows_are_left_out() -> None:
    sizes = AnswerSizes(window=3)
    sizes.learn(
        [SizedRequest("inline", "line", 0, 32, [Sized("m", 40)])] * 5
        + [SizedRequest("inline", "line", 0, 32, [Sized("m", 8)])] * 3
    )
    sizes.learn([SizedRequest("a-kind-from-the-future", None, 0, 0, [Sized("m", 999)])])
    assert len(sizes) == 3
    assert sizes.estimate("m", "inline", "line", 0, 32) == 8


def test_every_call_of_a_request_is_learned_from() -> None:
    """A cheap answer stopped as a runaway, then premium's: both models' habits are learned,
    and each model's prompt count where its provider reported one."""
    sizes = AnswerSizes()
    calls = [
        Sized("small", 12, counted_input_tokens=100, input_tokens=150),
        Sized("big", 90, counted_input_tokens=100),
    ]
    sizes.learn([SizedRequest("refactor", "selection", 90, 120, calls)])
    assert sizes.estimate("small", "refactor", "selection", 90, 120) == round((12 + 120) / 2)
    assert sizes.estimate("big", "refactor", "selection", 90, 120) == round((90 + 120) / 2)
    assert sizes.input_tokens("small", 200) == 250
    assert sizes.input_tokens("big", 200) == 200, "not reported: our count"


def test_a_decision_prices_each_tier_with_its_own_models_answers() -> None:
    loaded = config.load(
        [
            config.Source(
                "test",
                {
                    "tiers": {
                        "cheap": {"model": "small", "input_usd_per_mtok": "1"},
                        "premium": {"model": "big", "input_usd_per_mtok": "10"},
                    }
                },
            )
        ]
    )
    settings = loaded.settings
    doc = Document.open("file:///w/a.py", "python", 1, SOURCE)
    request = Request("refactor", (0, 0), (4, 16))
    before = engine.decide(settings, doc, request).estimate_usage
    sizes = AnswerSizes()
    for _ in range(3):
        sizes.observe("small", "refactor", "selection", 400, 20)
    after = engine.decide(settings, doc, request, sizes=sizes).estimate_usage
    assert after["premium"] == before["premium"]
    assert after["cheap"].input_tokens == before["cheap"].input_tokens
    assert after["cheap"].output_tokens > 5 * before["cheap"].output_tokens


def test_routing_compares_the_tiers_on_one_answer_size() -> None:
    # The premium model wrote three very short bodies: its shown estimate drops, but the
    # choice between the tiers (their expected costs) is made on the same answer size.
    settings = config.load(
        [
            config.Source(
                "test",
                {
                    "tiers": {
                        "cheap": {
                            "model": "small",
                            "input_usd_per_mtok": "1",
                            "output_usd_per_mtok": "2",
                        },
                        "premium": {
                            "model": "big",
                            "input_usd_per_mtok": "10",
                            "output_usd_per_mtok": "40",
                        },
                    }
                },
            )
        ]
    ).settings
    text = 'def mean(values):\n    """The mean of values."""\n    \n'
    doc = Document.open("file:///w/m.py", "python", 1, text)
    request = Request("inline", (2, 4))
    router = load_built_in(FEATURE_NAMES)
    plain = engine.decide(settings, doc, request, router=router)
    sizes = AnswerSizes()
    for _ in range(3):
        sizes.observe("big", "inline", "body", 2, 0)
    learned = engine.decide(settings, doc, request, router=router, sizes=sizes)
    assert plain.features["hole"] == "body" and plain.expected_usd is not None
    assert learned.estimate_usd["premium"] < plain.estimate_usd["premium"]
    assert learned.estimate_usd["cheap"] == plain.estimate_usd["cheap"]
    assert (learned.tier, learned.expected_usd) == (plain.tier, plain.expected_usd)
    # So with one model's tokenizer: its estimate rises, the choice stays.
    for _ in range(3):
        sizes.observe_prompt("small", 100, 300)
    counted = engine.decide(settings, doc, request, router=router, sizes=sizes)
    tokens = counted.estimate_usage["cheap"].input_tokens
    assert tokens == 3 * learned.estimate_usage["cheap"].input_tokens
    assert counted.estimate_usd["cheap"] > learned.estimate_usd["cheap"]
    assert (counted.tier, counted.expected_usd) == (plain.tier, plain.expected_usd)
