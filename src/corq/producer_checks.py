"""What a producer's values are checked against before a job is sent: job ids, delays and
start times, timeouts, listings' bounds. Each refusal is an ArgumentError naming the value
(shortened: a 32 MiB id must not become a 32 MiB message), so both brokers give the same
answer to the same input.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from corq.errors import ArgumentError, FlowRuleError
from corq.flow import Dedupe, OnDuplicate, check_key
from corq.limits import MAX_DELAY_S, MAX_JOB_ID_CHARS
from corq.spec import EnqueueOptions, duration_ms
from corq.types import JobId

#: Characters a job id may not hold: control characters (they break every one-line display
#: and terminal) and lone surrogates (not valid UTF-8, so no broker can store them).
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
#: Largest offset or page size a listing takes (both brokers hold it as a 64-bit integer).
_MAX_PAGE = 2**31 - 1


def shown(value: object) -> str:
    """A short repr for error messages (a 32 MiB id must not become a 32 MiB message)."""
    return reprlib.repr(value)


def as_float(value: object) -> float | None:
    """`value` as a float when it is an int or a float; None for anything else, bool
    included (True is an int to Python, never a number of seconds to corq)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return math.inf if value > 0 else -math.inf


def check_job_id(job_id: object) -> JobId:
    """A job id both brokers can store and every display can print on one line."""
    if not isinstance(job_id, str):
        raise ArgumentError(f"job_id must be a str, got {type(job_id).__name__} {shown(job_id)}")
    if not 1 <= len(job_id) <= MAX_JOB_ID_CHARS:
        raise ArgumentError(
            f"job_id must be 1 to {MAX_JOB_ID_CHARS} characters, got {len(job_id):,}"
        )
    bad = _BAD_ID_CHARS.search(job_id)
    if bad is not None:
        raise ArgumentError(
            f"job_id must not hold control characters or lone surrogates, got "
            f"{bad.group()!r} at position {bad.start()} in {shown(job_id)}"
        )
    return job_id


def check_lookup_id(job_id: object) -> None:
    """Ids looked up are checked less than new ones: records stored before the id rules
    (long ids, control characters) must stay reachable. A lone surrogate was never storable."""
    if not isinstance(job_id, str):
        raise ArgumentError(f"job id must be a str, got {type(job_id).__name__} {shown(job_id)}")
    if _SURROGATES.search(job_id):
        raise ArgumentError(f"job id {shown(job_id)} holds a lone surrogate (not valid UTF-8)")


def str_list(values: object, what: str) -> list[str]:
    """A list of str from a sequence of them (a lone str would be split into letters)."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
        raise ArgumentError(f"{what} must be a list of str, got {shown(values)}")
    for value in values:
        if not isinstance(value, str):
            raise ArgumentError(f"{what} must be a list of str, got an item {shown(value)}")
    return list(values)


def check_job_ids(values: object) -> list[JobId]:
    """Ids of dead letters to act on, checked like lookups."""
    ids = str_list(values, "job_ids")
    for job_id in ids:
        check_lookup_id(job_id)
    return ids


def check_count(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_PAGE:
        raise ArgumentError(
            f"{what} must be an integer from 0 to {_MAX_PAGE:,}, got {shown(value)}"
        )


def check_timeout(timeout: object) -> float | None:
    """Seconds to wait for a result: None or infinity wait for ever; NaN would spin."""
    if timeout is None:
        return None
    seconds = as_float(timeout)
    if seconds is None or math.isnan(seconds) or seconds < 0:
        raise ArgumentError(
            f"timeout must be None or a number of seconds >= 0, got {shown(timeout)}"
        )
    return None if math.isinf(seconds) else seconds


def delay_ms(delay: object) -> int:
    """A delay in whole milliseconds, finite and at most MAX_DELAY_S."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else as_float(delay)
    if seconds is None or not 0 <= seconds <= MAX_DELAY_S:  # NaN fails the comparison too
        raise ArgumentError(
            f"delay must be a number of seconds (or a timedelta) from 0 to {MAX_DELAY_S:,.0f} "
            f"(corq.limits.MAX_DELAY_S), got {shown(delay)}"
        )
    return round(seconds * 1000)


def eta_ms(eta: object, now_ms: int) -> int:
    """An absolute start time in ms; naive means UTC, the past means now."""
    if not isinstance(eta, datetime):
        raise ArgumentError(f"eta must be a datetime, got {type(eta).__name__} {shown(eta)}")
    aware = eta if eta.utcoffset() is not None else eta.replace(tzinfo=UTC)
    try:
        ahead_s = (aware - datetime.fromtimestamp(now_ms / 1000, UTC)).total_seconds()
    except OverflowError as exc:  # within a day of datetime.min or .max
        raise ArgumentError(f"eta is out of range: {eta!r}") from exc
    if ahead_s > MAX_DELAY_S:
        raise ArgumentError(
            f"eta must be at most {MAX_DELAY_S:,.0f}s (corq.limits.MAX_DELAY_S) ahead, "
            f"got {aware.isoformat()}"
        )
    return now_ms + max(0, round(ahead_s * 1000))


def run_at_ms(now_ms: int, options: EnqueueOptions) -> int:
    if options.delay is not None and options.eta is not None:
        raise ArgumentError("give delay or eta, not both")
    if options.delay is not None:
        return now_ms + delay_ms(options.delay)
    if options.eta is not None:
        return eta_ms(options.eta, now_ms)
    return now_ms


@dataclass(frozen=True, slots=True)
class FlowDirectives:
    """What an enqueue's flow-control options ask of the broker, checked."""

    unique_key: str | None
    start_by_ms: int | None
    dedupe: Dedupe | None
    #: When the job may start (a debounced job: `debounce` after the call).
    run_at_ms: int


def flow_directives(
    options: EnqueueOptions,
    *,
    now_ms: int,
    run_at_ms: int,
    on_duplicate: OnDuplicate = OnDuplicate.KEEP,
    unique_for_ms: int = 0,
) -> FlowDirectives:
    """The enqueue's ``unique_key``, ``debounce``, ``max_wait``, ``cooldown`` and
    ``expires`` as the broker takes them (`on_duplicate` and `unique_for_ms` are the
    task's); every mistake is a FlowRuleError before anything is sent."""
    unique_key = None if options.unique_key is None else check_key(options.unique_key, "unique_key")
    debounce, max_wait, cooldown, expires = (
        _positive_ms(options.debounce, "debounce"),
        _positive_ms(options.max_wait, "max_wait"),
        _positive_ms(options.cooldown, "cooldown"),
        _positive_ms(options.expires, "expires"),
    )
    if debounce is not None:
        if unique_key is None:
            raise FlowRuleError(
                "debounce needs a unique_key: the calls that share it are the ones debounced"
            )
        if options.delay is not None or options.eta is not None:
            raise FlowRuleError("debounce sets when the job runs: give debounce or delay/eta")
        run_at_ms = now_ms + debounce
    if max_wait is not None and debounce is None:
        raise FlowRuleError("max_wait caps a debounce: it needs debounce (and a unique_key)")
    start_by_ms = None if expires is None else now_ms + expires
    if expires is not None and now_ms + expires <= run_at_ms:
        raise FlowRuleError(
            f"expires ({expires / 1000:g}s) ends before the job may start "
            f"({(run_at_ms - now_ms) / 1000:g}s from now): it could only expire"
        )
    dedupe = None
    if unique_key is not None or cooldown is not None:
        dedupe = Dedupe(
            on_duplicate=on_duplicate,
            window_ms=unique_for_ms if unique_key is not None else 0,
            debounce_ms=debounce,
            max_wait_ms=max_wait,
            cooldown_ms=cooldown,
        )
    return FlowDirectives(unique_key, start_by_ms, dedupe, run_at_ms)


def _positive_ms(value: object, what: str) -> int | None:
    """A flow-control window in ms, above 0 (a window of 0 would do nothing, or for
    `expires` discard the job at once); None when not given."""
    if value is None:
        return None
    ms = duration_ms(value, what)
    if ms < 1:
        raise FlowRuleError(f"{what} must be at least 1 ms, got {shown(value)}")
    return ms
