"""What mypy must infer for workflows (run by tests/unit/test_workflow_typing.py).

Never executed: each ``assert_type`` is checked by mypy, not at run time.
"""

from __future__ import annotations

from typing import Any, assert_type

import corq

app = corq.App("sqlite:///never-opened.db")


@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task
async def parse(data: bytes) -> list[str]:
    return [data.decode()]


@app.task
async def count(words: list[str]) -> int:
    return len(words)


@app.task
async def total(counts: list[int]) -> int:
    return sum(counts)


@app.task
async def report(summary: corq.BatchSummary) -> None:
    return None


async def check_chain() -> None:
    wf = await corq.chain(fetch.s("u"), parse.then(), count.then()).enqueue()
    assert_type(wf, corq.WorkflowHandle[int])
    assert_type(await wf.result(timeout=60), int)
    assert_type(await wf.status(), corq.WorkflowStatus)
    assert_type(await wf.cancel(), int)
    ends_in_group = corq.chain(fetch.s("u"), corq.group(parse.then(), parse.then()))
    assert_type(ends_in_group, corq.Chain[list[list[str]]])
    links = [fetch.s("u"), fetch.s("v")]
    assert_type(corq.chain(*links), corq.Chain[Any])


async def check_group_and_chord() -> None:
    group = corq.group(count.s([w]) for w in "abc")
    assert_type(group, corq.Group[int])
    assert_type(await (await group.enqueue()).result(), list[int])
    chord = corq.chord(group, total.then())
    assert_type(chord, corq.Chord[int])
    assert_type(await app.enqueue_workflow(chord), corq.WorkflowHandle[int])
    assert_type(await app.enqueue_workflow(group), corq.WorkflowHandle[list[int]])


async def check_dag_and_batch() -> None:
    wf = corq.Workflow()
    node = wf.add(fetch.s("u"))
    assert_type(node, corq.Node[bytes])
    handle = await wf.enqueue()
    assert_type(handle, corq.WorkflowHandle[list[Any]])
    assert_type(handle.job(node), corq.JobHandle[bytes])
    batch = await corq.batch(on_complete=report.then()).open()
    assert_type(batch, corq.BatchHandle)
    assert_type(await batch.add(fetch.s("u")), list[corq.JobHandle[Any]])
    assert_type(await batch.result(), corq.BatchSummary)


async def check_depends_on() -> None:
    a = await fetch.enqueue("a")
    r = await count.with_options(depends_on=[a, "job-id"]).enqueue(["x"])
    assert_type(r, corq.JobHandle[int])
    parents = await corq.current_job().parent_results()
    assert_type(parents, dict[str, Any])
