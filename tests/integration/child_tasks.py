"""Tasks that spawned children import by module path (tests/integration/test_processes.py).

Several behave badly on purpose: they exit, segfault, or raise what a task should not.
Coordination with the test goes through files (a child cannot see the test's events): a
task writes its pid to a file and reports progress so the parent knows the file is there.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from pathlib import Path

import corq

app = corq.App()

#: Longest a task waits for a file the test creates (the test fails long before).
_FILE_WAIT_S = 30.0


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + _FILE_WAIT_S
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.005)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@app.task
def getpid() -> int:
    return os.getpid()


@app.task
def job_context() -> list[object]:
    job = corq.current_job()
    return [job.job_id, job.task, job.queue, job.attempt, job.enqueued_at_ms]


@app.task
def measure(text: str) -> int:
    return len(text)


@app.task
def make_text(size: int) -> str:
    return "x" * size


@app.task
def exit_now(code: int) -> None:
    os._exit(code)


@app.task
def segfault() -> None:
    ctypes.string_at(0)


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def announce_and_wait(pid_path: str, go_path: str) -> str:
    """Writes its pid, reports progress (the parent's cue that the pid is there), waits."""
    Path(pid_path).write_text(str(os.getpid()))
    corq.set_progress_sync(0.5)
    _wait_for_file(go_path)
    return "went"


@app.task
def wait_for_file(path: str) -> str:
    _wait_for_file(path)
    return "seen"


@app.task
def report_progress(values: list[float]) -> list[bool]:
    return [corq.set_progress_sync(v) for v in values]


@app.task
async def async_report_progress(values: list[float]) -> list[bool]:
    return [await corq.set_progress(v) for v in values]


@app.task
def ask_retry(delay: float | None) -> None:
    raise corq.Retry("again", delay=delay)


@app.task
def ask_retry_forever() -> None:
    raise corq.Retry(delay=float("inf"))


@app.task(retry_on=[ValueError])
def raise_on_retry_list(kind: str) -> None:
    raise ValueError(kind) if kind == "value" else KeyError(kind)


@app.task
def raise_value_error() -> None:
    raise ValueError("bad\nsecond line")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class Unencodable:
    pass


@app.task
def raise_system_exit() -> None:
    raise SystemExit(4)


@app.task
def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@app.task
def raise_stop_iteration() -> None:
    raise StopIteration


@app.task
async def raise_cancelled() -> None:
    raise asyncio.CancelledError


@app.task
def raise_unprintable() -> None:
    raise UnprintableError


@app.task
def return_unencodable() -> object:
    return Unencodable()


def plain_function() -> int:
    """Not registered as a task: a child still finds it by its module path."""
    return 1


def registered_later() -> int:
    return 2


#: Registered without rebinding the function's name: the child finds the Task by its `fn`.
registered = app.task(registered_later)
