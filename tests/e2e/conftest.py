"""Run `corq` as real subprocesses against the session's (or a private) redis-server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psutil
import pytest

import corq
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """Starts corq commands with the test's broker URL and key prefix."""

    def __init__(self, url: str, prefix: str, tmp: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(
            os.environ,
            CORQ_URL=self.url,
            CORQ_PREFIX=self.prefix,
            CORQ_LEASE_S="1.5",
            CORQ_HEARTBEAT_S="0.3",
            CORQ_RECLAIM_S="0.3",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def worker(self, *args: str, log_name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self.spawn("worker", "tests.e2e.sample_app:app", *args, log_name=log_name, **env)

    def spawn(self, *argv: str, log_name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start `corq <argv>`, its output in <log_name>-<n>.log; stop_all ends it."""
        with open(self.tmp / f"{log_name}-{len(self.procs)}.log", "wb") as log:
            # The child keeps its own copy of the file descriptor.
            proc = subprocess.Popen(
                [sys.executable, "-m", "corq", *argv],
                cwd=ROOT,
                env=self.env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corq", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))

    def stop_all(self) -> None:
        """SIGKILL every process started, and every process they started (no leftovers)."""
        for proc in self.procs:
            try:
                tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
            except psutil.NoSuchProcess:
                tree = []
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
            if proc.poll() is None:
                proc.wait(10)


@pytest.fixture(params=["redis", "sqlite"])
def e2e_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each end-to-end test runs on both brokers, several processes sharing one store."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'corq.db'}"


@pytest.fixture
def cli(e2e_url: str, prefix: str, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(e2e_url, prefix, tmp_path)
    yield c
    c.stop_all()


@pytest.fixture
async def client_app(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    from tests.e2e import sample_app

    sample_app.app.configure(url=e2e_url, prefix=prefix)
    yield sample_app.app
    await sample_app.app.aclose()
    sample_app.app._clients.clear()


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Wait for a state of the subprocesses (polled more slowly: each look may cost a read)."""
    await until(predicate, timeout, what, interval=0.05)
