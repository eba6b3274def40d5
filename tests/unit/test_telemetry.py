"""OpenTelemetry: GenAI spans and metrics from request records, and a no-op without the SDK."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mmx_lsp.metrics import MetricsStore
from mmx_lsp.status import Attempt
from mmx_lsp.telemetry import NullTelemetry, Telemetry, make_telemetry

END = 1_790_000_000.0


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


def escalated_record() -> dict[str, Any]:
    return {
        "request_id": "r1",
        "time": END,
        "kind": "refactor",
        "language": "python",
        "tier": "premium",
        "model": "gpt-5.5",
        "model_version": "2026-10-01",
        "escalated": True,
        "latency_ms": 2500.0,
        "input_tokens": 6000,
        "output_tokens": 380,
        "cost_usd": Decimal("0.04111"),
        "saved_usd": Decimal(0),
        "attempts": [
            Attempt("cheap", "gpt-5-mini", 3000, 180, Decimal("0.00111"), False, "ERROR", 900.0),
            Attempt("premium", "gpt-5.5", 3000, 200, Decimal("0.04"), True, "", 1500.0),
        ],
    }


def test_a_request_becomes_a_span_with_one_genai_client_span_per_model_call(otel: Otel) -> None:
    otel.telemetry.emit(escalated_record())
    spans = {s.name: s for s in otel.finished()}
    assert set(spans) == {"mmx refactor", "chat gpt-5-mini", "chat gpt-5.5"}
    parent, cheap, premium = spans["mmx refactor"], spans["chat gpt-5-mini"], spans["chat gpt-5.5"]
    assert cheap.parent is not None and cheap.parent.span_id == parent.context.span_id
    assert cheap.kind == SpanKind.CLIENT and parent.kind == SpanKind.INTERNAL
    assert dict(cheap.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-5-mini",
        "gen_ai.response.model": "gpt-5-mini",
        "gen_ai.usage.input_tokens": 3000,
        "gen_ai.usage.output_tokens": 180,
        "mmx.tier": "cheap",
        "mmx.verified": False,
        "mmx.cost_usd": "0.00111",
    }
    assert premium.attributes is not None
    assert premium.attributes["gen_ai.response.model"] == "gpt-5.5-2026-10-01"
    assert parent.attributes is not None
    assert parent.attributes["gen_ai.usage.input_tokens"] == 6000
    assert parent.attributes["mmx.cost_usd"] == "0.04111"
    # Timed from the record: the calls run one after the other and end with the request.
    assert parent.end_time == int(END * 1e9)
    assert parent.start_time == int((END - 2.5) * 1e9)
    assert cheap.start_time == parent.start_time
    assert premium.start_time == cheap.end_time


def test_token_and_duration_histograms_follow_the_genai_metric_names(otel: Otel) -> None:
    otel.telemetry.emit(escalated_record())
    tokens = otel.points("gen_ai.client.token.usage")
    by_type: dict[tuple[str, str], int] = {}
    for point in tokens:
        key = (point.attributes["gen_ai.request.model"], point.attributes["gen_ai.token.type"])
        by_type[key] = int(point.sum)
    assert by_type == {
        ("gpt-5-mini", "input"): 3000,
        ("gpt-5-mini", "output"): 180,
        ("gpt-5.5", "input"): 3000,
        ("gpt-5.5", "output"): 200,
    }
    durations = {
        p.attributes["gen_ai.request.model"]: p.sum
        for p in otel.points("gen_ai.client.operation.duration")
    }
    assert durations == pytest.approx({"gpt-5-mini": 0.9, "gpt-5.5": 1.5})
    cost = otel.points("mmx.cost")
    assert sum(p.value for p in cost) == pytest.approx(0.04111)


def test_a_cache_hit_has_no_model_call_span(otel: Otel) -> None:
    otel.telemetry.emit(
        {
            "request_id": "c1",
            "time": END,
            "kind": "inline",
            "tier": "cheap",
            "model": "gpt-5-mini",
            "cached": True,
            "latency_ms": 0.3,
            "attempts": 0,
        }
    )
    spans = otel.finished()
    assert [s.name for s in spans] == ["mmx inline"]
    assert spans[0].attributes is not None and spans[0].attributes["mmx.cached"] is True
    assert otel.points("gen_ai.client.token.usage") == []


def test_a_pipeline_record_without_attempt_details_is_one_call(otel: Otel) -> None:
    otel.telemetry.emit(
        {
            "request_id": "p1",
            "time": END,
            "kind": "inline",
            "tier": "cheap",
            "model": "gpt-5-mini",
            "latency_ms": 400.0,
            "input_tokens": 930,
            "output_tokens": 41,
            "cost_usd": Decimal("0.0003145"),
            "attempts": 1,
            "error": "provider returned 500",
        }
    )
    spans = {s.name: s for s in otel.finished()}
    call = spans["chat gpt-5-mini"]
    assert call.attributes is not None and call.attributes["gen_ai.usage.output_tokens"] == 41
    assert spans["mmx inline"].status.status_code == StatusCode.ERROR


def test_the_store_exports_after_writing(otel: Otel, tmp_path: Path) -> None:
    record = escalated_record()
    record["time"] = time.time()
    with MetricsStore(tmp_path / "m.sqlite3", telemetry=otel.telemetry, linger_s=0) as store:
        store.record(record)
        store.flush()
    assert len(otel.finished()) == 3


def test_explicit_providers_give_real_telemetry(otel: Otel) -> None:
    made = make_telemetry(otel.tracer_provider, otel.meter_provider)
    assert isinstance(made, Telemetry) and made.enabled


def test_unconfigured_opentelemetry_is_a_no_op() -> None:
    # The API's global providers are proxies until someone installs an SDK provider.
    made = make_telemetry()
    assert isinstance(made, NullTelemetry) and not made.enabled
    made.emit(escalated_record())


def test_without_opentelemetry_installed_telemetry_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    made = make_telemetry()
    assert isinstance(made, NullTelemetry)
    made.emit(escalated_record())
