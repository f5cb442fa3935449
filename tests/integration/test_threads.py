"""ThreadSlots with real threads: deadlines start with the body, stuck threads are replaced."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from corq.worker.threads import ThreadOutcomeKind, ThreadSlots

OK, ERROR, TIMEOUT = ThreadOutcomeKind.OK, ThreadOutcomeKind.ERROR, ThreadOutcomeKind.TIMEOUT
request: contextvars.ContextVar[str] = contextvars.ContextVar("request")


@pytest.fixture
async def slots() -> AsyncIterator[ThreadSlots]:
    pool = ThreadSlots(2, name="test-threads")
    yield pool
    pool.close()


@pytest.fixture
def releases() -> Any:
    """Events that stuck bodies wait on; all set at the end so no thread outlives the test."""
    made: list[threading.Event] = []

    def make() -> threading.Event:
        made.append(threading.Event())
        return made[-1]

    yield make
    for event in made:
        event.set()


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix + "-")]


async def test_a_call_sees_the_callers_context_and_returns_its_value(slots: ThreadSlots) -> None:
    request.set("from the caller")
    loop_thread: list[threading.Thread] = []

    def body() -> tuple[str, str]:
        seen = request.get()
        request.set("changed in the call")
        return seen, threading.current_thread().name

    outcome = await slots.run(
        body, timeout_s=1, on_start=lambda: loop_thread.append(threading.current_thread())
    )
    assert outcome.kind is OK
    assert outcome.value[0] == "from the caller"
    assert outcome.value[1].startswith("test-threads-")
    assert request.get() == "from the caller"  # the call ran in a copy
    assert loop_thread == [threading.current_thread()]  # on_start runs on the event loop


@pytest.mark.parametrize(
    "raised",
    [
        StopIteration(),
        SystemExit(3),
        KeyboardInterrupt(),
        GeneratorExit(),
        asyncio.CancelledError(),
        ValueError("plain"),
    ],
)
async def test_anything_a_call_raises_is_an_error(
    slots: ThreadSlots, raised: BaseException
) -> None:
    def body() -> None:
        raise raised

    outcome = await slots.run(body, timeout_s=None)
    assert (outcome.kind, outcome.exception) == (ERROR, raised)
    assert outcome.traceback is not None
    lines = outcome.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "in body" in lines[1]  # the call's own frame comes first
    assert (await slots.run(lambda: "still serving", timeout_s=None)).value == "still serving"


async def test_the_deadline_starts_when_the_body_starts(slots: ThreadSlots) -> None:
    # Given both threads busy for 0.3 s
    busy = [asyncio.create_task(slots.run(lambda: time.sleep(0.3), timeout_s=None)) for _ in "ab"]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    submitted = loop.time()
    started: list[float] = []
    # When a quick call with a 0.1 s timeout waits for a thread longer than that
    outcome = await slots.run(
        lambda: "quick", timeout_s=0.1, on_start=lambda: started.append(loop.time())
    )
    # Then it was not timed while it waited
    assert (outcome.kind, outcome.value) == (OK, "quick")
    assert started[0] - submitted >= 0.25
    assert [(await b).kind for b in busy] == [OK, OK]


async def test_a_timed_out_call_is_abandoned_and_its_thread_replaced(
    releases: Callable[[], threading.Event],
) -> None:
    slots = ThreadSlots(1, name="test-replaced")
    release = releases()
    # When the only thread's call times out
    outcome = await slots.run(release.wait, timeout_s=0.05)
    assert outcome.kind is TIMEOUT
    assert slots.running_abandoned() == 1
    # Then a later call runs at once (it would time out if it waited for the stuck one)
    assert (await slots.run(lambda: 2, timeout_s=1)).value == 2
    assert slots.free_threads() == 1
    # And the abandoned thread exits once its call returns
    release.set()
    await wait_until(lambda: slots.running_abandoned() == 0, "the abandoned thread to end")
    await wait_until(lambda: len(threads_named("test-replaced")) == 1, "one thread left")
    slots.close()


async def test_a_call_cancelled_before_it_started_never_runs(
    releases: Callable[[], threading.Event],
) -> None:
    slots = ThreadSlots(1, name="test-withdrawn")
    release = releases()
    # Given the only thread busy and a call waiting behind it
    busy_started = asyncio.Event()
    busy = asyncio.create_task(slots.run(release.wait, timeout_s=None, on_start=busy_started.set))
    await busy_started.wait()
    ran: list[str] = []
    waiting = asyncio.create_task(slots.run(lambda: ran.append("withdrawn"), timeout_s=None))
    await asyncio.sleep(0)
    assert slots.free_threads() == 0
    # When its caller is cancelled
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Then, once the thread is free and a later call has run, the withdrawn one never ran
    release.set()
    assert (await busy).kind is OK
    assert (await slots.run(lambda: ran.append("later"), timeout_s=None)).kind is OK
    assert ran == ["later"]
    assert slots.running_abandoned() == 0
    slots.close()


async def test_a_call_cancelled_after_it_started_is_abandoned(
    releases: Callable[[], threading.Event],
) -> None:
    slots = ThreadSlots(1, name="test-cancelled")
    release = releases()
    started = asyncio.Event()
    running = asyncio.create_task(slots.run(release.wait, timeout_s=None, on_start=started.set))
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert slots.running_abandoned() == 1
    assert (await slots.run(lambda: "replacement", timeout_s=1)).value == "replacement"
    release.set()
    await wait_until(lambda: slots.running_abandoned() == 0, "the abandoned thread to end")
    slots.close()


async def test_beyond_the_abandoned_cap_new_calls_wait(
    releases: Callable[[], threading.Event], caplog: pytest.LogCaptureFixture
) -> None:
    slots = ThreadSlots(1, name="test-capped", max_abandoned=1)
    first, second = releases(), releases()
    # Given two calls that timed out: the first was replaced, the second is over the cap
    assert (await slots.run(first.wait, timeout_s=0.02)).kind is TIMEOUT
    with caplog.at_level(logging.WARNING, logger="corq.worker.threads"):
        assert (await slots.run(second.wait, timeout_s=0.02)).kind is TIMEOUT
        # Then no thread is left to take calls, and one warning names the stuck threads
        assert slots.running_abandoned() == 2
        assert slots.free_threads() == 0
        assert len(threads_named("test-capped")) == 2
        ran_after_release: list[bool] = []
        waiting = [
            asyncio.create_task(
                slots.run(lambda: ran_after_release.append(first.is_set()), timeout_s=0.5)
            )
            for _ in "ab"
        ]
        await asyncio.sleep(0)
        # When one stuck call returns, its thread ends and a new one serves the waiting calls
        first.set()
        assert [(await w).kind for w in waiting] == [OK, OK]
    assert ran_after_release == [True, True]
    stuck = [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()]
    assert stuck == [
        "test-capped: 2 threads are stuck in calls that timed out or lost their job; "
        "new calls wait until one of them ends"
    ]
    second.set()
    await wait_until(lambda: slots.running_abandoned() == 0, "the stuck threads to end")
    slots.close()


async def test_close_lets_accepted_calls_finish_then_the_threads_exit(
    releases: Callable[[], threading.Event],
) -> None:
    slots = ThreadSlots(1, name="test-close")
    release = releases()
    # Given a running call that will time out, a call waiting behind it, then close()
    started = asyncio.Event()
    stuck = asyncio.create_task(slots.run(release.wait, timeout_s=0.05, on_start=started.set))
    await started.wait()
    queued = asyncio.create_task(slots.run(lambda: "queued", timeout_s=1))
    await asyncio.sleep(0)
    slots.close()
    slots.close()
    # Then the stuck call's thread is still replaced, so the accepted call runs
    assert (await stuck).kind is TIMEOUT
    assert (await queued).value == "queued"
    # And nothing new is accepted; every thread exits once its call is done
    with pytest.raises(RuntimeError, match="closed"):
        await slots.run(lambda: None, timeout_s=None)
    release.set()
    await wait_until(lambda: not threads_named("test-close"), "every thread to exit")
    assert slots.running_abandoned() == 0
