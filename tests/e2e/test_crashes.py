"""Workers killed, stopped and cut off from Redis: no accepted job is lost."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

import corq
from tests.conftest import RedisServer, free_port
from tests.e2e.conftest import Cli, wait_for
from tests.e2e.sample_app import crash, gated, nap

pytestmark = pytest.mark.slow


async def _statuses(app: corq.App, handles: list[corq.JobHandle[Any]]) -> list[corq.Job]:
    jobs = await asyncio.gather(*(h.info() for h in handles))
    return list(jobs)


async def _all_succeeded(app: corq.App, handles: list[corq.JobHandle[Any]]) -> bool:
    return all(j.status == corq.JobStatus.SUCCEEDED for j in await _statuses(app, handles))


async def test_sigkilled_worker_jobs_complete_on_another_worker(
    cli: Cli, client_app: corq.App
) -> None:
    # Given 200 jobs in flight on worker A
    handles = await nap.enqueue_many([(3.0,) for _ in range(200)])
    a = cli.worker("--concurrency", "500")

    async def in_flight() -> bool:
        stats = await client_app.client().queue_stats(["default"])
        return stats[0].in_flight == 200

    await wait_for(in_flight, 15, "200 jobs in flight on worker A")
    # When A is killed with SIGKILL and worker B starts
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    cli.worker("--concurrency", "500")
    # Then all 200 complete, each on its second attempt, with the death counted
    await wait_for(lambda: _all_succeeded(client_app, handles), 30, "all 200 jobs to succeed")
    jobs = await _statuses(client_app, handles)
    assert {(j.attempt, j.deaths, j.failures) for j in jobs} == {(2, 1, 0)}


async def test_sigterm_loses_nothing(cli: Cli, client_app: corq.App, tmp_path: Path) -> None:
    # Given jobs that finish when the test opens their gate, and jobs that never finish,
    # all running on a worker with a 3 s grace period
    quick_gate, slow_gate = tmp_path / "quick", tmp_path / "slow"
    quick = await gated.enqueue_many([(str(quick_gate),) for _ in range(20)])
    slow = await gated.enqueue_many([(str(slow_gate),) for _ in range(20)])
    a = cli.worker("--concurrency", "100", "--grace", "3")

    async def running() -> bool:
        stats = await client_app.client().queue_stats(["default"])
        return stats[0].in_flight == 40

    await wait_for(running, 15, "40 jobs running")
    # When it gets SIGTERM, and the quick jobs may finish during the grace period
    a.send_signal(signal.SIGTERM)
    quick_gate.touch()
    assert await asyncio.to_thread(a.wait, 20) == 0
    # Then the quick ones finished and the slow ones went back to the queue, uncounted
    assert await _all_succeeded(client_app, quick)
    assert {j.status for j in await _statuses(client_app, slow)} == {corq.JobStatus.QUEUED}
    # and another worker completes them.
    slow_gate.touch()
    cli.worker("--concurrency", "100")
    await wait_for(lambda: _all_succeeded(client_app, slow), 20, "slow jobs to succeed")
    assert {(j.attempt, j.deaths) for j in await _statuses(client_app, slow)} == {(2, 0)}


async def test_poison_job_goes_dead_after_killing_three_workers(
    cli: Cli, client_app: corq.App
) -> None:
    # Given a job that kills whichever worker runs it, and a supervisor that restarts workers
    job = await crash.enqueue()
    healthy = await nap.enqueue(0.01)
    cli.worker("--processes", "2")

    async def dead() -> bool:
        return (await job.status()) == corq.JobStatus.DEAD

    # Then after three deaths it is parked as a poison job, with the evidence
    await wait_for(dead, 40, "the poison job to be dead")
    record = await job.info()
    assert record.deaths == 3
    assert record.error is not None
    assert "poison job: its worker died 3 times" in record.error
    assert await healthy.result(timeout=10) == 0.01


@pytest.mark.parametrize("e2e_url", ["redis"], indirect=True)
async def test_redis_restart_during_a_run_loses_nothing(
    cli: Cli, tmp_path: Path, prefix: str
) -> None:
    # Given a private Redis (AOF on) and a worker running a stream of jobs
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    cli.url = server.url
    app = corq.App(server.url, prefix=prefix)
    task = app.task(name="nap")(nap.fn)
    try:
        handles = await task.enqueue_many([(0.05,) for _ in range(300)])
        cli.worker("--concurrency", "10")
        await wait_for(lambda: _some_done(app, handles), 15, "some jobs done")
        # When Redis stops for a second and comes back
        server.stop()
        await asyncio.sleep(1.0)
        late = asyncio.create_task(task.enqueue(0.01))  # a producer during the outage waits
        await asyncio.sleep(0.5)
        server.start()
        # Then every job, including the one sent during the outage, completes
        handles.append(await asyncio.wait_for(late, 30))
        await wait_for(lambda: _all_succeeded(app, handles), 40, "all jobs to succeed")
        assert "broker unreachable" in cli.logs()
    finally:
        await app.aclose()
        cli.stop_all()
        server.stop()


async def _some_done(app: corq.App, handles: list[corq.JobHandle[Any]]) -> bool:
    return (await handles[20].status()) == corq.JobStatus.SUCCEEDED


def test_cli_enqueue_job_queues_and_dead(cli: Cli) -> None:
    # enqueue prints the id; job shows it; queues lists the queue
    out = cli.run("enqueue", "nap", "--args", "[0.01]")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    shown = cli.run("job", job_id)
    assert "queued" in shown.stdout
    assert "nap" in shown.stdout
    assert "default" in cli.run("queues").stdout
    # A worker in burst mode runs it and exits
    proc = cli.worker("--burst")
    assert proc.wait(30) == 0
    assert "succeeded" in cli.run("job", job_id).stdout
    # An unknown task ends in the dead letters, which can be listed, retried and purged
    ghost = cli.run("enqueue", "ghost").stdout.strip()
    assert cli.worker("--burst").wait(30) == 0
    listing = cli.run("dead", "list")
    assert ghost in listing.stdout
    assert "unknown task 'ghost'" in listing.stdout
    assert "1 job(s) queued again" in cli.run("dead", "retry", ghost).stdout
    assert cli.worker("--burst").wait(30) == 0
    assert "1 dead job(s) purged" in cli.run("dead", "purge", "--all", "--yes").stdout
    # Bad input gets a clear error, not a traceback
    bad = cli.run("enqueue", "nap", "--args", "{not json")
    assert bad.returncode != 0
    assert "--args is not valid JSON" in bad.stderr


def test_cli_help_lists_the_commands(cli: Cli) -> None:
    out = cli.run("--help")
    assert out.returncode == 0
    for command in ("worker", "enqueue", "job", "queues", "dead"):
        assert command in out.stdout


@pytest.mark.parametrize("e2e_url", ["sqlite"], indirect=True)
async def test_four_processes_share_one_sqlite_file(cli: Cli, client_app: corq.App) -> None:
    # Given four worker processes on one SQLite file (default lease: heavy write contention
    # on two cores must not look like dead workers), all registered and waiting
    proc = cli.worker(
        "--processes", "4", "--concurrency", "200",
        CORQ_LEASE_S="10", CORQ_HEARTBEAT_S="2", CORQ_RECLAIM_S="2",
    )  # fmt: skip

    async def four_workers() -> bool:
        return (await client_app.client().queue_stats(["default"]))[0].workers == 4

    await wait_for(four_workers, 30, "four registered workers")
    # When 20,000 jobs arrive
    handles: list[corq.JobHandle[Any]] = []
    for _ in range(4):
        handles += await nap.enqueue_many([(0,) for _ in range(5000)])
    await wait_for(lambda: _all_succeeded(client_app, handles), 120, "every job to succeed")
    # Then every job ran exactly once (one attempt each, nobody died), shared out
    jobs = await _statuses(client_app, handles)
    assert {(j.status, j.attempt, j.deaths) for j in jobs} == {(corq.JobStatus.SUCCEEDED, 1, 0)}
    assert len({j.worker_id for j in jobs}) >= 2, "the work was shared between processes"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0


async def _freeze_outside_a_write(process: subprocess.Popen[bytes], url: str) -> None:
    """SIGSTOP `process`; on SQLite only while this test holds the file's write lock.

    A process frozen inside a SQLite write transaction keeps the lock: every other writer
    waits until it resumes or dies (SQLite has no lock lease, see the failure cases in
    docs/design.md). Freezing it while the test holds the lock means it holds none, which
    is the stall this test is about; on Redis nothing is held between calls.
    """
    if not url.startswith("sqlite:///"):
        process.send_signal(signal.SIGSTOP)
        return

    def freeze() -> None:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            process.send_signal(signal.SIGSTOP)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    await asyncio.to_thread(freeze)


async def test_stalled_worker_is_fenced_off_and_recovers(cli: Cli, client_app: corq.App) -> None:
    # Given worker A running jobs (lease 1.5 s)
    handles = await nap.enqueue_many([(2.0,) for _ in range(10)])
    a = cli.worker("--concurrency", "100")

    async def a_holds_them() -> bool:
        return (await client_app.client().queue_stats(["default"]))[0].in_flight == 10

    await wait_for(a_holds_them, 15, "worker A to hold the jobs")
    # When A freezes (SIGSTOP) past its lease, and worker B takes the jobs and finishes them
    await _freeze_outside_a_write(a, cli.url)
    cli.worker("--concurrency", "100")
    await wait_for(lambda: _all_succeeded(client_app, handles), 30, "B to finish the jobs")
    finished_by = {j.worker_id for j in await _statuses(client_app, handles)}
    # and A wakes up again
    a.send_signal(signal.SIGCONT)

    # Then A learns it lost its jobs, and its late results are refused (fencing): the
    # records still name B's work
    def a_learned_it() -> bool:
        logs = cli.logs()  # whichever of its loops noticed first says so
        return any(
            text in logs for text in ("lease lost", "after losing the lease", "no longer holds it")
        )

    await wait_for(a_learned_it, 30, "A to learn it lost its lease")
    jobs = await _statuses(client_app, handles)
    assert {j.worker_id for j in jobs} == finished_by
    assert {(j.status, j.attempt, j.deaths) for j in jobs} == {(corq.JobStatus.SUCCEEDED, 2, 1)}
    # and A is alive and working again
    assert a.poll() is None
    more = await nap.enqueue_many([(0.01,) for _ in range(20)])
    await wait_for(lambda: _all_succeeded(client_app, more), 20, "new jobs to succeed")
