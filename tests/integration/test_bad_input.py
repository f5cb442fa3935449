"""Bad input from producers, on both brokers: a clear corq error naming the argument and
its limit, nothing written, and the same answer from Redis and SQLite (the client checks
everything before the broker is reached)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import corq
from corq.backends.base import Completion, WorkerLease
from corq.errors import BrokerDataError
from corq.limits import MAX_DELAY_S

YEAR_S = 365 * 86_400


@pytest.fixture
def tasks(app: corq.App) -> dict[str, corq.Task[Any, Any]]:
    @app.task
    async def score(value: float) -> float:
        return value

    @app.task
    async def keep(value: Any = None) -> Any:
        return value

    return {"score": score, "keep": keep}


@pytest.fixture
async def msgpack_app(broker_url: str, prefix: str) -> AsyncIterator[corq.App]:
    application = corq.App(broker_url, prefix=prefix, serializer="msgpack")
    yield application
    await application.aclose()


async def assert_nothing_written(app: corq.App) -> None:
    """No queue was ever named to the broker, so no job can have been stored."""
    client = app.client()
    assert await client.backend.list_queues() == []
    assert await client.queue_stats() == []


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"delay": math.nan}, r"delay must be a number of seconds \(or a timedelta\) from 0 to"),
    ({"delay": math.inf}, "delay must be .* got inf"),
    ({"delay": 1e30}, "delay must be .*MAX_DELAY_S.*got 1e\\+30"),
    ({"delay": 10**400}, "delay must be"),
    ({"delay": MAX_DELAY_S + 1}, "delay must be"),
    ({"delay": timedelta(days=101 * 365)}, "delay must be .*datetime.timedelta"),
    ({"delay": -1}, "delay must be .* got -1"),
    ({"delay": timedelta(seconds=-1)}, "delay must be"),
    ({"delay": []}, r"delay must be .* got \[\]"),
    ({"delay": "5"}, "delay must be .* got '5'"),
    ({"delay": True}, "delay must be .* got True"),
    ({"eta": "2030-01-01T00:00:00"}, "eta must be a datetime, got str '2030-01-01T00:00:00'"),
    ({"eta": 1_900_000_000}, "eta must be a datetime, got int 1900000000"),
    ({"eta": datetime.now(UTC) + timedelta(days=101 * 365)}, "eta must be at most"),
    ({"eta": datetime.max}, "eta must be at most"),
    ({"delay": 5, "eta": datetime.now(UTC)}, "give delay or eta, not both"),
    ({"priority": True}, "priority must be an integer from -100 to 100, got True"),
    ({"priority": 101}, "priority must be an integer from -100 to 100, got 101"),
    ({"priority": -101}, "priority must be an integer from -100 to 100, got -101"),
    ({"priority": 1.5}, "priority must be an integer from -100 to 100, got 1.5"),
    ({"priority": "1"}, "priority must be an integer from -100 to 100, got '1'"),
    ({"job_id": ["a"]}, r"job_id must be a str, got list \['a'\]"),
    ({"job_id": 42}, "job_id must be a str, got int 42"),
    ({"job_id": ""}, "job_id must be 1 to 200 characters, got 0"),
    ({"job_id": "x" * 201}, "job_id must be 1 to 200 characters, got 201"),
    ({"job_id": "a\nb"}, r"job_id must not hold control characters .* '\\n' at position 1"),
    ({"job_id": "a\x00"}, "job_id must not hold control characters"),
    ({"job_id": "esc\x1b[2J"}, "job_id must not hold control characters"),
    ({"job_id": "\ud800"}, "job_id must not hold control characters or lone surrogates"),
    ({"queue": "default\n"}, "invalid queue name 'default\\\\n'"),
    ({"queue": ""}, "invalid queue name ''"),
    ({"queue": ["q"]}, "invalid queue name"),
]


def _ids(cases: list[tuple[Any, str]]) -> list[str]:
    """Stable test ids (a value holding now() would differ between pytest-xdist workers)."""
    return [f"{sorted(options)}-{message}" for options, message in cases]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=_ids(BAD_OPTIONS))
async def test_bad_enqueue_options_are_refused_and_nothing_is_written(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        await tasks["keep"].with_options(**options).enqueue()
    await assert_nothing_written(app)


#: One bad value per option, for every way of enqueueing (1e30 was refused by one broker only).
ONE_PER_OPTION = [
    ({"delay": 1e30}, "delay must be"),
    ({"eta": "tomorrow"}, "eta must be a datetime"),
    ({"priority": True}, "priority must be an integer from -100 to 100"),
    ({"job_id": "x" * 201}, "job_id must be 1 to 200 characters"),
    ({"queue": "default\n"}, "invalid queue name"),
]


@pytest.mark.parametrize(("options", "message"), ONE_PER_OPTION, ids=_ids(ONE_PER_OPTION))
async def test_every_way_to_enqueue_checks_the_options(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]], options: dict[str, Any], message: str
) -> None:
    keep = tasks["keep"]
    client = app.client()
    sends: list[Callable[[], Awaitable[Any]]] = [
        lambda: keep.with_options(**options).enqueue(),
        lambda: keep.enqueue_many([()], **options),
        lambda: client.enqueue("keep", **options),  # registered here: checked as the task
        lambda: client.enqueue("elsewhere", **options),  # registered only in some worker
        lambda: app.enqueue("elsewhere", **options),
    ]
    for send in sends:
        with pytest.raises(corq.ArgumentError, match=message):
            await send()
    await assert_nothing_written(app)


async def test_a_32_mib_job_id_is_refused_with_a_short_message(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    with pytest.raises(corq.ArgumentError) as caught:
        await tasks["keep"].with_options(job_id="x" * (32 << 20)).enqueue()
    assert "job_id must be 1 to 200 characters, got 33,554,432" in str(caught.value)
    assert len(str(caught.value)) < 200
    await assert_nothing_written(app)


async def test_the_limits_themselves_are_accepted(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, clock = fake_app

    @app.task
    async def keep() -> None: ...

    now = clock.now_ms()
    longest = await keep.with_options(delay=MAX_DELAY_S, priority=100, job_id="j" * 200).enqueue()
    assert (await longest.info()).run_at_ms == now + round(MAX_DELAY_S * 1000)
    assert (await longest.info()).priority == 100
    lowest = await keep.with_options(delay=timedelta(0), priority=-100).enqueue()
    assert (await lowest.status()) is corq.JobStatus.QUEUED


async def test_a_naive_eta_means_utc(fake_app: tuple[corq.App, corq.FakeClock]) -> None:
    app, clock = fake_app

    @app.task
    async def keep() -> None: ...

    now = clock.now_ms()
    utc_now = datetime.fromtimestamp(now / 1000, UTC)
    naive = await keep.with_options(
        eta=utc_now.replace(tzinfo=None) + timedelta(seconds=60)
    ).enqueue()
    paris = timezone(timedelta(hours=1))
    aware = await keep.with_options(
        eta=(utc_now + timedelta(seconds=90)).astimezone(paris)
    ).enqueue()
    past = await keep.with_options(eta=utc_now - timedelta(days=1)).enqueue()
    assert (await naive.info()).run_at_ms == now + 60_000
    assert (await aware.info()).run_at_ms == now + 90_000
    assert (await past.info()).status is corq.JobStatus.QUEUED


async def test_nan_and_infinity_are_refused_with_json_naming_the_task(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    # JSON would store null: the float-hinted task would then die as a corrupted payload.
    with pytest.raises(corq.SerializationError, match=r"task 'score': cannot encode .* = nan"):
        await tasks["score"].enqueue(math.nan)
    with pytest.raises(corq.SerializationError, match=r"task 'keep': .*\['x'\]\[1\] = -inf"):
        await tasks["keep"].enqueue({"x": [1.0, -math.inf]})
    with pytest.raises(corq.SerializationError, match=r"task 'remote': .* = inf"):
        await app.client().enqueue("remote", [math.inf])
    with pytest.raises(corq.SerializationError, match="task 'score'"):
        await tasks["score"].enqueue_many([(1.0,), (math.nan,)])
    await assert_nothing_written(app)


async def test_msgpack_keeps_nan_arguments(msgpack_app: corq.App) -> None:
    @msgpack_app.task
    async def score(value: float) -> float:
        return value

    job = await score.enqueue(math.nan)
    stored = await job.info()
    args, _ = score.decode_payload(msgpack_app.serializer.loads(stored.payload))
    assert math.isnan(args[0])


async def test_nesting_deeper_than_the_serializer_allows_is_refused(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(corq.SerializationError, match=r"task 'keep': .*nested deeper"):
        await tasks["keep"].enqueue(deep)
    with pytest.raises(corq.SerializationError, match=r"task 'remote': .*nested deeper"):
        await app.client().enqueue("remote", [deep])
    await assert_nothing_written(app)


async def test_text_that_is_not_valid_utf8_is_refused_naming_the_task(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    # A float hint: msgspec cannot even quote the str in its mismatch message.
    with pytest.raises(corq.SerializationError, match="task 'score': argument 'value' holds"):
        await tasks["score"].enqueue("\ud800")
    with pytest.raises(corq.SerializationError, match="task 'keep': cannot encode"):
        await tasks["keep"].enqueue({"name": "\udcff"})
    await assert_nothing_written(app)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ("abc", None, "args must be a list or tuple, got 'abc'"),
        (5, None, "args must be a list or tuple, got 5"),
        ({"a": 1}, None, "args must be a list or tuple"),
        ((), [1], r"kwargs must be a dict with str keys, got \[1\]"),
        ((), {1: 2}, "kwargs must be a dict with str keys, got {1: 2}"),
    ],
)
@pytest.mark.parametrize("task_name", ["keep", "remote"])
async def test_enqueue_by_name_checks_the_shape_of_args_and_kwargs(
    app: corq.App,
    tasks: dict[str, corq.Task[Any, Any]],
    task_name: str,
    args: Any,
    kwargs: Any,
    message: str,
) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        await app.client().enqueue(task_name, args, kwargs)
    await assert_nothing_written(app)


@pytest.mark.parametrize("task_name", [["keep"], "", "bad name", "keep\n", None])
async def test_enqueue_by_name_checks_the_task_name(app: corq.App, task_name: Any) -> None:
    with pytest.raises(corq.ArgumentError, match="invalid task name"):
        await app.client().enqueue(task_name)
    await assert_nothing_written(app)


async def test_enqueue_many_refuses_bad_shapes_before_writing(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    keep = tasks["keep"]
    with pytest.raises(corq.ArgumentError, match="enqueue_many takes an iterable of calls"):
        await keep.enqueue_many(7)  # type: ignore[arg-type]  # what the test is about
    with pytest.raises(corq.ArgumentError, match=r"each call must be an args tuple"):
        await keep.enqueue_many([(1,), {"value": 2}])  # type: ignore[list-item]  # the point
    with pytest.raises(corq.ArgumentError, match="keywords must be strings"):
        await keep.enqueue_many([((), {1: 2})])
    with pytest.raises(corq.ArgumentError, match="job_id can only be given when enqueueing one"):
        await keep.enqueue_many([(1,), (2,)], job_id="same")
    await assert_nothing_written(app)


@pytest.mark.parametrize("timeout", [math.nan, -1, "5", True, [1]], ids=repr)
async def test_waiting_for_a_result_checks_the_timeout(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]], timeout: Any
) -> None:
    # timeout=nan used to spin for ever on zero-second waits.
    job = await tasks["keep"].enqueue()
    with pytest.raises(corq.ArgumentError, match="timeout must be None or a number of seconds"):
        await job.result(timeout=timeout)


async def test_lookups_check_queue_names_and_id_types(app: corq.App) -> None:
    client = app.client()
    calls: list[Callable[[], object]] = [
        lambda: app.job("some-id", "bad{queue}"),
        lambda: app.job(["some-id"]),  # type: ignore[arg-type]  # what the test is about
        lambda: client.job("some-id", "default\n"),
    ]
    for call in calls:
        with pytest.raises(corq.ArgumentError):
            call()
    awaited: list[Callable[[], Awaitable[Any]]] = [
        lambda: client.get_job("some-id", "bad queue"),
        lambda: client.get_job(b"some-id"),  # type: ignore[arg-type]  # the point
        lambda: client.cancel("some-id", "a\nb"),
        lambda: client.wait_result("some-id", "{q}", timeout=1),
        lambda: client.queue_stats("default"),  # a str would be read as queue names 'd', 'e'…
        lambda: client.queue_stats(["ok", "not ok"]),
        lambda: client.list_dead("bad queue"),
        lambda: client.list_dead("default", limit=-1),
        lambda: client.list_dead("default", offset=True),
        lambda: client.retry_dead("default", "abc"),
        lambda: client.retry_dead("default", [1, 2]),  # type: ignore[list-item]  # the point
        lambda: client.list_dead("default", offset=10**30),  # beyond a 64-bit integer
        lambda: client.purge_dead("bad queue"),
        lambda: client.purge_dead("default", "abc"),
        # A lone surrogate (a non-UTF-8 byte from argv) was never storable on any broker.
        lambda: client.get_job("\udcff"),
        lambda: client.retry_dead("default", ["\udcff"]),
        lambda: client.purge_dead("default", ["ok", "\udcff"]),
    ]
    for send in awaited:
        with pytest.raises(corq.ArgumentError):
            await send()
    await assert_nothing_written(app)
    # Ids stored before the id rules existed stay reachable: lookups only check the type.
    assert await client.get_job("x" * 300, "default") is None


async def test_a_result_that_does_not_decode_is_a_broker_data_error(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    # Given a job whose stored result is not JSON (another writer, a damaged record)
    job = await tasks["score"].enqueue(1.0)
    backend = app.client().backend
    lease = WorkerLease(worker_id="w", queues=["default"], lease_ms=60_000)
    await backend.register_worker(lease, app.clock.now_ms())
    claimed = await backend.claim_jobs("default", "w", 1, 60_000, app.clock.now_ms())
    completion = Completion(
        job_id=job.id,
        queue="default",
        fence=claimed.jobs[0].fence,
        result=b"\xff\xfenot json",
        finished_at_ms=app.clock.now_ms(),
    )
    assert await backend.complete_jobs("w", [completion], 60_000) == [True]
    # When its result is asked for, Then the error says what is wrong, as a corq error
    with pytest.raises(BrokerDataError, match=r"job .* \(score\) succeeded but its result"):
        await job.result(timeout=5)
