"""Path globs: the one rule for `privacy.exclude` and routing rules' `when.path`.

Patterns follow `.gitignore` (through the `pathspec` library), matched against a document's
path relative to the workspace folder that holds it:

- A pattern without a slash, or with only a trailing one, matches a name at any depth:
  `.env` any file called .env, `*.pem` any .pem file, `secrets/` any directory called
  secrets and everything in it.
- A pattern with a slash at the start or in the middle is anchored at the workspace root:
  `/config/credentials.py` and `deploy/*.yaml` match only there (`*` never crosses a `/`).
- `**` matches any number of directories: `**/*.pem`, `logs/**`, `a/**/b`.
- `!pattern` takes back what an earlier pattern matched; the last matching pattern wins.

A document outside every workspace folder is matched by its path from the filesystem root,
so unanchored patterns still apply to it.

A pattern that can never match (blank, a `#` comment, `./` or `../` in it, an absolute path
on this machine, a pattern `pathspec` cannot read) is reported by `unmatchable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import pathspec

_DRIVE = re.compile(r"^[A-Za-z]:/")


@lru_cache(maxsize=64)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    usable = [p for p in patterns if _problem(p) is None]
    return pathspec.GitIgnoreSpec.from_lines(usable)


def relative(path: str, roots: Iterable[str] = ()) -> str:
    """`path` relative to the innermost root that holds it, else to the filesystem root."""
    path = path.replace("\\", "/")
    best = ""
    for root in roots:
        root = root.replace("\\", "/").rstrip("/")
        if root and path.startswith(root + "/") and len(root) > len(best):
            best = root
    if best:
        return path[len(best) + 1 :]
    path = _DRIVE.sub("", path)
    return path.lstrip("/")


def matches(path: str, patterns: Sequence[str], roots: Iterable[str] = ()) -> bool:
    """Whether `path` (a file) matches `patterns`, by the rule above."""
    if not patterns:
        return False
    return _spec(tuple(patterns)).match_file(relative(path, roots))


def _problem(pattern: str) -> str | None:
    stripped = pattern.strip()
    if not stripped:
        return "it is blank"
    if stripped.startswith("#"):
        return "it starts with '#', which makes it a comment"
    body = stripped.removeprefix("!").replace("\\", "/")
    parts = body.split("/")
    if "." in parts or ".." in parts:
        return "paths are matched relative to the workspace root, without ./ or ../"
    if _DRIVE.match(body):
        return "it is an absolute path; patterns are relative to the workspace root"
    try:
        pathspec.GitIgnoreSpec.from_lines([stripped])
    except Exception as exc:  # pathspec's error for a pattern it cannot read
        return f"it is not a valid pattern ({exc})"
    return None


def unmatchable(patterns: Iterable[str], roots: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(pattern, why) for each pattern that can never match a document."""
    found = []
    roots = [r.replace("\\", "/").rstrip("/") for r in roots]
    for pattern in patterns:
        problem = _problem(pattern)
        anchored = pattern.strip().replace("\\", "/")
        if problem is None and any(r and anchored.startswith(r + "/") for r in roots):
            problem = "it is an absolute path; patterns are relative to the workspace root"
        if problem is not None:
            found.append((pattern, problem))
    return found
