"""Regression watch: acceptance and eval pass rates by model version, acceptance by router
version, a one-sided z-test."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mmx_lsp.config import Settings
from mmx_lsp.metrics.records import to_pico
from mmx_lsp.metrics.rollups import _local_midnight, day_of
from mmx_lsp.metrics.schema import open_database

# --------------------------------------------------------------------------- regression watch


@dataclass(frozen=True)
class RegressionPolicy:
    """When a model version's acceptance counts as having dropped."""

    recent_days: float = 7.0
    baseline_days: float = 28.0
    margin: float = 0.10  # absolute drop in acceptance rate
    min_samples: int = 30  # verdicts in each window
    alpha: float = 0.05  # one-sided two-proportion z-test

    @classmethod
    def from_settings(cls, settings: Settings) -> RegressionPolicy:
        """The margin and sample size from `metrics.regression_*`; windows and alpha fixed."""
        section = settings.metrics
        return cls(margin=section.regression_margin, min_samples=section.regression_min_samples)


@dataclass(frozen=True)
class Regression:
    """A model version whose acceptance (or eval pass rate) fell against its baseline."""

    model: str
    model_version: str
    recent_accepted: int
    recent_total: int
    baseline_accepted: int
    baseline_total: int
    z: float
    p_value: float
    signal: Literal["acceptance", "eval", "router"] = "acceptance"
    suite: str = ""

    @property
    def recent_rate(self) -> float:
        return self.recent_accepted / self.recent_total

    @property
    def baseline_rate(self) -> float:
        return self.baseline_accepted / self.baseline_total

    @property
    def key(self) -> str:
        """What the editor is warned about once."""
        return f"{self.signal}:{self.suite}:{self.model}@{self.model_version}"

    def message(self) -> str:
        if self.signal == "router":
            return (
                f"mmx: since router {self.model_version} took over, acceptance of completions "
                f"fell to {self.recent_rate:.0%} ({self.recent_accepted}/{self.recent_total}) "
                f"from {self.baseline_rate:.0%} ({self.baseline_accepted}/{self.baseline_total})"
                f" under the router before; p = {self.p_value:.3f}. Remove the router file (or "
                "run mmx-lsp calibrate again) to go back."
            )
        version = f" ({self.model_version})" if self.model_version else ""
        what = "acceptance" if self.signal == "acceptance" else f"eval pass rate on {self.suite}"
        return (
            f"mmx: {what} of {self.model}{version} fell to {self.recent_rate:.0%} "
            f"({self.recent_accepted}/{self.recent_total}) from {self.baseline_rate:.0%} "
            f"({self.baseline_accepted}/{self.baseline_total}) before; p = {self.p_value:.3f}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "suite": self.suite,
            "model": self.model,
            "model_version": self.model_version,
            "recent_rate": self.recent_rate,
            "recent_total": self.recent_total,
            "baseline_rate": self.baseline_rate,
            "baseline_total": self.baseline_total,
            "z": self.z,
            "p_value": self.p_value,
            "message": self.message(),
        }


def two_proportion_z(
    successes_a: int, total_a: int, successes_b: int, total_b: int
) -> tuple[float, float]:
    """z and the one-sided p-value that proportion a is greater than proportion b."""
    if total_a == 0 or total_b == 0:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (total_a + total_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    if spread == 0:
        return 0.0, 1.0
    z = (successes_a / total_a - successes_b / total_b) / spread
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def _windows(policy: RegressionPolicy, now: float | None) -> tuple[dt.date, dt.date]:
    today = dt.date.fromtimestamp(time.time() if now is None else now)
    recent_start = today - dt.timedelta(days=max(1, int(policy.recent_days)) - 1)
    return recent_start - dt.timedelta(days=int(policy.baseline_days)), recent_start


def _dropped(
    policy: RegressionPolicy,
    baseline: tuple[int, int],
    recent: tuple[int, int],
) -> tuple[float, float] | None:
    """z and p when the recent rate fell significantly by more than the margin, else None."""
    (base_ok, base_total), (ok, total) = baseline, recent
    if min(total, base_total) < policy.min_samples:
        return None
    drop = base_ok / base_total - ok / total
    z, p_value = two_proportion_z(base_ok, base_total, ok, total)
    return (z, p_value) if drop > policy.margin and p_value < policy.alpha else None


def find_regressions(
    conn: sqlite3.Connection, policy: RegressionPolicy, *, now: float | None = None
) -> list[Regression]:
    """Model versions whose acceptance, or pass rate on an eval suite, in the recent days is
    below the same model's baseline days by more than the margin, with enough samples on
    both sides and a significant one-sided two-proportion z-test. Windows are whole local
    days, today included."""
    baseline_start, recent_start = _windows(policy, now)
    base_day, recent_day = baseline_start.isoformat(), recent_start.isoformat()
    baseline = {
        model: (int(accepted), int(total))
        for model, accepted, total in conn.execute(
            "SELECT model, SUM(accepted), SUM(accepted + rejected) FROM daily "
            "WHERE day >= ? AND day < ? GROUP BY model",
            (base_day, recent_day),
        )
    }
    found = []
    for model, version, accepted, total in conn.execute(
        "SELECT model, model_version, SUM(accepted), SUM(accepted + rejected) FROM daily "
        "WHERE day >= ? GROUP BY 1, 2 ORDER BY 1, 2",
        (recent_day,),
    ):
        if model not in baseline:
            continue
        dropped = _dropped(policy, baseline[model], (int(accepted), int(total)))
        if dropped is not None:
            base_ok, base_total = baseline[model]
            found.append(
                Regression(model, version, int(accepted), int(total), base_ok, base_total, *dropped)
            )
    return (
        found
        + find_eval_regressions(conn, policy, baseline_start, recent_start)
        + find_router_regressions(conn, policy, baseline_start, recent_start)
    )


ROUTER_LOOK = 2000


def _router_of(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> str | None:
    row = conn.execute(query, args).fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT json_extract(?, '$.router')", (row[0],)).fetchone()[0]
    return str(found) if found else None


def find_router_regressions(
    conn: sqlite3.Connection,
    policy: RegressionPolicy,
    baseline_start: dt.date,
    recent_start: dt.date,
) -> list[Regression]:
    """The same test when the router changed: acceptance of completions decided by a router
    version new in the recent days, against the completions other routers decided before."""
    low, high = _local_midnight(baseline_start), _local_midnight(recent_start)
    # Routers change rarely: when the router of the last request is the one in force when the
    # recent days began, there is nothing to compare, and no window is scanned.
    # Each look reads at most ROUTER_LOOK rows (a database without routers is not scanned).
    look = (
        "SELECT extra FROM (SELECT extra FROM requests WHERE ts < ? ORDER BY ts DESC LIMIT ?) "
        "WHERE extra LIKE '%\"router\"%' LIMIT 1"
    )
    last = _router_of(conn, look, (float("inf"), ROUTER_LOOK))
    then = _router_of(conn, look, (high, ROUTER_LOOK))
    if last is None or last == then:
        return []
    counts: dict[tuple[bool, str], tuple[int, int]] = {}
    for recent, router, accepted, total in conn.execute(
        "SELECT ts >= ?, json_extract(extra, '$.router'), SUM(verdict = 'accepted'), COUNT(*) "
        "FROM requests WHERE ts >= ? AND verdict IS NOT NULL "
        "AND kind IN ('inline', 'completion') AND extra IS NOT NULL GROUP BY 1, 2",
        (high, low),
    ):
        if router:
            counts[(bool(recent), str(router))] = (int(accepted), int(total))
    found = []
    for (recent, router), (accepted, total) in sorted(counts.items()):
        if not recent or (False, router) in counts:
            continue  # not new: a router in force on both sides did not change
        before = [v for (was_recent, r), v in counts.items() if not was_recent and r != router]
        base = (sum(a for a, _ in before), sum(t for _, t in before))
        if not base[1]:
            continue
        dropped = _dropped(policy, base, (accepted, total))
        if dropped is not None:
            found.append(Regression("router", router, accepted, total, *base, *dropped, "router"))
    return found


def find_eval_regressions(
    conn: sqlite3.Connection,
    policy: RegressionPolicy,
    baseline_start: dt.date,
    recent_start: dt.date,
) -> list[Regression]:
    """The same test over `mmx-lsp eval` results, per suite and model version."""
    low, high = _local_midnight(baseline_start), _local_midnight(recent_start)
    baseline = {
        (suite, model): (int(passed), int(total))
        for suite, model, passed, total in conn.execute(
            "SELECT suite, model, SUM(passed), COUNT(*) FROM evals "
            "WHERE ts >= ? AND ts < ? GROUP BY 1, 2",
            (low, high),
        )
    }
    found = []
    for suite, model, version, passed, total in conn.execute(
        "SELECT suite, model, model_version, SUM(passed), COUNT(*) FROM evals "
        "WHERE ts >= ? GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (high,),
    ):
        base = baseline.get((suite, model))
        if base is None:
            continue
        dropped = _dropped(policy, base, (int(passed), int(total)))
        if dropped is not None:
            found.append(
                Regression(model, version, int(passed), int(total), *base, *dropped, "eval", suite)
            )
    return found


EVAL_COLUMNS = (
    "ts",
    "run_id",
    "suite",
    "task",
    "kind",
    "language",
    "model",
    "model_version",
    "tier",
    "passed",
    "latency_ms",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_pusd",
    "error",
)


def record_eval_results(path: Path, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Append one eval run's per-task results to the metrics database at `path` (table
    `evals`), in one transaction. Returns warnings (a damaged database moved aside)."""
    rows = [
        (
            float(r["ts"]),
            str(r["run_id"]),
            str(r["suite"]),
            str(r["task"]),
            str(r["kind"]),
            str(r.get("language") or ""),
            str(r["model"]),
            str(r.get("model_version") or ""),
            str(r.get("tier") or ""),
            int(bool(r["passed"])),
            None if r.get("latency_ms") is None else float(r["latency_ms"]),
            int(r.get("input_tokens") or 0),
            int(r.get("cached_input_tokens") or 0),
            int(r.get("output_tokens") or 0),
            to_pico(r.get("cost_usd")) or 0,
            None if r.get("error") is None else str(r["error"]),
        )
        for r in results
    ]
    conn, warnings = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO evals ({', '.join(EVAL_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVAL_COLUMNS)})",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    return warnings


def recent_versions(conn: sqlite3.Connection, since: float) -> dict[str, list[str]]:
    """Model versions seen per model since a time (for `models`)."""
    seen: dict[str, list[str]] = {}
    for model, version in conn.execute(
        "SELECT DISTINCT model, model_version FROM daily "
        "WHERE day >= ? AND model_version != '' ORDER BY 1, 2",
        (day_of(since),),
    ):
        seen.setdefault(model, []).append(version)
    return seen
