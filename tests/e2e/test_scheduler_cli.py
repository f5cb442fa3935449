"""`corq scheduler` and `corq worker` as real processes: ticks fire, SIGTERM gives the lead
up at once, and a supervised worker runs one scheduler, in its first process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import corq
from tests.e2e.conftest import ROOT, Cli, wait_for

APP = "tests.e2e.schedule_app:app"
pytestmark = pytest.mark.slow


@pytest.fixture
async def reader(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    app = corq.App(e2e_url, prefix=prefix)
    yield app
    await app.aclose()


def start(cli: Cli, *args: str) -> subprocess.Popen[bytes]:
    with open(cli.tmp / f"{args[0]}-{len(cli.procs)}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corq", *args],
            cwd=ROOT,
            env=cli.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    cli.procs.append(proc)
    return proc


async def fired(app: corq.App, at_least: int) -> bool:
    try:
        return (await app.schedules.get("every-second")).fired >= at_least
    except corq.ScheduleNotFoundError:
        return False


async def test_corq_scheduler_fires_and_gives_the_lead_up_on_sigterm(
    cli: Cli, reader: corq.App
) -> None:
    # Given `corq scheduler` alone (no worker runs the jobs)
    proc = start(cli, "scheduler", APP, "--holder", "alone")
    # Then it writes the code schedule and fires its ticks
    await wait_for(lambda: fired(reader, 2), 30, "two ticks fired")
    lease = await reader.client().backend.scheduler_lease()
    assert lease is not None
    assert lease.holder == "alone"
    # When it gets SIGTERM it exits cleanly, and the lease is free at once
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0, cli.logs()
    assert await reader.client().backend.scheduler_lease() is None


async def test_a_supervised_worker_runs_one_scheduler_in_its_first_process(
    cli: Cli, reader: corq.App, tmp_path: Path
) -> None:
    # Given `corq worker -p 2`
    proc = start(cli, "worker", APP, "--processes", "2", "--worker-id", "box")
    # Then the ticks fire and run, led by the first process only
    await wait_for(lambda: fired(reader, 2), 30, "two ticks fired")
    info = await reader.schedules.get("every-second")
    assert info.last_run is not None
    lease = await reader.client().backend.scheduler_lease()
    assert lease is not None
    assert lease.holder.startswith("box.w0.")

    async def ran() -> bool:
        runs, _ = await reader.schedules.history("every-second")
        return any(r.state is corq.JobStatus.SUCCEEDED for r in runs)

    await wait_for(ran, 30, "a tick's job to succeed")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0, cli.logs()
    assert await reader.client().backend.scheduler_lease() is None
    log = cli.logs()
    assert log.count("leads (fence") == 1, log
