"""Path globs follow .gitignore, relative to the workspace root: checked against git itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mmx_lsp import globs
from mmx_lsp.config import Rule, Settings, load
from mmx_lsp.routing import rule_matches

PATTERNS = [".env", "secrets/", "deploy/*.yaml", "**/*.pem", "/config/credentials.py"]
PATHS = [
    ".env",
    "app/.env",
    ".env.local",
    "secrets/db.txt",
    "app/secrets/db.txt",
    "docs/secrets",  # a file called secrets: "secrets/" is a directory pattern
    "deploy/prod.yaml",
    "deploy/eu/prod.yaml",
    "app/deploy/prod.yaml",
    "deploy/prod.yml",
    "server.pem",
    "certs/a/server.pem",
    "server.pem.txt",
    "config/credentials.py",
    "app/config/credentials.py",
    "config/credentials.pyc",
    "src/main.py",
]


def git_ignored(root: Path, patterns: list[str], paths: list[str]) -> set[str]:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("\n".join(patterns) + "\n", "utf-8")
    out = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_the_rule_excludes_exactly_what_gitignore_ignores(tmp_path: Path) -> None:
    root = tmp_path / "w"
    expected = git_ignored(root, PATTERNS, PATHS)
    assert {"secrets/db.txt", "deploy/prod.yaml", "config/credentials.py"} <= expected
    found = {p for p in PATHS if globs.matches(str(root / p), PATTERNS, [str(root)])}
    assert found == expected
    settings = load([]).settings.model_copy(
        update={"privacy": Settings().privacy.model_copy(update={"exclude": PATTERNS})}
    )
    excluded = {p for p in PATHS if settings.in_workspace([root]).is_excluded(str(root / p))}
    assert excluded == expected


def test_routing_rules_use_the_same_rule(tmp_path: Path) -> None:
    from tests.unit.test_routing import features

    root = str(tmp_path)
    rule = Rule.model_validate({"when": {"path": "deploy/*.yaml"}, "tier": "cheap"})
    assert rule_matches(rule, features(), f"{root}/deploy/a.yaml", 0.5, [root])
    assert not rule_matches(rule, features(), f"{root}/app/deploy/a.yaml", 0.5, [root])
    anywhere = Rule.model_validate({"when": {"path": "**/tests/**"}, "tier": "cheap"})
    assert rule_matches(anywhere, features(), f"{root}/pkg/tests/test_a.py", 0.5, [root])


def test_a_document_outside_the_workspace_keeps_unanchored_patterns() -> None:
    assert globs.matches("/elsewhere/app/.env", PATTERNS, ["/w"])
    assert globs.matches("C:\\Users\\me\\certs\\a.pem", PATTERNS)
    assert not globs.matches("/elsewhere/config/credentials.py", PATTERNS, ["/w"])
    assert globs.relative("/w/a/b.py", ["/w", "/w/a"]) == "b.py"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "blank"),
        ("# secrets", "comment"),
        ("./config.py", "without ./"),
        ("../shared/x", "without ./"),
        ("C:\\work\\secret.txt", "absolute path"),
        ("/w/app/.env", "absolute path"),
    ],
)
def test_a_pattern_that_can_never_match_is_named(pattern: str, why: str) -> None:
    found = globs.unmatchable(["*.pem", pattern], ["/w"])
    assert [p for p, _ in found] == [pattern]
    assert why in found[0][1]
