"""Workflows that go wrong, on both brokers: failures propagated down the graph, failures
allowed, cancellation, inputs the worker cannot build, and input refused at enqueue with
nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import corq
from corq.testing import run_worker


@pytest.fixture
def tasks(app: corq.App) -> dict[str, corq.Task[Any, Any]]:
    @app.task
    async def ok(x: int) -> int:
        return x

    @app.task
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task
    async def report() -> dict[str, str]:
        results = await corq.current_job().parent_results()
        return {job_id: repr(value) for job_id, value in results.items()}

    @app.task
    async def add_one(x: int) -> int:
        return x + 1

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(queue="idle")
    async def never_served() -> None:
        return None

    return {t.name: t for t in (ok, boom, report, add_one, total, never_served)}


async def test_a_failure_propagates_three_levels_down_naming_each_cause(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok, boom, add_one = tasks["ok"], tasks["boom"], tasks["add_one"]
    async with run_worker(app):
        # Given ok → boom → add_one → add_one → add_one,
        wf = await corq.chain(
            ok.s(1), boom.then(), add_one.then(), add_one.then(), add_one.then()
        ).enqueue()
        # When boom dies, Then the chain's result raises as the last link's would,
        with pytest.raises(corq.UpstreamFailedError, match="never ran: upstream_failed: "):
            await wf.result(timeout=10)
        status = await wf.wait(timeout=10, jobs=True)
    # and every job below is upstream_failed, each naming its own parent.
    first, failed, *below = status.jobs
    assert [job.state for job in status.jobs] == [
        corq.JobStatus.SUCCEEDED,
        corq.JobStatus.DEAD,
        corq.JobStatus.UPSTREAM_FAILED,
        corq.JobStatus.UPSTREAM_FAILED,
        corq.JobStatus.UPSTREAM_FAILED,
    ]
    assert failed.error == "ValueError: boom 1"
    assert below[0].error == f"upstream_failed: {failed.id} ended dead: ValueError: boom 1"
    assert below[1].error is not None
    assert below[1].error.startswith(f"upstream_failed: {below[0].id} ended upstream_failed")
    assert below[2].error is not None
    assert below[2].error.startswith(f"upstream_failed: {below[1].id} ended upstream_failed")
    assert status.state is corq.WorkflowState.FAILED
    assert status.counts == {"succeeded": 1, "dead": 1, "upstream_failed": 3}
    assert status.first_failure is not None
    assert status.first_failure[0] == failed.id
    assert first.error is None


async def test_allow_failed_runs_whatever_the_parents_ended_as(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok, boom, report = tasks["ok"], tasks["boom"], tasks["report"]
    async with run_worker(app):
        good = await ok.enqueue(5)
        bad = await boom.enqueue(7)
        # Without allow_failed the dependent never runs;
        strict = await report.with_options(depends_on=[good, bad]).enqueue()
        with pytest.raises(corq.UpstreamFailedError, match=f"{bad.id} ended dead"):
            await strict.result(timeout=10)
        # with it, it runs and sees the failure as a value.
        lenient = await report.with_options(depends_on=[good, bad], allow_failed=True).enqueue()
        seen = await lenient.result(timeout=10)
    assert seen[good.id] == "5"
    assert seen[bad.id].startswith("UpstreamError(")
    assert f"parent job {bad.id} (default) ended dead: ValueError: boom 7" in seen[bad.id]


async def test_a_chord_with_allow_failed_parents_gets_upstream_errors_in_its_list(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok, boom = tasks["ok"], tasks["boom"]

    @app.task
    async def describe(values: list[Any]) -> list[str]:
        return [type(v).__name__ for v in values]

    wf = corq.Workflow()
    a, b = wf.add(ok.s(1)), wf.add(boom.s(2))
    wf.add(describe.then(), depends_on=[a, b], allow_failed=True, inputs="list")
    async with run_worker(app):
        assert await (await wf.enqueue()).result(timeout=10) == [["int", "UpstreamError"]]


async def test_cancelling_a_workflow_stops_every_job_of_it(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @app.task
    async def slow(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return x

    add_one = tasks["add_one"]
    async with run_worker(app):
        # Given a chain whose first link is running,
        wf = await corq.chain(slow.s(1), add_one.then(), add_one.then()).enqueue()
        await asyncio.wait_for(started.wait(), 10)
        # When the workflow is cancelled,
        assert await wf.cancel() == 3
        # Then every link is cancelled, and the running one is stopped on its worker
        await asyncio.wait_for(stopped.wait(), 10)
        status = await wf.wait(timeout=10, jobs=True)
        with pytest.raises(corq.JobCancelledError):
            await wf.result(timeout=1)
    assert [job.state for job in status.jobs] == [corq.JobStatus.CANCELLED] * 3
    assert status.state is corq.WorkflowState.CANCELLED


async def test_cancelling_a_parent_fails_its_dependents_at_once(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    # No worker runs: the client's cancel settles the workflow itself.
    parent = await tasks["never_served"].enqueue()
    child = await tasks["report"].with_options(depends_on=[parent]).enqueue()
    assert await parent.cancel()
    with pytest.raises(corq.UpstreamFailedError, match=f"{parent.id} ended cancelled"):
        await child.result(timeout=5)


async def test_an_input_over_the_payload_limit_ends_the_job_dead(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix, max_payload_bytes=200)
    try:

        @app.task
        async def big(n: int) -> str:
            return "x" * 90

        @app.task
        async def join(parts: list[str]) -> int:
            return len(parts)

        async with run_worker(app):
            wf = await corq.chord([big.s(i) for i in range(3)], join.then()).enqueue()
            with pytest.raises(
                corq.JobFailedError, match="InputError: its parents' results are over"
            ):
                await wf.result(timeout=10)
            small = await corq.chord([big.s(1)], join.then()).enqueue()
            assert await small.result(timeout=10) == 1  # the worker goes on
    finally:
        await app.aclose()


async def test_a_parent_whose_record_is_gone_ends_the_input_job_dead(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    @app.task(queue="later")
    async def describe(values: list[Any]) -> int:
        return len(values)

    boom = tasks["boom"]
    wf = corq.Workflow()
    parent = wf.add(boom.s(1))
    wf.add(describe.then(), depends_on=[parent], allow_failed=True, inputs="list")
    handle = await wf.enqueue()
    # Given the parent dies and is purged before its child runs,
    async with run_worker(app, queues=["default"]):
        with pytest.raises(corq.JobFailedError):
            await handle.job(parent).result(timeout=10)
    assert await app.client().purge_dead("default") == 1
    # When the child runs, Then it ends dead saying why.
    async with run_worker(app, queues=["later"]):
        status = await handle.wait(timeout=10, jobs=True)
    child = status.jobs[1]
    assert child.state is corq.JobStatus.DEAD
    assert child.error is not None
    assert "has no record any more" in child.error


@pytest.fixture
async def nothing_written(app: corq.App) -> AsyncIterator[None]:
    """After the test: nothing was stored in this test's store, not even a queue's name (a
    refused workflow writes nothing)."""
    yield
    assert await app.client().backend.list_queues() == []
    assert await app.client().queue_stats() == []


@pytest.mark.usefixtures("nothing_written")
async def test_bad_workflows_are_refused_at_enqueue_with_nothing_written(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix, max_workflow_jobs=3, max_payload_bytes=100)
    try:

        @app.task
        async def one(x: int) -> int:
            return x

        @app.task
        async def takes_nothing() -> None:
            return None

        with pytest.raises(corq.WorkflowError, match="no job 'missing' in queue 'default'"):
            await one.with_options(depends_on=["missing"]).enqueue(1)
        with pytest.raises(corq.WorkflowError, match="4 jobs, over the limit of 3"):
            await corq.group(one.s(i) for i in range(4)).enqueue()
        with pytest.raises(
            corq.ArgumentError, match="cannot take the result it would be given as a chord callback"
        ):
            await corq.chord([one.s(1)], takes_nothing.s()).enqueue()
        with pytest.raises(corq.ArgumentError, match="as a chain link"):
            await corq.chain(one.s(1), one.s(2)).enqueue()
        with pytest.raises(corq.PayloadTooLargeError):
            await corq.group(one.s(1), app.spec("registered.elsewhere", "x" * 200)).enqueue()
        wf = corq.Workflow()
        a = wf.add(one.s(1))
        b = wf.add(one.s(2), depends_on=[a])
        wf.connect([b], a)
        with pytest.raises(corq.WorkflowError, match="cycle"):
            await wf.enqueue()
    finally:
        await app.aclose()


async def test_an_id_in_several_queues_needs_a_handle(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok = tasks["ok"]
    await ok.with_options(job_id="twin").enqueue(1)
    await ok.with_options(job_id="twin", queue="elsewhere").enqueue(2)
    # Found in the dependent's own queue first: that one is taken.
    here = await tasks["report"].with_options(depends_on=["twin"]).enqueue()
    assert [j.parents for j in (await app.workflow(here.id).status()).jobs] == [("twin",)]
    # From a third queue it is ambiguous.
    with pytest.raises(corq.WorkflowError, match="'twin' is in several queues"):
        await tasks["report"].with_options(depends_on=["twin"], queue="third").enqueue()
