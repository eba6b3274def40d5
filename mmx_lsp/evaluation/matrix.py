"""The matrix: rows of outcomes per model, exact costs per task and per 1,000 tasks, records."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from mmx_lsp.config import Settings
from mmx_lsp.evaluation.models import Contender
from mmx_lsp.evaluation.runner import Outcome, ProgressSink, _Runner
from mmx_lsp.evaluation.tasks import PICO, Suite, Task
from mmx_lsp.pricing import Usage, price_for

# --------------------------------------------------------------------------- the matrix


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


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
