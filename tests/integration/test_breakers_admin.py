"""Circuit breakers for operators on both brokers: the admin API (each task's circuit and
thresholds, thresholds changed at runtime and followed by workers, reset by hand; bad
input refused with nothing written) and the CLI (`corq task reset-breaker`, the breaker
column of `corq tasks`, thresholds set by `corq task breaker`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial

import pytest
from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.control import BreakerStatus
from corq.errors import UnknownTaskError
from corq.testing import run_worker
from tests.integration import breaker_app
from tests.waiting import until

APP = "tests.integration.breaker_app:app"
FakeApp = tuple[corq.App, corq.FakeClock]


async def test_thresholds_changed_at_runtime_reach_the_workers(fake_app: FakeApp) -> None:
    app, _ = fake_app

    @app.task(retries=0, breaker=corq.Breaker(failures=5))
    async def flaky() -> None:
        raise ConnectionError("down")

    admin = app.admin("ops")
    # Given the operator lowers the threshold from 5 to 1
    rule = await admin.set_breaker(flaky.name, failures=1, reset=45)
    assert rule == corq.Breaker(failures=1, window=60, reset=45)
    [view] = await admin.breakers()
    assert (view.rule, view.source, view.state.status) == (rule, "runtime", BreakerStatus.CLOSED)

    # When one job fails on a worker
    async with run_worker(app):
        with pytest.raises(corq.JobFailedError):
            await (await flaky.enqueue()).result(timeout=10)

    # Then that one failure opened the circuit, for 45 s
    [view] = await admin.breakers()
    assert (view.state.status, view.state.failures) == (BreakerStatus.OPEN, 1)
    assert view.state.until_ms == app.clock.now_ms() + 45_000
    # and clearing gives the code's thresholds back
    assert await admin.set_breaker(flaky.name, clear=["failures", "reset"]) == corq.Breaker(
        failures=5
    )
    [view] = await admin.breakers()
    assert view.source == "code"
    history = await admin.config_history()
    assert {c.field for c in history} == {"breaker_failures", "breaker_reset"}
    assert {c.who for c in history} == {"ops"}


async def test_the_configuration_can_give_a_task_a_breaker(fake_app: FakeApp) -> None:
    app, _ = fake_app

    @app.task(retries=0)
    async def fragile() -> None:
        raise ConnectionError("down")

    await app.admin().set_breaker(fragile.name, failures=1)
    async with run_worker(app):
        with pytest.raises(corq.JobFailedError):
            await (await fragile.enqueue()).result(timeout=10)
        later = await fragile.enqueue()
        await until(partial(_scheduled, later), what="the next job snoozed")

    [view] = await app.admin().breakers()
    assert (view.task, view.source, view.state.status) == (
        fragile.name,
        "runtime",
        BreakerStatus.OPEN,
    )
    assert (await later.info()).error == "breaker open"


async def _scheduled(job: corq.JobHandle[None]) -> bool:
    return await job.status() == corq.JobStatus.SCHEDULED


async def test_reset_closes_a_circuit_by_hand(app: corq.App) -> None:
    @app.task(retries=0, breaker=corq.Breaker(failures=1))
    async def down() -> None:
        raise ConnectionError("down")

    admin = app.admin()
    async with run_worker(app):
        with pytest.raises(corq.JobFailedError):
            await (await down.enqueue()).result(timeout=10)
    assert (await admin.breakers())[0].state.status is BreakerStatus.OPEN

    assert await admin.reset_breaker(down.name) is True

    [view] = await admin.breakers()
    assert (view.state.status, view.state.failures, view.state.opened) == (
        BreakerStatus.CLOSED,
        0,
        0,
    )
    assert await admin.reset_breaker(down.name) is False


@pytest.mark.parametrize(
    ("task", "changes", "error"),
    [
        ("nope", {"failures": 2}, UnknownTaskError),
        ("flaky", {"failures": 0}, corq.ConfigError),
        ("flaky", {"window": -1.0}, corq.ConfigError),
        ("flaky", {"reset": 1e9}, corq.ConfigError),
    ],
)
async def test_bad_thresholds_are_refused_and_write_nothing(
    app: corq.App, task: str, changes: dict[str, float], error: type[Exception]
) -> None:
    @app.task(breaker=corq.Breaker())
    async def flaky() -> None: ...

    admin = app.admin()
    with pytest.raises(error):
        await admin.set_breaker(task, **changes)  # type: ignore[arg-type]  # the values vary
    assert (await admin.config()).version == 0


# -- the CLI -------------------------------------------------------------------------------


class Ops:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    def corq(self, *args: str) -> Result:
        result = CliRunner().invoke(
            cli, [*args, "--url", self.url], env={"CORQ_PREFIX": self.prefix}
        )
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    def ok(self, *args: str) -> str:
        result = self.corq(*args)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def ops(broker_url: str, prefix: str) -> Iterator[Ops]:
    breaker_app.app._clients.clear()
    breaker_app.app.configure(url=broker_url, prefix=prefix)
    yield Ops(broker_url, prefix)
    asyncio.run(breaker_app.app.aclose())
    breaker_app.app._clients.clear()


def _open_the_circuit() -> None:
    async def go() -> None:
        app = breaker_app.app
        try:
            async with run_worker(app):
                for _ in range(2):
                    with pytest.raises(corq.JobFailedError):
                        await (await breaker_app.fetch.enqueue("https://x")).result(timeout=10)
        finally:
            await app.aclose()
            app._clients.clear()

    asyncio.run(go())


def test_the_cli_shows_changes_and_resets_a_circuit(ops: Ops) -> None:
    # A closed circuit, shown with its code thresholds in `corq tasks`
    rows = [json.loads(line) for line in ops.ok("tasks", APP, "--json").splitlines()]
    by_task = {row["task"]: row for row in rows}
    assert by_task["fetch"]["breaker"] == "closed, 0 of 2 in 60s, reset 30s"
    assert by_task["fetch"]["circuit"]["status"] == "closed"
    assert by_task["plain"]["breaker"] == "-"

    # Two failures open it
    _open_the_circuit()
    assert "open until" in _row(ops.ok("tasks", APP), "fetch")

    # Thresholds changed from the CLI are runtime ones
    ops.ok("task", "breaker", "fetch", "--failures", "4", "--app", APP)
    assert "of 4 in 60s, reset 30s (runtime)" in _breaker(ops)

    # Reset closes it; a second reset says there is nothing to reset
    assert "fetch: circuit closed" in ops.ok("task", "reset-breaker", "fetch")
    assert _breaker(ops).startswith("closed, 0 of 4")
    again = ops.corq("task", "reset-breaker", "fetch")
    assert again.exit_code == 1
    assert "has no circuit to reset" in again.output


def _row(table: str, task: str) -> str:
    return next(line for line in table.splitlines() if f" {task} " in line)


def _breaker(ops: Ops) -> str:
    rows = [json.loads(line) for line in ops.ok("tasks", APP, "--json").splitlines()]
    return str(next(row["breaker"] for row in rows if row["task"] == "fetch"))


def test_the_cli_refuses_bad_thresholds_in_one_line(ops: Ops) -> None:
    result = ops.corq("task", "breaker", "fetch", "--failures", "0", "--app", APP)
    assert result.exit_code != 0
    assert "failures must be at least 1" in result.output
    unknown = ops.corq("task", "reset-breaker", "")
    assert unknown.exit_code != 0
