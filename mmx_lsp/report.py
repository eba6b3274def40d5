"""A self-contained HTML report of the metrics, with PNG charts drawn by matplotlib."""

from __future__ import annotations

import base64
import datetime as dt
import html
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display; must come before pyplot

from mmx_lsp import metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIER_COLOURS = {"cheap": "#2a9d8f", "premium": "#e76f51"}
OTHER_COLOURS = ("#264653", "#e9c46a", "#8ab17d", "#6d597a", "#f4a261", "#457b9d")


@dataclass
class ReportData:
    """What the charts need, read from the daily tables of one window."""

    days: list[str] = field(default_factory=list)
    cost_by_day_tier: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    requests_by_day_tier: dict[str, dict[str, int]] = field(default_factory=dict)
    saved_by_day: dict[str, Decimal] = field(default_factory=dict)
    verdicts_by_model: dict[str, tuple[int, int]] = field(default_factory=dict)
    latency_by_tier: dict[str, dict[float, int]] = field(default_factory=dict)


def collect(conn: sqlite3.Connection, since: float | None) -> ReportData:
    data = ReportData()
    window = metrics.window(conn, since, ("model",))
    accepted = metrics.SUMS.index("accepted")
    rejected = metrics.SUMS.index("rejected")
    cost = metrics.SUMS.index("cost_pusd")
    saved = metrics.SUMS.index("saved_pusd")
    requests = metrics.SUMS.index("requests")
    verdicts: dict[str, list[int]] = {}
    for (day, model, _version, tier, _kind, _language), values in window.daily:
        by_tier = data.cost_by_day_tier.setdefault(day, {})
        by_tier[tier] = by_tier.get(tier, Decimal(0)) + metrics.from_pico(int(values[cost]))
        counts = data.requests_by_day_tier.setdefault(day, {})
        counts[tier] = counts.get(tier, 0) + int(values[requests])
        data.saved_by_day[day] = data.saved_by_day.get(day, Decimal(0)) + metrics.from_pico(
            int(values[saved])
        )
        pair = verdicts.setdefault(model, [0, 0])
        pair[0] += int(values[accepted])
        pair[1] += int(values[rejected])
    data.days = sorted(data.cost_by_day_tier)
    data.verdicts_by_model = {m: (a, r) for m, (a, r) in sorted(verdicts.items())}
    for _dim, _key, tier, ms, _day, count in window.latency:
        hist = data.latency_by_tier.setdefault(tier, {})
        mid = metrics.bucket_mid(ms)
        hist[mid] = hist.get(mid, 0) + count
    return data


def _colour(name: str, index: int) -> str:
    return TIER_COLOURS.get(name, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def _figure() -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    return fig


def _empty(fig: Figure, title: str) -> Figure:
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, "no requests in this window", ha="center", va="center", color="#777")
    ax.set_axis_off()
    return fig


def _tiers(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    found = {tier for per_day in rows.values() for tier in per_day}
    order = list(TIER_COLOURS)
    return sorted(found, key=lambda t: (order.index(t) if t in order else len(order), t))


def _day_labels(days: Sequence[str]) -> list[str]:
    return [dt.date.fromisoformat(d).strftime("%b %d") for d in days]


def _bars_by_tier(
    ax: Any, days: Sequence[str], by_day: Mapping[str, Mapping[str, Any]], *, shares: bool
) -> None:
    """One bar per day, stacked by tier: amounts, or each tier's share of the day."""
    bottom = [0.0] * len(days)
    totals = [(sum(by_day[d].values()) or 1) if shares else 1 for d in days]
    for i, tier in enumerate(_tiers(by_day)):
        heights = [
            float(by_day[d].get(tier, 0)) / total for d, total in zip(days, totals, strict=True)
        ]
        ax.bar(range(len(days)), heights, bottom=bottom, label=tier, color=_colour(tier, i))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    _days_axis(ax, days)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))


def spend_chart(data: ReportData) -> Figure:
    fig = _figure()
    if not data.days:
        return _empty(fig, "Spend per day")
    ax = fig.subplots()
    _bars_by_tier(ax, data.days, data.cost_by_day_tier, shares=False)
    ax.set_title("Spend per day (US$)")
    return fig


def tier_mix_chart(data: ReportData) -> Figure:
    fig = _figure()
    if not data.days:
        return _empty(fig, "Tier mix")
    ax = fig.subplots()
    _bars_by_tier(ax, data.days, data.requests_by_day_tier, shares=True)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title("Tier mix (share of requests per day)")
    return fig


def acceptance_chart(data: ReportData) -> Figure:
    fig = _figure()
    rated = {m: v for m, v in data.verdicts_by_model.items() if sum(v)}
    if not rated:
        return _empty(fig, "Acceptance by model")
    ax = fig.subplots()
    names = list(rated)
    rates = [a / (a + r) for a, r in rated.values()]
    bars = ax.barh(names, rates, color=[OTHER_COLOURS[i % 6] for i in range(len(names))])
    for bar, (a, r) in zip(bars, rated.values(), strict=True):
        ax.text(
            bar.get_width() + 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{a}/{a + r}",
            va="center",
        )
    ax.set_xlim(0, 1.15)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title("Acceptance by model (accepted / answered with a verdict)")
    return fig


def latency_chart(data: ReportData) -> Figure:
    fig = _figure()
    if not any(data.latency_by_tier.values()):
        return _empty(fig, "Latency")
    ax = fig.subplots()
    for i, (tier, hist) in enumerate(sorted(data.latency_by_tier.items())):
        values = sorted(hist)
        counts = [hist[v] for v in values]
        ax.hist(
            [max(v, 1.0) for v in values],
            weights=counts,
            bins=_log_bins(values),
            alpha=0.6,
            label=tier,
            color=_colour(tier, i),
        )
    ax.set_xscale("log")
    ax.set_xlabel("ms (cache hits excluded)")
    ax.set_title("Latency distribution")
    ax.legend()
    return fig


def savings_chart(data: ReportData) -> Figure:
    fig = _figure()
    if not data.days:
        return _empty(fig, "Savings")
    ax = fig.subplots()
    spent = saved = Decimal(0)
    spent_line, saved_line = [], []
    for day in data.days:
        spent += sum(data.cost_by_day_tier[day].values(), Decimal(0))
        saved += data.saved_by_day.get(day, Decimal(0))
        spent_line.append(float(spent))
        saved_line.append(float(saved))
    x = list(range(len(data.days)))
    ax.plot(x, spent_line, marker="o", label="spent", color=TIER_COLOURS["premium"])
    ax.plot(x, saved_line, marker="o", label="saved against all-premium", color="#2a9d8f")
    ax.fill_between(x, saved_line, alpha=0.15, color="#2a9d8f")
    ax.set_title("Cumulative spend and savings (US$)")
    _days_axis(ax, data.days)
    ax.legend(loc="upper left")
    return fig


def _log_bins(values: Sequence[float]) -> list[float]:
    low, high = max(min(values), 1.0), max(max(values), 2.0)
    steps = 30
    ratio = (high * 1.01 / low) ** (1 / steps)
    return [low * ratio**i for i in range(steps + 1)]


def _days_axis(ax: Any, days: Sequence[str]) -> None:
    labels = _day_labels(days)
    step = max(1, len(days) // 12)
    ax.set_xticks(range(0, len(days), step), labels[::step], rotation=45, ha="right")


CHARTS = (
    ("spend_per_day", "Spend per day", spend_chart),
    ("tier_mix", "Tier mix", tier_mix_chart),
    ("acceptance_by_model", "Acceptance by model", acceptance_chart),
    ("latency", "Latency distribution", latency_chart),
    ("savings", "Savings", savings_chart),
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       color: #1d2a30; background: #fbfaf7; }}
h1 {{ margin-bottom: 0.2rem; }} .sub {{ color: #667; margin-top: 0; }}
.cards {{ display: flex; gap: 1rem; flex-wrap: wrap; margin: 1.2rem 0; }}
.card {{ background: #fff; border: 1px solid #e3e0d8; border-radius: 8px; padding: 0.7rem 1rem;
        min-width: 9rem; }}
.card b {{ display: block; font-size: 1.4rem; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; margin: 1rem 0; }}
th, td {{ border-bottom: 1px solid #e3e0d8; padding: 0.35rem 0.6rem; text-align: right; }}
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
figure {{ margin: 1.5rem 0; }} img {{ max-width: 100%; border: 1px solid #e3e0d8; }}
.warn {{ background: #fdecea; border: 1px solid #e76f51; padding: 0.6rem 1rem; }}
.note {{ color: #555; font-size: 0.9rem; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="sub">{window} · generated {generated}</p>
<div class="cards">{cards}</div>
{regressions}
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{notes}
{figures}
</body></html>
"""


def _card(label: str, value: str) -> str:
    return f'<div class="card">{html.escape(label)}<b>{html.escape(value)}</b></div>'


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _usd(text: str, approx: bool = False) -> str:
    from mmx_lsp.pricing import format_usd

    return format_usd(Decimal(text), approx=approx)


def render_html(
    summary: Mapping[str, Any],
    images: Sequence[tuple[str, str, bytes]],
    regressions: Sequence[metrics.Regression],
    *,
    window: str,
) -> str:
    totals = summary["totals"]
    # "≈" marks amounts that include estimated costs; a note under the table says so.
    approx = bool(totals.get("estimated_requests"))
    notes = (
        f'<p class="note">{html.escape(metrics.estimated_note(totals["estimated_requests"]))}</p>'
        if approx
        else ""
    )
    cards = "".join(
        (
            _card("requests", f"{totals['requests']:,}"),
            _card("spent", _usd(totals["cost_usd_exact"], approx)),
            _card("saved vs all-premium", _usd(totals["saved_usd_exact"], approx)),
            _card("accepted", _pct(totals["acceptance_rate"])),
            _card("cache hits", _pct(totals["cache_hit_rate"])),
            _card("escalated", _pct(totals["escalation_rate"])),
            _card("p50 / p95", f"{totals['p50_ms'] or '–'} / {totals['p95_ms'] or '–'} ms"),
        )
    )
    heads = ["model", "tier", "requests", "accepted", "p50 ms", "p95 ms", "cost", "saved"]
    head = "".join(f"<th>{h}</th>" for h in heads)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                row["model"],
                row["tier"],
                f"{row['requests']:,}",
                _pct(row["acceptance_rate"]),
                row["p50_ms"] if row["p50_ms"] is not None else "–",
                row["p95_ms"] if row["p95_ms"] is not None else "–",
                _usd(row["cost_usd_exact"], bool(row.get("estimated_requests"))),
                _usd(row["saved_usd_exact"], bool(row.get("estimated_requests"))),
            )
        )
        + "</tr>"
        for row in summary["by_model"]
    )
    figures = "\n".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"></figure>'
        for _name, title, png in images
    )
    warnings = "".join(
        f'<p class="warn">{html.escape(found.message())}</p>' for found in regressions
    )
    return PAGE.format(
        title="mmx-lsp: spend, acceptance and latency",
        window=html.escape(window),
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        cards=cards,
        regressions=warnings,
        head=head,
        body=body,
        notes=notes,
        figures=figures,
    )


def write_report(
    conn: sqlite3.Connection,
    out: Path,
    *,
    since: float | None = None,
    title_since: str | None = None,
    policy: metrics.RegressionPolicy | None = None,
) -> Path:
    """Write `index.html` (charts embedded, no external files) and one PNG per chart into
    `out`; returns the page's path."""
    import io

    out.mkdir(parents=True, exist_ok=True)
    data = collect(conn, since)
    images: list[tuple[str, str, bytes]] = []
    for name, title, draw in CHARTS:
        fig = draw(data)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        png = buffer.getvalue()
        (out / f"{name}.png").write_bytes(png)
        images.append((name, title, png))
    summary = metrics.summarize(conn, since=since, by="model")
    regressions = metrics.find_regressions(conn, policy or metrics.RegressionPolicy())
    window = f"since {title_since}" if title_since else "everything recorded"
    page = out / "index.html"
    page.write_text(render_html(summary, images, regressions, window=window), encoding="utf-8")
    return page
