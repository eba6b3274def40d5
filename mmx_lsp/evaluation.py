"""The evaluation matrix: a suite of tasks run against models the way the server calls them.

A task is one TOML file: code with a cursor or a selection, a request kind, and a check of
the answer (it parses, a test command passes, an expected shape appears). Each model answers
every task through the server's own providers, prompts, clean-up and verification; the
"auto" row shows what routing and the cascade would have passed and cost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmx_lsp import calls, cascade, engine
from mmx_lsp.calls import Snapshot, take_snapshot
from mmx_lsp.config import Settings
from mmx_lsp.documents import Document, split_lines
from mmx_lsp.errors import MmxError, ProviderError
from mmx_lsp.kinds import INLINE_KINDS, Kind, Tier, is_tier
from mmx_lsp.languages import ALIASES, EXTENSIONS, SUPPORTED, parser_for, spec_for
from mmx_lsp.pricing import Price, Usage, price_for
from mmx_lsp.providers import Providers, reply_cost
from mmx_lsp.router_file import RouterSource
from mmx_lsp.scoring import Request
from mmx_lsp.session import percentile
from mmx_lsp.verify import Verdict

log = logging.getLogger("mmx_lsp")

CURSOR, START, END = "<|cursor|>", "<|start|>", "<|end|>"
TASK_GLOB = "*.toml"
# Per-task and per-1,000-task costs are rounded to the picodollar (the metrics database's
# unit); totals stay exact.
PICO = Decimal("1e-12")
# Environment variables a check command does not get: it never needs a provider's key.
_SENSITIVE_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_POSITION = re.compile(r"^(\d+)(?::(\d+))?$")
_REASON_CHARS = 300

# --------------------------------------------------------------------------- task files


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSpec(_Strict):
    """`[check]` of a task file: every check given must pass."""

    parses: bool = False
    contains: list[str] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    matches: str | None = None
    command: list[str] | None = None
    files: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                'must be a list of arguments, e.g. ["{python}", "-m", "unittest"]: '
                "a check command never goes through a shell"
            )
        if isinstance(value, list) and (not value or not str(value[0]).strip()):
            raise ValueError("must name a program to run")
        return value

    @field_validator("files")
    @classmethod
    def _relative(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _relative_name(name)
        return value

    def described(self) -> str:
        parts = []
        if self.parses:
            parts.append("parses")
        if self.contains:
            parts.append(f"has {len(self.contains)} expected string(s)")
        if self.excludes:
            parts.append(f"lacks {len(self.excludes)} unwanted string(s)")
        if self.matches:
            parts.append("matches the expected shape")
        if self.command:
            parts.append(f"`{_shown(self.command)}` passes")
        return ", ".join(parts)


class TaskSpec(_Strict):
    """One task file as written; `load_task` turns it into a `Task`."""

    kind: Kind
    language: str
    description: str = ""
    code: str | None = None  # with a <|cursor|>, or a <|start|>…<|end|> selection
    file: str | None = None  # or code from this file (relative to the task file) …
    at: str | None = None  # … at LINE[:COL] (1-based)
    to: str | None = None  # … to LINE[:COL], for a selection
    filename: str | None = None  # the edited file's name for a check command
    diagnostics: list[str] = Field(default_factory=list)  # what a fix is told
    reference: str | None = None  # a good answer as a model would send it
    check: CheckSpec

    @field_validator("language")
    @classmethod
    def _known(cls, value: str) -> str:
        if spec_for(value) is None:
            raise ValueError(f"no grammar for {value!r}; one of: {', '.join(SUPPORTED)}")
        return value

    @field_validator("filename")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return None if value is None else _relative_name(value)


def _relative_name(name: str) -> str:
    path = PurePosixPath(name)
    if not name.strip() or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValueError(f"{name!r} must be a relative path inside the check's directory")
    return name


@dataclass(frozen=True)
class TaskProblem:
    """What is wrong with a task file: the file, the key and the reason."""

    path: Path
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.path}: {where}{self.message}"


class SuiteError(MmxError):
    """Task files that cannot be used; `problems` names each file, key and reason."""

    def __init__(self, problems: Sequence[TaskProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Task:
    """A task ready to run: the code without markers and the request's character offsets."""

    name: str
    path: Path
    kind: Kind
    language: str
    description: str
    code: str
    start: int
    end: int  # == start for a cursor
    filename: str  # the edited file's name in a check command's directory
    source: Path  # the code's file: the task file, or the file it names
    diagnostics: tuple[str, ...]
    reference: str | None
    check: CheckSpec

    @property
    def selection(self) -> str:
        return self.code[self.start : self.end]

    @property
    def cursor(self) -> bool:
        return self.kind in INLINE_KINDS

    def apply(self, answer: str) -> str:
        """The code with the answer in place (an explanation leaves the code as it is)."""
        if self.kind == "explain":
            return self.code
        return self.code[: self.start] + answer + self.code[self.end :]

    def position(self, offset: int) -> tuple[int, int]:
        """(row, index in the row) of a character offset, as `Document` counts them."""
        row, line_start = 0, 0
        for line in split_lines(self.code):
            if line_start + len(line) > offset or not line.endswith(("\n", "\r")):
                break
            row, line_start = row + 1, line_start + len(line)
        return row, offset - line_start

    def document(self) -> Document:
        where = self.source if self.source != self.path else self.path.parent / self.filename
        return Document.open(where.resolve().as_uri(), self.language, 0, self.code)

    def request(self) -> Request:
        start = self.position(self.start)
        return Request(self.kind, start, None if self.cursor else self.position(self.end))


@dataclass(frozen=True)
class Suite:
    """The tasks of one directory (or one file); `name` is what the results are filed under."""

    name: str
    path: Path
    tasks: tuple[Task, ...]


def _key(loc: Iterable[int | str]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else ("." if out else "") + str(item)
    return out


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, str | int | float | bool) and kind not in {"value_error"}:
        return f"{message} (got {given!r})"
    return message


def _parse_place(text: str, code: str, key: str, path: Path) -> tuple[int, int | None]:
    """A 1-based LINE[:COL] as a 0-based (row, index or None)."""
    found = _POSITION.match(text.strip())
    if found is None:
        raise SuiteError([TaskProblem(path, key, f"must be LINE[:COL], got {text!r}")])
    row, col = int(found.group(1)) - 1, found.group(2)
    lines = split_lines(code)
    if row < 0 or row >= len(lines):
        message = f"line {row + 1} is outside the file ({len(lines)} lines)"
        raise SuiteError([TaskProblem(path, key, message)])
    if col is not None and not 1 <= int(col) <= len(lines[row].rstrip("\r\n")) + 1:
        raise SuiteError([TaskProblem(path, key, f"column {col} is outside line {row + 1}")])
    return row, None if col is None else int(col) - 1


def _offset(code: str, row: int, index: int) -> int:
    return sum(len(line) for line in split_lines(code)[:row]) + index


def _place_in_file(spec: TaskSpec, code: str, path: Path) -> tuple[int, int]:
    if spec.at is None:
        raise SuiteError([TaskProblem(path, "at", "is required with file (LINE[:COL], 1-based)")])
    row, col = _parse_place(spec.at, code, "at", path)
    lines = split_lines(code)
    if spec.kind in INLINE_KINDS:
        if spec.to is not None:
            raise SuiteError([TaskProblem(path, "to", f"{spec.kind} tasks have a cursor only")])
        index = len(lines[row].rstrip("\r\n")) if col is None else col
        start = _offset(code, row, index)
        return start, start
    if spec.to is None:
        raise SuiteError([TaskProblem(path, "to", f"is required for {spec.kind} tasks")])
    end_row, end_col = _parse_place(spec.to, code, "to", path)
    start = _offset(code, row, 0 if col is None else col)
    end_index = len(lines[end_row].rstrip("\r\n")) if end_col is None else end_col
    end = _offset(code, end_row, end_index)
    if end <= start:
        raise SuiteError([TaskProblem(path, "to", "the selection ends before it starts")])
    return start, end


def _place_in_code(spec: TaskSpec, code: str, path: Path) -> tuple[str, int, int]:
    counts = {marker: code.count(marker) for marker in (CURSOR, START, END)}
    if spec.kind in INLINE_KINDS:
        if counts[CURSOR] != 1 or counts[START] or counts[END]:
            message = f"{spec.kind} tasks mark their cursor with one {CURSOR} and no selection"
            raise SuiteError([TaskProblem(path, "code", message)])
        start = code.index(CURSOR)
        return code.replace(CURSOR, ""), start, start
    if counts[CURSOR] or counts[START] != 1 or counts[END] != 1:
        message = f"{spec.kind} tasks mark their selection with one {START} and one {END}"
        raise SuiteError([TaskProblem(path, "code", message)])
    start, end_marker = code.index(START), code.index(END)
    if end_marker < start:
        raise SuiteError([TaskProblem(path, "code", f"{END} comes before {START}")])
    end = end_marker - len(START)
    if end == start:
        raise SuiteError([TaskProblem(path, "code", "the selection is empty")])
    return code.replace(START, "").replace(END, ""), start, end


def _default_filename(name: str, language: str) -> str:
    language = ALIASES.get(language.lower(), language.lower())
    suffix = next((ext for ext, lang in EXTENSIONS.items() if lang == language), ".txt")
    return f"{name.replace('-', '_')}{suffix}"


def load_task(path: Path) -> Task:
    """One task file; raises SuiteError naming the file, the key and the problem."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([TaskProblem(path, "", f"not valid TOML: {exc}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError([TaskProblem(path, "", f"cannot read: {exc}")]) from None
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [TaskProblem(path, _key(e["loc"]), _message(e)) for e in exc.errors()]
        raise SuiteError(problems) from None
    problems = []
    if (spec.code is None) == (spec.file is None):
        problems.append(TaskProblem(path, "code", "give either code or file, not both"))
    if spec.code is not None and (spec.at is not None or spec.to is not None):
        key = "at" if spec.at is not None else "to"
        problems.append(TaskProblem(path, key, f"only with file; in code, mark it with {CURSOR}"))
    if not spec.check.described():
        message = "nothing to check: give parses, contains, excludes, matches or command"
        problems.append(TaskProblem(path, "check", message))
    if spec.check.files and not spec.check.command:
        problems.append(TaskProblem(path, "check.files", "only written for a check command"))
    if spec.kind == "explain" and (spec.check.parses or spec.check.command):
        key = "check.parses" if spec.check.parses else "check.command"
        message = "an explanation is prose: check it with contains, excludes or matches"
        problems.append(TaskProblem(path, key, message))
    if problems:
        raise SuiteError(problems)
    name = path.stem
    if spec.file is not None:
        source = (path.parent / spec.file).resolve()
        try:
            code = source.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError([TaskProblem(path, "file", f"cannot read {source}: {exc}")]) from None
        start, end = _place_in_file(spec, code, path)
        filename = spec.filename or source.name
    else:
        assert spec.code is not None
        source = path
        code, start, end = _place_in_code(spec, spec.code, path)
        filename = spec.filename or _default_filename(name, spec.language)
    if filename in spec.check.files:
        message = f"{filename!r} is the edited file; name the other files differently"
        raise SuiteError([TaskProblem(path, "check.files", message)])
    return Task(
        name=name,
        path=path,
        kind=spec.kind,
        language=spec.language,
        description=spec.description,
        code=code,
        start=start,
        end=end,
        filename=filename,
        source=source,
        diagnostics=tuple(spec.diagnostics),
        reference=spec.reference,
        check=spec.check,
    )


def load_suite(path: Path) -> Suite:
    """Every `*.toml` task in a directory (sorted by name), or one task file.

    Raises SuiteError with the problems of every bad file at once."""
    if path.is_dir():
        files = sorted(path.glob(TASK_GLOB))
        if not files:
            raise SuiteError([TaskProblem(path, "", f"no task files ({TASK_GLOB}) here")])
    elif path.is_file():
        files = [path]
    else:
        raise SuiteError([TaskProblem(path, "", "no such file or directory")])
    tasks, problems = [], []
    for file in files:
        try:
            tasks.append(load_task(file))
        except SuiteError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SuiteError(problems)
    return Suite(path.resolve().name, path, tuple(tasks))


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


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Contender:
    """One model in the matrix: a tier's provider, api and limits, with `model` sent.

    `settings` are the run's settings with the tier's model replaced (and its configured
    prices dropped: the model is priced from the built-in table) when `model` is not the
    tier's own."""

    label: str
    tier: Tier
    model: str
    settings: Settings
    price: Price | None
    as_configured: bool = True  # the tier's own model, at the tier's prices

    @property
    def key(self) -> tuple[str, str]:
        return self.tier, self.model

    @classmethod
    def for_tier(cls, settings: Settings, tier: Tier, label: str | None = None) -> Contender:
        config = settings.tiers[tier]
        return cls(label or tier, tier, config.model, settings, price_for(config))

    @classmethod
    def for_model(cls, settings: Settings, tier: Tier, model: str, label: str) -> Contender:
        config = settings.tiers[tier]
        if model == config.model:
            return cls.for_tier(settings, tier, label)
        replaced = config.model_copy(
            update={
                "model": model,
                "input_usd_per_mtok": None,
                "cached_input_usd_per_mtok": None,
                "output_usd_per_mtok": None,
            }
        )
        changed = settings.model_copy(update={"tiers": {**settings.tiers, tier: replaced}})
        return cls(label, tier, model, changed, price_for(replaced), as_configured=False)


def _contender(settings: Settings, entry: str) -> Contender:
    tiers = list(settings.tiers)
    if is_tier(entry):
        return Contender.for_tier(settings, entry)
    name, sep, model = entry.partition(":")
    tier: Tier = "premium"
    if not sep:
        model = entry
    elif not is_tier(name):
        raise ValueError(f"--models {entry}: no tier {name!r} (tiers: {', '.join(tiers)})")
    elif not model.strip():
        raise ValueError(f"--models {entry}: give the model id after the colon")
    else:
        tier = name
    return Contender.for_model(settings, tier, model.strip(), entry)


def contenders(settings: Settings, entries: Sequence[str] | None = None) -> list[Contender]:
    """The models of `--models`: a tier name, `tier:model`, or a model id (premium's
    provider). Default: every tier. Raises ValueError saying what to fix: first a badly
    written entry, then a tier that cannot be called."""
    names = [e.strip() for e in (entries if entries is not None else list(settings.tiers))]
    if not all(names):
        raise ValueError("--models has an empty entry; give tiers or model ids, e.g. cheap,premium")
    found: list[Contender] = []
    for contender in [_contender(settings, name) for name in names]:
        if all(c.key != contender.key for c in found):
            found.append(contender)
    for contender in found:
        problem = Providers(contender.settings).configured(contender.tier)
        if problem is not None:
            where = f"{contender.label} tier" if entries is None else f"--models {contender.label}"
            raise ValueError(f"{where}: {problem}")
    return found


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """One model's answer to one task, checked and priced (or the auto row's, summed)."""

    task: str
    tier: Tier
    model: str
    model_version: str  # the model the provider said answered ("" when it did not answer)
    answer: str
    passed: bool
    reason: str
    verified: bool  # the server's own check (verify_edit), which drives the cascade
    verify_reason: str
    latency_ms: float
    usage: Usage
    cost_usd: Decimal
    error: str | None = None
    route: str = ""  # auto: the tier routing chose
    escalated: bool = False  # auto: the cheap answer failed verification; premium answered
    fallback: bool = False  # auto: the routed tier failed or is not set up; the other answered
    calls: int = 1
    usage_estimated: bool = False  # the endpoint reported no usage: counted from the text

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "tier": self.tier,
            "model": self.model,
            "model_version": self.model_version,
            "passed": self.passed,
            "reason": self.reason,
            "verified": self.verified,
            "verify_reason": self.verify_reason,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
            "input_tokens": self.usage.input_tokens,
            "cached_input_tokens": self.usage.cached_input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": format(self.cost_usd, "f"),
            "usage_estimated": self.usage_estimated,
            "calls": self.calls,
            "route": self.route,
            "escalated": self.escalated,
            "fallback": self.fallback,
            "answer": self.answer,
        }


class ProgressSink(Protocol):
    """Told about model calls as they are scheduled and as they finish."""

    def planned(self, count: int) -> None: ...

    def finished(self, label: str, task: str) -> None: ...


def snapshot(task: Task, doc: Document) -> Snapshot:
    """The excerpt the server would send for this request."""
    start = task.position(task.start)
    return take_snapshot(doc, start, None if task.cursor else task.position(task.end))


def clean_answer(task: Task, snap: Snapshot, text: str) -> str:
    """The model's text cleaned up as the server does before showing or applying it."""
    return calls.clean_answer(task.kind, snap, text)


async def answer(providers: Providers, contender: Contender, task: Task) -> Outcome:
    """One model call for one task, as Pipeline._attempt makes it, then the task's check."""
    tier_config = contender.settings.tiers[contender.tier]
    snap = snapshot(task, task.document())
    prompt = calls.build_prompt(task.kind, snap, tier_config, task.diagnostics)
    request = calls.model_request(contender.tier, tier_config, task.kind, prompt)
    started = time.perf_counter()
    try:
        reply = await providers.complete(request, deadline_s=calls.deadline_s(task.kind))
    except ProviderError as exc:
        return Outcome(
            task=task.name,
            tier=contender.tier,
            model=contender.model,
            model_version="",
            answer="",
            passed=False,
            reason=str(exc),
            verified=False,
            verify_reason="no answer",
            latency_ms=(time.perf_counter() - started) * 1000,
            usage=Usage(),
            cost_usd=Decimal(0),
            error=str(exc),
        )
    text = clean_answer(task, snap, reply.text)
    verdict = calls.verify_answer(snap, task.kind, text)
    result = await check(task, text)
    return Outcome(
        task=task.name,
        tier=contender.tier,
        model=contender.model,
        model_version=reply.model,
        answer=text,
        passed=result.passed,
        reason=result.reason,
        verified=verdict.ok,
        verify_reason=verdict.reason,
        latency_ms=reply.latency_ms,
        usage=reply.usage,
        cost_usd=reply_cost(reply, contender.price),
        usage_estimated=reply.usage_estimated,
    )


class _Runner:
    """Runs model × task calls at most `jobs` at a time, each (model, task) once."""

    def __init__(self, settings: Settings, jobs: int, progress: ProgressSink | None) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(max(1, jobs))
        self._progress = progress
        self._providers: dict[tuple[str, str], Providers] = {}
        self._calls: dict[tuple[tuple[str, str], str], asyncio.Task[Outcome]] = {}
        self._tiers: dict[str, Contender] = {}
        # The router the server would use: the settings' router file, else the built-in one.
        self.router = RouterSource(
            lambda: settings.routing.router_file, lambda m: log.warning("%s", m)
        ).current()

    def outcome(self, contender: Contender, task: Task) -> asyncio.Task[Outcome]:
        key = (contender.key, task.name)
        call = self._calls.get(key)
        if call is None:
            if self._progress is not None:
                self._progress.planned(1)
            call = asyncio.create_task(self._run(contender, task))
            self._calls[key] = call
        return call

    async def _run(self, contender: Contender, task: Task) -> Outcome:
        providers = self._providers.get(contender.key)
        if providers is None:
            # No circuit breaker: every task is put to every model, even one that is down.
            providers = Providers(contender.settings, breaker=None)
            self._providers[contender.key] = providers
        async with self._slots:
            outcome = await answer(providers, contender, task)
        if self._progress is not None:
            self._progress.finished(contender.label, task.name)
        return outcome

    def adopt(self, contender: Contender) -> None:
        """Use this model's results for its tier in the auto row."""
        self._tiers.setdefault(contender.tier, contender)

    def tier(self, tier: Tier, task: Task) -> asyncio.Task[Outcome]:
        """The tier as configured: the matrix's own result when it has one."""
        contender = self._tiers.get(tier)
        if contender is None:
            contender = self._tiers[tier] = Contender.for_tier(self.settings, tier)
        return self.outcome(contender, task)

    async def auto(self, task: Task) -> Outcome:
        """What the server would have answered: routing, then the server's own cascade
        (`cascade.run`) over the tiers' results (each tier is called once per task)."""
        decision = engine.decide(self.settings, task.document(), task.request(), router=self.router)
        snap = snapshot(task, task.document())
        providers = Providers(self.settings, breaker=None)

        async def attempt(tier: Tier) -> cascade.Reply:
            outcome = await self.tier(tier, task)
            if outcome.error is not None:
                raise ProviderError(outcome.error)
            return cascade.Reply(
                text=outcome.answer,
                model=outcome.model,
                cost_usd=outcome.cost_usd,
                usage=outcome.usage,
                model_version=outcome.model_version,
                latency_ms=outcome.latency_ms,
            )

        def verify(text: str) -> Verdict:
            return calls.verify_answer(snap, task.kind, text)

        flight = await cascade.run(
            cascade.Flight(decision.tier),
            task.kind,
            configured=providers.configured,
            attempt=attempt,
            verify=verify,
            escalation=cascade.ExpectedSaving.of(self.settings, decision, self.router),
        )
        if flight.preview is not None:
            return Outcome(
                task=task.name,
                tier=decision.tier,
                model=decision.model,
                model_version="",
                answer="",
                passed=False,
                reason=flight.preview,
                verified=False,
                verify_reason="no answer",
                latency_ms=0.0,
                usage=Usage(),
                cost_usd=Decimal(0),
                error=flight.preview,
                route=decision.tier,
                calls=0,
            )
        steps = [await self.tier(step.tier, task) for step in flight.steps]
        final = await self.tier(flight.tier, task)
        answer, passed, reason = final.answer, final.passed, final.reason
        if final.error is None and not final.verified and not task.cursor:
            # The server applies no edit that fails its own check.
            answer, passed = "", False
            reason = f"no answer passed the server's check ({final.verify_reason})"
        return Outcome(
            task=task.name,
            tier=final.tier,
            model=final.model,
            model_version=final.model_version,
            answer=answer,
            passed=passed,
            reason=reason,
            verified=final.verified,
            verify_reason=final.verify_reason,
            latency_ms=sum(step.latency_ms for step in steps),
            usage=sum((step.usage for step in steps), Usage()),
            cost_usd=sum((step.cost_usd for step in steps), Decimal(0)),
            error=final.error,
            route=decision.tier,
            escalated=flight.escalated,
            fallback=flight.fallback is not None,
            calls=len(steps),
            usage_estimated=any(step.usage_estimated for step in steps),
        )

    async def aclose(self, others: Sequence[asyncio.Future[Outcome]] = ()) -> None:
        """Cancel what is still running (after an error) and close the HTTP clients."""
        pending = [c for c in [*self._calls.values(), *others] if not c.done()]
        for call in pending:
            call.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for providers in self._providers.values():
            await providers.aclose()


# --------------------------------------------------------------------------- the matrix


def per_task(total: Decimal, tasks: int, scale: int = 1) -> Decimal:
    """`total * scale / tasks`, rounded to the picodollar."""
    if tasks == 0:
        return Decimal(0)
    with localcontext() as context:
        context.prec = 60
        return (total * scale / tasks).quantize(PICO)


@dataclass(frozen=True)
class Row:
    """One line of the matrix: a model (or auto) over every task."""

    label: str
    tier: str
    model: str
    outcomes: tuple[Outcome, ...]
    auto: bool = False
    price_known: bool = True
    as_configured: bool = True  # the tier's own model (else a model run on its provider)

    @property
    def tasks(self) -> int:
        return len(self.outcomes)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.passed)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error is not None)

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.tasks if self.tasks else None

    @property
    def versions(self) -> list[str]:
        return sorted({o.model_version for o in self.outcomes if o.model_version})

    def latency(self, share: float) -> float | None:
        """Of the answered tasks: a failed call's time says little about the model."""
        return percentile([o.latency_ms for o in self.outcomes if o.error is None], share)

    @property
    def usage(self) -> Usage:
        return sum((o.usage for o in self.outcomes), Usage())

    @property
    def cost_usd(self) -> Decimal:
        return sum((o.cost_usd for o in self.outcomes), Decimal(0))

    @property
    def cost_per_task_usd(self) -> Decimal:
        return per_task(self.cost_usd, self.tasks)

    @property
    def cost_per_1000_usd(self) -> Decimal:
        return per_task(self.cost_usd, self.tasks, 1000)

    def summary(self) -> dict[str, Any]:
        """The row's figures, JSON-ready (money as exact decimal strings)."""
        usage = self.usage
        p50, p95 = self.latency(0.5), self.latency(0.95)
        out: dict[str, Any] = {
            "label": self.label,
            "tier": self.tier,
            "model": self.model,
            "auto": self.auto,
            "versions": self.versions,
            "tasks": self.tasks,
            "passed": self.passed,
            "failed": self.tasks - self.passed,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "p50_ms": None if p50 is None else round(p50, 1),
            "p95_ms": None if p95 is None else round(p95, 1),
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": format(self.cost_usd, "f"),
            "cost_per_task_usd": format(self.cost_per_task_usd, "f"),
            "cost_per_1000_tasks_usd": format(self.cost_per_1000_usd, "f"),
            "price_known": self.price_known,
        }
        if self.auto:
            out["routed"] = {
                tier: sum(1 for o in self.outcomes if o.route == tier)
                for tier in ("cheap", "premium")
            }
            out["escalated"] = sum(1 for o in self.outcomes if o.escalated)
            out["fallbacks"] = sum(1 for o in self.outcomes if o.fallback)
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "results": [o.to_json() for o in self.outcomes]}


@dataclass(frozen=True)
class Matrix:
    """A whole run: the tasks, one row per model and the auto row."""

    suite: Suite
    run_id: str
    ts: float
    rows: tuple[Row, ...]

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self.suite.tasks

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "path": str(self.suite.path),
            "run_id": self.run_id,
            "ts": self.ts,
            "tasks": [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "language": t.language,
                    "description": t.description,
                }
                for t in self.tasks
            ],
            "rows": [row.to_json() for row in self.rows],
        }

    def records(self) -> list[dict[str, Any]]:
        """Per-task results of every model row, for `metrics.record_eval_results` (the auto
        row is derived from them and not recorded)."""
        tasks = {t.name: t for t in self.tasks}
        out = []
        for row in self.rows:
            if row.auto:
                continue
            for outcome in row.outcomes:
                task = tasks[outcome.task]
                out.append(
                    {
                        "ts": self.ts,
                        "run_id": self.run_id,
                        "suite": self.suite.name,
                        "task": task.name,
                        "kind": task.kind,
                        "language": task.language,
                        "model": row.model,
                        "model_version": outcome.model_version,
                        "tier": row.tier if row.as_configured else "",
                        "passed": outcome.passed,
                        "latency_ms": outcome.latency_ms,
                        "input_tokens": outcome.usage.input_tokens,
                        "cached_input_tokens": outcome.usage.cached_input_tokens,
                        "output_tokens": outcome.usage.output_tokens,
                        "cost_usd": outcome.cost_usd,
                        "error": outcome.error,
                    }
                )
        return out


def _rows(items: Iterable[tuple[Contender, Sequence[Outcome]]]) -> Iterator[Row]:
    for contender, outcomes in items:
        yield Row(
            label=contender.label,
            tier=contender.tier,
            model=contender.model,
            outcomes=tuple(outcomes),
            price_known=contender.price is not None,
            as_configured=contender.as_configured,
        )


async def evaluate(
    settings: Settings,
    suite: Suite,
    models: Sequence[Contender],
    *,
    jobs: int = 4,
    auto: bool = True,
    progress: ProgressSink | None = None,
) -> Matrix:
    """Run every task against every model (and the auto row); the order of the output is
    the order of `models` and of the suite, whatever order the calls finish in."""
    ts = time.time()
    runner = _Runner(settings, jobs, progress)
    for contender in models:
        if contender.as_configured:
            runner.adopt(contender)
    routed_calls: list[asyncio.Task[Outcome]] = []
    try:
        per_model = [[runner.outcome(c, t) for t in suite.tasks] for c in models]
        if auto:
            # Auto reuses the models' own calls and calls only what is missing.
            routed_calls = [asyncio.create_task(runner.auto(t)) for t in suite.tasks]
        results = [list(await asyncio.gather(*calls)) for calls in per_model]
        rows = list(_rows(zip(models, results, strict=True)))
        if auto:
            routed = await asyncio.gather(*routed_calls)
            prices_known = all(
                price_for(settings.tiers[tier]) is not None for tier in {o.tier for o in routed}
            )
            rows.append(Row("auto", "", "", tuple(routed), auto=True, price_known=prices_known))
    finally:
        await runner.aclose(routed_calls)
    return Matrix(suite, uuid.uuid4().hex[:12], ts, tuple(rows))
