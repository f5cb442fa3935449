"""How a worker groups a batched task's claimed jobs into calls. No broker: `Batches` only
decides when a buffer is called."""

from __future__ import annotations

import asyncio

import corq
from corq.backends.base import ClaimedJob
from corq.worker.batches import Batches
from corq.worker.registry import CancelReason, Registry, Running

app = corq.App("sqlite:///:memory:")


@app.task(batch_size=3, batch_wait=60)
async def rows(items: list[int]) -> None: ...


@app.task(key=lambda item: str(item % 2), batch_size=2, batch_wait=60, batch_by_key=True)
async def keyed(items: list[int]) -> None: ...


@app.task
async def single(item: int) -> None: ...


def running(task: str, n: int, key: str | None = None) -> Running:
    job = ClaimedJob(
        id=f"j{n}",
        task=task,
        queue="q",
        payload=b"{}",
        attempt=1,
        failures=0,
        deaths=0,
        fence=1,
        enqueued_at_ms=0,
        run_at_ms=0,
        key=key,
    )
    return Running(job, "h")


def ids(batch: list[Running]) -> list[str]:
    return [r.job.id for r in batch]


async def test_a_buffer_is_called_once_it_holds_batch_size_jobs() -> None:
    called: list[list[Running]] = []
    batches = Batches(app.registry, called.append)
    assert batches.batched(running(rows.name, 0))
    assert not batches.batched(running(single.name, 0))
    for n in range(7):
        batches.add(running(rows.name, n))
    assert [ids(b) for b in called] == [["j0", "j1", "j2"], ["j3", "j4", "j5"]]
    assert len(batches) == 1


async def test_batch_by_key_keeps_each_keys_jobs_together() -> None:
    called: list[list[Running]] = []
    batches = Batches(app.registry, called.append)
    for n in range(4):
        batches.add(running(keyed.name, n, key=str(n % 2)))
    assert [ids(b) for b in called] == [["j0", "j2"], ["j1", "j3"]]


async def test_a_buffer_is_called_when_its_wait_is_over() -> None:
    @app.task(batch_size=100, batch_wait=0.05)
    async def quick(items: list[int]) -> None: ...

    called = asyncio.Event()
    batches = Batches(app.registry, lambda batch: called.set())
    batches.add(running(quick.name, 0))
    await asyncio.wait_for(called.wait(), 2)


async def test_flush_all_calls_every_buffer_and_drain_takes_them_back() -> None:
    called: list[list[Running]] = []
    batches = Batches(app.registry, called.append)
    batches.add(running(rows.name, 0))
    batches.add(running(keyed.name, 1, key="1"))
    batches.flush_all()
    assert sorted(ids(b)[0] for b in called) == ["j0", "j1"]
    batches.add(running(rows.name, 2))
    assert ids(batches.drain()) == ["j2"]
    assert len(batches) == 0


async def test_a_cancelled_buffered_job_is_withdrawn_from_its_batch() -> None:
    called: list[list[Running]] = []
    withdrawn: list[Running] = []
    batches = Batches(app.registry, called.append)
    jobs = [running(rows.name, n) for n in range(3)]

    def withdraw(job: Running) -> None:
        batches.remove(job)
        withdrawn.append(job)

    for job in jobs[:2]:
        job.withdraw = withdraw
        batches.add(job)
    # When one buffered job's claim is lost, Then it leaves its batch at once
    Registry.cancel(jobs[0], CancelReason.LOST)
    assert withdrawn == [jobs[0]]
    batches.add(jobs[2])
    assert len(batches) == 2
    assert not called
