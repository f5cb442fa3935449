"""`corq workers`, `corq inspect --running` and `corq top --once` on both brokers, with a real
worker running a job.

The worker runs in a thread of its own (its own event loop); the CLI runs through click's
CliRunner in the test's thread, on an app (``--app``) that shares the worker's FakeClock:
facts are published when the test moves the clock, and a job's run time is what the test
made it, so "stuck" is decided without waiting for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.testing import run_worker
from tests.integration import workers_cli_app
from tests.waiting import until

APP_PATH = "tests.integration.workers_cli_app:app"
#: Long enough that moving the clock past 80% of the job's timeout loses no lease.
SETTINGS: dict[str, Any] = {"lease_s": 60, "max_stall_s": 120, "heartbeat_s": 0.2}


class WorkerThread:
    """A worker on a thread of its own, running one job of `hold` until released."""

    def __init__(self, url: str, prefix: str, clock: corq.FakeClock) -> None:
        self.app = corq.App(url, prefix=prefix, clock=clock, **SETTINGS)
        self.release = threading.Event()
        self.started = threading.Event()
        self.stop = threading.Event()
        self.worker_id = ""
        self.job_id = ""
        self.failure: BaseException | None = None
        release = self.release

        @self.app.task(timeout=30)
        async def hold() -> str:
            while not release.is_set():  # noqa: ASYNC110  # another thread sets it
                await asyncio.sleep(0.01)
            return "done"

        self.hold = hold
        self.thread = threading.Thread(target=self._run, name="test-worker")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.failure = exc
            self.started.set()

    async def _main(self) -> None:
        try:
            async with run_worker(self.app, queues={"default": 3}, concurrency=4) as worker:
                self.worker_id = worker.worker_id
                self.job_id = (await self.hold.enqueue()).id
                await until(lambda: worker.running_count == 1, what="the job to start")
                self.started.set()
                await asyncio.to_thread(self.stop.wait)
                self.release.set()
        finally:
            await self.app.aclose()

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        assert self.started.wait(20), "the worker did not start"
        if self.failure is not None:
            raise self.failure
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(20)
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def clock() -> corq.FakeClock:
    return corq.FakeClock(start_ms=time.time_ns() // 1_000_000)


@pytest.fixture
def running(broker_url: str, prefix: str, clock: corq.FakeClock) -> Iterator[WorkerThread]:
    workers_cli_app.app = corq.App(broker_url, prefix=prefix, clock=clock, **SETTINGS)
    with WorkerThread(broker_url, prefix, clock) as worker:

        def heartbeat_lists_the_job() -> bool:
            clock.advance(SETTINGS["heartbeat_s"])  # a heartbeat: facts with the running job
            return _in_flight(worker) == 1

        wait_sync(heartbeat_lists_the_job, "facts listing the running job")
        yield worker
    workers_cli_app.app = None


def corq_cli(*args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "--app", APP_PATH])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def ok(*args: str) -> str:
    result = corq_cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def wait_sync(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll a state (through the CLI) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _in_flight(worker: WorkerThread) -> int:
    infos = json.loads(ok("workers", "--json"))
    return sum(len(i["running"]) for i in infos if i["worker_id"] == worker.worker_id)


def test_corq_workers_shows_the_worker_and_its_load(running: WorkerThread) -> None:
    out = ok("workers")

    (row,) = [line for line in out.splitlines() if running.worker_id in line]
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert cells[4:7] == ["default=3", "4", "1"]  # queues=weights, concurrency, in flight
    assert cells[-1] == "alive"
    assert cells[-2].endswith("ms ago")  # the last heartbeat, by the shared clock


def test_corq_workers_json_has_every_fact(running: WorkerThread) -> None:
    (info,) = json.loads(ok("workers", "--json"))

    assert info["worker_id"] == running.worker_id
    assert info["queues"] == {"default": 3}
    assert info["concurrency"] == 4
    assert info["state"] == "alive"
    assert info["rss_bytes"] > 0
    (job,) = info["running"]
    assert (job["job_id"], job["task"], job["timeout_ms"]) == (running.job_id, "hold", 30_000)


def test_inspect_running_shows_the_job_and_flags_it_near_its_timeout(
    running: WorkerThread, clock: corq.FakeClock
) -> None:
    # Given the job has run 5 s: listed, not stuck
    (listed,) = json.loads(ok("inspect", "--running", "--json"))
    started_at_ms = listed["job"]["started_at_ms"]
    clock.advance((started_at_ms + 5_000 - clock.now_ms()) / 1000)
    out = ok("inspect", "--running")
    (row,) = [line for line in out.splitlines() if running.job_id in line]
    assert "hold" in row
    assert "5.0s" in row
    assert "stuck" not in out.replace("┃ stuck", "")

    # When it has run past 80% of its 30 s timeout
    clock.advance(20)

    # Then it is flagged with why, and the command that shows its stack is printed
    out = ok("inspect", "--running")
    assert "ran 25.0s of its 30.0s timeout" in " ".join(out.split())
    assert f"corq inspect {running.worker_id} --stacks" in out
    (view,) = json.loads(ok("inspect", running.worker_id, "--running", "--json"))
    assert view["run_ms"] == 25_000
    assert view["stuck"].startswith("ran 25.0s of its 30.0s timeout")
    assert view["stacks"] == f"corq inspect {running.worker_id} --stacks"


def test_inspect_running_of_an_unknown_worker_is_one_line(running: WorkerThread) -> None:
    result = corq_cli("inspect", "nobody", "--running")

    assert result.exit_code == 1
    assert result.output.strip() == "Error: no worker 'nobody' is registered (see corq workers)"


def test_inspect_running_of_a_worker_that_runs_nothing_says_so(
    running: WorkerThread, clock: corq.FakeClock
) -> None:
    # Given the job has ended and a heartbeat told so
    running.release.set()

    def nothing_runs() -> bool:
        clock.advance(SETTINGS["heartbeat_s"])
        return _in_flight(running) == 0

    wait_sync(nothing_runs, "facts without the job")

    assert ok("inspect", running.worker_id).strip() == f"no running jobs on {running.worker_id}"


def test_top_once_prints_queues_workers_and_running_jobs(running: WorkerThread) -> None:
    out = ok("top", "--once")

    assert out.startswith("corq top")
    assert "1 worker(s), 1 running" in out
    (queue_row,) = [line for line in out.splitlines() if line.startswith("│ default")]
    assert [c.strip() for c in queue_row.strip("│ ").split("│")][:5] == [
        "default",
        "0",
        "0",
        "0",
        "1",
    ]
    (worker_row,) = [line for line in out.splitlines() if running.worker_id in line and "%" in line]
    assert "1/4 25%" in worker_row
    assert "alive" in worker_row
    assert any(running.job_id in line and "hold" in line for line in out.splitlines())


def test_top_once_shows_an_unreachable_broker_and_fails() -> None:
    workers_cli_app.app = corq.App("redis://127.0.0.1:1/0", socket_timeout_s=0.5)
    try:
        result = corq_cli("top", "--once")
    finally:
        workers_cli_app.app = None

    assert result.exit_code == 1
    assert "broker unreachable" in result.stdout


def test_inspect_stacks_shows_the_running_jobs_coroutine_without_stopping_it(
    running: WorkerThread,
) -> None:
    out = ok("inspect", running.worker_id, "--stacks")

    # The job's asyncio task is named with the job it runs, and its frames reach the body
    lines = out.splitlines()
    (at,) = [i for i, line in enumerate(lines) if f"running job {running.job_id}" in line]
    frames = []
    for line in lines[at + 1 :]:
        if not line.startswith("    "):
            break
        frames.append(line.strip())
    assert any(frame.endswith("in hold") for frame in frames), frames
    assert any(line.startswith("thread ") for line in lines)
    # And the worker goes on running it
    assert _in_flight(running) == 1
    stacks = json.loads(ok("inspect", running.worker_id, "--stacks", "--json"))
    assert stacks["worker_id"] == running.worker_id


def test_inspect_stacks_of_a_worker_that_does_not_answer_is_one_line() -> None:
    workers_cli_app.app = corq.App("sqlite:///:memory:")
    try:
        result = corq_cli("inspect", "nobody", "--stacks", "--timeout", "0.2")
    finally:
        workers_cli_app.app = None

    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: worker 'nobody' did not answer within 0.2s "
        "(not running, not on this broker, or another id)"
    )
