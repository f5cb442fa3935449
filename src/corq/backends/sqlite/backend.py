"""The embedded SQLite broker: the Backend contract on one local file.

Every method is one SQLite transaction (BEGIN IMMEDIATE for writes) run on the backend's
own thread (see thread.py), so the event loop never blocks and a crash between two calls
never leaves a job half-moved. Several processes may share the file: WAL mode lets
readers run alongside the single writer, and busy_timeout queues writers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from corq.backends.base import (
    BATCH,
    EVENTS_MAX,
    Admitted,
    Backend,
    ClaimBatch,
    ClaimedJob,
    Completion,
    Failure,
    HeldJob,
    NewJob,
    QueueStats,
    Reclaimed,
    Release,
    WorkerLease,
)
from corq.backends.sqlite import admin, admit, claims, leases, outcomes, producer, reclaim
from corq.backends.sqlite.breakers import SqliteBreakers
from corq.backends.sqlite.config import SqliteConfig
from corq.backends.sqlite.control import SqliteControl
from corq.backends.sqlite.dead import DeadBounds
from corq.backends.sqlite.dead_letters import SqliteDeadLetters
from corq.backends.sqlite.events import SqliteEvents
from corq.backends.sqlite.flow import SqliteFlow
from corq.backends.sqlite.schedules import SqliteSchedules
from corq.backends.sqlite.store import Conn
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.backends.sqlite.url import Target, parse_url
from corq.backends.sqlite.watch import HUB, ChangeWatch
from corq.backends.sqlite.worker_facts import SqliteWorkerFacts
from corq.backends.sqlite.workflows import SqliteWorkflows
from corq.flow import Outcome
from corq.job import Job
from corq.types import JobId, QueueName, WorkerId

#: How often the SQLite thread of a waiting backend looks for commits by other processes:
#: bounds the latency of a cross-process wake (~20 ms) at the cost of one thread wake-up and
#: one pragma per tick, only while anyone waits.
POLL_S = 0.02
#: How often (at most) a backend deletes expired results (and workflows kept long enough),
#: after a promote_due_jobs or a complete_jobs call (whichever comes first): in transactions
#: of their own, BATCH rows each, until none is left. Never inside an enqueue or complete
#: transaction, whose write lock it would otherwise hold for as long as a backlog of
#: expired results takes.
EXPIRE_EVERY_S = 1.0


#: No claim has reported a due time for the queue yet.
_NOT_TOLD: object = object()


def _due_is_news(due: int | None, told: object) -> bool:
    """A delayed job due earlier than the last claim reported (or when it reported none)."""
    if due is None or told is _NOT_TOLD:
        return False
    return told is None or (isinstance(told, int) and due < told)


class SqliteBackend(
    SqliteSchedules,
    SqliteWorkflows,
    SqliteFlow,
    SqliteDeadLetters,
    SqliteWorkerFacts,
    SqliteBreakers,
    SqliteConfig,
    SqliteControl,
    SqliteEvents,
):
    """Backend on an SQLite file (``sqlite:///path``) or on the process's in-memory database
    (``sqlite:///:memory:``, shared by every backend of the process, gone with the last).

    `dead_max` and `dead_ttl_ms` bound each queue's dead letters (0: unbounded), `events_max`
    its events log (0: no events). The EventLog methods come from events.py; the
    ScheduleStore methods come from schedules.py, the Workflows methods from workflows.py,
    the FlowControl methods from flow.py, the DeadLetters methods from dead_letters.py,
    the WorkerFacts methods from worker_facts.py, the Breakers methods from breakers.py,
    the RuntimeConfig methods from config.py, the ControlChannel methods from control.py.
    """

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 5.0,
        dead_max: int = 0,
        dead_ttl_ms: int = 0,
        events_max: int = EVENTS_MAX,
        _target: Target | None = None,
    ) -> None:
        self.url = url
        self._target = replace(_target or parse_url(url), events_max=max(0, int(events_max)))
        self._timeout_s = socket_timeout_s
        self._bounds = DeadBounds(max(0, int(dead_max)), max(0, int(dead_ttl_ms)))
        # How long a writer waits for another process's transaction before BrokerError.
        busy_timeout_ms = max(1, round(socket_timeout_s * 1000))
        self._thread = ConnectionThread(self._target, busy_timeout_ms, self._committed, POLL_S)
        self._watch: ChangeWatch | None = None
        #: Per queue, the next due time the last claim reported (None: nothing delayed).
        self._told_due: dict[QueueName, int | None] = {}
        #: When (time.monotonic) this backend last deleted expired results.
        self._expired_at = float("-inf")

    def __repr__(self) -> str:
        return f"SqliteBackend({self._target.database!r})"

    # -- JobStore (admit.py, producer.py) ------------------------------------------------------
    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        verdicts, created = await self._admit(jobs), Outcome.CREATED
        return [verdict[1] is created for verdict in verdicts]

    async def admit_jobs(self, jobs: Sequence[NewJob]) -> list[Admitted]:
        return [
            Admitted(job_id=v[0], outcome=v[1], cancelled=v[2] if len(v) > 2 else None)
            for v in await self._admit(jobs)
        ]

    async def _admit(self, jobs: Sequence[NewJob]) -> list[admit.Verdict]:
        for job in jobs:
            producer.check_new_job(job)
        return await self._thread.run(partial(admit.admit_jobs, jobs=list(jobs)))

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        return await self._thread.run(
            partial(producer.get_job, job_id=job_id, queue=queue), Tx.READ
        )

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        """Look at the record again after every commit (here or in another process)."""
        look = partial(producer.job_outcome, job_id=job_id, queue=queue)
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        seen, (job, over) = await self._thread.look(look)
        while not over and await self._wait_change(seen, deadline):
            seen, (job, over) = await self._thread.look(look)
        return job  # finished, gone, or the latest record when time ran out

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int | None) -> bool:
        return await self._thread.run(
            partial(producer.cancel_job, job_id=job_id, queue=queue, now_ms=now_ms)
        )

    # -- WorkerRegistry (leases.py) --------------------------------------------------
    async def register_worker(self, lease: WorkerLease, now_ms: int | None) -> None:
        await self._thread.run(partial(leases.register_worker, lease=lease, now_ms=now_ms))

    async def deregister_worker(
        self, lease: WorkerLease, now_ms: int | None, linger_ms: int = 0
    ) -> None:
        await self._thread.run(
            partial(leases.deregister_worker, lease=lease, now_ms=now_ms, linger_ms=linger_ms)
        )

    async def end_leases(self, lease: WorkerLease) -> int:
        return await self._thread.run(partial(leases.end_leases, lease=lease))

    async def heartbeat(self, lease: WorkerLease, now_ms: int | None) -> list[QueueName]:
        return await self._thread.run(partial(leases.heartbeat, lease=lease, now_ms=now_ms))

    # -- Claims (claims.py, outcomes.py, reclaim.py) ---------------------------------
    async def claim_jobs(
        self,
        queue: QueueName,
        worker_id: WorkerId,
        count: int,
        lease_ms: int,
        now_ms: int | None,
        *,
        suspects: int = 0,
        idle: bool = False,
    ) -> ClaimBatch:
        """With `idle`, a claim that takes nothing says so (``ClaimBatch.idle``) but lists
        nothing: this broker hands no job over (an idle fetcher waits in await_jobs for the
        local wake-up, then claims)."""
        ask = claims.ClaimRequest(queue, worker_id, count, lease_ms, now_ms, suspects, idle)
        batch = await self._thread.run(partial(claims.claim_jobs, ask=ask, bounds=self._bounds))
        if not batch.lost:
            self._told_due[queue] = batch.next_due_ms
        return batch

    async def count_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> int:
        return await self._thread.run(
            partial(claims.count_held_jobs, queue=queue, worker_id=worker_id), Tx.READ
        )

    async def list_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> list[HeldJob]:
        """Read in pages of BATCH (reads never hold writers up); damaged rows then go to
        the dead letters in write transactions of at most BATCH. (The held set is the
        records themselves here, so no id can linger in it after its record moved on.)"""
        held: list[HeldJob] = []
        damaged: list[int] = []
        after: int | None = 0
        while after is not None:
            page = await self._thread.run(
                partial(claims.held_page, queue=queue, worker_id=worker_id, after=after), Tx.READ
            )
            held += page.held
            damaged += page.damaged
            after = page.last
        for start in range(0, len(damaged), BATCH):
            rowids = damaged[start : start + BATCH]
            await self._thread.run(
                partial(
                    claims.bury_held,
                    queue=queue,
                    worker_id=worker_id,
                    rowids=rowids,
                    bounds=self._bounds,
                )
            )
        return held

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        return await self._thread.run(
            partial(
                claims.set_progress,
                job_id=job_id,
                queue=queue,
                worker_id=worker_id,
                fence=fence,
                progress=progress,
            )
        )

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        """True as soon as the queue has a ready job, more suspects than at first, or a
        delayed job due earlier than any before (so the worker recomputes its sleep); False
        after `timeout_s`.

        Suspects that merely wait do not count: a worker whose sandboxes are busy must not
        be woken again and again by them.
        """
        probe = partial(claims.ready_probe, queue=queue)
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        seen, (ready, first_suspects, first_due) = await self._thread.look(probe)
        # A delayed job (or retry) that arrived since the last claim told the caller its next
        # due time is news too, even though it was already there at this first look.
        if _due_is_news(first_due, self._told_due.get(queue, _NOT_TOLD)):
            return True
        while not ready:
            if not await self._wait_change(seen, deadline):
                return False
            seen, (ready, suspects, next_due) = await self._thread.look(probe)
            if suspects > first_suspects:
                return True
            if next_due is not None and (first_due is None or next_due < first_due):
                return True
        return True

    async def await_jobs(
        self, queue: QueueName, worker_id: WorkerId, timeout_s: float
    ) -> list[ClaimedJob] | None:
        """Nothing is ever handed over here: ``[]`` as soon as wait_for_jobs would say a
        claim may find something (the holder then claims), None after `timeout_s`."""
        return [] if await self.wait_for_jobs(queue, timeout_s) else None

    async def promote_due_jobs(self, queue: QueueName, now_ms: int | None) -> int | None:
        """Promote in steps of at most BATCH jobs (one transaction each) until nothing is
        due (nor past its start_by_ms); then, about once a second, delete expired results
        (see EXPIRE_EVERY_S)."""
        while True:
            step = partial(claims.promote_due_jobs, queue=queue, now_ms=now_ms, bounds=self._bounds)
            promoted, now = await self._thread.run(step)
            due, now_ms = promoted.next_due_ms, now  # later steps keep the first step's time
            if promoted.more_expired:
                continue
            if due is None or due > now or promoted.moved == 0:
                await self._expire_results()
                return due

    async def _expire_results(self) -> None:
        """Delete the results expired by the latest time seen, at most once per
        EXPIRE_EVERY_S, in transactions of BATCH rows until none is left."""
        if time.monotonic() - self._expired_at < EXPIRE_EVERY_S:
            return
        self._expired_at = time.monotonic()
        while await self._thread.run(claims.expire_results) >= BATCH:
            pass
        await self._expire_workflows()

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        """Then, about once a second, delete expired results (see EXPIRE_EVERY_S): the
        workers that make results are the ones that keep their number bounded, even when no
        delayed job ever makes them promote."""
        done = await self._thread.run(
            partial(
                outcomes.complete_jobs,
                worker_id=worker_id,
                completions=list(completions),
                result_ttl_ms=result_ttl_ms,
            )
        )
        await self._expire_results()
        return done

    async def fail_jobs(
        self, worker_id: WorkerId, failures: Sequence[Failure], result_ttl_ms: int
    ) -> list[bool]:
        """`result_ttl_ms` is unused: a job failing for good stays in the dead letters until
        retried, purged or trimmed, and one awaiting a retry is not finished."""
        return await self._thread.run(
            partial(
                outcomes.fail_jobs,
                worker_id=worker_id,
                failures=list(failures),
                bounds=self._bounds,
            )
        )

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        return await self._thread.run(
            partial(outcomes.release_jobs, worker_id=worker_id, releases=list(releases))
        )

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int | None, max_deaths: int, *, ended_only: bool = False
    ) -> list[Reclaimed]:
        """In steps of at most BATCH jobs, one transaction each (see reclaim.py)."""
        reclaimed: list[Reclaimed] = []
        first = True
        while True:
            step = partial(
                reclaim.reclaim_step,
                queue=queue,
                now_ms=now_ms,
                max_deaths=max_deaths,
                bounds=self._bounds,
                first=first,
                ended_only=ended_only,
            )
            done = await self._thread.run(step)
            reclaimed += done.reclaimed
            if not done.more:
                return reclaimed
            first, now_ms = False, done.now_ms

    # -- Admin (admin.py) ------------------------------------------------------------
    async def list_queues(self) -> list[QueueName]:
        return await self._thread.run(admin.list_queues, Tx.READ)

    async def prune_queues(self, now_ms: int | None, idle_ms: int) -> list[QueueName]:
        return await self._thread.run(partial(admin.prune_queues, now_ms=now_ms, idle_ms=idle_ms))

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        names = None if queues is None else list(queues)
        return await self._thread.run(partial(admin.queue_stats, queues=names), Tx.READ)

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        return await self._thread.run(
            partial(admin.list_dead, queue=queue, offset=offset, limit=limit), Tx.READ
        )

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int | None
    ) -> int:
        """One transaction: with `job_ids` None, the dead letters it reads at its start."""
        ids = None if job_ids is None else list(job_ids)
        return await self._thread.run(
            partial(admin.retry_dead, queue=queue, job_ids=ids, now_ms=now_ms)
        )

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        ids = None if job_ids is None else list(job_ids)
        return await self._thread.run(partial(admin.purge_dead, queue=queue, job_ids=ids))

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> None:
        await self._thread.run(_select_one, Tx.READ)

    def clone(self) -> Backend:
        """Same database, own thread and connection (for another thread or event loop)."""
        return SqliteBackend(
            self.url,
            socket_timeout_s=self._timeout_s,
            dead_max=self._bounds.max_jobs,
            dead_ttl_ms=self._bounds.ttl_ms,
            events_max=self._target.events_max,
            _target=self._target,
        )

    async def close(self) -> None:
        if self._watch is not None:
            HUB.unsubscribe(self._target.key, self._watch)
            self._watch.close()
            self._watch = None
        await self._thread.close()

    # -- waking ----------------------------------------------------------------------
    def _committed(self) -> None:
        """On the SQLite thread, after a commit that changed rows: wake local waiters."""
        HUB.publish(self._target.key)

    async def _wait_change(self, seen_generation: int, deadline: float) -> bool:
        """Wait for a possible change; False when the deadline passed first."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await self._change_watch(loop).wait(seen_generation, remaining)
        return True

    def _change_watch(self, loop: asyncio.AbstractEventLoop) -> ChangeWatch:
        if self._watch is None or self._watch.loop is not loop:
            if self._watch is not None:
                HUB.unsubscribe(self._target.key, self._watch)
            self._watch = ChangeWatch(loop, self._thread)
            HUB.subscribe(self._target.key, self._watch)
        return self._watch


def _select_one(conn: Conn) -> None:
    conn.execute("SELECT 1").fetchone()
