"""SQLite only: an outage (BrokerError, retried) is told apart from a refusal
(BrokerDataError, at once), and the backend's thread outlives either.

Values sqlite3 cannot bind (an int over 2**63, a str with a lone surrogate, a type it does
not know) are refusals: the transaction writes nothing and the next call goes through.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from corq.backends.base import (
    MAX_JOB_ID_CHARS,
    ClaimedJob,
    Failure,
    NewJob,
    Release,
    WorkerLease,
)
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite.sql import SCHEMA_VERSION
from corq.backends.sqlite.thread import broker_error
from corq.errors import BrokerDataError, BrokerError, CorqError, EnqueueError
from corq.job import JobStatus

T0 = 1_700_000_000_000
LEASE_MS = 30_000


def new_job(job_id: str, **changes: Any) -> NewJob:
    job = NewJob(id=job_id, task="t", queue="q", payload=b"{}", enqueued_at_ms=T0, run_at_ms=T0)
    return dataclasses.replace(job, **changes)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{tmp_path / 'corq.db'}")
    yield b
    await b.close()


async def held(backend: SqliteBackend, job_id: str = "a") -> ClaimedJob:
    await backend.enqueue_jobs([new_job(job_id)])
    await backend.register_worker(WorkerLease(worker_id="w", queues=["q"], lease_ms=LEASE_MS), T0)
    (job,) = (await backend.claim_jobs("q", "w", 1, LEASE_MS, T0)).jobs
    return job


def failure(job: ClaimedJob, **changes: Any) -> Failure:
    base = Failure(
        job_id=job.id,
        queue="q",
        fence=job.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=T0 + 1,
        finished_at_ms=T0,
    )
    return dataclasses.replace(base, **changes)


async def refused(call: Awaitable[object]) -> BrokerDataError:
    """Await `call`, which must be refused at once."""
    started = time.monotonic()
    with pytest.raises(BrokerDataError) as caught:
        await call
    assert time.monotonic() - started < 2
    return caught.value


async def test_a_retry_time_beyond_64_bits_is_refused_and_nothing_is_written(
    backend: SqliteBackend,
) -> None:
    # Given a held job and another one beside it in the same batch
    job = await held(backend)
    other = await held(backend, "b")

    # When a failure asks for a retry at 1e20 ms (a delay of 1e17 s)
    error = await refused(
        backend.fail_jobs("w", [failure(other), failure(job, retry_at_ms=int(1e20))], 60_000)
    )

    # Then it is a refusal naming the cause, and the whole batch wrote nothing
    assert "too large" in str(error)
    assert isinstance(error.__cause__, OverflowError)
    for job_id in ("a", "b"):
        record = await backend.get_job(job_id, "q")
        assert record is not None
        assert record.status is JobStatus.RUNNING
    # and the thread goes on: the batch without the bad value goes through
    assert await backend.fail_jobs("w", [failure(other)], 60_000) == [True]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"run_at_ms": 2**63}, id="run_at over 64 bits"),
        pytest.param({"task": "tasks.\udcff"}, id="lone surrogate in the task"),
        pytest.param({"payload": ["not", "bytes"]}, id="payload of another type"),
    ],
)
async def test_an_unstorable_new_job_is_refused_and_the_batch_is_not_written(
    backend: SqliteBackend, changes: dict[str, Any]
) -> None:
    await refused(backend.enqueue_jobs([new_job("ok"), new_job("bad", **changes)]))

    assert await backend.get_job("ok", "q") is None
    assert await backend.enqueue_jobs([new_job("ok")]) == [True]


async def test_an_error_text_with_a_lone_surrogate_is_refused(backend: SqliteBackend) -> None:
    job = await held(backend)

    error = await refused(backend.fail_jobs("w", [failure(job, error="E: \udcff")], 60_000))

    assert isinstance(error.__cause__, UnicodeEncodeError)
    assert await backend.fail_jobs("w", [failure(job)], 60_000) == [True]


async def test_a_release_of_a_fence_beyond_64_bits_is_refused(backend: SqliteBackend) -> None:
    job = await held(backend)
    release = Release(job_id=job.id, queue="q", fence=2**64)

    await refused(backend.release_jobs("w", [release]))

    assert await backend.release_jobs("w", [Release(job_id="a", queue="q", fence=job.fence)]) == [
        True
    ]


@pytest.mark.parametrize(
    ("job", "named"),
    [
        pytest.param(new_job(""), "empty", id="empty id"),
        pytest.param(new_job("x" * (MAX_JOB_ID_CHARS + 1)), "201 characters", id="long id"),
        pytest.param(new_job("p", priority=101), "priority 101", id="priority too high"),
        pytest.param(new_job("p", priority=True), "priority True", id="priority not an int"),
    ],
)
async def test_enqueue_refuses_what_no_broker_stores_before_writing(
    backend: SqliteBackend, job: NewJob, named: str
) -> None:
    with pytest.raises(EnqueueError, match=named):
        await backend.enqueue_jobs([new_job("first"), job])
    assert await backend.get_job("first", "q") is None


async def test_a_newer_schema_is_refused_at_once_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "corq.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        for _ in range(3):  # not a crash of the thread: every call gets the same answer
            error = await refused(b.ping())
            assert "newer" in str(error)
    finally:
        await b.close()


#: SQLite primary result codes and how their failure is told.
CODES = [
    (5, BrokerError),  # SQLITE_BUSY
    (6, BrokerError),  # SQLITE_LOCKED
    (7, BrokerError),  # SQLITE_NOMEM
    (10 | (4 << 8), BrokerError),  # SQLITE_IOERR_READ (an extended code)
    (13, BrokerError),  # SQLITE_FULL
    (14, BrokerError),  # SQLITE_CANTOPEN
    (1, BrokerDataError),  # SQLITE_ERROR: no such table or column, a syntax error
    (8, BrokerDataError),  # SQLITE_READONLY
    (11, BrokerDataError),  # SQLITE_CORRUPT
    (19, BrokerDataError),  # SQLITE_CONSTRAINT
    (26, BrokerDataError),  # SQLITE_NOTADB
]


@pytest.mark.parametrize(("code", "kind"), CODES)
def test_sqlite_failures_are_told_by_their_result_code(code: int, kind: type[CorqError]) -> None:
    exc = sqlite3.OperationalError("some failure")
    exc.sqlite_errorcode = code  # what sqlite3 sets on the errors it raises
    assert type(broker_error(exc, "f.db")) is kind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (sqlite3.OperationalError("database is locked"), BrokerError),
        (sqlite3.OperationalError("disk I/O error"), BrokerError),
        (sqlite3.OperationalError("no such column: departed"), BrokerDataError),
        (sqlite3.DatabaseError("database disk image is malformed"), BrokerDataError),
        (sqlite3.IntegrityError("NOT NULL constraint failed: jobs.seq"), BrokerDataError),
        (sqlite3.ProgrammingError("Error binding parameter 1"), BrokerDataError),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), BrokerDataError),
        (UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"), BrokerDataError),
    ],
)
def test_failures_without_a_code_are_told_by_their_kind(
    exc: BaseException, kind: type[CorqError]
) -> None:
    error = broker_error(exc, "f.db")
    assert type(error) is kind
    assert "f.db" in str(error)
