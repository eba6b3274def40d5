"""`mmx-lsp eval` end to end: the command as a subprocess, the task suite in fixtures/eval,
and two OpenAI-compatible stubs on loopback, one per tier.

The premium stub answers every task with its reference answer. The cheap stub answers the
inline tasks right, breaks the syntax of fixes and docstrings (the server's own check fails:
the auto row escalates to premium), and gives refactors and explanations answers that parse
but miss the point (the auto row keeps them and fails). Routing sends docstrings to premium.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mmx_lsp.evaluation import Task, load_suite, per_task
from mmx_lsp.prompts import FILL
from tests.e2e.conftest import REPO, isolated_env
from tests.support.openai_stub import StubServer, _prompt_text, estimate_tokens

pytestmark = pytest.mark.e2e

SUITE = load_suite(REPO / "fixtures" / "eval")
TASKS = {task.name: task for task in SUITE.tasks}
N = len(SUITE.tasks)
CHEAP_PRICE = (Decimal("0.25"), Decimal("2"))
PREMIUM_PRICE = (Decimal("5"), Decimal("40"))
MILLION = Decimal(1_000_000)
PREMIUM_VERSION = "stub-premium-2026-01-15"
BROKEN = "}{ )( <<<"
COMMENT = {"python": "#"}


def task_of(body: dict[str, Any]) -> Task:
    """The one task a request is about, found by its selection or the text before its cursor
    (where a fill-in-the-middle prompt ends)."""
    text = _prompt_text(body) if "messages" in body else str(body.get("prompt")) + FILL
    found = [
        task
        for task in SUITE.tasks
        if (task.code[: task.start][-160:] + FILL if task.cursor else task.selection) in text
    ]
    assert len(found) == 1, [t.name for t in found]
    return found[0]


def premium_answer(body: dict[str, Any]) -> str:
    answer = task_of(body).reference
    assert answer is not None
    return answer


def cheap_answer(body: dict[str, Any]) -> str:
    task = task_of(body)
    if task.kind == "inline":
        return premium_answer(body)
    if task.kind in ("fix", "docstring"):
        return BROKEN
    if task.kind == "explain":
        return "This code prints a greeting."
    # A refactor that changes nothing but adds a comment: it parses, and is not the point.
    return task.selection + "\n" + COMMENT.get(task.language, "//") + " simplified"


# What the fixtures make of the plan above: every number below follows from it.
CHEAP_PASSES = sum(1 for t in SUITE.tasks if t.kind == "inline")
ROUTED_PREMIUM = {t.name for t in SUITE.tasks if t.kind == "docstring"}
ESCALATED = {t.name for t in SUITE.tasks if t.kind == "fix"}
AUTO_FAILS = {t.name for t in SUITE.tasks if t.kind in ("refactor", "explain")}


def cost(body: dict[str, Any], answer: str, price: tuple[Decimal, Decimal]) -> Decimal:
    """What the stub reports for one request, priced exactly."""
    tokens_in, tokens_out = estimate_tokens(_prompt_text(body)), estimate_tokens(answer)
    return (tokens_in * price[0] + tokens_out * price[1]) / MILLION


@dataclass
class Calls:
    """What one stub was asked, per task: (tokens in, tokens out, exact cost)."""

    by_task: dict[str, tuple[int, int, Decimal]]
    models: list[str]

    @classmethod
    def of(cls, stub: StubServer, answer: Any, price: tuple[Decimal, Decimal]) -> Calls:
        by_task = {}
        for body in stub.requests:
            text = answer(body)
            tokens = (estimate_tokens(_prompt_text(body)), estimate_tokens(text))
            by_task[task_of(body).name] = (*tokens, cost(body, text, price))
        assert len(by_task) == len(stub.requests), "a task was asked twice"
        return cls(by_task, [str(body["model"]) for body in stub.requests])


@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[StubServer, StubServer]]:
    with StubServer() as cheap, StubServer() as premium:
        yield cheap, premium


def answering(stubs: tuple[StubServer, StubServer]) -> tuple[StubServer, StubServer]:
    cheap, premium = stubs
    cheap.reset()
    cheap.reply_fn = cheap_answer
    premium.reset()
    premium.reply_fn = premium_answer
    premium.reported_model = PREMIUM_VERSION
    return cheap, premium


@pytest.fixture
def cheap(stubs: tuple[StubServer, StubServer]) -> StubServer:
    return answering(stubs)[0]


@pytest.fixture
def premium(stubs: tuple[StubServer, StubServer], cheap: StubServer) -> StubServer:
    return stubs[1]


def workspace(tmp: Path, cheap: StubServer, premium: StubServer) -> Path:
    """An mmx.toml with two tiers on the two stubs (no key on loopback), prices configured,
    and routing that sends docstrings to premium and everything else to cheap."""
    (tmp / "mmx.toml").write_text(
        f"""
[providers.cheapco]
base_url = "{cheap.base_url}"
api_key_env = "MMX_TEST_KEY"
max_retries = 0

[providers.premiumco]
base_url = "{premium.base_url}"
api_key_env = "MMX_TEST_KEY"
max_retries = 0

[tiers.cheap]
provider = "cheapco"
model = "stub-cheap"
input_usd_per_mtok = "{CHEAP_PRICE[0]}"
output_usd_per_mtok = "{CHEAP_PRICE[1]}"

[tiers.premium]
provider = "premiumco"
model = "stub-premium"
input_usd_per_mtok = "{PREMIUM_PRICE[0]}"
output_usd_per_mtok = "{PREMIUM_PRICE[1]}"

[routing]
premium_above = 0.99

[[routing.rules]]
when = {{ kind = "docstring" }}
tier = "premium"
""",
        "utf-8",
    )
    return tmp


def run_eval(tmp: Path, *args: str, tasks: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmx_lsp", "eval", str(tasks or SUITE.path), *args],
        cwd=REPO,
        env=isolated_env(tmp),
        capture_output=True,
        text=True,
        timeout=180,
    )


def rows_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [t["name"] for t in data["tasks"]] == list(TASKS)
    return {row["label"]: row for row in data["rows"]}


def by_task(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [r["task"] for r in row["results"]] == list(TASKS)
    return {r["task"]: r for r in row["results"]}


def assert_priced_like_the_stub(row: dict[str, Any], calls: Calls) -> None:
    """Tokens and cost of every task are what the stub counted, at the configured price."""
    results = by_task(row)
    for name, (tokens_in, tokens_out, exact) in calls.by_task.items():
        result = results[name]
        assert (result["input_tokens"], result["output_tokens"]) == (tokens_in, tokens_out)
        assert Decimal(result["cost_usd"]) == exact
    total = sum((c for _, _, c in calls.by_task.values()), Decimal(0))
    assert row["input_tokens"] == sum(t for t, _, _ in calls.by_task.values())
    assert row["output_tokens"] == sum(t for _, t, _ in calls.by_task.values())
    assert Decimal(row["cost_usd"]) == total
    assert Decimal(row["cost_per_task_usd"]) == per_task(total, N)
    assert Decimal(row["cost_per_1000_tasks_usd"]) == per_task(total, N, 1000)


@dataclass
class FullRun:
    """One run of the whole suite on both tiers, with the auto row, as JSON."""

    rows: dict[str, dict[str, Any]]
    cheap: Calls
    premium: Calls
    stderr: str
    stdout: str
    db: Path


@pytest.fixture(scope="module")
def full_run(
    stubs: tuple[StubServer, StubServer], tmp_path_factory: pytest.TempPathFactory
) -> FullRun:
    cheap, premium = answering(stubs)
    tmp = tmp_path_factory.mktemp("eval")
    db = tmp / "metrics.sqlite"
    result = run_eval(
        workspace(tmp, cheap, premium),
        "--format",
        "json",
        "--workspace",
        str(tmp),
        "--db",
        str(db),
        "--progress",
    )
    return FullRun(
        rows_of(result),
        Calls.of(cheap, cheap_answer, CHEAP_PRICE),
        Calls.of(premium, premium_answer, PREMIUM_PRICE),
        result.stderr,
        result.stdout,
        db,
    )


def test_each_model_is_scored_priced_and_timed_on_every_task(full_run: FullRun) -> None:
    rows, cheap_calls, premium_calls = full_run.rows, full_run.cheap, full_run.premium
    assert list(rows) == ["cheap", "premium", "auto"]
    cheap, premium = rows["cheap"], rows["premium"]
    assert (cheap["tasks"], cheap["passed"], cheap["errors"]) == (N, CHEAP_PASSES, 0)
    assert (premium["tasks"], premium["passed"], premium["errors"]) == (N, N, 0)
    assert cheap["pass_rate"] == CHEAP_PASSES / N and premium["pass_rate"] == 1.0
    assert sorted(cheap_calls.by_task) == sorted(TASKS) == sorted(premium_calls.by_task)
    assert_priced_like_the_stub(cheap, cheap_calls)
    assert_priced_like_the_stub(premium, premium_calls)
    # The model the provider said answered is kept apart from the configured one.
    assert (premium["model"], premium["versions"]) == ("stub-premium", [PREMIUM_VERSION])
    assert cheap["versions"] == ["stub-cheap"]
    assert 0 < cheap["p50_ms"] <= cheap["p95_ms"]
    results = by_task(cheap)
    for name, task in TASKS.items():
        assert results[name]["passed"] is (task.kind == "inline"), results[name]
    fix = next(n for n, t in TASKS.items() if t.kind == "fix")
    assert results[fix]["verified"] is False
    assert results[fix]["reason"].startswith("does not parse: ")
    refactor = next(n for n, t in TASKS.items() if t.kind == "refactor")
    assert results[refactor]["verified"] is True and results[refactor]["passed"] is False


def test_auto_routes_escalates_and_reuses_the_tiers_answers(full_run: FullRun) -> None:
    rows, cheap_calls, premium_calls = full_run.rows, full_run.cheap, full_run.premium
    auto = rows["auto"]
    # Every call was made once, for the model rows: auto asked nothing more.
    assert len(cheap_calls.models) == N and len(premium_calls.models) == N
    assert auto["routed"] == {"cheap": N - len(ROUTED_PREMIUM), "premium": len(ROUTED_PREMIUM)}
    assert auto["escalated"] == len(ESCALATED) and auto["fallbacks"] == 0
    assert auto["passed"] == N - len(AUTO_FAILS)
    expected_total = Decimal(0)
    for name, result in by_task(auto).items():
        assert result["passed"] is (name not in AUTO_FAILS), result
        assert result["route"] == ("premium" if name in ROUTED_PREMIUM else "cheap")
        assert result["escalated"] is (name in ESCALATED)
        # Costs add up along the way: cheap, then premium when it escalated.
        expected = Decimal(0)
        if name not in ROUTED_PREMIUM:
            expected += cheap_calls.by_task[name][2]
        if name in ROUTED_PREMIUM or name in ESCALATED:
            expected += premium_calls.by_task[name][2]
        assert Decimal(result["cost_usd"]) == expected
        assert result["calls"] == (2 if name in ESCALATED else 1)
        expected_total += expected
    assert Decimal(auto["cost_usd"]) == expected_total
    assert Decimal(auto["cost_per_1000_tasks_usd"]) == per_task(expected_total, N, 1000)
    explain = next(n for n, t in TASKS.items() if t.kind == "explain")
    assert by_task(auto)[explain]["reason"].startswith("the answer does not match")


def test_each_run_is_recorded_per_task_for_regression_watch(full_run: FullRun) -> None:
    rows, db = full_run.rows, full_run.db
    assert f"{2 * N} results recorded in {db}" in full_run.stderr
    conn = sqlite3.connect(db)
    try:
        recorded = conn.execute(
            "SELECT suite, model, model_version, tier, COUNT(*), SUM(passed), "
            "SUM(input_tokens), SUM(cost_pusd), COUNT(DISTINCT run_id) FROM evals "
            "GROUP BY model ORDER BY model"
        ).fetchall()
    finally:
        conn.close()
    pico = Decimal(10) ** 12
    assert recorded == [
        (
            "eval",
            "stub-cheap",
            "stub-cheap",
            "cheap",
            N,
            CHEAP_PASSES,
            rows["cheap"]["input_tokens"],
            int(Decimal(rows["cheap"]["cost_usd"]) * pico),
            1,
        ),
        (
            "eval",
            "stub-premium",
            PREMIUM_VERSION,
            "premium",
            N,
            N,
            rows["premium"]["input_tokens"],
            int(Decimal(rows["premium"]["cost_usd"]) * pico),
            1,
        ),
    ]


def test_the_progress_bar_goes_to_stderr_only(full_run: FullRun) -> None:
    assert json.loads(full_run.stdout)["suite"] == "eval"  # nothing else on stdout
    assert f"{2 * N}/{2 * N}" in full_run.stderr
    assert "━" in full_run.stderr


def test_auto_calls_only_what_the_models_did_not(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    result = run_eval(
        workspace(tmp_path, cheap, premium),
        "--models",
        "premium",
        "--format",
        "json",
        "--workspace",
        str(tmp_path),
        "--no-record",
    )
    rows = rows_of(result)
    assert list(rows) == ["premium", "auto"]
    # Cheap was asked only for the tasks routed to it; premium's answers were reused.
    cheap_calls = Calls.of(cheap, cheap_answer, CHEAP_PRICE)
    assert sorted(cheap_calls.by_task) == sorted(set(TASKS) - ROUTED_PREMIUM)
    assert len(premium.requests) == N
    auto = rows["auto"]
    assert auto["passed"] == N - len(AUTO_FAILS) and auto["escalated"] == len(ESCALATED)
    premium_calls = Calls.of(premium, premium_answer, PREMIUM_PRICE)
    expected = sum((c for _, _, c in cheap_calls.by_task.values()), Decimal(0)) + sum(
        (premium_calls.by_task[n][2] for n in ROUTED_PREMIUM | ESCALATED), Decimal(0)
    )
    assert Decimal(auto["cost_usd"]) == expected


def test_a_failing_provider_counts_as_failed_tasks_and_the_run_goes_on(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.mode = "500"
    result = run_eval(
        workspace(tmp_path, cheap, premium),
        "--format",
        "json",
        "--workspace",
        str(tmp_path),
        "--no-record",
    )
    rows = rows_of(result)
    failed = rows["cheap"]
    assert (failed["passed"], failed["errors"], failed["cost_usd"]) == (0, N, "0")
    assert (failed["input_tokens"], failed["p50_ms"]) == (0, None)
    for outcome in failed["results"]:
        assert "server error (HTTP 500): stub internal error" in outcome["error"]
        assert outcome["reason"] == outcome["error"] and outcome["answer"] == ""
    assert len(cheap.requests) == N  # no retries configured, and auto asked nothing more
    assert rows["premium"]["passed"] == N
    # The server falls back to the other tier when the routed one is down.
    auto = rows["auto"]
    assert auto["passed"] == N and auto["errors"] == 0
    assert auto["fallbacks"] == N - len(ROUTED_PREMIUM) and auto["escalated"] == 0
    assert Decimal(auto["cost_usd"]) == Decimal(rows["premium"]["cost_usd"])


def run_cheap_on_completions(
    tmp: Path, cheap: StubServer, premium: StubServer
) -> subprocess.CompletedProcess[str]:
    """The suite on the cheap tier alone, with `api = "completions"` (the stub answers the
    fill-in-the-middle probe with "x")."""
    cheap.reply_fn = lambda body: (
        "x" if "MMX-PREFIX" in str(body.get("prompt")) else cheap_answer(body)
    )
    config = workspace(tmp, cheap, premium) / "mmx.toml"
    config.write_text(
        config.read_text().replace(
            'model = "stub-cheap"\n', 'model = "stub-cheap"\napi = "completions"\n'
        )
    )
    return run_eval(
        tmp,
        "--models",
        "cheap",
        "--no-auto",
        "--format",
        "json",
        "--workspace",
        str(tmp),
        "--no-record",
    )


def test_a_completions_tier_that_does_not_fill_in_the_middle_gets_no_suffix_as_in_the_server(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    """The suite is sent as the server sends it (health.FimWatch): the tier is probed once,
    before its first completion, and each completion then goes without the code after the
    cursor, which this endpoint would put before the prefix."""
    cheap.fim = "swap"
    result = run_cheap_on_completions(tmp_path, cheap, premium)
    assert rows_of(result)["cheap"]["errors"] == 0
    completions = [b for b in cheap.requests if "prompt" in b]
    probes = [i for i, b in enumerate(completions) if "MMX-PREFIX" in b["prompt"]]
    assert probes == [0], "probed once, before any completion"
    inline = completions[1:]
    assert len(inline) == sum(1 for t in SUITE.tasks if t.kind == "inline")
    assert all(b.get("suffix") is None for b in inline)
    assert result.stderr.count("mmx: tier cheap (stub-cheap) does not fill in the middle") == 1


def test_a_fill_in_the_middle_probe_that_breaks_does_not_stop_the_run(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    cheap.mode = "disconnect"  # every answer, the probe's too, is cut off mid-body
    result = run_cheap_on_completions(tmp_path, cheap, premium)
    rows = rows_of(result)  # the run ends normally
    assert rows["cheap"]["errors"] == N
    assert "Traceback" not in result.stderr


def test_the_table_shows_the_matrix_and_a_model_on_a_tiers_provider(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    result = run_eval(
        workspace(tmp_path, cheap, premium),
        "--models",
        "cheap,premium:stub-premium-next",
        "--workspace",
        str(tmp_path),
        "--no-record",
    )
    assert result.returncode == 0, result.stderr
    # The model id is sent through premium's endpoint and priced as itself (unknown here).
    assert "no price known for stub-premium-next" in result.stderr
    models = [body["model"] for body in premium.requests]
    assert models.count("stub-premium-next") == N
    assert models.count("stub-premium") == len(ROUTED_PREMIUM | ESCALATED)  # auto's own
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"mmx eval: eval ({N} tasks, run ")
    cheap_line = next(line for line in lines if line.startswith("│ cheap "))
    assert f"{CHEAP_PASSES}/{N} ({CHEAP_PASSES / N:.0%})" in cheap_line
    other = next(line for line in lines if line.startswith("│ premium:stub-premium-next "))
    cells = [cell.strip() for cell in other.split("│")[1:-1]]
    assert cells[2] == f"{N}/{N} (100%)"
    assert cells[6:] == ["?", "?", "?"]  # no price, and the stub reports no cost
    auto = next(line for line in lines if line.startswith("│ auto "))
    assert f"{N - len(AUTO_FAILS)}/{N}" in auto and f"{len(ESCALATED)} escalated" in auto
    grid = {line.split("│")[1].strip(): line for line in lines if line.count("│") == 7}
    for name, task in TASKS.items():
        marks = [cell.strip() for cell in grid[name].split("│")[4:7]]
        assert marks == [
            "✓" if task.kind == "inline" else "✗",
            "✓",
            "✗" if name in AUTO_FAILS else "✓",
        ]
    assert "Why tasks failed:" in lines


def test_markdown_goes_to_a_file(tmp_path: Path, cheap: StubServer, premium: StubServer) -> None:
    out = tmp_path / "matrix.md"
    result = run_eval(
        workspace(tmp_path, cheap, premium),
        "--format",
        "markdown",
        "-o",
        str(out),
        "--workspace",
        str(tmp_path),
        "--no-record",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = out.read_text("utf-8").splitlines()
    assert lines[0].startswith(f"## mmx eval: eval ({N} tasks, run ")
    summary = [line for line in lines if line.startswith(("| cheap ", "| premium ", "| **auto"))]
    assert [line.split(" | ")[2] for line in summary] == [
        f"{CHEAP_PASSES}/{N} ({CHEAP_PASSES / N:.0%})",
        f"{N}/{N} (100%)",
        f"{N - len(AUTO_FAILS)}/{N} ({(N - len(AUTO_FAILS)) / N:.0%})",
    ]
    grid = [line for line in lines if line.startswith("| ") and line.split(" | ")[0][2:] in TASKS]
    assert len(grid) == N


def test_csv_has_one_row_per_model(tmp_path: Path, cheap: StubServer, premium: StubServer) -> None:
    result = run_eval(
        workspace(tmp_path, cheap, premium),
        "--format",
        "csv",
        "--no-auto",
        "--workspace",
        str(tmp_path),
        "--no-record",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["label"], r["passed"], r["tasks"]) for r in rows] == [
        ("cheap", str(CHEAP_PASSES), str(N)),
        ("premium", str(N), str(N)),
    ]
    premium_calls = Calls.of(premium, premium_answer, PREMIUM_PRICE)
    assert Decimal(rows[1]["cost_usd"]) == sum(
        (c for _, _, c in premium_calls.by_task.values()), Decimal(0)
    )


def test_a_malformed_task_file_stops_the_run_with_its_name_and_key(
    tmp_path: Path, cheap: StubServer, premium: StubServer
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    good = (SUITE.path / "python_parse_amount.toml").read_text("utf-8")
    (tasks / "good.toml").write_text(good, "utf-8")
    (tasks / "typo.toml").write_text(good.replace("[check]\n", "[check]\nparse = true\n"))
    result = run_eval(
        workspace(tmp_path, cheap, premium), "--workspace", str(tmp_path), tasks=tasks
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"mmx-lsp eval: malformed tasks:\n  {tasks / 'typo.toml'}: check.parse: unknown key\n"
    )
    assert cheap.requests == [] and premium.requests == []


@pytest.mark.parametrize(
    "models, message",
    [
        (
            "fast:stub-x",
            "mmx-lsp eval: --models fast:stub-x: no tier 'fast' (tiers: cheap, premium)",
        ),
        ("cheap,", "mmx-lsp eval: --models has an empty entry"),
    ],
    ids=["unknown-tier", "empty-entry"],
)
def test_an_unknown_models_entry_is_a_usage_error(
    tmp_path: Path, cheap: StubServer, premium: StubServer, models: str, message: str
) -> None:
    result = run_eval(
        workspace(tmp_path, cheap, premium), "--models", models, "--workspace", str(tmp_path)
    )
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert cheap.requests == [] and premium.requests == []


def test_a_tier_without_a_key_says_what_to_set(tmp_path: Path) -> None:
    # No mmx.toml: the default tiers call OpenAI, and the isolated environment has no key.
    result = run_eval(tmp_path, "--workspace", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        "mmx-lsp eval: cheap tier: set OPENAI_API_KEY, the key for provider 'openai'\n"
    )
