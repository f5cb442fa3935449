from __future__ import annotations

import asyncio
import functools
import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

import corq
from corq.errors import ArgumentError, SerializationError, TaskDefinitionError
from corq.limits import MAX_DELAY_S


@pytest.fixture
def app() -> corq.App:
    return corq.App("redis://127.0.0.1:1/0")


def test_payload_round_trip_restores_hinted_types(app: corq.App) -> None:
    @app.task
    async def greet(name: str, when: datetime, *, times: int = 1) -> str:
        return name

    # Given a call with a datetime, When it is encoded and decoded as a worker would,
    payload = greet.encode_payload(("ann", datetime(2026, 1, 2, tzinfo=UTC)), {"times": 3})
    args, kwargs = greet.decode_payload(app.serializer.loads(payload))
    # Then the worker gets the same Python types back.
    assert args == ("ann", datetime(2026, 1, 2, tzinfo=UTC))
    assert kwargs == {"times": 3}


def test_enqueue_rejects_args_that_do_not_bind(app: corq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ArgumentError, match=r"task 'add': missing a required argument: 'b'"):
        add.encode_payload((1,), {})
    with pytest.raises(ArgumentError, match="unexpected keyword argument 'c'"):
        add.encode_payload((1, 2), {"c": 3})


def test_enqueue_rejects_args_of_the_wrong_type(app: corq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ArgumentError, match=r"argument 'b': Expected `int`, got `str`"):
        add.encode_payload((1, "two"), {})


def test_values_the_serializer_cannot_encode_are_refused(app: corq.App) -> None:
    @app.task
    def keep(value: Any) -> Any:
        return value

    with pytest.raises(SerializationError, match="task 'keep': cannot encode"):
        keep.encode_payload((object(),), {})


def test_decode_rejects_a_payload_of_the_wrong_shape(app: corq.App) -> None:
    @app.task
    def noop() -> None:
        return None

    with pytest.raises(ArgumentError, match="payload is not"):
        noop.decode_payload(["not", "a", "dict"])


def test_duplicate_task_names_are_refused(app: corq.App) -> None:
    @app.task
    def job() -> None: ...

    with pytest.raises(TaskDefinitionError, match="already registered"):
        app.task(name="job")(lambda: None)


def test_bad_task_options_are_refused(app: corq.App) -> None:
    with pytest.raises(TaskDefinitionError, match="retries"):
        app.task(retries=-1, name="r")(lambda: None)
    with pytest.raises(TaskDefinitionError, match="timeout"):
        app.task(timeout=0, name="t")(lambda: None)
    with pytest.raises(TaskDefinitionError, match="process=True needs a plain function"):

        @app.task(process=True)
        async def coro() -> None: ...


def test_invalid_queue_names_are_refused(app: corq.App) -> None:
    with pytest.raises(ArgumentError, match="invalid queue name"):
        app.task(queue="bad{name}", name="q")(lambda: None)


def test_option_keywords_go_to_the_function_when_it_takes_them(app: corq.App) -> None:
    @app.task
    def send(to: str, delay: int) -> None: ...

    # `delay` is a parameter of the function, so it is an argument, not an option.
    spec = send.s(to="x", delay=5).with_options(priority=3)
    assert spec.kwargs == {"to": "x", "delay": 5}
    assert spec.options.priority == 3
    assert spec.options.delay is None


def test_retry_on_one_class_means_that_class(app: corq.App) -> None:
    @app.task(retries=2, retry_on=ValueError)
    def flaky() -> None: ...

    assert flaky.options.retry.retry_on == (ValueError,)
    assert not flaky.options.retry.should_retry(1, KeyError())


def test_retry_on_from_a_generator_keeps_every_class(app: corq.App) -> None:
    # A generator read once to check and once to use would leave nothing (retry everything).
    @app.task(retries=2, retry_on=(t for t in (KeyError, OSError)))
    def flaky() -> None: ...

    assert flaky.options.retry.retry_on == (KeyError, OSError)


@pytest.mark.parametrize(
    ("retry_on", "message"),
    [
        ((ValueError, "oops"), "retry_on takes exception classes, got 'oops'"),
        ((ValueError, int), "retry_on takes exception classes, got <class 'int'>"),
        ("ValueError", "retry_on takes an exception class or a tuple of them"),
        (3, "retry_on takes an exception class or a tuple of them, got 3"),
    ],
)
def test_retry_on_with_a_non_exception_is_refused(
    app: corq.App, retry_on: Any, message: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=re.escape(message)):
        app.task(retries=1, retry_on=retry_on, name="t")(lambda: None)


BAD_SECONDS = [math.nan, math.inf, -math.inf, -1.0, "1", [1], True, MAX_DELAY_S * 2, 10**400]


@pytest.mark.parametrize("argument", ["backoff", "max_backoff", "timeout"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_times_that_are_not_finite_seconds_are_refused(
    app: corq.App, argument: str, value: object
) -> None:
    # max_backoff=nan used to give every failed job a retry time no clock reaches.
    options: dict[str, Any] = {argument: value}
    with pytest.raises(TaskDefinitionError, match=rf"^{argument} must be .*got"):
        app.task(name="t", retries=1, **options)(lambda: None)
    assert "t" not in app.registry


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": True}, "retries must be a non-negative integer, got True"),
        ({"retries": 1.5}, "retries must be a non-negative integer, got 1.5"),
        ({"timeout": 0}, "timeout must be None or a number of seconds above 0"),
        ({"jitter": "no"}, "jitter must be True or False, got 'no'"),
        ({"process": 1}, "process must be True or False, got 1"),
        ({"priority": True}, "priority must be an integer from -100 to 100, got True"),
        ({"priority": 101}, "priority must be an integer from -100 to 100, got 101"),
        ({"priority": -101}, "priority must be an integer from -100 to 100, got -101"),
    ],
)
def test_task_options_of_the_wrong_kind_are_refused(
    app: corq.App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=re.escape(message)):
        app.task(name="t", **options)(lambda: None)


def test_limits_themselves_are_accepted(app: corq.App) -> None:
    @app.task(backoff=0, max_backoff=MAX_DELAY_S, timeout=MAX_DELAY_S, priority=-100)
    def edge() -> None: ...

    assert edge.options.timeout_s == MAX_DELAY_S
    assert edge.options.retry.max_backoff_s == MAX_DELAY_S


@pytest.mark.parametrize("name", ["job\n", "job\r\n", "", " job", "job name", "x" * 201, "9job"])
def test_task_names_must_match_in_full(app: corq.App, name: str) -> None:
    with pytest.raises(TaskDefinitionError, match="invalid task name"):
        app.task(name=name)(lambda: None)


@pytest.mark.parametrize("queue", ["default\n", "de fault", "", "q{1}", "x" * 101])
def test_queue_names_must_match_in_full(app: corq.App, queue: str) -> None:
    # "default\n" passed a `$`-anchored check and became a queue no CLI worker can serve.
    with pytest.raises(ArgumentError, match="invalid queue name"):
        app.task(name="t", queue=queue)(lambda: None)


def test_callables_without_a_usable_name_or_signature_are_refused(app: corq.App) -> None:
    with pytest.raises(TaskDefinitionError, match="invalid task name '<lambda>'"):
        app.task(lambda: None)
    with pytest.raises(TaskDefinitionError, match="has no __name__: pass name="):
        app.task(functools.partial(print, "x"))
    with pytest.raises(TaskDefinitionError, match=r"@app\.task needs a function, got 5"):
        app.task(5)  # type: ignore[call-overload]  # what the test is about
    with pytest.raises(TaskDefinitionError, match="its signature cannot be read"):
        app.task(name="make")(type)


def test_nan_for_a_float_argument_is_refused_naming_the_task(app: corq.App) -> None:
    # JSON would store null, and the worker would dead-letter a "corrupted payload".
    @app.task
    def score(value: float, extra: dict[str, float | None]) -> None: ...

    with pytest.raises(
        SerializationError, match=r"task 'score': cannot encode value\['args'\]\[0\] = nan"
    ):
        score.encode_payload((math.nan, {}), {})
    with pytest.raises(SerializationError, match=r"value\['args'\]\[1\]\['b'\] = inf"):
        score.encode_payload((1.0, {"a": 1.0, "b": math.inf}), {})
    assert app.serializer.loads(score.encode_payload((1.0, {"n": None}), {}))  # None is fine


def test_nesting_deeper_than_the_serializer_allows_is_refused(app: corq.App) -> None:
    @app.task
    def keep(value: list[Any]) -> None: ...

    deep: list[Any] = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(SerializationError, match=r"task 'keep': cannot encode .* nested deeper"):
        keep.encode_payload((deep,), {})


class Node(msgspec.Struct):
    children: list[Node]


def test_a_deep_value_for_a_recursive_hint_is_refused(app: corq.App) -> None:
    @app.task
    def walk(tree: Node) -> None: ...

    deep: dict[str, Any] = {"children": []}
    for _ in range(50_000):
        deep = {"children": [deep]}
    with pytest.raises(SerializationError, match="task 'walk': argument 'tree' is nested deeper"):
        walk.encode_payload((deep,), {})


def test_enqueue_many_needs_an_iterable_of_calls(app: corq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    for calls in (5, "ab", {"a": 1}):
        with pytest.raises(ArgumentError, match="enqueue_many takes an iterable of calls"):
            asyncio.run(add.enqueue_many(calls))  # type: ignore[arg-type]  # what the test is about
    with pytest.raises(ArgumentError, match=r"each call must be an args tuple or \(args, kwargs\)"):
        asyncio.run(add.enqueue_many([5]))  # type: ignore[list-item]  # what the test is about


def test_unknown_options_are_refused_when_given(app: corq.App) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ArgumentError, match="unknown enqueue option"):
        add.with_options(dealy=5)  # type: ignore[call-arg]  # what the test is about
