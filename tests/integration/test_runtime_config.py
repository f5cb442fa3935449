"""Runtime configuration with workers in-process, on both brokers: a paused queue starts
nothing (running jobs finish) until resumed; a strike holds only the jobs it matches until
restored; a change of limits applies to the running cluster; every bad input is refused
before anything is written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import corq
from corq.control import ConfigScope
from corq.errors import ConfigError, FlowRuleError, UnknownTaskError
from corq.testing import run_worker
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]
S = corq.JobStatus


async def _status_is(job: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return await job.status() == status


async def test_a_paused_queue_starts_nothing_running_jobs_finish_resume_runs(
    app: corq.App,
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    @app.task
    async def work(name: str) -> str:
        started.append(name)
        await release.wait()
        return name

    admin = app.admin("tester")
    async with run_worker(app, concurrency=4):
        # Given a job running
        first = await work.enqueue("first")
        await until(lambda: started == ["first"], what="the first job started")

        # When the queue is paused and more jobs arrive
        await admin.pause_queue("default")
        later = [await work.enqueue(f"later{i}") for i in range(3)]
        release.set()

        # Then the running job finishes and nothing else starts
        assert await first.result(timeout=10) == "first"
        (stats,) = await app.client().queue_stats(["default"])
        assert (stats.paused, stats.ready) == (True, 3)
        assert started == ["first"]
        assert [await j.status() for j in later] == [S.QUEUED] * 3

        # And once resumed, they run
        await admin.resume_queue("default")
        assert sorted([await j.result(timeout=10) for j in later]) == [
            "later0",
            "later1",
            "later2",
        ]


async def test_a_strike_holds_only_matching_jobs_until_restored(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task(retries=0)
    async def send(tenant: str, subject: str = "hi") -> str:
        return f"{tenant}:{subject}"

    admin = app.admin("tester")
    strike = await admin.strike("send", where={"tenant": "acme"})
    async with run_worker(app):
        # Given a strike on tenant acme's sends
        held = await send.enqueue("acme")
        free = await send.enqueue("other", subject="yo")

        # Then the other tenant's runs, acme's waits snoozed with the strike named
        assert await free.result(timeout=10) == "other:yo"
        await until(lambda: _status_is(held, S.SCHEDULED), what="acme's job snoozed")
        info = await held.info()
        assert (info.attempt, info.failures) == (0, 0)
        assert info.error == f"struck: {strike.id}"
        assert await admin.strikes() == [strike]

        # When it is restored, the job runs (as its first attempt) once due again
        assert await admin.restore("send", where={"tenant": "acme"})

        async def ran() -> bool:
            clock.advance(app.settings.strike_recheck_s)
            return await held.status() == S.SUCCEEDED

        await until(ran, what="acme's job ran after the restore", interval=0.1)
        assert (await held.info()).attempt == 1
    assert await admin.strikes() == []
    assert not await admin.restore("send", where={"tenant": "acme"})


async def test_a_lowered_concurrency_applies_to_the_running_workers(app: corq.App) -> None:
    running = 0
    most = 0
    gate = asyncio.Event()

    @app.task(concurrency=8)
    async def job(n: int, wait: bool) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            if wait:
                await gate.wait()
            else:
                await asyncio.sleep(0.02)
        finally:
            running -= 1
        return n

    admin = app.admin("tester")
    async with run_worker(app, concurrency=20):
        # Given eight jobs running under the code's concurrency of 8
        first = [await job.enqueue(n, True) for n in range(8)]
        await until(lambda: running == 8, what="eight jobs running")

        # When the limit is lowered to 2 at runtime
        rules = await admin.set_limits("job", concurrency=2)
        assert rules.concurrency == 2
        most = 0
        gate.set()
        await asyncio.gather(*(h.result(timeout=10) for h in first))
        most = 0
        later = [await job.enqueue(n, False) for n in range(12)]
        await asyncio.gather(*(h.result(timeout=20) for h in later))

        # Then at most two of the later jobs ran at once
        assert most == 2
    limits = {v.field.value: (v.value, v.source) for v in await admin.limits("job")}
    assert limits["concurrency"] == (2, "runtime")


async def test_a_producer_started_later_keeps_the_runtime_limits(
    broker_url: str, prefix: str
) -> None:
    def make() -> corq.App:
        app = corq.App(broker_url, prefix=prefix)

        @app.task(concurrency=8, rate_limit="100/s")
        async def send() -> None: ...

        return app

    first, second = make(), make()
    try:
        await first.admin("ops").set_limits("send", concurrency=2)

        # A producer whose first enqueue stores the task's rules
        await second.registry["send"].enqueue()

        (rules,) = await second.client().backend.get_rules("default")
        assert (rules.concurrency, str(rules.rate)) == (2, "100/s")
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda a: a.set_limits("nope", concurrency=2), UnknownTaskError),
        (lambda a: a.set_limits("send", concurrency=0), FlowRuleError),
        (lambda a: a.set_limits("send", rate_limit="fast"), FlowRuleError),
        (lambda a: a.set_limits("send", key_concurrency=1), ConfigError),
        (lambda a: a.set_limits("send", clear=["speed"]), ConfigError),
        (lambda a: a.set_limits("send"), ConfigError),
        (lambda a: a.strike("send", where={"customer": "acme"}), ConfigError),
        (lambda a: a.strike("nope"), UnknownTaskError),
        (lambda a: a.set_queue_weight("default", 0), FlowRuleError),
        (lambda a: a.pause_queue("bad queue!"), corq.ArgumentError),
        (lambda a: a.config_history(limit=0), ConfigError),
    ],
    ids=[
        "unknown-task",
        "limit-0",
        "bad-rate",
        "key-limit-without-key",
        "unknown-field",
        "nothing",
        "unknown-parameter",
        "strike-unknown-task",
        "weight-0",
        "bad-queue",
        "history-limit-0",
    ],
)
async def test_bad_input_is_refused_before_anything_is_written(
    app: corq.App, call: Any, error: type[Exception]
) -> None:
    @app.task
    async def send(tenant: str) -> None: ...

    admin = app.admin("tester")
    with pytest.raises(error):
        await call(admin)
    assert await app.client().backend.config_version() == 0


async def test_changes_are_recorded_with_who_made_them(app: corq.App) -> None:
    @app.task
    async def send(tenant: str) -> None: ...

    await app.admin("alice").pause_queue("default")
    await app.admin("bob").set_limits("send", rate_limit="10/s")

    changes = await app.admin().config_history()

    assert [(c.who, c.scope, c.name, c.field, c.new) for c in changes] == [
        ("bob", ConfigScope.TASK, "send", "rate_limit", '"10/s"'),
        ("alice", ConfigScope.QUEUE, "default", "paused", "true"),
    ]


async def test_a_limit_set_at_runtime_holds_the_jobs_queued_before_it(app: corq.App) -> None:
    running = 0
    most = 0

    @app.task
    async def unlimited(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return n

    admin = app.admin("tester")
    # Given jobs of a task without limits queued while its queue is paused
    await admin.pause_queue("default")
    jobs = [await unlimited.enqueue(n) for n in range(10)]

    # When it is limited to one at a time, and the queue resumed
    await admin.set_limits("unlimited", concurrency=1)
    await admin.resume_queue("default")
    async with run_worker(app, concurrency=10):
        results = [await j.result(timeout=20) for j in jobs]

    # Then the jobs queued before the limit ran one at a time too
    assert (results, most) == (list(range(10)), 1)


async def test_a_change_reaches_the_workers_at_once_by_a_control_message(app: corq.App) -> None:
    # Given a worker that would look at the configuration only once an hour
    app.configure(config_poll_s=3600)
    admin = app.admin("tester")
    async with run_worker(app) as worker:
        started_with = worker.config_version
        # When the queue is paused
        version = await admin.pause_queue("default")
        assert version > started_with
        # Then the worker applies the change at once: the change told it over the broker
        await until(lambda: worker.config_version >= version, what="the worker to see it")
