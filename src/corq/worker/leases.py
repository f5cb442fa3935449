"""This worker's membership of its queues: its lease, and recovery when a queue's is lost.

Each queue is held under a holder id, ``<worker id>~<incarnation>``, with a new incarnation
at every registration: when a queue's lease is lost, only the jobs claimed under the lost
incarnation are cancelled, and the worker joins again under a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import replace

from corq.aio import Backoff
from corq.backends.base import HOLDER_SEPARATOR, Backend, WorkerLease
from corq.errors import BrokerError
from corq.types import Clock, QueueName, WorkerId
from corq.worker.registry import CancelReason, Registry

log = logging.getLogger(__name__)

#: Queues whose lease was lost, each with the holder id that lost it.
LostHolders = list[tuple[QueueName, WorkerId]]


def new_holder(worker_id: WorkerId) -> WorkerId:
    """A holder id for one registration: the worker id and a fresh incarnation."""
    return f"{worker_id}{HOLDER_SEPARATOR}{secrets.token_hex(3)}"


class Leases:
    """Joins the queues, and joins again under new holder ids when a lease is lost."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        registry: Registry,
        lease: WorkerLease,
        *,
        fixed_id: bool,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.registry = registry
        #: The current lease (holders change when a queue is lost and joined again).
        self.lease = lease
        #: Whether the worker id was given: then a process restarted under it ends its
        #: predecessor's leases at once (ids must be unique among live workers).
        self.fixed_id = fixed_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def join(self) -> None:
        """Register in every queue once (raises BrokerError); a worker with a fixed id ends
        the leases of the process it replaces."""
        self._loop = asyncio.get_running_loop()
        await self.backend.register_worker(self.lease, self.clock.broker_now_ms())
        if self.fixed_id and await self.backend.end_leases(self.lease):
            log.info("ended the leases of an earlier process with id %s", self.lease.worker_id)

    def lost_from_thread(self, lost: LostHolders) -> None:
        """Called on the heartbeat thread; hands the news to the worker's loop."""
        assert self._loop is not None, "not joined yet"
        self._loop.call_soon_threadsafe(
            lambda: self._keep(asyncio.ensure_future(self.recover_lost(lost)))
        )

    def _keep(self, task: asyncio.Future[None]) -> None:
        """Hold a reference to a fire-and-forget task until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover_lost(self, lost: LostHolders) -> None:
        """Our lease in these queues expired and their jobs were taken back: stop running the
        jobs claimed under the lost incarnations, and join again under new ones."""
        current = [(q, h) for q, h in lost if self.lease.holder(q) == h]
        if not current:
            return  # already joined again since
        holders = dict(self.lease.holders)
        for queue, holder in current:
            holders[queue] = new_holder(self.lease.worker_id)
            self.registry.cancel_held_by(queue, holder, CancelReason.LOST)
        self.lease = replace(self.lease, holders=holders)
        names = ", ".join(q for q, _ in current)
        log.warning("re-registering in queue(s) %s after losing the lease", names)
        backoff = Backoff(f"re-register in {names}")
        while True:
            try:
                await self.backend.register_worker(self.lease, self.clock.broker_now_ms())
                backoff.reset()
                return
            except BrokerError as exc:
                await backoff.wait(exc)

    def cancel_pending(self) -> None:
        """The worker stops: recoveries still retrying are abandoned."""
        for task in list(self._tasks):
            task.cancel()
