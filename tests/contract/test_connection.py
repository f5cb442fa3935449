"""Broker contract, the broker as a whole: its connection, how it fails, whose clock it keeps.

Methods: ``ping``, ``clone``, ``close`` (every port shares the connection); the error
classes and the broker's clock apply to every method of every port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import pytest

from corq.backends import Backend, open_backend
from corq.backends.base import (
    Completion,
    NewJob,
    Reclaimed,
)
from corq.errors import BrokerDataError, BrokerError
from corq.job import JobStatus
from tests.conftest import free_port
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import (
    DAY_MS,
    HOUR_MS,
    LEASE_MS,
    Q,
    claim,
    completion,
    failure,
    lease_of,
    new_job,
    record,
    register,
    wall_ms,
)

# ------------------------------------------------------------------------------------------------
# Connection
# ------------------------------------------------------------------------------------------------


async def test_ping_and_a_clone_on_another_thread(backend: Backend) -> None:
    await backend.ping()
    await backend.enqueue_jobs([new_job("a")])
    seen: list[JobStatus | None] = []

    async def read_from_clone(clone: Backend) -> None:
        try:
            job = await clone.get_job("a", Q)
            seen.append(job.status if job else None)
        finally:
            await clone.close()

    thread = threading.Thread(target=asyncio.run, args=(read_from_clone(backend.clone()),))
    thread.start()
    await asyncio.to_thread(thread.join, 10)

    assert seen == [JobStatus.QUEUED]


# ------------------------------------------------------------------------------------------------
# How a broker fails
#
# A request the broker refuses, or a store it cannot use, raises BrokerDataError at once
# (retrying will not help); a broker that cannot be reached raises BrokerError (retried).
# ------------------------------------------------------------------------------------------------


async def test_a_value_that_cannot_be_stored_is_refused_not_an_outage(backend: Backend) -> None:
    # A lone surrogate (say from a file name that is not UTF-8) cannot be stored as text
    unstorable = dataclasses.replace(new_job("a"), task="tasks.\udcff")

    started = time.monotonic()
    with pytest.raises(BrokerDataError):
        await backend.enqueue_jobs([unstorable])

    # it is refused at once, and the broker goes on serving
    assert time.monotonic() - started < 2
    assert await backend.enqueue_jobs([new_job("b")]) == [True]
    assert (await record(backend, "b")).task == "tasks.add"


async def test_a_store_it_cannot_use_is_refused_at_once(broker: Broker, damage: Damage) -> None:
    # Given a store another program left unusable (a key of the wrong type where the queue's
    # ready jobs go; a schema written by a newer corq)
    first = broker.open()
    await first.enqueue_jobs([new_job("a")])
    await damage.make_unusable(Q)

    # When a backend uses it, then it is refused at once, not retried as an outage
    backend = broker.open()
    started = time.monotonic()
    with pytest.raises(BrokerDataError):
        await backend.enqueue_jobs([new_job("b")])
    assert time.monotonic() - started < 2


def unreachable_url(broker: Broker, tmp_path: Path) -> str:
    if broker.kind == "redis":
        return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return f"sqlite:///{blocker / 'corq.db'}"  # a file cannot be opened under a file


async def test_a_broker_that_cannot_be_reached_is_an_outage(broker: Broker, tmp_path: Path) -> None:
    backend = open_backend(unreachable_url(broker, tmp_path), socket_timeout_s=1)
    try:
        with pytest.raises(BrokerError):
            await backend.ping()
        with pytest.raises(BrokerError):
            await backend.enqueue_jobs([new_job("a")])
    finally:
        await backend.close()


# ------------------------------------------------------------------------------------------------
# Broker time: ``now_ms=None`` means the broker's own clock
#
# Workers on the system clock pass None, so a lease is taken, renewed and judged by one
# clock, and one machine's wrong clock can never expire another's lease. Timestamps the
# writers send (``enqueued_at_ms``, ``run_at_ms``, ``finished_at_ms``, ``retry_at_ms``) are
# stored as sent. The test's broker runs on this machine, so its clock is `wall_ms()`.
# ------------------------------------------------------------------------------------------------


def stamped(job_id: str, enqueued_at_ms: int, run_at_ms: int | None = None) -> NewJob:
    """A job as a producer whose clock reads `enqueued_at_ms` sends it."""
    return NewJob(
        id=job_id,
        task="tasks.add",
        queue=Q,
        payload=b"{}",
        enqueued_at_ms=enqueued_at_ms,
        run_at_ms=enqueued_at_ms if run_at_ms is None else run_at_ms,
    )


async def reclaim_until(backend: Backend, job_id: str, timeout_s: float = 10) -> list[Reclaimed]:
    """Reclaim by the broker's clock until `job_id` comes back; everything reclaimed."""
    seen: list[Reclaimed] = []
    deadline = time.monotonic() + timeout_s
    while job_id not in {r.job_id for r in seen}:
        assert time.monotonic() < deadline, f"{job_id} was never reclaimed"
        seen += await backend.reclaim_stalled_jobs(Q, None, max_deaths=3)
        await asyncio.sleep(0.01)
    return seen


async def test_leases_are_taken_and_judged_by_the_broker_clock(backend: Backend) -> None:
    # Given two workers on broker time: w-long with a 30 s lease, w-short with 0.3 s
    now = wall_ms()
    await backend.enqueue_jobs([stamped("long", now), stamped("short", now)])
    long_lease = lease_of("w-long")
    short_lease = lease_of("w-short", lease_ms=300)
    await backend.register_worker(long_lease, None)
    await backend.register_worker(short_lease, None)
    before = wall_ms()
    (long_job,) = await claim(backend, "w-long", None, count=1)
    batch = await backend.claim_jobs(Q, "w-short", 1, 300, None)
    after = wall_ms()
    assert [j.id for j in batch.jobs] == ["short"]
    started = (await record(backend, "long")).started_at_ms
    assert started is not None
    assert before <= started <= after

    # When the broker's clock passes the short lease (and only it)
    reclaimed = await reclaim_until(backend, "short")

    # Then only the short lease's job came back; the other holder is still in good standing
    assert reclaimed == [Reclaimed(job_id="short", queue=Q, worker_id="w-short", dead=False)]
    assert await backend.heartbeat(long_lease, None) == []
    assert await backend.complete_jobs("w-long", [completion(long_job)], 60_000) == [True]
    assert await backend.heartbeat(short_lease, None) == [Q]


async def test_a_clock_far_ahead_cannot_expire_a_live_holder(
    backend: Backend, broker: Broker
) -> None:
    # Given w1 holding a job on broker time
    now = wall_ms()
    await backend.enqueue_jobs([stamped("held", now)])
    lease = await register(backend, "w1", None)
    (held,) = await claim(backend, "w1", None)

    # When another process whose clock is a day ahead works on the same queue: its
    # producer, operator and worker stamp jobs and outcomes with its clock (an operator's
    # cancel too), but leave leases and delays to the broker (None), as a worker on the
    # system clock does
    ahead = broker.open()
    skewed = wall_ms() + DAY_MS
    await ahead.enqueue_jobs([stamped("gone", skewed, skewed + HOUR_MS)])
    assert await ahead.cancel_job("gone", Q, skewed) is True
    await ahead.enqueue_jobs([stamped("mine", skewed), stamped("theirs", skewed)])
    await register(ahead, "w-ahead", None)
    mine, theirs = await claim(ahead, "w-ahead", None)
    done = Completion(job_id=mine.id, queue=Q, fence=mine.fence, result=b"1", finished_at_ms=skewed)
    assert await ahead.complete_jobs("w-ahead", [done], 60_000) == [True]
    retry = failure(theirs, skewed + 1_000, at_ms=skewed)
    assert await ahead.fail_jobs("w-ahead", [retry], 60_000) == [True]
    assert await ahead.promote_due_jobs(Q, None) == skewed + 1_000
    reclaimed = await ahead.reclaim_stalled_jobs(Q, None, max_deaths=3)

    # Then w1's lease was not touched: nothing was reclaimed, w1 is still registered and
    # records its outcome; and the retry it stamped a day ahead is not due yet
    assert reclaimed == []
    assert await backend.reclaim_stalled_jobs(Q, None, max_deaths=3) == []
    assert await backend.heartbeat(lease, None) == []
    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)
    assert (batch.jobs, batch.next_due_ms) == ([], skewed + 1_000)
    job = await record(backend, "mine")
    assert (job.status, job.enqueued_at_ms, job.finished_at_ms) == (
        JobStatus.SUCCEEDED,
        skewed,
        skewed,
    )


async def test_delays_are_due_by_the_broker_clock(backend: Backend) -> None:
    # Given a job due a second ago and one due in an hour, by the producer's clock
    now = wall_ms()
    await backend.enqueue_jobs(
        [stamped("due", now - 2_000, now - 1_000), stamped("later", now, now + HOUR_MS)]
    )
    await register(backend, "w1", None)

    # When a worker on broker time claims
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)

    # Then it gets the due one and learns when the other is due
    assert [j.id for j in batch.jobs] == ["due"]
    assert batch.next_due_ms == now + HOUR_MS
    assert await backend.promote_due_jobs(Q, None) == now + HOUR_MS
    assert (await record(backend, "later")).status == JobStatus.SCHEDULED

    # And a cancel on broker time stamps the broker's time
    before = wall_ms()
    assert await backend.cancel_job("later", Q, None) is True
    cancelled = await record(backend, "later")
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at_ms is not None
    assert before <= cancelled.finished_at_ms <= wall_ms()


async def test_a_departed_holder_lingers_by_the_broker_clock(backend: Backend) -> None:
    # Given two workers departing holding a job each: one lingers 0.2 s, one 10 minutes
    now = wall_ms()
    await backend.enqueue_jobs([stamped("quick", now), stamped("slow", now)])
    for worker, job_id in (("w-quick", "quick"), ("w-slow", "slow")):
        await register(backend, worker, None)
        assert [j.id for j in await claim(backend, worker, None, count=1)] == [job_id]
    await backend.deregister_worker(lease_of("w-quick"), None, linger_ms=200)
    await backend.deregister_worker(lease_of("w-slow"), None, linger_ms=600_000)

    # When the broker's clock passes the short linger
    reclaimed = await reclaim_until(backend, "quick")

    # Then only that job was given back, without a death
    assert reclaimed == [
        Reclaimed(job_id="quick", queue=Q, worker_id="w-quick", dead=False, released=True)
    ]
    assert (await record(backend, "quick")).deaths == 0
    assert (await record(backend, "slow")).status == JobStatus.RUNNING


async def test_retry_dead_on_broker_time(backend: Backend) -> None:
    now = wall_ms()
    await backend.enqueue_jobs([stamped("a", now)])
    await register(backend, "w1", None)
    (held,) = await claim(backend, "w1", None)
    assert await backend.fail_jobs("w1", [failure(held, None, at_ms=now)], 60_000) == [True]

    assert await backend.retry_dead(Q, None, None) == 1

    assert (await record(backend, "a")).status == JobStatus.QUEUED
    assert [j.id for j in await claim(backend, "w1", None)] == ["a"]
