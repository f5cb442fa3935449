"""Redis done signals heal a pub/sub connection that died silently.

Reproduced before: an idle NAT or load-balancer timeout kills a connection without a FIN or
an RST (the bytes just stop); the shared pub/sub connection was never replaced, so every
later ``job.result()`` in the process failed. A small TCP proxy here stalls one connection
the same way: it stops forwarding in both directions and keeps the socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from corq.backends.base import ClaimedJob, WorkerLease
from corq.backends.redis import RedisBackend
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, completion, new_job

#: Socket timeout of the backend behind the proxy: also how long its pub/sub connection
#: may stay silent before a PING, and how long that PING may go unanswered.
TIMEOUT_S = 0.5
#: A SUBSCRIBE command as redis-py sends it (UNSUBSCRIBE is $11, so it does not match).
SUBSCRIBE = b"$9\r\nSUBSCRIBE\r\n"


@dataclass(eq=False)
class Link:
    """One client connection through the proxy."""

    #: SUBSCRIBE commands the client sent on it.
    subscribes: int = 0
    #: Set: nothing more is forwarded either way, and the sockets stay open.
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    def stall(self) -> None:
        self.stalled.set()


class StallingProxy:
    """Forwards TCP connections to Redis; any one of them can be stalled."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.links: list[Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        #: Where clients connect (once started).
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        self._writers += [client_w, server_w]
        link = Link()
        self.links.append(link)
        for pump in (
            self._pump(client_r, server_w, link, True),
            self._pump(server_r, client_w, link, False),
        ):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, up: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if up:
                    link.subscribes += data.upper().count(SUBSCRIBE)
                if link.stalled.is_set():
                    await asyncio.Future()  # hold the bytes for ever, never close
                writer.write(data)
                await writer.drain()
            writer.close()

    async def subscribed_link(self, *, besides: Link | None = None) -> Link:
        """The first link (other than `besides`) a SUBSCRIBE went through, once there is one
        (within 10 s)."""
        async with asyncio.timeout(10):
            while True:
                for link in self.links:
                    if link.subscribes and link is not besides:
                        return link
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[StallingProxy]:
    target = urlsplit(redis_url)
    assert target.hostname is not None
    assert target.port is not None
    stalling = StallingProxy(target.hostname, target.port)
    await stalling.start()
    yield stalling
    await stalling.close()


@pytest.fixture
async def via_proxy(proxy: StallingProxy, prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(proxy.url, prefix=prefix, socket_timeout_s=TIMEOUT_S)
    yield backend
    await backend.close()


@pytest.fixture
async def direct(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_url, prefix=prefix)
    yield backend
    await backend.close()


async def run_jobs(direct: RedisBackend, *job_ids: str) -> dict[str, ClaimedJob]:
    """Enqueue the jobs and have worker w1 hold them; returns them claimed, by id."""
    await direct.enqueue_jobs([new_job(job_id) for job_id in job_ids])
    await direct.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=LEASE_MS), T0)
    batch = await direct.claim_jobs(Q, "w1", len(job_ids), LEASE_MS, T0)
    return {job.id: job for job in batch.jobs}


async def finish(direct: RedisBackend, held: dict[str, ClaimedJob], job_id: str) -> None:
    assert await direct.complete_jobs("w1", [completion(held[job_id])], 60_000) == [True]


async def test_a_waiter_on_a_silently_dead_connection_wakes_and_later_waits_work(
    proxy: StallingProxy, via_proxy: RedisBackend, direct: RedisBackend
) -> None:
    # Given a waiter subscribed through the proxy, whose pub/sub connection then goes silent
    held = await run_jobs(direct, "a", "b")
    waiter = asyncio.create_task(via_proxy.wait_for_job("a", Q, timeout_s=60))
    dead = await proxy.subscribed_link()
    dead.stall()

    # When the job ends (its done message is lost in the silent connection)
    started = time.monotonic()
    await finish(direct, held, "a")

    # Then the waiter still learns of it, within a few socket timeouts, not at its timeout
    job = await asyncio.wait_for(waiter, 10)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED
    assert time.monotonic() - started < 8 * TIMEOUT_S

    # And a later wait subscribes on a fresh connection and wakes at once
    waiter = asyncio.create_task(via_proxy.wait_for_job("b", Q, timeout_s=60))
    await proxy.subscribed_link(besides=dead)
    started = time.monotonic()
    await finish(direct, held, "b")
    job = await asyncio.wait_for(waiter, 10)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED
    assert time.monotonic() - started < 2 * TIMEOUT_S


async def test_a_subscribe_on_a_silently_dead_connection_moves_to_a_fresh_one(
    proxy: StallingProxy, via_proxy: RedisBackend, direct: RedisBackend
) -> None:
    # Given a pub/sub connection that served one wait, then went silent while idle
    held = await run_jobs(direct, "a", "b")
    waiter = asyncio.create_task(via_proxy.wait_for_job("a", Q, timeout_s=60))
    first = await proxy.subscribed_link()
    await finish(direct, held, "a")
    assert (await asyncio.wait_for(waiter, 10)) is not None
    first.stall()

    # When a new wait subscribes (its SUBSCRIBE is never confirmed on the silent one)
    waiter = asyncio.create_task(via_proxy.wait_for_job("b", Q, timeout_s=60))
    await proxy.subscribed_link(besides=first)

    # Then it waits on the fresh connection and wakes as soon as the job ends
    started = time.monotonic()
    await finish(direct, held, "b")
    job = await asyncio.wait_for(waiter, 10)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED
    assert time.monotonic() - started < 2 * TIMEOUT_S
