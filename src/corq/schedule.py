"""Schedules as data: when a schedule fires (its rule) and what it does then (its policy).

A rule turns into tick times (ms since the epoch, UTC); nothing here reads a clock or a
broker, so every computation is a pure function of its arguments and tests need no
sleeping. Cron expressions are parsed and stepped by cronsim (Debian cron's semantics,
including its DST behaviour: a fixed-time job in a skipped hour runs once at the first
valid minute after it, one in a repeated hour runs once; jobs that repeat within the hour
run in both copies of it), never by code of ours.

A definition is stored in the broker as opaque bytes (``ScheduleDef.encode``); the
broker keeps the firing state beside it (see ``corq.backends.base.ScheduleStore``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from corq.errors import CorqError, ScheduleError
from corq.limits import MAX_DELAY_S, MAX_JOB_ID_CHARS, check_priority
from corq.names import check_queue_name, check_task_name
from corq.types import JobId, QueueName, TaskName


class Overlap(StrEnum):
    """What a tick does while the schedule's previous run has not finished."""

    #: Skip the tick (recorded with the reason).
    SKIP = "skip"
    #: Keep one tick back and fire it when the previous run finishes; skip the others.
    BUFFER_ONE = "buffer_one"
    #: Cancel the previous run, then fire.
    CANCEL_OTHER = "cancel_other"
    #: Fire anyway: runs may overlap (what cron and Celery beat do).
    ALLOW_ALL = "allow_all"


class CatchUp(StrEnum):
    """What happens to ticks that passed while no scheduler ran (downtime, a failover)."""

    #: Skip every missed tick.
    NONE = "none"
    #: Fire only the latest missed tick, skip the earlier ones.
    LATEST = "latest"
    #: Fire every missed tick within the catch-up window, in order; skip older ones.
    ALL = "all"


class RunKind(StrEnum):
    """Why a schedule's job was enqueued."""

    TICK = "tick"  #: a regular tick, on time or caught up late
    BUFFERED = "buffered"  #: a tick held back by ``buffer_one`` until the previous run ended
    BACKFILL = "backfill"  #: a past tick fired by ``backfill``
    MANUAL = "manual"  #: ``run-now``, outside the regular ticks


#: Longest schedule name: a tick's job id is ``<name>@<tick ms>`` and must fit a job id.
MAX_SCHEDULE_NAME_CHARS = 150
#: Shortest interval of ``every=`` (cron's own resolution is one second).
MIN_EVERY_MS = 1000
#: Default catch-up window: ticks missed for longer are skipped, not fired late.
DEFAULT_CATCHUP_WINDOW_MS = 5 * 60 * 1000

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")


def check_schedule_name(name: object) -> str:
    """Schedule names are plain: they are part of job ids, keys and command lines."""
    if (
        not isinstance(name, str)
        or not _NAME_RE.fullmatch(name)
        or len(name) > MAX_SCHEDULE_NAME_CHARS
    ):
        raise ScheduleError(
            f"invalid schedule name {reprlib.repr(name)}: use letters, digits, '_', '.', ':' "
            f"or '-' (at most {MAX_SCHEDULE_NAME_CHARS}, not starting with '.', ':' or '-')"
        )
    return name


def tick_job_id(schedule: str, tick_ms: int) -> JobId:
    """The job id of a schedule's tick: the same for every scheduler that fires it."""
    job_id = f"{schedule}@{tick_ms}"
    assert len(job_id) <= MAX_JOB_ID_CHARS
    return job_id


def manual_job_id(schedule: str, at_ms: int, nonce: str) -> JobId:
    """The job id of a ``run-now``: apart from every tick's id."""
    return f"{schedule}@now-{at_ms}-{nonce}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """When a schedule fires: exactly one of a cron expression, an interval, or one time."""

    #: A cron expression of 5 fields, or 6 with seconds first.
    cron: str | None = None
    #: Interval in ms; ticks fall at ``anchor_ms + k * every_ms`` so they never drift.
    every_ms: int | None = None
    #: The one tick of a one-shot schedule.
    at_ms: int | None = None
    #: IANA time zone the cron expression is read in.
    tz: str = "UTC"
    #: Where interval ticks are counted from (ms since the epoch).
    anchor_ms: int = 0

    @property
    def kind(self) -> Literal["cron", "every", "at"]:
        if self.cron is not None:
            return "cron"
        return "every" if self.every_ms is not None else "at"

    def describe(self) -> str:
        """A short text for listings: ``cron */5 * * * * (Asia/Shanghai)``, ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.tz})" if self.tz != "UTC" else "")
        if self.every_ms is not None:
            return f"every {format_duration_ms(self.every_ms)}"
        assert self.at_ms is not None
        return f"once at {datetime.fromtimestamp(self.at_ms / 1000, UTC).isoformat()}"

    def ticks_after(self, after_ms: int) -> Iterator[int]:
        """Tick times strictly after `after_ms`, in order (finite for a one-shot)."""
        if self.every_ms is not None:
            step = self.every_ms
            k = (after_ms - self.anchor_ms) // step + 1
            while True:
                yield self.anchor_ms + k * step
                k += 1
        elif self.at_ms is not None:
            if self.at_ms > after_ms:
                yield self.at_ms
        else:
            yield from self._cron_ticks(after_ms)

    def next_after(self, after_ms: int) -> int | None:
        """The first tick strictly after `after_ms`, or None (a one-shot that has passed)."""
        if self.cron is not None:
            return _cron_next(self.cron, self.tz, after_ms)
        return next(self.ticks_after(after_ms), None)

    def next_ticks(self, after_ms: int, count: int) -> list[int]:
        """Up to `count` ticks strictly after `after_ms`."""
        out: list[int] = []
        for tick in self.ticks_after(after_ms):
            if len(out) >= count:
                break
            out.append(tick)
        return out

    def ticks_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Ticks in (after_ms, until_ms], at most `limit` of them (the earliest)."""
        if self.cron is not None:
            # The usual case, a tick or two due, through the shared cache of next ticks:
            # a leader deciding 10,000 schedules of one expression parses it once.
            few: list[int] = []
            tick: int | None = after_ms
            while len(few) < min(limit, _FEW):
                tick = _cron_next(self.cron, self.tz, tick)
                if tick is None or tick > until_ms:
                    return few
                few.append(tick)
            if len(few) >= limit:
                return few
            return few + self._ticks_between(few[-1], until_ms, limit - len(few))
        return self._ticks_between(after_ms, until_ms, limit)

    def _ticks_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        out: list[int] = []
        for tick in self.ticks_after(after_ms):
            if tick > until_ms or len(out) >= limit:
                break
            out.append(tick)
        return out

    def last_at_or_before(self, until_ms: int) -> int | None:
        """The latest tick at or before `until_ms` (None: none, a one-shot still ahead), so a
        run of passed ticks can be skipped in one step without stepping through them."""
        if self.every_ms is not None:
            k = (until_ms - self.anchor_ms) // self.every_ms
            return self.anchor_ms + k * self.every_ms
        if self.at_ms is not None:
            return self.at_ms if self.at_ms <= until_ms else None
        assert self.cron is not None
        # cronsim steps back from a whole second strictly, so start one second later.
        start = datetime.fromtimestamp(until_ms // 1000 + 1, ZoneInfo(self.tz))
        moment = next(iter(CronSim(self.cron, start, reverse=True)), None)
        return None if moment is None else int(moment.timestamp()) * 1000

    def count_between(self, after_ms: int, until_ms: int, limit: int) -> int:
        """How many ticks fall in (after_ms, until_ms], counted up to `limit`."""
        if self.every_ms is not None:
            first = (after_ms - self.anchor_ms) // self.every_ms + 1
            last = (until_ms - self.anchor_ms) // self.every_ms
            return max(0, min(limit, last - first + 1))
        return len(self.ticks_between(after_ms, until_ms, limit))

    def _cron_ticks(self, after_ms: int) -> Iterator[int]:
        assert self.cron is not None
        zone = ZoneInfo(self.tz)
        # cronsim steps from a naive or aware start, to the second; a start inside a second
        # must not yield that same second again, so start from the whole second.
        start = datetime.fromtimestamp(after_ms // 1000, zone)
        for moment in CronSim(self.cron, start):
            tick = int(moment.timestamp()) * 1000
            if tick > after_ms:
                yield tick


#: Ticks ``ticks_between`` takes from the cache before stepping cronsim itself.
_FEW = 3


@functools.lru_cache(maxsize=65_536)
def _cron_next(cron: str, tz: str, after_ms: int) -> int | None:
    """The first tick of a cron expression strictly after `after_ms` (None: none within
    cronsim's 50 years). Cached: schedules share expressions and instants, and parsing an
    expression is most of the cost of deciding a tick."""
    start = datetime.fromtimestamp(after_ms // 1000, ZoneInfo(tz))
    for moment in CronSim(cron, start):
        tick = int(moment.timestamp()) * 1000
        if tick > after_ms:
            return tick
    return None


def format_duration_ms(ms: int) -> str:
    """``30s``, ``5m``, ``1h30m``, ``1.5s``: short, for listings."""
    if ms % 1000:
        return f"{ms / 1000:g}s"
    seconds = ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def make_rule(
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    at: datetime | None = None,
    tz: str | None = None,
    anchor: datetime | None = None,
    now_ms: int | None = None,
) -> Rule:
    """A checked rule; every mistake is a ScheduleError that says what to change.

    `now_ms`, when given, refuses a one-shot time that has already passed.
    """
    given = [
        name for name, value in (("cron", cron), ("every", every), ("at", at)) if value is not None
    ]
    if len(given) != 1:
        raise ScheduleError(
            "give exactly one of cron=, every= or at="
            + (f" (got {', '.join(given)})" if given else "")
        )
    zone = _check_tz("UTC" if tz is None else tz)
    if anchor is not None and every is None:
        raise ScheduleError("anchor= applies to every= schedules only")
    if cron is not None:
        return Rule(cron=_check_cron(cron, zone), tz=zone)
    if tz is not None and tz != "UTC":
        raise ScheduleError("tz= applies to cron schedules only (every= and at= are absolute)")
    if every is not None:
        every_ms = _check_every(every)
        anchor_ms = 0 if anchor is None else _aware_ms(anchor, "anchor")
        return Rule(every_ms=every_ms, anchor_ms=anchor_ms)
    assert at is not None
    at_ms = _aware_ms(at, "at")
    if now_ms is not None and at_ms <= now_ms:
        raise ScheduleError(
            f"at={at.isoformat()} has already passed; a one-shot schedule must be in the future"
        )
    return Rule(at_ms=at_ms)


def _check_tz(tz: object) -> str:
    if not isinstance(tz, str) or not tz:
        raise ScheduleError(
            f"tz must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}"
        )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return tz


def _check_cron(cron: object, tz: str) -> str:
    if not isinstance(cron, str):
        raise ScheduleError(f"cron must be a string such as '*/5 * * * *', got {cron!r}")
    expression = " ".join(cron.split())
    fields = len(expression.split(" ")) if expression else 0
    if fields not in (5, 6):
        raise ScheduleError(
            f"invalid cron expression {cron!r}: it has {fields} fields; use 5 (minute hour "
            "day month weekday) or 6 (seconds first)"
        )
    try:
        first = next(iter(CronSim(expression, datetime.now(ZoneInfo(tz)))), None)
    except CronSimError as exc:
        raise ScheduleError(f"invalid cron expression {cron!r}: {exc}") from None
    if first is None:
        raise ScheduleError(f"cron expression {cron!r} never fires (no match within 50 years)")
    return expression


def _check_every(every: object) -> int:
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ScheduleError(f"every must be a timedelta or seconds, got {reprlib.repr(every)}")
    if not MIN_EVERY_MS / 1000 <= seconds <= MAX_DELAY_S:
        raise ScheduleError(
            f"every must be at least {MIN_EVERY_MS // 1000} second and at most 100 years, "
            f"got {reprlib.repr(every)}"
        )
    return round(seconds * 1000)


def _aware_ms(moment: object, what: str) -> int:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"{what} must be a datetime, got {reprlib.repr(moment)}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(
            f"{what}={moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. tzinfo=datetime.UTC)"
        )
    return round(moment.timestamp() * 1000)


def _duration_ms(value: object, what: str, *, low: float = 0.0) -> int:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ScheduleError(f"{what} must be a timedelta or seconds, got {reprlib.repr(value)}")
    if not low <= seconds <= MAX_DELAY_S:
        raise ScheduleError(f"{what} must be from {low:g} seconds to 100 years, got {value!r}")
    return round(seconds * 1000)


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    """What a schedule does around its ticks (the same choices as Temporal schedules)."""

    overlap: Overlap = Overlap.ALLOW_ALL
    catchup: CatchUp = CatchUp.ALL
    #: Ticks older than this when a scheduler sees them are skipped, not fired late.
    catchup_window_ms: int = DEFAULT_CATCHUP_WINDOW_MS
    #: A tick's job runs up to this long after the tick (the same delay for a given tick on
    #: every scheduler, so a replay is identical).
    jitter_ms: int = 0
    #: Pause the schedule when one of its jobs ends dead (until resumed).
    pause_on_failure: bool = False

    def jitter_for(self, schedule: str, tick_ms: int) -> int:
        """This tick's delay, from a hash of the schedule and the tick (no randomness that a
        second scheduler would draw differently)."""
        if not self.jitter_ms:
            return 0
        digest = hashlib.blake2b(f"{schedule}@{tick_ms}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % (self.jitter_ms + 1)


def make_policy(
    *,
    overlap: Overlap | str = Overlap.ALLOW_ALL,
    catchup: CatchUp | str = CatchUp.ALL,
    catchup_window: timedelta | float | None = None,
    jitter: timedelta | float | None = None,
    pause_on_failure: bool = False,
) -> Policy:
    """A checked policy."""
    try:
        overlap = Overlap(overlap)
    except ValueError:
        choices = ", ".join(o.value for o in Overlap)
        raise ScheduleError(f"overlap must be one of {choices}, got {overlap!r}") from None
    try:
        catchup = CatchUp(catchup)
    except ValueError:
        choices = ", ".join(c.value for c in CatchUp)
        raise ScheduleError(f"catchup must be one of {choices}, got {catchup!r}") from None
    if not isinstance(pause_on_failure, bool):
        raise ScheduleError(f"pause_on_failure must be True or False, got {pause_on_failure!r}")
    window = (
        DEFAULT_CATCHUP_WINDOW_MS
        if catchup_window is None
        else _duration_ms(catchup_window, "catchup_window", low=1.0)
    )
    return Policy(
        overlap=overlap,
        catchup=catchup,
        catchup_window_ms=window,
        jitter_ms=0 if jitter is None else _duration_ms(jitter, "jitter"),
        pause_on_failure=pause_on_failure,
    )


Source = Literal["code", "stored"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleDef:
    """A whole schedule: its name, the job it sends, when, and how."""

    name: str
    task: TaskName
    queue: QueueName
    #: The job's encoded arguments (the app's serializer), as a job's payload.
    payload: bytes
    priority: int = 0
    rule: Rule
    policy: Policy = field(default_factory=Policy)
    #: "code": declared with ``@app.periodic`` (the leader's code is the truth);
    #: "stored": added at runtime (the broker's record is the truth).
    source: Source = "stored"
    #: Where it was declared (``module:function``) or who added it, for error messages.
    origin: str = ""

    def with_source(self, source: Source, origin: str) -> ScheduleDef:
        return replace(self, source=source, origin=origin)

    def encode(self) -> bytes:
        """The bytes the broker stores."""
        return _ENCODER.encode(_Wire.of(self))

    @staticmethod
    def decode(data: bytes) -> ScheduleDef:
        """A stored definition; ScheduleError when the bytes are not one."""
        try:
            return _DECODER.decode(data).to_def()
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ScheduleError(f"unreadable schedule definition: {exc}") from None

    def same_as(self, other: ScheduleDef) -> bool:
        """True when both fire the same jobs at the same times (origin aside)."""
        return replace(self, origin="") == replace(other, origin="")


def check_def(schedule: ScheduleDef) -> ScheduleDef:
    """Refuse a definition whose parts no broker or worker accepts."""
    check_schedule_name(schedule.name)
    check_task_name(schedule.task, ScheduleError)
    try:
        check_queue_name(schedule.queue)
    except CorqError as exc:
        raise ScheduleError(str(exc)) from None
    check_priority(schedule.priority, ScheduleError)
    return schedule


class _Wire(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """The stored form: JSON, so an operator reading the broker can read it too."""

    name: str
    task: str
    queue: str
    payload: bytes
    cron: str | None = None
    every_ms: int | None = None
    at_ms: int | None = None
    tz: str = "UTC"
    anchor_ms: int = 0
    priority: int = 0
    overlap: str = Overlap.ALLOW_ALL.value
    catchup: str = CatchUp.ALL.value
    catchup_window_ms: int = DEFAULT_CATCHUP_WINDOW_MS
    jitter_ms: int = 0
    pause_on_failure: bool = False
    source: str = "stored"
    origin: str = ""

    @staticmethod
    def of(d: ScheduleDef) -> _Wire:
        r, p = d.rule, d.policy
        return _Wire(
            name=d.name,
            task=d.task,
            queue=d.queue,
            payload=d.payload,
            cron=r.cron,
            every_ms=r.every_ms,
            at_ms=r.at_ms,
            tz=r.tz,
            anchor_ms=r.anchor_ms,
            priority=d.priority,
            overlap=p.overlap.value,
            catchup=p.catchup.value,
            catchup_window_ms=p.catchup_window_ms,
            jitter_ms=p.jitter_ms,
            pause_on_failure=p.pause_on_failure,
            source=d.source,
            origin=d.origin,
        )

    def to_def(self) -> ScheduleDef:
        if sum(x is not None for x in (self.cron, self.every_ms, self.at_ms)) != 1:
            raise ValueError("a rule needs exactly one of cron, every_ms, at_ms")
        if self.source not in ("code", "stored"):
            raise ValueError(f"unknown source {self.source!r}")
        source: Source = "code" if self.source == "code" else "stored"
        if self.cron is not None:
            _check_cron(self.cron, _check_tz(self.tz))
        return check_def(
            ScheduleDef(
                name=self.name,
                task=self.task,
                queue=self.queue,
                payload=self.payload,
                priority=self.priority,
                rule=Rule(
                    cron=self.cron,
                    every_ms=self.every_ms,
                    at_ms=self.at_ms,
                    tz=self.tz,
                    anchor_ms=self.anchor_ms,
                ),
                policy=Policy(
                    overlap=Overlap(self.overlap),
                    catchup=CatchUp(self.catchup),
                    catchup_window_ms=self.catchup_window_ms,
                    jitter_ms=self.jitter_ms,
                    pause_on_failure=self.pause_on_failure,
                ),
                source=source,
                origin=self.origin,
            )
        )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Wire)


def tick_datetime(tick_ms: int, tz: str = "UTC") -> datetime:
    """A tick as an aware datetime in `tz`."""
    return datetime.fromtimestamp(tick_ms / 1000, ZoneInfo(tz))
