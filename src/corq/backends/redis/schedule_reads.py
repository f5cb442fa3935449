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
from dataclasses import dataclass
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


def _version(score: Any) -> int:
    return 0 if score is None else int(float(score))


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


async def locate_many(
    client: Redis,
    keys: RedisKeys,
    names: Sequence[str],
    indexed: Sequence[QueueName | None],
    versions: Sequence[int],
) -> list[Located]:
    """Resolve names whose index entries and versions are known (see the module docstring)."""
    present = [(q, n) for q, n in zip(indexed, names, strict=True) if q is not None]
    raws = iter(await read_raw(client, keys, present))
    first: list[Located] = []
    for name, queue, version in zip(names, indexed, versions, strict=True):
        if queue is None:
            first.append(Located(name))
            continue
        raw = next(raws)
        state, problem = _state(raw)
        if state is None and problem is None:  # an index entry without a record: absent
            first.append(Located(name, queue, version=version))
            continue
        first.append(Located(name, queue, queue, state, problem, version, raw.last_run))
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
            moved[f.name] = Located(f.name, f.indexed, target, state, None, f.version, raw.last_run)
        elif problem is not None:
            moved[f.name] = Located(f.name, f.indexed, target, None, problem, f.version)
    return [moved.get(f.name, f) if f.stuck else f for f in found]


async def locate(client: Redis, keys: RedisKeys, name: str) -> Located:
    """One name, resolved."""
    schedules = keys.schedules
    async with client.pipeline(transaction=True) as pipe:
        pipe.hget(schedules.index, name)
        pipe.zscore(schedules.changes, name)
        queue, score = await pipe.execute()
    indexed = None if queue is None else cast(bytes, queue).decode("utf-8", "replace")
    (found,) = await locate_many(client, keys, [name], [indexed], [_version(score)])
    return found


async def locate_names(client: Redis, keys: RedisKeys, names: Sequence[str]) -> list[Located]:
    """Many names, resolved (their index entries and versions read in one round trip)."""
    if not names:
        return []
    schedules = keys.schedules
    async with client.pipeline(transaction=True) as pipe:
        pipe.hmget(schedules.index, list(names))
        pipe.zmscore(schedules.changes, list(names))
        queues, scores = await pipe.execute()
    indexed = [None if q is None else cast(bytes, q).decode("utf-8", "replace") for q in queues]
    return await locate_many(client, keys, names, indexed, [_version(s) for s in scores])


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
