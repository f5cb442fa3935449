"""Stuck jobs, judged from plain data: a task's usual duration on its worker, its timeout."""

from __future__ import annotations

import pytest

from corq.admin.workers import format_ms, running_jobs, stuck_reason
from corq.worker.facts import SAMPLES_PER_TASK, Durations
from corq.worker_info import RunningJob, TaskDurations, WorkerInfo, WorkerState

T0 = 1_700_000_000_000


def job(task: str = "t", *, timeout_ms: int | None = None, started: int = T0) -> RunningJob:
    return RunningJob(
        job_id=f"{task}-{started}",
        queue="q",
        task=task,
        started_at_ms=started,
        timeout_ms=timeout_ms,
    )


USUAL = {"t": TaskDurations(count=20, p50_ms=100.0, p95_ms=1_000.0)}


def test_a_job_within_its_tasks_usual_time_is_not_stuck() -> None:
    assert stuck_reason(job(), USUAL, 60_000) is None


def test_a_job_far_beyond_its_tasks_p95_is_stuck() -> None:
    # max(3 x 1 s, 1 s + 60 s) = 61 s
    assert stuck_reason(job(), USUAL, 61_000) is None
    reason = stuck_reason(job(), USUAL, 61_001)
    assert reason == "ran 1m01s; its task's p95 here is 1.0s (20 runs)"


def test_for_a_slow_task_three_times_its_p95_is_the_bar() -> None:
    slow = {"t": TaskDurations(count=50, p50_ms=40_000.0, p95_ms=100_000.0)}
    assert stuck_reason(job(), slow, 300_000) is None
    assert stuck_reason(job(), slow, 300_001) is not None


def test_too_few_samples_say_nothing_about_usual() -> None:
    few = {"t": TaskDurations(count=19, p50_ms=1.0, p95_ms=1.0)}
    assert stuck_reason(job(), few, 3_600_000) is None
    assert stuck_reason(job("other"), USUAL, 3_600_000) is None


def test_a_job_past_80_percent_of_its_timeout_is_stuck_whatever_its_history() -> None:
    assert stuck_reason(job(timeout_ms=30_000), {}, 24_000) is None
    assert stuck_reason(job(timeout_ms=30_000), {}, 24_001) == (
        "ran 24.0s of its 30.0s timeout (over 80%)"
    )


def test_running_jobs_are_longest_first_and_skip_lost_workers() -> None:
    def worker(worker_id: str, state: WorkerState, *jobs: RunningJob) -> WorkerInfo:
        return WorkerInfo(
            worker_id=worker_id,
            host="h",
            pid=1,
            version="v",
            queues={"q": 1},
            concurrency=2,
            started_at_ms=T0,
            heartbeat_at_ms=T0,
            running=jobs,
            state=state,
            durations=USUAL,
        )

    infos = [
        worker("a", WorkerState.ALIVE, job(started=T0 + 5_000)),
        worker("b", WorkerState.STOPPING, job(started=T0 - 120_000)),
        worker("c", WorkerState.LOST, job(started=T0 - 999_000)),
    ]

    views = running_jobs(infos, T0 + 10_000)

    assert [(v.worker_id, v.run_ms, v.is_stuck) for v in views] == [
        ("b", 130_000, True),
        ("a", 5_000, False),
    ]


def test_durations_keep_a_bounded_sample_and_count_every_run() -> None:
    durations = Durations()
    for ms in range(1, 1001):
        durations.add("t", float(ms))

    summary = durations.summary()["t"]

    assert summary.count == 1000
    # Only the latest SAMPLES_PER_TASK runs (745..1000) are in the percentiles.
    assert summary.p50_ms == 1000 - SAMPLES_PER_TASK + 1 + SAMPLES_PER_TASK // 2
    assert 980 <= summary.p95_ms <= 1000


@pytest.mark.parametrize(
    ("ms", "text"),
    [(850, "850ms"), (4_200, "4.2s"), (185_000, "3m05s"), (7_620_000, "2h07m")],
)
def test_durations_read_the_way_people_say_them(ms: int, text: str) -> None:
    assert format_ms(ms) == text
