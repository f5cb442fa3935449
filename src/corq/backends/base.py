"""The storage contract every broker implements.

Nothing above ``corq.backends`` knows which broker it talks to. Every method is one atomic
step in the broker (one Lua script or pipeline on Redis, one transaction on SQLite), so a
crash between two calls never leaves a job half-moved. A method that must touch many jobs
works in bounded steps (at most ``BATCH`` jobs per script or transaction) and says so.

Holders and fencing: a worker registers in each queue under a *holder* id,
``<worker id>~<incarnation>`` (see :class:`WorkerLease`); a new incarnation is chosen at
every registration, so a restarted process that reuses a fixed worker id never hides the
jobs its crashed predecessor held. Each claim gets a new ``fence`` number. Completing,
failing or releasing a job succeeds only while the job is still held by that holder under
that fence; otherwise the call reports False and changes nothing.

Time: every method that needs "now" takes ``now_ms: int | None``. None means the broker's
own clock (Redis ``TIME`` inside the script; on SQLite, the clock of the one machine that
holds the file). Workers on the system clock pass None, so one worker's wrong clock can
never expire another's lease; a ``FakeClock`` passes its own time so tests can fast-forward
leases. Job timestamps that outcomes carry (``finished_at_ms``, ``retry_at_ms``) and the
ones producers send (``enqueued_at_ms``, ``run_at_ms``) come from the writer's clock.

Leases: a holder's registration in a queue has one lease deadline, renewed by ``heartbeat``
(cost O(queues), not O(jobs)). ``reclaim_stalled_jobs`` takes back every job held by a
holder whose lease passed. A holder that deregistered while still holding jobs is
*departed*: when its linger passes, its jobs are given back like releases (no death). Any
other job counts a death (``deaths + 1``, the holder added to its death log), then:

- if ``deaths >= backstop_deaths(max_deaths)``: dead (a worker died that often while it ran,
  without the job ever being caught crashing its own process);
- else if ``deaths >= max_deaths - 1``: it becomes a *suspect* (status queued, flag
  ``suspect``), kept apart from the ready jobs;
- else: queued again at its old place (the head of the queue).

Suspects are handed out only when a claim asks for them (``claim_jobs(suspects=n)``): the
worker runs each in a sandbox, a child process of its own. A death there is the job's own
doing (the worker lived to see its process die), and the worker records it with a
``Release(died=True)`` or, once ``deaths`` reach ``max_deaths``, a ``Failure(died=True)``:
a poison job. A worker killed from outside with a suspect in its sandbox only costs the
suspect an unattributed death. So innocent jobs that shared a worker with a poison job are
never blamed for its crashes. A suspect that is released, or fails and is retried, goes
back among the suspects; ``retry_dead`` clears the flag with the rest of the budget.

Damaged data costs only itself: a job record a script or query cannot read (a field that is
not a number, a record key of another type, a payload that is not bytes) goes to the dead
letters with an error starting ``damaged job record:``, and the rest of the call goes on.
Dead letters whose record is damaged are still listed, and can be purged; retried when the
record is still a job record (its unreadable numbers reset).

Errors: a broker that cannot be reached (connection refused or lost, timeouts, busy,
loading, read-only replica, out of memory) raises :class:`~corq.errors.BrokerError`, which
callers retry. A request the broker refuses, or a store it cannot use (a schema from a
newer corq, a key of the wrong type where a queue's set should be), raises
:class:`~corq.errors.BrokerDataError` at once: retrying will not help.

Bounded growth: the dead letters of a queue keep at most ``dead_max`` jobs and none older
than ``dead_ttl_ms`` (each 0: unbounded), trimmed whenever jobs join them; the names of
queues nobody used for a while and that hold nothing are pruned by ``prune_queues``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Re-exported: the record module defines them next to the field list they follow.
from corq.backends.record import MAX_JOB_ID_CHARS as MAX_JOB_ID_CHARS
from corq.backends.record import PRIORITY_MAX as PRIORITY_MAX
from corq.backends.record import PRIORITY_MIN as PRIORITY_MIN
from corq.backends.record import ClaimedJob as ClaimedJob
from corq.backends.record import NewJob as NewJob
from corq.control import Breaker as Breaker
from corq.control import BreakerPermit as BreakerPermit
from corq.control import BreakerState as BreakerState
from corq.control import ConfigChange as ConfigChange
from corq.control import ConfigScope as ConfigScope
from corq.control import ConfigSnapshot as ConfigSnapshot
from corq.control import ControlMessage as ControlMessage
from corq.events import Attempt as Attempt
from corq.events import Event as Event
from corq.events import EventPage as EventPage
from corq.flow import FlowStats as FlowStats
from corq.flow import Outcome as Outcome
from corq.flow import TaskRules as TaskRules
from corq.job import Job, JobStatus
from corq.limits import WORKFLOW_MAX_JOBS as LIMITS_WORKFLOW_MAX_JOBS
from corq.types import JobId, QueueName, TaskName, WorkerId
from corq.worker_info import WorkerInfo as WorkerInfo

#: Most jobs one script call or transaction touches, so the broker is never blocked long.
BATCH = 1000
#: Separates a worker id from its incarnation in a holder id.
HOLDER_SEPARATOR = "~"
#: Fired ticks a schedule keeps one by one (older ones are below its floor_ms): 128 fits
#: Redis's compact sorted-set encoding (zset-max-listpack-entries), about 3 KB a schedule
#: instead of about 100 KB for 1,000. BACKFILL reaches back as far as these ticks do.
SCHEDULE_FIRED_KEEP = 128
#: Runs and skips a schedule's logs keep (each).
SCHEDULE_LOG_KEEP = 100
#: Changes the runtime configuration's history keeps.
CONFIG_HISTORY_KEEP = 10_000
#: Events the log keeps per queue, by default (``events_max`` setting).
EVENTS_MAX = 100_000
#: How long a cancelled job's record is kept.
CANCELLED_TTL_MS = 7 * 24 * 3600 * 1000
#: Most jobs one workflow holds (callbacks and later additions to a batch included).
WORKFLOW_MAX_JOBS = LIMITS_WORKFLOW_MAX_JOBS
#: How long a workflow job's record is kept at least after it ends (its children may start
#: long after), and the workflow's own state after its last job ended.
WORKFLOW_KEEP_MS = 7 * 24 * 3600 * 1000
#: How long a workflow may stay ``creating`` (an enqueue that died half-way) before
#: maintenance deletes it.
WORKFLOW_CREATE_GRACE_MS = 60_000


def backstop_deaths(max_deaths: int) -> int:
    """Unattributed deaths after which reclaim sends a job to the dead letters anyway.

    A job whose task cannot run in a sandbox (not importable by module path) could kill its
    worker for ever; this bounds that, far above what bad luck gives an innocent job.
    """
    return 3 * max_deaths


def damaged_error(detail: str) -> str:
    """The dead-letter error of a record a broker could not read (same on every broker)."""
    return f"damaged job record: {detail}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimBatch:
    """What one ``claim_jobs`` call returns."""

    #: Jobs now held by the worker (at most the count asked for); suspects first.
    jobs: list[ClaimedJob]
    #: True when the holder was not registered in this queue any more: its lease expired
    #: and its earlier jobs were reclaimed. Nothing was claimed; register again.
    lost: bool = False
    #: Earliest run time in the delayed set, if any (after promoting due ones).
    next_due_ms: int | None = None
    #: Suspect jobs still waiting for a worker with a free sandbox.
    suspects: int = 0
    #: The claim found nothing and, as asked (``idle=True``), listed the holder as idle:
    #: the next job made ready in the queue is handed straight to it (``await_jobs``).
    idle: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A successful attempt."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: Encoded return value.
    result: bytes
    finished_at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """A failed attempt: retried at ``retry_at_ms``, or dead when that is None."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: One-line error (``ValueError: boom``).
    error: str
    #: Formatted traceback, if any.
    traceback: str | None
    #: When to run again; None sends the job to the dead letters.
    retry_at_ms: int | None
    finished_at_ms: int
    #: False when the attempt never ran the task body (unknown task, undecodable payload):
    #: such a failure does not count against the retries.
    counted: bool = True
    #: A snooze (``raise corq.Snooze``, a struck task, an open breaker): the job is
    #: scheduled at ``retry_at_ms`` (never None here) as if this attempt never started: its
    #: attempt number goes back, no failure or death is counted, its status is
    #: ``scheduled``, ``error`` is the reason (event SNOOZED).
    snoozed: bool = False
    #: True when the job's own process died (a sandbox or process-pool child): a death is
    #: counted (deaths + 1, the holder joins the death log) instead of a failure.
    died: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Release:
    """Give a held job back to the head of its queue (shutdown, reconciliation, a crash)."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: True when the task body never started: the attempt is not counted.
    unstarted: bool = False
    #: True when the job's own process died: a death is counted (deaths + 1, the holder
    #: joins the death log), and with `suspect` it goes back among the suspects.
    died: bool = False
    #: Put it among the suspects (the worker decides from max_deaths).
    suspect: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Reclaimed:
    """A job taken back from a holder whose lease expired."""

    job_id: JobId
    queue: QueueName
    #: The holder that held it.
    worker_id: WorkerId
    #: True when this death sent it to the dead letters (backstop_deaths reached).
    dead: bool
    #: True when its holder had departed: given back like a release, no death counted.
    released: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class HeldJob:
    """One job the broker says a holder holds."""

    job_id: JobId
    fence: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """Counts for one queue."""

    queue: QueueName
    #: Jobs ready to run now (suspects included).
    ready: int
    #: Jobs waiting for their time (delays and retry backoff).
    delayed: int
    #: Jobs held by workers.
    in_flight: int
    #: Jobs in the dead letters.
    dead: int
    #: Live workers registered on the queue.
    workers: int
    #: Jobs waiting for their workflow parents.
    waiting: int = 0
    #: Of `delayed`, the jobs waiting for a retry after a failed attempt.
    retrying: int = 0
    #: When the oldest ready job became ready (its run_at_ms, or enqueued_at_ms), if any:
    #: the age of the backlog.
    oldest_ready_ms: int | None = None
    #: The queue is paused (runtime configuration): no claim hands out its jobs.
    paused: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerLease:
    """Registration of one worker, renewed by heartbeats."""

    #: The worker's own id (host.pid.random by default, or fixed by the user).
    worker_id: WorkerId
    queues: Sequence[QueueName]
    #: How long a heartbeat keeps the worker alive.
    lease_ms: int
    #: Holder id per queue (``worker_id~incarnation``); a queue missing here is held as
    #: ``worker_id`` itself (tests and tools that register by hand).
    holders: Mapping[QueueName, WorkerId] = field(default_factory=dict)

    def holder(self, queue: QueueName) -> WorkerId:
        """The id this worker holds jobs of `queue` under."""
        return self.holders.get(queue, self.worker_id)


class TickStep(StrEnum):
    """What one ``advance_schedules`` step does to a schedule (see ScheduleStore)."""

    #: Fire tick T: only when T > last_tick_ms and not paused; moves last_tick_ms to T.
    FIRE = "fire"
    #: Pass over tick T without a job (overlap skip, a missed tick): T > last_tick_ms;
    #: moves last_tick_ms to T and records the skip.
    SKIP = "skip"
    #: Hold tick T back (``buffer_one``): T > last_tick_ms, no tick buffered yet, not
    #: paused; moves last_tick_ms to T, sets buffered_tick_ms = T, no job yet.
    BUFFER = "buffer"
    #: Fire the buffered tick: T == buffered_tick_ms and not paused; clears it.
    FIRE_BUFFERED = "fire_buffered"
    #: Fire a past tick again asked for: floor_ms < T <= last_tick_ms, T not among the
    #: fired ticks and not the buffered tick (allowed while paused; needs no fence).
    BACKFILL = "backfill"
    #: Run now, outside the ticks: only needs the schedule to exist (allowed while paused;
    #: needs no fence); last_tick_ms and the fired ticks are left alone.
    MANUAL = "manual"


class TickOutcome(StrEnum):
    """What an ``advance_schedules`` step did."""

    #: Done as asked (for a step with a job: the job was enqueued, or it existed already).
    DONE = "done"
    #: The tick is not due by this step's rule any more (already fired, skipped, buffered,
    #: or at or before last_tick_ms): nothing written. A scheduler that sees it re-reads
    #: the schedule.
    STALE = "stale"
    #: The schedule is paused: nothing written.
    PAUSED = "paused"
    #: A scheduler with a higher fence has written here: this one is no longer the leader;
    #: nothing written.
    FENCED = "fenced"
    #: No schedule of that name (removed): nothing written.
    GONE = "gone"


@dataclass(frozen=True, kw_only=True, slots=True)
class SkippedTicks:
    """A run of ticks passed over together, and why (a bounded log per schedule)."""

    #: First and last tick of the run (equal for one tick).
    first_tick_ms: int
    last_tick_ms: int
    #: How many ticks (counted up to a bound by the caller).
    count: int
    #: Why: ``overlap: previous run <id> still running``, ``missed: past the catch-up
    #: window``, ``paused``...
    reason: str
    #: When it was recorded.
    at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleRun:
    """One job a schedule enqueued (a bounded log per schedule, newest first)."""

    tick_ms: int
    job_id: JobId
    queue: QueueName
    #: ``tick``, ``buffered``, ``backfill`` or ``manual`` (corq.schedule.RunKind values).
    kind: str
    #: When the step ran (the scheduler's clock).
    fired_at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleStep:
    """One step of ``advance_schedules``."""

    schedule: str
    step: TickStep
    tick_ms: int
    #: The job to enqueue (FIRE, FIRE_BUFFERED, BACKFILL, MANUAL); its queue must be the
    #: schedule's queue. An id that exists already is not enqueued again (still DONE).
    job: NewJob | None = None
    #: ``RunKind`` of the run to record (with a job).
    kind: str = "tick"
    #: Ticks passed over just before this one, recorded in the same step (a FIRE after a
    #: catch-up that skipped older ticks); their ticks must be below ``tick_ms``.
    skipped: SkippedTicks | None = None
    #: With SKIP: the skip to record (its last_tick_ms is the step's tick_ms).
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleRecord:
    """A schedule as the broker keeps it: the definition and its firing state."""

    name: str
    queue: QueueName
    #: Opaque to the broker (``corq.schedule.ScheduleDef.encode``).
    definition: bytes
    #: Raised by every change of the definition or the paused state (global order, the
    #: same counter as ``schedules_version``).
    version: int
    paused: bool
    #: Why it is paused (an operator, ``pause_on_failure``), None when not paused.
    paused_reason: str | None
    #: Every tick at or before this was fired, skipped or buffered (the watermark).
    last_tick_ms: int
    #: Fired ticks at or before this are no longer kept one by one (BACKFILL refuses them);
    #: 0 until one is dropped (the highest ticks are kept).
    floor_ms: int
    #: A tick held back by ``buffer_one``, fired when the previous run ends.
    buffered_tick_ms: int | None
    created_at_ms: int
    #: The last change of the definition or the paused state (steps leave it alone).
    updated_at_ms: int
    #: Runs recorded (one per DONE step with a job) and ticks skipped (one per SKIP, plus
    #: the ``count`` of every ``skipped`` recorded), since creation.
    fired: int
    skipped: int
    #: The latest run, if any (for listings without a history read).
    last_run: ScheduleRun | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleChanges:
    """What changed since a version (``changed_schedules``)."""

    #: The version these changes bring the reader to.
    version: int
    #: Schedules created or changed since (their current record).
    changed: list[ScheduleRecord]
    #: Names removed since.
    removed: list[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulerLease:
    """The scheduler leadership: one holder at a time, with a fence number."""

    holder: str
    #: Raised at every change of holder; steps carry it, and a step with a lower fence than
    #: one already seen is refused (FENCED).
    fence: int
    #: When the lease ends unless renewed (broker's clock, ms).
    deadline_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Admitted:
    """What ``admit_jobs`` did with one job."""

    #: The job the producer's handle names: the new one, or the existing one its unique
    #: key (or cooldown) points at.
    job_id: JobId
    outcome: Outcome
    #: A running job ``OnDuplicate.CANCEL`` cancelled (fenced off) to write this one: the
    #: caller tells its worker to stop it, as after ``cancel_job``.
    cancelled: JobId | None = None


class JobStore(Protocol):
    """Producers and readers of jobs: enqueue, read, wait for, cancel."""

    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Store jobs atomically per queue; True per job created, False for an existing id.

        Jobs with ``run_at_ms`` after ``enqueued_at_ms`` go to the delayed set
        (``scheduled``). Idle workers of the queue are woken. Raises EnqueueError (nothing
        written) for an empty id or one over MAX_JOB_ID_CHARS, or a priority out of range.

        The same step as ``admit_jobs`` (flow control included), answered as booleans: True
        for ``Outcome.CREATED``, False for every other outcome.
        """
        ...

    async def admit_jobs(self, jobs: Sequence[NewJob]) -> list[Admitted]:
        """Store jobs atomically per queue, applying their flow-control directives; what
        happened to each, in order.

        Per job, in this order (docs/design.md, "Flow control"), with "now" its
        ``enqueued_at_ms``: an id that exists is ``EXISTS`` (nothing else is looked at);
        a cooldown (``dedupe.cooldown_ms``) whose window for the key (the unique key, or
        the task name) is open drops it (``DROPPED``, naming the job that opened it,
        counted in ``FlowStats.cooled``), else opens the window; a ``unique_key`` held by a
        live job (scheduled, waiting, queued, running, failed awaiting a retry) or by one
        that ended less than its ``unique_for`` window ago is ``EXISTING``, unless the
        dedupe says otherwise: ``debounce_ms`` moves a job that has not started to
        ``now + debounce`` (never later than its first enqueue + ``max_wait_ms``) with the
        new payload (``DEBOUNCED``); ``REPLACE`` gives a job that has not started the new
        payload and priority (``REPLACED``); ``CANCEL`` cancels the existing job (running
        included: its attempt is fenced off and its slots freed) and writes the new one
        (``CREATED``). A written job goes to the lane its task's rules pick (``FlowControl``)
        or to the plain ready set, or to the delayed set when it runs later; idle workers
        get it handed over (``await_jobs``).

        Two jobs of one call with the same unique key: the second sees the first.
        """
        ...

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        """The job's record, or None; without a queue every known queue is searched.

        A damaged record still reads: unreadable fields take their defaults (an unknown
        status reads as dead) and ``error`` names them (``damaged job record: ...``); a key
        that is not a job record at all reads as a dead job saying so.
        """
        ...

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        """Block (without sleep-polling) until the job is in a terminal state or the time is
        up; returns the latest record either way (None if it does not exist)."""
        ...

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int | None) -> bool:
        """Cancel a job that has not ended; False if it ended already (or does not exist).

        A scheduled, waiting, queued or failed-awaiting-retry job leaves its sets. A running
        one is cancelled in the same step: its claim is fenced off (the worker's outcome
        will be refused), its limit slots are freed, its status is cancelled with the
        holder kept in ``worker_id``; the caller then tells that worker over the control
        channel to stop it (and the worker's reconciliation finds it gone from its held
        jobs if the message is lost). A workflow's job (or a watched one) notes its end in
        the outbox (see Workflows): the caller settles the queue so its dependents end
        upstream_failed."""
        ...


class Claims(Protocol):
    """A worker's job traffic: claim, promote, report progress, record outcomes, reclaim."""

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
        """Promote due delayed jobs, then take up to `count` jobs as held by the holder
        `worker_id`, status running, attempt + 1, new fence: first up to `suspects` suspects
        (``ClaimedJob.suspect``), then ready jobs (highest priority, then oldest).

        Each job is added to the held set as it is taken; a damaged record goes to the dead
        letters instead and the claim goes on with the next.

        Flow control (docs/design.md, "Flow control"): promotion also ends ``expired`` the
        jobs whose ``start_by_ms`` passed, and brings back lanes whose rate limit allows a
        start again. Ready jobs come from the plain ready set and the lanes of ruled tasks,
        visited round robin (highest head priority first, then the lane waiting longest;
        a key of weight w gives up to w jobs per visit); a lane whose task or key is at its
        concurrency limit is parked (not visited) until a slot of that limit frees, one
        over a rate limit is throttled until its next start is due (``next_due_ms`` is then
        the earlier of that and the delayed head). A popped job past its ``start_by_ms``
        ends expired, one over a dropping rate limit ends expired as dropped; neither takes
        a slot. A job taken from a lane raises its task's and key's running counts
        (record flag ``limited``); the end of that attempt (outcome, release, reclaim,
        cancel) lowers them. Nothing taken is ever put back.

        With `idle`, a claim that takes nothing lists the holder as idle in the queue, with
        room for one job: the next step that makes a job ready (enqueue, promotion, a
        release, a retry) claims it for the holder under the same rules and hands it over
        through ``await_jobs`` (one round trip for the worker). A claim that takes
        something, ``await_jobs`` returning, ``deregister_worker`` and a reclaim of the
        holder unlist it.
        """
        ...

    async def count_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> int:
        """How many jobs the broker says `worker_id` holds in `queue` (cheap)."""
        ...

    async def list_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> list[HeldJob]:
        """Every job `worker_id` holds in `queue`, with its fence (in bounded steps).

        Ids in the held set whose record no longer says so are dropped from it; a damaged
        record goes to the dead letters.
        """
        ...

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        """Record a running job's progress (0.0 to 1.0), fenced like an outcome."""
        ...

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        """Block until the queue may have work (a wake signal) or the timeout; True if woken."""
        ...

    async def await_jobs(
        self, queue: QueueName, worker_id: WorkerId, timeout_s: float
    ) -> list[ClaimedJob] | None:
        """Block (no sleep-polling) until something is handed to the idle holder
        `worker_id` (see ``claim_jobs(idle=True)``), or the timeout.

        Returns the jobs handed over, already held by the holder and running under their
        fence exactly as a claim leaves them (``[]``: woken without a job: claim now);
        None when the time is up. Jobs handed over but not returned (the call was cancelled,
        the worker died) stay held: ``deregister_worker`` gives them back unstarted, a
        reclaim like any held job. A broker that cannot hand over (SQLite) returns ``[]``
        on any wake signal.
        """
        ...

    async def promote_due_jobs(self, queue: QueueName, now_ms: int | None) -> int | None:
        """Move delayed jobs whose time has come to the ready queue (waking workers), in
        bounded steps; returns the earliest remaining run time, or None."""
        ...

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        """Record results (fenced); the records expire after `result_ttl_ms` (a workflow's
        job's after at least WORKFLOW_KEEP_MS). A job of a workflow, or one a workflow
        watches, notes its end in the queue's outbox in the same step (see Workflows)."""
        ...

    async def fail_jobs(
        self, worker_id: WorkerId, failures: Sequence[Failure], result_ttl_ms: int
    ) -> list[bool]:
        """Record failed attempts (fenced): to the delayed set for a retry, or dead (a dead
        workflow job notes its end in the outbox, as complete_jobs does)."""
        ...

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        """Give held jobs back to the head of their queue (fenced)."""
        ...

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int | None, max_deaths: int, *, ended_only: bool = False
    ) -> list[Reclaimed]:
        """Take back the jobs of every holder whose lease passed (see module docstring).

        A holder being reclaimed is unregistered at the first step, so its next heartbeat
        reports the queue lost even when its jobs take several steps to take back.
        `ended_only` takes only leases ended by ``end_leases`` or ``deregister_worker``
        (used at start-up, before the worker has been in touch for a whole lease).
        """
        ...


class WorkerRegistry(Protocol):
    """Workers' registrations and leases in each queue."""

    async def register_worker(self, lease: WorkerLease, now_ms: int | None) -> None:
        """Add (or re-add) each of the lease's holders to its queue with a fresh lease."""
        ...

    async def deregister_worker(
        self, lease: WorkerLease, now_ms: int | None, linger_ms: int = 0
    ) -> None:
        """Remove the worker's holders after a shutdown.

        A holder that still holds jobs (a plain function whose thread outlived the grace
        period) is not removed but departed: its lease ends `linger_ms` from now, after which
        reclaim gives its jobs back without counting a death.
        """
        ...

    async def end_leases(self, lease: WorkerLease) -> int:
        """End the lease of every other incarnation of ``lease.worker_id`` in its queues
        (the process it replaces is known to be dead), so the next reclaim takes their jobs
        at once; returns how many registrations were ended."""
        ...

    async def heartbeat(self, lease: WorkerLease, now_ms: int | None) -> list[QueueName]:
        """Renew the lease in every queue; returns the queues where the holder was no longer
        registered (its jobs there were reclaimed). Those queues are not re-added."""
        ...


class WorkerFacts(Protocol):
    """What each worker publishes about itself, for operators (see corq/worker_info.py)."""

    async def publish_worker_info(self, info: WorkerInfo, ttl_ms: int) -> None:
        """Store the worker's facts (replacing its last ones), kept `ttl_ms` after
        ``info.heartbeat_at_ms``; one key or row for the whole cluster, not per queue."""
        ...

    async def list_worker_info(self, now_ms: int | None, lost_after_ms: int) -> list[WorkerInfo]:
        """Every worker's last facts, by worker id; one whose heartbeat is older than
        `lost_after_ms` reads as LOST (state), and facts past their ttl are gone (removed
        by this call)."""
        ...

    async def forget_worker_info(self, worker_id: WorkerId) -> None:
        """Drop a worker's facts (a clean shutdown)."""
        ...


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower_ascii(text: str) -> str:
    """`text` with ASCII letters lowered, and nothing else: what Lua's ``string.lower`` and
    SQLite's ``lower()`` do, so an error filter means the same on every broker."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadFilter:
    """Which dead letters an operator means (every condition given must hold)."""

    task: TaskName | None = None
    #: Case-insensitive substring of the error line.
    error: str | None = None
    #: Died (finished_at_ms) at or after / before these times.
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def needle(self) -> str | None:
        """The error text as the brokers compare it (lowered), None for any error."""
        return None if not self.error else lower_ascii(self.error)

    def error_matches(self, error: str | None) -> bool:
        """Whether an error read back (not stored: a key that is no record) matches."""
        needle = self.needle
        return needle is None or (error is not None and needle in lower_ascii(error))


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadPage:
    """One page of ``find_dead``."""

    jobs: list[Job]
    #: Pass back for the next page; None when this was the last.
    cursor: str | None = None


class Admin(Protocol):
    """What operators see and steer: queues, their counts, the dead letters."""

    async def list_queues(self) -> list[QueueName]:
        """Every queue that has been enqueued to or served and not pruned (names that are
        not valid UTF-8 are skipped)."""
        ...

    async def prune_queues(self, now_ms: int | None, idle_ms: int) -> list[QueueName]:
        """Forget queue names that hold no job in any lane, have no registered worker, and
        were not used (enqueued to or served) for `idle_ms`; returns the names removed."""
        ...

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        """Counts per queue (all known queues when None)."""
        ...

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        """Dead jobs, newest first (damaged records included, see get_job)."""
        ...

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int | None
    ) -> int:
        """Queue dead jobs again with a fresh retry budget; returns how many moved.

        With `job_ids` None: every job that was dead when the call began, each at most once
        (a job that dies again while the call runs stays dead).
        """
        ...

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        """Delete dead jobs (all when None); returns how many."""
        ...


class DeadLetters(Protocol):
    """Operators' search and re-drive of the dead letters."""

    async def find_dead(
        self, queue: QueueName, where: DeadFilter, cursor: str | None, limit: int
    ) -> DeadPage:
        """Dead jobs matching `where`, newest first, a page at a time: at most `limit`
        jobs, after looking at no more than BATCH dead letters, so a page may be short
        (even empty) and still carry a cursor; pass it back (with the same `where`) for
        the next page; None when the walk reached the end.

        Task: equality; error: a substring of the stored error, case-insensitive for ASCII
        letters; time: the death time, ``since_ms`` inclusive, ``until_ms`` exclusive.
        Damaged records are judged on what they store (one buried as damaged stores
        ``damaged job record: ...`` as its error); a key that is no job record at all has
        no task and matches only an error filter, by the error it reads as (see get_job).
        A cursor this broker did not make raises ArgumentError."""
        ...

    async def redrive_dead(
        self, queue: QueueName, job_id: JobId, payload: bytes | None, now_ms: int | None
    ) -> bool:
        """Queue one dead job again with a fresh retry budget, its payload replaced by
        `payload` when given (the caller checked it against the task's signature and the
        size limit); False when it is not dead (any more)."""
        ...


class ScheduleStore(Protocol):
    """Schedules, their firing state, and the scheduler leadership.

    The broker keeps each schedule's definition as opaque bytes, with its firing state:
    ``last_tick_ms`` (the watermark: ticks at or before it are done), the fired ticks of the
    last ``SCHEDULE_FIRED_KEEP`` fires one by one (older ones below ``floor_ms``), at most
    one buffered tick, and bounded logs of runs and skips (``SCHEDULE_LOG_KEEP`` each).

    Exactly once: a tick's job is enqueued only by ``advance_schedules``, in the same atomic
    step that checks and moves the firing state, so a tick fires at most once whichever
    schedulers race, and however long ago its job's record expired. Fencing: a step from a
    scheduler carries the fence of its lease; the broker remembers the highest fence that
    wrote (per Redis slot), and refuses a lower one (FENCED), so a deposed leader that has
    not noticed yet stops at its first write after the new leader's.

    Versions: every create, update, pause, resume or removal raises one global counter;
    ``changed_schedules(v)`` returns what changed after version v, so a scheduler keeps
    10,000 schedules in memory and re-reads only what changed.
    """

    async def add_schedule(
        self, name: str, queue: QueueName, definition: bytes, now_ms: int | None
    ) -> ScheduleRecord | None:
        """Create a schedule (not paused, last_tick_ms = now: only later ticks fire);
        None when the name exists (nothing written)."""
        ...

    async def update_schedule(
        self,
        name: str,
        queue: QueueName,
        definition: bytes,
        now_ms: int | None,
        *,
        create: bool = False,
        reset_ticks: bool = False,
    ) -> ScheduleRecord | None:
        """Replace a schedule's definition, keeping its firing state; None when it does not
        exist (with `create`, it is created as by ``add_schedule`` instead).

        `reset_ticks` (the rule changed) moves last_tick_ms up to now, so the new rule does
        not catch up ticks from before the change. A definition equal to the stored one (and
        the same queue) changes nothing, not even the version, `reset_ticks` or not (so a
        restart that writes its code schedules again still catches up). A new queue moves
        the whole schedule there with its firing state (a step whose job names the old queue
        fails, see advance_schedules).
        """
        ...

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule with its state and logs; False when it did not exist."""
        ...

    async def set_schedule_paused(
        self,
        name: str,
        paused: bool,
        reason: str | None,
        now_ms: int | None,
        *,
        skipped: SkippedTicks | None = None,
    ) -> ScheduleRecord | None:
        """Pause or resume; None when it does not exist.

        Resuming moves last_tick_ms up to now (the ticks of the pause are not caught up) and
        records `skipped` (the caller counts the ticks it passed over; ignored when pausing).
        Pausing or resuming in the state it is already in changes nothing.
        """
        ...

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        """One schedule, with its last run."""
        ...

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name (read in bounded steps)."""
        ...

    async def schedules_version(self) -> int:
        """The change counter (cheap: a scheduler polls it)."""
        ...

    async def changed_schedules(self, since_version: int) -> ScheduleChanges:
        """What changed after `since_version` (0: everything). A name removed and added
        again since is in `changed` only."""
        ...

    async def schedule_history(
        self, name: str, limit: int = 50
    ) -> tuple[list[ScheduleRun], list[SkippedTicks]]:
        """The schedule's recent runs and skips, newest first (empty when it does not
        exist)."""
        ...

    async def advance_schedules(
        self, steps: Sequence[ScheduleStep], fence: int | None, now_ms: int | None
    ) -> list[TickOutcome]:
        """Apply steps, each one atomic on its own (see TickStep); one outcome per step.

        `fence` is the caller's scheduler lease fence; None (allowed only for BACKFILL and
        MANUAL steps, from operators) skips the fence check. A given fence is checked for
        every step, and only a step that wrote (DONE) raises the highest fence seen. A
        FIRE, FIRE_BUFFERED, BACKFILL or MANUAL step enqueues its job exactly as
        ``enqueue_jobs`` would (waking workers), adds a run to the log and, but for MANUAL,
        the tick to the fired ticks; an id that exists already is not enqueued again, the
        step is still DONE and its run recorded. A step's `skipped` is recorded when the step
        is DONE. Steps of one schedule are applied in order; each step's outcome is decided
        in the order GONE, FENCED, PAUSED, STALE.

        Raises ValueError (a caller's bug; nothing written) for a fence of None with a FIRE,
        SKIP, BUFFER or FIRE_BUFFERED step, a FIRE, FIRE_BUFFERED, BACKFILL or MANUAL step
        without a job, a SKIP or BUFFER step with one, or `skipped` ticks not below the
        step's tick. Raises EnqueueError (nothing written) for a job that enqueue_jobs would
        refuse, or one whose queue is not the schedule's when the call begins; a schedule
        moved to another queue while the call runs gets GONE.
        """
        ...

    async def acquire_scheduler_lease(
        self, holder: str, lease_ms: int, now_ms: int | None
    ) -> SchedulerLease | None:
        """Take the leadership when it is free or its lease passed (a new fence, even for
        the holder whose lease it was), or renew it when `holder` has it (the same fence);
        None when another holder has it. A lease holds while now <= deadline_ms."""
        ...

    async def release_scheduler_lease(self, holder: str) -> bool:
        """Give the leadership up at shutdown (so a standby takes over at once); False when
        `holder` did not have it."""
        ...

    async def scheduler_lease(self) -> SchedulerLease | None:
        """Who leads now (None: nobody, or the lease passed)."""
        ...


class BatchEvent(StrEnum):
    """When a batch callback of a workflow runs (``WorkflowJob.callback``)."""

    #: Once every member succeeded.
    SUCCESS = "success"
    #: Once every member ended, whatever its state.
    COMPLETE = "complete"
    #: Once the first member ends dead.
    FAILURE = "failure"


class ResultShape(StrEnum):
    """What a workflow's result is, from its output jobs."""

    #: The result of its one output job (a chain's last link, a chord's callback).
    ONE = "one"
    #: The list of its output jobs' results, in order (a group).
    LIST = "list"


@dataclass(frozen=True, kw_only=True, slots=True)
class Edge:
    """A dependency: the child waits for `parent` (in `queue`) to end."""

    parent: JobId
    queue: QueueName
    #: The child runs whatever terminal state the parent ends in (and sees its error);
    #: otherwise a parent ending dead, cancelled or upstream_failed makes it upstream_failed.
    allow_failed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowJob:
    """One job of a workflow, with the parents it waits for, in order."""

    #: The job; its ``workflow`` must be the workflow's id.
    job: NewJob
    #: Parents inside this workflow or outside it (any existing job, any queue), in order:
    #: a chord callback's results come in this order. Empty: a root, queued at once.
    parents: tuple[Edge, ...] = ()
    #: A batch callback: released by the members' counts, not by parents (then `parents`
    #: must be empty). Members are the workflow's jobs that are not callbacks.
    callback: BatchEvent | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class NewWorkflow:
    """A whole workflow as a producer hands it over (one ``enqueue_workflow``)."""

    #: ``wf_<hex>``, or the dependent's job id for a plain ``enqueue(depends_on=...)``.
    id: str
    #: What built it (``chain``, ``group``, ``chord``, ``batch``, ``depends``, ``dag``),
    #: shown by status and the CLI.
    kind: str
    #: Every job, parents before children is not required (the graph is checked whole).
    jobs: Sequence[WorkflowJob]
    #: The jobs whose results make the workflow's result, in order.
    outputs: tuple[JobId, ...]
    shape: ResultShape = ResultShape.ONE
    #: An open batch: ``add_to_workflow`` takes more jobs until ``close_workflow``; its
    #: callbacks are not released before the close.
    open: bool = False
    created_at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowRecord:
    """A workflow's own state, as ``get_workflow`` reads it."""

    id: str
    kind: str
    #: Jobs in the workflow (callbacks included) and how many of them have ended.
    total: int
    ended: int
    #: Ends taken in so far, by terminal state (only states with a count > 0).
    counts: Mapping[str, int]
    #: Still taking jobs (an open batch not closed yet).
    open: bool
    #: Being written by ``enqueue_workflow`` (nothing in it runs yet).
    creating: bool
    outputs: tuple[tuple[JobId, QueueName], ...]
    shape: ResultShape
    created_at_ms: int
    #: When its last job ended (every job ended and the batch closed), else None.
    finished_at_ms: int | None
    #: The first job that ended dead, cancelled or upstream_failed, with its error.
    first_failure: tuple[JobId, str] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowNode:
    """One job of a workflow with its edges and its record's current state."""

    job_id: JobId
    queue: QueueName
    task: TaskName
    #: The record's status; None when the record is gone (expired or purged).
    status: JobStatus | None
    parents: tuple[Edge, ...]
    callback: BatchEvent | None
    #: The record's error (upstream_failed: ``upstream_failed: <id> ended dead: <error>``).
    error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ParentOutcome:
    """How one parent of a job ended, read from its record."""

    job_id: JobId
    queue: QueueName
    #: None when the record is gone (its result expired, or it was purged).
    status: JobStatus | None
    #: Encoded result when it succeeded.
    result: bytes | None
    error: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchSummary:
    """What a batch callback gets: how the members ended."""

    #: Members (jobs that are not callbacks) and their ends by terminal state.
    total: int
    counts: Mapping[str, int]
    #: Members that ended dead, cancelled or upstream_failed (at most ``BATCH``, in the order
    #: they ended), and how many there are in all.
    failed_ids: tuple[JobId, ...]
    failed: int


class Workflows(Protocol):
    """Jobs that wait for other jobs: graphs of dependencies, released in the broker.

    A workflow is a set of jobs linked by edges parent → child (``Edge``); parents may be
    jobs of the workflow or any existing job of any queue. A job with parents is
    ``waiting`` until each parent has ended and the edge is satisfied: the parent succeeded,
    or it ended in any terminal state on an edge with ``allow_failed``. Then it is queued
    (or scheduled, when its ``run_at_ms`` is still ahead) exactly once. A parent that ends
    dead, cancelled or upstream_failed on an edge without ``allow_failed`` makes the child
    ``upstream_failed`` with the error ``upstream_failed: <parent id> ended <state>:
    <parent error>`` (no ``: <parent error>`` when the parent has none; the parent's error
    cut to 1,000 bytes, then ``...``), and transitively its own children the same way (each
    naming its own parent). A failed attempt that will be retried ends nothing. A dead job
    retried later (``retry_dead``) does not bring back dependents already upstream_failed.

    Atomic steps (Redis keeps dependency state in the workflow's own slot, so each step
    touches one slot and this holds on Redis Cluster): a job that ends (``complete_jobs``,
    ``fail_jobs`` to dead, ``cancel_job``, reclaim or claim to dead, an upstream_failed
    release) notes its end in its queue's *outbox* in the same step, when it belongs to a
    workflow or a workflow watches it (``notify``). ``settle_workflows`` takes ended jobs
    from the outbox, applies each end to each workflow once (idempotent: the workflow keeps
    which ends it took in), releases the children it decided, and only then removes the
    outbox entry; a caller that dies half-way leaves the entry, and the next settle (any
    worker's, replaying entries older than a few seconds) finishes it. Two parents ending
    at the same instant therefore never lose the release nor release a child twice. A
    broker may do all of it in the end's own step (SQLite does); its ``settle_workflows``
    then has nothing left to do.

    Records: a workflow job's record is kept for at least ``WORKFLOW_KEEP_MS`` after it
    ends (or its result TTL when that is longer), so children that start later read their
    parents' results; the workflow's own keys are kept as long after its last job ended.
    """

    async def enqueue_workflow(self, workflow: NewWorkflow, now_ms: int | None) -> bool:
        """Store a whole workflow: every job with parents ``waiting``, the others queued
        (or scheduled); True when created, False when a workflow of that id exists (nothing
        written; a workflow left half-written by a crashed call is finished instead, so a
        retry of the same call is safe).

        Jobs are written as ``enqueue_jobs`` would (a job id that exists already is refused,
        see below). Nothing runs before the whole workflow is written: a crash half-way
        leaves it ``creating`` with nothing runnable, and ``tend_workflows`` deletes it
        after ``WORKFLOW_CREATE_GRACE_MS``. An external parent that has already ended
        counts at once (succeeded: satisfied; dead, cancelled or upstream_failed: the child
        fails at once unless ``allow_failed``).

        Raises WorkflowError (nothing written) for: an external parent that does not exist
        in its queue; a job whose id exists already; a job whose ``workflow`` is not the
        workflow's id; a parent listed twice for one job; an edge to a job of the workflow
        under another queue; a cycle; a callback with parents; outputs that are not jobs
        of the workflow; more than ``WORKFLOW_MAX_JOBS`` jobs; no jobs. Raises
        EnqueueError as ``enqueue_jobs`` does for a job it would refuse.
        """
        ...

    async def add_to_workflow(
        self, workflow_id: str, jobs: Sequence[WorkflowJob], now_ms: int | None
    ) -> None:
        """Add jobs to an open batch (their parents may be earlier jobs of it, or external
        ones); the batch's size grows in the same step, so its callbacks wait for them.

        Raises WorkflowNotFoundError when there is no such workflow, WorkflowError (nothing
        written) when it is not open or for any reason ``enqueue_workflow`` gives, or when
        the workflow would grow past ``WORKFLOW_MAX_JOBS``. Safe to retry after a
        BrokerError (idempotent by job ids); jobs of a call that died half-way are written
        or dropped whole by ``tend_workflows``.
        """
        ...

    async def close_workflow(self, workflow_id: str, now_ms: int | None) -> bool:
        """Close an open batch: no more jobs; its callbacks may now be released (at once
        when every member has ended). False when it was closed already (or never open);
        raises WorkflowNotFoundError when there is no such workflow."""
        ...

    async def settle_workflows(
        self, queue: QueueName, now_ms: int | None, *, older_than_ms: int = 0
    ) -> int:
        """Apply the ends waiting in `queue`'s outbox (those noted at least
        `older_than_ms` ago) to their workflows and release what they decide, in bounded
        steps; returns how many ends were settled. Idempotent and safe to run from many
        workers at once."""
        ...

    async def tend_workflows(self, now_ms: int | None) -> int:
        """Maintenance: delete workflows left ``creating`` longer than
        ``WORKFLOW_CREATE_GRACE_MS`` (their jobs never ran), finish or drop additions left
        half-written as long, and release what a crashed settle decided but did not
        release; returns how many workflows it touched."""
        ...

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's state and counts (cheap: one slot), or None."""
        ...

    async def workflow_nodes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[WorkflowNode]:
        """The workflow's jobs in the order they were added, with their edges and current
        states (records read in bounded steps); empty when there is no such workflow."""
        ...

    async def parent_outcomes(
        self,
        job_id: JobId,
        queue: QueueName,
        offset: int = 0,
        limit: int = BATCH,
        *,
        workflow_id: str | None = None,
    ) -> list[ParentOutcome]:
        """The job's parents in edge order, each as its record now says (a page of at most
        `limit`; the caller pages on for more): how the worker builds a chain link's or a
        chord callback's input without one huge call. Empty for a job without parents.
        `workflow_id` (the job's ``workflow``, which a worker has from its claim) saves the
        broker looking it up; it must be the job's own workflow."""
        ...

    async def output_outcomes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[ParentOutcome]:
        """The workflow's outputs in order, each as its record now says (a page of at most
        `limit`): how ``result()`` of a 10,000-job group reads its list in a few calls.
        Empty when there is no such workflow."""
        ...

    async def batch_summary(self, workflow_id: str) -> BatchSummary | None:
        """How the workflow's members ended so far (a batch callback's input), or None."""
        ...

    async def cancel_workflow(self, workflow_id: str, now_ms: int | None) -> int:
        """Cancel every job of the workflow that has not ended (scheduled, waiting,
        queued, failed awaiting a retry, running: fenced off as ``cancel_job`` does) and
        settle: their dependents end upstream_failed; callbacks not yet released end
        cancelled. The caller tells the workers of the running ones (their records keep
        the holder). Returns how many jobs it cancelled; raises WorkflowNotFoundError when
        there is no such workflow."""
        ...


class FlowControl(Protocol):
    """The flow-control rules a queue's claims and enqueues apply, and what they did.

    Rules are per task and per queue (a task's limits count its jobs in that queue); code
    defines them (``@app.task(concurrency=..., rate_limit=..., key=...)``), a worker
    stores them for every queue it serves when it starts, and an app before its first
    enqueue of a ruled task into a queue. A job is put in its task's lane when the task has
    rules at the time it is made ready; a task that gains its first rules (a limit set at
    runtime) takes its jobs already ready into its lanes too (scheduled and retrying ones
    keep the plain set on Redis, are routed when due on SQLite).
    """

    async def set_rules(self, queue: QueueName, rules: Sequence[TaskRules]) -> None:
        """Store these tasks' rules in `queue` (replacing theirs; other tasks keep theirs).

        A rule that is no longer ``active`` removes the task's rules: its lanes drain
        without limits. A task that had no rules here takes its ready jobs of the plain
        ready set into its lanes (bounded steps after the rules are stored). A changed
        limit applies from the next claim: a raised concurrency unparks the lanes it
        parked, a lowered one lets running jobs finish.
        """
        ...

    async def get_rules(self, queue: QueueName) -> list[TaskRules]:
        """The rules stored in `queue`, by task name."""
        ...

    async def flow_stats(self, queue: QueueName) -> FlowStats:
        """Counters and the current state of `queue`'s flow control."""
        ...


class ControlListener(Protocol):
    """One worker's subscription to the control channel (see ControlChannel)."""

    #: How many times the subscription was made again after it was lost (messages sent
    #: meanwhile may be lost: the worker reconciles at once when this moves).
    reconnects: int

    async def subscribe(self) -> None:
        """Make the subscription now (``next_message`` makes it too): every message sent
        after this returns reaches the listener while its connection holds. Raises
        BrokerError when the broker cannot be reached."""
        ...

    async def next_message(self, timeout_s: float) -> ControlMessage | None:
        """The next message for this worker (or for all), None when `timeout_s` passed.
        A lost connection is re-established inside (``reconnects`` moves); messages sent
        meanwhile may be lost (the durable paths cover what matters: see ControlChannel).
        Raises BrokerError while the broker cannot be reached; a message that cannot be
        read is skipped."""
        ...

    async def close(self) -> None:
        """Unsubscribe."""
        ...


class ControlChannel(Protocol):
    """Messages from operators to running workers, and their replies.

    Live delivery (Redis pub/sub; on SQLite a table the listener watches) reaches a
    connected worker within milliseconds. Nothing depends on it alone: a cancelled job is
    cancelled in the broker first (``cancel_job``), and a worker that missed the message
    finds the job gone from its held jobs at its next reconciliation; a configuration
    change bumps the config version that workers poll.
    """

    async def send_control(self, message: ControlMessage) -> int:
        """Publish a message; returns how many listeners received it live (0 is not an
        error: SQLite cannot know who will read its row and always answers 0)."""
        ...

    def control_listener(self, worker_id: WorkerId) -> ControlListener:
        """Subscribe to the messages for `worker_id` and for ALL_WORKERS."""
        ...

    async def put_reply(self, request_id: str, body: bytes, ttl_ms: int) -> None:
        """Answer a request (kept `ttl_ms` for the asker to take)."""
        ...

    async def take_reply(self, request_id: str, timeout_s: float) -> bytes | None:
        """Wait (without sleep-polling on Redis) for the answer to a request; None when
        none came in time."""
        ...


class RuntimeConfig(Protocol):
    """The configuration operators change at runtime, with its history.

    One versioned document (see corq/control.py, ConfigScope): workers poll
    ``config_version`` (cheap) and read it again when it moved. Entries override the
    code's defaults field by field; removing a field gives the code default back.
    """

    async def change_config(
        self,
        scope: ConfigScope,
        name: str,
        values: Mapping[str, str | None],
        who: str,
        now_ms: int | None,
    ) -> int:
        """Set fields of one entry (JSON texts; None removes a field) in one atomic step
        with their history records (one ConfigChange per field that changed); returns the
        new version (unchanged when nothing changed). A queue's ``paused`` also closes or
        opens the queue's claims: from the return on, no claim hands out its jobs (running
        ones finish)."""
        ...

    async def read_config(self) -> ConfigSnapshot:
        """The whole configuration at its current version."""
        ...

    async def config_version(self) -> int:
        """The current version (0 when nothing was ever set)."""
        ...

    async def config_history(
        self,
        limit: int = 100,
        before_version: int | None = None,
        scope: ConfigScope | None = None,
        name: str | None = None,
    ) -> list[ConfigChange]:
        """Changes, newest first (bounded: the oldest beyond CONFIG_HISTORY_KEEP go)."""
        ...


class Breakers(Protocol):
    """Circuit breakers per task, shared by every worker (see corq.control.Breaker)."""

    async def breaker_permit(
        self, task: TaskName, rule: Breaker, now_ms: int | None
    ) -> BreakerPermit:
        """May a job of `task` start now? Closed: yes. Open before ``until_ms``: no. Open
        after it: this caller gets the one probe (half-open, the permit lapses after
        `rule.reset`), everyone else waits."""
        ...

    async def breaker_outcome(
        self, task: TaskName, rule: Breaker, ok: bool, probe: bool, now_ms: int | None
    ) -> BreakerState:
        """Count an attempt's outcome: a failure within the window (``rule.failures`` of
        them open the circuit for ``rule.reset``); a probe's success closes it, its failure
        opens it again."""
        ...

    async def breaker_states(
        self, tasks: Sequence[TaskName] | None = None, *, now_ms: int | None = None
    ) -> list[BreakerState]:
        """The circuits (every task that has one when None; a task without one reads as
        closed); a closed circuit's failures are those within its window at `now_ms`."""
        ...

    async def reset_breaker(self, task: TaskName) -> bool:
        """Close a circuit by hand; False when the task had none."""
        ...


class EventLog(Protocol):
    """The bounded log of lifecycle events, and each job's attempt history.

    Every state change is appended in the same atomic step as the change (see docs/design.md,
    "Operations"); the log keeps about ``events_max`` events per queue (older ones are
    trimmed). Cursors are opaque strings.
    """

    async def read_events(
        self,
        cursor: str | None,
        *,
        queues: Sequence[QueueName] | None = None,
        limit: int = 100,
        block_s: float = 0.0,
    ) -> EventPage:
        """Events after `cursor` (None: from the oldest kept), oldest first, of the given
        queues (all known when None); with `block_s` waits that long for the first one
        when none is there yet (without sleep-polling on Redis)."""
        ...

    async def events_cursor(self, queues: Sequence[QueueName] | None = None) -> str:
        """A cursor at the end of the log now (``--follow`` from now on)."""
        ...

    async def job_attempts(self, job_id: JobId, queue: QueueName) -> list[Attempt]:
        """The job's attempts, first first (kept as long as its record)."""
        ...


class Backend(
    JobStore,
    Claims,
    WorkerRegistry,
    Admin,
    DeadLetters,
    ScheduleStore,
    Workflows,
    FlowControl,
    WorkerFacts,
    Breakers,
    RuntimeConfig,
    ControlChannel,
    EventLog,
    Protocol,
):
    """A whole broker: every port, and the connection they share.

    Code that needs only one role takes that port (the client a JobStore, say), so a
    feature's new methods land in the port it belongs to (see docs/design.md, "Ports").
    A new port joins this union when both brokers implement it.
    """

    async def ping(self) -> None:
        """Raise BrokerError unless the broker answers."""
        ...

    def clone(self) -> Backend:
        """A new backend on the same store with its own connections (another thread/loop)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
