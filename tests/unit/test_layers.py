"""The package's layering: handlers on top, the request path below them, eval offline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mmx_lsp"
# Modules that are the LSP layer itself: they may import the handlers.
LSP_LAYER = {"server.py"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_nothing_below_the_handlers_imports_them() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "features" not in path.parts
        and path.name not in LSP_LAYER
        and any(name.startswith("mmx_lsp.features") for name in imported(path))
    ]
    assert offenders == []


def test_the_offline_eval_loads_no_lsp_code() -> None:
    code = (
        "import sys, mmx_lsp.eval_cli, mmx_lsp.evaluation, mmx_lsp.cascade\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'lsprotocol', 'pygls'}"
        " or m.startswith(('mmx_lsp.features', 'mmx_lsp.server', 'mmx_lsp.pipeline'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_metrics_store_loads_without_the_settings_modules() -> None:
    """The store is opened before the server answers `initialize` (the cold start the
    benchmark measures); pydantic and the settings load after."""
    code = (
        "import sys, mmx_lsp.metrics\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m == 'mmx_lsp.config'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
