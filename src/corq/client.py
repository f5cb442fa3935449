"""The producer side: send jobs, look them up, wait for results, steer dead letters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import msgspec

from corq.aio import reraise_if_cancelling
from corq.backends.base import (
    HOLDER_SEPARATOR,
    WORKFLOW_MAX_JOBS,
    Backend,
    ControlMessage,
    NewJob,
    QueueStats,
)
from corq.canvas import Batch, Canvas, Chain, Chord, Flow, Group, Workflow
from corq.control import ControlKind
from corq.errors import (
    ArgumentError,
    BrokerDataError,
    BrokerError,
    FlowRuleError,
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    JobNotFoundError,
    ResultTimeoutError,
    SerializationError,
    UpstreamFailedError,
)
from corq.flow import Dedupe, FlowStats, Outcome, TaskRules
from corq.job import TERMINAL_STATES, Job, JobStatus
from corq.limits import check_payload_size, check_priority
from corq.overrides import effective_rules
from corq.producer_checks import (
    check_count,
    check_job_id,
    check_job_ids,
    check_lookup_id,
    check_timeout,
    flow_directives,
    run_at_ms,
    str_list,
)
from corq.serializers import Serializer
from corq.spec import (
    DependencyLike,
    EnqueueOptions,
    JobSpec,
    check_queue_name,
    specs_list,
)
from corq.types import Clock, JobId, QueueName, TaskName
from corq.workflow import Inputs
from corq.workflow_sender import WorkflowSender
from corq.workflows import BatchHandle, WorkflowHandle

if TYPE_CHECKING:
    from corq.task import Task

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
#: A handle's result type: covariant, like a spec's.
R_co = TypeVar("R_co", covariant=True)

#: How long a producer keeps retrying while the broker is unreachable before raising.
ENQUEUE_RETRY_S = 30.0


class JobHandle(Generic[R_co]):
    """A reference to one job, returned by enqueue; R is what its result decodes to
    (Any for a handle made from an id, or for a task known only by name)."""

    __slots__ = ("_client", "id", "outcome", "queue", "task")

    def __init__(
        self,
        client: Client,
        job_id: JobId,
        queue: QueueName,
        task: TaskName,
        outcome: Outcome | None = None,
    ) -> None:
        self._client = client
        #: Job id: the job the broker named, which is an existing one when the enqueue
        #: found its ``unique_key`` taken (see `outcome`).
        self.id = job_id
        #: Queue the job was sent to.
        self.queue = queue
        #: Task name.
        self.task = task
        #: What the enqueue did (``created``, ``existing``, ``debounced``...); None for a
        #: handle made from an id.
        self.outcome = outcome

    def __repr__(self) -> str:
        shown = "" if self.outcome is None else f" outcome={self.outcome}"
        return f"<JobHandle {self.task} id={self.id} queue={self.queue}{shown}>"

    @property
    def created(self) -> bool:
        """True when the enqueue wrote a new job (False: it returned an existing one, moved
        or changed it, or dropped the call)."""
        return self.outcome is Outcome.CREATED

    async def info(self) -> Job:
        """The job's current record."""
        job = await self._client.get_job(self.id, self.queue)
        if job is None:
            raise JobNotFoundError(f"job {self.id} not found (finished and expired, or purged)")
        return job

    async def status(self) -> JobStatus:
        """The job's current state."""
        return (await self.info()).status

    async def result(self, timeout: float | None = None) -> R_co:
        """Wait for the job to end and return its result; raise its error if it died."""
        result: R_co = await self._client.wait_result(self.id, self.queue, timeout=timeout)
        return result

    async def cancel(self) -> bool:
        """Cancel the job if it has not ended (a running one is stopped on its worker);
        True when it was cancelled."""
        return await self._client.cancel(self.id, self.queue)


class Client:
    """Producer API over one broker connection (bound to one event loop)."""

    def __init__(
        self,
        backend: Backend,
        *,
        serializer: Serializer,
        clock: Clock,
        max_payload_bytes: int,
        default_queue: QueueName = "default",
        registry: Mapping[TaskName, Task[Any, Any]] | None = None,
        max_workflow_jobs: int = WORKFLOW_MAX_JOBS,
    ) -> None:
        self.backend = backend
        self.serializer = serializer
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.default_queue = default_queue
        self.registry = registry or {}
        #: Most jobs one workflow may hold (callbacks and batch additions included).
        self.max_workflow_jobs = max_workflow_jobs
        self._workflows = WorkflowSender(self)
        #: (queue, task) pairs whose rules this client stored (see `store_rules`).
        self._rules_stored: set[tuple[QueueName, TaskName]] = set()

    async def enqueue_calls(
        self,
        task: Task[Any, R],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        options: EnqueueOptions,
    ) -> list[JobHandle[R]]:
        """Validate and send calls of a registered task (one round trip per batch)."""
        if options.job_id is not None and len(calls) > 1:
            raise ArgumentError("job_id can only be given when enqueueing one job")
        if options.depends_on:  # each job waits on its own: one workflow per job
            specs: list[JobSpec[R]] = [
                JobSpec(task=task.name, args=tuple(args), kwargs=kwargs, options=options)
                for args, kwargs in calls
            ]
            return await self.enqueue_many(specs)
        queue = check_queue_name(task.options.queue if options.queue is None else options.queue)
        priority = task.options.priority if options.priority is None else options.priority
        checked = self._check_options(options, priority, task)
        payloads = [task.encode_payload(args, kwargs) for args, kwargs in calls]
        keys = [task.key_of(args, kwargs) for args, kwargs in calls]
        jobs = self._new_jobs(task.name, queue, payloads, checked, keys=keys)
        return await self._send(jobs)

    @overload
    async def enqueue(self, spec: JobSpec[R], /) -> JobHandle[R]: ...

    @overload
    async def enqueue(
        self,
        task_name: TaskName,
        /,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: QueueName | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        job_id: JobId | None = None,
        priority: int | None = None,
        depends_on: Sequence[DependencyLike] = (),
        allow_failed: bool = False,
        unique_key: str | None = None,
        debounce: float | timedelta | None = None,
        max_wait: float | timedelta | None = None,
        cooldown: float | timedelta | None = None,
        expires: float | timedelta | None = None,
    ) -> JobHandle[Any]: ...

    async def enqueue(
        self,
        target: JobSpec[Any] | TaskName,
        /,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: QueueName | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        job_id: JobId | None = None,
        priority: int | None = None,
        depends_on: Sequence[DependencyLike] = (),
        allow_failed: bool = False,
        unique_key: str | None = None,
        debounce: float | timedelta | None = None,
        max_wait: float | timedelta | None = None,
        cooldown: float | timedelta | None = None,
        expires: float | timedelta | None = None,
    ) -> JobHandle[Any]:
        """Send a spec, or a job by task name (validated when the task is registered in
        this process; otherwise sent to the default queue unless `queue` says).

        With `depends_on` (job handles or ids, any queue) the job waits until each of them
        succeeded (ended, with `allow_failed`), then runs once; see EnqueueOptions.
        """
        if isinstance(target, JobSpec):
            options = (queue, delay, eta, job_id, priority, depends_on or None, allow_failed)
            flow = (unique_key, debounce, max_wait, cooldown, expires)
            if args or kwargs or options != (None,) * 6 + (False,) or flow != (None,) * 5:
                raise ArgumentError("a job spec carries its own arguments and options")
            spec = target
        else:
            spec = JobSpec(
                task=target,
                args=args,  # type: ignore[arg-type]  # a list is accepted and made a tuple
                kwargs={} if kwargs is None else kwargs,
                options=EnqueueOptions(
                    delay=delay,
                    eta=eta,
                    job_id=job_id,
                    priority=priority,
                    queue=queue,
                    depends_on=depends_on,  # type: ignore[arg-type]  # made Dependency values
                    allow_failed=allow_failed,
                    unique_key=unique_key,
                    debounce=debounce,
                    max_wait=max_wait,
                    cooldown=cooldown,
                    expires=expires,
                ),
            )
        return (await self.enqueue_many([spec]))[0]

    async def enqueue_many(self, specs: Sequence[JobSpec[R]]) -> list[JobHandle[R]]:
        """Send specs, of any tasks and queues, in one pipelined broker call; every spec is
        checked before anything is sent.

        A spec with ``depends_on`` is sent as a workflow of its own (one more call each),
        after the others, so it may depend on them; its arguments are checked with the
        others', its dependencies when it is sent (an unknown one raises WorkflowError
        then, after the specs before it were sent).
        """
        listed = specs_list(specs)
        jobs = self.encode_specs([(spec, None) for spec in listed])
        dependents = [
            (index, spec, job)
            for index, (spec, job) in enumerate(zip(listed, jobs, strict=True))
            if spec.options.depends_on
        ]
        if not dependents:
            return await self._send(jobs)
        plain = [job for spec, job in zip(listed, jobs, strict=True) if not spec.options.depends_on]
        handles: list[JobHandle[Any]] = [*await self._send(plain)] if plain else []
        for index, spec, job in dependents:  # ascending: each lands at its own place
            handles.insert(index, await self._workflows.send_dependent(spec, job))
        return handles

    def encode_spec(
        self, spec: JobSpec[Any], *, workflow: str | None = None, inputs: Inputs | None = None
    ) -> NewJob:
        """The broker record of a spec: checked and encoded as its registered task says.

        A workflow job with `inputs` is checked as called with its parents' results
        prepended (only a task registered here can be checked).
        """
        return self.encode_specs([(spec, inputs)], workflow=workflow)[0]

    def encode_specs(
        self, specs: Sequence[tuple[JobSpec[Any], Inputs | None]], *, workflow: str | None = None
    ) -> list[NewJob]:
        """`encode_spec` for many specs: the options they share are checked once (a
        workflow's thousands of jobs mostly share one task's), and every job gets the same
        enqueue time."""
        # By the options' identity: specs made alike share one object (a task's defaults,
        # a bound task's), and options holding a bad value may not even hash.
        shared: dict[tuple[TaskName, int], tuple[QueueName, _Checked]] = {}
        jobs = []
        for spec, inputs in specs:
            task = self.registry.get(spec.task)
            shared_by = (spec.task, id(spec.options))
            known = shared.get(shared_by)
            if known is None:
                known = shared[shared_by] = self._queue_and_options(task, spec.options)
            queue, checked = known
            if workflow is not None or spec.options.depends_on:
                _refuse_dedupe_in_workflow(spec)
            if task is None:
                payload, key = self._encode_unregistered(spec), None
            else:
                given = None if inputs is None else _INPUT_WORDS[inputs]
                payload = task.encode_payload(spec.args, dict(spec.kwargs), takes_input=given)
                key = _job_key(task, spec, given)
            jobs += self._new_jobs(
                spec.task, queue, [payload], checked, workflow=workflow, inputs=inputs, keys=[key]
            )
        return jobs

    def _queue_and_options(
        self, task: Task[Any, Any] | None, options: EnqueueOptions
    ) -> tuple[QueueName, _Checked]:
        queue, priority = (
            (self.default_queue, 0) if task is None else (task.options.queue, task.options.priority)
        )
        checked = self._check_options(
            options, priority if options.priority is None else options.priority, task
        )
        return check_queue_name(queue if options.queue is None else options.queue), checked

    def _encode_unregistered(self, spec: JobSpec[Any]) -> bytes:
        try:
            return self.serializer.dumps({"args": list(spec.args), "kwargs": dict(spec.kwargs)})
        except SerializationError as exc:
            raise SerializationError(f"task {spec.task!r}: {exc}") from exc

    def _check_options(
        self, options: EnqueueOptions, priority: object, task: Task[Any, Any] | None
    ) -> _Checked:
        """The options every job of one enqueue shares, checked before anything is encoded
        or sent, so both brokers give the same answer to the same input."""
        now = self.clock.now_ms()
        flow = flow_directives(
            options,
            now_ms=now,
            run_at_ms=run_at_ms(now, options),
            **({} if task is None else _task_dedupe(task)),
        )
        return _Checked(
            job_id=None if options.job_id is None else check_job_id(options.job_id),
            priority=check_priority(priority, ArgumentError),
            enqueued_at_ms=now,
            run_at_ms=flow.run_at_ms,
            unique_key=flow.unique_key,
            start_by_ms=flow.start_by_ms,
            dedupe=flow.dedupe,
        )

    def _new_jobs(
        self,
        task_name: TaskName,
        queue: QueueName,
        payloads: list[bytes],
        checked: _Checked,
        *,
        workflow: str | None = None,
        inputs: Inputs | None = None,
        keys: Sequence[str | None],
    ) -> list[NewJob]:
        jobs = []
        for payload, key in zip(payloads, keys, strict=True):
            check_payload_size(task_name, payload, self.max_payload_bytes)
            jobs.append(
                NewJob(
                    id=checked.job_id or uuid.uuid4().hex,
                    task=task_name,
                    queue=queue,
                    payload=payload,
                    priority=checked.priority,
                    enqueued_at_ms=checked.enqueued_at_ms,
                    run_at_ms=checked.run_at_ms,
                    workflow=workflow,
                    inputs=None if inputs is None else inputs.value,
                    key=key,
                    unique_key=checked.unique_key,
                    start_by_ms=checked.start_by_ms,
                    dedupe=checked.dedupe,
                )
            )
        return jobs

    async def _send(self, jobs: list[NewJob]) -> list[JobHandle[Any]]:
        """Admit the jobs; each handle names the job the broker says (an existing one for
        a taken unique key) and what it did."""
        await self.store_rules(jobs)
        admitted = await self.with_retry(lambda: self.backend.admit_jobs(jobs), "enqueue")
        for job, answer in zip(jobs, admitted, strict=True):
            if answer.cancelled is not None:  # OnDuplicate.CANCEL fenced a running one off
                await self.stop_on_worker(answer.cancelled, job.queue)
        return [
            JobHandle(self, answer.job_id, job.queue, job.task, answer.outcome)
            for job, answer in zip(jobs, admitted, strict=True)
        ]

    async def store_rules(self, jobs: Sequence[NewJob]) -> None:
        """Before the first enqueue of a ruled task into a queue, store its rules there
        (once per client, queue and task), so its jobs wait in its lanes even before a
        worker serving the queue started (the worker stores them too)."""
        missing: dict[QueueName, dict[TaskName, TaskRules]] = {}
        for job in jobs:
            if (job.queue, job.task) in self._rules_stored:
                continue
            task = self.registry.get(job.task)
            if task is None or not task.options.rules.active:
                self._rules_stored.add((job.queue, job.task))
                continue
            missing.setdefault(job.queue, {})[job.task] = task.options.rules
        if not missing:
            return
        # The runtime configuration's limits go over the code's: never clobbered by this.
        snapshot = await self.with_retry(self.backend.read_config, "read the configuration")
        for queue, rules in missing.items():
            merged = [effective_rules(r, snapshot) for r in rules.values()]
            await self._set_rules(queue, merged)
            self._rules_stored.update((queue, name) for name in rules)

    async def _set_rules(self, queue: QueueName, rules: list[TaskRules]) -> None:
        await self.with_retry(lambda: self.backend.set_rules(queue, rules), "store rules")

    # -- workflows -------------------------------------------------------------------
    @overload
    async def enqueue_workflow(self, flow: Group[R], /) -> WorkflowHandle[list[R]]: ...

    @overload
    async def enqueue_workflow(self, flow: Chain[R] | Chord[R], /) -> WorkflowHandle[R]: ...

    @overload
    async def enqueue_workflow(self, flow: Workflow, /) -> WorkflowHandle[list[Any]]: ...

    async def enqueue_workflow(self, flow: Flow, /) -> WorkflowHandle[Any]:
        """Send a chain, group, chord or Workflow whole, in one broker call: every job is
        checked first, and nothing is written when one is refused."""
        return await self._workflows.send(flow)

    async def open_batch(self, batch: Batch, /) -> BatchHandle:
        """Create an open batch (``corq.batch(...)``): add jobs to its handle, then close it."""
        return await self._workflows.open(batch)

    async def add_to_batch(
        self, workflow_id: str, items: Sequence[Canvas[Any]]
    ) -> list[JobHandle[Any]]:
        """Add specs or canvases to an open batch (see BatchHandle.add)."""
        return await self._workflows.add(_check_workflow_id(workflow_id), items)

    def workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle on an existing workflow (``wf_...``, or a dependent job's id)."""
        return WorkflowHandle(self, _check_workflow_id(workflow_id))

    def batch(self, workflow_id: str) -> BatchHandle:
        """A handle on an existing batch, to add jobs to or close."""
        return BatchHandle(self, _check_workflow_id(workflow_id))

    async def with_retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry while the broker is unreachable; enqueue is idempotent by job id."""
        deadline = asyncio.get_running_loop().time() + ENQUEUE_RETRY_S
        delay = 0.05
        while True:
            try:
                return await call()
            except BrokerError as exc:
                reraise_if_cancelling()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning(
                    "broker unreachable during %s (%s); retrying in %.2fs", what, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- reading ---------------------------------------------------------------------
    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        """The job's record, or None (every known queue is searched without `queue`)."""
        check_lookup_id(job_id)
        return await self.backend.get_job(
            job_id, None if queue is None else check_queue_name(queue)
        )

    def job(
        self,
        job_id: JobId,
        queue: QueueName,
        task: TaskName = "",
        outcome: Outcome | None = None,
    ) -> JobHandle[Any]:
        """A handle on an existing job (checked here, so its calls never reach the broker
        with a name no broker could hold)."""
        check_lookup_id(job_id)
        return JobHandle(self, job_id, check_queue_name(queue), task, outcome)

    async def wait_result(
        self, job_id: JobId, queue: QueueName, *, timeout: float | None = None
    ) -> Any:
        """Wait for the job's end without polling; its result, or its error raised."""
        check_lookup_id(job_id)
        queue = check_queue_name(queue)
        limit_s = check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s
        while True:
            remaining = 60.0 if deadline is None else deadline - loop.time()
            job = await self.backend.wait_for_job(job_id, queue, max(0.0, min(remaining, 60.0)))
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            if job.status in TERMINAL_STATES:
                return self.outcome(job)
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeoutError(f"job {job_id} still {job.status} after {timeout}s")

    def outcome(self, job: Job) -> Any:
        """An ended job's result, or its end raised: JobCancelledError, UpstreamFailedError
        (a dependency failed, the job never ran; the error names it), JobExpiredError (not
        started by its deadline, or dropped over a rate limit; the error says which),
        JobFailedError."""
        if job.status is JobStatus.SUCCEEDED:
            return self._result(job)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelledError(f"job {job.id} was cancelled")
        if job.status is JobStatus.UPSTREAM_FAILED:
            raise UpstreamFailedError(f"job {job.id} ({job.task}) never ran: {job.error}")
        if job.status is JobStatus.EXPIRED:
            raise JobExpiredError(f"job {job.id} ({job.task}) expired, never ran: {job.error}")
        raise JobFailedError(
            f"job {job.id} ({job.task}) {job.status} after {job.attempt} attempt(s): {job.error}",
            traceback=job.traceback,
        )

    def _result(self, job: Job) -> Any:
        return self.result_of(job.id, job.task, job.result)

    def result_of(self, job_id: JobId, task_name: TaskName, result: bytes | None) -> Any:
        """A succeeded job's stored result as its task's return hint says; a record that
        does not decode is the broker's data problem, reported as such rather than as a
        decoder's error."""
        task = self.registry.get(task_name)
        result_type = task.return_type if task is not None and task.return_type else Any
        try:
            return self.serializer.loads(result or b"null", result_type)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise BrokerDataError(
                f"job {job_id} ({task_name}) succeeded but its result cannot be decoded "
                f"with the {self.serializer.name} serializer: {exc}"
            ) from exc

    async def cancel(self, job_id: JobId, queue: QueueName) -> bool:
        """Cancel a job that has not ended; True when it was cancelled.

        The broker cancels it at once (a running one is fenced off: its worker's outcome
        is refused, retries cannot bring it back); a running one is then stopped on its
        worker by a control message (within milliseconds), or by that worker's next
        reconciliation when the message is lost. A workflow's job (or one a workflow waits
        for) is settled right after, so its dependents end upstream_failed at once; if
        that step fails, the workers' replay of the broker's outbox does it within seconds.
        """
        check_lookup_id(job_id)
        queue = check_queue_name(queue)
        cancelled = await self.backend.cancel_job(job_id, queue, self.clock.now_ms())
        if cancelled:
            await self.stop_on_worker(job_id, queue)
            try:
                await self.backend.settle_workflows(queue, self.clock.broker_now_ms())
            except (BrokerError, BrokerDataError) as exc:
                log.warning("job %s cancelled; its workflows are settled later (%s)", job_id, exc)
        return cancelled

    async def stop_on_worker(self, job_id: JobId, queue: QueueName) -> bool:
        """Tell the worker that held a cancelled job to stop it (the record keeps its
        holder); True when a message was sent. A failure is only logged: the worker's
        reconciliation stops the job anyway."""
        try:
            job = await self.backend.get_job(job_id, queue)
            if job is None or job.status is not JobStatus.CANCELLED or not job.worker_id:
                return False
            worker_id = job.worker_id.split(HOLDER_SEPARATOR, 1)[0]
            message = ControlMessage(
                kind=ControlKind.CANCEL, worker_id=worker_id, job_id=job_id, queue=queue
            )
            await self.backend.send_control(message)
        except (BrokerError, BrokerDataError) as exc:
            log.warning(
                "job %s cancelled; its worker learns it at reconciliation (%s)", job_id, exc
            )
            return False
        return True

    # -- operators -------------------------------------------------------------------
    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        """Counts per queue, in one broker call (every known queue when None)."""
        names = (
            None if queues is None else [check_queue_name(q) for q in str_list(queues, "queues")]
        )
        return await self.backend.queue_stats(names)

    async def flow_stats(self, queue: QueueName) -> FlowStats:
        """What flow control did in a queue: expired, dropped and cooled-down jobs, lanes
        waiting for a slot or a rate, jobs of each limited task and key running now."""
        return await self.backend.flow_stats(check_queue_name(queue))

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        """Dead jobs of a queue, newest first."""
        check_count(offset, "offset")
        check_count(limit, "limit")
        return await self.backend.list_dead(check_queue_name(queue), offset, limit)

    async def retry_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None = None) -> int:
        """Queue dead jobs again with a fresh retry budget (all of the queue's when None)."""
        ids = None if job_ids is None else check_job_ids(job_ids)
        return await self.backend.retry_dead(check_queue_name(queue), ids, self.clock.now_ms())

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None = None) -> int:
        """Delete dead jobs for good (all of the queue's when None)."""
        ids = None if job_ids is None else check_job_ids(job_ids)
        return await self.backend.purge_dead(check_queue_name(queue), ids)

    async def close(self) -> None:
        await self.backend.close()


#: How an enqueue error names what a workflow job will be given.
_INPUT_WORDS = {
    Inputs.FIRST: "a chain link (the previous job's result)",
    Inputs.LIST: "a chord callback (the list of its parents' results)",
    Inputs.SUMMARY: "a batch callback (the batch summary)",
}


def _check_workflow_id(workflow_id: object) -> str:
    check_lookup_id(workflow_id)
    assert isinstance(workflow_id, str)
    return workflow_id


@dataclass(frozen=True, slots=True)
class _Checked:
    """What every job of one enqueue call shares, once checked."""

    job_id: JobId | None
    priority: int
    enqueued_at_ms: int
    run_at_ms: int
    unique_key: str | None
    start_by_ms: int | None
    dedupe: Dedupe | None


def _task_dedupe(task: Task[Any, Any]) -> dict[str, Any]:
    """The task's side of a dedupe: what a duplicate does, and the window after the end."""
    return {
        "on_duplicate": task.options.on_duplicate,
        "unique_for_ms": task.options.unique_for_ms,
    }


def _job_key(task: Task[Any, Any], spec: JobSpec[Any], takes_input: str | None) -> str | None:
    """A spec's fairness key; a workflow job given its parents' results as its first
    argument cannot have one computed now (that argument does not exist yet)."""
    if task.options.key is None:
        return None
    if takes_input is not None:
        raise FlowRuleError(
            f"task {task.name!r} has a key function of its arguments, so it cannot be "
            f"{takes_input}: its first argument is not known when it is sent"
        )
    return task.key_of(spec.args, spec.kwargs)


def _refuse_dedupe_in_workflow(spec: JobSpec[Any]) -> None:
    """Uniqueness, debounce and cooldown return, move or drop a job at enqueue: a
    workflow's job (or one waiting on dependencies) must exist as planned, so they are
    refused there."""
    options = spec.options
    given = [
        name
        for name in ("unique_key", "debounce", "cooldown")
        if getattr(options, name) is not None
    ]
    if given:
        raise FlowRuleError(
            f"task {spec.task!r}: {', '.join(given)} cannot be used in a workflow or with "
            "depends_on (the job must exist as the workflow plans it); enqueue it on its own"
        )
