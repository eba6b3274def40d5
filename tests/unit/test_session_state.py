"""Session state stays bounded: records, suggestions; spend starts again each day."""

from __future__ import annotations

from decimal import Decimal

from mmx_lsp.reuse import Place, Suggestion, Suggestions
from mmx_lsp.session import SessionLog
from mmx_lsp.spend import Spend


def record(n: int) -> dict[str, object]:
    return {
        "request_id": f"r{n}",
        "time": float(n),
        "kind": "inline",
        "tier": "cheap",
        "model": "m",
        "cached": False,
        "cancelled": False,
        "error": None,
        "latency_ms": float(n),
        "input_tokens": 1,
        "output_tokens": 1,
        "cost_usd": Decimal("0.001"),
        "saved_usd": None,
        "verdict": None,
    }


def test_the_session_log_keeps_the_newest_records_for_verdicts() -> None:
    log = SessionLog(max_records=3)
    for n in range(5):
        log.add(record(n))
    assert len(log) == 3
    assert [r["request_id"] for r in log] == ["r2", "r3", "r4"]
    assert log.get("r0") is None and log.get("r4") is not None
    assert not log.set_verdict("r0", "accepted"), "an evicted request is unknown"
    assert log.set_verdict("r4", "rejected") and log.set_verdict("r4", "accepted")
    assert log.get("r4") == {**record(4), "verdict": "accepted"}


def place(uri: str) -> Place:
    return Place(uri, 0, "x = ", "", (0, 4, 0, 4), True)


def suggestion(text: str) -> Suggestion:
    return Suggestion(0, "x = ", "", text, "cheap", "m", None, "r", shown=True)


def test_suggestions_are_kept_for_a_bounded_number_of_documents() -> None:
    kept = Suggestions(max_documents=2)
    for uri in ("a", "b", "c"):
        kept.remember(place(uri), suggestion("1 + 2"))
    assert len(kept) == 2
    assert kept.typed_ahead(Place("a", 0, "x = 1", "", (0, 5, 0, 5), True)) is None
    found = kept.typed_ahead(Place("c", 0, "x = 1", "", (0, 5, 0, 5), True))
    assert found is not None and found[1] == " + 2"


def test_a_suggestion_typed_over_is_returned_once() -> None:
    kept = Suggestions()
    kept.remember(place("a"), suggestion("1 + 2"))
    over = Place("a", 0, "x = 9", "", (0, 5, 0, 5), True)
    assert kept.typed_over(over) is not None
    assert kept.typed_over(over) is None


def test_spend_starts_again_on_a_new_day() -> None:
    day = ["2026-12-04"]
    spend = Spend(today=lambda: day[0])
    spend.charge(Decimal("0.5"))
    assert spend.today_usd == Decimal("0.5") and spend.budget_left(Decimal(2)) == Decimal("1.5")
    day[0] = "2026-12-05"
    assert spend.today_usd == 0 and spend.session_usd == Decimal("0.5")
    assert spend.budget_left(None) is None
