"""Job specs on both brokers: built once, sent as often as wanted, with their options, in
bulk across tasks and queues, and by task name alone."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import corq
from corq.testing import drain

DELAY_MS = 5_000


@pytest.fixture
def tasks(fake_app: tuple[corq.App, corq.FakeClock]) -> dict[str, corq.Task[Any, Any]]:
    app, _ = fake_app

    @app.task
    async def double(x: int) -> int:
        return x * 2

    @app.task(queue="text")
    def shout(word: str, *, times: int = 1) -> str:
        return word.upper() * times

    return {"double": double, "shout": shout}


async def _stored(app: corq.App) -> int:
    return sum(s.ready + s.delayed for s in await app.client().queue_stats())


async def test_a_spec_is_sent_once_per_enqueue_and_runs(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    # Given a spec, When it is built, Then nothing is sent yet;
    spec = tasks["double"].s(21)
    assert await _stored(app) == 0
    # When it is enqueued, Then exactly one job is stored, and it runs with its arguments.
    handle = await spec.enqueue()
    assert await _stored(app) == 1
    await drain(app)
    assert await handle.result(timeout=5) == 42
    assert (await handle.info()).task == "double"


async def test_with_options_sets_queue_delay_priority_and_job_id(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, clock = fake_app
    spec = (
        tasks["shout"]
        .s("hi", times=2)
        .with_options(queue="loud", delay=DELAY_MS / 1000, priority=7, job_id="shout-1")
    )
    handle = await spec.enqueue()
    job = await handle.info()
    assert (handle.id, handle.queue) == ("shout-1", "loud")
    assert (job.id, job.queue, job.priority) == ("shout-1", "loud", 7)
    assert job.status is corq.JobStatus.SCHEDULED
    assert job.run_at_ms == job.enqueued_at_ms + DELAY_MS
    # The same spec again is the same job (its id is fixed), not a second one.
    again = await spec.enqueue()
    assert again.id == "shout-1"
    assert await _stored(app) == 1
    clock.advance(DELAY_MS / 1000)
    await drain(app, queues=["loud"])
    assert await handle.result(timeout=5) == "HIHI"


async def test_eta_and_the_tasks_defaults(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    _, clock = fake_app
    # Without options a spec goes to the task's queue with its priority.
    plain = await tasks["shout"].s("a").enqueue()
    assert ((await plain.info()).queue, (await plain.info()).priority) == ("text", 0)
    # An eta is an absolute start time.
    when = datetime.fromtimestamp(clock.now_ms() / 1000, UTC) + timedelta(seconds=30)
    later = await tasks["double"].s(1).with_options(eta=when).enqueue()
    assert (await later.info()).run_at_ms == clock.now_ms() + 30_000


async def test_bulk_of_mixed_specs_is_sent_together_in_order(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    double, shout = tasks["double"], tasks["shout"]
    specs: list[corq.JobSpec[Any]] = [
        double.s(1),
        shout.s("x"),
        double.s(2).with_options(priority=5, queue="other"),
        app.spec("remote_only", 3).with_options(queue="remote"),  # no such task here
        shout.s("y", times=3).with_options(job_id="y3"),
    ]
    handles = await app.enqueue_many(specs)
    assert [(h.task, h.queue) for h in handles] == [
        ("double", "default"),
        ("shout", "text"),
        ("double", "other"),
        ("remote_only", "remote"),
        ("shout", "text"),
    ]
    assert handles[4].id == "y3"
    stats = {s.queue: s.ready for s in await app.client().queue_stats()}
    assert stats == {"default": 1, "text": 2, "other": 1, "remote": 1}
    await drain(app, queues=["default", "text", "other"])
    results = [await h.result(timeout=5) for h in handles[:3] + handles[4:]]
    assert results == [2, "X", 4, "YYY"]
    assert (await handles[3].status()) is corq.JobStatus.QUEUED


async def test_one_bad_spec_in_a_bulk_sends_nothing(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    good = tasks["double"].s(1)
    with pytest.raises(corq.ArgumentError, match="argument 'x': Expected `int`, got `str`"):
        await app.enqueue_many([good, tasks["double"].s("one"), good])
    with pytest.raises(corq.ArgumentError, match="priority must be an integer from -100 to 100"):
        await app.enqueue_many([good, good.with_options(priority=500)])
    with pytest.raises(corq.ArgumentError, match="enqueue_many takes job specs"):
        await app.enqueue_many([good, (1,)])  # type: ignore[arg-type]  # what the test is about
    with pytest.raises(corq.ArgumentError, match="enqueue_many takes an iterable of job specs"):
        await app.enqueue_many(good)  # type: ignore[arg-type]  # what the test is about
    assert await app.client().backend.list_queues() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 101}, "priority must be an integer from -100 to 100, got 101"),
        ({"delay": -1}, "delay must be .* got -1"),
        ({"job_id": ""}, "job_id must be 1 to 200 characters, got 0"),
        ({"queue": "bad name"}, "invalid queue name 'bad name'"),
        ({"delay": 5, "eta": datetime.now(UTC)}, "give delay or eta, not both"),
    ],
    ids=lambda value: repr(sorted(value) if isinstance(value, dict) else value),
)
async def test_a_bad_option_value_is_refused_when_sent(
    fake_app: tuple[corq.App, corq.FakeClock],
    tasks: dict[str, corq.Task[Any, Any]],
    options: dict[str, Any],
    message: str,
) -> None:
    app, _ = fake_app
    spec = tasks["double"].s(1).with_options(**options)
    for send in (spec.enqueue, lambda: app.enqueue(spec), lambda: app.client().enqueue(spec)):
        with pytest.raises(corq.ArgumentError, match=message):
            await send()
    assert await app.client().backend.list_queues() == []


def test_an_unknown_option_or_an_option_among_the_arguments_is_refused(
    tasks: dict[str, corq.Task[Any, Any]],
) -> None:
    double = tasks["double"]
    with pytest.raises(corq.ArgumentError, match=r"unknown enqueue option\(s\): dealy \(known"):
        double.s(1).with_options(dealy=5)  # type: ignore[call-arg]  # what the test is about
    # The old mixed form: a keyword named like an option the function does not take.
    with pytest.raises(corq.ArgumentError, match=r"'delay' is an enqueue option.*with_options"):
        double.s(1, delay=5)
    with pytest.raises(corq.ArgumentError, match=r"'job_id' is an enqueue option"):
        double.with_options(queue="q").s(1, job_id="a")


async def test_the_old_mixed_form_fails_loudly_and_sends_nothing(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    with pytest.raises(corq.ArgumentError, match=r"'priority' is an enqueue option"):
        await tasks["double"].enqueue(1, priority=5)
    assert await app.client().backend.list_queues() == []


async def test_specs_are_immutable_and_reusable(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    words = {"times": 2}
    spec = tasks["shout"].s("ab", **words)
    words["times"] = 9  # the caller's dict is copied, not kept
    moved = spec.with_options(queue="elsewhere")
    assert spec.options.queue is None
    assert moved.options.queue == "elsewhere"
    assert (moved.task, moved.args, moved.kwargs) == (spec.task, spec.args, spec.kwargs)
    assert spec == tasks["shout"].s("ab", times=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.args = ("other",)  # type: ignore[misc]  # what the test is about
    with pytest.raises(TypeError):
        spec.kwargs["times"] = 3  # type: ignore[index]  # what the test is about
    # Sent twice, one spec is two jobs with their own ids and the same arguments.
    first, second = await spec.enqueue(), await spec.enqueue()
    assert first.id != second.id
    await drain(app)
    assert [await first.result(timeout=5), await second.result(timeout=5)] == ["ABAB", "ABAB"]


@pytest.fixture
async def name_only_app(
    fake_app: tuple[corq.App, corq.FakeClock], prefix: str
) -> AsyncIterator[corq.App]:
    """A producer on the same broker that registers no tasks at all."""
    app, clock = fake_app
    producer = corq.App(app.settings.url, prefix=prefix, clock=clock)
    yield producer
    await producer.aclose()


async def test_a_stored_spec_is_sent_by_a_producer_that_only_knows_the_name(
    fake_app: tuple[corq.App, corq.FakeClock],
    tasks: dict[str, corq.Task[Any, Any]],
    name_only_app: corq.App,
) -> None:
    app, _ = fake_app
    # Given a spec turned into bytes by the serializer (as a schedule would store it),
    original = (
        tasks["shout"]
        .s("hey", times=2)
        .with_options(
            queue="text", priority=3, delay=timedelta(seconds=0), eta=None, job_id="stored-1"
        )
    )
    stored = app.serializer.dumps(original.to_dict())
    # When a producer without the task reads it back and sends it,
    restored = corq.JobSpec.from_dict(name_only_app.serializer.loads(stored))
    assert restored == original.with_options(delay=0.0)  # a timedelta is stored as seconds
    handle = await name_only_app.enqueue(restored)
    # Then the worker that has the task runs it as written.
    await drain(app, queues=["text"])
    assert (await app.job(handle.id, "text").info()).priority == 3
    assert await app.job("stored-1", "text").result(timeout=5) == "HEYHEY"


async def test_a_spec_built_directly_is_sent_through_an_app_or_a_client(
    fake_app: tuple[corq.App, corq.FakeClock], tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    app, _ = fake_app
    spec: corq.JobSpec[Any] = corq.JobSpec(
        task="double", args=(4,), options=corq.EnqueueOptions(priority=2)
    )
    with pytest.raises(corq.CorqError, match=r"not made by an app: send it with app\.enqueue"):
        await spec.enqueue()
    with pytest.raises(corq.ArgumentError, match="a job spec carries its own"):
        await app.client().enqueue(spec, [1])  # type: ignore[call-overload]  # the point
    with pytest.raises(corq.ArgumentError, match="a job spec carries its own"):
        await app.enqueue(spec, queue="q")  # type: ignore[call-overload]  # the point
    handles = [await app.client().enqueue(spec), await app.enqueue(spec)]
    await drain(app)
    assert [await h.result(timeout=5) for h in handles] == [8, 8]
    assert {(await h.info()).priority for h in handles} == {2}
