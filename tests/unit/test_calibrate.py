"""`mmx-lsp calibrate`: refitting the router from a real metrics database's verdicts."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from mmx_lsp import calibrate as cal
from mmx_lsp.metrics import MetricsStore
from mmx_lsp.router import load_built_in
from mmx_lsp.router_file import RouterSource
from mmx_lsp.scoring import FEATURE_NAMES


def base():
    return load_built_in(FEATURE_NAMES)


def write_records(path: Path, rows: list[tuple[dict, str, bool, str | None, str]]) -> None:
    """Records as the server writes them: (features, tier, escalated, verdict, file)."""
    store = MetricsStore(path)
    for index, (features, tier, escalated, verdict, file) in enumerate(rows):
        request_id = f"r{index}"
        store.record(
            {
                "request_id": request_id,
                "time": time.time(),
                "kind": "inline",
                "tier": tier,
                "model": f"{tier}-model",
                "escalated": escalated,
                "features": features,
                "file": file,
                "router": "classeval-1",
            }
        )
        if verdict is not None:
            store.verdict(request_id, verdict)
    assert store.close()


def verdicts(n: int, seed: int = 5) -> list[tuple[dict, str, bool, str | None, str]]:
    """Cheap answers accepted far more often in files with short docstrings."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choice([3, 5, 8, 60, 90, 140])
        good = rng.random() < (0.85 if words < 20 else 0.2)
        rows.append(
            (
                {"doc_words": words, "parameters": 1, "context_tokens": 300},
                "cheap",
                False,
                "accepted" if good else "rejected",
                f"file{i % 6}",
            )
        )
    return rows


def test_too_few_verdicts_are_refused_with_what_is_needed(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    write_records(db, verdicts(12))
    with pytest.raises(cal.CalibrationError, match=r"too few verdicts.*at least 40"):
        cal.calibrate(base(), cal.read_examples(db))


def test_verdicts_of_one_kind_only_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    rows = [(f, t, e, "accepted", g) for f, t, e, _v, g in verdicts(80)]
    write_records(db, rows)
    with pytest.raises(cal.CalibrationError, match="0 rejected"):
        cal.calibrate(base(), cal.read_examples(db))


def test_labels_come_from_cheap_verdicts_and_escalations_only(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    features = {"doc_words": 5}
    write_records(
        db,
        [
            (features, "cheap", False, "accepted", "a"),
            (features, "cheap", False, "rejected", "a"),
            (features, "premium", True, None, "b"),  # the verifier caught the cheap answer
            (features, "premium", False, "accepted", "b"),  # premium's verdict: not cheap's
            (features, "cheap", False, None, "c"),  # no verdict yet
        ],
    )
    examples = cal.read_examples(db)
    assert sorted((e.good, e.group) for e in examples) == [(0, "a"), (0, "b"), (1, "a")]


def test_calibration_learns_a_real_effect_and_says_so_on_held_out_files(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    write_records(db, verdicts(240))
    router, heldout = cal.calibrate(base(), cal.read_examples(db))
    assert router.version.startswith("calibrated-")
    assert router.fitted_on["base"] == base().version and router.fitted_on["verdicts"] == 240
    assert heldout.records == 240
    assert heldout.auroc_after > 0.75 and heldout.log_loss_after < heldout.log_loss_before
    short = router.p_cheap_ok({"doc_words": 5, "parameters": 1, "context_tokens": 300})
    long = router.p_cheap_ok({"doc_words": 120, "parameters": 1, "context_tokens": 300})
    assert short > long + 0.2


def test_the_written_router_is_picked_up_by_a_running_source(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    write_records(db, verdicts(120))
    target = tmp_path / "data" / "router.json"
    now = [0.0]
    warnings: list[str] = []
    source = RouterSource(lambda: str(target), warnings.append, clock=lambda: now[0])
    assert source.current().version == base().version  # no file yet: the built-in router
    router, _ = cal.calibrate(base(), cal.read_examples(db))
    versioned = cal.write(router, target)
    assert versioned.exists() and json.loads(versioned.read_text())["version"] == router.version
    assert source.current().version == base().version  # checked at most every 2 s
    now[0] = 5.0
    assert source.current().version == router.version
    target.write_text("{ not json")
    now[0] = 10.0
    assert source.current().version == base().version
    now[0] = 15.0
    source.current()
    assert len(warnings) == 1 and "router.json" in warnings[0]


def test_a_database_that_is_not_there_is_a_clear_refusal(tmp_path: Path) -> None:
    with pytest.raises(cal.CalibrationError, match="no metrics database"):
        cal.read_examples(tmp_path / "absent.sqlite3")


def test_an_empty_history_is_refused_and_leaves_no_router_file(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    write_records(db, [])
    target = tmp_path / "router.json"
    with pytest.raises(cal.CalibrationError, match=r"0 completions"):
        cal.calibrate(base(), cal.read_examples(db))
    assert not target.exists()
