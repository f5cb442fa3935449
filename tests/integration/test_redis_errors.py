"""Redis failures: an outage is a BrokerError (retried), a refusal a BrokerDataError (at once).

Reproduced before: a key of the wrong type, or a value Redis refuses, gave 30 s of "broker
unreachable" retries; and a script that failed on a queue key half-way kept its writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import exceptions as rx
from redis.asyncio import Redis

from corq.backends.base import Completion, Failure, WorkerLease
from corq.backends.redis import RedisBackend
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.errors import BrokerDataError, BrokerError
from corq.job import JobStatus
from tests.conftest import RedisServer
from tests.contract.jobs import LEASE_MS, T0, Q, new_job


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
def keys(prefix: str) -> QueueKeys:
    return RedisKeys(prefix).queue(Q)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (it is stopped or blocked on purpose)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def register(backend: RedisBackend) -> None:
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=LEASE_MS), T0)


# -- refusals --------------------------------------------------------------------------
async def test_a_ready_set_of_the_wrong_type_refuses_enqueue_at_once_writing_nothing(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await raw.set(keys.ready, "not a sorted set")

    started = time.monotonic()
    with pytest.raises(BrokerDataError, match="WRONGTYPE"):
        await backend.enqueue_jobs([new_job("a"), new_job("later", delay_ms=5_000)])

    assert time.monotonic() - started < 1
    assert not await raw.exists(keys.job("a"), keys.job("later"), keys.delayed)


async def test_a_held_set_of_the_wrong_type_refuses_a_claim_before_any_job_moves(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    await raw.set(keys.held("w1"), "not a set")

    with pytest.raises(BrokerDataError, match="WRONGTYPE"):
        await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)

    assert await raw.zcard(keys.ready) == 2
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 0)


async def test_dead_letters_of_the_wrong_type_refuse_a_failure_before_it_is_recorded(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (job,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    await raw.set(keys.dead, "not a sorted set")
    failure = Failure(
        job_id="a",
        queue=Q,
        fence=job.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=None,
        finished_at_ms=T0,
    )

    with pytest.raises(BrokerDataError):
        await backend.fail_jobs("w1", [failure], 60_000)

    record = await backend.get_job("a", Q)
    assert record is not None
    assert (record.status, record.error, record.failures) == (JobStatus.RUNNING, None, 0)
    assert await backend.count_held_jobs(Q, "w1") == 1


async def test_a_value_redis_py_cannot_send_is_refused(backend: RedisBackend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (job,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    unsendable = Completion(
        job_id="a",
        queue=Q,
        fence=job.fence,
        result=["not", "bytes"],  # type: ignore[arg-type]  # what a buggy caller might pass
        finished_at_ms=T0,
    )

    with pytest.raises(BrokerDataError):
        await backend.complete_jobs("w1", [unsendable], 60_000)


# -- outages ---------------------------------------------------------------------------
async def test_a_stopped_server_is_an_outage(own_server: RedisServer, prefix: str) -> None:
    backend = RedisBackend(own_server.url, prefix=prefix, socket_timeout_s=1)
    try:
        await backend.enqueue_jobs([new_job("a")])
        own_server.stop()

        for call in (
            backend.ping(),
            backend.enqueue_jobs([new_job("b")]),
            backend.claim_jobs(Q, "w1", 1, LEASE_MS, None),
            backend.get_job("a", Q),
            backend.list_queues(),
        ):
            with pytest.raises(BrokerError):
                await call
    finally:
        await backend.close()


async def answers_busy(client: Redis) -> bool:
    try:
        await client.ping()
    except rx.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


async def test_a_server_busy_running_a_script_is_an_outage(
    own_server: RedisServer, prefix: str
) -> None:
    # Given a server stuck in a long script (any client of it is answered BUSY)
    admin = Redis.from_url(own_server.url)
    blocker = Redis.from_url(own_server.url)
    backend = RedisBackend(own_server.url, prefix=prefix, socket_timeout_s=2)
    try:
        await admin.config_set("busy-reply-threshold", 10)

        async def spin() -> None:
            await blocker.eval("while true do end", 0)

        stuck = asyncio.create_task(spin())
        while True:  # polled: the server is in a state, not sending an event
            if await answers_busy(admin):
                break
            await asyncio.sleep(0.01)

        # When the backend calls it, then it is told to come back later, not refused
        with pytest.raises(BrokerError, match="BUSY"):  # (BrokerDataError is no BrokerError)
            await backend.ping()
    finally:
        await admin.script_kill()
        with pytest.raises(rx.ResponseError):
            await stuck
        await backend.close()
        await blocker.aclose()
        await admin.aclose()


# -- the classification itself ---------------------------------------------------------
OUTAGES: list[BaseException] = [
    rx.ConnectionError("Connection refused"),
    rx.TimeoutError("Timeout reading from socket"),
    rx.BusyLoadingError("Redis is loading the dataset in memory"),
    rx.ReadOnlyError("You can't write against a read only replica."),
    rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    rx.TryAgainError("Multiple keys request during rehashing of slot"),
    rx.ClusterDownError("The cluster is down"),
    rx.MasterDownError("Link with MASTER is down"),
    rx.ResponseError("BUSY Redis is busy running a script."),
    rx.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's failing"),
    rx.InvalidResponse("Protocol error, got 'x' as reply type byte"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
]
REFUSALS: list[BaseException] = [
    rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    rx.ResponseError("ERR Error running script (call to f_x): user_script:1: oops"),
    rx.NoPermissionError("this user has no permissions to run the 'eval' command"),
    rx.DataError("Invalid input of type: 'list'."),
    UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
async def test_failures_worth_retrying_are_outages(exc: BaseException) -> None:
    with pytest.raises(BrokerError), broker_errors("test"):
        raise exc


@pytest.mark.parametrize("exc", REFUSALS, ids=lambda e: type(e).__name__)
async def test_failures_retrying_cannot_help_are_refusals(exc: BaseException) -> None:
    with pytest.raises(BrokerDataError), broker_errors("test"):
        raise exc
