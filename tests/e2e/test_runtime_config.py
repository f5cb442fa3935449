"""Runtime configuration across 4 `corq worker` processes, on each broker: a limit changed
from the CLI holds on every worker within a second, measured through the jobs themselves
(tests/e2e/flow_app.py notes each job's start and end)."""

from __future__ import annotations

import time

import pytest

import corq
from tests.e2e import flow_app
from tests.e2e.conftest import Cli, wait_for
from tests.e2e.test_flow_control import (
    APP,
    Run,
    all_ran,
    flow,
    log_dir,
    most_at_once,
    runs,
    serving,
    workers,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
__all__ = ["flow", "log_dir"]  # the fixtures, shared with the flow-control tests

JOBS = 300
#: The change must hold on every worker this long after the command returned.
WITHIN_NS = 1_000_000_000


def _from(at_ns: int, attempts: list[Run]) -> list[Run]:
    """The attempts running at or after `at_ns`, as if they began no earlier."""
    return [
        Run(r.label, max(r.start, at_ns), r.end, r.pid)
        for r in attempts
        if r.end is None or r.end > at_ns
    ]


async def test_a_lowered_concurrency_holds_on_all_workers_within_a_second(
    cli: Cli, flow: corq.App, log_dir: str
) -> None:
    # Given 4 worker processes running a task limited to 8 at once in code, 8 at a time
    workers(cli)
    await serving(flow)
    await flow_app.paced.enqueue_many([(log_dir, n, 0.05) for n in range(JOBS)])
    await wait_for(lambda: most_at_once(runs(log_dir)) >= 8, 60, "8 jobs running at once")

    # When an operator lowers it to 2 from the CLI
    out = cli.run("task", "limit", "paced", "--concurrency", "2", "--app", APP)
    changed_ns = time.time_ns()
    assert out.returncode == 0, out.stderr
    done_before = sum(r.end is not None for r in runs(log_dir))

    # Then, from a second after, never more than 2 ran at once on all workers together
    done = await all_ran(log_dir, JOBS, f"the {JOBS} paced jobs", timeout=120)
    assert done_before < JOBS - 20, "the change came too late to be measured"
    after = _from(changed_ns + WITHIN_NS, done)
    assert most_at_once(after) == 2
    assert most_at_once(done) == 8
