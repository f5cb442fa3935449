"""The worker: small parts around one event loop, and their lifecycle.

    async with Worker(app, queues=["emails"]) as worker:   # registered and fetching
        ...                                                 # jobs run meanwhile
    # stopped: running jobs got grace_s, the rest were released, outcomes flushed

`start()` / `stop(timeout)` do the same by hand, `run()` until a stop is requested (a
signal handler calls `request_stop()`) or, in burst mode, until the queues are empty.

The parts, each a module of its own:

- `fetch`: `Admission` decides which queue claims next and how many jobs (free slots by
  queue weight, suspects while a sandbox is free, the slot an idle queue holds for a
  hand-over, burst mode's end); `Fetcher` runs a claim loop per queue and, when its queue is
  empty, waits for the broker to hand it a job;
- `jobs`: runs claimed jobs (`runner`; a batched task's in batches, `batches`) and settles
  their outcomes (`writer`), keeping the `registry` of what the worker holds and telling the
  `observer`s;
- `leases`: the worker's lease and holder ids, and joining again when a queue's is lost;
- `promoter`: sleeps until the next delayed job is due and moves due jobs to ready;
- `reclaim`: renews the lease, takes back the jobs of dead workers, now and then tidies the
  broker (`maintenance`);
- `reconcile`: gives back what the broker says this worker holds but it does not run;
- `settling`: applies ended workflow jobs to their workflows (so their children run), at
  once after the writer recorded them, and replays what dead workers left behind;
- `heartbeat`: renews the lease from a thread of its own and watches the loop;
- `scheduling`: a scheduler (``corq.scheduler``), a standby or the leader of the
  schedules; on by default, off with ``scheduler=False`` (and in burst mode).

`parts` puts them together. If any of the loops dies, the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from corq.aio import Backoff
from corq.backends.base import WorkerLease
from corq.errors import BrokerDataError, BrokerError, ConfigError
from corq.flow import TaskRules, check_weight
from corq.overrides import rules_for_queues
from corq.task import check_queue_name
from corq.types import QueueName
from corq.worker.facts import Facts
from corq.worker.gates import StartGate
from corq.worker.leases import Leases
from corq.worker.observer import JobCounts, Observers, WorkerObserver
from corq.worker.parts import Parts, build_parts
from corq.worker.registry import Registry
from corq.worker.scheduling import SchedulerPart

if TYPE_CHECKING:
    from corq.app import App
    from corq.scheduler import Scheduler

log = logging.getLogger(__name__)

#: How long the broker waits before giving back the jobs of plain functions still running
#: when a worker stops (their threads cannot be stopped; the process is about to exit).
DEPART_LINGER_MS = 5_000
#: Longest the final flush of outcomes may wait for an unreachable broker at shutdown.
FLUSH_TIMEOUT_S = 15.0
#: Longest the last settle of workflows may take at shutdown.
SETTLE_TIMEOUT_S = 5.0
_WORKER_ID = re.compile(r"[A-Za-z0-9_.:@/-]{1,100}")


def _check_worker_id(worker_id: object) -> str:
    if not isinstance(worker_id, str) or not _WORKER_ID.fullmatch(worker_id):
        raise ConfigError(
            f"invalid worker id {worker_id!r}: use 1-100 letters, digits or _ . : @ / -"
        )
    return worker_id


def _check_concurrency(concurrency: object) -> int:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    return concurrency


def _weighted_queues(
    queues: Mapping[QueueName, int] | Sequence[QueueName] | None, default: QueueName
) -> dict[QueueName, int]:
    """Queue name -> weight: a list gives each queue weight 1 (repeats served once)."""
    if queues is None or not queues:
        return {check_queue_name(default): 1}
    if isinstance(queues, str):
        raise ConfigError(f"queues must be a list or a dict of weights, not the str {queues!r}")
    if not isinstance(queues, Mapping):
        return dict.fromkeys((check_queue_name(q) for q in queues), 1)
    return {
        check_queue_name(q): check_weight(w, f"the weight of queue {q!r}")
        for q, w in queues.items()
    }


def _check_flag(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be True or False, got {value!r}")
    return value


def _check_grace(grace_s: object) -> float:
    if not isinstance(grace_s, int | float) or not 0 <= grace_s < float("inf"):
        raise ConfigError(f"grace_s must be a non-negative number of seconds, got {grace_s!r}")
    return float(grace_s)


class Worker:
    """Runs jobs from some queues until stopped (or, in burst mode, until they are empty).

    `queues` is a list of names, or a dict of name to weight (a positive integer): under
    load on all of them, each queue gets its weight's share of the started jobs.

    `gates` are asked before each claimed job's body starts and may snooze it (see
    `corq.worker.gates`); the worker's own (circuit breakers) come after them.

    A worker runs once: start it (or enter it) one time, stop it one time.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Mapping[QueueName, int] | Sequence[QueueName] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
        worker_id: str | None = None,
        grace_s: float | None = None,
        observers: Sequence[WorkerObserver] = (),
        scheduler: bool | None = None,
        gates: Sequence[StartGate] = (),
    ) -> None:
        settings = app.settings
        self.app = app
        #: Queue name -> weight: the share of free slots each queue's claims get under load.
        self.weights = _weighted_queues(queues, settings.default_queue)
        self.queues = list(self.weights)
        self.concurrency = _check_concurrency(
            settings.concurrency if concurrency is None else concurrency
        )
        self.burst = burst
        self.grace_s = _check_grace(settings.grace_s if grace_s is None else grace_s)
        self._fixed_id = worker_id is not None
        self.worker_id = _check_worker_id(
            worker_id or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        #: What happened to this worker's jobs, counted (an observer).
        self.counts = JobCounts()
        run_scheduler = not burst if scheduler is None else _check_flag("scheduler", scheduler)
        self._scheduling = SchedulerPart(app, self.worker_id) if run_scheduler else None
        #: Threads still running bodies the worker gave up on when it stopped.
        self.abandoned_threads = 0
        self.registry = Registry()
        #: What this worker publishes about itself every heartbeat (`corq workers`).
        self.facts = Facts(
            worker_id=self.worker_id,
            weights=self.weights,
            concurrency=self.concurrency,
            registry=self.registry,
            counts=self.counts,
            tasks=app.registry,
            clock=app.clock,
        )
        self._observers = Observers([self.counts, self.facts, *observers])
        self._gates = tuple(gates)
        self._parts: Parts | None = None
        self._main: asyncio.Task[None] | None = None
        self._serving = asyncio.Event()
        self._stop = asyncio.Event()
        self._stop_grace_s = self.grace_s
        self._immediate = False

    @property
    def leases(self) -> Leases:
        assert self._parts is not None, "worker not started"
        return self._parts.leases

    @property
    def lease(self) -> WorkerLease:
        """The lease this worker renews (its holder ids change when a queue is lost)."""
        return self.leases.lease

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler this worker runs (None with ``scheduler=False`` or in burst mode)."""
        return None if self._scheduling is None else self._scheduling.scheduler

    @property
    def stopped(self) -> bool:
        """True once the worker has stopped (or failed); `wait()` then says how."""
        return self._main is not None and self._main.done()

    @property
    def running_count(self) -> int:
        """Jobs whose task has not produced an outcome yet."""
        return len(self.registry.executing())

    @property
    def config_version(self) -> int:
        """The runtime configuration's version this worker applies (0 before it started)."""
        return 0 if self._parts is None else self._parts.config.snapshot.version

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop()
            return
        try:
            await self.stop()
        except Exception:  # the block's own exception is the one to see; this one is logged
            log.exception("worker %s failed while the block raised", self.worker_id)

    async def start(self) -> None:
        """Register and begin fetching; returns once serving (or once stopped, if a stop was
        requested first). Raises what the start failed with; a second start is an error."""
        if self._main is not None:
            raise RuntimeError("this worker was started already (a Worker runs once)")
        main = self._main = asyncio.create_task(self._live(), name=f"corq-worker-{self.worker_id}")
        serving = asyncio.ensure_future(self._serving.wait())
        try:
            await asyncio.wait([main, serving], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._cancel_main()
            raise
        finally:
            serving.cancel()
        if main.done() and not main.cancelled():
            main.result()

    def request_stop(self, *, timeout: float | None = None, immediate: bool = False) -> None:
        """Begin stopping (safe from a signal handler): running jobs get `timeout` seconds
        (default grace_s) before they are released; `immediate` writes nothing, as if the
        worker died (its jobs come back once its lease expires)."""
        if not self._stop.is_set() and timeout is not None:
            self._stop_grace_s = _check_grace(timeout)
        self._immediate = self._immediate or immediate
        self._stop.set()

    async def stop(self, timeout: float | None = None, *, immediate: bool = False) -> None:
        """Stop and wait until stopped: stop fetching, give running jobs `timeout` seconds
        (default grace_s), release what still runs, flush outcomes, deregister. Raises what
        a loop failed with. A worker never started has nothing to stop."""
        if self._main is None:
            return
        self.request_stop(timeout=timeout, immediate=immediate)
        await self.wait()

    async def wait(self) -> None:
        """Wait until the worker has stopped; raises what a loop failed with. Cancelling the
        wait stops the worker at once (nothing more is written)."""
        main = self._main
        if main is None:
            raise RuntimeError("worker not started")
        try:
            await asyncio.wait([main])
        except asyncio.CancelledError:
            await self._cancel_main()
            raise
        if not main.cancelled():
            main.result()

    async def run(self) -> None:
        """Start, then run until stopped (request_stop, burst done, or a loop failed)."""
        await self.start()
        await self.wait()

    async def _cancel_main(self) -> None:
        assert self._main is not None
        self._immediate = True
        self._main.cancel()
        await asyncio.wait([self._main])

    # -- the worker's life ------------------------------------------------------------
    async def _live(self) -> None:
        parts = self._parts = self._build()
        try:
            if await self._until_stopped(self._join(parts)):
                await self._serve(parts)
        except asyncio.CancelledError:
            self._immediate = True
            raise
        finally:
            await self._close(parts)

    def _build(self) -> Parts:
        return build_parts(
            self.app,
            self.registry,
            self._observers,
            worker_id=self.worker_id,
            queues=self.weights,
            concurrency=self.concurrency,
            burst=self.burst,
            fixed_id=self._fixed_id,
            burst_done=self.request_stop,
            gates=self._gates,
        )

    async def _until_stopped(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run `step` unless a stop is requested first; True when it completed."""
        work = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([work, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            return False
        work.result()
        return True

    async def _join(self, parts: Parts) -> None:
        """Read the runtime configuration, store the tasks' flow-control rules (merged
        with it) in every queue, join every queue (retrying
        outages) and take back at once the jobs of leases that were ended (a supervised
        predecessor that died)."""
        backoff = Backoff("register")
        while True:
            try:
                rules = await self._rules(parts)
                if rules:  # before the first claim: the broker applies them to it
                    for queue in self.queues:
                        await parts.backend.set_rules(queue, rules)
                await parts.leases.join()
                await parts.reclaimer.reclaim_all(ended_only=True)
                backoff.reset()
                return
            except BrokerError as exc:
                await backoff.wait(exc)

    async def _rules(self, parts: Parts) -> list[TaskRules]:
        """The tasks' rules with the runtime configuration's limits over the code's (an
        unreadable configuration leaves the code's)."""
        try:
            snapshot = await parts.config.load()
        except BrokerDataError as exc:
            log.error("the broker refused the runtime configuration: %s", exc)
            snapshot = parts.config.snapshot
        return rules_for_queues(
            {t.name: t.options.rules for t in self.app.registry.values()}, snapshot
        )

    async def _serve(self, parts: Parts) -> None:
        parts.heartbeat.start()
        await parts.control.subscribe()
        loops = [
            asyncio.create_task(parts.fetcher.run(q), name=f"corq-fetch-{q}") for q in self.queues
        ]
        loops += [
            asyncio.create_task(c, name=n)
            for n, c in (
                ("corq-promote", parts.promoter.run()),
                ("corq-config", parts.config.run()),
                ("corq-reclaim", parts.reclaimer.run()),
                ("corq-reconcile", parts.reconciler.run()),
                ("corq-settle", parts.settler.run()),
                ("corq-control", parts.control.run()),
                ("corq-tick", parts.heartbeat.ticker()),
            )
        ]
        scheduling = None
        if self._scheduling is not None:
            scheduling = asyncio.create_task(self._scheduling.run(), name="corq-scheduler")
            loops.append(scheduling)
        writer = asyncio.create_task(parts.jobs.write(), name="corq-write")
        facts = asyncio.create_task(
            self.facts.run(
                parts.backend,
                interval_s=self.app.settings.heartbeat_s,
                lease_ms=parts.leases.lease.lease_ms,
            ),
            name="corq-facts",
        )
        log.info(
            "worker %s started: queues=%s concurrency=%d",
            self.worker_id,
            ",".join(q if w == 1 else f"{q}={w}" for q, w in self.weights.items()),
            self.concurrency,
        )
        self._serving.set()
        failure = None
        try:
            failure = await self._wait_stop([*loops, writer, facts])
        finally:
            if not self._immediate:  # published while it drains; forgotten once stopped
                self.facts.stopping()
            try:
                if scheduling is not None and self._scheduling is not None:
                    await self._scheduling.stop(scheduling, immediate=self._immediate)
                await self._shutdown(parts, loops, writer)
            finally:
                facts.cancel()
                await asyncio.wait([facts])
        if failure is not None:
            raise failure

    async def _wait_stop(self, loops: list[asyncio.Task[None]]) -> BaseException | None:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stop, *loops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            if task is not stop and not task.cancelled() and task.exception() is not None:
                log.error(
                    "worker loop %s failed; stopping", task.get_name(), exc_info=task.exception()
                )
                return task.exception()
        return None

    async def _shutdown(
        self, parts: Parts, loops: list[asyncio.Task[None]], writer: asyncio.Task[None]
    ) -> None:
        """Stop fetching, stop the jobs, flush their outcomes (bounded)."""
        parts.heartbeat.quiet()  # the ticker stops now: that is no stall
        try:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await parts.jobs.stop(self._stop_grace_s, immediate=self._immediate)
            parts.jobs.outcomes.put_nowait(None)
            if not self._immediate:
                await asyncio.wait([writer], timeout=FLUSH_TIMEOUT_S)
                if not writer.done():
                    log.error(
                        "could not record %d outcome(s) before stopping (broker unreachable); "
                        "their jobs run again elsewhere once this worker's lease expires",
                        parts.jobs.outcomes.qsize(),
                    )
                # The last outcomes' workflows, settled now rather than by another
                # worker's replay seconds later (bounded: an outage leaves it to them).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SETTLE_TIMEOUT_S):
                        await parts.settler.settle_noted()
        finally:
            writer.cancel()
            await asyncio.wait([writer])

    async def _close(self, parts: Parts) -> None:
        parts.leases.cancel_pending()
        parts.heartbeat.tick()
        await asyncio.to_thread(parts.heartbeat.stop)
        self.abandoned_threads = await parts.jobs.close()
        if not self._immediate:
            try:
                await parts.backend.deregister_worker(
                    parts.leases.lease, self.app.clock.broker_now_ms(), DEPART_LINGER_MS
                )
            except (BrokerError, BrokerDataError) as exc:
                log.warning("could not deregister (%s); the lease will expire", exc)
            await self.facts.forget(parts.backend)
        if self.abandoned_threads:
            log.warning(
                "%d plain function(s) still running on threads that cannot be stopped; their "
                "jobs are given back %.0fs after this worker stops",
                self.abandoned_threads,
                DEPART_LINGER_MS / 1000,
            )
        with contextlib.suppress(BrokerError, BrokerDataError):
            await parts.backend.close()
        log.info("worker %s stopped", self.worker_id)
