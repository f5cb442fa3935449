"""Reading schedules: where a name's record is, and the records of many names at once.

A name is resolved through the index (``keys.py`` describes the protocol): an index entry
without a record is absent; a record marked ``moved_to`` is read from its new queue when it
is there already, and as it stands otherwise. Records are read with one pipeline per step
that does not raise on a command's error, so a key of another type, or values another
program wrote, make that one schedule *damaged* (its problem named) and never hide the
others. Versions are the schedules' scores in ``changes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from redis.asyncio import Redis

from corq.backends.base import ScheduleRecord
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.schedule_replies import (
    DamagedScheduleError,
    ScheduleState,
    decode_run,
    parse_state,
)
from corq.types import QueueName


@dataclass(frozen=True, slots=True)
class Located:
    """What a reader knows of one schedule name."""

    name: str
    #: The queue the index names (None: not indexed).
    indexed: QueueName | None = None
    #: The queue whose record holds the schedule's state (None: absent).
    queue: QueueName | None = None
    state: ScheduleState | None = None
    #: Why the record at `queue` cannot be read (then `state` is None).
    problem: str | None = None
    #: Its score in changes (0 when it has none: a create that stopped before its last step).
    version: int = 0
    last_run: bytes | None = None
    #: The record's rev that its version announced (below the record's own: a change that
    #: stopped before its version).
    announced: int = 0

    @property
    def unannounced(self) -> bool:
        """The record changed after (or without) its last version."""
        return self.state is not None and self.state.rev > self.announced

    @property
    def stuck(self) -> bool:
        """A move that stopped after its first step: the state is still here, marked."""
        return self.state is not None and self.state.moved_to is not None

    def record(self) -> ScheduleRecord:
        """The schedule as the port shows it; DamagedScheduleError when it cannot be read."""
        if self.state is None or self.queue is None:
            raise DamagedScheduleError(self.problem or "no record")
        return self.state.record(self.name, self.queue, self.version, decode_run(self.last_run))


@dataclass(frozen=True, slots=True)
class _Raw:
    """One record as read: its fields, or None (no key), or the problem."""

    fields: dict[bytes, bytes] | None
    last_run: bytes | None
    problem: str | None = None


async def read_raw(
    client: Redis, keys: RedisKeys, wanted: Sequence[tuple[QueueName, str]]
) -> list[_Raw]:
    """The record and latest run of each (queue, name), in one round trip."""
    if not wanted:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for queue, name in wanted:
            schedule = keys.queue(queue).schedule(name)
            pipe.hgetall(schedule.record)
            pipe.lindex(schedule.runs, 0)
        replies = await pipe.execute(raise_on_error=False)
    out = []
    for at in range(len(wanted)):
        fields, last_run = replies[2 * at], replies[2 * at + 1]
        if isinstance(fields, BaseException):
            if not isinstance(fields, Exception) or "WRONGTYPE" not in str(fields):
                raise fields
            out.append(_Raw(None, None, "the key is not a schedule hash"))
            continue
        run = None if isinstance(last_run, BaseException) else cast(bytes | None, last_run)
        out.append(_Raw(cast(dict[bytes, bytes], fields) or None, run))
    return out


def _state(raw: _Raw) -> tuple[ScheduleState | None, str | None]:
    if raw.problem is not None or raw.fields is None:
        return None, raw.problem
    try:
        return parse_state(raw.fields), None
    except DamagedScheduleError as exc:
        return None, str(exc)


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the ``{schedules}`` slot holds for one name."""

    name: str
    indexed: QueueName | None
    version: int
    announced: int


def _number(value: Any) -> int:
    """A score or a counter another program may have damaged (then 0)."""
    try:
        return 0 if value is None else int(float(value))
    except ValueError:
        return 0


async def _entries(client: Redis, keys: RedisKeys, names: Sequence[str]) -> list[_Entry]:
    """The index entries, versions and announced revs of `names`, in one round trip."""
    schedules = keys.schedules
    async with client.pipeline(transaction=True) as pipe:
        pipe.hmget(schedules.index, list(names))
        pipe.zmscore(schedules.changes, list(names))
        pipe.hmget(schedules.announced, list(names))
        queues, scores, revs = await pipe.execute()
    return [
        _Entry(
            name,
            None if q is None else cast(bytes, q).decode("utf-8", "replace"),
            _number(v),
            _number(r),
        )
        for name, q, v, r in zip(names, queues, scores, revs, strict=True)
    ]


async def _resolve(client: Redis, keys: RedisKeys, entries: Sequence[_Entry]) -> list[Located]:
    """Resolve names whose index entries are known (see the module docstring)."""
    present = [(e.indexed, e.name) for e in entries if e.indexed is not None]
    raws = iter(await read_raw(client, keys, present))
    first: list[Located] = []
    for e in entries:
        if e.indexed is None:
            first.append(Located(e.name))
            continue
        raw = next(raws)
        state, problem = _state(raw)
        if state is None and problem is None:  # an index entry without a record: absent
            first.append(Located(e.name, e.indexed, version=e.version))
            continue
        first.append(
            Located(
                e.name, e.indexed, e.indexed, state, problem, e.version, raw.last_run, e.announced
            )
        )
    return await _follow_moves(client, keys, first)


async def _follow_moves(client: Redis, keys: RedisKeys, found: list[Located]) -> list[Located]:
    """A record marked moved_to is read from the new queue when its record is there."""
    moving = [f for f in found if f.stuck]
    if not moving:
        return found
    targets = [(cast(ScheduleState, f.state).moved_to or "", f.name) for f in moving]
    moved = {}
    for f, (target, _), raw in zip(
        moving, targets, await read_raw(client, keys, targets), strict=True
    ):
        state, problem = _state(raw)
        if state is not None and state.moved_to is None:
            moved[f.name] = replace(f, queue=target, state=state, last_run=raw.last_run)
        elif problem is not None:
            moved[f.name] = replace(f, queue=target, state=None, problem=problem, last_run=None)
    return [moved.get(f.name, f) if f.stuck else f for f in found]


async def locate(client: Redis, keys: RedisKeys, name: str) -> Located:
    """One name, resolved."""
    (found,) = await locate_names(client, keys, [name])
    return found


async def locate_names(client: Redis, keys: RedisKeys, names: Sequence[str]) -> list[Located]:
    """Many names, resolved (what the ``{schedules}`` slot holds for them read at once)."""
    if not names:
        return []
    return await _resolve(client, keys, await _entries(client, keys, names))


async def indexed_names(client: Redis, keys: RedisKeys, batch: int) -> list[list[str]]:
    """Every indexed name, in steps of about `batch` (HSCAN; each name once)."""
    seen: set[str] = set()
    steps: list[list[str]] = []
    cursor = 0
    while True:
        cursor, page = await client.hscan(keys.schedules.index, cursor, count=batch)
        raws = cast(dict[bytes, bytes], page)
        names = [n for raw in raws if (n := _name(raw)) is not None and n not in seen]
        seen.update(names)
        if names:
            steps.append(names)
        if cursor == 0:
            return steps


def _name(raw: bytes) -> str | None:
    """A name of the index as text; one that is not UTF-8 (another program's) is skipped."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
