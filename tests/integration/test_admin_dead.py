"""Dead letters for operators through ``app.admin()``, on both brokers: find by filter,
inspect, re-drive with edited arguments (checked before anything is written, then run by a
worker), re-drive and purge everything matching a filter in bounded steps."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import corq
from corq.backends.base import BATCH
from corq.errors import (
    ArgumentError,
    JobNotFoundError,
    PayloadTooLargeError,
    UnknownTaskError,
)
from corq.job import Job, JobStatus
from corq.testing import drain
from tests.contract.jobs import LEASE_MS, failure, wall_ms


def declare(app: corq.App) -> None:
    @app.task(name="mail.send")
    async def send(to: str, times: int = 1) -> str:
        if to.endswith("@bad"):
            raise ValueError(f"bad address {to}")
        if times <= 0:
            raise ValueError(f"bad times {times}")
        return f"{to} x{times}"

    @app.task(name="img.resize")
    async def resize(width: int) -> int:
        raise KeyError("width")


@pytest.fixture
async def ops(app: corq.App) -> corq.App:
    declare(app)
    return app


async def dead_letter(app: corq.App, to: str = "someone@bad", times: int = 1) -> Job:
    """One job of mail.send run by a worker into the dead letters."""
    handle = await app.registry["mail.send"].enqueue(to, times=times)
    await drain(app)
    job = await app.admin().dead_job(handle.id)
    assert job.status is JobStatus.DEAD
    return job


async def bury(app: corq.App, task: str, count: int) -> None:
    """`count` jobs of `task` sent to the dead letters straight through the broker (a
    worker would take seconds for thousands)."""
    backend = app.client().backend
    arg = (lambda n: f"n{n}@bad") if task == "mail.send" else (lambda n: n)
    await app.client().enqueue_many([app.spec(task, arg(n)) for n in range(count)])
    lease = corq.backends.base.WorkerLease(
        worker_id="killer", queues=["default"], lease_ms=LEASE_MS
    )
    await backend.register_worker(lease, None)
    while True:
        batch = await backend.claim_jobs("default", "killer", BATCH, LEASE_MS, None)
        if not batch.jobs:
            return
        fails = [
            failure(j, error=f"RuntimeError: {task} failed", at_ms=j.enqueued_at_ms)
            for j in batch.jobs
        ]
        assert await backend.fail_jobs("killer", fails, 60_000) == [True] * len(fails)


async def test_a_bad_edit_is_refused_and_writes_nothing(ops: corq.App) -> None:
    # Given a dead job
    job = await dead_letter(ops)
    admin = ops.admin()
    too_big = "x" * (ops.settings.max_payload_bytes + 1)

    # When an operator re-drives it with arguments that do not fit the task
    with pytest.raises(ArgumentError, match="nope"):
        await admin.redrive(job.id, kwargs={"nope": 1})
    with pytest.raises(ArgumentError, match=r"mail\.send"):
        await admin.redrive(job.id, args=["a@b", 2, "three"])
    with pytest.raises(ArgumentError, match="times"):
        await admin.redrive(job.id, args=["a@b", "not a number"])
    with pytest.raises(ArgumentError, match="args must be a list"):
        await admin.redrive(job.id, args="a@b")  # a str is a sequence, of letters
    with pytest.raises(PayloadTooLargeError):
        await admin.redrive(job.id, args=[too_big])

    # Then the job is still dead, with its arguments as they were
    after = await admin.dead_job(job.id)
    assert (after.status, after.payload) == (JobStatus.DEAD, job.payload)


async def test_a_redriven_job_runs_with_its_edited_arguments(ops: corq.App) -> None:
    # Given three dead jobs
    first = await dead_letter(ops, "a@bad", times=3)
    second = await dead_letter(ops, "b@bad", times=4)
    third = await dead_letter(ops, "c@good", times=0)
    admin = ops.admin()

    # When they are re-driven with new positional arguments (the keywords kept), with
    # both, and with new keywords (the positional ones kept)
    await admin.redrive(first.id, args=["a@good"])
    await admin.redrive(second.id, args=[], kwargs={"to": "b@good", "times": 5})
    await admin.redrive(third.id, kwargs={"times": 2})
    await drain(ops)

    # Then a worker ran each with the arguments as edited
    client = ops.client()
    assert await client.wait_result(first.id, "default", timeout=5) == "a@good x3"
    assert await client.wait_result(second.id, "default", timeout=5) == "b@good x5"
    assert await client.wait_result(third.id, "default", timeout=5) == "c@good x2"


async def test_an_edit_that_does_not_bind_with_the_kept_half_names_the_clash(
    ops: corq.App,
) -> None:
    job = await dead_letter(ops, "b@bad", times=4)

    with pytest.raises(ArgumentError, match="multiple values for argument 'to'"):
        await ops.admin().redrive(job.id, kwargs={"to": "b@good"})

    assert (await ops.admin().dead_job(job.id)).payload == job.payload


async def test_a_plain_redrive_runs_again_and_a_second_one_is_refused(ops: corq.App) -> None:
    job = await dead_letter(ops)
    admin = ops.admin()

    await admin.redrive(job.id)

    assert (await ops.client().get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    with pytest.raises(JobNotFoundError, match="not in the dead letters"):
        await admin.redrive(job.id)
    with pytest.raises(JobNotFoundError, match="no job"):
        await admin.redrive("nobody")


async def test_an_unknown_task_cannot_be_edited_but_can_be_redriven(
    ops: corq.App, broker_url: str, prefix: str
) -> None:
    # Given a dead job, and an operator's app that does not know its task
    job = await dead_letter(ops)
    bare = corq.App(broker_url, prefix=prefix)
    try:
        admin = bare.admin()
        with pytest.raises(UnknownTaskError, match=r"mail\.send"):
            await admin.redrive(job.id, args=["a@good"])
        assert (await admin.dead_job(job.id)).payload == job.payload

        # A re-drive without edits needs no signature
        await admin.redrive(job.id)
        assert (await bare.client().get_job(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    finally:
        await bare.aclose()


async def test_redrive_matching_moves_thousands_in_bounded_steps_each_once(ops: corq.App) -> None:
    # Given 2,500 dead jobs of one task among 1,200 of another
    await bury(ops, "img.resize", 2_500)
    await bury(ops, "mail.send", 1_200)
    admin = ops.admin()

    # When an operator re-drives those of the first task
    moved = await admin.redrive_matching(task="img.resize")

    # Then each moved once, and only those
    assert moved == 2_500
    (stats,) = await ops.client().queue_stats(["default"])
    assert (stats.ready, stats.dead) == (2_500, 1_200)
    assert await admin.redrive_matching(task="img.resize") == 0
    page = await admin.dead(task="img.resize")
    assert (page.jobs, page.cursor) == ([], None)


async def test_listing_with_filters_and_a_cursor(ops: corq.App) -> None:
    await bury(ops, "img.resize", 30)
    first = await dead_letter(ops, "old@bad")
    await bury(ops, "img.resize", 30)
    admin = ops.admin()

    # Each filter
    assert [j.id for j in (await admin.dead(task="mail.send")).jobs] == [first.id]
    assert [j.id for j in (await admin.dead(error="BAD ADDRESS")).jobs] == [first.id]
    assert len((await admin.dead(task="img.resize", limit=100)).jobs) == 60
    assert first.finished_at_ms is not None
    died = datetime.fromtimestamp(first.finished_at_ms / 1000, UTC)
    assert [
        j.id
        for j in (
            await admin.dead(since=died, until=died + timedelta(milliseconds=1), task="mail.send")
        ).jobs
    ] == [first.id]
    assert (await admin.dead(until=first.finished_at_ms, task="mail.send")).jobs == []

    # Pages through a cursor, newest first, each job once
    seen: list[str] = []
    cursor = None
    while True:
        page = await admin.dead(limit=7, cursor=cursor)
        seen += [j.id for j in page.jobs]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen)) == 61


async def test_purge_by_ids_or_by_filter(ops: corq.App) -> None:
    await bury(ops, "img.resize", 5)
    await bury(ops, "mail.send", 3)
    admin = ops.admin()
    one = (await admin.dead(task="mail.send", limit=1)).jobs[0]

    assert await admin.purge([one.id]) == 1
    assert await admin.purge(task="img.resize") == 5
    with pytest.raises(ArgumentError, match="not both"):
        await admin.purge([one.id], task="mail.send")
    (stats,) = await ops.client().queue_stats(["default"])
    assert stats.dead == 2
    assert await admin.purge() == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.dead(limit=0), "limit"),
        (lambda a: a.dead(since="yesterday"), "since must be a datetime"),
        (lambda a: a.dead(since=10, until=5), "must be before until"),
        (lambda a: a.dead(task=""), "task"),
        (lambda a: a.dead(queue="bad queue"), "queue"),
        (lambda a: a.dead(cursor="nonsense"), "cursor"),
        (lambda a: a.redrive_matching(limit=-1), "limit"),
        (lambda a: a.dead_job(5), "job id must be a str"),
    ],
)
async def test_bad_inputs_are_refused_clearly(ops: corq.App, call: object, message: str) -> None:
    with pytest.raises(corq.CorqError, match=message):
        await call(ops.admin())  # type: ignore[operator]


async def test_an_edit_that_moves_the_job_to_another_key_is_refused(app: corq.App) -> None:
    # Given a dead job of a task with one lane per tenant
    @app.task(name="report.build", key=lambda tenant, n: tenant, key_concurrency=1)
    async def build(tenant: str, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    handle = await build.enqueue("acme", -1)
    await drain(app)
    admin = app.admin()

    # When an edit would change its tenant, it is refused; an edit within it is not
    with pytest.raises(ArgumentError, match="fairness key from 'acme' to 'other'"):
        await admin.redrive(handle.id, args=["other", 1])
    assert (await admin.dead_job(handle.id)).status is JobStatus.DEAD
    await admin.redrive(handle.id, args=["acme", 2])
    await drain(app)
    assert await app.client().wait_result(handle.id, "default", timeout=5) == 2


async def test_a_chain_link_is_checked_with_its_input_in_front(app: corq.App) -> None:
    # Given a chain whose second link died
    @app.task(name="num.one")
    async def one() -> int:
        return 1

    @app.task(name="num.add")
    async def add(total: int, more: int) -> int:
        if more < 0:
            raise ValueError("negative")
        return total + more

    flow = await app.enqueue_workflow(corq.chain(one.s(), add.then(-1)))
    await drain(app)
    (link,) = (await app.admin().dead(task="num.add")).jobs
    admin = app.admin()

    # Then its edited arguments bind after the result it is given
    with pytest.raises(ArgumentError, match="a chain link"):
        await admin.redrive(link.id, args=[1, 2])
    await admin.redrive(link.id, args=[41])
    await drain(app)
    assert await app.client().wait_result(link.id, "default", timeout=5) == 42
    assert flow.id


async def test_without_a_queue_the_tasks_own_queue_is_searched(app: corq.App) -> None:
    @app.task(name="slow.thing", queue="slow")
    async def thing() -> None:
        raise RuntimeError("no")

    handle = await thing.enqueue()
    await drain(app)

    page = await app.admin().dead(task="slow.thing")

    assert [j.id for j in page.jobs] == [handle.id]
    assert [j.queue for j in page.jobs] == ["slow"]
    assert await app.admin().redrive_matching(task="slow.thing") == 1


@pytest.mark.slow
async def test_redrive_matching_moves_each_job_once_while_they_die_again(ops: corq.App) -> None:
    """The walk goes towards older deaths: a job that dies again meanwhile dies later than
    the walk's cursor, and is not met (nor moved) a second time."""
    # Given 2,500 dead jobs, and a worker that lets every re-driven job die again at once
    await bury(ops, "img.resize", 2_500)
    backend = ops.client().backend
    lease = corq.backends.base.WorkerLease(worker_id="again", queues=["default"], lease_ms=LEASE_MS)
    await backend.register_worker(lease, None)
    runs: Counter[str] = Counter()

    async def kill_again(walk: asyncio.Task[int]) -> None:
        while not walk.done() or (await ops.client().queue_stats(["default"]))[0].ready:
            batch = await backend.claim_jobs("default", "again", 200, LEASE_MS, None)
            runs.update(j.id for j in batch.jobs)
            fails = [failure(j, error="KeyError: again", at_ms=wall_ms()) for j in batch.jobs]
            assert await backend.fail_jobs("again", fails, 60_000) == [True] * len(fails)
            await asyncio.sleep(0)

    # When an operator re-drives them all while that worker runs
    walk = asyncio.create_task(ops.admin().redrive_matching(task="img.resize"))
    await kill_again(walk)

    # Then each moved once and ran once
    assert await walk == 2_500
    assert sum(runs.values()) == 2_500
    assert max(runs.values()) == 1
