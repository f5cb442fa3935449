"""ProcessSlots with real spawned children: a crash is pinned on the job that caused it.

Spawning costs about 0.3 s a child, so most tests share one module-wide pool (its children
are reused); tests that kill children or need their own settings make their own.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pickle
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from corq.limits import MAX_DELAY_S
from corq.task import Task
from corq.worker.processes import (
    ChildCall,
    ChildOutcome,
    ChildOutcomeKind,
    ProcessSlots,
    importable,
)
from tests.integration import child_tasks as tasks

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
OK, ERROR, DIED = ChildOutcomeKind.OK, ChildOutcomeKind.ERROR, ChildOutcomeKind.DIED
TIMEOUT, UNAVAILABLE = ChildOutcomeKind.TIMEOUT, ChildOutcomeKind.UNAVAILABLE


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def slots() -> AsyncIterator[ProcessSlots]:
    pool = ProcessSlots(2, name="test-shared")
    yield pool
    await pool.close()


def call(task: Task[Any, Any], *args: Any, job_id: str = "job-1") -> ChildCall:
    context = (job_id, task.name, "default", 1, 1_700_000_000_000, None, None, None)
    return ChildCall.for_task(task, task.encode_payload(args, {}), context)


def result_of(outcome: ChildOutcome) -> Any:
    assert outcome.kind is OK, outcome
    assert outcome.result is not None
    return tasks.app.serializer.loads(outcome.result)


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: only its parent can reap it)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


class Announced:
    """Runs `announce_and_wait` and knows the child's pid once the child has written it."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.pid_path = tmp_path / f"{name}.pid"
        self.go_path = tmp_path / f"{name}.go"
        self.ready = asyncio.Event()

    def call(self) -> ChildCall:
        return call(tasks.announce_and_wait, str(self.pid_path), str(self.go_path))

    async def on_progress(self, value: float) -> bool:
        self.ready.set()
        return True

    async def pid(self) -> int:
        await self.ready.wait()
        return int(self.pid_path.read_text())

    def go(self) -> None:
        self.go_path.touch()


async def test_sync_and_async_tasks_return_their_encoded_results(slots: ProcessSlots) -> None:
    assert result_of(await slots.run(call(tasks.add, 2, 3), timeout_s=None)) == 5
    assert result_of(await slots.run(call(tasks.async_add, 2, 3), timeout_s=5)) == 5
    outcome = await slots.run(call(tasks.job_context, job_id="j-7"), timeout_s=None)
    assert result_of(outcome) == ["j-7", "job_context", "default", 1, 1_700_000_000_000]
    assert outcome.started
    assert slots.free_slots() == 2


async def test_large_payloads_and_results_cross_without_blocking(slots: ProcessSlots) -> None:
    # A payload beyond what is written from the loop goes from a thread; a big result is
    # read as the child writes it.
    assert result_of(await slots.run(call(tasks.measure, "y" * 3_000_000), timeout_s=None)) == (
        3_000_000
    )
    assert len(result_of(await slots.run(call(tasks.make_text, 5_000_000), timeout_s=None))) == (
        5_000_000
    )


async def test_a_crash_costs_only_the_job_that_caused_it(tmp_path: Path) -> None:
    pool = ProcessSlots(4, name="test-crash")
    try:
        # Given a healthy job running in one slot
        healthy_started = asyncio.Event()
        go = tmp_path / "healthy.go"
        healthy = asyncio.create_task(
            pool.run(
                call(tasks.wait_for_file, str(go)),
                timeout_s=None,
                on_start=healthy_started.set,
            )
        )
        await healthy_started.wait()
        # When the jobs in the other slots exit, segfault, and get SIGKILLed from outside
        victim = Announced(tmp_path, "victim")
        killed = asyncio.create_task(
            pool.run(victim.call(), timeout_s=None, on_progress=victim.on_progress)
        )
        exited, segfaulted = await asyncio.gather(
            pool.run(call(tasks.exit_now, 3), timeout_s=None),
            pool.run(call(tasks.segfault), timeout_s=None),
        )
        os.kill(await victim.pid(), signal.SIGKILL)
        # Then each of those three is DIED, with how its own process ended
        assert (exited.kind, exited.exit_code, exited.error) == (
            DIED,
            3,
            "its process exited with code 3",
        )
        assert (segfaulted.kind, segfaulted.exit_code) == (DIED, -signal.SIGSEGV)
        assert segfaulted.error == "its process was killed by SIGSEGV"
        sigkilled = await killed
        assert (sigkilled.kind, sigkilled.exit_code) == (DIED, -signal.SIGKILL)
        assert sigkilled.started
        assert exited.started
        # And the healthy job, still in flight, completes; a later job gets a fresh child
        assert not healthy.done()
        go.touch()
        assert result_of(await healthy) == "seen"
        assert result_of(await pool.run(call(tasks.add, 1, 1), timeout_s=None)) == 2
    finally:
        await pool.close()


async def test_a_timeout_kills_only_that_child_and_later_jobs_run(tmp_path: Path) -> None:
    pool = ProcessSlots(2, name="test-timeout")
    try:
        # Given a healthy job in one slot and a stuck one with a timeout in the other
        go = tmp_path / "healthy.go"
        healthy = asyncio.create_task(pool.run(call(tasks.wait_for_file, str(go)), timeout_s=30))
        stuck = Announced(tmp_path, "stuck")
        timed_out = await pool.run(stuck.call(), timeout_s=0.3, on_progress=stuck.on_progress)
        # Then the stuck one times out and its child is gone
        assert (timed_out.kind, timed_out.started) == (TIMEOUT, True)
        assert timed_out.error == "the attempt exceeded its 0.3s timeout; its process was killed"
        assert gone(await stuck.pid())
        # And the healthy one and a later job complete
        go.touch()
        assert result_of(await healthy) == "seen"
        assert result_of(await pool.run(call(tasks.add, 2, 2), timeout_s=0.3)) == 4
    finally:
        await pool.close()


async def test_the_timeout_counts_from_the_start_of_the_body(slots: ProcessSlots) -> None:
    # Given both slots busy for 0.4 s
    busy = [asyncio.create_task(slots.run(call(tasks.nap, 0.4), timeout_s=None)) for _ in "ab"]
    await asyncio.sleep(0)
    # When a quick job with a 0.2 s timeout waits for a slot longer than that
    quick = await slots.run(call(tasks.nap, 0.01), timeout_s=0.2)
    # Then it was not timed while it waited
    assert result_of(quick) == 0.01
    assert [result_of(await b) for b in busy] == [0.4, 0.4]


async def test_cancelling_the_caller_kills_the_child(tmp_path: Path) -> None:
    pool = ProcessSlots(1, name="test-cancel")
    try:
        # Given a job running in the only slot and another waiting for it
        running = Announced(tmp_path, "running")
        first = asyncio.create_task(
            pool.run(running.call(), timeout_s=None, on_progress=running.on_progress)
        )
        pid = await running.pid()
        waiting = asyncio.create_task(pool.run(call(tasks.add, 1, 2), timeout_s=None))
        await asyncio.sleep(0)
        # When both callers are cancelled
        waiting.cancel()
        first.cancel()
        # Then CancelledError reaches them, the running child is killed, the slot is free
        for task in (waiting, first):
            with pytest.raises(asyncio.CancelledError):
                await task
        await wait_until(lambda: gone(pid), "the cancelled job's child to exit")
        assert pool.free_slots() == 1
        assert result_of(await pool.run(call(tasks.add, 1, 2), timeout_s=None)) == 3
    finally:
        await pool.close()


async def test_waiting_calls_are_served_in_arrival_order() -> None:
    pool = ProcessSlots(1, name="test-fifo")
    try:
        order: list[int] = []
        calls = [
            pool.run(
                call(tasks.nap, 0.01), timeout_s=None, on_start=functools.partial(order.append, n)
            )
            for n in range(6)
        ]
        await asyncio.gather(*calls)
        assert order == list(range(6))
    finally:
        await pool.close()


@pytest.mark.parametrize("task", [tasks.report_progress, tasks.async_report_progress])
async def test_progress_in_a_child_reaches_on_progress(
    slots: ProcessSlots, task: Task[Any, Any]
) -> None:
    seen: list[float] = []
    last = asyncio.Event()

    async def on_progress(value: float) -> bool:
        seen.append(value)
        if value == 1.0:
            last.set()
        return True

    # When a task reports progress three times
    outcome = await slots.run(call(task, [0.25, 0.5, 1.0]), timeout_s=None, on_progress=on_progress)
    # Then set_progress returned True each time in the child, and the values reached the
    # parent in order (values that arrive while one is written collapse into the newest)
    assert result_of(outcome) == [True, True, True]
    await last.wait()
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert set(seen) <= {0.25, 0.5, 1.0}


async def test_a_failing_progress_report_does_not_fail_the_job(
    slots: ProcessSlots, caplog: pytest.LogCaptureFixture
) -> None:
    failed = asyncio.Event()

    async def on_progress(value: float) -> bool:
        failed.set()
        raise ConnectionError("broker blip")

    outcome = await slots.run(
        call(tasks.report_progress, [0.5]), timeout_s=None, on_progress=on_progress
    )
    assert result_of(outcome) == [True]
    await failed.wait()  # the relay logs in the same step as the report raised
    assert "progress report failed" in caplog.text


async def test_retry_requests_and_retry_on_reach_the_parent(slots: ProcessSlots) -> None:
    asked = await slots.run(call(tasks.ask_retry, 2.5), timeout_s=None)
    assert (asked.kind, asked.retry_requested, asked.retry_delay_s) == (ERROR, True, 2.5)
    assert (asked.error, asked.exception_type, asked.traceback) == (
        "Retry: again",
        "corq.errors.Retry",
        None,
    )
    assert asked.retry_on_matched
    backoff = await slots.run(call(tasks.ask_retry, None), timeout_s=None)
    assert (backoff.retry_requested, backoff.retry_delay_s) == (True, None)
    huge = await slots.run(call(tasks.ask_retry, 1e17), timeout_s=None)
    forever = await slots.run(call(tasks.ask_retry_forever), timeout_s=None)
    assert huge.retry_delay_s == forever.retry_delay_s == MAX_DELAY_S
    listed = await slots.run(call(tasks.raise_on_retry_list, "value"), timeout_s=None)
    unlisted = await slots.run(call(tasks.raise_on_retry_list, "key"), timeout_s=None)
    assert (listed.exception_type, listed.retry_on_matched) == ("ValueError", True)
    assert (unlisted.exception_type, unlisted.retry_on_matched) == ("KeyError", False)
    assert not listed.retry_requested
    plain = await slots.run(call(tasks.raise_value_error), timeout_s=None)
    assert (plain.error, plain.retry_on_matched) == ("ValueError: bad", True)
    assert plain.traceback is not None
    assert plain.traceback.startswith("Traceback (most recent call last):\n  File ")
    assert "child_tasks.py" in plain.traceback.splitlines()[1]
    assert plain.traceback.endswith("ValueError: bad\nsecond line\n")


@pytest.mark.parametrize(
    ("task", "exception_type", "error"),
    [
        (tasks.raise_system_exit, "SystemExit", "SystemExit: 4"),
        (tasks.raise_keyboard_interrupt, "KeyboardInterrupt", "KeyboardInterrupt"),
        (tasks.raise_stop_iteration, "StopIteration", "StopIteration"),
        (tasks.raise_cancelled, "asyncio.exceptions.CancelledError", "CancelledError"),
        (
            tasks.raise_unprintable,
            "tests.integration.child_tasks.UnprintableError",
            "UnprintableError: <unprintable UnprintableError: str() raised RuntimeError>",
        ),
        (
            tasks.return_unencodable,
            "corq.errors.SerializationError",
            "cannot encode the result: cannot encode Unencodable value: "
            "Encoding objects of type Unencodable is unsupported",
        ),
    ],
)
async def test_a_hostile_task_is_an_error_and_its_child_lives_on(
    slots: ProcessSlots, task: Task[Any, Any], exception_type: str, error: str
) -> None:
    before = result_of(await slots.run(call(tasks.getpid), timeout_s=None))
    outcome = await slots.run(call(task), timeout_s=None)
    assert (outcome.kind, outcome.exception_type, outcome.error) == (ERROR, exception_type, error)
    assert result_of(await slots.run(call(tasks.getpid), timeout_s=None)) == before


def _local_function() -> ChildCall:
    def inner() -> int:
        return 1

    return ChildCall(module=__name__, qualname=inner.__qualname__, payload=b"{}", context=CTX)


CTX = ("job-1", "t", "default", 1, 0, None, None, None)
EMPTY = b'{"args":[],"kwargs":{}}'


@pytest.mark.parametrize(
    ("child_call", "why"),
    [
        (ChildCall(module="no_such_module_x", qualname="f", payload=EMPTY, context=CTX),
         "cannot import the task in a child: ModuleNotFoundError: "
         "No module named 'no_such_module_x'"),
        (ChildCall(module=tasks.__name__, qualname="missing", payload=EMPTY, context=CTX),
         "cannot import the task in a child: AttributeError: module "
         "'tests.integration.child_tasks' has no attribute 'missing'"),
        (_local_function(),
         "cannot import the task in a child: LookupError: _local_function.<locals>.inner "
         "is not reachable from its module"),
        (ChildCall(module=tasks.__name__, qualname="add", payload=b"not json", context=CTX),
         "cannot decode the payload in a child: DecodeError: JSON is malformed: "
         "invalid character (byte 4)"),
    ],
)  # fmt: skip
async def test_what_a_child_cannot_run_is_unavailable(
    slots: ProcessSlots, child_call: ChildCall, why: str
) -> None:
    outcome = await slots.run(child_call, timeout_s=None)
    assert (outcome.kind, outcome.started, outcome.error) == (UNAVAILABLE, False, why)


async def test_importable_tells_what_a_child_can_find() -> None:
    def local() -> None:
        pass

    assert importable(tasks.add)
    assert importable(tasks.add.fn)
    assert importable(tasks.registered_later)  # a Task in its module wraps it
    assert importable(tasks.registered)
    assert importable(tasks.plain_function)  # a module-level function, no Task needed
    assert not importable(local)
    assert not importable(lambda: None)


async def test_the_payload_is_decoded_by_the_child_never_unpickled(
    slots: ProcessSlots, tmp_path: Path
) -> None:
    # Given a payload that would create a file if anything unpickled it
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Unpickles(str(marker)))
    child_call = ChildCall(module=tasks.__name__, qualname="add", payload=payload, context=CTX)
    # When a child is handed it
    outcome = await slots.run(child_call, timeout_s=None)
    # Then it is refused as undecodable and nothing ran
    assert outcome.kind is UNAVAILABLE
    assert outcome.error is not None
    assert outcome.error.startswith("cannot decode the payload in a child: DecodeError")
    assert not marker.exists()


class _Unpickles:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.path).touch, ())


async def test_sigint_and_sigterm_do_not_kill_a_child(slots: ProcessSlots, tmp_path: Path) -> None:
    # Given a job running in a child
    job = Announced(tmp_path, "signalled")
    running = asyncio.create_task(
        slots.run(job.call(), timeout_s=None, on_progress=job.on_progress)
    )
    pid = await job.pid()
    # When the child gets SIGINT and SIGTERM (a Ctrl-C, a SIGTERM to the process group)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    # Then the job runs on to its end
    job.go()
    assert result_of(await running) == "went"


async def test_idle_children_are_stopped() -> None:
    pool = ProcessSlots(1, name="test-idle", idle_s=0.2)
    try:
        pid = result_of(await pool.run(call(tasks.getpid), timeout_s=None))
        await wait_until(lambda: gone(pid), "the idle child to stop")
        assert result_of(await pool.run(call(tasks.getpid), timeout_s=None)) != pid
    finally:
        await pool.close()


async def test_an_idle_child_killed_from_outside_costs_no_job() -> None:
    pool = ProcessSlots(1, name="test-idle-kill")
    try:
        pid = result_of(await pool.run(call(tasks.getpid), timeout_s=None))
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: gone(pid), "the idle child to be reaped")
        assert result_of(await pool.run(call(tasks.getpid), timeout_s=None)) != pid
    finally:
        await pool.close()


async def test_close_kills_children_and_later_calls_are_unavailable(tmp_path: Path) -> None:
    pool = ProcessSlots(2, name="test-close")
    idle_pid = result_of(await pool.run(call(tasks.getpid), timeout_s=None))
    job = Announced(tmp_path, "closed")
    running = asyncio.create_task(pool.run(job.call(), timeout_s=None, on_progress=job.on_progress))
    running_pid = await job.pid()
    await pool.close()
    assert gone(idle_pid)
    assert gone(running_pid)
    cut = await running
    assert (cut.kind, cut.started, cut.error) == (
        UNAVAILABLE,
        True,
        "the process slots were closed",
    )
    later = await pool.run(call(tasks.add, 1, 2), timeout_s=None)
    assert (later.kind, later.started) == (UNAVAILABLE, False)
    await pool.close()


async def test_kill_all_stops_every_child_without_the_loop() -> None:
    pool = ProcessSlots(1, name="test-kill-all")
    pid = result_of(await pool.run(call(tasks.getpid), timeout_s=None))
    pool.kill_all()
    assert not psutil.pid_exists(pid)
    pool.kill_all()
    await pool.close()


PARENT = """
import asyncio, sys
from corq.worker.processes import ChildCall, ProcessSlots
from tests.integration import child_tasks as tasks

async def ready(value):
    print("ready", flush=True)
    return True

async def main(pid_path, go_path):
    payload = tasks.announce_and_wait.encode_payload([pid_path, go_path], {})
    context = ("j", "t", "q", 1, 0, None, None, None)
    child_call = ChildCall.for_task(tasks.announce_and_wait, payload, context)
    await ProcessSlots(1, name="orphan").run(child_call, timeout_s=None, on_progress=ready)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    # Given a parent process whose child is running a job
    pid_path = tmp_path / "child.pid"
    parent = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", PARENT, str(pid_path), str(tmp_path / "never")),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        assert await parent.stdout.readline() == b"ready\n"
        child_pid = int(pid_path.read_text())
        assert not gone(child_pid)
        # When the parent is SIGKILLed
        parent.kill()
        await parent.wait()
        # Then the child notices within moments and exits rather than run on as an orphan
        await wait_until(lambda: gone(child_pid), "the orphaned child to exit", timeout_s=5)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
