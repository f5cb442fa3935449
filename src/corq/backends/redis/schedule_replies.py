"""Schedule records and logs as the scripts store and return them, read and checked.

A schedule's HASH (see ``keys.py``) is read by :func:`parse_state`, which checks every
value the way the scripts' ``schedule`` include does (integers as plain decimal text, a
paused flag of 0 or 1, a definition present), so a record Python reads is one the scripts
can act on; a record that is not raises :class:`DamagedScheduleError` naming the problem.
Log entries are msgpack arrays; one that does not decode to the expected shape is left
out of the history (:func:`decode_run`, :func:`decode_skip` give None), so one bad entry
never hides the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from corq.backends.base import ScheduleRecord, ScheduleRun, SkippedTicks
from corq.types import QueueName

Fields = dict[bytes, bytes]
_INTEGER = re.compile(rb"-?[0-9]+")
#: Integers the scripts read exactly (doubles in Lua).
_MAX_EXACT = 2**53
_RUN = msgspec.msgpack.Decoder(tuple[int, str, str, str, int])
_SKIP = msgspec.msgpack.Decoder(tuple[int, int, int, str, int])


class DamagedScheduleError(Exception):
    """A schedule record that cannot be read (another program wrote it, or a bug)."""


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What a schedule's record holds (its name, queue and version are kept elsewhere)."""

    definition: bytes
    paused: bool
    paused_reason: str | None
    last_tick_ms: int
    floor_ms: int
    buffered_tick_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    fired: int
    skipped: int
    #: Raised by every change of the record (see keys.py).
    rev: int = 0
    #: Set while a move to that queue is under way (see keys.py).
    moved_to: QueueName | None = None

    def record(
        self, name: str, queue: QueueName, version: int, last_run: ScheduleRun | None
    ) -> ScheduleRecord:
        return ScheduleRecord(
            name=name,
            queue=queue,
            definition=self.definition,
            version=version,
            paused=self.paused,
            paused_reason=self.paused_reason if self.paused else None,
            last_tick_ms=self.last_tick_ms,
            floor_ms=self.floor_ms,
            buffered_tick_ms=self.buffered_tick_ms,
            created_at_ms=self.created_at_ms,
            updated_at_ms=self.updated_at_ms,
            fired=self.fired,
            skipped=self.skipped,
            last_run=last_run,
        )


@dataclass(frozen=True, slots=True)
class RecordReply:
    """A record as a script returns it after changing it (``schedule_reply``)."""

    fields: Fields
    last_run: bytes | None


@dataclass(frozen=True, slots=True)
class RecordChange:
    """What a script that changes a record did: ``updated``, ``same``, ``created``,
    ``existed`` (with the record), ``gone``, ``moved`` (detail: the queue it moves to) or
    ``damaged`` (detail: the problem)."""

    status: str
    reply: RecordReply | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MoveState:
    """The whole state ``move_schedule_out`` took (or why it took none, as a change)."""

    change: RecordChange
    fields: Fields
    fired: list[int]
    runs: list[bytes]
    skips: list[bytes]


def fields_of(flat: list[bytes]) -> Fields:
    """An HGETALL reply given by a script (a flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _quote(value: bytes) -> str:
    cut = value[:40].decode("utf-8", "replace")
    return f"'{cut}...'" if len(value) > 40 else f"'{cut}'"


def _integer(fields: Fields, name: str, *, required: bool = True, count: bool = False) -> Any:
    value = fields.get(name.encode())
    if value is None or (value == b"" and not required):
        if required:
            raise DamagedScheduleError(f"{name} is missing")
        return None
    number = int(value) if _INTEGER.fullmatch(value.strip()) else None
    if number is None or abs(number) >= _MAX_EXACT:
        raise DamagedScheduleError(f"{name} is not an integer: {_quote(value)}")
    if count and number < 0:
        raise DamagedScheduleError(f"{name} is negative: {_quote(value)}")
    return number


def parse_state(fields: Fields) -> ScheduleState:
    """The state a record's fields hold; DamagedScheduleError when they are not readable."""
    definition = fields.get(b"definition")
    if definition is None:
        raise DamagedScheduleError("definition is missing")
    paused = fields.get(b"paused")
    if paused not in (b"0", b"1"):
        raise DamagedScheduleError(f"paused is not 0 or 1: {_quote(paused or b'')}")
    reason = fields.get(b"reason")
    moved_to = fields.get(b"moved_to")
    return ScheduleState(
        definition=definition,
        paused=paused == b"1",
        paused_reason=_text(reason) if reason else None,
        last_tick_ms=_integer(fields, "last_tick_ms"),
        floor_ms=_integer(fields, "floor_ms"),
        buffered_tick_ms=_integer(fields, "buffered_tick_ms", required=False),
        created_at_ms=_integer(fields, "created_at_ms"),
        updated_at_ms=_integer(fields, "updated_at_ms"),
        fired=_integer(fields, "fired", count=True) if b"fired" in fields else 0,
        skipped=_integer(fields, "skipped", count=True) if b"skipped" in fields else 0,
        rev=_integer(fields, "rev", count=True) if b"rev" in fields else 0,
        moved_to=_text(moved_to) if moved_to else None,
    )


def decode_run(entry: bytes | None) -> ScheduleRun | None:
    """A runs log entry, or None when it is not one."""
    if entry is None:
        return None
    try:
        tick_ms, job_id, queue, kind, fired_at_ms = _RUN.decode(entry)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return ScheduleRun(
        tick_ms=tick_ms, job_id=job_id, queue=queue, kind=kind, fired_at_ms=fired_at_ms
    )


def decode_skip(entry: bytes) -> SkippedTicks | None:
    """A skips log entry, or None when it is not one."""
    try:
        first, last, count, reason, at_ms = _SKIP.decode(entry)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return SkippedTicks(
        first_tick_ms=first, last_tick_ms=last, count=count, reason=reason, at_ms=at_ms
    )


def record_reply(reply: list[Any]) -> RecordReply:
    return RecordReply(fields=fields_of(reply[0]), last_run=reply[1])


def record_change(reply: list[Any]) -> RecordChange:
    status = _text(reply[0])
    if status in ("updated", "same", "created", "existed"):
        return RecordChange(status, record_reply(reply[1]))
    return RecordChange(status, detail=_text(reply[1]) if len(reply) > 1 else "")


def created(reply: list[Any] | None) -> RecordReply | None:
    return None if reply is None else record_reply(reply)


def move_state(reply: list[Any]) -> MoveState:
    if reply[0] != b"moving":
        return MoveState(record_change(reply), {}, [], [], [])
    _, flat, fired, runs, skips = reply
    ticks = [int(t) for t in fired if _INTEGER.fullmatch(t)]  # another program's: left out
    return MoveState(RecordChange("moving"), fields_of(flat), ticks, runs, skips)


def lease(reply: list[Any]) -> tuple[int, int] | None:
    return (int(reply[0]), int(reply[1])) if reply else None


def reserved(reply: bytes) -> QueueName | None:
    """None when the name was reserved, else the queue the index names."""
    return _text(reply) if reply else None
