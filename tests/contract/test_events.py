"""Broker contract, EventLog port: lifecycle events and each job's attempts.

Methods: ``read_events``, ``events_cursor``, ``job_attempts``; and the event each
state-changing method of the other ports writes in the same step as its change.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from corq.backends import Backend
from corq.errors import ConfigError
from corq.events import AttemptOutcome, Event, EventKind
from tests.contract.conftest import Broker
from tests.contract.jobs import (
    LATER,
    T0,
    Q,
    claim,
    completion,
    failure,
    new_job,
    register,
    release,
)
from tests.contract.workflows import dag, settle, wjob

K = EventKind


async def events_of(
    backend: Backend, job_id: str | None = None, cursor: str | None = None
) -> list[Event]:
    """Every event kept after `cursor` (of one job when given), read page by page."""
    out: list[Event] = []
    while True:
        page = await backend.read_events(cursor, limit=50)
        out += [e for e in page.events if job_id is None or e.job_id == job_id]
        if not page.events:
            return out
        cursor = page.cursor


async def kinds(backend: Backend, job_id: str, cursor: str | None = None) -> list[EventKind]:
    return [e.kind for e in await events_of(backend, job_id, cursor)]


# ------------------------------------------------------------------------------------------------
# What each change writes
# ------------------------------------------------------------------------------------------------


async def test_a_job_retried_once_then_succeeding_writes_each_move_in_order(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (job,) = await claim(backend, "w1")
    assert await backend.set_progress("a", Q, "w1", job.fence, 0.5)
    assert await backend.fail_jobs("w1", [failure(job, T0 + 100)], 60_000) == [True]
    await backend.promote_due_jobs(Q, T0 + 100)
    (again,) = await claim(backend, "w1", T0 + 200)
    assert await backend.complete_jobs("w1", [completion(again, at_ms=T0 + 300)], 60_000)

    events = await events_of(backend, "a")

    assert [e.kind for e in events] == [
        K.ENQUEUED, K.STARTED, K.PROGRESS, K.FAILED, K.RETRIED, K.STARTED, K.SUCCEEDED
    ]  # fmt: skip
    assert [e.attempt for e in events] == [0, 1, 1, 1, 1, 2, 2]
    assert {e.worker_id for e in events if e.kind in (K.STARTED, K.FAILED, K.SUCCEEDED)} == {"w1"}
    assert events[3].detail == "ValueError: boom"
    assert events[2].detail is not None
    assert float(events[2].detail) == 0.5
    assert {(e.queue, e.task) for e in events} == {(Q, "tasks.add")}
    assert (events[0].at_ms, events[-1].at_ms) == (T0, T0 + 300)


async def test_a_change_refused_writes_no_event(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (job,) = await claim(backend, "w1")
    cursor = await backend.events_cursor()

    stale = dataclasses.replace(completion(job), fence=job.fence + 1)
    assert await backend.complete_jobs("w1", [stale], 60_000) == [False]
    assert await backend.fail_jobs("w2", [failure(job)], 60_000) == [False]
    assert not await backend.set_progress("a", Q, "w1", job.fence + 1, 0.5)
    assert await backend.enqueue_jobs([new_job("a")]) == [False]
    assert not await backend.cancel_job("nope", Q, T0)

    assert await events_of(backend, cursor=cursor) == []


async def test_dead_retry_dead_cancel_release_and_expiry_write_their_events(
    backend: Backend,
) -> None:
    late = dataclasses.replace(new_job("late"), start_by_ms=T0 + 5)
    await backend.enqueue_jobs([new_job("d"), new_job("r"), new_job("c", delay_ms=50), late])
    assert await backend.cancel_job("c", Q, T0 + 1)
    await register(backend, "w1")
    jobs = {j.id: j for j in await claim(backend, "w1", T0 + 10)}
    assert set(jobs) == {"d", "r"}  # "late" ended expired instead
    assert await backend.fail_jobs("w1", [failure(jobs["d"], error="boom")], 60_000)
    assert await backend.release_jobs("w1", [release(jobs["r"])]) == [True]
    assert await backend.retry_dead(Q, ["d"], T0 + 20) == 1

    assert await kinds(backend, "d") == [K.ENQUEUED, K.STARTED, K.DEAD, K.RETRIED]
    assert await kinds(backend, "r") == [K.ENQUEUED, K.STARTED, K.RELEASED]
    assert await kinds(backend, "c") == [K.ENQUEUED, K.CANCELLED]
    assert await kinds(backend, "late") == [K.ENQUEUED, K.EXPIRED]
    (dead,) = [e for e in await events_of(backend, "d") if e.kind is K.DEAD]
    assert (dead.detail, dead.worker_id) == ("boom", "w1")


async def test_a_snooze_and_a_running_cancel_end_their_attempts_with_their_events(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("s"), new_job("c")])
    await register(backend, "w1")
    jobs = {j.id: j for j in await claim(backend, "w1", T0 + 10)}
    snooze = dataclasses.replace(
        failure(jobs["s"], T0 + 500, error="not ready"), snoozed=True, counted=False
    )
    assert await backend.fail_jobs("w1", [snooze], 60_000) == [True]
    assert await backend.cancel_job("c", Q, T0 + 20)

    assert await kinds(backend, "s") == [K.ENQUEUED, K.STARTED, K.SNOOZED]
    assert await kinds(backend, "c") == [K.ENQUEUED, K.STARTED, K.CANCELLED]
    (snoozed,) = await backend.job_attempts("s", Q)
    (cancelled,) = await backend.job_attempts("c", Q)
    assert (snoozed.outcome, snoozed.error) == (AttemptOutcome.SNOOZED, "not ready")
    assert (cancelled.outcome, cancelled.worker_id) == (AttemptOutcome.CANCELLED, "w1")


async def test_a_lost_workers_job_is_released_and_its_attempt_lost(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    await claim(backend, "w1")

    await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    assert await kinds(backend, "a") == [K.ENQUEUED, K.STARTED, K.RELEASED]
    (attempt,) = await backend.job_attempts("a", Q)
    assert (attempt.outcome, attempt.worker_id) == (AttemptOutcome.LOST, "w1")


async def test_a_dependent_of_a_dead_job_ends_upstream_failed(backend: Backend) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    await settle(backend)
    await register(backend, "w1")
    (job,) = await claim(backend, "w1")
    assert await backend.fail_jobs("w1", [failure(job)], 60_000) == [True]

    await settle(backend)

    assert await kinds(backend, "a") == [K.ENQUEUED, K.STARTED, K.DEAD]
    assert await kinds(backend, "b") == [K.ENQUEUED, K.UPSTREAM_FAILED]


# ------------------------------------------------------------------------------------------------
# Reading: order, cursors, queues, waiting
# ------------------------------------------------------------------------------------------------


async def test_pages_resume_where_the_cursor_left_off(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(7)])

    first = await backend.read_events(None, limit=3)
    rest = await backend.read_events(first.cursor, limit=100)
    from_middle = await backend.read_events(first.events[1].cursor, limit=100)

    assert [e.job_id for e in first.events + rest.events] == [f"j{i}" for i in range(7)]
    assert [e.job_id for e in from_middle.events] == [f"j{i}" for i in range(2, 7)]
    assert not rest.gap
    again = await backend.read_events(rest.cursor)
    assert (again.events, again.cursor) == ([], rest.cursor)


async def test_a_cursor_from_now_reads_only_what_comes_after(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("old")])
    cursor = await backend.events_cursor([Q])

    await backend.enqueue_jobs([new_job("new")])

    assert [e.job_id for e in (await backend.read_events(cursor, queues=[Q])).events] == ["new"]


async def test_queues_filter_the_events(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])

    page = await backend.read_events(None, queues=["q2"])

    assert [(e.queue, e.job_id) for e in page.events] == [("q2", "b")]
    assert {e.job_id for e in (await backend.read_events(None)).events} == {"a", "b"}


async def test_a_blocking_read_returns_when_an_event_comes(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("before")])
    cursor = await backend.events_cursor([Q])
    reader = asyncio.create_task(backend.read_events(cursor, queues=[Q], block_s=10))

    other = backend.clone()
    try:
        await other.enqueue_jobs([new_job("after")])
    finally:
        await other.close()

    page = await asyncio.wait_for(reader, 10)
    assert [e.job_id for e in page.events] == ["after"]


async def test_a_cursor_no_read_gave_is_refused(backend: Backend) -> None:
    with pytest.raises(ConfigError):
        await backend.read_events("not a cursor!")


# ------------------------------------------------------------------------------------------------
# The bound
# ------------------------------------------------------------------------------------------------


async def test_the_log_keeps_about_events_max_and_reports_the_gap(broker: Broker) -> None:
    backend = broker.open(events_max=100)
    await backend.enqueue_jobs([new_job("first")])
    start = await backend.events_cursor([Q])

    for chunk in range(10):
        await backend.enqueue_jobs([new_job(f"j{chunk}-{i}") for i in range(100)])

    kept = await events_of(backend)
    assert 100 <= len(kept) <= 200  # trimmed in steps (Redis: whole stream nodes)
    assert kept[-1].job_id == "j9-99"
    behind = await backend.read_events(start, queues=[Q])
    assert behind.gap
    assert behind.events[0].job_id == kept[0].job_id
    assert not (await backend.read_events(kept[0].cursor, queues=[Q])).gap


async def test_events_max_0_writes_no_events_but_keeps_attempts(broker: Broker) -> None:
    backend = broker.open(events_max=0)
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (job,) = await claim(backend, "w1")
    await backend.complete_jobs("w1", [completion(job)], 60_000)

    assert (await backend.read_events(None)).events == []
    assert [a.outcome for a in await backend.job_attempts("a", Q)] == [AttemptOutcome.SUCCEEDED]


# ------------------------------------------------------------------------------------------------
# Attempts
# ------------------------------------------------------------------------------------------------


async def test_the_attempts_of_a_job_retried_twice_then_succeeded(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    await register(backend, "w2")
    for n, worker in enumerate(["w1", "w2"]):
        (job,) = await claim(backend, worker, T0 + 100 * n)
        bad = failure(
            job, T0 + 100 * n + 50, error=f"ValueError: try {n + 1}", at_ms=T0 + 100 * n + 7
        )
        assert await backend.fail_jobs(worker, [bad], 60_000) == [True]
        await backend.promote_due_jobs(Q, T0 + 100 * n + 50)
    assert [a.outcome for a in await backend.job_attempts("a", Q)] == [AttemptOutcome.FAILED] * 2
    (job,) = await claim(backend, "w1", T0 + 200)
    running = await backend.job_attempts("a", Q)
    assert (running[-1].outcome, running[-1].ended_at_ms) == (AttemptOutcome.RUNNING, None)
    await backend.complete_jobs("w1", [completion(job, at_ms=T0 + 250)], 60_000)

    attempts = await backend.job_attempts("a", Q)

    assert [(a.attempt, a.worker_id, a.outcome) for a in attempts] == [
        (1, "w1", AttemptOutcome.FAILED),
        (2, "w2", AttemptOutcome.FAILED),
        (3, "w1", AttemptOutcome.SUCCEEDED),
    ]
    assert [(a.started_at_ms, a.ended_at_ms) for a in attempts] == [
        (T0, T0 + 7),
        (T0 + 100, T0 + 107),
        (T0 + 200, T0 + 250),
    ]
    assert [a.error for a in attempts] == ["ValueError: try 1", "ValueError: try 2", None]


async def test_a_job_never_started_or_unknown_has_no_attempts(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    assert await backend.job_attempts("a", Q) == []
    assert await backend.job_attempts("nope", Q) == []


async def test_attempts_go_with_the_record(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (job,) = await claim(backend, "w1")
    await backend.fail_jobs("w1", [failure(job)], 60_000)
    assert len(await backend.job_attempts("a", Q)) == 1

    assert await backend.purge_dead(Q, ["a"]) == 1

    assert await backend.job_attempts("a", Q) == []
