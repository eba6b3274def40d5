"""The table of expected routes in fixtures/routes.toml, checked with the default policy."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mmx_lsp import engine, languages
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document
from mmx_lsp.router import load_built_in
from mmx_lsp.scoring import FEATURE_NAMES, Request

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ROUTES = tomllib.loads((FIXTURES / "routes.toml").read_text())["route"]


def _point(doc: Document, text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(":")]
    row = parts[0] - 1
    column = parts[1] - 1 if len(parts) > 1 else 0
    return doc.clamp(row, column)


@pytest.mark.parametrize(
    "route", ROUTES, ids=[r["at"] + ("-" + r["to"] if "to" in r else "") for r in ROUTES]
)
def test_expected_route(route: dict[str, Any]) -> None:
    file, _, where = route["at"].partition(":")
    path = FIXTURES / file
    doc = Document.open(path.as_uri(), languages.language_of_path(file), 0, path.read_text())
    start = _point(doc, where)
    end = _point(doc, route["to"]) if "to" in route else None
    router = load_built_in(FEATURE_NAMES)  # the server's default router
    decision = engine.decide(Settings(), doc, Request(route["kind"], start, end), router=router)
    assert decision.tier == route["tier"], f"{route['why']}: {decision.reason}"


def test_every_supported_language_has_a_fixture() -> None:
    found = {languages.language_of_path(str(p)) for p in FIXTURES.rglob("*") if p.is_file()}
    assert {"python", "javascript", "typescript", "go", "rust", "java", "c", "cpp"} <= found
    assert any(sum(1 for _ in p.open()) >= 3000 for p in FIXTURES.rglob("*.py"))
