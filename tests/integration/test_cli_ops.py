"""`corq queue | task | tasks | config` on both brokers, as an operator uses them: each
change is applied, shown and recorded as made from the CLI; every bad input is one line
and writes nothing.

The commands run through click's CliRunner against the test's broker; the app they name
(tests/integration/ops_app.py) is pointed at it first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from corq.cli import cli
from tests.integration import ops_app

APP = "tests.integration.ops_app:app"


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

    def version(self) -> int:
        return int(json.loads(self.ok("config", "show", "--json"))["version"])


@pytest.fixture
def ops(broker_url: str, prefix: str) -> Iterator[Ops]:
    ops_app.app._clients.clear()
    ops_app.app.configure(url=broker_url, prefix=prefix)
    yield Ops(broker_url, prefix)
    asyncio.run(ops_app.app.aclose())
    ops_app.app._clients.clear()


def test_pause_shows_in_queues_and_resume_clears_it(ops: Ops) -> None:
    asyncio.run(_enqueue_one())

    assert "queue default paused" in ops.ok("queue", "pause", "default")
    assert "paused" in _row(ops.ok("queues"), "default")
    ops.ok("queue", "resume", "default")
    assert "paused" not in _row(ops.ok("queues"), "default")


def _row(table: str, queue: str) -> str:
    return next(line for line in table.splitlines() if f" {queue} " in line)


async def _enqueue_one() -> None:
    try:
        await ops_app.send.enqueue("acme")
    finally:
        await ops_app.app.aclose()
        ops_app.app._clients.clear()


def test_limits_strikes_and_weights_show_in_tasks_and_config(ops: Ops) -> None:
    assert "concurrency=2" in ops.ok("task", "limit", "send", "--concurrency", "2", "--app", APP)
    assert "struck: send[tenant='acme']" in ops.ok(
        "task", "strike", "send", "--where", "tenant=acme", "--app", APP
    )
    ops.ok("queue", "weight", "billing", "3")

    rows = [json.loads(line) for line in ops.ok("tasks", APP, "--json").splitlines()]
    by_task = {row["task"]: row for row in rows}
    assert by_task["send"]["limits"]["concurrency"] == {"value": "2", "source": "runtime"}
    assert by_task["send"]["limits"]["rate_limit"] == {"value": "100/s", "source": "code"}
    assert by_task["send"]["strikes"] == ["send[tenant='acme']"]
    assert by_task["charge"]["queue"] == "billing"
    assert by_task["charge"]["limits"]["concurrency"]["source"] == "-"
    table = ops.ok("tasks", APP)
    assert "2 (runtime)" in table
    assert "100/s (code)" in table
    shown = ops.ok("config", "show")
    assert "queue billing: weight 3" in shown
    assert "task send: concurrency=2" in shown
    assert "strike send[tenant='acme']" in shown


def test_restore_lifts_a_strike_and_a_missing_one_is_an_error(ops: Ops) -> None:
    ops.ok(
        "task", "strike", "send", "--where", "tenant=acme", "--where", "subject=hi", "--app", APP
    )

    assert "restored" in ops.ok("task", "restore", "send", "--where", "subject=hi",
                                "--where", "tenant=acme")  # fmt: skip
    again = ops.corq("task", "restore", "send", "--where", "tenant=acme")
    assert again.exit_code == 1
    assert "no strike on 'send'" in again.output


def test_history_says_who_changed_what(ops: Ops) -> None:
    ops.ok("queue", "pause", "default")
    ops.ok("task", "limit", "send", "--rate", "5/s", "--app", APP)
    ops.ok("task", "limit", "send", "--clear", "rate-limit", "--app", APP)

    changes = [json.loads(line) for line in ops.ok("config", "history", "--json").splitlines()]

    assert [(c["name"], c["field"], c["old"], c["new"]) for c in changes] == [
        ("send", "rate_limit", '"5/s"', None),
        ("send", "rate_limit", None, '"5/s"'),
        ("default", "paused", None, "true"),
    ]
    assert all(c["who"].startswith("cli:") for c in changes)
    assert "rate_limit" in ops.ok("config", "history", "--limit", "1")
    only = ops.ok("config", "history", "--scope", "queue", "--name", "default", "--json")
    assert [json.loads(line)["field"] for line in only.splitlines()] == ["paused"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task", "limit", "nope", "--concurrency", "2", "--app", APP], "no task named 'nope'"),
        (["task", "limit", "send", "--concurrency", "0", "--app", APP], "at least 1"),
        (["task", "limit", "send", "--rate", "fast", "--app", APP], "a rate limit is written"),
        (["task", "limit", "send", "--key-concurrency", "1", "--app", APP], "no key= function"),
        (["task", "limit", "send", "--concurrency", "2"], "give --app"),
        (["task", "strike", "send", "--where", "customer=x", "--app", APP], "no parameter"),
        (["task", "strike", "send", "--where", "tenant", "--app", APP], "name=value"),
        (["queue", "weight", "default", "0"], "from 1 to 1000"),
        (["queue", "weight", "default", "lots"], "1-1000 or 'default'"),
        (["queue", "pause", "bad queue!"], "invalid queue name"),
        (["task", "breaker", "send", "--failures", "0", "--app", APP], "at least 1"),
        (["task", "breaker", "send", "--clear", "speed", "--app", APP], "no breaker threshold"),
    ],
    ids=[
        "unknown-task",
        "limit-0",
        "bad-rate",
        "key-limit",
        "no-app",
        "unknown-param",
        "bad-where",
        "weight-0",
        "weight-text",
        "bad-queue",
        "breaker-0",
        "breaker-field",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(ops: Ops, args: list[str], message: str) -> None:
    result = ops.corq(*args)

    assert result.exit_code != 0
    assert message in result.output
    assert ops.version() == 0


def test_breaker_thresholds_are_set_and_recorded(ops: Ops) -> None:
    out = ops.ok("task", "breaker", "send", "--failures", "3", "--reset", "10", "--app", APP)

    assert "failures=3 window=60s reset=10s" in out
    shown = ops.ok("config", "show")
    assert "breaker_failures=3" in shown
    assert "breaker_reset=10" in shown
