"""When a failed attempt runs again: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Retries after a failed attempt (an exception or a timeout)."""

    #: Further attempts after the first one fails; 0 means never retry.
    max_retries: int = 0
    #: Delay before the first retry; doubles each time.
    backoff_s: float = 1.0
    #: Upper bound of one delay.
    max_backoff_s: float = 300.0
    #: Spread delays over [delay/2, delay] so failed jobs do not retry in lockstep.
    jitter: bool = True
    #: Only these exception types are retried; empty means every Exception.
    retry_on: tuple[type[BaseException], ...] = ()

    def should_retry(self, failures: int, exc: BaseException | None) -> bool:
        """True when the attempt that just made `failures` failures deserves another."""
        if failures > self.max_retries:
            return False
        if exc is None or not self.retry_on:
            return True
        return isinstance(exc, self.retry_on)

    def next_delay_s(self, failures: int) -> float:
        """Delay before the attempt after the `failures`-th failure (1-based)."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1))
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return float(delay)
