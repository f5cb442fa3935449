"""How a worker's parts are put together (see `corq.worker.worker` for what each does)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corq.backends.base import Backend, WorkerLease
from corq.control import ControlKind
from corq.types import QueueName
from corq.worker.breakers import BreakerGate, configured_rule
from corq.worker.config import ConfigWatch, StrikeGate
from corq.worker.control import ControlPart
from corq.worker.fetch import Admission, Fetcher
from corq.worker.gates import Gates, StartGate
from corq.worker.heartbeat import Heartbeat
from corq.worker.jobs import Jobs
from corq.worker.leases import Leases, new_holder
from corq.worker.observer import Observers
from corq.worker.promoter import Promoter
from corq.worker.reclaim import Reclaimer
from corq.worker.reconcile import Reconciler
from corq.worker.registry import Registry
from corq.worker.settling import Settler

if TYPE_CHECKING:
    from corq.app import App


@dataclass(slots=True)
class Parts:
    """What a started worker is made of (built on its event loop, with its connection)."""

    backend: Backend
    leases: Leases
    admission: Admission
    jobs: Jobs
    fetcher: Fetcher
    promoter: Promoter
    reclaimer: Reclaimer
    reconciler: Reconciler
    heartbeat: Heartbeat
    settler: Settler
    config: ConfigWatch
    control: ControlPart


def _gates(app: App, backend: Backend, config: ConfigWatch, given: Sequence[StartGate]) -> Gates:
    """The gates a claimed job passes: the given ones, then the circuit breakers' (with the
    runtime configuration's thresholds, which may give a task a breaker it has not in
    code; a task without one costs a dict lookup)."""
    rule_of = configured_rule(lambda: config.snapshot)
    return Gates([*given, BreakerGate(backend, app.clock, rule_of)])


async def _refreshed(config: ConfigWatch) -> None:
    """A CONFIG message: read the configuration now rather than at the next poll."""
    await config.refresh()


def build_parts(
    app: App,
    registry: Registry,
    observers: Observers,
    *,
    worker_id: str,
    queues: Mapping[QueueName, int],
    concurrency: int,
    burst: bool,
    fixed_id: bool,
    burst_done: Callable[[], None],
    gates: Sequence[StartGate] = (),
) -> Parts:
    """The parts of one worker, on the running event loop, with a connection of its own."""
    settings = app.settings
    clock = app.clock
    names = tuple(queues)
    backend = app.new_client().backend
    lease = WorkerLease(
        worker_id=worker_id,
        queues=names,
        lease_ms=round(settings.lease_s * 1000),
        holders={q: new_holder(worker_id) for q in names},
    )
    leases = Leases(backend, clock, registry, lease, fixed_id=fixed_id)
    admission = Admission(
        queues,
        concurrency=concurrency,
        sandboxes=settings.sandboxes,
        burst=burst,
    )
    settler = Settler(backend, clock, names, pending=admission.pending)
    config = ConfigWatch(backend, admission, queues, poll_s=settings.config_poll_s)
    struck = StrikeGate(config, clock, recheck_s=settings.strike_recheck_s)
    start_gates = _gates(app, backend, config, [struck, *gates])
    jobs = Jobs(app, backend, registry, admission, observers, settler, start_gates)
    promoter = Promoter(backend, clock)
    fetcher = Fetcher(
        backend,
        clock,
        admission,
        leases,
        start=jobs.start,
        note_due=promoter.note_due,
        burst_done=burst_done,
    )
    reclaimer = Reclaimer(
        backend,
        clock,
        leases,
        names,
        interval_s=settings.reclaim_s,
        max_deaths=settings.max_deaths,
        result_ttl_s=settings.result_ttl_s,
    )
    reconciler = Reconciler(
        backend,
        clock,
        registry,
        leases,
        admission.lock,
        interval_s=settings.reconcile_s,
        awaiting=admission.awaiting,
        cancel_grace_s=settings.cancel_grace_s,
    )
    control = ControlPart(
        backend,
        worker_id,
        registry,
        cancel=jobs.cancel,
        reconcile_now=reconciler.request_round,
    )
    control.on(ControlKind.CONFIG, lambda _: _refreshed(config))
    heartbeat = Heartbeat(
        backend,
        lambda: leases.lease,
        clock,
        interval_s=settings.heartbeat_s,
        lag_warn_s=settings.loop_lag_warn_s,
        max_stall_s=settings.max_stall_s,
        on_lost=leases.lost_from_thread,
        registry=registry,
    )
    return Parts(
        backend,
        leases,
        admission,
        jobs,
        fetcher,
        promoter,
        reclaimer,
        reconciler,
        heartbeat,
        settler,
        config,
        control,
    )
