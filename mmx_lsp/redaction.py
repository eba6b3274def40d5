"""Secrets never reach a log: API keys (and anything shaped like one) are redacted from
every log record and from every text shown to the user (`redact`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_KEY_SHAPES = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/\-]+=*"),
    re.compile(r"(?i)((?:api[-_]?key|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)
_MIN_SECRET_LEN = 4


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like an API key replaced."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _KEY_SHAPES[0].sub(REDACTED, text)
    text = _KEY_SHAPES[1].sub("Bearer " + REDACTED, text)
    return _KEY_SHAPES[2].sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that removes secrets (and key-shaped strings) from every record.

    The message, its arguments and any formatted traceback are redacted; records are never
    dropped. Secrets shorter than four characters are ignored (they would mangle the logs).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = self.secrets | frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def install_redaction(
    secrets: Iterable[str] = (), logger: logging.Logger | None = None
) -> RedactingFilter:
    """Attach one RedactingFilter to `logger` (default: the root logger) and its handlers.

    Records from child loggers pass through the handlers, so attaching to them covers the
    records that propagate; attaching to the logger covers records logged to it directly.
    """
    target = logger or logging.getLogger()
    redactor = RedactingFilter(secrets)
    target.addFilter(redactor)
    for handler in target.handlers:
        handler.addFilter(redactor)
    return redactor
