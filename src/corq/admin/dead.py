"""Dead letters for operators: find them by task, error text and time, look at one, queue
one or all matching a filter again (optionally with edited arguments), purge them.

Everything that touches many jobs walks ``find_dead`` pages (each looks at no more than
BATCH dead letters) and acts on each page's matches in one bounded call, so no call
blocks the broker however many dead letters there are. Edited arguments go through the
client's own checks (``Client.encode_spec``) before anything is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corq.admin.base import AdminBase
from corq.backends.base import BATCH, DeadFilter, DeadPage
from corq.errors import ArgumentError, JobNotFoundError, UnknownTaskError
from corq.job import Job, JobStatus
from corq.names import check_queue_name, check_task_name
from corq.producer_checks import check_job_ids, check_lookup_id, shown
from corq.spec import JobSpec
from corq.types import JobId, QueueName, TaskName
from corq.workflow import Inputs

#: Most jobs one `dead()` page returns.
MAX_PAGE = 10_000
#: Windows (BATCH dead letters each) one `dead()` call looks through at most before it
#: returns what it found with a cursor, so a rare match never makes one call walk a million.
MAX_WINDOWS = 20

#: A time as operators give it: a datetime (naive means UTC) or epoch milliseconds.
Moment = datetime | int


@dataclass(frozen=True, slots=True)
class DeadSelection:
    """A checked filter on one queue's dead letters."""

    queue: QueueName
    where: DeadFilter

    @property
    def filtered(self) -> bool:
        w = self.where
        return any(v is not None for v in (w.task, w.error, w.since_ms, w.until_ms))


class DeadAdmin(AdminBase):
    """The dead-letter calls of `Admin`."""

    async def dead(
        self,
        queue: QueueName | None = None,
        task: TaskName | None = None,
        error: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeadPage:
        """Dead jobs matching every condition given, newest first: at most `limit`, and a
        cursor for the next page (None when there are no more).

        `queue` None: the task's queue when `task` is registered here, else the default
        queue. `error`: a substring of the error, case-insensitive (ASCII letters). `since`
        (inclusive) and `until` (exclusive): when the job died. A page may hold fewer than
        `limit` and still carry a cursor, when matches are rare among many dead letters.
        """
        query = self._query(queue, task, error, since, until)
        _check_limit(limit, 1, MAX_PAGE)
        if cursor is not None and not isinstance(cursor, str):
            raise ArgumentError(f"cursor must be a str from a previous page, got {shown(cursor)}")
        jobs: list[Job] = []
        for _ in range(MAX_WINDOWS):
            page = await self.backend.find_dead(
                query.queue, query.where, cursor, min(BATCH, limit - len(jobs))
            )
            jobs += page.jobs
            cursor = page.cursor
            if cursor is None or len(jobs) >= limit:
                break
        return DeadPage(jobs=jobs, cursor=cursor)

    async def dead_job(self, job_id: JobId, queue: QueueName | None = None) -> Job:
        """One dead job (searched in every queue when `queue` is None); JobNotFoundError
        when there is none by that id in the dead letters."""
        check_lookup_id(job_id)
        job = await self.client.get_job(job_id, None if queue is None else check_queue_name(queue))
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} (unknown id, expired or purged)")
        if job.status is not JobStatus.DEAD:
            raise JobNotFoundError(f"job {job_id!r} is not in the dead letters: it is {job.status}")
        return job

    async def redrive(
        self,
        job_id: JobId,
        queue: QueueName | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one dead job again with a fresh retry budget, with `args` and/or `kwargs`
        replacing its arguments when given (what is not given is kept).

        Edited arguments are encoded with the app's serializer and checked against the
        registered task's signature and hints and the payload limit before anything is
        written: ArgumentError (or SerializationError, PayloadTooLargeError) names what is
        wrong, UnknownTaskError when the task is not registered here. JobNotFoundError
        when the job is not (or no longer) dead.
        """
        job = await self.dead_job(job_id, queue)
        payload = None if args is None and kwargs is None else self._edited(job, args, kwargs)
        moved = await self.backend.redrive_dead(job.queue, job.id, payload, self._now())
        if not moved:
            raise JobNotFoundError(f"job {job_id!r} left the dead letters meanwhile")

    async def redrive_matching(
        self,
        queue: QueueName | None = None,
        task: TaskName | None = None,
        error: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        limit: int | None = None,
    ) -> int:
        """Queue again every dead job matching the filter (at most `limit`), each at most
        once, in bounded steps; returns how many moved."""
        query = self._query(queue, task, error, since, until)
        if not query.filtered and limit is None:
            return await self.backend.retry_dead(query.queue, None, self._now())

        async def act(ids: list[JobId]) -> int:
            return await self.backend.retry_dead(query.queue, ids, self._now())

        return await self._each_page(query, act, limit)

    async def purge(
        self,
        job_ids: Sequence[JobId] | None = None,
        queue: QueueName | None = None,
        task: TaskName | None = None,
        error: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete dead jobs for good: the `job_ids` given, or every one matching the
        filter (at most `limit`; all of the queue's when no filter); returns how many."""
        query = self._query(queue, task, error, since, until)
        if job_ids is not None:
            if query.filtered or limit is not None:
                raise ArgumentError("give job_ids or a filter, not both")
            return await self.backend.purge_dead(query.queue, check_job_ids(job_ids))
        if not query.filtered and limit is None:
            return await self.backend.purge_dead(query.queue, None)

        async def act(ids: list[JobId]) -> int:
            return await self.backend.purge_dead(query.queue, ids)

        return await self._each_page(query, act, limit)

    # -- helpers ---------------------------------------------------------------------
    async def _each_page(
        self, query: DeadSelection, act: Callable[[list[JobId]], Awaitable[int]], limit: int | None
    ) -> int:
        """Walk the matches page by page and `act` on each page's ids (each id once: the
        walk only goes towards older deaths, and the ids acted on are remembered)."""
        if limit is not None:
            _check_limit(limit, 0, 2**62)
        done: set[JobId] = set()
        total, cursor = 0, None
        while limit is None or total < limit:
            want = BATCH if limit is None else min(BATCH, limit - total)
            page = await self.backend.find_dead(query.queue, query.where, cursor, want)
            ids = [job.id for job in page.jobs if job.id not in done]
            if ids:
                done.update(ids)
                total += await act(ids)
            if page.cursor is None:
                break
            cursor = page.cursor
        return total

    def _query(
        self,
        queue: QueueName | None,
        task: TaskName | None,
        error: str | None,
        since: Moment | None,
        until: Moment | None,
    ) -> DeadSelection:
        if task is not None:
            task = check_task_name(task, ArgumentError)
        if error is not None and not isinstance(error, str):
            raise ArgumentError(f"error must be a str (text the error holds), got {shown(error)}")
        since_ms, until_ms = _ms(since, "since"), _ms(until, "until")
        if since_ms is not None and until_ms is not None and since_ms >= until_ms:
            raise ArgumentError(f"since ({since!r}) must be before until ({until!r})")
        where = DeadFilter(task=task, error=error or None, since_ms=since_ms, until_ms=until_ms)
        return DeadSelection(self._queue_of(queue, task), where)

    def _queue_of(self, queue: QueueName | None, task: TaskName | None) -> QueueName:
        if queue is not None:
            return check_queue_name(queue)
        registered = None if task is None else self.app.registry.get(task)
        return registered.options.queue if registered else self.client.default_queue

    def _edited(
        self, job: Job, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> bytes:
        """The payload of `job` with the arguments edited, checked as an enqueue checks it."""
        task = self.app.registry.get(job.task)
        if task is None:
            raise UnknownTaskError(
                f"task {job.task!r} is not registered in this app, so edited arguments "
                "cannot be checked against its signature (load the app that defines it)"
            )
        if args is None or kwargs is None:
            kept_args, kept_kwargs = self._stored_call(job)
            args = kept_args if args is None else args
            kwargs = kept_kwargs if kwargs is None else kwargs
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ArgumentError(f"args must be a list, got {shown(args)}")
        spec: JobSpec[Any] = JobSpec(task=job.task, args=tuple(args), kwargs=kwargs)
        new = self.client.encode_spec(spec, inputs=_inputs(job))
        if new.key != job.key:
            raise ArgumentError(
                f"task {job.task!r}: the edited arguments change the job's fairness key from "
                f"{job.key!r} to {new.key!r}; it waits in its key's lane, so enqueue a new "
                "job instead"
            )
        return new.payload

    def _stored_call(self, job: Job) -> tuple[list[Any], dict[str, Any]]:
        """The arguments the dead job was sent with (to keep the half not edited)."""
        try:
            data = self.client.serializer.loads(job.payload)
        except Exception as exc:  # a decoder's error says what is wrong with the bytes
            raise ArgumentError(
                f"job {job.id!r}: its stored arguments cannot be decoded ({exc}); give both "
                "args and kwargs"
            ) from exc
        if not (
            isinstance(data, dict)
            and isinstance(data.get("args", []), list)
            and isinstance(data.get("kwargs", {}), dict)
        ):
            raise ArgumentError(
                f"job {job.id!r}: its stored payload is not {{'args': [...], 'kwargs': {{...}}}}; "
                "give both args and kwargs"
            )
        return list(data.get("args", [])), dict(data.get("kwargs", {}))

    def _now(self) -> int:
        return self.client.clock.now_ms()


def _inputs(job: Job) -> Inputs | None:
    """What a workflow job is given before its arguments (checked with them)."""
    if job.inputs is None:
        return None
    try:
        return Inputs(job.inputs)
    except ValueError as exc:
        raise ArgumentError(
            f"job {job.id!r}: its record names inputs {job.inputs!r}, which this corq does "
            "not know; its arguments cannot be checked"
        ) from exc


def _ms(value: Moment | None, what: str) -> int | None:
    """A time as epoch ms: a datetime (naive means UTC) or ms already."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        return round(aware.timestamp() * 1000)
    number: object = value  # checked as any value: the CLI and scripts pass what they parsed
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) <= 2**62:
        return number
    raise ArgumentError(f"{what} must be a datetime or epoch milliseconds, got {shown(value)}")


def _check_limit(value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ArgumentError(f"limit must be an integer from {low} to {high:,}, got {shown(value)}")
