"""The autoscaling signal: desired = clamp(ceil((ready + running) / per worker), min, max)."""

from __future__ import annotations

import pytest

from corq.backends.base import QueueStats
from corq.metrics import ClusterReading, MetricsError, ScalePolicy, autoscale
from corq.worker_info import RunningJob, WorkerInfo, WorkerState

NOW = 1_700_000_000_000


def stats(queue: str = "q", *, ready: int = 0, running: int = 0, workers: int = 0,
          paused: bool = False, oldest_ms: int | None = None) -> QueueStats:  # fmt: skip
    return QueueStats(queue=queue, ready=ready, delayed=0, in_flight=running, dead=0,
                      workers=workers, paused=paused, oldest_ready_ms=oldest_ms)  # fmt: skip


def info(
    worker_id: str,
    concurrency: int,
    running: int,
    *,
    queues: tuple[str, ...] = ("q",),
    state: WorkerState = WorkerState.ALIVE,
) -> WorkerInfo:
    jobs = [
        RunningJob(job_id=f"{worker_id}-{n}", queue=queues[0], task="t", started_at_ms=NOW)
        for n in range(running)
    ]
    return WorkerInfo(
        worker_id=worker_id,
        host="h",
        pid=1,
        version="0",
        queues=dict.fromkeys(queues, 1),
        concurrency=concurrency,
        started_at_ms=NOW,
        heartbeat_at_ms=NOW,
        running=jobs,
        state=state,
    )


def reading(*queues: QueueStats, workers: list[WorkerInfo] | None = None) -> ClusterReading:
    return ClusterReading(now_ms=NOW, queues=list(queues), flow={}, schedules=[], scheduler=None,
                          workers=workers)  # fmt: skip


def test_the_backlog_over_the_per_worker_concurrency_rounded_up() -> None:
    [signal] = autoscale(reading(stats(ready=250, running=10)), ScalePolicy(per_worker=100))
    assert signal.desired_workers == 3


def test_the_bounds_hold() -> None:
    policy = ScalePolicy(per_worker=10, min_workers=2, max_workers=5)
    idle, flooded = autoscale(reading(stats("idle"), stats("flooded", ready=10_000)), policy)
    assert (idle.desired_workers, flooded.desired_workers) == (2, 5)


def test_a_paused_queue_wants_only_the_workers_its_running_jobs_need() -> None:
    [signal] = autoscale(
        reading(stats(ready=500, running=15, paused=True)), ScalePolicy(per_worker=10)
    )
    assert signal.desired_workers == 2


def test_live_workers_give_the_per_worker_concurrency_and_the_free_slots() -> None:
    workers = [
        info("a", 10, 4),
        info("b", 30, 30),
        info("c", 50, 0, queues=("other",)),  # serves another queue
        info("d", 99, 0, state=WorkerState.LOST),  # lost: counts for nothing
    ]
    [signal] = autoscale(reading(stats(ready=60, running=34), workers=workers), ScalePolicy())
    assert (signal.workers, signal.per_worker, signal.free_slots) == (2, 20, 6)
    assert signal.desired_workers == 5  # ceil(94 / 20)


def test_without_worker_facts_registered_workers_are_assumed_at_the_default_concurrency() -> None:
    policy = ScalePolicy(default_concurrency=8)
    [signal] = autoscale(reading(stats(ready=3, running=5, workers=2)), policy)
    assert (signal.per_worker, signal.free_slots, signal.desired_workers) == (8, 11, 1)


def test_the_oldest_ready_age_is_measured_from_the_reading() -> None:
    [waiting, empty] = autoscale(
        reading(stats("w", ready=1, oldest_ms=NOW - 2_500), stats("e")), ScalePolicy()
    )
    assert (waiting.oldest_ready_age_s, empty.oldest_ready_age_s) == (2.5, 0.0)


@pytest.mark.parametrize(
    "bounds", [{"min_workers": 5, "max_workers": 2}, {"min_workers": -1}, {"per_worker": 0}]
)
def test_bounds_the_wrong_way_round_are_refused(bounds: dict[str, int]) -> None:
    with pytest.raises(MetricsError):
        ScalePolicy(**bounds)
