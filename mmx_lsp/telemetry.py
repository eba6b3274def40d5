"""OpenTelemetry spans and metrics per request (GenAI semantic conventions); a no-op without it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from mmx_lsp import __version__
from mmx_lsp.metrics import Record, as_record

log = logging.getLogger("mmx_lsp.telemetry")

SCOPE = "mmx_lsp"
# Attribute names from the OpenTelemetry GenAI semantic conventions.
OPERATION = "gen_ai.operation.name"
SYSTEM = "gen_ai.system"
PROVIDER = "gen_ai.provider.name"  # the newer name of gen_ai.system; both are set
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
DURATION_METRIC = "gen_ai.client.operation.duration"
TOKENS_METRIC = "gen_ai.client.token.usage"
# Duration buckets the conventions recommend (seconds), and token-count buckets.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


class Sink(Protocol):
    """What MetricsStore and the server call; both implementations below have it."""

    enabled: bool

    def emit(self, record: Record | Mapping[str, Any]) -> None: ...


class NullTelemetry:
    """Telemetry when OpenTelemetry is not installed or not configured: does nothing."""

    enabled = False

    def emit(self, record: Record | Mapping[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class Call:
    """One model call of a request, as spans and metrics see it."""

    tier: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float | None
    passed: bool | None
    cost_usd: Decimal | None


def _calls(record: Record) -> list[Call]:
    """The model calls of a record: its attempts when it lists them, else the request itself
    (unless the answer came from the cache: then no model was called)."""
    found: list[Call] = []
    attempts = record.attempts if isinstance(record.attempts, list | tuple) else []
    for attempt in attempts:
        if isinstance(attempt, Mapping):
            get = attempt.get
        else:
            names = ("tier", "model", "input_tokens", "output_tokens", "latency_ms", "passed")
            get = {n: getattr(attempt, n, None) for n in (*names, "cost_usd")}.get
        latency = get("latency_ms")
        cost = get("cost_usd")
        found.append(
            Call(
                tier=str(get("tier") or record.tier),
                model=str(get("model") or record.model),
                input_tokens=int(get("input_tokens") or 0),
                output_tokens=int(get("output_tokens") or 0),
                latency_ms=None if latency is None else float(latency),
                passed=get("passed"),
                cost_usd=None if cost is None else Decimal(str(cost)),
            )
        )
    if not found and not record.cached and (record.input_tokens or record.output_tokens):
        found.append(
            Call(
                tier=record.tier,
                model=record.model,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                latency_ms=record.model_ms if record.model_ms is not None else record.latency_ms,
                passed=None,
                cost_usd=record.cost_usd,
            )
        )
    return found


class Telemetry:
    """Spans and metrics from the given (or the globally configured) OpenTelemetry providers.

    A request becomes an internal span `mmx <kind>` with one client span per model call
    (`chat gpt-5-mini`), timed from the record, and points on the GenAI client histograms
    `gen_ai.client.operation.duration` and `gen_ai.client.token.usage`.
    """

    enabled = True

    def __init__(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        system: str = "openai",
    ) -> None:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace

        self.system = system
        self._trace = trace
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or otel_metrics.get_meter_provider()
        self._tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter = meter_provider.get_meter(SCOPE, __version__)
        self._duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            TOKENS_METRIC,
            unit="{token}",
            description="Measures number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._cost = meter.create_counter(
            "mmx.cost", unit="USD", description="Spend on model calls, in US dollars."
        )
        self._requests = meter.create_counter(
            "mmx.requests", unit="{request}", description="Requests routed, by tier and kind."
        )

    def emit(self, record: Record | Mapping[str, Any]) -> None:
        """Spans and metric points for one finished request (called after it is recorded)."""
        if not isinstance(record, Record):
            record, _extra = as_record(record)
        trace = self._trace
        operation = record.operation or "chat"
        system = record.system or self.system
        end_s = float(record.time)
        total_ms = record.latency_ms or 0.0
        start_s = end_s - total_ms / 1000
        base = {OPERATION: operation, SYSTEM: system, PROVIDER: system}
        request_attrs: dict[str, Any] = {
            **base,
            REQUEST_MODEL: record.model,
            RESPONSE_MODEL: _response_model(record.model, record.model_version),
            INPUT_TOKENS: int(record.input_tokens or 0),
            OUTPUT_TOKENS: int(record.output_tokens or 0),
            "mmx.request_id": record.request_id,
            "mmx.kind": record.kind,
            "mmx.tier": record.tier,
            "mmx.cached": bool(record.cached),
            "mmx.escalated": bool(record.escalated),
            "mmx.cost_usd": str(record.cost_usd),
        }
        if record.language:
            request_attrs["mmx.language"] = record.language
        if record.saved_usd is not None:
            request_attrs["mmx.saved_usd"] = str(record.saved_usd)
        if record.error:
            request_attrs[ERROR_TYPE] = "cancelled" if record.cancelled else "mmx.request_error"
        parent = self._tracer.start_span(
            f"mmx {record.kind}",
            kind=trace.SpanKind.INTERNAL,
            start_time=_ns(start_s),
            attributes=request_attrs,
        )
        if record.error and not record.cancelled:
            parent.set_status(trace.Status(trace.StatusCode.ERROR, record.error[:200]))
        context = trace.set_span_in_context(parent)
        at = start_s
        for call in _calls(record):
            duration_s = (call.latency_ms or 0.0) / 1000
            attrs: dict[str, Any] = {
                **base,
                REQUEST_MODEL: call.model,
                RESPONSE_MODEL: _response_model(call.model, record.model_version)
                if call.model == record.model
                else call.model,
                INPUT_TOKENS: call.input_tokens,
                OUTPUT_TOKENS: call.output_tokens,
                "mmx.tier": call.tier,
            }
            if call.passed is not None:
                attrs["mmx.verified"] = bool(call.passed)
            if call.cost_usd is not None:
                attrs["mmx.cost_usd"] = str(call.cost_usd)
            span = self._tracer.start_span(
                f"{operation} {call.model}",
                context=context,
                kind=trace.SpanKind.CLIENT,
                start_time=_ns(at),
                attributes=attrs,
            )
            span.end(end_time=_ns(min(at + duration_s, end_s) if total_ms else at + duration_s))
            at += duration_s
            metric_attrs = {
                **base,
                REQUEST_MODEL: call.model,
                RESPONSE_MODEL: attrs[RESPONSE_MODEL],
            }
            if record.error and not record.cancelled:
                metric_attrs[ERROR_TYPE] = "mmx.request_error"
            if call.latency_ms is not None:
                self._duration.record(duration_s, metric_attrs)
            self._tokens.record(call.input_tokens, {**metric_attrs, TOKEN_TYPE: "input"})
            self._tokens.record(call.output_tokens, {**metric_attrs, TOKEN_TYPE: "output"})
        parent.end(end_time=_ns(end_s))
        self._requests.add(
            1, {"mmx.tier": record.tier, "mmx.kind": record.kind, "mmx.cached": record.cached}
        )
        if record.cost_usd:
            self._cost.add(float(record.cost_usd), {REQUEST_MODEL: record.model, **base})


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _response_model(model: str, version: str | None) -> str:
    """The model that answered: the dated snapshot when the version is known."""
    if not version or model.endswith(version):
        return model
    return f"{model}-{version}"


def make_telemetry(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    *,
    system: str = "openai",
) -> Telemetry | NullTelemetry:
    """Telemetry for the given providers; else for the global ones when an OpenTelemetry SDK
    has been configured (for example by `opentelemetry-instrument mmx-lsp`); else a no-op.
    Never raises: an unusable OpenTelemetry installation is logged and ignored."""
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace
    except ImportError:
        return NullTelemetry()
    if tracer_provider is None and meter_provider is None:
        unset_trace = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        unset_metrics = type(otel_metrics.get_meter_provider()).__name__.startswith(
            ("_Proxy", "NoOp")
        )
        if unset_trace and unset_metrics:
            return NullTelemetry()
    try:
        return Telemetry(tracer_provider, meter_provider, system=system)
    except (ImportError, AttributeError, TypeError) as exc:
        log.warning("OpenTelemetry is installed but cannot be used: %s", exc)
        return NullTelemetry()
