"""Task files: reading a suite of TOML tasks into code, a place, a request kind and checks."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmx_lsp.documents import Document, split_lines
from mmx_lsp.errors import MmxError
from mmx_lsp.kinds import INLINE_KINDS, Kind
from mmx_lsp.languages import ALIASES, EXTENSIONS, SUPPORTED, spec_for
from mmx_lsp.scoring import Request

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
        from mmx_lsp.evaluation.checks import _shown  # checks run tasks: imported on use

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
