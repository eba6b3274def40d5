"""A circuit breaker per tier: a tier that keeps failing is skipped for a cool-down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Failed HTTP attempts in a row (5xx, refused or dropped connections, timeouts, garbage)
# after which a tier is skipped, and for how long. After the cool-down one request probes
# the tier (half-open): its success closes the breaker, its failure opens it again.
FAILURES_TO_OPEN = 3
COOL_DOWN_S = 30.0
# A timeout says the tier is slow, not that it is down: only this many in a row (with no
# answer between them) open the breaker, and then the tier's requests go to the other one.
TIMEOUTS_TO_OPEN = 6


@dataclass
class Breaker:
    """Closed (calls go through), open (calls are skipped until the cool-down ends) or
    half-open (one probe call goes through; others are skipped until it ends)."""

    tier: str
    failures_to_open: int = FAILURES_TO_OPEN
    timeouts_to_open: int = TIMEOUTS_TO_OPEN
    cool_down_s: float = COOL_DOWN_S
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    failures: int = 0
    timeouts: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at < self.cool_down_s:
            return "open"
        return "half-open"

    def skip_reason(self) -> str | None:
        """None when a call may go through now (taking the probe when half-open), else what
        to tell the user: `cheap tier skipped for 30 s after 3 failures`."""
        state = self.state
        if state == "closed":
            return None
        if state == "half-open" and not self.probing:
            self.probing = True
            return None
        assert self.opened_at is not None
        left = max(0.0, self.cool_down_s - (self.clock() - self.opened_at))
        why = f"{self.tier} tier skipped for {self.cool_down_s:g} s after {self.failures} failures"
        if state == "half-open":
            return f"{why} (a probe call is under way)"
        return f"{why} (next try in {left:.0f} s)"

    def succeeded(self) -> None:
        self.failures = 0
        self.timeouts = 0
        self.opened_at = None
        self.probing = False

    def failed(self) -> bool:
        """Count one failed attempt; True when the breaker is (now) open."""
        self.failures += 1
        if self.probing or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()
            self.probing = False
            return True
        return False

    def timed_out(self) -> bool:
        """Count one call that ran out of time; True when the breaker is (now) open. A probe
        that times out opens it again; otherwise only repeated timeouts do."""
        self.timeouts += 1
        if self.probing or self.timeouts >= self.timeouts_to_open:
            self.failures = max(self.failures, self.timeouts)
            self.opened_at = self.clock()
            self.probing = False
            return True
        return False

    def abandoned(self) -> None:
        """A call ended without a verdict (cancelled): another request may probe."""
        self.probing = False
