"""Start gates on both brokers: a gate's "not now" snoozes a claimed job before its body
starts (no attempt used), by task and by argument; it hears each attempt's outcome; a gate
that raises lets the job run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import corq
from corq.backends.base import ClaimedJob, Completion, Failure
from corq.testing import run_worker
from corq.worker.gates import Snoozed
from corq.worker.outcomes import Outcome
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]
S = corq.JobStatus


class HoldTenant:
    """Holds back the jobs whose `tenant` argument is `held` until it is let go."""

    def __init__(self, clock: corq.FakeClock, held: str, param: str = "tenant") -> None:
        self.clock = clock
        self.held: str | None = held
        self.param = param
        self.outcomes: list[tuple[str, str]] = []

    async def check(
        self, job: ClaimedJob, task: corq.Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        if self.held is not None and arguments.get(self.param) == self.held:
            return Snoozed(until_ms=self.clock.now_ms() + 60_000, reason=f"{self.held} held")
        return None

    async def finished(self, job: ClaimedJob, task: corq.Task[Any, Any], outcome: Outcome) -> None:
        kind = "ok" if isinstance(outcome, Completion) else type(outcome).__name__
        self.outcomes.append((job.id, kind))


async def _status_is(job: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return await job.status() == status


def file_writer(path: str, tenant: str) -> str:
    """A process task (found by its module path): leaves a trace when its body runs."""
    Path(path).write_text(tenant)
    return tenant


@pytest.mark.parametrize("kind", ["async", "process"])
async def test_a_gate_snoozes_a_job_before_its_body_starts(
    fake_app: FakeApp, tmp_path: Path, kind: str
) -> None:
    app, clock = fake_app
    gate = HoldTenant(clock, "acme")
    if kind == "async":

        @app.task(retries=0)
        async def write(path: str, tenant: str) -> str:
            return file_writer(path, tenant)

        task: corq.Task[[str, str], str] = write
    else:
        task = app.task(retries=0, process=True)(file_writer)

    async with run_worker(app, gates=[gate]) as worker:
        # Given a gate holding back tenant acme
        held = await task.enqueue(str(tmp_path / "acme"), "acme")
        free = await task.enqueue(str(tmp_path / "other"), "other")

        # When both are claimed
        assert await free.result(timeout=20) == "other"
        await until(lambda: _status_is(held, S.SCHEDULED), what="acme's job snoozed")

        # Then acme's waits a minute with the gate's reason, its body never ran
        info = await held.info()
        assert (info.attempt, info.failures, info.error) == (0, 0, "acme held")
        assert info.run_at_ms == clock.now_ms() + 60_000
        assert not (tmp_path / "acme").exists()
        assert worker.counts.snoozed == 1
        # and once let go and due, it runs as its first attempt
        gate.held = None
        clock.advance(60)
        assert await held.result(timeout=20) == "acme"
        assert (await held.info()).attempt == 1
    # The gate heard the two attempts that ran, not the snooze
    assert sorted(gate.outcomes) == sorted([(free.id, "ok"), (held.id, "ok")])


async def test_a_gate_hears_failures_too(fake_app: FakeApp) -> None:
    app, clock = fake_app
    gate = HoldTenant(clock, "nobody")

    @app.task(retries=0)
    async def boom(tenant: str) -> None:
        raise ValueError(tenant)

    async with run_worker(app, gates=[gate]):
        job = await boom.enqueue("x")
        with pytest.raises(corq.JobFailedError):
            await job.result(timeout=5)
    assert gate.outcomes == [(job.id, Failure.__name__)]


class Broken:
    async def check(
        self, job: ClaimedJob, task: corq.Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        raise RuntimeError("the gate is broken")

    async def finished(self, job: ClaimedJob, task: corq.Task[Any, Any], outcome: Outcome) -> None:
        raise RuntimeError("the gate is broken")


async def test_a_gate_that_raises_lets_the_jobs_run_and_is_logged_once(
    app: corq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def hello(n: int) -> int:
        return n

    with caplog.at_level(logging.ERROR, logger="corq.worker.gates"):
        async with run_worker(app, gates=[Broken()]):
            jobs = [await hello.enqueue(n) for n in range(3)]
            assert [await j.result(timeout=5) for j in jobs] == [0, 1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("raised in check" in m for m in messages) == 1
    assert sum("raised in finished" in m for m in messages) == 1


async def test_a_gate_snoozes_single_jobs_of_a_batch(fake_app: FakeApp) -> None:
    app, clock = fake_app
    gate = HoldTenant(clock, "acme", param="tenants")  # a batch job's one item
    calls: list[list[str]] = []

    @app.task(batch_size=3, batch_wait=0.05)
    async def store(tenants: list[str]) -> None:
        calls.append(sorted(tenants))

    async with run_worker(app, gates=[gate], concurrency=3):
        jobs = await store.enqueue_many([("a",), ("acme",), ("b",)])
        await until(lambda: _status_is(jobs[1], S.SCHEDULED), what="acme's job snoozed")
        await jobs[0].result(timeout=5)
        await jobs[2].result(timeout=5)
    assert calls == [["a", "b"]]
    assert (await jobs[1].info()).error == "acme held"


class Garbled:
    async def check(
        self, job: ClaimedJob, task: corq.Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        return Snoozed(until_ms="tomorrow", reason="?")  # type: ignore[arg-type]  # the bug tested

    async def finished(self, job: ClaimedJob, task: corq.Task[Any, Any], outcome: Outcome) -> None:
        return None


async def test_a_gate_answer_that_is_no_snooze_is_a_gate_fault_and_the_job_runs(
    app: corq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def hello() -> str:
        return "hi"

    with caplog.at_level(logging.ERROR, logger="corq.worker.gates"):
        async with run_worker(app, gates=[Garbled()]):
            assert await (await hello.enqueue()).result(timeout=5) == "hi"
    assert any("Garbled raised in check" in r.getMessage() for r in caplog.records)
