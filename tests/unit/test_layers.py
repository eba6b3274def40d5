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


def loaded(modules: str, which: str) -> list[str]:
    """The modules a fresh interpreter has loaded after `import {modules}`, of those
    `which` (an expression over `m`, a module's name) selects."""
    code = f"import sys, {modules}\nprint(sorted(m for m in sys.modules if {which}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return ast.literal_eval(out.strip())


def test_the_offline_eval_loads_no_lsp_code() -> None:
    lsp = (
        "m.split('.')[0] in {'lsprotocol', 'pygls'}"
        " or m.startswith(('mmx_lsp.features', 'mmx_lsp.server', 'mmx_lsp.pipeline'))"
    )
    assert loaded("mmx_lsp.eval_cli, mmx_lsp.evaluation, mmx_lsp.cascade", lsp) == []


def test_the_metrics_store_loads_without_the_settings_modules() -> None:
    """The store is opened before the server answers `initialize` (the cold start the
    benchmark measures); pydantic and the settings load after."""
    settings = "m.split('.')[0] == 'pydantic' or m == 'mmx_lsp.config'"
    assert loaded("mmx_lsp.metrics", settings) == []
