"""One request record: its fields, exact money in pico-dollars, and its row."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from mmx_lsp.metrics.schema import PICO, VERDICTS

# --------------------------------------------------------------------------- records


def to_pico(value: Any) -> int | None:
    """Exact integer pico-dollars of an amount (Decimal, str, int or float)."""
    if value is None:
        return None
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        return int((amount * PICO).to_integral_value(ROUND_HALF_EVEN))
    except (InvalidOperation, ValueError):
        return None


def from_pico(value: int | None) -> Decimal:
    return Decimal(value or 0) / PICO


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, default=_jsonable, separators=(",", ":"), sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


@dataclass
class Record:
    """One routed request. Field names follow the pipeline's record and `mmx/status`."""

    request_id: str
    kind: str
    tier: str
    model: str
    time: float = field(default_factory=time.time)
    language: str | None = None
    features: Mapping[str, Any] | None = None
    score: float | None = None
    model_version: str | None = None
    rule: Any = None
    override: str | None = None
    template_version: str | None = None
    cached: bool = False
    escalated: bool = False
    attempts: Any = None
    queue_ms: float | None = None
    model_ms: float | None = None
    latency_ms: float | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal | None = None
    verdict: str | None = None
    error: str | None = None
    cancelled: bool = False
    prompt: str | None = None
    operation: str | None = None
    system: str | None = None


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))
_ALIASES = {"ts": "time", "total_ms": "latency_ms", "prompt_template_version": "template_version"}


# Facts without a column are kept only when they cannot carry code or prompt text: numbers,
# flags, short strings, tables of numbers, and lists of rows of those (one per model call),
# under names that do not suggest text.
_TEXT_KEYS = frozenset(
    {"preview", "prompt", "messages", "text", "answer", "completion", "suffix", "context"}
)
_SHORT = 200


def _harmless(key: str, value: Any) -> bool:
    if key in _TEXT_KEYS:
        return False
    if isinstance(value, bool | int | float | Decimal):
        return True
    if isinstance(value, str):
        return len(value) <= _SHORT
    if isinstance(value, Mapping):
        return all(isinstance(v, int | float | Decimal) for v in value.values())
    if isinstance(value, list):
        return all(isinstance(row, Mapping) and _harmless_row(row) for row in value)
    return False


def _harmless_row(row: Mapping[str, Any]) -> bool:
    return all(
        isinstance(k, str) and not isinstance(v, Mapping | list) and _harmless(k, v)
        for k, v in row.items()
    )


def as_record(
    item: Mapping[str, Any] | Any, when: float | None = None
) -> tuple[Record, dict[str, Any]]:
    """A Record from a dict or a dataclass (such as status.Status), and the facts that
    have no column (kept as JSON in `extra`); `when` is the time of a record without one."""
    if isinstance(item, Record):
        return item, {}
    if isinstance(item, Mapping):
        data = dict(item)
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        data = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    else:
        raise TypeError(f"a metrics record is a dict or a dataclass, not {type(item).__name__}")
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        name = _ALIASES.get(key, key)
        if name in _RECORD_FIELDS:
            known[name] = value
        elif value is not None and value is not False and _harmless(key, value):
            extra[key] = value
    for required in ("request_id", "kind", "tier", "model"):
        known.setdefault(required, "")
    if known.get("time") is None:
        known.pop("time", None)
        if when is not None:
            known["time"] = when
    return Record(**known), extra


def _row(record: Record, extra: Mapping[str, Any], store_prompts: bool) -> tuple[Any, ...]:
    cost = record.cost_usd if record.cost_usd is not None else Decimal(0)
    cost_pusd = to_pico(cost) or 0
    saved_pusd = to_pico(record.saved_usd)
    extra = dict(extra)
    if record.operation:
        extra["operation"] = record.operation
    if record.system:
        extra["system"] = record.system
    verdict = record.verdict if record.verdict in VERDICTS else None
    return (
        float(record.time),
        str(record.request_id),
        record.language,
        str(record.kind),
        _json(dict(record.features)) if record.features is not None else None,
        None if record.score is None else float(record.score),
        str(record.tier),
        str(record.model),
        record.model_version,
        _json(record.rule),
        None if record.override is None else str(record.override),
        record.template_version,
        int(bool(record.cached)),
        int(bool(record.escalated)),
        _json(record.attempts),
        record.queue_ms,
        record.model_ms,
        record.latency_ms,
        int(record.input_tokens or 0),
        int(record.cached_input_tokens or 0),
        int(record.output_tokens or 0),
        str(cost),
        cost_pusd,
        None if record.saved_usd is None else str(record.saved_usd),
        saved_pusd,
        verdict,
        record.error,
        int(bool(record.cancelled)),
        record.prompt if store_prompts else None,
        _json(extra) if extra else None,
    )
