"""Time windows: the one reading of `since`, for `mmx.stats`, `mmx-lsp stats` and `report`.

`since` is one of:

- a duration back from now: `30s`, `30m`, `24h`, `7d`, `2w` (`min` for minutes too);
- an ISO 8601 date or time: `2026-11-01`, `2026-11-01T09:30`. Without a zone it is this
  machine's local time (the time the user reads on their clock, and the days `mmx-lsp stats
  --by day` groups by); with one (`Z`, `+02:00`) it is that zone's;
- epoch seconds (a number, or a string of more than eight digits).

It is the same through the editor (`mmx.stats {since}`) and on the command line.
"""

from __future__ import annotations

import datetime as dt
import re
import time

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: float | int | str | None, now: float | None = None) -> float | None:
    """Epoch seconds from `7d`, `24h`, `30m`, `2w`, an ISO 8601 date or time (local time when
    it has no zone), or epoch seconds; None for no window. Raises ValueError with a message
    for people."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("since must be a duration (7d, 24h), a date (2026-11-01) or a time")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    if re.fullmatch(r"\d+(\.\d+)?", text) and len(text) > 8:
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read since={text!r}: use a duration such as 7d, 24h or 30m, "
            "a date such as 2026-11-01, or a time such as 2026-11-01T09:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()
