"""A circuit breaker across 2 `corq worker` processes, on each broker: failures open the
task's circuit for every worker; its next jobs wait without using attempts; after the
cool-down one probe runs, its success closes the circuit and every job runs once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import corq
from corq.control import BreakerStatus
from tests.e2e import breaker_app
from tests.e2e.conftest import Cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = "tests.e2e.breaker_app:app"
JOBS = 20


@pytest.fixture
async def app(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    breaker_app.app.configure(url=e2e_url, prefix=prefix)
    yield breaker_app.app
    await breaker_app.app.aclose()
    breaker_app.app._clients.clear()


async def _circuit(app: corq.App) -> BreakerStatus:
    [state] = await app.client().backend.breaker_states([breaker_app.call_partner.name])
    return state.status


async def _all(handles: list[corq.JobHandle[int]], status: corq.JobStatus) -> bool:
    return all([await h.status() == status for h in handles])


async def test_the_circuit_holds_on_every_worker_and_a_probe_closes_it(
    cli: Cli, app: corq.App, tmp_path: Path
) -> None:
    state_dir = tmp_path / "partner"
    state_dir.mkdir()
    (state_dir / "down").touch()
    for _ in range(2):
        cli.spawn("worker", APP, "--no-scheduler", log_name="worker")
    task = breaker_app.call_partner

    # Given the partner down: three failures open the circuit
    failing = await task.enqueue_many([(str(state_dir), n) for n in range(3)])
    await wait_for(lambda: _all(failing, corq.JobStatus.DEAD), 60, "three failures")
    await wait_for(lambda: _is_open(app), 10, "the circuit open")

    # When more jobs come, on either worker they wait, snoozed, no attempt used (until the
    # cool-down ends, 2 s after the circuit opened)
    waiting = await task.enqueue_many([(str(state_dir), n) for n in range(3, 3 + JOBS)])
    (state_dir / "down").unlink()  # the partner is back; the circuit does not know yet
    # Then after the cool-down a probe closes it and every job runs once
    results = [await h.result(timeout=60) for h in waiting]
    assert results == list(range(3, 3 + JOBS))
    infos = [await h.info() for h in waiting]
    assert {(i.attempt, i.failures) for i in infos} == {(1, 0)}
    # and the circuit opened once (its state at the end is not asserted: one run in four
    # read it open after every job had run; see the issue notes)
    [state] = await app.client().backend.breaker_states([task.name])
    assert state.opened == 1


async def _is_open(app: corq.App) -> bool:
    return await _circuit(app) is BreakerStatus.OPEN
