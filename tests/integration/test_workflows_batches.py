"""Batches on both brokers: a group's callbacks run once each with the summary, and an
open batch takes jobs until it is closed, its callbacks waiting for the close."""

from __future__ import annotations

from typing import Any

import pytest

import corq
from corq.testing import run_worker
from tests.waiting import until


@pytest.fixture
def tasks(app: corq.App) -> dict[str, corq.Task[Any, Any]]:
    calls: list[tuple[str, corq.BatchSummary]] = []

    @app.task
    async def ok(x: int) -> int:
        return x

    @app.task
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task
    async def on_success(summary: corq.BatchSummary) -> str:
        calls.append(("success", summary))
        return "all good"

    @app.task
    async def on_complete(summary: corq.BatchSummary, label: str = "done") -> str:
        calls.append(("complete", summary))
        return f"{label}: {sorted(summary['counts'].items())}"

    @app.task
    async def on_failure(summary: corq.BatchSummary) -> list[str]:
        calls.append(("failure", summary))
        return summary["failed_ids"]

    app.calls = calls  # type: ignore[attr-defined]  # read back by the tests
    return {t.name: t for t in (ok, boom, on_success, on_complete, on_failure)}


def calls_of(app: corq.App) -> list[tuple[str, corq.BatchSummary]]:
    calls: list[tuple[str, corq.BatchSummary]] = app.calls  # type: ignore[attr-defined]
    return calls


async def test_a_groups_callbacks_run_once_each_with_the_summary(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok, boom = tasks["ok"], tasks["boom"]
    flow = corq.group(
        ok.s(1),
        boom.s(2),
        ok.s(3),
        on_success=tasks["on_success"].then(),
        on_complete=tasks["on_complete"].s(label="batch"),
        on_failure=tasks["on_failure"].then(),
    )
    async with run_worker(app):
        wf = await flow.enqueue()
        # Its result is the members' (a failed member raises), the callbacks apart:
        with pytest.raises(corq.JobFailedError, match="boom 2"):
            await wf.result(timeout=10)
        status = await wf.wait(timeout=10, jobs=True)
    failed = status.jobs[1].id
    by_task = {job.task: job for job in status.jobs}
    # on_failure ran once the member died, on_complete once all ended, on_success never.
    assert sorted(name for name, _ in calls_of(app)) == ["complete", "failure"]
    complete = dict(calls_of(app))["complete"]
    assert complete == {
        "total": 3,
        "counts": {"succeeded": 2, "dead": 1},
        "failed_ids": [failed],
        "failed": 1,
    }
    assert dict(calls_of(app))["failure"]["failed_ids"] == [failed]
    assert by_task["on_complete"].state is corq.JobStatus.SUCCEEDED
    assert by_task["on_complete"].callback is corq.Callback.COMPLETE
    assert by_task["on_failure"].state is corq.JobStatus.SUCCEEDED
    assert by_task["on_success"].state is not corq.JobStatus.SUCCEEDED
    assert status.state is corq.WorkflowState.FAILED
    on_complete = app.client().job(by_task["on_complete"].id, "default")
    assert await on_complete.result(timeout=1) == "batch: [('dead', 1), ('succeeded', 2)]"


async def test_a_group_that_succeeds_calls_on_success_and_on_complete(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok = tasks["ok"]
    flow = corq.group(
        (ok.s(i) for i in range(5)),
        on_success=tasks["on_success"].then(),
        on_complete=tasks["on_complete"].then(),
        on_failure=tasks["on_failure"].then(),
    )
    async with run_worker(app):
        wf = await flow.enqueue()
        assert await wf.result(timeout=10) == [0, 1, 2, 3, 4]
        await wf.wait(timeout=10)
    assert sorted(name for name, _ in calls_of(app)) == ["complete", "success"]
    assert dict(calls_of(app))["success"]["counts"] == {"succeeded": 5}


async def test_an_open_batch_takes_jobs_until_closed_and_calls_back_after(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    ok, boom = tasks["ok"], tasks["boom"]
    async with run_worker(app):
        # Given an open batch with a callback,
        batch = await corq.batch(on_complete=tasks["on_complete"].then()).open()
        # When jobs are added and all of them end,
        first = await batch.add(ok.s(1), boom.s(2))
        later = await batch.add(corq.chain(boom.s(3), ok.then()))
        assert len(first) == 2
        assert len(later) == 2
        await until(lambda: _all_ended([*first, *later]), what="every job added ended")
        # Then the callback still waits for the close,
        status = await batch.status()
        assert status.open
        assert status.state is corq.WorkflowState.RUNNING
        assert calls_of(app) == []
        # and runs once it is closed, over every job added.
        assert await batch.close()
        summary = await batch.result(timeout=10)
        assert not await batch.close()  # closed already
        with pytest.raises(corq.WorkflowError):
            await batch.add(ok.s(5))
    assert summary["total"] == 4
    assert summary["counts"] == {"succeeded": 1, "dead": 2, "upstream_failed": 1}
    assert summary["failed"] == 3
    assert [name for name, _ in calls_of(app)] == ["complete"]
    assert calls_of(app)[0][1]["total"] == 4
    # Another handle on the same batch reads the same summary.
    assert await app.batch(batch.id).summary() == summary


async def _all_ended(handles: list[corq.JobHandle[Any]]) -> bool:
    ended = {corq.JobStatus.SUCCEEDED, corq.JobStatus.DEAD, corq.JobStatus.UPSTREAM_FAILED}
    return all([await handle.status() in ended for handle in handles])


async def test_a_batch_needs_a_callback_and_an_app_to_open_it(app: corq.App) -> None:
    with pytest.raises(corq.ArgumentError, match="batch\\(\\) needs a callback"):
        corq.batch()
    orphan = corq.batch(on_complete=corq.JobSpec(task="report"))
    with pytest.raises(corq.CorqError, match=r"open it with batch.open\(app\)"):
        await orphan.open()
    handle = await orphan.open(app)
    assert (await handle.status()).open
