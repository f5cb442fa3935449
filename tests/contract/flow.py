"""What the flow-control contract tests share: jobs of ruled tasks (with a key, a unique
key, a deadline, a dedupe), rules, claims by id, the ends of an attempt, and the check that
starts over any window stay within a rate.

Time is the test's own (``now_ms`` passed to every call, as a ``FakeClock`` does), so rate
windows and deadlines are crossed exactly, without waiting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from corq.backends import Backend
from corq.backends.base import Admitted, ClaimedJob, FlowStats, NewJob, TaskRules
from corq.flow import Dedupe, Rate
from corq.job import Job, JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, record

#: A task with rules (each test sets them), a second one, and a task without rules.
LIMITED = "tasks.limited"
OTHER = "tasks.other"
PLAIN = "tasks.plain"


def job(
    job_id: str,
    *,
    task: str = LIMITED,
    key: str | None = None,
    priority: int = 0,
    at_ms: int = T0,
    delay_ms: int = 0,
    payload: bytes = b"{}",
    unique_key: str | None = None,
    start_by_ms: int | None = None,
    dedupe: Dedupe | None = None,
    queue: str = Q,
) -> NewJob:
    """A job of `task` enqueued at `at_ms` (the enqueue's "now"), due `delay_ms` later."""
    return NewJob(
        id=job_id,
        task=task,
        queue=queue,
        payload=payload,
        priority=priority,
        enqueued_at_ms=at_ms,
        run_at_ms=at_ms + delay_ms,
        key=key,
        unique_key=unique_key,
        start_by_ms=start_by_ms,
        dedupe=dedupe,
    )


def keyed(prefix: str, key: str, count: int, *, task: str = LIMITED) -> list[NewJob]:
    """`count` jobs of `key`, ids ``<prefix>0``, ``<prefix>1``... in enqueue order."""
    return [job(f"{prefix}{n}", task=task, key=key) for n in range(count)]


async def set_rules(backend: Backend, *rules: TaskRules, queue: str = Q) -> None:
    await backend.set_rules(queue, list(rules))


def per_second(count: int) -> Rate:
    return Rate(count, 1000)


async def claim_jobs(
    backend: Backend, worker: str, now_ms: int = T0, *, count: int = 10, queue: str = Q
) -> list[ClaimedJob]:
    """Claim for the registered holder `worker` (checked not lost)."""
    batch = await backend.claim_jobs(queue, worker, count, LEASE_MS, now_ms)
    assert not batch.lost, f"{worker} is not registered in {queue}"
    return batch.jobs


async def claim_ids(
    backend: Backend, worker: str, now_ms: int = T0, *, count: int = 10, queue: str = Q
) -> list[str]:
    return [j.id for j in await claim_jobs(backend, worker, now_ms, count=count, queue=queue)]


async def status(backend: Backend, job_id: str, queue: str = Q) -> JobStatus:
    return (await record(backend, job_id, queue)).status


async def stats(backend: Backend, queue: str = Q) -> FlowStats:
    return await backend.flow_stats(queue)


def task_slot(task: str = LIMITED) -> str:
    """The ``FlowStats.active`` name of a task's running count."""
    return f"t:{task}"


def key_slot(key: str, task: str = LIMITED) -> str:
    """The ``FlowStats.active`` name of a key's running count."""
    return f"k:{task}\x1f{key}"


async def running(backend: Backend, name: str, queue: str = Q) -> int:
    """What ``flow_stats`` says runs now under `name` (``task_slot`` or ``key_slot``)."""
    return (await stats(backend, queue)).active.get(name, 0)


def outcomes(admitted: Sequence[Admitted]) -> list[tuple[str, str]]:
    """(job id, outcome) of each admitted job, in order."""
    return [(a.job_id, a.outcome.value) for a in admitted]


def keys_of(jobs: Sequence[ClaimedJob | Job]) -> list[str | None]:
    return [j.key for j in jobs]


def assert_within_rate(starts: Sequence[int], rate: Rate, what: str) -> None:
    """Over any window of length T, at most ``count + count * T / period`` of `starts`
    (times in ms): the limit plus one bucket (``corq.flow.Rate``).

    Windows are checked at every start for lengths from one interval to a few periods.
    """
    times = sorted(starts)
    lengths = {int(rate.interval_ms), rate.period_ms // 2, rate.period_ms, 2 * rate.period_ms}
    for length in sorted(n for n in lengths if n > 0):
        bound = rate.count + rate.count * length / rate.period_ms
        for first, begin in enumerate(times):
            inside = sum(1 for t in times[first:] if t < begin + length)
            assert inside <= bound, (
                f"{what}: {inside} starts in the {length} ms from {begin - T0}, "
                f"over {bound:g} ({rate})"
            )


def counted(keys: Sequence[str | None]) -> dict[str | None, int]:
    return dict(Counter(keys))
