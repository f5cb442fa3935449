"""The Breakers port: a task's circuit, shared by every worker, on both brokers.

Closed (jobs run; failures counted in a sliding window) → open after `failures` of them
within `window` (jobs wait `reset`) → half-open (one probe; its permit lapses after `reset`)
→ closed on the probe's success, open again on its failure. Time is a FakeClock's, passed
to every call.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.clock import FakeClock
from corq.control import Breaker, BreakerPermit, BreakerState, BreakerStatus
from tests.contract.conftest import Broker

TASK = "tasks.fetch"
RULE = Breaker(failures=3, window=60, reset=30)
OPEN, CLOSED, HALF_OPEN = BreakerStatus.OPEN, BreakerStatus.CLOSED, BreakerStatus.HALF_OPEN
NO = BreakerPermit(allowed=False)


def clock() -> FakeClock:
    return FakeClock()


async def fail(backend: Backend, clock: FakeClock, *, probe: bool = False) -> BreakerState:
    return await backend.breaker_outcome(TASK, RULE, False, probe, clock.now_ms())


async def permit(backend: Backend, clock: FakeClock) -> BreakerPermit:
    return await backend.breaker_permit(TASK, RULE, clock.now_ms())


async def open_circuit(backend: Backend, clock: FakeClock) -> BreakerState:
    for n in range(RULE.failures):
        clock.advance(1 if n else 0)
        state = await fail(backend, clock)
    assert state.status is OPEN
    return state


async def test_a_task_without_a_circuit_is_closed(backend: Backend) -> None:
    c = clock()

    assert await permit(backend, c) == BreakerPermit(allowed=True)
    assert await backend.breaker_states([TASK]) == [BreakerState(task=TASK)]
    assert await backend.breaker_states() == []


async def test_the_full_cycle_closed_open_half_open_closed(backend: Backend) -> None:
    c = clock()
    # Given failures below the threshold: still closed, counted
    assert (await fail(backend, c)).failures == 1
    c.advance(1)
    second = await fail(backend, c)
    assert (second.status, second.failures) == (CLOSED, 2)
    assert await permit(backend, c) == BreakerPermit(allowed=True)

    # When the third failure within the window comes
    c.advance(1)
    opened = await fail(backend, c)

    # Then the circuit is open for `reset`: no job may start before its end
    opened_at = c.now_ms()
    assert opened == BreakerState(
        task=TASK,
        status=OPEN,
        failures=3,
        opened_at_ms=opened_at,
        until_ms=opened_at + 30_000,
        opened=1,
    )
    c.advance(29.999)
    assert await permit(backend, c) == BreakerPermit(allowed=False, retry_at_ms=opened_at + 30_000)

    # When the cool-down has passed, the first asker gets the probe, the others wait
    c.advance(0.001)
    assert await permit(backend, c) == BreakerPermit(allowed=True, probe=True)
    lapse = c.now_ms() + 30_000
    assert await permit(backend, c) == BreakerPermit(allowed=False, retry_at_ms=lapse)
    [half_open] = await backend.breaker_states([TASK])
    assert (half_open.status, half_open.until_ms) == (HALF_OPEN, lapse)

    # When the probe succeeds, the circuit closes, its failures forgotten
    c.advance(2)
    closed = await backend.breaker_outcome(TASK, RULE, True, True, c.now_ms())
    assert (closed.status, closed.failures, closed.opened) == (CLOSED, 0, 1)
    assert await permit(backend, c) == BreakerPermit(allowed=True)
    # and it takes `failures` new ones to open it again
    assert (await fail(backend, c)).status is CLOSED


async def test_a_failed_probe_opens_the_circuit_again(backend: Backend) -> None:
    c = clock()
    await open_circuit(backend, c)
    c.advance(30)
    assert (await permit(backend, c)).probe

    c.advance(5)
    again = await fail(backend, c, probe=True)

    assert (again.status, again.opened, again.until_ms) == (OPEN, 2, c.now_ms() + 30_000)
    assert again.opened_at_ms == c.now_ms()
    assert await permit(backend, c) == BreakerPermit(allowed=False, retry_at_ms=again.until_ms)


async def test_only_failures_within_the_window_count(backend: Backend) -> None:
    c = clock()
    # Two failures, then a minute and more of nothing: they are out of the window
    await fail(backend, c)
    await fail(backend, c)
    c.advance(60)
    assert (await fail(backend, c)).failures == 1
    # Failures 0 s, 30 s and 59.9 s apart are within one window: the third opens it
    c.advance(30)
    assert (await fail(backend, c)).failures == 2
    c.advance(29.9)
    assert (await fail(backend, c)).status is OPEN


async def test_successes_of_a_closed_circuit_change_nothing(backend: Backend) -> None:
    c = clock()
    await fail(backend, c)
    await fail(backend, c)

    ok = await backend.breaker_outcome(TASK, RULE, True, False, c.now_ms())

    assert (ok.status, ok.failures) == (CLOSED, 2)
    assert (await fail(backend, c)).status is OPEN


async def test_failures_of_jobs_started_before_it_opened_do_not_extend_it(
    backend: Backend,
) -> None:
    c = clock()
    opened = await open_circuit(backend, c)
    c.advance(10)

    late = await fail(backend, c)

    assert (late.status, late.until_ms, late.opened) == (OPEN, opened.until_ms, 1)


async def test_a_probe_whose_outcome_never_comes_lapses(backend: Backend) -> None:
    c = clock()
    await open_circuit(backend, c)
    c.advance(30)
    assert (await permit(backend, c)).probe  # its worker dies: no outcome

    c.advance(29)
    assert not (await permit(backend, c)).allowed
    c.advance(1)

    assert await permit(backend, c) == BreakerPermit(allowed=True, probe=True)


async def test_concurrent_permits_give_one_probe(broker: Broker) -> None:
    # Given an open circuit whose cool-down has ended, and eight workers' connections
    first = broker.open()
    c = clock()
    await open_circuit(first, c)
    c.advance(30)
    backends = [first, *(broker.open() for _ in range(7))]

    # When they all ask at once
    permits = await asyncio.gather(
        *(b.breaker_permit(TASK, RULE, c.now_ms()) for b in backends for _ in range(4))
    )

    # Then exactly one runs, as the probe
    assert sum(p.allowed for p in permits) == 1
    assert [p for p in permits if p.allowed] == [BreakerPermit(allowed=True, probe=True)]
    assert {p.retry_at_ms for p in permits if not p.allowed} == {c.now_ms() + 30_000}


async def test_reset_closes_the_circuit_by_hand(backend: Backend) -> None:
    c = clock()
    await open_circuit(backend, c)
    assert [s.task for s in await backend.breaker_states()] == [TASK]

    assert await backend.reset_breaker(TASK) is True

    assert await permit(backend, c) == BreakerPermit(allowed=True)
    assert await backend.breaker_states([TASK]) == [BreakerState(task=TASK)]
    assert await backend.breaker_states() == []
    assert await backend.reset_breaker(TASK) is False


async def test_circuits_are_per_task_and_listed_by_name(backend: Backend) -> None:
    c = clock()
    await open_circuit(backend, c)
    await backend.breaker_outcome("tasks.other", RULE, False, False, c.now_ms())

    states = {s.task: s for s in await backend.breaker_states(now_ms=c.now_ms())}

    assert sorted(states) == [TASK, "tasks.other"]
    assert states[TASK].status is OPEN
    assert (states["tasks.other"].status, states["tasks.other"].failures) == (CLOSED, 1)
    assert await backend.breaker_permit("tasks.other", RULE, c.now_ms()) == BreakerPermit(
        allowed=True
    )


async def test_a_probe_outcome_after_a_reset_counts_as_a_plain_one(backend: Backend) -> None:
    c = clock()
    await open_circuit(backend, c)
    c.advance(30)
    assert (await permit(backend, c)).probe
    await backend.reset_breaker(TASK)

    late = await fail(backend, c, probe=True)

    assert (late.status, late.failures) == (CLOSED, 1)
