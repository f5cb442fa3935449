"""`corq dead list | show | retry | purge` on both brokers, as an operator types them: the
filters, edited arguments checked before anything is written, confirmation of --all, and
one line with a non-zero exit for every bad input."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.testing import drain
from tests.integration.dead_cli_app import declare

T = TypeVar("T")
APP = "tests.integration.dead_cli_app:app"


class Broker:
    """The test's broker: set-up coroutines on an app of its own, and the CLI on it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    def setup(self, make: Callable[[corq.App], Awaitable[T]]) -> T:
        async def go() -> T:
            app = corq.App(self.url, prefix=self.prefix)
            declare(app)
            try:
                return await make(app)
            finally:
                await app.aclose()

        return asyncio.run(go())

    def corq(self, *args: str, answer: str | None = None) -> Result:
        # The --app module reads CORQ_PREFIX when imported: import it afresh for this test.
        sys.modules.pop("tests.integration.dead_cli_app", None)
        result = CliRunner().invoke(
            cli, ["dead", *args, "--url", self.url], env={"CORQ_PREFIX": self.prefix}, input=answer
        )
        assert "Traceback" not in result.stderr  # (a dead job's own traceback is output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    def ok(self, *args: str, answer: str | None = None) -> str:
        result = self.corq(*args, answer=answer)
        assert result.exit_code == 0, result.output
        return result.stdout

    def refused(self, code: int, *args: str) -> str:
        """The one line a bad input prints, after checking its exit code."""
        result = self.corq(*args)
        assert result.exit_code == code, result.output
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: "), result.stderr
        return lines[-1]

    def dead_ids(self, task: str | None = None) -> list[str]:
        async def go(app: corq.App) -> list[str]:
            return [j.id for j in (await app.admin().dead(task=task, limit=1000)).jobs]

        return self.setup(go)


@pytest.fixture
def broker(broker_url: str, prefix: str) -> Broker:
    return Broker(broker_url, prefix)


def make_dead(broker: Broker) -> dict[str, str]:
    """Three dead mail.send jobs and two dead img.resize ones; their ids by name."""

    async def go(app: corq.App) -> dict[str, str]:
        send, resize = app.registry["mail.send"], app.registry["img.resize"]
        ids = {}
        for name in ("a", "b", "c"):
            ids[name] = (await send.enqueue(f"{name}@bad")).id
        for name in ("w1", "w2"):
            ids[name] = (await resize.enqueue(1)).id
        await drain(app)
        return ids

    return broker.setup(go)


def test_list_filters_by_task_error_and_time(broker: Broker) -> None:
    ids = make_dead(broker)

    out = broker.ok("list", "--task", "mail.send")
    assert all(ids[n] in out for n in "abc")
    assert ids["w1"] not in out
    out = broker.ok("list", "--error", "KEYERROR")
    assert ids["w1"] in out
    assert ids["w2"] in out
    assert ids["a"] not in out
    assert ids["a"] in broker.ok("list", "--since", "1h")
    assert "no dead jobs of queue default (died before" in broker.ok(
        "list", "--until", "2000-01-01T00:00"
    )
    assert ids["b"] in broker.ok("list", "--since", "2000-01-01T00:00+01:00", "--error", "b@bad")


def test_list_as_json_pages_through_a_cursor(broker: Broker) -> None:
    ids = make_dead(broker)
    seen: list[str] = []
    args = ["list", "--limit", "2", "--json"]
    while True:
        page = json.loads(broker.ok(*args))
        seen += [job["id"] for job in page["jobs"]]
        assert all(job["status"] == "dead" for job in page["jobs"])
        if page["cursor"] is None:
            break
        args = ["list", "--limit", "2", "--json", "--cursor", page["cursor"]]
    assert sorted(seen) == sorted(ids.values())


def test_show_prints_one_dead_job(broker: Broker) -> None:
    ids = make_dead(broker)

    out = broker.ok("show", ids["a"])

    assert "mail.send" in out
    assert "ValueError: bad address a@bad" in out
    assert '["a@bad"]' in out
    assert json.loads(broker.ok("show", ids["a"], "--json"))["args"] == {
        "args": ["a@bad"],
        "kwargs": {},
    }
    assert "no job 'nobody'" in broker.refused(1, "show", "nobody")


def test_retry_with_edited_arguments_runs_them(broker: Broker) -> None:
    ids = make_dead(broker)

    out = broker.ok(
        "retry", ids["a"], "--args", '["a@good"]', "--kwargs", '{"times": 2}', "--app", APP
    )

    assert "queued again with edited arguments" in out

    async def run(app: corq.App) -> object:
        await drain(app)
        return await app.client().wait_result(ids["a"], "default", timeout=5)

    assert broker.setup(run) == "a@good x2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "[1, 2, 3]"], "task 'mail.send'"),
        (["--args", '["a@good", "many"]'], "times"),
        (["--kwargs", '{"nope": 1}'], "nope"),
    ],
)
def test_a_bad_edit_is_one_line_and_writes_nothing(
    broker: Broker, args: list[str], message: str
) -> None:
    ids = make_dead(broker)

    line = broker.refused(1, "retry", ids["a"], *args, "--app", APP)

    assert message in line
    assert ids["a"] in broker.dead_ids()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retry", "x", "--args", "[1"], "--args is not valid JSON"),
        (["retry", "x", "--args", "{}"], "--args must be a JSON array"),
        (["retry", "x", "y", "--args", "[]"], "exactly one id"),
        (["retry", "x", "--task", "t"], "go with --all"),
        (["retry"], "give job ids or --all"),
        (["purge", "x", "--all"], "give job ids or --all"),
        (["list", "--since", "yesterday"], "--since 'yesterday' is neither a time"),
        (["list", "--task", "t", "--offset", "3"], "--offset pages an unfiltered list"),
    ],
)
def test_bad_usage_is_one_line_with_exit_code_2(
    broker: Broker, args: list[str], message: str
) -> None:
    assert message in broker.refused(2, *args)


def test_an_edit_without_the_app_says_the_task_is_unknown(broker: Broker) -> None:
    ids = make_dead(broker)

    line = broker.refused(1, "retry", ids["a"], "--args", '["a@good"]')

    assert "task 'mail.send' is not registered" in line
    assert ids["a"] in broker.dead_ids()


def test_retry_all_matching_asks_first(broker: Broker) -> None:
    ids = make_dead(broker)

    # Declined: nothing moves
    result = broker.corq("retry", "--all", "--task", "img.resize", answer="n\n")
    assert result.exit_code == 1
    assert "Queue again every one of the dead jobs of queue default (task img.resize)?" in (
        result.stderr
    )
    assert sorted(broker.dead_ids("img.resize")) == sorted([ids["w1"], ids["w2"]])

    # Confirmed, or --yes: only the matching ones move
    out = broker.ok("retry", "--all", "--task", "img.resize", answer="y\n")
    assert "2 job(s) queued again on default" in out
    assert broker.dead_ids("img.resize") == []
    assert "0 job(s)" in broker.ok("retry", "--all", "--error", "nothing like it", "--yes")
    assert len(broker.dead_ids()) == 3


def test_retry_by_id_as_before(broker: Broker) -> None:
    ids = make_dead(broker)

    assert "2 job(s) queued again on default" in broker.ok("retry", ids["a"], ids["b"], "nobody")

    assert sorted(broker.dead_ids()) == sorted([ids["c"], ids["w1"], ids["w2"]])


def test_purge_by_id_and_by_filter(broker: Broker) -> None:
    ids = make_dead(broker)

    assert "1 dead job(s) purged" in broker.ok("purge", ids["a"])
    assert "2 dead job(s) purged" in broker.ok("purge", "--all", "--error", "@BAD", "--yes")
    assert sorted(broker.dead_ids()) == sorted([ids["w1"], ids["w2"]])
    assert "2 dead job(s) purged" in broker.ok("purge", "--all", "--yes")
    assert broker.dead_ids() == []


def test_all_without_an_answer_or_yes_does_nothing(broker: Broker) -> None:
    make_dead(broker)

    line = broker.refused(1, "purge", "--all")

    assert line == "Error: nothing done: no answer (add --yes to skip the question)"
    assert len(broker.dead_ids()) == 5
