"""Definitions for the schedules API: built and checked from a call's keywords, changed
keyword by keyword, and the operator steps (backfill, run-now) sent for them."""

from __future__ import annotations

import reprlib
import socket
import uuid
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Final, Literal

from corq.backends.base import NewJob, ScheduleRecord, ScheduleStep, SkippedTicks, TickStep
from corq.errors import CorqError, ScheduleError
from corq.limits import check_payload_size
from corq.schedule import (
    CatchUp,
    Overlap,
    Policy,
    Rule,
    RunKind,
    ScheduleDef,
    Source,
    check_def,
    check_schedule_name,
    make_policy,
    make_rule,
    manual_job_id,
    tick_job_id,
)
from corq.schedules.info import utc
from corq.task import Task

#: Most ticks one backfill may cover (a longer window is several calls).
MAX_BACKFILL_TICKS = 10_000
#: Ticks passed over while paused are counted up to this (the log says "at least").
PAUSE_COUNT_BOUND = 100_000
#: Longest pause reason kept.
MAX_REASON_CHARS = 1000


class _Unset(Enum):
    UNSET = "unset"


#: "Keep the current value" for `Schedules.update`.
UNSET: Final = _Unset.UNSET
Unset = Literal[_Unset.UNSET]


def build_schedule(
    name: str,
    task: Task[Any, Any],
    *,
    rule: Rule,
    policy: Policy,
    args: object,
    kwargs: object,
    queue: object,
    priority: object,
    source: Source,
    origin: str,
    max_payload_bytes: int,
) -> ScheduleDef:
    """A checked definition: the arguments bound and encoded exactly as an enqueue's."""
    name = check_schedule_name(name)
    if not isinstance(args, list | tuple):
        raise ScheduleError(f"schedule {name!r}: args must be a tuple or list, got {_r(args)}")
    if kwargs is None:
        kwargs = {}
    if not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise ScheduleError(f"schedule {name!r}: kwargs must be a dict with str keys")
    try:
        payload = task.encode_payload(tuple(args), dict(kwargs))
        check_payload_size(task.name, payload, max_payload_bytes)
    except CorqError as exc:
        raise ScheduleError(f"schedule {name!r}: {exc}") from exc
    return check_def(
        ScheduleDef(
            name=name,
            task=task.name,
            queue=task.options.queue if queue is None else queue,  # type: ignore[arg-type]  # checked by check_def
            payload=payload,
            priority=task.options.priority if priority is None else priority,  # type: ignore[arg-type]  # checked by check_def
            rule=rule,
            policy=policy,
            source=source,
            origin=origin,
        )
    )


def updated_rule(
    current: Rule,
    cron: str | Unset | None,
    every: timedelta | float | Unset | None,
    at: datetime | Unset | None,
    tz: str | Unset | None,
    anchor: datetime | Unset | None,
    now_ms: int,
) -> Rule:
    given = {
        k: v
        for k, v in (("cron", cron), ("every", every), ("at", at))
        if v is not UNSET and v is not None
    }
    if not given and tz is UNSET and anchor is UNSET:
        return current
    if not given:
        given = rule_args(current)
    kind = next(iter(given))
    if tz is UNSET:
        tz = current.tz if kind == "cron" and current.kind == "cron" else None
    if anchor is UNSET:
        anchor = (
            utc(current.anchor_ms)
            if kind == "every" and current.kind == "every" and current.anchor_ms
            else None
        )
    return make_rule(
        **given,  # type: ignore[arg-type]  # one of cron/every/at, checked by make_rule
        tz=tz,
        anchor=anchor,
        now_ms=now_ms if at is not UNSET and at is not None else None,
    )


def updated_policy(
    current: Policy,
    overlap: Overlap | str | Unset,
    catchup: CatchUp | str | Unset,
    catchup_window: timedelta | float | Unset | None,
    jitter: timedelta | float | Unset | None,
    pause_on_failure: bool | Unset,
) -> Policy:
    return make_policy(
        overlap=current.overlap if overlap is UNSET else overlap,
        catchup=current.catchup if catchup is UNSET else catchup,
        catchup_window=(
            current.catchup_window_ms / 1000 if catchup_window is UNSET else catchup_window
        ),
        jitter=current.jitter_ms / 1000 if jitter is UNSET else jitter,
        pause_on_failure=(
            current.pause_on_failure if pause_on_failure is UNSET else pause_on_failure
        ),
    )


def rule_args(rule: Rule) -> dict[str, Any]:
    if rule.cron is not None:
        return {"cron": rule.cron}
    if rule.every_ms is not None:
        return {"every": timedelta(milliseconds=rule.every_ms)}
    assert rule.at_ms is not None
    return {"at": utc(rule.at_ms)}


def paused_ticks(rule: Rule, after_ms: int, until_ms: int) -> SkippedTicks | None:
    """The ticks a pause passed over, as one skip (None when there were none)."""
    count = rule.count_between(after_ms, until_ms, PAUSE_COUNT_BOUND)
    first, last = rule.next_after(after_ms), rule.last_at_or_before(until_ms)
    if count == 0 or first is None or last is None or first > last:
        return None
    return SkippedTicks(
        first_tick_ms=first, last_tick_ms=last, count=count, reason="paused", at_ms=until_ms
    )


def decode_record(record: ScheduleRecord) -> ScheduleDef:
    """The definition a record holds; ScheduleError saying what to do when it is unreadable."""
    try:
        return ScheduleDef.decode(record.definition)
    except ScheduleError as exc:
        raise ScheduleError(
            f"schedule {record.name!r}: {exc} (remove it and add it again)"
        ) from None


def operator_step(
    definition: ScheduleDef, tick_ms: int, kind: RunKind, now_ms: int
) -> ScheduleStep:
    """A BACKFILL or MANUAL step: its job runs now (no jitter: an operator asked for it)."""
    manual = kind is RunKind.MANUAL
    job_id = (
        manual_job_id(definition.name, now_ms, uuid.uuid4().hex[:8])
        if manual
        else tick_job_id(definition.name, tick_ms)
    )
    return ScheduleStep(
        schedule=definition.name,
        step=TickStep.MANUAL if manual else TickStep.BACKFILL,
        tick_ms=tick_ms,
        job=NewJob(
            id=job_id,
            task=definition.task,
            queue=definition.queue,
            payload=definition.payload,
            priority=definition.priority,
            enqueued_at_ms=now_ms,
            run_at_ms=now_ms,
            schedule=definition.name,
            tick_ms=tick_ms,
        ),
        kind=kind.value,
    )


def aware_ms(moment: object, what: str) -> int:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"{what} must be a datetime, got {_r(moment)}")
    if moment.utcoffset() is None:
        raise ScheduleError(
            f"{what}={moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. tzinfo=datetime.UTC)"
        )
    return round(moment.timestamp() * 1000)


def check_flag(what: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ScheduleError(f"{what} must be True or False, got {_r(value)}")


def origin_of(origin: str | None) -> str:
    if origin is None:
        return f"python on {socket.gethostname()}"
    check_text("origin", origin, 200)
    return origin


def check_text(what: str, value: object, limit: int) -> None:
    """None, or a str of at most `limit` characters (everything stored has a bound)."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ScheduleError(f"{what} must be a str of at most {limit} characters, got {_r(value)}")


def check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ScheduleError(f"limit must be an integer from 1 to 1000, got {_r(limit)}")


def _r(value: object) -> str:
    return reprlib.repr(value)
