from __future__ import annotations

from datetime import UTC, datetime

import pytest

import corq
from corq.errors import ArgumentError, SerializationError, TaskDefinitionError


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
    def keep(value):  # type: ignore[no-untyped-def]
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
    options, kwargs = send._split_options({"to": "x", "delay": 5, "priority": 3})
    assert kwargs == {"to": "x", "delay": 5}
    assert options.priority == 3
    assert options.delay is None
