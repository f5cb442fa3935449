"""`corq job cancel ID` as an operator uses it, on both brokers; `corq job ID` still shows."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.cli.job_commands import EXIT_ENDED, EXIT_NOT_FOUND


def corq_cli(url: str, prefix: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "--url", url], env={"CORQ_PREFIX": prefix})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def enqueue_parked(url: str, prefix: str, job_id: str) -> None:
    async def go() -> None:
        app = corq.App(url, prefix=prefix)
        try:
            await app.client().enqueue("tasks.nobody_runs", job_id=job_id, queue="parked")
        finally:
            await app.aclose()

    asyncio.run(go())


def status_of(url: str, prefix: str, job_id: str) -> corq.JobStatus | None:
    async def go() -> corq.JobStatus | None:
        app = corq.App(url, prefix=prefix)
        try:
            job = await app.client().get_job(job_id)
            return None if job is None else job.status
        finally:
            await app.aclose()

    return asyncio.run(go())


def test_cancel_a_waiting_job_then_show_it(broker_url: str, prefix: str) -> None:
    enqueue_parked(broker_url, prefix, "j1")

    done = corq_cli(broker_url, prefix, "job", "cancel", "j1")

    assert done.exit_code == 0, done.output
    assert done.output == "cancelled job j1 in queue parked\n"
    assert status_of(broker_url, prefix, "j1") is corq.JobStatus.CANCELLED
    shown = corq_cli(broker_url, prefix, "job", "j1")
    assert shown.exit_code == 0, shown.output
    assert "cancelled" in shown.output


def test_cancel_twice_says_it_ended_with_its_own_exit_code(broker_url: str, prefix: str) -> None:
    enqueue_parked(broker_url, prefix, "j1")
    assert corq_cli(broker_url, prefix, "job", "cancel", "j1", "--queue", "parked").exit_code == 0

    again = corq_cli(broker_url, prefix, "job", "cancel", "j1")

    assert again.exit_code == EXIT_ENDED
    assert again.output == "Error: job 'j1' has ended already (cancelled)\n"


def test_cancel_of_an_unknown_job_is_one_line(broker_url: str, prefix: str) -> None:
    missing = corq_cli(broker_url, prefix, "job", "cancel", "nope")

    assert missing.exit_code == EXIT_NOT_FOUND
    assert missing.output == "Error: no job 'nope' (never sent, or expired)\n"
    wrong_queue = corq_cli(broker_url, prefix, "job", "cancel", "nope", "-q", "a b")
    assert wrong_queue.exit_code == 1
    assert len(wrong_queue.output.splitlines()) == 1
