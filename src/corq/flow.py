"""Flow control rules: what a task's limits are and what a keyed enqueue asks for.

Plain, checked values shared by the runtime (task options, enqueue options) and the brokers,
which apply them atomically at enqueue and claim time (see docs/design.md, "Flow control").
Everything here is checked when it is built: a bad rate, a limit of 0, a weight that is not
a positive integer is a clear error at definition time, never a surprise in a worker.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from corq.errors import FlowRuleError
from corq.types import TaskName

#: Longest fairness key or unique key (characters); longer ones are refused at enqueue.
MAX_KEY_CHARS = 200
#: Most jobs one batch call may take (``batch_size``).
MAX_BATCH_SIZE = 10_000

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"^\s*(\d+)?\s*/\s*(\d+)?\s*([smhd])\s*$")


class OverLimit(StrEnum):
    """What a job over its task's rate limit does."""

    #: Waits (throttled, no attempt used) until the limit lets it start.
    WAIT = "wait"
    #: Ends ``expired`` at once, counted (``FlowStats.dropped``) and visible with its reason.
    DROP = "drop"


class OnDuplicate(StrEnum):
    """What an enqueue whose ``unique_key`` is taken by a live job does."""

    #: Keep the existing job; the handle returned names it (``Outcome.EXISTING``).
    KEEP = "keep"
    #: Give the existing job, if it has not started, the new arguments (``REPLACED``); a
    #: running one is kept (``EXISTING``).
    REPLACE = "replace"
    #: Cancel the existing job (a running one too) and enqueue the new one (``CREATED``).
    CANCEL = "cancel"


class Outcome(StrEnum):
    """What an enqueue did with one job (``JobHandle.outcome``)."""

    #: A new job was written.
    CREATED = "created"
    #: A job with this id existed already: nothing was written (enqueue is idempotent by id).
    EXISTS = "exists"
    #: Its ``unique_key`` belongs to a live job (or one ended within the unique window):
    #: nothing was written, the handle names that job.
    EXISTING = "existing"
    #: The live job with its ``unique_key`` had not started: it now has these arguments.
    REPLACED = "replaced"
    #: Debounced: the pending job with its ``unique_key`` now runs later, with these arguments.
    DEBOUNCED = "debounced"
    #: Dropped by its ``cooldown`` (a call with the same key ran within the window); the
    #: handle names the job that opened the window. Counted in ``FlowStats.cooled``.
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` starts per `period_ms`, cluster-wide, with bursts of up to `count`.

    Brokers keep a GCRA state per limit (one timestamp): over any window of length T, at
    most ``count + count * T / period_ms`` jobs start (the limit plus one bucket).
    """

    count: int
    period_ms: int

    def __post_init__(self) -> None:
        count: object = self.count  # any value: rates are built from stored data too
        period: object = self.period_ms
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise FlowRuleError(f"a rate needs a count of at least 1, got {count!r}")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise FlowRuleError(f"a rate needs a period of at least 1 ms, got {period!r}")

    @classmethod
    def parse(cls, text: object) -> Rate:
        """``"50/s"``, ``"100/m"``, ``"/h"`` (one per hour), ``"5/10s"``; a Rate as it is."""
        if isinstance(text, Rate):
            return text
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None:
            raise FlowRuleError(
                f"a rate limit is written like '50/s', '100/m', '/h' or '5/10s', "
                f"got {reprlib.repr(text)}"
            )
        count, periods, unit = match.groups()
        return cls(int(count) if count else 1, int(periods or 1) * _UNITS_MS[unit])

    @property
    def interval_ms(self) -> float:
        """The time one start uses up (GCRA's emission interval)."""
        return self.period_ms / self.count

    def __str__(self) -> str:
        for unit, ms in _UNITS_MS.items():
            if self.period_ms == ms:
                return f"{self.count}/{unit}"
        return f"{self.count}/{self.period_ms}ms"


def check_limit(value: object, what: str) -> int | None:
    """`value` if it is None or an integer of at least 1, else a FlowRuleError naming `what`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FlowRuleError(f"{what} must be an integer of at least 1, got {reprlib.repr(value)}")
    return value


def check_weight(value: object, what: str) -> int:
    """A weight: a positive integer (at most 1,000), else a FlowRuleError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000:
        raise FlowRuleError(f"{what} must be an integer from 1 to 1000, got {reprlib.repr(value)}")
    return value


def check_key(value: object, what: str) -> str:
    """A fairness or unique key: a non-empty str of at most MAX_KEY_CHARS characters, with
    no control characters (brokers use ``\\x1f`` inside their own names)."""
    if not isinstance(value, str):
        raise FlowRuleError(
            f"{what} must be a str, got {type(value).__name__} {reprlib.repr(value)}"
        )
    if not value or len(value) > MAX_KEY_CHARS or any(ord(c) < 32 for c in value):
        raise FlowRuleError(
            f"{what} must be 1 to {MAX_KEY_CHARS} characters without control characters, "
            f"got {reprlib.repr(value)}"
        )
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRules:
    """A task's flow-control rules, as the broker applies them in one queue.

    A task has rules when any of these is set; its jobs then wait in lanes (one per key, or
    one for the task when it has no key function) that claims visit round robin, instead of
    the queue's plain ready set. Stored in the broker by ``FlowControl.set_rules`` (a worker
    at start, an app before its first enqueue of the task): every worker and producer sees
    the same rules.
    """

    task: TaskName
    #: Most jobs of the task running at once on all workers together.
    concurrency: int | None = None
    #: The task's jobs carry a fairness key (``key=`` function): one lane per key.
    keyed: bool = False
    #: Most jobs of one key running at once (1: strict order within a key).
    key_concurrency: int | None = None
    #: Starts of the task's jobs, all keys together.
    rate: Rate | None = None
    #: Starts per key.
    key_rate: Rate | None = None
    #: What a job over a rate limit does.
    over_limit: OverLimit = OverLimit.WAIT
    #: Lanes visited per round: a key's weight (default 1) is how many of its jobs start
    #: per turn of the round robin.
    key_weights: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_limit(self.concurrency, f"task {self.task!r}: concurrency")
        check_limit(self.key_concurrency, f"task {self.task!r}: key_concurrency")
        if not self.keyed and (
            self.key_concurrency is not None or self.key_rate is not None or self.key_weights
        ):
            raise FlowRuleError(
                f"task {self.task!r}: key_concurrency, key_rate_limit and key_weights need a "
                "key= function"
            )
        for name in ("rate", "key_rate"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Rate):
                object.__setattr__(self, name, Rate.parse(value))
        weights: object = self.key_weights
        if not isinstance(weights, Mapping):
            raise FlowRuleError(f"task {self.task!r}: key_weights must be a dict of key to weight")
        for key, weight in weights.items():
            check_key(key, f"task {self.task!r}: a key_weights key")
            check_weight(weight, f"task {self.task!r}: the weight of key {key!r}")
        object.__setattr__(self, "key_weights", MappingProxyType(dict(weights)))
        object.__setattr__(self, "over_limit", OverLimit(self.over_limit))

    @property
    def active(self) -> bool:
        """True when any rule is set (else the task's jobs use the plain ready set)."""
        return (
            self.keyed
            or self.concurrency is not None
            or self.rate is not None
            or self.over_limit is not OverLimit.WAIT
        )

    def weight(self, key: str) -> int:
        """How many jobs of `key` start per turn of the round robin."""
        return self.key_weights.get(key, 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class Dedupe:
    """What an enqueue with a ``unique_key`` (or a ``cooldown``) asks of the broker, beside
    the key itself (``NewJob.unique_key``).

    Rules apply in this order, in the enqueue's one atomic step: cooldown (drop repeats
    within the window), uniqueness (a live job with the key: keep, replace or cancel it),
    debounce (move the pending job's run time, at most ``max_wait_ms`` after its first call).
    """

    on_duplicate: OnDuplicate = OnDuplicate.KEEP
    #: Keep the key taken for this long after the job ended (0: free once it ends).
    window_ms: int = 0
    #: Debounce: the pending job runs this long after the last call (needs a unique_key).
    debounce_ms: int | None = None
    #: Debounce: but never later than this long after the first call.
    max_wait_ms: int | None = None
    #: Cooldown: a call within this long after one that was enqueued is dropped (its key is
    #: the unique_key, or the task name without one).
    cooldown_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "on_duplicate", OnDuplicate(self.on_duplicate))
        for name in ("window_ms", "debounce_ms", "max_wait_ms", "cooldown_ms"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FlowRuleError(f"{name} must be a duration of 0 or more, got {value!r}")
        if self.max_wait_ms is not None and self.debounce_ms is None:
            raise FlowRuleError("max_wait needs debounce")


@dataclass(frozen=True, kw_only=True, slots=True)
class FlowStats:
    """What flow control did in one queue (counters since the queue was created)."""

    queue: str
    #: Jobs that ended ``expired``: not started by their ``expires`` deadline.
    expired: int = 0
    #: Jobs that ended ``expired`` because they were over a rate limit with
    #: ``over_limit="drop"``.
    dropped: int = 0
    #: Enqueues dropped by a cooldown (no job written).
    cooled: int = 0
    #: Jobs in lanes (a ruled task's), counted in ``QueueStats.ready`` too.
    laned: int = 0
    #: Lanes waiting for a concurrency slot (task or key) right now.
    parked: int = 0
    #: Lanes waiting for a rate limit right now.
    throttled: int = 0
    #: Jobs of each limited task running now, by task (``t:<task>``) and key
    #: (``k:<task>\\x1f<key>``).
    active: Mapping[str, int] = field(default_factory=dict)
