"""Workers SIGKILLed in the middle of a workflow, on both brokers: another worker finishes
it, each callback runs exactly once, and no job is left waiting.

Real `corq worker` processes (lease 1.5 s, see tests/e2e/conftest.py); every wait is for a
state read from the broker or from the jobs' own run notes, never for a length of time.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import corq
from tests.e2e import workflow_app
from tests.e2e.conftest import Cli, wait_for
from tests.e2e.workflow_app import add_one, gated, quick, tally

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = "tests.e2e.workflow_app:app"


@pytest.fixture
async def app(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    workflow_app.app.configure(url=e2e_url, prefix=prefix)
    yield workflow_app.app
    await workflow_app.app.aclose()
    workflow_app.app._clients.clear()


class Runs:
    """The run notes the tasks write: one line per run of a body."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines()]

    def of(self, task: str) -> list[list[str]]:
        return [line for line in self.lines() if line[0] == task]

    def per_job(self, task: str) -> Counter[str]:
        return Counter(line[1] for line in self.of(task))


def start_worker(cli: Cli, runs: Runs) -> Any:
    return cli.spawn(
        "worker", APP, "--concurrency", "500", log_name="worker", WF_RUNS=str(runs.path)
    )


def kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def finished_cleanly(wf: corq.WorkflowHandle[Any]) -> corq.WorkflowStatus:
    """Its status once finished: every job succeeded, none left waiting or queued."""
    status = await wf.wait(timeout=60, jobs=True)
    assert status.state is corq.WorkflowState.SUCCEEDED, status
    assert status.ended == status.total
    assert {job.state for job in status.jobs} == {corq.JobStatus.SUCCEEDED}
    return status


async def test_a_chord_whose_members_were_running_on_a_killed_worker_calls_back_once(
    cli: Cli, app: corq.App, tmp_path: Path
) -> None:
    runs, gate = Runs(tmp_path / "runs"), tmp_path / "gate"
    # Given a chord of 200 members, all running on worker A (they wait for a gate)
    wf = await corq.chord((gated.s(i, str(gate)) for i in range(200)), tally.then()).enqueue()
    a = start_worker(cli, runs)
    await wait_for(lambda: len(runs.of("gated")) == 200, 30, "200 members running on A")
    # When A is SIGKILLed, the gate opens and worker B starts
    kill(a)
    gate.touch()
    start_worker(cli, runs)
    # Then B runs every member again, and the callback runs once with all 200 results
    assert await wf.result(timeout=60) == {"count": 200, "sum": sum(range(200))}
    status = await finished_cleanly(wf)
    assert len(runs.of("tally")) == 1
    members = runs.per_job("gated")
    assert len(members) == 200
    assert set(members.values()) == {2}  # once on A (killed), once on B
    callback = status.jobs[-1]
    assert callback.task == "tally"
    assert (await app.job(callback.id).info()).attempt == 1


async def test_a_chain_whose_link_was_running_on_a_killed_worker_goes_on_once(
    cli: Cli, app: corq.App, tmp_path: Path
) -> None:
    runs, gate = Runs(tmp_path / "runs"), tmp_path / "gate"
    # Given a chain whose second link runs on worker A (it waits for a gate)
    wf = await corq.chain(
        add_one.s(0), gated.then(str(gate)), add_one.then(), add_one.then()
    ).enqueue()
    a = start_worker(cli, runs)
    await wait_for(lambda: len(runs.of("gated")) == 1, 30, "the second link running on A")
    # When A is SIGKILLed, the gate opens and worker B starts
    kill(a)
    gate.touch()
    start_worker(cli, runs)
    # Then B runs the killed link again and each later link once, given the right input
    assert await wf.result(timeout=60) == 3
    await finished_cleanly(wf)
    first, second, third, fourth = (job.id for job in wf.jobs)
    assert runs.per_job("gated") == {second: 2}
    assert runs.per_job("add_one") == {first: 1, third: 1, fourth: 1}


async def test_a_kill_between_ends_and_their_release_leaves_nothing_stuck(
    cli: Cli, app: corq.App, tmp_path: Path, e2e_url: str
) -> None:
    runs = Runs(tmp_path / "runs")
    n = 2000
    on_redis = e2e_url.startswith("redis")
    # Given fan-ins of 2,000 quick members, each run by a worker A of its own,
    # When A is SIGKILLed while ends it recorded are not yet all taken in by the workflow
    # (the kill may miss that moment, A settling fast: then another fan-in and another A)
    workflows = []
    for _ in range(5):
        wf, caught = await _fan_in_killed_while_settling(cli, runs, n, on_redis=on_redis)
        workflows.append(wf)
        if caught:
            break
    else:
        pytest.fail("no kill landed between an end and its settle in 5 tries")
    start_worker(cli, runs)
    # Then worker B replays what A left (its outbox entries, its held jobs): every callback
    # runs exactly once, with every member's result, and nothing is left waiting
    for wf in workflows:
        assert await wf.result(timeout=90) == {"count": n, "sum": sum(range(n))}
        await finished_cleanly(wf)
    assert len(runs.of("tally")) == len(workflows)
    assert len(runs.per_job("quick")) == n * len(workflows)


async def _fan_in_killed_while_settling(
    cli: Cli, runs: Runs, n: int, *, on_redis: bool
) -> tuple[corq.WorkflowHandle[Any], bool]:
    """A fan-in whose worker was killed part way; whether the kill left ends recorded but
    not applied to the workflow (Redis: an end is recorded in its queue's slot and settled
    after; SQLite settles inside each end's own transaction, so there is no such moment and
    the kill is made once some ends were taken in)."""
    wf = await corq.chord((quick.s(i) for i in range(n)), tally.then()).enqueue()
    a = start_worker(cli, runs)

    async def some_ends_taken_in() -> bool:
        # The first ends taken in (one cheap read, so the kill follows at once): on Redis,
        # A has usually recorded more ends than it has settled by then.
        return (await wf.status(jobs=False)).ended >= 200

    await wait_for(some_ends_taken_in, 60, "some ends taken in")
    kill(a)
    left = await wf.status(jobs=True)
    if not on_redis:
        assert left.ended < left.total, "the kill landed before the fan-in was done"
        return wf, True
    return wf, _succeeded(left) > left.ended


def _succeeded(status: corq.WorkflowStatus) -> int:
    return sum(1 for job in status.jobs if job.state is corq.JobStatus.SUCCEEDED)
