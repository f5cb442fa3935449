"""`corq workflow ID` on both brokers, as an operator reads it: a tree for chains, groups and
chords, a listing for other graphs, JSON, cancel, and one line for an id that is not there.

The command runs through click's CliRunner against the test's broker (a SQLite file, or
the session's Redis under the test's prefix); workflows are made beforehand by this
module's app and a worker in the test, each in its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

import corq
from corq.cli import cli
from corq.testing import run_worker

T = TypeVar("T")


class Broker:
    """The test's broker: runs setup coroutines on an app of its own, and the CLI on it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.app = corq.App(url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=2)
        app = self.app

        @app.task
        async def count(text: str) -> int:
            return len(text)

        @app.task
        async def total(counts: list[int]) -> int:
            return sum(counts)

        @app.task
        async def boom(x: int) -> int:
            raise ValueError(f"boom {x}")

        @app.task
        async def inc(x: int) -> int:
            return x + 1

        @app.task
        async def summarize(summary: corq.BatchSummary) -> int:
            return summary["total"]

        @app.task(queue="idle")  # no worker serves it: its jobs wait
        async def parked(x: int) -> int:
            return x

        self.count, self.total, self.boom, self.inc = count, total, boom, inc
        self.summarize, self.parked = summarize, parked

    def setup(self, make: Callable[[corq.App], Awaitable[T]]) -> T:
        async def go() -> T:
            try:
                return await make(self.app)
            finally:
                await self.app.aclose()

        return asyncio.run(go())

    def corq(self, *args: str) -> Result:
        result = CliRunner().invoke(
            cli, ["workflow", *args, "--url", self.url], env={"CORQ_PREFIX": self.prefix}
        )
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    def ok(self, *args: str) -> str:
        result = self.corq(*args)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def broker(broker_url: str, prefix: str) -> Broker:
    return Broker(broker_url, prefix)


def test_a_finished_chord_prints_as_its_group_then_its_callback_with_errors(
    broker: Broker,
) -> None:
    count, total, boom, inc = broker.count, broker.total, broker.boom, broker.inc

    # Given a chain: a chord of three counts, then a group in which one job dies, then a total
    async def make(app: corq.App) -> corq.WorkflowHandle[Any]:
        flow = corq.chain(
            corq.chord(corq.group(count.s(w) for w in ("a", "bb", "ccc")), total.then()),
            corq.group(inc.then(), boom.then()),
            total.then(),
        )
        async with run_worker(app):
            wf = await app.enqueue_workflow(flow)
            await wf.wait(timeout=10)
        return wf

    wf = broker.setup(make)
    status = broker.setup(lambda app: app.workflow(wf.id).status())
    jobs = {job.id: job for job in status.jobs}
    # When an operator looks at it
    out = broker.ok(wf.id)
    lines = out.splitlines()
    # Then the header names it, its kind and state, and counts its jobs by state
    assert lines[0] == (
        f"workflow {wf.id} · chain · failed · 7 jobs: 5 succeeded, 1 dead, 1 upstream_failed"
    )
    dead = next(j for j in status.jobs if j.state is corq.JobStatus.DEAD)
    assert lines[1] == f"first failure: {dead.id}: ValueError: boom 6"
    # And the tree shows the chord's group, its callback, the next group and the last link
    tree = [line for line in lines[3:] if "error:" not in line]
    assert [_guide(line) for line in tree] == [
        "├── group of 3 side by side",
        "│   ├── count",
        "│   ├── count",
        "│   └── count",
        "├── total",
        "├── group of 2 side by side",
        "│   ├── inc",
        "│   └── boom",
        "└── total",
    ]
    # each job with its task, id, queue and state
    for job in status.jobs:
        assert f"{job.task}  {job.id}  [default]  {job.state}" in out
    assert len(jobs) == 7
    # and the errors under the jobs that did not succeed, the upstream_failed one's cause
    last = status.jobs[-1]
    assert last.state is corq.JobStatus.UPSTREAM_FAILED
    assert f"      error: upstream_failed: {dead.id} ended dead: ValueError: boom 6" in out
    assert "│         error: ValueError: boom 6" in out


def _guide(line: str) -> str:
    """A tree line down to its task or label (ids and states vary)."""
    match = re.match(r"^([│├└─ ]*)(\S+(?: of \d+ side by side)?)", line)
    assert match is not None, line
    return match.group(1) + match.group(2)


def test_json_has_every_job_with_its_parents_and_the_counts(broker: Broker) -> None:
    count, total = broker.count, broker.total

    async def make(app: corq.App) -> corq.WorkflowHandle[Any]:
        async with run_worker(app):
            wf = await corq.chord([count.s("ab"), count.s("c")], total.then()).enqueue()
            assert await wf.result(timeout=10) == 3
            await wf.wait(timeout=10)  # and its last end settled (a moment later on Redis)
        return wf

    wf = broker.setup(make)
    data = json.loads(broker.ok(wf.id, "--json"))
    assert (data["id"], data["kind"], data["state"], data["open"]) == (
        wf.id,
        "chord",
        "succeeded",
        False,
    )
    assert (data["total"], data["ended"], data["states"]) == (3, 3, {"succeeded": 3})
    assert data["ends"] == {"succeeded": 3}
    assert data["finished_at"] is not None
    assert data["first_failure"] is None
    header = [job["id"] for job in data["jobs"][:2]]
    assert [(j["task"], j["queue"], j["state"]) for j in data["jobs"]] == [
        ("count", "default", "succeeded"),
        ("count", "default", "succeeded"),
        ("total", "default", "succeeded"),
    ]
    assert [j["parents"] for j in data["jobs"]] == [[], [], header]
    assert [j["id"] for j in data["jobs"]] == [h.id for h in wf.jobs]


def test_a_graph_without_a_tree_shape_lists_each_job_with_its_parents(broker: Broker) -> None:
    count, parked = broker.count, broker.parked

    # Given a → c, b → c, b → d (no tree shape), waiting on a queue no worker serves
    async def make(app: corq.App) -> corq.WorkflowHandle[Any]:
        graph = corq.Workflow()
        a = graph.add(parked.s(1))
        b = graph.add(parked.s(2))
        graph.add(count.s("c").with_options(queue="idle"), depends_on=[a, b])
        graph.add(count.s("d").with_options(queue="idle"), depends_on=[b])
        return await graph.enqueue()

    wf = broker.setup(make)
    ids = [job.id for job in wf.jobs]
    out = broker.ok(wf.id)
    # Then each job is listed in order with the jobs it waits for
    assert out.splitlines()[0] == f"workflow {wf.id} · dag · running · 4 jobs: 2 waiting, 2 queued"
    assert "(its graph has no tree shape: each job is listed with the jobs it waits for)" in out
    listing = out.split("waits for)\n", 1)[1].splitlines()
    assert listing == [
        f"• parked  {ids[0]}  [idle]  queued",
        f"• parked  {ids[1]}  [idle]  queued",
        f"• count  {ids[2]}  [idle]  waiting",
        f"    after {ids[0]}, {ids[1]}",
        f"• count  {ids[3]}  [idle]  waiting",
        f"    after {ids[1]}",
    ]


def test_cancel_says_how_many_it_cancelled_and_the_tree_shows_them(broker: Broker) -> None:
    parked = broker.parked

    async def make(app: corq.App) -> corq.WorkflowHandle[Any]:
        return await corq.chain(parked.s(1), parked.then(), parked.then()).enqueue()

    wf = broker.setup(make)
    assert broker.ok(wf.id).splitlines()[0].endswith("3 jobs: 2 waiting, 1 queued")
    counts = broker.ok(wf.id, "--counts").splitlines()
    assert counts[0] == f"workflow {wf.id} · chain · running · 3 jobs: 3 not ended"
    assert len(counts) == 2  # and when it was created; no jobs read
    # When cancelled from the shell
    assert broker.ok(wf.id, "--cancel") == (
        f"cancelled 3 jobs of workflow {wf.id} (jobs already running finish)\n"
    )
    # Then every job shows cancelled, and a second cancel has nothing left to do
    out = broker.ok(wf.id)
    assert out.splitlines()[0] == f"workflow {wf.id} · chain · cancelled · 3 jobs: 3 cancelled"
    assert json.loads(broker.ok(wf.id, "--cancel", "--json")) == {"id": wf.id, "cancelled": 0}


def test_batch_callbacks_come_last_and_an_open_batch_says_so(broker: Broker) -> None:
    count, summarize = broker.count, broker.summarize

    async def make(app: corq.App) -> corq.BatchHandle:
        batch = await corq.batch(on_complete=summarize.then()).open(app)
        await batch.add(count.s("a"), count.s("bb"))
        return batch

    batch = broker.setup(make)
    out = broker.ok(batch.id)
    lines = out.splitlines()
    assert lines[0].startswith(f"workflow {batch.id} · batch · running (open batch: not closed")
    assert lines[0].endswith("3 jobs: 1 waiting, 2 queued")
    callback = next(j for j in batch.jobs)
    assert lines[-1] == f"└── on complete: summarize  {callback.id}  [default]  waiting"
    assert [_guide(line) for line in lines[2:-1]] == [
        "├── group of 2 side by side",
        "│   ├── count",
        "│   └── count",
    ]


def test_a_depends_on_job_names_its_parents_outside(broker: Broker) -> None:
    count, total = broker.count, broker.total

    async def make(app: corq.App) -> tuple[list[str], str]:
        async with run_worker(app):
            parents = [await count.enqueue("x"), await count.enqueue("yy")]
            child = await total.with_options(depends_on=parents).enqueue([0])
            await app.workflow(child.id).wait(timeout=10)
        return [p.id for p in parents], child.id

    parents, child = broker.setup(make)
    lines = broker.ok(child).splitlines()
    assert lines[0] == f"workflow {child} · depends · succeeded · 1 job: 1 succeeded"
    assert lines[-1] == (
        f"└── total  {child}  [default]  succeeded  after {parents[0]}, {parents[1]} "
        "(outside this workflow)"
    )


@pytest.mark.parametrize(
    ("workflow_id", "message"),
    [
        (
            "wf_nosuch",
            "Error: workflow wf_nosuch not found (finished and expired, or never created)",
        ),
        ("wf\x1b[2J", "Error: workflow wf\\x1b[2J not found"),  # escaped, not run
    ],
)
def test_an_unknown_or_impossible_id_is_one_line_and_exit_code_1(
    broker: Broker, workflow_id: str, message: str
) -> None:
    for args in ((workflow_id,), (workflow_id, "--json"), (workflow_id, "--cancel")):
        result = broker.corq(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(message), lines
        assert result.stdout == ""


def test_an_empty_id_is_a_usage_error(broker: Broker) -> None:
    result = broker.corq("")
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: give the workflow's id (wf_..., or the id of a depends_on job)\n"
    )


@pytest.mark.slow
def test_a_chord_of_10000_prints_whole(broker: Broker) -> None:
    count, total = broker.count, broker.total

    # Given a chord of 10,000 jobs that no worker has run yet
    async def make(app: corq.App) -> corq.WorkflowHandle[Any]:
        return await corq.chord((count.s(str(i)) for i in range(10_000)), total.then()).enqueue()

    wf = broker.setup(make)
    out = broker.ok(wf.id)
    lines = out.splitlines()
    # Then every job has its line under the group, and the callback comes last
    assert lines[0] == f"workflow {wf.id} · chord · running · 10,001 jobs: 1 waiting, 10,000 queued"
    assert lines[2] == "├── group of 10,000 side by side"
    members = [line for line in lines if line.startswith(("│   ├── count", "│   └── count"))]
    assert len(members) == 10_000
    assert lines[-1].startswith("└── total ")
    assert len(json.loads(broker.ok(wf.id, "--json"))["jobs"]) == 10_001
