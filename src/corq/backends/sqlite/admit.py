"""The enqueue step (``JobStore.admit_jobs``): id, cooldown, uniqueness, debounce, write.

One transaction (BEGIN IMMEDIATE) per call, so processes enqueueing into one file take
turns: a unique key checked here cannot be taken by another writer before this call
commits, and a job later in the call sees what an earlier one did.

A queue's unique keys map to the job holding them (``unique_keys``); whether the key is
taken is read from that job's record, never from the mapping alone: a live job
(scheduled, waiting, queued, running, failed awaiting a retry) holds it, an ended one
holds it until ``finished_at_ms + unique_for_ms``, and a record that is gone (or now
belongs to another key) holds nothing. The mapping's ``until_ms`` is kept by the triggers
of schema.sql, at every end, for the prune at promotion (``prune``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from corq.backends.base import BATCH, NewJob
from corq.backends.sqlite import producer
from corq.backends.sqlite.ends import apply_ends
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, take_numbers
from corq.flow import Dedupe, OnDuplicate, Outcome
from corq.job import JobStatus
from corq.types import JobId, QueueName

#: Statuses of a job that holds its unique key whatever its window.
LIVE = frozenset(
    {
        JobStatus.SCHEDULED,
        JobStatus.WAITING,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.FAILED,
    }
)
#: Statuses of a job that has not started: replace and debounce may still change it.
NOT_STARTED = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED})
#: A dedupe that asks for nothing but uniqueness (a unique key without a dedupe).
_KEEP = Dedupe()

#: What the step did with one job: the job the handle names, and the outcome (the
#: backend builds ``Admitted`` from it, outside the transaction: a plain enqueue holds the
#: write lock for its insert only).
Verdict = tuple[JobId, Outcome] | tuple[JobId, Outcome, JobId]
#: The third item, when there is one: a running job OnDuplicate.CANCEL fenced off.
#: The plain enqueue's two outcomes, bound once: an enum member read through its class
#: costs about half a microsecond on Python 3.11, as much as the rest of the loop.
_CREATED, _EXISTS = Outcome.CREATED, Outcome.EXISTS


def admit_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Verdict]:
    """Store each job, in order, applying its flow-control directives; what happened to
    each (see ``JobStore.admit_jobs``).

    A job without a unique key or a dedupe is written as it is (``producer.write_job``:
    a plain enqueue pays nothing for flow control). Expired records are not deleted here
    (that is promote_due_jobs' bounded work), so an enqueue costs the same however many
    results wait to expire.
    """
    if not jobs:
        return []
    now, clock = advance_clock(conn, max(job.enqueued_at_ms for job in jobs))
    for queue in dict.fromkeys(job.queue for job in jobs):
        conn.execute(Q["queue_touch"], {"queue": queue, "now": now})
    base = take_numbers(conn, len(jobs))
    verdicts: list[Verdict] = []
    write = producer.write_job
    for offset, job in enumerate(jobs, start=1):
        seq = base + offset
        if job.unique_key is None and job.dedupe is None:
            verdicts.append((job.id, _CREATED if write(conn, job, seq, clock) else _EXISTS))
        else:
            verdicts.append(_admit(conn, job, seq, job.enqueued_at_ms, clock))
    return verdicts


def _admit(conn: Conn, job: NewJob, seq: int, now: int, clock: int) -> Verdict:
    """One job with flow-control directives, rule after rule: id, cooldown, uniqueness
    (with debounce), write; `now` is its enqueued_at_ms. A cooldown's window opens for
    every call it does not drop, naming the job that call was answered with."""
    if conn.execute(Q["job_alive"], {"queue": job.queue, "id": job.id, "clock": clock}).fetchone():
        return (job.id, Outcome.EXISTS)
    dedupe = job.dedupe or _KEEP
    cool_key = cooldown_key(job)
    if dedupe.cooldown_ms:
        params = {"queue": job.queue, "key": cool_key, "now": now}
        opener = conn.execute(Q["cooldown_open"], params).fetchone()
        if opener is not None:
            conn.execute(Q["flow_cooled_count"], {"queue": job.queue})
            return (opener[0], Outcome.DROPPED)
    admitted: Verdict
    if job.unique_key is None:
        admitted = (job.id, _write(conn, job, dedupe, seq, now, clock))
    else:
        admitted = _unique(conn, job, dedupe, seq, now, clock)
    if dedupe.cooldown_ms:
        window = {"queue": job.queue, "key": cool_key, "job_id": admitted[0]}
        conn.execute(Q["cooldown_put"], window | {"until_ms": now + dedupe.cooldown_ms})
    return admitted


def cooldown_key(job: NewJob) -> str:
    """The key a cooldown counts calls by: the unique key, or the task's name (after a
    ``\\x1f``, which no unique key holds, so the two never meet)."""
    return job.unique_key if job.unique_key is not None else f"\x1f{job.task}"


@dataclass(frozen=True, slots=True)
class Holder:
    """The job a unique key maps to, as its record says."""

    job_id: JobId
    rowid: int
    status: object
    enqueued_at_ms: object
    #: Ended, but within its unique window (nothing may change it).
    ended: bool


def holder(conn: Conn, queue: QueueName, key: str, now: int, clock: int) -> Holder | None:
    """The job holding `key` in `queue`, or None when the key is free: no mapping, a
    record that is gone or expired or now has another key, an end more than its
    ``unique_for_ms`` ago (or a record that cannot say)."""
    params = {"queue": queue, "key": key, "clock": clock}
    row = conn.execute(Q["unique_holder"], params).fetchone()
    if row is None:
        return None
    job_id, rowid, status, enqueued_at, finished_at, unique_for = row
    if status in LIVE:
        return Holder(job_id, rowid, status, enqueued_at, ended=False)
    if type(finished_at) is int and type(unique_for) is int and finished_at + unique_for > now:
        return Holder(job_id, rowid, status, enqueued_at, ended=True)
    return None


def _unique(conn: Conn, job: NewJob, dedupe: Dedupe, seq: int, now: int, clock: int) -> Verdict:
    """A job with a unique key: written when the key is free, else what its dedupe says
    about the job holding it."""
    assert job.unique_key is not None
    held = holder(conn, job.queue, job.unique_key, now, clock)
    if held is None:
        return (job.id, _write(conn, job, dedupe, seq, now, clock))
    existing = (held.job_id, Outcome.EXISTING)
    if held.ended:
        return existing
    if dedupe.debounce_ms is not None:
        if held.status in NOT_STARTED:
            _debounce(conn, held, job, dedupe, now)
            return (held.job_id, Outcome.DEBOUNCED)
        # Running (or past its first start): left alone, the call writes the next one.
        return (job.id, _write(conn, job, dedupe, seq, now, clock))
    if dedupe.on_duplicate is OnDuplicate.REPLACE and held.status in NOT_STARTED:
        params = {"rowid": held.rowid, "payload": job.payload, "priority": job.priority}
        if conn.execute(Q["job_replace"], params).rowcount == 1:
            return (held.job_id, Outcome.REPLACED)
    if dedupe.on_duplicate is OnDuplicate.CANCEL and cancel_holder(conn, job.queue, held, now):
        outcome = _write(conn, job, dedupe, seq, now, clock)
        if held.status == JobStatus.RUNNING:
            return (job.id, outcome, held.job_id)
        return (job.id, outcome)
    return existing


def _debounce(conn: Conn, held: Holder, job: NewJob, dedupe: Dedupe, now: int) -> None:
    """Move a job that has not started to ``now + debounce``, never later than its first
    enqueue + ``max_wait_ms``, with the new payload. A queued job moved later waits
    scheduled; a scheduled one now due stays scheduled and the next promotion makes it
    ready (in its lane, as every promotion does)."""
    assert dedupe.debounce_ms is not None
    run_at = now + dedupe.debounce_ms
    if dedupe.max_wait_ms is not None and type(held.enqueued_at_ms) is int:
        run_at = min(run_at, held.enqueued_at_ms + dedupe.max_wait_ms)
    params = {"rowid": held.rowid, "payload": job.payload, "run_at_ms": run_at, "now": now}
    conn.execute(Q["job_debounce"], params)


def cancel_holder(conn: Conn, queue: QueueName, held: Holder, now: int) -> bool:
    """Cancel the job holding a key so a new one can take it (``OnDuplicate.CANCEL``): one
    that has not run as ``cancel_job`` does, a running one fenced off (its holder's outcome
    is refused) and its slots freed; its workflows take the end in. False when the record
    cannot be cancelled (it cannot be read): the key stays with it."""
    if held.status == JobStatus.RUNNING:
        # Its slots: the jobs_attempt_end trigger lowers them in this same statement.
        running = producer.cancel_running(conn, held.job_id, queue, now)
        if running is None:
            return False
        end = running
    else:
        found = producer.cancel(conn, held.job_id, queue, now)
        if found is None:
            return False
        end = found
    apply_ends(conn, [end], now)
    return True


def _write(conn: Conn, job: NewJob, dedupe: Dedupe, seq: int, now: int, clock: int) -> Outcome:
    """Write a job with flow-control directives: a debounced one runs ``now + debounce``
    (or later, when it was delayed further); a unique key is taken, with its window."""
    if dedupe.debounce_ms is not None:
        job = replace(job, run_at_ms=max(job.run_at_ms, now + dedupe.debounce_ms))
    if not producer.write_job(conn, job, seq, clock):
        return Outcome.EXISTS
    if job.unique_key is not None:
        params = {"queue": job.queue, "key": job.unique_key, "job_id": job.id}
        conn.execute(Q["unique_take"], params)
        if dedupe.window_ms:
            window = {"queue": job.queue, "id": job.id, "ms": dedupe.window_ms}
            conn.execute(Q["job_unique_for"], window)
    return Outcome.CREATED


def prune(conn: Conn, queue: QueueName, now: int) -> None:
    """Delete at most BATCH unique keys and BATCH cooldowns of `queue` whose time has
    passed (each an index range; nothing to do costs two probes)."""
    params = {"queue": queue, "now": now, "limit": BATCH}
    conn.execute(Q["unique_keys_prune"], params)
    conn.execute(Q["cooldowns_prune"], params)
