"""Fixtures of the contract suite: every test runs against every broker.

- `broker`: which broker a test runs on, and how to open more backends on the same store
  (with options, e.g. dead-letter bounds);
- `backend`: one backend opened on it;
- `damage`: writes raw values into the store the way another program would (redis-py on
  the test's keys, plain sqlite3 on the test's file), with one interface for both brokers,
  so one test checks that a damaged record costs only itself on each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from corq.backends import Backend, open_backend
from corq.backends.base import EVENTS_MAX
from corq.backends.record import SHOWN_FIELDS

BROKERS = ["redis", "sqlite"]

#: Fields of a job record a test may damage (Redis HASH fields, SQLite columns of the jobs
#: table): those people see, but the key's own id and queue, and the claim's fence.
JOB_FIELDS = (frozenset(SHOWN_FIELDS) - {"id", "queue"}) | {"fence"}

#: A raw value as another program may write it; None removes it (HDEL, or NULL).
RawValue = str | bytes | int | None


@dataclass
class Broker:
    """The store one test runs on."""

    #: "redis" or "sqlite".
    kind: str
    url: str
    prefix: str
    #: The SQLite file (None on Redis).
    path: Path | None = None
    _opened: list[Backend] = field(default_factory=list)

    def open(
        self, *, dead_max: int = 0, dead_ttl_ms: int = 0, events_max: int = EVENTS_MAX
    ) -> Backend:
        """Another backend on the same store (closed when the test ends)."""
        backend = open_backend(
            self.url,
            prefix=self.prefix,
            dead_max=dead_max,
            dead_ttl_ms=dead_ttl_ms,
            events_max=events_max,
        )
        self._opened.append(backend)
        return backend

    async def close_all(self) -> None:
        for backend in self._opened:
            await backend.close()
        self._opened.clear()


@pytest.fixture(params=BROKERS)
async def broker(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[Broker]:
    if request.param == "redis":
        handle = Broker("redis", str(request.getfixturevalue("redis_url")), prefix)
    else:
        path = tmp_path / "corq.db"
        handle = Broker("sqlite", f"sqlite:///{path}", prefix, path)
    yield handle
    await handle.close_all()


@pytest.fixture
def backend(broker: Broker) -> Backend:
    return broker.open()


class Damage:
    """Raw writes into the store behind the backend's back (what another program could do).

    Every method damages one thing and leaves the rest as the broker wrote it.
    """

    kind: str

    async def set_field(self, queue: str, job_id: str, name: str, value: RawValue) -> None:
        """Write `value` as is into field `name` of the job's record (None: remove it).

        A value SQLite's schema cannot hold (NULL in a NOT NULL column) cannot be written
        by another program either: the test is skipped there.
        """
        raise NotImplementedError

    async def wrong_type(self, queue: str, job_id: str) -> None:
        """Make the record unreadable as a job while the queue still lists the id.

        Redis: the job HASH becomes a STRING. SQLite (a row is always a row): the closest
        equivalent, a TEXT payload and a TEXT run_at_ms.
        """
        raise NotImplementedError

    async def delete_record(self, queue: str, job_id: str) -> None:
        """Delete the job's record (Redis: the HASH only; the lanes keep the id)."""
        raise NotImplementedError

    async def add_queue_name(self, name: bytes) -> None:
        """Add a raw name (e.g. not valid UTF-8) to the registry of queue names."""
        raise NotImplementedError

    async def make_unusable(self, queue: str) -> None:
        """Leave a store no backend can use: a key of another type where the queue's ready
        jobs should be (Redis); a schema version from a newer corq (SQLite)."""
        raise NotImplementedError

    async def drop_meta(self, name: str) -> None:
        """SQLite only (skipped on Redis): delete a row of the meta table ('seq', ...)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the damage needed."""


class RedisDamage(Damage):
    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        # Imported here, so the SQLite half of the suite never depends on the Redis package.
        from corq.backends.redis.keys import RedisKeys

        self._redis = aioredis.Redis.from_url(url)
        self._keys = RedisKeys(prefix)

    async def _record_key(self, queue: str, job_id: str) -> str:
        key = self._keys.queue(queue).job(job_id)
        assert await self._redis.exists(key), f"no record of {job_id!r} to damage"
        return key

    async def set_field(self, queue: str, job_id: str, name: str, value: RawValue) -> None:
        assert name in JOB_FIELDS, name
        key = await self._record_key(queue, job_id)
        if value is None:
            await self._redis.hdel(key, name)
        else:
            await self._redis.hset(key, name, value)

    async def wrong_type(self, queue: str, job_id: str) -> None:
        key = await self._record_key(queue, job_id)
        ttl_ms = await self._redis.pttl(key)
        await self._redis.delete(key)
        await self._redis.set(key, b"not a job record", px=ttl_ms if ttl_ms > 0 else None)

    async def delete_record(self, queue: str, job_id: str) -> None:
        await self._redis.delete(await self._record_key(queue, job_id))

    async def add_queue_name(self, name: bytes) -> None:
        key = self._keys.queues
        if await self._redis.type(key) == b"set":  # the registry of an older corq
            await self._redis.sadd(key, name)
        else:
            await self._redis.zadd(key, {name: 0})

    async def make_unusable(self, queue: str) -> None:
        ready = self._keys.queue(queue).ready
        await self._redis.delete(ready)
        await self._redis.set(ready, b"not a sorted set")

    async def drop_meta(self, name: str) -> None:
        pytest.skip("SQLite damage: Redis has no meta table")

    async def close(self) -> None:
        await self._redis.aclose()


class SqliteDamage(Damage):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self._path = path

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> int:
        """Run one statement in its own transaction; returns the rows it changed."""
        conn = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        try:
            return conn.execute(sql, params).rowcount
        finally:
            conn.close()

    def _update_job(
        self, queue: str, job_id: str, assignments: str, values: tuple[object, ...]
    ) -> None:
        changed = self._execute(
            f"UPDATE jobs SET {assignments} WHERE queue = ? AND id = ?", (*values, queue, job_id)
        )
        assert changed == 1, f"no record of {job_id!r} to damage"

    async def set_field(self, queue: str, job_id: str, name: str, value: RawValue) -> None:
        assert name in JOB_FIELDS, name
        try:
            self._update_job(queue, job_id, f"{name} = ?", (value,))
        except sqlite3.IntegrityError as exc:
            pytest.skip(f"SQLite's schema refuses this value in jobs.{name} ({exc})")

    async def wrong_type(self, queue: str, job_id: str) -> None:
        self._update_job(queue, job_id, "payload = ?, run_at_ms = ?", ("not bytes", "not a number"))

    async def delete_record(self, queue: str, job_id: str) -> None:
        changed = self._execute("DELETE FROM jobs WHERE queue = ? AND id = ?", (queue, job_id))
        assert changed == 1, f"no record of {job_id!r} to damage"

    async def add_queue_name(self, name: bytes) -> None:
        conn = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        try:
            # Whatever else a row of this corq's queues table needs, fill it in with zeros.
            columns = [
                column
                for _, column, _, notnull, default, pk in conn.execute("PRAGMA table_info(queues)")
                if column != "name" and notnull and default is None and not pk
            ]
            names = ", ".join(["name", *columns])
            marks = ", ".join("?" * (1 + len(columns)))
            # A BLOB name: the bytes another program wrote, not valid UTF-8 text.
            conn.execute(
                f"INSERT INTO queues ({names}) VALUES ({marks})", (name, *[0] * len(columns))
            )
        finally:
            conn.close()

    async def make_unusable(self, queue: str) -> None:
        self._execute("PRAGMA user_version = 9999")

    async def drop_meta(self, name: str) -> None:
        changed = self._execute("DELETE FROM meta WHERE key = ?", (name,))
        assert changed == 1, f"no meta row {name!r}"


@pytest.fixture
async def damage(broker: Broker) -> AsyncIterator[Damage]:
    tool: Damage
    if broker.kind == "redis":
        tool = RedisDamage(broker.url, broker.prefix)
    else:
        assert broker.path is not None
        tool = SqliteDamage(broker.path)
    yield tool
    await tool.close()
