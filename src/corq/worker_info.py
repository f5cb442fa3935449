"""What a worker tells the cluster about itself (the registry's facts, for `corq workers`,
`corq top`, live inspection and metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from corq.types import JobId, QueueName, TaskName, WorkerId

#: Running jobs a worker lists in its facts (~150 bytes each); the rest are only counted.
MAX_RUNNING_LISTED = 100


class WorkerState(StrEnum):
    """A registered worker as readers see it."""

    ALIVE = "alive"  #: its last heartbeat is recent
    LOST = "lost"  #: no heartbeat for longer than its lease: shown, then removed
    STOPPING = "stopping"  #: shutting down (draining its running jobs)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningJob:
    """One job a worker runs now."""

    job_id: JobId
    queue: QueueName
    task: TaskName
    started_at_ms: int
    attempt: int = 1
    #: The task's timeout, if any (a job near it is flagged as stuck).
    timeout_ms: int | None = None
    #: thread / process / async.
    executor: str = "async"


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskDurations:
    """How long a task's recent runs on one worker took (a bounded sample of them)."""

    #: Runs measured since the worker started (the percentiles use the latest ones).
    count: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerInfo:
    """A worker's facts, published with its heartbeats."""

    worker_id: WorkerId
    host: str
    pid: int
    version: str
    #: Queue -> weight.
    queues: Mapping[QueueName, int]
    concurrency: int
    started_at_ms: int
    heartbeat_at_ms: int
    #: The jobs it runs, oldest claims first (at most MAX_RUNNING_LISTED of them).
    running: Sequence[RunningJob] = ()
    #: How many jobs it holds (claimed, outcome not yet recorded; `running` lists fewer).
    in_flight: int = 0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    #: How late the event loop ran a timer, lately (ms).
    loop_lag_ms: float = 0.0
    state: WorkerState = WorkerState.ALIVE
    #: Jobs started and ended since the worker started (by final outcome).
    counts: Mapping[str, int] = field(default_factory=dict)
    #: Queue -> outcomes recorded for its jobs here ("succeeded", "failed": a failed attempt,
    #: retried or dead), for rates per queue (`corq top`).
    queue_counts: Mapping[QueueName, Mapping[str, int]] = field(default_factory=dict)
    #: Task -> how long its runs took here (stuck jobs are judged against it).
    durations: Mapping[TaskName, TaskDurations] = field(default_factory=dict)
