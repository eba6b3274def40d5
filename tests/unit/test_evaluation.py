"""The eval library without a model: task files, checkers, the matrix's arithmetic, output."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from mmx_lsp import eval_cli, evaluation, metrics
from mmx_lsp.config import Settings
from mmx_lsp.eval_cli import CSV_COLUMNS, to_csv, to_markdown, to_table
from mmx_lsp.evaluation import (
    CheckSpec,
    Outcome,
    Row,
    SuiteError,
    Task,
    check,
    load_suite,
    load_task,
    percentile,
    run_command,
)
from mmx_lsp.pricing import Usage
from mmx_lsp.verify import verify_edit

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "fixtures" / "eval"
COMMENT = {"python": "#"}

GOOD = """\
kind = "inline"
language = "python"
code = '''
def add(a, b):
    return <|cursor|>
'''

[check]
parses = true
contains = ["a + b"]
"""


def write(tmp: Path, text: str, name: str = "task.toml") -> Path:
    path = tmp / name
    path.write_text(text, "utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    return [str(p) for p in caught.value.problems]


# --------------------------------------------------------------------------- the suite


def test_the_suite_covers_languages_and_kinds() -> None:
    suite = load_suite(SUITE)
    assert suite.name == "eval"
    assert 12 <= len(suite.tasks) <= 16
    assert [t.name for t in suite.tasks] == sorted(t.name for t in suite.tasks)
    assert {t.language for t in suite.tasks} >= {"python", "javascript", "typescript", "go", "rust"}
    assert {t.kind for t in suite.tasks} >= {"inline", "refactor", "fix", "docstring", "explain"}
    assert all(t.reference for t in suite.tasks)


@pytest.mark.parametrize("task", load_suite(SUITE).tasks, ids=lambda t: t.name)
async def test_each_task_passes_its_reference_and_fails_the_code_as_it_is(task: Task) -> None:
    """The reference answer, cleaned up as the server would, passes the server's own check
    and the task's; leaving the code as it is (or a vague explanation) does not pass."""
    snap = evaluation.snapshot(task, task.document())
    assert task.reference is not None
    answer = evaluation.clean_answer(task, snap, task.reference)
    verdict = verify_edit(snap.language, snap.text, snap.start, snap.end, answer, task.kind)
    assert verdict.ok, verdict.reason
    good = await check(task, answer)
    assert good.passed, good.reason
    if task.kind == "explain":
        vague = "It is a function that does some work and returns a value."
    elif task.cursor:
        vague = COMMENT.get(task.language, "//") + " TODO"
    else:
        vague = task.selection
    bad = await check(task, vague)
    assert not bad.passed


def test_a_file_task_takes_its_selection_from_the_file() -> None:
    task = load_task(SUITE / "go_wait_explain.toml")
    assert task.source == (REPO / "fixtures" / "go" / "ratelimit.go").resolve()
    assert task.selection.startswith("// Wait blocks until a token is available")
    assert task.selection.endswith("\t}\n}")
    assert task.filename == "ratelimit.go"
    assert task.request().start == (51, 0) and task.request().end == (77, 1)


def test_markers_become_offsets_rows_and_a_document(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, GOOD, "add-numbers.toml"))
    assert task.name == "add-numbers" and task.filename == "add_numbers.py"
    assert task.code == "def add(a, b):\n    return \n"
    assert task.start == task.end == len("def add(a, b):\n    return ")
    assert task.request().start == (1, 11) and task.request().end is None
    assert task.apply("a + b") == "def add(a, b):\n    return a + b\n"
    doc = task.document()
    assert doc.language == "python" and doc.uri.endswith("/add_numbers.py")
    assert doc.line_text(1) == "    return "


def test_a_selection_is_replaced_and_an_explanation_leaves_the_code(tmp_path: Path) -> None:
    text = GOOD.replace('"inline"', '"refactor"').replace(
        "    return <|cursor|>", "<|start|>    return a+b<|end|>"
    )
    task = load_task(write(tmp_path, text))
    assert task.selection == "    return a+b" and task.request().end == (1, 14)
    assert task.apply("    return a + b") == "def add(a, b):\n    return a + b\n"
    explain = load_task(
        write(tmp_path, text.replace('"refactor"', '"explain"').replace("parses = true\n", ""))
    )
    assert explain.apply("It adds.") == explain.code


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    "change, key, message",
    [
        (lambda t: t.replace('kind = "inline"\n', ""), "kind", "is required"),
        (lambda t: t.replace('"inline"', '"rewrite"'), "kind", "Input should be"),
        (lambda t: t.replace('"python"', '"cobol"'), "language", "no grammar for 'cobol'"),
        (lambda t: t.replace("contains", "contain"), "check.contain", "unknown key"),
        (lambda t: t.replace("<|cursor|>", ""), "code", "one <|cursor|>"),
        (lambda t: t.replace("<|cursor|>", "<|cursor|><|cursor|>"), "code", "one <|cursor|>"),
        (
            lambda t: t.replace('"inline"', '"fix"').replace("<|cursor|>", "<|end|>x<|start|>"),
            "code",
            "<|end|> comes before <|start|>",
        ),
        (
            lambda t: t.replace('"inline"', '"fix"').replace("<|cursor|>", "<|start|><|end|>"),
            "code",
            "the selection is empty",
        ),
        (lambda t: t.replace("[check]", 'file = "x.py"\n\n[check]'), "code", "either code or file"),
        (lambda t: t.replace("[check]", 'at = "2"\n\n[check]'), "at", "only with file"),
        (lambda t: t + 'matches = "(unclosed"\n', "check.matches", "not a regular expression"),
        (
            lambda t: t + 'command = "python -m pytest"\n',
            "check.command",
            "never goes through a shell",
        ),
        (lambda t: t + "command = []\n", "check.command", "must name a program"),
        (lambda t: t + "timeout_s = 0\n", "check.timeout_s", "greater than 0"),
        (
            lambda t: t.replace("parses = true\n", "").replace('contains = ["a + b"]\n', ""),
            "check",
            "nothing to check",
        ),
        (
            lambda t: t + 'command = ["{python}", "t.py"]\n[check.files]\n"../t.py" = "x"\n',
            "check.files",
            "relative path",
        ),
        (lambda t: t + '[check.files]\n"t.py" = "x"\n', "check.files", "only written for a"),
        (lambda t: t.replace('"inline"', '"explain"'), "check.parses", "an explanation is prose"),
        (lambda t: t.replace("[check]", "[check"), "", "not valid TOML"),
        (lambda t: t.replace('language = "python"', "language = 3"), "language", "string"),
    ],
    ids=[
        "missing-kind",
        "unknown-kind",
        "unknown-language",
        "misspelt-check",
        "no-cursor",
        "two-cursors",
        "selection-backwards",
        "empty-selection",
        "code-and-file",
        "at-without-file",
        "bad-regex",
        "command-as-string",
        "empty-command",
        "zero-timeout",
        "nothing-to-check",
        "file-outside",
        "files-without-command",
        "explain-parses",
        "bad-toml",
        "language-not-text",
    ],
)
def test_a_malformed_task_file_names_the_file_and_the_key(
    tmp_path: Path, change: object, key: str, message: str
) -> None:
    path = write(tmp_path, change(GOOD))  # type: ignore[operator]
    problems = problems_of(path)
    prefix = f"{path}: {key}: " if key else f"{path}: "
    assert any(p.startswith(prefix) and message in p for p in problems), problems


@pytest.mark.parametrize(
    "place, key, message",
    [
        ('at = "21"', "to", "is required for explain tasks"),
        ('at = "999"\nto = "1000"', "at", "line 999 is outside the file"),
        ('at = "21:200"\nto = "30"', "at", "column 200 is outside line 21"),
        ('at = "30"\nto = "21"', "to", "ends before it starts"),
        ('at = "x"\nto = "30"', "at", "must be LINE[:COL]"),
        ("", "at", "is required with file"),
    ],
    ids=["no-to", "past-the-end", "bad-column", "backwards", "not-a-line", "no-at"],
)
def test_a_file_task_with_a_bad_place_says_what_to_fix(
    tmp_path: Path, place: str, key: str, message: str
) -> None:
    ledger = REPO / "fixtures" / "python" / "ledger.py"
    path = write(
        tmp_path,
        f'kind = "explain"\nlanguage = "python"\nfile = "{ledger}"\n{place}\n'
        '\n[check]\ncontains = ["ledger"]\n',
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: {key}: ") and message in problem, problem


def test_a_missing_code_file_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'kind = "explain"\nlanguage = "go"\nfile = "nope.go"\nat = "1"\nto = "2"\n'
        '[check]\ncontains = ["x"]\n',
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: file: cannot read {tmp_path / 'nope.go'}")


def test_every_bad_file_in_a_suite_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a_good.toml")
    first = write(tmp_path, GOOD.replace('"inline"', '"rewrite"'), "b_bad.toml")
    second = write(tmp_path, GOOD.replace("<|cursor|>", ""), "c_bad.toml")
    problems = problems_of(tmp_path)
    assert [p.split(": ")[0] for p in problems] == [str(first), str(second)]


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_a_suite_without_task_files_says_so(tmp_path: Path, where: str) -> None:
    path = tmp_path if where == "empty" else tmp_path / "nope"
    (problem,) = problems_of(path)
    message = "no task files (*.toml) here" if where == "empty" else "no such file or directory"
    assert problem == f"{path}: {message}"


# --------------------------------------------------------------------------- checkers


def task_with(tmp_path: Path, check_toml: str, code: str | None = None) -> Task:
    text = GOOD.split("[check]")[0] + "[check]\n" + check_toml
    if code is not None:
        text = text.replace("def add(a, b):\n    return <|cursor|>", code)
    return load_task(write(tmp_path, text, "adder.toml"))


async def test_parses_fails_with_the_line_of_the_error(tmp_path: Path) -> None:
    task = task_with(tmp_path, "parses = true\n")
    assert await check(task, "a + b") == evaluation.CheckResult(True, "parses")
    result = await check(task, "(a + b")
    assert not result.passed and result.reason.startswith("does not parse: ")
    assert "line 2" in result.reason
    go = "package p\nfunc f() {\n\treturn\n"
    assert evaluation.syntax_problem("go", go) == "missing '}' at line 4"
    assert evaluation.syntax_problem("rust", "fn main() {}\n") is None


async def test_contains_excludes_and_matches_look_at_the_answer(tmp_path: Path) -> None:
    task = task_with(
        tmp_path,
        'contains = ["a", "b"]\nexcludes = ["sum("]\nmatches = \'^a\\s*\\+\\s*b$\'\n',
    )
    assert (await check(task, "a + b")).passed
    assert await check(task, "a - 1") == evaluation.CheckResult(False, "the answer lacks 'b'")
    assert await check(task, "sum((a, b))") == evaluation.CheckResult(
        False, "the answer has 'sum('"
    )
    result = await check(task, "b + a")
    assert not result.passed and result.reason.startswith("the answer does not match")
    assert await check(task, "   ") == evaluation.CheckResult(False, "no answer")


async def test_a_command_passes_on_exit_status_zero_in_a_directory_of_its_own(
    tmp_path: Path,
) -> None:
    task = task_with(
        tmp_path,
        'command = ["{python}", "check.py", "{file}"]\n'
        '[check.files]\n"check.py" = """\n'
        "import os, sys\n"
        "from adder import add\n"
        "assert add(2, 3) == 5, add(2, 3)\n"
        "assert sys.argv[1] == 'adder.py'\n"
        "assert sorted(os.listdir('.')) == ['adder.py', 'check.py'], os.listdir('.')\n"
        '"""\n',
    )
    assert task.filename == "adder.py"
    passed = await check(task, "a + b")
    assert passed.passed and passed.reason == "`{python} check.py {file}` passes"
    failed = await check(task, "a * b")
    assert not failed.passed
    assert failed.reason.startswith("`{python} check.py {file}` exited with status 1: ")
    assert "AssertionError: 6" in failed.reason


async def test_a_command_that_runs_too_long_is_killed(tmp_path: Path) -> None:
    spec = CheckSpec(command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    started = time.monotonic()
    result = await run_command(spec, "x.py", "")
    assert time.monotonic() - started < 5
    assert not result.passed and result.reason.endswith("did not finish within 0.5 s")


async def test_a_missing_program_is_a_clear_failure() -> None:
    spec = CheckSpec(command=["mmx-no-such-program", "--version"])
    result = await run_command(spec, "x.py", "")
    assert result == evaluation.CheckResult(
        False,
        "`mmx-no-such-program --version`: mmx-no-such-program is not installed (not found on PATH)",
    )


async def test_a_command_never_sees_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMX_TEST_API_KEY", "sk-test-not-for-commands")
    monkeypatch.setenv("MMX_TEST_VISIBLE", "yes")
    code = (
        "import os; assert 'MMX_TEST_API_KEY' not in os.environ; "
        "assert os.environ['MMX_TEST_VISIBLE'] == 'yes'"
    )
    result = await run_command(CheckSpec(command=["{python}", "-c", code]), "x.py", "")
    assert result.passed, result.reason


# --------------------------------------------------------------------------- models


def two_tiers(**premium: object) -> Settings:
    return Settings.model_validate(
        {
            "providers": {"local": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": ""}},
            "tiers": {
                "cheap": {
                    "provider": "local",
                    "model": "small",
                    "input_usd_per_mtok": "0.1",
                    "output_usd_per_mtok": "0.2",
                },
                "premium": {"provider": "local", "model": "large", **premium},
            },
        }
    )


def test_models_are_tiers_tier_models_or_model_ids() -> None:
    settings = two_tiers(input_usd_per_mtok="3", output_usd_per_mtok="15")
    found = evaluation.contenders(settings, ["cheap", "cheap:gpt-5-mini", "o-big", "premium"])
    assert [(c.label, c.tier, c.model, c.as_configured) for c in found] == [
        ("cheap", "cheap", "small", True),
        ("cheap:gpt-5-mini", "cheap", "gpt-5-mini", False),
        ("o-big", "premium", "o-big", False),
        ("premium", "premium", "large", True),
    ]
    cheap, mini, unknown, premium = found
    assert cheap.price is not None and cheap.price.input == Decimal("0.1")
    # A model run on a tier's provider is priced as itself, not at the tier's prices.
    assert mini.price is not None and mini.price.source != "configuration"
    assert mini.settings.tiers["cheap"].model == "gpt-5-mini"
    assert settings.tiers["cheap"].model == "small"
    assert unknown.price is None
    assert premium.price is not None and premium.price.output == Decimal("15")
    default = evaluation.contenders(settings)
    assert [c.label for c in default] == ["cheap", "premium"]
    assert [c.label for c in evaluation.contenders(settings, ["cheap", "cheap:small"])] == ["cheap"]


@pytest.mark.parametrize(
    "entries, message",
    [
        (["fast:x"], "--models fast:x: no tier 'fast' (tiers: cheap, premium)"),
        (["cheap:"], "--models cheap:: give the model id after the colon"),
        (["cheap", ""], "--models has an empty entry"),
    ],
    ids=["unknown-tier", "no-model", "empty"],
)
def test_a_bad_models_entry_says_what_to_fix(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        evaluation.contenders(two_tiers(), entries)
    assert str(caught.value).startswith(message)


def test_a_tier_without_a_key_says_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError) as caught:
        evaluation.contenders(Settings(), ["premium"])
    assert str(caught.value) == (
        "--models premium: set OPENAI_API_KEY, the key for provider 'openai'"
    )


# --------------------------------------------------------------------------- the matrix


def outcome(
    task: str,
    *,
    passed: bool = True,
    latency_ms: float = 100.0,
    cost: str = "0",
    tokens: tuple[int, int, int] = (0, 0, 0),
    error: str | None = None,
    version: str = "m-2026-01-01",
    route: str = "",
    escalated: bool = False,
) -> Outcome:
    return Outcome(
        task=task,
        tier="cheap",
        model="m",
        model_version=version,
        answer="x" if passed else "",
        passed=passed,
        reason="ok" if passed else (error or "the answer lacks 'y'"),
        verified=passed,
        verify_reason="parses",
        latency_ms=latency_ms,
        usage=Usage(*tokens),
        cost_usd=Decimal(cost),
        error=error,
        route=route,
        escalated=escalated,
    )


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1 … 20
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None
    assert percentile([300.0, 100.0, 200.0], 0.5) == 200.0


def test_a_row_sums_exactly_and_prices_a_thousand_tasks() -> None:
    row = Row(
        "cheap",
        "cheap",
        "m",
        (
            outcome("a", latency_ms=120, cost="0.000123", tokens=(1000, 20, 400)),
            outcome("b", latency_ms=80, cost="0.0000045", tokens=(50, 5, 0)),
            outcome("c", passed=False, latency_ms=300, cost="0.1", tokens=(7, 1, 0)),
            outcome("d", passed=False, latency_ms=9000, error="HTTP 500", version=""),
        ),
    )
    assert (row.tasks, row.passed, row.errors, row.pass_rate) == (4, 2, 1, 0.5)
    # Latency of the answered tasks only: a failed call's time says little about the model.
    assert (row.latency(0.5), row.latency(0.95)) == (120.0, 300.0)
    assert row.usage == Usage(1057, 26, 400)
    assert row.cost_usd == Decimal("0.1001275")
    assert row.cost_per_task_usd == Decimal("0.025031875")
    assert row.cost_per_1000_usd == Decimal("25.031875")
    assert row.versions == ["m-2026-01-01"]
    thirds = Row("x", "cheap", "m", tuple(outcome(n, cost="0.01") for n in "abc"))
    assert thirds.cost_per_task_usd == Decimal("0.010000000000")
    lopsided = Row("x", "cheap", "m", (outcome("a", cost="0.01"), *(outcome(n) for n in "bc")))
    assert lopsided.cost_per_task_usd == Decimal("0.003333333333")
    assert lopsided.cost_per_1000_usd == Decimal("3.333333333333")
    summary = row.summary()
    assert summary["cost_usd"] == "0.1001275"
    assert summary["cost_per_1000_tasks_usd"] == "25.031875000000"
    assert (summary["p50_ms"], summary["p95_ms"]) == (120.0, 300.0)


def matrix(tmp_path: Path) -> evaluation.Matrix:
    first = load_task(write(tmp_path, GOOD, "first.toml"))
    second = load_task(write(tmp_path, GOOD, "second.toml"))
    suite = evaluation.Suite("demo", tmp_path, (first, second))
    rows = (
        Row(
            "cheap",
            "cheap",
            "small",
            (
                outcome("first", cost="0.0001", tokens=(100, 10, 0)),
                outcome("second", passed=False, cost="0.0002", tokens=(200, 20, 0)),
            ),
        ),
        Row(
            "premium:big|model",
            "premium",
            "big|model",
            (
                outcome("first", cost="0.003", tokens=(100, 0, 12)),
                outcome("second", passed=False, error="premium tier: HTTP 500"),
            ),
            price_known=False,
            as_configured=False,
        ),
        Row(
            "auto",
            "",
            "",
            (
                outcome("first", cost="0.0001", route="cheap"),
                outcome("second", cost="0.0032", route="cheap", escalated=True),
            ),
            auto=True,
        ),
    )
    return evaluation.Matrix(suite, "run1", 1_760_000_000.0, rows)


def test_json_has_every_row_and_task_with_exact_money(tmp_path: Path) -> None:
    data = json.loads(json.dumps(matrix(tmp_path).to_json()))
    assert (data["suite"], data["run_id"]) == ("demo", "run1")
    assert [t["name"] for t in data["tasks"]] == ["first", "second"]
    assert [r["label"] for r in data["rows"]] == ["cheap", "premium:big|model", "auto"]
    cheap, other, auto = data["rows"]
    assert (cheap["passed"], cheap["failed"], cheap["cost_usd"]) == (1, 1, "0.0003")
    assert cheap["cost_per_1000_tasks_usd"] == "0.150000000000"
    assert [r["cost_usd"] for r in cheap["results"]] == ["0.0001", "0.0002"]
    assert other["errors"] == 1 and other["results"][1]["error"] == "premium tier: HTTP 500"
    assert auto["routed"] == {"cheap": 2, "premium": 0} and auto["escalated"] == 1
    assert Decimal(auto["cost_usd"]) == Decimal("0.0033")


def test_csv_parses_back_to_one_row_per_model(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(matrix(tmp_path)))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["label"] for r in rows] == ["cheap", "premium:big|model", "auto"]
    assert [r["passed"] for r in rows] == ["1", "1", "2"]
    assert [r["cost_usd"] for r in rows] == ["0.0003", "0.003", "0.0033"]
    assert rows[0]["versions"] == "m-2026-01-01" and rows[0]["escalated"] == ""
    assert rows[1]["price_known"] == "False" and rows[2]["escalated"] == "1"


def test_markdown_has_the_summary_and_a_line_per_task(tmp_path: Path) -> None:
    lines = to_markdown(matrix(tmp_path)).splitlines()
    assert lines[0] == "## mmx eval: demo (2 tasks, run run1)"
    tables = [line for line in lines if line.startswith("|")]
    header, rule, cheap, other, auto = tables[:5]
    assert header.startswith("| model | model id | passed | p50 | p95 |")
    assert rule.count("|") == header.count("|")
    assert cheap.startswith(
        "| cheap | small (m-2026-01-01) | 1/2 (50%) | 100 ms | 100 ms | 300 / 30 |"
    )
    # A | in a model id is escaped; an unknown price with no reported cost shows as "?".
    assert other.startswith("| premium:big\\|model | big\\|model (m-2026-01-01) | 1/2 (50%) |")
    assert other.endswith("| $0.003 | $0.0015 | $1.50 |")
    assert auto.startswith("| **auto** | routed 2 cheap / 0 premium, 1 escalated | 2/2 (100%)")
    grid = tables[5:]
    assert grid[0] == "| task | kind | language | cheap | premium:big\\|model | auto |"
    assert grid[2:] == [
        "| first | inline | python | ✓ | ✓ | ✓ |",
        "| second | inline | python | ✗ | error | ✓ |",
    ]
    assert "- cheap · second: the answer lacks 'y'" in lines


def test_the_table_shows_figures_marks_and_reasons(tmp_path: Path) -> None:
    text = to_table(matrix(tmp_path))
    assert "mmx eval: demo (2 tasks, run run1)" in text
    cheap = next(line for line in text.splitlines() if "│ cheap " in line)
    assert "1/2 (50%)" in cheap and "300 / 30" in cheap and "$0.0003" in cheap
    assert "premium:big|model · second: premium tier: HTTP 500" in text
    assert "routed 2 cheap / 0 premium, 1 escalated" in text


def test_records_are_what_the_metrics_database_takes(tmp_path: Path) -> None:
    records = matrix(tmp_path).records()
    assert len(records) == 4  # two models × two tasks; auto is derived, not recorded
    first = records[0]
    assert first["suite"] == "demo" and first["run_id"] == "run1" and first["tier"] == "cheap"
    assert (first["task"], first["kind"], first["language"]) == ("first", "inline", "python")
    assert first["cost_usd"] == Decimal("0.0001") and first["input_tokens"] == 100
    assert records[2]["tier"] == "" and records[3]["error"] == "premium tier: HTTP 500"
    path = tmp_path / "metrics.sqlite"
    assert metrics.record_eval_results(path, records) == []
    conn, _ = metrics.open_database(path)
    try:
        rows = conn.execute(
            "SELECT model, task, passed, cost_pusd, error FROM evals ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [
        ("small", "first", 1, 100_000_000, None),
        ("small", "second", 0, 200_000_000, None),
        ("big|model", "first", 1, 3_000_000_000, None),
        ("big|model", "second", 0, 0, "premium tier: HTTP 500"),
    ]


# --------------------------------------------------------------------------- command line


def test_eval_has_its_own_help_and_is_listed() -> None:
    own = subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "eval", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert own.returncode == 0 and own.stdout.startswith("usage: mmx-lsp eval ")
    assert "TIER:MODEL" in own.stdout and "--no-record" in own.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "run a task suite against models" in listed.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--jobs", "0"], "mmx-lsp eval: --jobs must be at least 1\n"),
        (["--models", "cheap,,premium"], "mmx-lsp eval: --models has an empty entry"),
    ],
    ids=["no-jobs", "empty-model"],
)
def test_bad_arguments_exit_with_status_2(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert eval_cli.main([str(SUITE), "--workspace", str(tmp_path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
