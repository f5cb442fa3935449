"""Limits on what corq stores, and the helpers that keep values within them.

Every value a worker writes must be storable whatever a task did: errors and tracebacks are
cut to a documented size and made valid UTF-8, delays are clamped to a finite range. What a
producer sends is checked instead, with a clear error (see ``corq.client``).
"""

from __future__ import annotations

import math
import reprlib
import traceback
from types import TracebackType

from corq.errors import CorqError, PayloadTooLargeError, Snooze

#: Longest job id either broker accepts (characters); longer ids are refused at enqueue.
MAX_JOB_ID_CHARS = 200
#: Accepted priorities, the same on every broker (higher runs first).
PRIORITY_MIN, PRIORITY_MAX = -100, 100
#: Longest one-line error stored for a failed attempt (characters).
MAX_ERROR_CHARS = 4 * 1024
#: Longest traceback stored for a failed attempt (characters; the head and tail are kept).
MAX_TRACEBACK_CHARS = 64 * 1024
#: Longest delay a job or a retry can be given: 100 years (longer ones are refused at enqueue,
#: clamped for retries).
MAX_DELAY_S = 100 * 365 * 86_400.0
#: Most jobs one workflow holds (callbacks and later additions to a batch included); the
#: default and the ceiling of ``settings.max_workflow_jobs``.
WORKFLOW_MAX_JOBS = 100_000


def check_priority(priority: object, error: type[CorqError]) -> int:
    """`priority` if it is an integer in PRIORITY_MIN..PRIORITY_MAX, else `error` saying so
    (bools are refused: ``priority=True`` is a mistake, not 1)."""
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise error(
            f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, "
            f"got {reprlib.repr(priority)}"
        )
    return priority


def check_payload_size(task_name: str, payload: bytes, limit: int) -> None:
    """Refuse a payload over the limit (enqueues, and schedules that send it later)."""
    if len(payload) > limit:
        raise PayloadTooLargeError(
            f"task {task_name!r}: payload is {len(payload):,} bytes, over the limit of "
            f"{limit:,} (settings.max_payload_bytes / CORQ_MAX_PAYLOAD_BYTES)"
        )


def format_traceback(exc: BaseException, tb: TracebackType | None) -> str:
    """`exc`'s traceback from frame `tb` on, safe to store; formatting runs the exception's
    own ``__str__`` and reads source files, so it may fail: then a note says so."""
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException as failure:
        text = f"<traceback unavailable: {type(failure).__name__}>"
    return safe_text(text, MAX_TRACEBACK_CHARS)


def safe_text(text: str, limit: int) -> str:
    """`text` as valid UTF-8 (lone surrogates escaped) and at most `limit` characters.

    A long text keeps its head and its tail (where a traceback names the error) around a
    note of how much was cut.
    """
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(clean) <= limit:
        return clean
    note = f"\n… [{len(clean) - limit:,} characters cut] …\n"
    keep = max(0, limit - len(note))
    head = keep // 4
    return clean[:head] + note + clean[len(clean) - (keep - head) :]


def safe_str(value: object) -> str:
    """str(value), or a description when its __str__ raises."""
    try:
        return str(value)
    except Exception as exc:  # a user __str__ may raise anything
        return f"<unprintable {type(value).__name__}: str() raised {type(exc).__name__}>"


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``, safe to store."""
    lines = safe_str(exc).strip().splitlines()
    name = type(exc).__name__
    return safe_text(f"{name}: {lines[0]}" if lines else name, MAX_ERROR_CHARS)


def clamp_delay_s(seconds: float) -> float:
    """A retry delay a task asked for, within [0, MAX_DELAY_S] (NaN counts as 0)."""
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_DELAY_S)


def snooze_of(exc: Snooze) -> tuple[float | None, str]:
    """What a ``corq.Snooze`` asks: (its delay in seconds, the reason), or (None, the error)
    when the delay is not a number of seconds within [0, MAX_DELAY_S] (the task has a bug:
    the attempt fails instead, so a mistake never parks a job for ever)."""
    delay = getattr(exc, "delay", None)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_DELAY_S  # NaN fails this too
    ):
        shown = safe_text(reprlib.repr(delay), 100)
        return None, (
            f"SnoozeError: Snooze(delay={shown}): the delay must be a number of seconds "
            f"from 0 to {MAX_DELAY_S:.0f}"
        )
    reason = getattr(exc, "reason", None)
    text = safe_str(reason) if reason is not None else f"snoozed for {delay:g}s"
    return float(delay), safe_text(text.strip() or f"snoozed for {delay:g}s", MAX_ERROR_CHARS)
