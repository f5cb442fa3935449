"""`corq worker --queues high=5,low` from the shell: weighted queues end to end."""

from __future__ import annotations

import pytest

import corq
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow  # each test starts a `corq worker` process


async def test_a_burst_worker_serves_weighted_queues_from_the_shell(
    cli: Cli, client_app: corq.App
) -> None:
    from tests.e2e.sample_app import nap

    # Given jobs in a heavy and a light queue
    high = await nap.with_options(queue="high").enqueue_many([(0,) for _ in range(20)])
    low = await nap.with_options(queue="low").enqueue_many([(0,) for _ in range(5)])
    # When a burst worker serves both by weight
    out = cli.run("worker", "tests.e2e.sample_app:app", "--queues", "high=5,low", "--burst")
    # Then it says so, and ran every job of both
    assert out.returncode == 0, out.stderr
    assert "queues=high=5,low" in out.stderr
    for handle in [*high, *low]:
        assert (await handle.info()).status is corq.JobStatus.SUCCEEDED


def test_bad_queue_weights_are_refused_before_any_work(cli: Cli) -> None:
    out = cli.run("worker", "tests.e2e.sample_app:app", "--queues", "high=0", "--burst")
    assert out.returncode == 2
    assert "the weight of queue 'high' must be an integer from 1 to 1000, got '0'" in out.stderr
    assert "Traceback" not in out.stderr
