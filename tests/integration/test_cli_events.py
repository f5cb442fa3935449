"""`corq events` and the attempt timeline of `corq job ID`, on both brokers, as an operator
reads them after jobs ran (a worker in the test), and `corq events --follow` as a process
that prints events as they come until ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest
from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.testing import run_worker


class Broker:
    """The test's broker: an app with a task that fails twice, then succeeds."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.app = corq.App(url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=2)

        @self.app.task(retries=2, backoff=0.01, jitter=False)
        async def flaky(x: int) -> int:
            attempt = corq.current_job().attempt
            if attempt < 3:
                raise ValueError(f"try {attempt}")
            return x

        self.flaky = flaky

    def run_flaky(self) -> str:
        """Enqueue one flaky job and run it to success; its id."""

        async def go() -> str:
            try:
                async with run_worker(self.app):
                    handle = await self.flaky.enqueue(7)
                    assert await handle.result(timeout=10) == 7
                return handle.id
            finally:
                await self.app.aclose()

        return asyncio.run(go())

    def corq(self, *args: str) -> Result:
        """Run `corq <args>`: it succeeds (a job's own stored traceback may be printed)."""
        result = CliRunner().invoke(
            cli, [*args, "--url", self.url], env={"CORQ_PREFIX": self.prefix}
        )
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def broker(broker_url: str, prefix: str) -> Broker:
    return Broker(broker_url, prefix)


def test_corq_events_prints_each_move_of_a_job_that_ran(broker: Broker) -> None:
    job_id = broker.run_flaky()

    out = broker.corq("events", "--job", job_id).stdout
    kinds = [line.split()[2] for line in out.splitlines()]

    assert kinds == [
        "enqueued",
        *["started", "failed", "retried"] * 2,
        "started",
        "succeeded",
    ]
    assert all(job_id in line and "flaky" in line for line in out.splitlines())
    assert "ValueError: try 1" in out


def test_corq_events_json_gives_one_object_a_line_and_a_cursor_to_go_on(broker: Broker) -> None:
    job_id = broker.run_flaky()

    result = broker.corq("events", "--job", job_id, "--json", "--limit", "2")
    first = [json.loads(line) for line in result.stdout.splitlines()]
    cursor = result.stderr.split("# cursor: ")[1].strip()
    rest = broker.corq("events", "--job", job_id, "--json", "--since-cursor", cursor).stdout

    assert [e["kind"] for e in first] == ["enqueued", "started"]
    assert first[0]["job_id"] == job_id
    assert json.loads(rest.splitlines()[0])["kind"] == "failed"


def test_corq_job_shows_the_attempt_timeline_after_retries(broker: Broker) -> None:
    job_id = broker.run_flaky()

    out = broker.corq("job", job_id).stdout
    lines = [line.rstrip() for line in out.splitlines()]
    timeline = lines[lines.index("attempts") + 2 :]
    data: dict[str, Any] = json.loads(broker.corq("job", job_id, "--json").stdout)

    assert [row.split()[0] for row in timeline] == ["1", "2", "3"]
    assert ["failed" in timeline[0], "failed" in timeline[1], "succeeded" in timeline[2]] == [
        True
    ] * 3
    assert "ValueError: try 2" in timeline[1]
    assert [a["outcome"] for a in data["attempts"]] == ["failed", "failed", "succeeded"]
    assert all(a["ended_at_ms"] >= a["started_at_ms"] for a in data["attempts"])


@pytest.mark.slow
async def test_corq_events_follow_prints_events_as_they_come_until_ctrl_c(
    broker: Broker,
) -> None:
    cursor = await broker.app.admin().events_cursor()
    env = dict(os.environ, CORQ_PREFIX=broker.prefix, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "corq",
        "events",
        "--follow",
        "--since-cursor",
        cursor,
        "--url",
        broker.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with run_worker(broker.app):
            handle = await broker.flaky.enqueue(1)
            await handle.result(timeout=10)
        assert proc.stdout is not None
        seen: list[str] = []
        while "succeeded" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            assert line, "corq events --follow ended early"
            seen.append(line.decode().split()[2])
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
        await broker.app.aclose()

    assert (seen[0], seen[-1]) == ("enqueued", "succeeded")
    assert seen.count("started") == 3
    assert proc.returncode == 0
    assert b"Traceback" not in err
