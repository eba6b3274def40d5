"""The evaluation matrix: a suite of tasks run against models the way the server calls them.

A task is one TOML file: code with a cursor or a selection, a request kind, and a check of
the answer (it parses, a test command passes, an expected shape appears). Each model answers
every task through the server's own providers, prompts, clean-up and verification; the
"auto" row shows what routing and the cascade would have passed and cost.

A package along its seams: `tasks` (task files), `checks`, `models` (`--models`), `runner`
(the calls and the auto row) and `matrix`.
"""

from mmx_lsp.evaluation.checks import (
    CheckResult,
    check,
    run_command,
    syntax_problem,
)
from mmx_lsp.evaluation.matrix import (
    Matrix,
    Row,
    evaluate,
    per_task,
    percentile,
)
from mmx_lsp.evaluation.models import (
    Contender,
    contenders,
)
from mmx_lsp.evaluation.runner import (
    Outcome,
    ProgressSink,
    answer,
    clean_answer,
    snapshot,
)
from mmx_lsp.evaluation.tasks import (
    CURSOR,
    END,
    PICO,
    START,
    TASK_GLOB,
    CheckSpec,
    Suite,
    SuiteError,
    Task,
    TaskProblem,
    TaskSpec,
    load_suite,
    load_task,
)

__all__ = [
    "CURSOR",
    "END",
    "PICO",
    "START",
    "TASK_GLOB",
    "CheckResult",
    "CheckSpec",
    "Contender",
    "Matrix",
    "Outcome",
    "ProgressSink",
    "Row",
    "Suite",
    "SuiteError",
    "Task",
    "TaskProblem",
    "TaskSpec",
    "answer",
    "check",
    "clean_answer",
    "contenders",
    "evaluate",
    "load_suite",
    "load_task",
    "per_task",
    "percentile",
    "run_command",
    "snapshot",
    "syntax_problem",
]
