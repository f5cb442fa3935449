"""`corq top`'s frames from plain data: rates from the workers' counts, what a frame shows."""

from __future__ import annotations

from rich.console import Console

from corq.backends.base import QueueStats
from corq.cli.top import Frame, rates, render
from corq.worker_info import WorkerInfo

T0 = 1_700_000_000_000


def worker(worker_id: str, succeeded: int, failed: int) -> WorkerInfo:
    return WorkerInfo(
        worker_id=worker_id,
        host="h",
        pid=1,
        version="v",
        queues={"q": 1},
        concurrency=4,
        started_at_ms=T0,
        heartbeat_at_ms=T0,
        queue_counts={"q": {"succeeded": succeeded, "failed": failed}},
    )


def test_rates_are_the_difference_of_the_workers_counts_per_second() -> None:
    before = Frame(10.0, T0, workers=[worker("a", 100, 5), worker("b", 0, 0)])
    after = Frame(12.0, T0 + 2_000, workers=[worker("a", 140, 9), worker("b", 20, 1)])

    speed = rates(before, after)

    assert speed is not None
    assert speed.queues == {"q": (30.0, 2.5)}
    assert speed.workers == {"a": 22.0, "b": 10.5}


def test_a_new_worker_and_a_restarted_one_count_nothing_yet() -> None:
    before = Frame(10.0, T0, workers=[worker("a", 100, 5)])
    after = Frame(11.0, T0 + 1_000, workers=[worker("a", 3, 0), worker("new", 50, 0)])

    speed = rates(before, after)

    assert speed is not None
    assert speed.queues == {"q": (0.0, 0.0)}
    assert speed.workers == {"a": 0.0}


def test_no_rates_from_a_first_frame_or_through_an_outage() -> None:
    frame = Frame(10.0, T0, workers=[worker("a", 1, 0)])
    assert rates(None, frame) is None
    assert rates(frame, Frame(11.0, T0, error="down")) is None


def test_a_frame_shows_depths_the_oldest_ready_age_and_an_outage() -> None:
    stats = QueueStats(
        queue="emails",
        ready=1_234,
        delayed=5,
        in_flight=3,
        dead=2,
        workers=1,
        waiting=7,
        oldest_ready_ms=T0 - 65_000,
        paused=True,
    )
    frame = Frame(10.0, T0, stats=[stats], workers=[worker("a", 0, 0)], error="timed out")
    console = Console(width=160, record=True)

    console.print(render(frame, None, "redis://x"))

    text = console.export_text()
    assert "broker unreachable: timed out (retrying)" in text
    (row,) = [line for line in text.splitlines() if "emails" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["emails (paused)", "1,234", "5", "7", "3", "2", "-", "-", "1m05s", "1"]
