"""The EventLog port on Redis: each queue's events stream, and each job's attempts.

The scripts that change a job's state append its event to ``{q}:events`` (the events
include); this file only reads. A cursor is the stream id reached in each queue, as
base64url JSON; a read is one XREAD over the queues' streams (with BLOCK when asked), the
entries merged by stream id. See docs/design.md, "Events and attempt history".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.errors import ConfigError
from corq.events import Attempt, AttemptOutcome, Event, EventKind, EventPage
from corq.types import JobId, QueueName

#: The position before every entry of a stream.
START = "0-0"
StreamId = tuple[int, int]


def encode_cursor(positions: dict[QueueName, str]) -> str:
    text = json.dumps(positions, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[QueueName, str]:
    """The stream id reached per queue; ConfigError for a string no read gave out."""
    if not cursor:
        return {}
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        positions = json.loads(raw)
        if not isinstance(positions, dict):
            raise ValueError
        for value in positions.values():
            stream_id(value)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"not an events cursor of this broker: {cursor!r}") from None
    return {str(queue): str(value) for queue, value in positions.items()}


def stream_id(value: str | bytes) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | None) -> str | None:
    if not value:
        return None
    return value.decode("utf-8", "replace")


def parse_event(queue: QueueName, entry_id: bytes, fields: dict[bytes, bytes]) -> Event | None:
    """One stream entry as an Event (None for an entry another program wrote)."""
    try:
        at = fields.get(b"at") or b""
        return Event(
            cursor="",
            at_ms=int(at) if at else stream_id(entry_id)[0],
            kind=EventKind(fields[b"k"].decode()),
            queue=queue,
            job_id=fields[b"j"].decode("utf-8", "replace"),
            task=(fields.get(b"t") or b"").decode("utf-8", "replace"),
            attempt=int(fields.get(b"a") or 0),
            worker_id=_text(fields.get(b"w")),
            detail=_text(fields.get(b"d")),
        )
    except (KeyError, ValueError):
        return None


def parse_attempts(log: bytes | None, open_: bytes | None, worker: bytes | None) -> list[Attempt]:
    """The record's attempt_log lines, then its attempt_open (the running one, under the
    record's worker)."""
    attempts: list[Attempt] = []
    for line in (log or b"").split(b"\n"):
        attempt = _ended(line)
        if attempt is not None:
            attempts.append(attempt)
    running = _running(open_ or b"", worker)
    if running is not None:
        attempts.append(running)
    return attempts


def _ended(line: bytes) -> Attempt | None:
    if not line:
        return None
    try:
        n, worker, started, ended, outcome, error = json.loads(line)
        return Attempt(
            attempt=int(n),
            worker_id=str(worker) or None,
            started_at_ms=int(started),
            ended_at_ms=int(ended),
            outcome=AttemptOutcome(outcome),
            error=str(error) or None,
        )
    except (ValueError, TypeError):
        return None  # a line another program wrote


def _running(open_: bytes, worker: bytes | None) -> Attempt | None:
    n, _, started = open_.partition(b":")
    if not n.isdigit() or not started.isdigit():
        return None
    return Attempt(attempt=int(n), worker_id=_text(worker), started_at_ms=int(started))


class RedisEvents(RedisContext):
    """The EventLog methods."""

    async def _event_queues(self, queues: Sequence[QueueName] | None) -> list[QueueName]:
        if queues is not None:
            return list(queues)
        with broker_errors("read_events"):
            return await self._registry.names(self._redis, self._scripts)

    async def read_events(
        self,
        cursor: str | None,
        *,
        queues: Sequence[QueueName] | None = None,
        limit: int = 100,
        block_s: float = 0.0,
    ) -> EventPage:
        positions = decode_cursor(cursor)
        names = await self._event_queues(queues)
        if not names:
            return EventPage(cursor=encode_cursor(positions))
        by_key = {self._q(name).events: name for name in names}
        streams: dict[Any, Any] = {k: positions.get(name, START) for k, name in by_key.items()}
        count = max(1, limit)
        with broker_errors("read_events"):
            if block_s > 0:
                client = self._conn().blocking(block_s)
                block_ms = max(1, round(block_s * 1000))
                reply = await client.xread(streams, count=count, block=block_ms)
            else:
                reply = await self._redis.xread(streams, count=count)
            gap = bool(cursor) and await self._gap(streams)
        return _page(cast(list[Any], reply or []), by_key, positions, count, gap)

    async def _gap(self, streams: dict[Any, Any]) -> bool:
        """True when a stream trimmed entries after the position given for it: the position
        itself is older than the first entry kept (a cursor whose next entry happens to be
        the first kept is reported too), or it is the start and anything was trimmed."""
        if not streams:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in streams:
                pipe.xinfo_stream(key)
            infos = await pipe.execute(raise_on_error=False)
        for position, info in zip(streams.values(), infos, strict=True):
            if isinstance(info, dict) and _trimmed_past(stream_id(position), info):
                return True
        return False

    async def events_cursor(self, queues: Sequence[QueueName] | None = None) -> str:
        names = await self._event_queues(queues)
        with broker_errors("events_cursor"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.xrevrange(self._q(name).events, count=1)
                lasts = await pipe.execute()
        positions = {
            name: last[0][0].decode() if last else START
            for name, last in zip(names, lasts, strict=True)
        }
        return encode_cursor(positions)

    async def job_attempts(self, job_id: JobId, queue: QueueName) -> list[Attempt]:
        with broker_errors("job_attempts"):
            async with self._redis.pipeline(transaction=False) as pipe:
                fields = ["attempt_log", "attempt_open", "worker_id"]
                pipe.hmget(self._q(queue).job(job_id), fields)
                (reply,) = await pipe.execute(raise_on_error=False)
        if not isinstance(reply, list):
            return []  # not a hash: no history to show
        return parse_attempts(reply[0], reply[1], reply[2])


def _trimmed_past(position: StreamId, info: dict[Any, Any]) -> bool:
    """Whether XINFO STREAM's `info` shows entries trimmed after `position`."""
    first = info.get("first-entry")
    if not first:
        return False
    if position == (0, 0):
        return int(info.get("entries-added") or 0) > int(info.get("length") or 0)
    return stream_id(first[0]) > position


def _page(
    reply: list[Any],
    by_key: dict[str, QueueName],
    positions: dict[QueueName, str],
    limit: int,
    gap: bool,
) -> EventPage:
    """The streams' entries merged by stream id (the first `limit`), each with the cursor
    that reads on after it."""
    entries: list[tuple[StreamId, QueueName, bytes, dict[bytes, bytes]]] = []
    for key, stream_entries in reply:
        queue = by_key[key.decode() if isinstance(key, bytes) else key]
        for entry_id, fields in stream_entries:
            entries.append((stream_id(entry_id), queue, entry_id, fields))
    entries.sort(key=lambda e: (e[0], e[1]))
    reached = dict(positions)
    events: list[Event] = []
    for _, queue, entry_id, fields in entries[:limit]:
        reached[queue] = entry_id.decode()
        event = parse_event(queue, entry_id, fields)
        if event is not None:
            events.append(replace(event, cursor=encode_cursor(reached)))
    return EventPage(events=events, cursor=encode_cursor(reached), gap=gap)
