"""`mmx-lsp eval`: run a task suite against models and print the matrix, for people and tools."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmx_lsp import evaluation, metrics
from mmx_lsp.cli import workspace_settings
from mmx_lsp.errors import UsageError
from mmx_lsp.pricing import format_usd

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from mmx_lsp.config import Settings

PROG = "mmx-lsp eval"
FORMATS = ("table", "json", "csv", "markdown")
CSV_COLUMNS = (
    "label",
    "tier",
    "model",
    "versions",
    "tasks",
    "passed",
    "failed",
    "errors",
    "pass_rate",
    "p50_ms",
    "p95_ms",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_per_task_usd",
    "cost_per_1000_tasks_usd",
    "price_known",
    "escalated",
)
REASON_CHARS = 110
MARKS = {"pass": "✓", "fail": "✗", "error": "error"}

EPILOG = """\
--models takes a comma-separated list; each entry is one of
  cheap, premium       a tier as configured (provider, model, api, prices)
  TIER:MODEL           MODEL sent through TIER's provider and api, priced from the
                       built-in table (e.g. cheap:qwen2.5-coder-7b)
  MODEL                the same through the premium tier's provider (e.g. gpt-4.1-mini)
Default: every tier. The auto row is what routing would have done: the tier it picks,
escalated once to premium when the answer fails the server's own check.

A task file (TASKS/*.toml) gives kind, language, code with a <|cursor|> or a
<|start|>…<|end|> selection (or file with at/to), and [check]: parses, contains,
excludes, matches, command (an argument list; {python} and {file} are replaced).

Each model's per-task results are recorded in the metrics database (table evals) for
regression watch; --no-record skips that. Exit status: 0 when the run completed (whatever
passed), 2 for a malformed task file or a bad argument."""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run a task suite against each model through the server's own providers and\n"
            "prompts: pass rate, p50/p95 latency, tokens and cost per model, and what\n"
            "automatic routing would have passed and cost."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tasks", type=Path, metavar="TASKS", help="a directory of *.toml tasks")
    parser.add_argument("--models", metavar="A,B,…", help="models to compare (see below)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it here")
    parser.add_argument("--jobs", type=int, default=4, help="model calls at a time (4)")
    parser.add_argument("--no-auto", action="store_true", help="leave out the auto row")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    shown.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--db", type=Path, help="metrics database (default: from the settings)")
    parser.add_argument("--no-record", action="store_true", help="do not record the results")
    parser.add_argument(
        "--workspace", type=Path, default=Path.cwd(), help="workspace root for mmx.toml"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`mmx-lsp eval …`; returns the exit status."""
    try:
        return _eval(parser().parse_args(argv))
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mmx-lsp eval … | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _eval(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    try:
        suite = evaluation.load_suite(args.tasks)
    except evaluation.SuiteError as exc:
        raise UsageError("malformed tasks:\n  " + "\n  ".join(map(str, exc.problems))) from None
    settings = workspace_settings(args.workspace).settings
    entries = None if args.models is None else args.models.split(",")
    try:
        models = evaluation.contenders(settings, entries)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for model in models:
        if model.price is None:
            print(
                f"{PROG}: no price known for {model.model}; its cost counts as 0 unless the "
                "provider reports one",
                file=sys.stderr,
            )
    show = sys.stderr.isatty() if args.progress is None else args.progress
    matrix = asyncio.run(_run(settings, suite, models, args, show))
    terminal = args.output is None and sys.stdout.isatty()
    text = render(matrix, args.format, shutil.get_terminal_size().columns if terminal else None)
    if args.output is not None:
        args.output.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    if not args.no_record:
        _record(matrix, args.db.expanduser() if args.db else metrics.path_from_settings(settings))
    return 0


async def _run(
    settings: Settings,
    suite: evaluation.Suite,
    models: Sequence[evaluation.Contender],
    args: argparse.Namespace,
    show: bool,
) -> evaluation.Matrix:
    options: dict[str, Any] = {"jobs": args.jobs, "auto": not args.no_auto}
    if not show:
        return await evaluation.evaluate(settings, suite, models, **options)
    from rich.console import Console

    bar = Bar(Console(stderr=True, force_terminal=True if args.progress else None))
    with bar.progress:
        return await evaluation.evaluate(settings, suite, models, progress=bar, **options)


def _record(matrix: evaluation.Matrix, path: Path) -> None:
    records = matrix.records()
    try:
        warnings = metrics.record_eval_results(path, records)
    except (OSError, sqlite3.Error, metrics.MetricsError) as exc:
        print(f"{PROG}: results not recorded in {path}: {exc}", file=sys.stderr)
        return
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(f"{PROG}: {len(records)} results recorded in {path}", file=sys.stderr)


class Bar:
    """The progress bar on stderr: one step per model call, the total growing when the auto
    row needs a call the matrix did not make."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID = self.progress.add_task("mmx eval", total=0)
        self._total = 0

    def planned(self, count: int) -> None:
        self._total += count
        self.progress.update(self._task, total=self._total)

    def finished(self, label: str, task: str) -> None:
        self.progress.update(self._task, advance=1, description=f"{label} · {task}")


# --------------------------------------------------------------------------- output


def render(matrix: evaluation.Matrix, form: str, width: int | None = None) -> str:
    if form == "json":
        return json.dumps(matrix.to_json(), indent=2, ensure_ascii=False) + "\n"
    if form == "csv":
        return to_csv(matrix)
    if form == "markdown":
        return to_markdown(matrix)
    return to_table(matrix, width)


def to_csv(matrix: evaluation.Matrix) -> str:
    """One row per model (and auto); money as exact decimal strings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in matrix.rows:
        summary = row.summary()
        summary["versions"] = ";".join(summary["versions"])
        summary.setdefault("escalated", "")
        writer.writerow(["" if summary[c] is None else summary[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def _mark(outcome: evaluation.Outcome) -> str:
    if outcome.error is not None:
        return MARKS["error"]
    return MARKS["pass"] if outcome.passed else MARKS["fail"]


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _usd(row: evaluation.Row, amount: Any) -> str:
    return format_usd(amount) if row.price_known or amount else "?"


def _model(row: evaluation.Row) -> str:
    if row.auto:
        summary = row.summary()
        routed = summary["routed"]
        return (
            f"routed {routed['cheap']} cheap / {routed['premium']} premium, "
            f"{summary['escalated']} escalated"
        )
    others = [v for v in row.versions if v != row.model]
    return f"{row.model} ({', '.join(others)})" if others else row.model


def _cells(row: evaluation.Row) -> list[str]:
    usage = row.usage
    rate = row.pass_rate
    return [
        row.label,
        _model(row),
        f"{row.passed}/{row.tasks}" + ("" if rate is None else f" ({rate:.0%})"),
        _ms(row.latency(0.5)),
        _ms(row.latency(0.95)),
        f"{usage.input_tokens:,} / {usage.output_tokens:,}",
        _usd(row, row.cost_usd),
        _usd(row, row.cost_per_task_usd),
        _usd(row, row.cost_per_1000_usd),
    ]


HEADERS = (
    "model",
    "model id",
    "passed",
    "p50",
    "p95",
    "tokens in / out",
    "cost",
    "per task",
    "per 1,000 tasks",
)


def _title(matrix: evaluation.Matrix) -> str:
    return f"mmx eval: {matrix.suite.name} ({len(matrix.tasks)} tasks, run {matrix.run_id})"


def _failures(matrix: evaluation.Matrix) -> list[str]:
    lines = []
    for row in matrix.rows:
        for outcome in row.outcomes:
            if not outcome.passed:
                reason = " ".join(outcome.reason.split())
                if len(reason) > REASON_CHARS:
                    reason = reason[: REASON_CHARS - 1] + "…"
                lines.append(f"{row.label} · {outcome.task}: {reason}")
    return lines


def to_table(matrix: evaluation.Matrix, width: int | None = None) -> str:
    """The matrix as rich tables: the figures per model, then pass/fail per task. Without a
    width (output to a file or a pipe) the tables take the width they need."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 1000, highlight=False, no_color=True)
    summary = Table(title=_title(matrix), title_justify="left")
    for number, header in enumerate(HEADERS):
        summary.add_column(header, justify="left" if number < 2 else "right")
    for row in matrix.rows:
        if row.auto:
            summary.add_section()
        summary.add_row(*_cells(row), style="bold" if row.auto else None)
    console.print(summary)
    grid = Table(title="per task", title_justify="left")
    for header in ("task", "kind", "language"):
        grid.add_column(header)
    for row in matrix.rows:
        grid.add_column(row.label, justify="center")
    for number, task in enumerate(matrix.tasks):
        grid.add_row(
            task.name, task.kind, task.language, *(_mark(r.outcomes[number]) for r in matrix.rows)
        )
    console.print(grid)
    failures = _failures(matrix)
    if failures:
        console.print("Why tasks failed:")
        for line in failures:
            console.print(f"  {line}", overflow="fold")
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(matrix: evaluation.Matrix) -> str:
    lines = [f"## {_title(matrix)}", ""]
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("| --- | --- |" + " ---: |" * (len(HEADERS) - 2))
    for row in matrix.rows:
        cells = [_md(cell) for cell in _cells(row)]
        if row.auto:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    labels = " | ".join(_md(row.label) for row in matrix.rows)
    lines += ["", f"| task | kind | language | {labels} |"]
    lines.append("| --- | --- | --- |" + " :---: |" * len(matrix.rows))
    for number, task in enumerate(matrix.tasks):
        marks = [_mark(row.outcomes[number]) for row in matrix.rows]
        lines.append(f"| {task.name} | {task.kind} | {task.language} | " + " | ".join(marks) + " |")
    failures = _failures(matrix)
    if failures:
        lines += ["", "Why tasks failed:", ""]
        lines += [f"- {_md(line)}" for line in failures]
    return "\n".join(lines) + "\n"
