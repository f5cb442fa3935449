"""The flow-control API end to end, on both real brokers: what an enqueue with a unique
key, a key function or a deadline stores and answers, and the rules the app stores.

The issue's shorthand (``send.enqueue(user, unique_key=...)``) is used where the issue
writes it; type checkers see only a task's own parameters there (``type: ignore``), so the
other tests write ``with_options``. These tests cross the broker's side of issue 10
(``admit_jobs``, ``set_rules``, expiry at claim): they need both brokers to implement the
flow-control port.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import corq
import corq.flow
from corq.flow import Outcome
from corq.testing import drain

FakeApp = tuple[corq.App, corq.FakeClock]


async def test_a_taken_unique_key_returns_the_existing_job(app: corq.App) -> None:
    @app.task
    async def welcome(user: str) -> str:
        return f"hi {user}"

    # Given a job enqueued with a unique key,
    first = await welcome.enqueue("ann", unique_key="welcome-ann")  # type: ignore[call-arg]
    # When the same key is enqueued again while the first is queued,
    second = await welcome.enqueue("ann", unique_key="welcome-ann")  # type: ignore[call-arg]
    # Then the second handle names the first job, and says so.
    assert first.outcome is Outcome.CREATED
    assert first.created
    assert second.outcome is Outcome.EXISTING
    assert not second.created
    assert second.id == first.id
    stats = (await app.client().queue_stats(["default"]))[0]
    assert stats.ready == 1
    assert (await first.info()).unique_key == "welcome-ann"
    # And once it ran, both handles give its result.
    await drain(app)
    assert await second.result(timeout=5) == "hi ann"


async def test_a_unique_key_is_free_again_once_its_job_ended(app: corq.App) -> None:
    @app.task
    async def welcome(user: str) -> None: ...

    first = await welcome.with_options(unique_key="w").enqueue("ann")
    await drain(app)
    assert await first.status() is corq.JobStatus.SUCCEEDED
    again = await welcome.with_options(unique_key="w").enqueue("ann")
    assert again.created
    assert again.id != first.id


async def test_the_same_unique_key_twice_in_one_call_gives_one_job(app: corq.App) -> None:
    @app.task
    async def reindex(doc: int) -> None: ...

    handles = await reindex.with_options(unique_key="doc-1").enqueue_many([(1,), (1,)])
    assert [h.outcome for h in handles] == [Outcome.CREATED, Outcome.EXISTING]
    assert handles[0].id == handles[1].id


async def test_replace_gives_the_queued_job_the_new_arguments(app: corq.App) -> None:
    @app.task(on_duplicate="replace")
    async def render(page: str) -> str:
        return page

    first = await render.with_options(unique_key="page").enqueue("draft")
    second = await render.with_options(unique_key="page").enqueue("final")
    assert second.outcome is Outcome.REPLACED
    assert second.id == first.id
    await drain(app)
    assert await first.result(timeout=5) == "final"


async def test_debounce_runs_once_after_the_last_call(fake_app: FakeApp) -> None:
    app, clock = fake_app
    runs: list[int] = []

    @app.task
    async def reindex(doc: int, version: int) -> None:
        runs.append(version)

    # Given three calls with a debounce, 2 s apart,
    handles = []
    for version in range(3):
        handles.append(
            await reindex.with_options(
                debounce=timedelta(seconds=5), unique_key="reindex-1"
            ).enqueue(1, version)
        )
        clock.advance(2)
    # Then one job holds them, with the last call's arguments, due 5 s after that call.
    assert [h.outcome for h in handles] == [Outcome.CREATED, Outcome.DEBOUNCED, Outcome.DEBOUNCED]
    assert len({h.id for h in handles}) == 1
    assert await handles[0].status() is corq.JobStatus.SCHEDULED
    # When 4.9 s passed since the last call, nothing runs yet;
    clock.advance(2.9)
    await drain(app)
    assert runs == []
    # once 5 s passed, it runs once, with the last arguments.
    clock.advance(0.2)
    await drain(app)
    assert runs == [2]


async def test_cooldown_drops_repeats_within_the_window(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task
    async def ping() -> None: ...

    first = await ping.with_options(cooldown=60).enqueue()
    repeat = await ping.with_options(cooldown=60).enqueue()
    assert first.created
    assert repeat.outcome is Outcome.DROPPED
    assert repeat.id == first.id
    assert (await app.client().flow_stats("default")).cooled == 1
    clock.advance(61)
    assert (await ping.with_options(cooldown=60).enqueue()).created


async def test_the_key_function_result_is_the_job_key(app: corq.App) -> None:
    @app.task(key=lambda tenant, **_: f"tenant-{tenant}", key_concurrency=2)
    async def sync_tenant(tenant: str, since: int) -> int:
        return since

    # Given jobs of a keyed task, sent alone, in bulk, as a spec and in a workflow,
    one = await sync_tenant.enqueue("acme", 5)
    many = await sync_tenant.enqueue_many([("a", 1), (("b",), {"since": 2})])
    spec = await app.enqueue(sync_tenant.s("c", since=3))
    group = await app.enqueue_workflow(corq.group(sync_tenant.s("d", 4)))
    # Then each record carries the key its arguments give,
    keys = [(await h.info()).key for h in [one, *many, spec, *group.jobs]]
    assert keys == ["tenant-acme", "tenant-a", "tenant-b", "tenant-c", "tenant-d"]
    # and the jobs run.
    await drain(app)
    assert await one.result(timeout=5) == 5
    assert await group.result(timeout=5) == [4]


async def test_a_bad_key_sends_nothing(app: corq.App) -> None:
    @app.task(key=lambda tenant, **_: tenant.upper())
    async def sync_tenant(tenant: str | int) -> None: ...

    # Given one good call and one whose key function raises, in one bulk enqueue,
    with pytest.raises(corq.FlowRuleError, match=r"task 'sync_tenant': its key function"):
        await sync_tenant.enqueue_many([("a",), (7,)])
    # Then nothing at all was stored.
    stats = await app.client().queue_stats(["default"])
    assert [s.ready for s in stats] in ([], [0])


async def test_a_job_not_started_by_its_deadline_expires(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task
    async def notify(message: str) -> None: ...

    # Given a job that must start within 10 minutes,
    job = await notify.enqueue("hello", expires=timedelta(minutes=10))  # type: ignore[call-arg]
    info = await job.info()
    assert info.start_by_ms == info.enqueued_at_ms + 600_000
    # When no worker takes it before then,
    clock.advance(601)
    await drain(app)
    # Then it ended expired, counted, and its result says why.
    assert await job.status() is corq.JobStatus.EXPIRED
    with pytest.raises(corq.JobExpiredError, match=r"expired, never ran"):
        await job.result(timeout=5)
    assert (await app.client().flow_stats("default")).expired == 1


async def test_a_job_started_in_time_runs(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task
    async def notify(message: str) -> str:
        return message

    job = await notify.with_options(expires=600).enqueue("hello")
    clock.advance(599)
    await drain(app)
    assert await job.result(timeout=5) == "hello"


async def test_the_first_enqueue_of_a_ruled_task_stores_its_rules(app: corq.App) -> None:
    @app.task(concurrency=5, rate_limit="50/s", queue="partner")
    async def call_partner(order: int) -> None: ...

    @app.task(queue="partner")
    async def plain(order: int) -> None: ...

    backend = app.client().backend
    assert await backend.get_rules("partner") == []
    # When the ruled task's first job is sent (with a plain one beside it),
    await app.enqueue_many([call_partner.s(1), plain.s(2)])
    # Then its rules are stored in that queue (the plain task has none).
    assert await backend.get_rules("partner") == [call_partner.options.rules]
    # And into another queue too, the first time a job goes there.
    await call_partner.with_options(queue="other").enqueue(3)
    assert await backend.get_rules("other") == [call_partner.options.rules]


async def test_uniqueness_is_refused_in_a_workflow_and_nothing_is_sent(app: corq.App) -> None:
    @app.task
    async def step(n: int) -> int:
        return n

    with pytest.raises(corq.FlowRuleError, match=r"cannot be used in a workflow"):
        await app.enqueue_workflow(
            corq.chain(step.s(1), step.s(2).with_options(debounce=5, unique_key="k"))
        )
    stats = await app.client().queue_stats(["default"])
    assert [s.ready for s in stats] in ([], [0])


async def test_rules_are_stored_once_per_client_queue_and_task(app: corq.App) -> None:
    @app.task(concurrency=5)
    async def call_partner(order: int) -> None: ...

    client = app.client()
    await call_partner.enqueue(1)
    # Given the rules changed in the broker since (as another app version would),
    other = corq.flow.TaskRules(task="call_partner", concurrency=9)
    await client.backend.set_rules("default", [other])
    # When this client sends the task again, Then it does not store its rules again,
    await call_partner.enqueue(2)
    assert await client.backend.get_rules("default") == [other]
    # while a new client (a restarted producer) stores them before its first enqueue.
    fresh = app.new_client()
    try:
        await fresh.enqueue(call_partner.s(3))
        assert await fresh.backend.get_rules("default") == [call_partner.options.rules]
    finally:
        await fresh.close()
