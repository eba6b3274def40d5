"""Spend and budget accounting: what model calls cost today and in this session.

Today's spend is what routing weighs against `routing.daily_budget_usd`; it starts again at
local midnight (the day the user's budget is about).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal


def _today() -> str:
    return dt.date.today().isoformat()


class Spend:
    """Exact (Decimal) spend of one server: today's and the session's."""

    def __init__(self, today: Callable[[], str] = _today) -> None:
        self._today = today
        self.day = today()
        self._spent_today = Decimal(0)
        self.session_usd = Decimal(0)

    @property
    def today_usd(self) -> Decimal:
        """What today's calls cost (zero again after midnight)."""
        self._roll()
        return self._spent_today

    def charge(self, cost: Decimal) -> None:
        """Add a finished call's cost to today's and the session's spend (once per call)."""
        self._roll()
        self._spent_today += cost
        self.session_usd += cost

    def budget_left(self, budget: Decimal | None) -> Decimal | None:
        return None if budget is None else budget - self.today_usd

    def _roll(self) -> None:
        today = self._today()
        if today != self.day:
            self.day, self._spent_today = today, Decimal(0)
