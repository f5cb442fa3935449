"""Workflows end to end on both brokers, with a real worker: dependencies, chains, groups,
chords and graphs, what each job is given, and what the handle reports."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import corq
from corq.testing import drain, run_worker
from tests.integration import workflow_tasks


@pytest.fixture
def tasks(app: corq.App) -> dict[str, corq.Task[Any, Any]]:
    @app.task
    async def extract(url: str) -> str:
        return f"data of {url}"

    @app.task
    async def build_report() -> dict[str, Any]:
        return await corq.current_job().parent_results()

    @app.task
    async def fetch(url: str) -> str:
        return f"<{url}>"

    @app.task
    async def parse(page: str) -> list[str]:
        return list(page.strip("<>"))

    @app.task
    def store(letters: list[str], *, sep: str = "") -> str:
        return sep.join(letters)

    @app.task
    async def count(text: str) -> int:
        return len(text)

    @app.task
    async def total(counts: list[int]) -> int:
        return sum(counts)

    @app.task(queue="other")
    async def elsewhere(x: int) -> int:
        return x * 10

    return {
        t.name: t for t in (extract, build_report, fetch, parse, store, count, total, elsewhere)
    }


async def test_a_diamond_of_dependencies_runs_each_job_once_its_parents_succeeded(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    extract, report = tasks["extract"], tasks["build_report"]
    async with run_worker(app):
        # Given a → (b, c) → d, built from handles,
        a = await extract.enqueue("root")
        b = await extract.with_options(depends_on=[a]).enqueue("left")
        c = await extract.with_options(depends_on=[a]).enqueue("right")
        d = await report.with_options(depends_on=[b, c]).enqueue()
        # Then d runs after both and reads their results, keyed by id.
        assert await d.result(timeout=10) == {b.id: "data of left", c.id: "data of right"}
        left, right, last = await b.info(), await c.info(), await d.info()
        assert last.started_at_ms is not None
        assert left.finished_at_ms is not None
        assert right.finished_at_ms is not None
        assert last.started_at_ms >= max(left.finished_at_ms, right.finished_at_ms)
        assert (last.workflow, last.attempt) == (d.id, 1)


async def test_a_chain_passes_each_result_on(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    fetch, parse, store = tasks["fetch"], tasks["parse"], tasks["store"]
    async with run_worker(app):
        wf = await corq.chain(fetch.s("abc"), parse.then(), store.s(sep="-")).enqueue()
        assert await wf.result(timeout=10) == "a-b-c"
        # (Its own counts follow once the last end is settled: wait() waits for that.)
        status = await wf.wait(timeout=10, jobs=True)
    assert (status.kind, status.state, status.total, status.ended) == ("chain", "succeeded", 3, 3)
    assert [job.task for job in status.jobs] == ["fetch", "parse", "store"]
    assert [job.parents for job in status.jobs] == [(), (status.jobs[0].id,), (status.jobs[1].id,)]
    assert [job.id for job in wf.jobs] == [job.id for job in status.jobs]


async def test_a_chord_calls_back_with_the_list_of_results(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    count, total = tasks["count"], tasks["total"]
    files = ["a", "bb", "ccc", "dddd"]
    async with run_worker(app):
        wf = await corq.chord(corq.group(count.s(f) for f in files), total.then()).enqueue()
        assert await wf.result(timeout=10) == 10
        group = await corq.group(count.s(f) for f in files).enqueue()
        assert await group.result(timeout=10) == [1, 2, 3, 4]
        assert (await group.status(jobs=False)).kind == "group"


async def test_nested_canvases_compose(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    fetch, count, total = tasks["fetch"], tasks["count"], tasks["total"]

    @app.task
    async def inc(n: int) -> int:
        return n + 1

    @app.task
    async def double(n: int) -> int:
        return n * 2

    # A chord whose header holds a chain, then a group fed its result, then a last link
    # given the group's list.
    header = corq.group(corq.chain(fetch.s("ab"), count.then()), count.s("xyz"))
    flow = corq.chain(
        corq.chord(header, total.then()),  # count("<ab>") + count("xyz") = 4 + 3
        corq.group(inc.then(), double.then()),  # [8, 14]
        total.then(),
    )
    async with run_worker(app):
        assert await (await flow.enqueue()).result(timeout=10) == 22
        # A chain that ends in a group results in the group's list.
        fan_out = corq.chain(fetch.s("x"), corq.group(count.then(), count.then()))
        assert await (await fan_out.enqueue()).result(timeout=10) == [3, 3]


async def test_depends_on_reaches_jobs_of_other_queues_by_handle_or_id(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    elsewhere, report = tasks["elsewhere"], tasks["build_report"]
    async with run_worker(app):
        # Given jobs in queue "other" and a dependent in the default queue,
        by_handle = await elsewhere.enqueue(1)
        by_id = await elsewhere.enqueue(2)
        # When one is named by its handle and one by its id alone (looked up everywhere),
        r = await report.with_options(depends_on=[by_handle, by_id.id]).enqueue()
        # Then both are its parents, in that order.
        assert await r.result(timeout=10) == {by_handle.id: 10, by_id.id: 20}
        parents = [job.parents for job in (await app.workflow(r.id).status()).jobs]
        assert parents == [(by_handle.id, by_id.id)]
        # A task known by name takes the same option.
        by_name = await app.enqueue("build_report", depends_on=[by_id], allow_failed=True)
        assert await by_name.result(timeout=10) == {by_id.id: 20}


async def test_a_process_job_gets_its_input_and_its_parents(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    shout = app.task(process=True)(workflow_tasks.shout)
    describe = app.task(process=True)(workflow_tasks.describe_parents)
    fetch = tasks["fetch"]
    async with run_worker(app):
        wf = await corq.chain(fetch.s("hi"), shout.then()).enqueue()
        assert await wf.result(timeout=20) == "<HI>"
        parent = await fetch.enqueue("p")
        child = await describe.with_options(depends_on=[parent]).enqueue()
        assert await child.result(timeout=20) == [[parent.id, "succeeded", "<p>"]]


async def test_a_dag_of_nodes_and_canvases_results_in_its_sinks(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    fetch, count, total, store = tasks["fetch"], tasks["count"], tasks["total"], tasks["store"]
    wf = corq.Workflow()
    page = wf.add(fetch.s("abcd"))
    sizes = wf.add(corq.group(count.then(), count.then()), depends_on=[page], inputs="first")
    summed = wf.add(total.then(), depends_on=[sizes], inputs="list")
    letters = wf.add(store.s(["x", "y"]), depends_on=[page])
    async with run_worker(app):
        handle = await wf.enqueue()
        assert await handle.result(timeout=10) == [12, "xy"]
        assert await handle.job(summed).result(timeout=1) == 12
        assert await handle.job(letters).result(timeout=1) == "xy"
        assert len(handle.jobs_of(sizes)) == 2
    assert (await handle.status(jobs=False)).kind == "dag"


async def test_a_job_that_waits_is_shown_waiting_until_released(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    elsewhere, report = tasks["elsewhere"], tasks["build_report"]
    parent = await elsewhere.enqueue(3)
    child = await report.with_options(depends_on=[parent]).enqueue()
    # Nobody serves "other" yet: the child waits.
    assert await child.status() is corq.JobStatus.WAITING
    async with run_worker(app, queues=["other", "default"]):
        assert await child.result(timeout=10) == {parent.id: 30}


async def test_a_plain_function_reads_its_parents(app: corq.App) -> None:
    @app.task
    def two() -> int:
        return 2

    @app.task
    def sync_reader() -> list[Any]:
        job = corq.current_job()
        return [job.parent_results_sync(), [p.status for p in job.parents_sync()]]

    async with run_worker(app):
        first = await two.enqueue()
        r = await sync_reader.with_options(depends_on=[first]).enqueue()
        assert await r.result(timeout=10) == [{first.id: 2}, ["succeeded"]]
        # A job outside any workflow has no parents.
        alone = await sync_reader.enqueue()
        assert await alone.result(timeout=10) == [{}, []]


async def test_the_worker_starts_the_next_link_without_waiting_for_a_poll(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    count = tasks["count"]

    @app.task
    async def inc(n: int) -> int:
        return n + 1

    async with run_worker(app):
        links = [count.s("abc"), *(inc.then() for _ in range(30))]
        wf = await corq.chain(*links).enqueue()
        assert await wf.result(timeout=10) == 33
        status = await wf.status()
    # Each link started right after its parent ended, not when another worker's replay of
    # ends older than 2 s would have released it.
    infos = [await app.client().get_job(job.id, job.queue) for job in status.jobs]
    gaps = [
        b.started_at_ms - a.finished_at_ms  # type: ignore[operator, union-attr]
        for a, b in itertools.pairwise(infos)
    ]
    assert max(gaps) < 1_000, gaps


async def test_a_burst_worker_runs_a_whole_workflow_before_stopping(
    app: corq.App, tasks: dict[str, corq.Task[Any, Any]]
) -> None:
    fetch, parse, store, count, total = (
        tasks[name] for name in ("fetch", "parse", "store", "count", "total")
    )
    # Each child is released only once its parent's outcome is recorded (and settled):
    # a burst worker must not take the moment in between for the end of its work.
    chain = await corq.chain(fetch.s("abc"), parse.then(), store.then()).enqueue()
    chord = await corq.chord([count.s("ab"), count.s("c")], total.then()).enqueue()
    await drain(app)
    assert await chain.result(timeout=1) == "abc"
    assert await chord.result(timeout=1) == 3


async def test_a_groups_result_is_typed_and_raises_its_first_failure_for_any_handle(
    app: corq.App,
) -> None:
    @app.task
    async def pair(name: str) -> tuple[str, int]:
        if name == "bad":
            raise ValueError(f"no pair for {name}")
        return name, len(name)

    names = [f"n{i:04}" for i in range(1_205)]  # more than one page of outputs
    async with run_worker(app, concurrency=200):
        # Given a group of 1,205 that succeeds, and one whose third member fails
        good = await corq.group(pair.s(n) for n in names).enqueue()
        bad = await corq.group(pair.s("a"), pair.s("b"), pair.s("bad")).enqueue()

        # Then the handle that sent it and one made from its id read the same typed list
        expected = [(n, 5) for n in names]
        assert await good.result(timeout=30) == expected
        assert await app.client().workflow(good.id).result(timeout=5) == expected

        # And the failing group raises its member's failure, from either handle
        for handle in (bad, app.client().workflow(bad.id)):
            with pytest.raises(corq.JobFailedError, match="no pair for bad"):
                await handle.result(timeout=10)
