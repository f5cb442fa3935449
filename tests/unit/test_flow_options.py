"""Flow-control options: every bad rule is a clear FlowRuleError where it is given (at
definition, or at enqueue before anything is sent), and good ones reach the broker's
records as the port describes (key, unique key, start_by_ms, dedupe)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import corq
from corq.errors import ArgumentError, FlowRuleError, TaskDefinitionError
from corq.flow import Dedupe, OnDuplicate, OverLimit, Rate, TaskRules
from corq.spec import JobSpec


@pytest.fixture
def app() -> corq.App:
    # Nothing listens on port 1: an enqueue that reached the broker would fail with a
    # BrokerError after its retries, never with the FlowRuleError these tests expect.
    return corq.App("redis://127.0.0.1:1/0", clock=corq.FakeClock(start_ms=1_000_000))


def _noop() -> None:
    return None


# -- at definition -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "fast"}, r"rate_limit: a rate limit is written like '50/s'.*'fast'"),
        ({"rate_limit": "0/s"}, r"rate_limit: a rate needs a count of at least 1, got 0"),
        ({"key_rate_limit": 5, "key": str}, r"key_rate_limit: a rate limit is written like"),
        ({"concurrency": 0}, r"concurrency must be an integer of at least 1, got 0"),
        ({"concurrency": -3}, r"concurrency must be an integer of at least 1, got -3"),
        ({"concurrency": 2.5}, r"concurrency must be an integer of at least 1, got 2.5"),
        ({"concurrency": True}, r"concurrency must be an integer of at least 1, got True"),
        ({"key": str, "key_concurrency": 0}, r"key_concurrency must be an integer"),
        ({"key_concurrency": 2}, r"need a key= function"),
        ({"key_rate_limit": "5/s"}, r"need a key= function"),
        ({"key_weights": {"a": 2}}, r"need a key= function"),
        ({"key": str, "key_weights": {"a": 0}}, r"the weight of key 'a' must be an integer"),
        ({"key": str, "key_weights": {"a": 1.5}}, r"the weight of key 'a' must be an integer"),
        ({"key": str, "key_weights": {"a": -1}}, r"the weight of key 'a' must be an integer"),
        ({"key": str, "key_weights": {"": 1}}, r"a key_weights key must be 1 to 200"),
        ({"key": str, "key_weights": [("a", 1)]}, r"key_weights must be a dict"),
        ({"key": "tenant"}, r"key must be a function of the task's arguments"),
        ({"over_limit": "drop"}, r"over_limit='drop' drops jobs over a rate limit: it needs"),
        ({"over_limit": "later"}, r"over_limit must be 'wait' or 'drop', got 'later'"),
        ({"on_duplicate": "merge"}, r"on_duplicate must be one of 'keep', 'replace', 'cancel'"),
        ({"unique_for": -1}, r"task 'job': unique_for must be a timedelta or a number"),
        ({"unique_for": math.nan}, r"unique_for must be a timedelta or a number"),
        ({"batch_size": 0}, r"batch_size must be an integer of at least 1, got 0"),
        ({"batch_size": 10_001}, r"batch_size must be at most 10,000"),
        ({"batch_wait": 1}, r"batch_wait and batch_by_key need a batch_size"),
        ({"batch_size": 5, "batch_wait": -1}, r"batch_wait must be a timedelta or a number"),
        ({"batch_size": 5, "batch_by_key": True}, r"need a key= function"),
        ({"batch_size": 5, "process": True}, r"not in the process pool"),
    ],
)
def test_a_bad_rule_is_refused_at_definition(
    app: corq.App, options: dict[str, Any], message: str
) -> None:
    # Given a task defined with a bad flow-control option, Then the decorator refuses it,
    with pytest.raises(FlowRuleError, match=message) as refused:
        app.task(name="job", **options)(_noop)
    # as a definition error (what a TaskDefinitionError handler catches), and nothing is
    # registered.
    assert isinstance(refused.value, TaskDefinitionError)
    assert "job" not in app.registry


def test_good_rules_become_the_task_rules(app: corq.App) -> None:
    # Given a task with every rule, When it is defined,
    @app.task(
        key=lambda tenant, **_: tenant,
        concurrency=10,
        key_concurrency=2,
        rate_limit="50/s",
        key_rate_limit=Rate(5, 1000),
        key_weights={"big": 3},
        over_limit="drop",
        on_duplicate="replace",
        unique_for=timedelta(minutes=2),
    )
    async def sync_tenant(tenant: str, since: int) -> None: ...

    # Then its options hold them parsed, and its rules are what the broker is given.
    options = sync_tenant.options
    assert options.rate_limit == Rate(50, 1000)
    assert options.on_duplicate is OnDuplicate.REPLACE
    assert options.unique_for_ms == 120_000
    assert options.rules == TaskRules(
        task="sync_tenant",
        concurrency=10,
        keyed=True,
        key_concurrency=2,
        rate=Rate(50, 1000),
        key_rate=Rate(5, 1000),
        over_limit=OverLimit.DROP,
        key_weights={"big": 3},
    )
    assert options.rules.active


def test_a_task_without_rules_has_inactive_rules(app: corq.App) -> None:
    @app.task
    def plain() -> None: ...

    assert not plain.options.rules.active


def test_a_batched_task_takes_one_list_and_its_jobs_one_item(app: corq.App) -> None:
    # Given a batched task over rows,
    @app.task(batch_size=100, batch_wait=timedelta(milliseconds=250))
    async def write(rows: list[int]) -> list[str]:
        return [str(row) for row in rows]

    assert write.batched
    assert write.options.batch_wait_s == 0.25
    # Then each job takes one row, checked against the list's item type,
    payload = write.encode_payload((3,), {})
    assert write.decode_payload(app.serializer.loads(payload)) == ((3,), {})
    with pytest.raises(ArgumentError, match=r"argument 'rows': Expected `int`, got `str`"):
        write.encode_payload(("three",), {})
    # and results in one item of the list it returns.
    assert write.return_type is str


@pytest.mark.parametrize(
    "fn",
    [
        lambda: None,
        lambda a, b: None,
        lambda *rows: None,
    ],
)
def test_a_batched_task_must_take_one_list(app: corq.App, fn: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=r"takes one positional parameter"):
        app.task(name="batched", batch_size=10)(fn)


def test_a_batched_task_hinted_with_something_else_than_a_list_is_refused(
    app: corq.App,
) -> None:
    def write(rows: int) -> None: ...

    with pytest.raises(TaskDefinitionError, match=r"its parameter must be a list"):
        app.task(batch_size=10)(write)  # type: ignore[arg-type]  # the mistake under test


# -- at enqueue ------------------------------------------------------------------------


async def test_a_key_function_that_raises_is_refused_naming_the_task(app: corq.App) -> None:
    @app.task(key=lambda tenant, **_: tenant["id"])
    async def sync(tenant: str) -> None: ...

    with pytest.raises(FlowRuleError, match=r"task 'sync': its key function raised TypeError"):
        await sync.enqueue("acme")


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (42, r"the key function's result must be a str, got int 42"),
        (None, r"the key function's result must be a str, got NoneType None"),
        ("", r"the key function's result must be 1 to 200 characters"),
        ("x" * 201, r"the key function's result must be 1 to 200 characters"),
        ("a\x1fb", r"the key function.s result must be .* without control characters"),
    ],
)
async def test_a_key_function_returning_a_bad_key_is_refused(
    app: corq.App, result: object, message: str
) -> None:
    @app.task(key=lambda *_, **__: result)  # type: ignore[arg-type]  # the mistake under test
    async def sync(tenant: str) -> None: ...

    with pytest.raises(FlowRuleError, match=rf"task 'sync': {message}"):
        await sync.enqueue("acme")
    with pytest.raises(FlowRuleError, match=message):
        await sync.enqueue_many([("a",), ("b",)])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"debounce": 5}, r"debounce needs a unique_key"),
        ({"unique_key": "k", "debounce": 5, "delay": 1}, r"give debounce or delay/eta"),
        ({"unique_key": "k", "max_wait": 5}, r"max_wait caps a debounce: it needs debounce"),
        ({"unique_key": ""}, r"unique_key must be 1 to 200 characters"),
        ({"unique_key": 7}, r"unique_key must be a str, got int 7"),
        ({"unique_key": "k", "debounce": -1}, r"debounce must be a timedelta or a number"),
        ({"unique_key": "k", "debounce": 0}, r"debounce must be at least 1 ms"),
        ({"cooldown": "soon"}, r"cooldown must be a timedelta or a number of seconds"),
        ({"cooldown": 0}, r"cooldown must be at least 1 ms"),
        ({"expires": 0}, r"expires must be at least 1 ms"),
        ({"expires": math.inf}, r"expires must be a timedelta or a number"),
        ({"expires": 5, "delay": 10}, r"expires \(5s\) ends before the job may start \(10s"),
    ],
)
async def test_bad_enqueue_options_are_refused_before_sending(
    app: corq.App, options: dict[str, Any], message: str
) -> None:
    @app.task
    async def notify(message: str) -> None: ...

    with pytest.raises(FlowRuleError, match=message):
        await notify.with_options(**options).enqueue("hi")


async def test_shorthand_options_are_taken_from_the_call(app: corq.App) -> None:
    @app.task
    async def notify(message: str) -> None: ...

    # Given debounce as a call keyword (the form), Then it is the option, checked.
    with pytest.raises(FlowRuleError, match=r"debounce needs a unique_key"):
        await notify.enqueue("hi", debounce=timedelta(seconds=5))  # type: ignore[call-arg]


def test_a_parameter_named_like_an_option_stays_an_argument(app: corq.App) -> None:
    @app.task
    async def renew(unique_key: str, expires: int) -> None: ...

    # Given a function that takes unique_key and expires, Then they are its arguments.
    assert renew._call_options({"unique_key": "a", "expires": 3}) == {}


async def test_flow_options_are_refused_in_a_workflow(app: corq.App) -> None:
    @app.task
    async def step(n: int) -> int:
        return n

    flow = corq.chain(step.s(1).with_options(unique_key="once"), step.s(2))
    with pytest.raises(FlowRuleError, match=r"unique_key cannot be used in a workflow"):
        await app.enqueue_workflow(flow)


async def test_a_keyed_chain_link_is_refused(app: corq.App) -> None:
    @app.task
    async def fetch(n: int) -> int:
        return n

    @app.task(key=lambda n, **_: str(n))
    async def parse(n: int) -> int:
        return n

    with pytest.raises(FlowRuleError, match=r"task 'parse' has a key function .* chain link"):
        await app.enqueue_workflow(corq.chain(fetch.s(1), parse.then()))


# -- what is sent ----------------------------------------------------------------------


def test_the_job_record_carries_the_key_unique_key_deadline_and_dedupe(app: corq.App) -> None:
    # Given a keyed task with a unique window, and a call with every enqueue option,
    @app.task(key=lambda tenant, **_: f"t-{tenant}", on_duplicate="cancel", unique_for=30)
    async def sync(tenant: str, since: int = 0) -> None: ...

    spec = sync.s("acme", since=4).with_options(
        unique_key="sync-acme",
        debounce=timedelta(seconds=5),
        max_wait=60,
        cooldown=1.5,
        expires=timedelta(minutes=10),
    )
    # When the client builds its broker record,
    job = app.new_client().encode_spec(spec)
    now = 1_000_000
    # Then it holds what the broker applies.
    assert job.key == "t-acme"
    assert job.unique_key == "sync-acme"
    assert job.enqueued_at_ms == now
    assert job.run_at_ms == now + 5_000  # debounced: it runs 5 s after the call
    assert job.start_by_ms == now + 600_000
    assert job.dedupe == Dedupe(
        on_duplicate=OnDuplicate.CANCEL,
        window_ms=30_000,
        debounce_ms=5_000,
        max_wait_ms=60_000,
        cooldown_ms=1_500,
    )


def test_a_plain_job_carries_no_flow_directives(app: corq.App) -> None:
    @app.task
    async def plain(n: int) -> None: ...

    job = app.new_client().encode_spec(plain.s(1))
    assert (job.key, job.unique_key, job.start_by_ms, job.dedupe) == (None, None, None, None)


def test_the_key_function_reads_arguments_by_name_whatever_the_call(app: corq.App) -> None:
    @app.task(key=lambda tenant, region="eu": f"{tenant}/{region}")
    async def sync(tenant: str, since: int, region: str = "us") -> None: ...

    # A key function without **kwargs gets only the names it declares, defaults filled in.
    assert sync.key_of(("acme", 1), {}) == "acme/us"
    assert sync.key_of((), {"since": 1, "tenant": "acme", "region": "ap"}) == "acme/ap"


def test_flow_options_round_trip_through_to_dict(app: corq.App) -> None:
    spec = app.spec("notify", "hi").with_options(
        unique_key="n-1", debounce=timedelta(seconds=5), max_wait=30, cooldown=2, expires=60
    )
    data = spec.to_dict()
    assert data["options"] == {
        "unique_key": "n-1",
        "debounce": 5.0,
        "max_wait": 30,
        "cooldown": 2,
        "expires": 60,
    }
    again = JobSpec.from_dict(data)
    assert again.options.unique_key == "n-1"
    assert again.options.debounce == 5.0
    assert again.options.expires == 60


def test_a_handle_says_what_the_enqueue_did(app: corq.App) -> None:
    client = app.new_client()
    made: corq.JobHandle[Any] = corq.JobHandle(client, "j1", "default", "t", corq.Outcome.CREATED)
    found: corq.JobHandle[Any] = corq.JobHandle(client, "j0", "default", "t", corq.Outcome.EXISTING)
    assert made.created
    assert not found.created
    assert "outcome=existing" in repr(found)
    assert client.job("j2", "default").outcome is None


def test_the_app_lists_the_rules_its_workers_store(app: corq.App) -> None:
    @app.task(concurrency=3)
    async def limited() -> None: ...

    @app.task
    async def plain() -> None: ...

    assert app.flow_rules() == [limited.options.rules]


def test_a_key_function_asking_for_an_unknown_argument_is_refused_at_definition(
    app: corq.App,
) -> None:
    async def sync(tenant: str, since: int) -> None: ...

    with pytest.raises(FlowRuleError, match=r"its key function takes 'account', which the task"):
        app.task(key=lambda account: account)(sync)
