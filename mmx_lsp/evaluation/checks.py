"""Checks: whether an answer passes a task (parses, contains, matches, a command's exit status)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmx_lsp.evaluation.tasks import _REASON_CHARS, _SENSITIVE_ENV, CheckSpec, Task
from mmx_lsp.languages import parser_for

# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    reason: str


def syntax_problem(language: str, text: str) -> str | None:
    """None when `text` parses without ERROR or MISSING nodes, else where the first one is."""
    parser = parser_for(language)
    if parser is None:
        return None
    root = parser.parse(text.encode("utf-8")).root_node
    if not root.has_error:
        return None
    stack, innermost = [root], root
    while stack:
        node = stack.pop()
        if node.is_missing:
            return f"missing '{node.type}' at line {node.start_point.row + 1}"
        if node.is_error:
            return f"syntax error at line {node.start_point.row + 1}"
        inner = [child for child in node.children if child.has_error or child.is_missing]
        if not inner:
            innermost = node
        stack.extend(reversed(inner))
    # Error recovery can leave no ERROR node, only a subtree that has an error.
    return f"syntax error in the {innermost.type} at line {innermost.start_point.row + 1}"


def _shown(argv: Sequence[str]) -> str:
    """A command for a message: long or multi-line arguments cut to their start."""
    parts = []
    for arg in argv:
        first = arg.strip().split("\n", 1)[0]
        parts.append(first[:24] + "…" if len(first) > 24 or first != arg.strip() else arg)
    return " ".join(parts)


def _tail(output: bytes) -> str:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    text = " | ".join(lines[-3:])
    return text if len(text) <= _REASON_CHARS else "..." + text[-_REASON_CHARS:]


def _command_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _SENSITIVE_ENV.search(k)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _kill(process: asyncio.subprocess.Process) -> None:
    """End the command and anything it started (it leads its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_command(spec: CheckSpec, filename: str, content: str) -> CheckResult:
    """Run the check command in a fresh directory holding the edited file (and `files`).

    The arguments `{python}` (this Python) and `{file}` (the edited file's name) are
    replaced; the program is looked up on PATH; exit status 0 passes."""
    assert spec.command is not None
    argv = [
        arg.replace("{python}", sys.executable).replace("{file}", filename) for arg in spec.command
    ]
    shown = _shown(spec.command)
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if program is None:
        return CheckResult(False, f"`{shown}`: {argv[0]} is not installed (not found on PATH)")
    with tempfile.TemporaryDirectory(prefix="mmx-eval-") as tmp:
        root = Path(tmp)
        for name, text in {**spec.files, filename: content}.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
        try:
            process = await asyncio.create_subprocess_exec(
                program,
                *argv[1:],
                cwd=root,
                env=_command_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return CheckResult(False, f"`{shown}` could not start: {exc.strerror or exc}")
        try:
            async with asyncio.timeout(spec.timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            return CheckResult(False, f"`{shown}` did not finish within {spec.timeout_s:g} s")
        finally:
            if process.returncode is None:
                _kill(process)
                await process.wait()
    status = process.returncode or 0
    if status != 0:
        detail = _tail(output)
        ended = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        return CheckResult(False, f"`{shown}` {ended}" + (f": {detail}" if detail else ""))
    return CheckResult(True, f"`{shown}` passed")


async def check(task: Task, answer: str) -> CheckResult:
    """The task's checks, cheapest first, on the answer and on the code with it in place."""
    spec = task.check
    if not answer.strip():
        return CheckResult(False, "no answer")
    result = task.apply(answer)
    if spec.parses:
        problem = syntax_problem(task.language, result)
        if problem is not None:
            return CheckResult(False, f"does not parse: {problem}")
    for needle in spec.contains:
        if needle not in answer:
            return CheckResult(False, f"the answer lacks {needle!r}")
    for needle in spec.excludes:
        if needle in answer:
            return CheckResult(False, f"the answer has {needle!r}")
    if spec.matches is not None and re.search(spec.matches, answer) is None:
        return CheckResult(False, f"the answer does not match {spec.matches!r}")
    if spec.command:
        outcome = await run_command(spec, task.filename, result)
        if not outcome.passed:
            return outcome
    return CheckResult(True, spec.described())
