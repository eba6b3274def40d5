"""The `stats`, `report` and `models` commands: what the metrics say, for people and tools."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmx_lsp import metrics
from mmx_lsp.cli import workspace_settings
from mmx_lsp.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from mmx_lsp.config import Settings

PROG = "mmx-lsp"
CSV_COLUMNS = (
    "requests",
    "accepted",
    "rejected",
    "acceptance_rate",
    "p50_ms",
    "p95_ms",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd_exact",
    "saved_usd_exact",
    "cache_hits",
    "cache_hit_rate",
    "escalated",
    "escalation_rate",
    "errors",
    "cancelled",
)


def _settings(workspace: Path) -> Settings:
    return workspace_settings(workspace).settings


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, help="metrics database (default: from the settings)")
    where.add_argument(
        "--demo",
        action="store_true",
        help=f"the demo database that `mmx-lsp replay` records ({metrics.demo_path()})",
    )
    parser.add_argument(
        "--workspace", type=Path, default=Path.cwd(), help="workspace root for mmx.toml"
    )


def _database(args: argparse.Namespace, settings: Settings | None = None) -> Path:
    """`--db`, `--demo`'s database, else the settings' metrics database."""
    if getattr(args, "demo", False):
        return metrics.demo_path()
    if args.db is not None:
        return Path(args.db).expanduser()
    return metrics.path_from_settings(settings or _settings(args.workspace))


def _connect(path: Path) -> sqlite3.Connection:
    """The metrics database, or an empty one in memory when nothing was recorded yet (the
    command never creates the file)."""
    if not path.exists():
        print(f"{PROG}: no metrics recorded yet ({path} does not exist)", file=sys.stderr)
        conn = sqlite3.connect(":memory:", isolation_level=None)
        metrics.migrate(conn)
        return conn
    conn, warnings = metrics.open_database(path)
    for message in warnings:
        print(message, file=sys.stderr)
    return conn


def _since(text: str | None) -> float | None:
    try:
        return metrics.parse_since(text)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


def _run(fn: Any, argv: Sequence[str] | None) -> int:
    try:
        return int(fn(argv))
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mmx-lsp stats | head`
        sys.stderr.close()
        return 0
    except (OSError, sqlite3.Error) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- stats


def stats_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} stats",
        description="Requests, acceptance, latency, tokens, cost and savings from the metrics.",
    )
    parser.add_argument("--since", help="7d, 24h, 30m, or a date such as 2026-11-01")
    parser.add_argument("--by", choices=metrics.GROUPINGS, default="model")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the summary as JSON")
    out.add_argument("--csv", action="store_true", help="one CSV row per group")
    out.add_argument(
        "--prometheus", action="store_true", help="Prometheus text exposition (by model)"
    )
    out.add_argument(
        "--prometheus-file",
        type=Path,
        metavar="FILE",
        help="write the exposition atomically, for node_exporter's textfile collector (*.prom)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        help="regression watch: drop in acceptance or eval pass rate (metrics.regression_margin)",
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        help="regression watch: samples per window (metrics.regression_min_samples)",
    )
    _common(parser)
    return parser


def stats_main(argv: Sequence[str] | None = None) -> int:
    """`mmx-lsp stats …`; returns the exit status."""
    return _run(_stats, argv)


def _stats(argv: Sequence[str] | None) -> int:
    args = stats_parser().parse_args(argv)
    since = _since(args.since)
    settings = _settings(args.workspace)
    path = _database(args, settings)
    policy = metrics.RegressionPolicy(
        margin=settings.metrics.regression_margin if args.margin is None else args.margin,
        min_samples=(
            settings.metrics.regression_min_samples
            if args.min_samples is None
            else args.min_samples
        ),
    )
    now = time.time()
    conn = _connect(path)
    try:
        by = "model" if (args.prometheus or args.prometheus_file) else args.by
        summary = metrics.summarize(conn, since=since, by=by, now=now)
        regressions = metrics.find_regressions(conn, policy, now=now)
    finally:
        conn.close()
    summary["regressions"] = [r.to_json() for r in regressions]
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.csv:
        sys.stdout.write(to_csv(summary))
    elif args.prometheus:
        sys.stdout.write(metrics.prometheus_text(summary, regressions))
    elif args.prometheus_file:
        metrics.write_atomic(args.prometheus_file, metrics.prometheus_text(summary, regressions))
    else:
        print_table(summary, regressions, path=path, since=args.since)
        if args.demo:
            print("the demo database of `mmx-lsp replay`: costs are the router's estimates")
    return 0


def to_csv(summary: dict[str, Any]) -> str:
    by = summary["by"]
    names = ["model", "tier"] if by == "model" else [by]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*names, *CSV_COLUMNS])
    for row in summary[f"by_{by}"]:
        writer.writerow(
            [row[n] for n in names] + ["" if row[c] is None else row[c] for c in CSV_COLUMNS]
        )
    return buffer.getvalue()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,} ms"


def _usd(value: str, approx: bool = False) -> str:
    from mmx_lsp.pricing import format_usd

    return format_usd(Decimal(value), approx=approx)


def _console() -> Console:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def print_table(
    summary: dict[str, Any],
    regressions: Sequence[metrics.Regression],
    *,
    path: Path,
    since: str | None,
) -> None:
    from rich.table import Table

    by = summary["by"]
    names = ["model", "tier"] if by == "model" else [by]
    window = f"since {since}" if since else "all recorded"
    table = Table(title=f"mmx requests by {by} ({window})", title_justify="left")
    for name in names:
        table.add_column(name)
    for header in (
        "requests",
        "accepted",
        "p50",
        "p95",
        "tokens in/out",
        "cost",
        "saved",
        "cache hits",
        "escalated",
    ):
        table.add_column(header, justify="right")

    def cells(row: dict[str, Any]) -> list[str]:
        verdicts = row["accepted"] + row["rejected"]
        approx = bool(row.get("estimated_requests"))  # some of its costs are estimates
        return [
            f"{row['requests']:,}",
            f"{_pct(row['acceptance_rate'])} of {verdicts}" if verdicts else "–",
            _ms(row["p50_ms"]),
            _ms(row["p95_ms"]),
            f"{'≈' if approx else ''}{row['input_tokens']:,} / {row['output_tokens']:,}",
            _usd(row["cost_usd_exact"], approx),
            _usd(row["saved_usd_exact"], approx),
            _pct(row["cache_hit_rate"]),
            _pct(row["escalation_rate"]),
        ]

    for row in summary[f"by_{by}"]:
        table.add_row(*[str(row[n] or "–") for n in names], *cells(row))
    totals = summary["totals"]
    table.add_section()
    table.add_row("total", *([""] * (len(names) - 1)), *cells(totals), style="bold")
    console = _console()
    console.print(table)
    cost = Decimal(totals["cost_usd_exact"])
    saved = Decimal(totals["saved_usd_exact"])
    if cost + saved > 0:
        console.print(
            f"Saved {_usd(str(saved))} against sending every request to premium "
            f"({float(saved / (cost + saved)):.0%} of {_usd(str(cost + saved))})."
        )
    if totals.get("estimated_requests"):
        console.print(metrics.estimated_note(totals["estimated_requests"]))
    if totals["errors"] or totals["cancelled"]:
        console.print(f"{totals['errors']} failed, {totals['cancelled']} cancelled.")
    for found in regressions:
        console.print(f"[bold red]Regression:[/] {found.message()}")
    console.print(f"[dim]{path}[/]")


# --------------------------------------------------------------------------- report


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} report",
        description="Write an HTML page with charts of spend, tiers, acceptance and latency.",
    )
    parser.add_argument("--out", type=Path, default=Path("mmx-report"), help="output directory")
    parser.add_argument("--since", help="7d, 24h, 30m, or a date such as 2026-11-01")
    _common(parser)
    return parser


def report_main(argv: Sequence[str] | None = None) -> int:
    """`mmx-lsp report …`; returns the exit status."""
    return _run(_report, argv)


def _report(argv: Sequence[str] | None) -> int:
    args = report_parser().parse_args(argv)
    since = _since(args.since)
    path = _database(args)
    try:
        from mmx_lsp import report
    except ImportError as exc:
        print(
            f"{PROG} report needs matplotlib: pip install 'mmx-lsp[report]' ({exc})",
            file=sys.stderr,
        )
        return 1
    conn = _connect(path)
    try:
        page = report.write_report(conn, args.out, since=since, title_since=args.since)
    finally:
        conn.close()
    print(page)
    return 0


# --------------------------------------------------------------------------- models


def models_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} models",
        description="Tiers, models, versions and prices, with where each price came from.",
    )
    parser.add_argument("--all", action="store_true", help="also list the built-in price table")
    parser.add_argument("--json", action="store_true")
    _common(parser)
    return parser


def models_main(argv: Sequence[str] | None = None) -> int:
    """`mmx-lsp models …`; returns the exit status."""
    return _run(_models, argv)


def model_rows(settings: Settings, seen: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per tier: the model, its pinned version, prices and their source."""
    import re

    from mmx_lsp.pricing import builtin_table, price_for

    table = builtin_table()
    out = []
    for tier_name, tier in settings.tiers.items():
        price = price_for(tier, table)
        dated = re.search(r"-(\d{4}-\d{2}-\d{2}|\d{4})$", tier.model)
        if price is None:
            source = "unknown: set input_usd_per_mtok and output_usd_per_mtok"
        elif price.source == "configuration":
            source = "configuration"
        else:
            source = f"built-in table ({price.source}, {price.as_of})"
        out.append(
            {
                "tier": tier_name,
                "provider": tier.provider,
                "model": tier.model,
                "api": tier.api,
                "version": dated.group(1) if dated else None,
                "versions_seen": seen.get(tier.model, []),
                "input_usd_per_mtok": None if price is None else str(price.input),
                "cached_input_usd_per_mtok": None if price is None else str(price.cached_input),
                "output_usd_per_mtok": None if price is None else str(price.output),
                "price_source": source,
            }
        )
    return out


def _models(argv: Sequence[str] | None) -> int:
    from mmx_lsp.pricing import builtin_table

    args = models_parser().parse_args(argv)
    settings = _settings(args.workspace)
    path = _database(args, settings)
    seen: dict[str, list[str]] = {}
    if path.exists():
        conn, _ = metrics.open_database(path)
        try:
            seen = metrics.recent_versions(conn, time.time() - 30 * 86400)
        finally:
            conn.close()
    rows = model_rows(settings, seen)
    table = builtin_table()
    builtin = [
        {
            "model": name,
            "input_usd_per_mtok": str(p.input),
            "cached_input_usd_per_mtok": str(p.cached_input),
            "output_usd_per_mtok": str(p.output),
            "source": p.source,
            "as_of": p.as_of,
        }
        for name, p in sorted(table.models.items())
    ]
    if args.json:
        payload: dict[str, Any] = {"tiers": rows, "builtin_as_of": table.as_of}
        if args.all:
            payload["builtin"] = builtin
        print(json.dumps(payload, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    tiers = Table(title="mmx tiers", title_justify="left")
    for header in ("tier", "provider", "model", "api", "version", "seen (30 days)"):
        tiers.add_column(header)
    for header in ("input $/Mtok", "cached $/Mtok", "output $/Mtok"):
        tiers.add_column(header, justify="right")
    tiers.add_column("price from")
    for row in rows:
        tiers.add_row(
            row["tier"],
            row["provider"],
            row["model"],
            row["api"],
            row["version"] or "unpinned",
            ", ".join(row["versions_seen"]) or "–",
            row["input_usd_per_mtok"] or "?",
            row["cached_input_usd_per_mtok"] or "?",
            row["output_usd_per_mtok"] or "?",
            row["price_source"],
        )
    console.print(tiers)
    if args.all:
        known = Table(title=f"built-in prices (as of {table.as_of})", title_justify="left")
        for header in ("model", "input $/Mtok", "cached $/Mtok", "output $/Mtok", "source"):
            known.add_column(header)
        for entry in builtin:
            known.add_row(
                entry["model"],
                entry["input_usd_per_mtok"],
                entry["cached_input_usd_per_mtok"],
                entry["output_usd_per_mtok"],
                f"{entry['source']}, {entry['as_of']}",
            )
        console.print(known)
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS = {"stats": stats_main, "report": report_main, "models": models_main}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mmx_lsp.stats_cli stats|report|models …` until the main CLI dispatches."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m mmx_lsp.stats_cli {{{','.join(COMMANDS)}}} …", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
