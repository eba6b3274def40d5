"""Exporters: the Prometheus text format, written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from mmx_lsp.metrics.regressions import Regression

# --------------------------------------------------------------------------- exporters


def _label(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def prometheus_text(summary: Mapping[str, Any], regressions: Sequence[Regression] = ()) -> str:
    """Prometheus text exposition (0.0.4) of a by-model summary. The values cover the
    summary's window, so they are gauges: retention makes them fall as well as rise."""
    rows = summary.get("by_model", [])
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    def labels(row: Mapping[str, Any], **more: str) -> str:
        pairs = {"model": row["model"], "tier": row["tier"], **more}
        return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"

    gauges = (
        ("mmx_requests", "requests", "Requests routed in the window."),
        ("mmx_cache_hits", "cache_hits", "Requests answered from the cache."),
        ("mmx_input_tokens", "input_tokens", "Input tokens reported by the provider."),
        ("mmx_output_tokens", "output_tokens", "Output tokens reported by the provider."),
        ("mmx_cost_usd", "cost_usd", "Spend in US dollars."),
        ("mmx_saved_usd", "saved_usd", "Saved against sending every request to premium."),
        ("mmx_escalations", "escalated", "Requests escalated to the next tier."),
        ("mmx_errors", "errors", "Requests that failed (cancellations excluded)."),
    )
    for name, key, help_text in gauges:
        family(name, "gauge", help_text)
        lines.extend(f"{name}{labels(row)} {_number(row[key])}" for row in rows)
    family("mmx_verdicts", "gauge", "The editor's verdicts on answers.")
    for row in rows:
        for verdict in ("accepted", "rejected"):
            lines.append(f"mmx_verdicts{labels(row, verdict=verdict)} {row[verdict]}")
    family("mmx_latency_ms", "summary", "Request latency in milliseconds (cache hits excluded).")
    for row in rows:
        for quantile, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
            lines.append(f"mmx_latency_ms{labels(row, quantile=quantile)} {_number(row[key])}")
        lines.append(f"mmx_latency_ms_sum{labels(row)} {_number(row['latency_sum_ms'])}")
        lines.append(f"mmx_latency_ms_count{labels(row)} {row['latency_count']}")
    family("mmx_acceptance_regression", "gauge", "1 when a model version's acceptance fell.")
    for found in regressions:
        pairs = f'model="{_label(found.model)}",model_version="{_label(found.model_version)}"'
        lines.append(f"mmx_acceptance_regression{{{pairs}}} 1")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers (node_exporter's textfile collector) never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
