"""When a failed attempt runs again: exponential backoff with jitter."""

from __future__ import annotations

import random
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass

from corq.errors import TaskDefinitionError
from corq.limits import MAX_DELAY_S

#: Largest power of two a float holds: the backoff's doubling stops there, so a job that
#: failed thousands of times still gets a delay (max_backoff) instead of an OverflowError.
_MAX_DOUBLINGS = 1023


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Retries after a failed attempt (an exception or a timeout).

    Checked when it is made (the task definition): a NaN or infinite backoff would give a
    failed job a retry time no clock reaches, leaving it waiting for ever.
    """

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

    def __post_init__(self) -> None:
        # Read as plain objects: the hints say what a caller should pass, not what it did.
        retries: object = self.max_retries
        jitter: object = self.jitter
        retry_on: object = self.retry_on
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TaskDefinitionError(
                f"retries must be a non-negative integer, got {reprlib.repr(retries)}"
            )
        _check_seconds("backoff", self.backoff_s)
        _check_seconds("max_backoff", self.max_backoff_s)
        if not isinstance(jitter, bool):
            raise TaskDefinitionError(f"jitter must be True or False, got {reprlib.repr(jitter)}")
        if not isinstance(retry_on, tuple):
            raise TaskDefinitionError("retry_on must be a tuple of exception classes")
        exception_classes(retry_on)

    def should_retry(self, failures: int, exc: BaseException | None) -> bool:
        """True when the attempt that just made `failures` failures deserves another."""
        if failures > self.max_retries:
            return False
        if exc is None or not self.retry_on:
            return True
        return isinstance(exc, self.retry_on)

    def next_delay_s(self, failures: int) -> float:
        """Delay before the attempt after the `failures`-th failure (1-based)."""
        doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
        delay = min(self.max_backoff_s, self.backoff_s * 2.0**doublings)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return float(delay)


def exception_classes(retry_on: object) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a tuple of exception classes: one class stands for itself."""
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if isinstance(retry_on, str | bytes) or not isinstance(retry_on, Iterable):
        raise TaskDefinitionError(
            f"retry_on takes an exception class or a tuple of them, got {reprlib.repr(retry_on)}"
        )
    classes = tuple(retry_on)  # read once: a generator cannot be checked, then used
    for exc_type in classes:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TaskDefinitionError(
                f"retry_on takes exception classes, got {reprlib.repr(exc_type)}"
            )
    return classes


def _check_seconds(what: str, value: object) -> None:
    """A non-negative number of seconds no longer than the longest delay (NaN and infinity
    fail the range test)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_DELAY_S
    ):
        raise TaskDefinitionError(
            f"{what} must be a number of seconds from 0 to {MAX_DELAY_S:,.0f} "
            f"(corq.limits.MAX_DELAY_S), got {reprlib.repr(value)}"
        )
