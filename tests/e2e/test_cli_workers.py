"""`corq workers` with real worker processes: a killed one is shown as lost, then removed."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.e2e.conftest import Cli, wait_for

pytestmark = pytest.mark.slow


def listed(cli: Cli) -> dict[int, dict[str, Any]]:
    """Worker pid -> its facts, as `corq workers --json` prints them."""
    result = cli.run("workers", "--json")
    assert result.returncode == 0, result.stderr
    return {info["pid"]: info for info in json.loads(result.stdout)}


async def test_a_sigkilled_worker_shows_as_lost_then_disappears(cli: Cli) -> None:
    # Given two worker processes (lease 1.5 s, heartbeat 0.3 s: see Cli.env)
    a = cli.worker("--concurrency", "5", "--queues", "default=2,other")
    b = cli.worker("--concurrency", "7")

    def both_alive() -> bool:
        return {pid: w["state"] for pid, w in listed(cli).items()} == {
            a.pid: "alive",
            b.pid: "alive",
        }

    await wait_for(both_alive, 30, "both workers listed alive")
    workers = listed(cli)
    assert workers[a.pid]["queues"] == {"default": 2, "other": 1}
    assert (workers[a.pid]["concurrency"], workers[b.pid]["concurrency"]) == (5, 7)

    # When A is killed with SIGKILL (it writes nothing more)
    a.send_signal(signal.SIGKILL)
    a.wait(10)

    # Then after its lease it is shown as lost, B still listed (on a loaded machine B may
    # itself miss a heartbeat now and then: its state is not the point here)
    def a_lost() -> bool:
        states = {pid: w["state"] for pid, w in listed(cli).items()}
        return states.get(a.pid) == "lost" and b.pid in states

    await wait_for(a_lost, 30, "A shown as lost")
    table = cli.run("workers").stdout
    assert any(str(a.pid) in line and "lost" in line for line in table.splitlines())

    # And once its facts' ttl has passed (6 leases), it is gone
    await wait_for(lambda: set(listed(cli)) == {b.pid}, 30, "A removed")

    # And B stopping cleanly leaves no trace
    b.send_signal(signal.SIGTERM)
    b.wait(20)
    assert listed(cli) == {}
