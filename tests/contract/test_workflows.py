"""Broker contract, Workflows port: jobs that wait for other jobs, released in the broker.

Methods: ``enqueue_workflow``, ``add_to_workflow``, ``close_workflow``,
``settle_workflows``, ``tend_workflows``, ``get_workflow``, ``workflow_nodes``,
``parent_outcomes``, ``output_outcomes``, ``batch_summary``, ``cancel_workflow``; and the
ends other ports note for them (``complete_jobs``, ``fail_jobs`` to dead, ``cancel_job``).

Every end is driven at port level and followed by ``settle_workflows`` of the queue where
it happened (see ``tests.contract.workflows.Hands``); a broker that settles in the end's own
step (SQLite) has nothing left to do there, so no test counts what a settle did beyond
what the contract guarantees.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from corq.backends import Backend
from corq.backends.base import (
    PRIORITY_MAX,
    WORKFLOW_MAX_JOBS,
    BatchEvent,
    ClaimedJob,
    Completion,
    Edge,
    NewWorkflow,
    ParentOutcome,
    Reclaimed,
    ResultShape,
    WorkflowNode,
    backstop_deaths,
)
from corq.errors import EnqueueError, WorkflowError, WorkflowNotFoundError
from corq.job import JobStatus
from tests.contract.conftest import Broker
from tests.contract.jobs import HOUR_MS, LATER, T0, Q, kill, new_job, run_and_die, wall_ms
from tests.contract.workflows import (
    Q2,
    TTL_MS,
    WF,
    Hands,
    dag,
    edge,
    error_of,
    later_ms,
    settle,
    status_of,
    statuses,
    upstream_error,
    wjob,
)

S = JobStatus

# ------------------------------------------------------------------------------------------------
# Creating a workflow and reading it back
# ------------------------------------------------------------------------------------------------


async def test_roots_are_queued_at_once_and_the_workflow_reads_back(backend: Backend) -> None:
    # Given a group of two roots
    wf = dag(
        wjob("a", inputs="first"),
        wjob("b"),
        kind="group",
        outputs=("a", "b"),
        shape=ResultShape.LIST,
    )

    # When it is enqueued
    assert await backend.enqueue_workflow(wf, None) is True

    # Then both roots are queued, carry their workflow, and the workflow reads back
    assert await statuses(backend, "a", "b") == {"a": S.QUEUED, "b": S.QUEUED}
    a = await backend.get_job("a", Q)
    assert a is not None
    assert (a.workflow, a.inputs) == (WF, "first")
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.id, record.kind, record.total, record.ended, dict(record.counts)) == (
        WF,
        "group",
        2,
        0,
        {},
    )
    assert (record.open, record.creating, record.shape) == (False, False, ResultShape.LIST)
    assert record.outputs == (("a", Q), ("b", Q))
    assert (record.created_at_ms, record.finished_at_ms, record.first_failure) == (T0, None, None)
    assert await backend.workflow_nodes(WF) == [
        WorkflowNode(
            job_id="a", queue=Q, task="tasks.add", status=S.QUEUED, parents=(), callback=None
        ),
        WorkflowNode(
            job_id="b", queue=Q, task="tasks.add", status=S.QUEUED, parents=(), callback=None
        ),
    ]
    held = await Hands(backend).claim()
    assert sorted(held) == ["a", "b"]
    assert (held["a"].workflow, held["a"].inputs) == (WF, "first")


async def test_the_same_workflow_id_again_writes_nothing(backend: Backend) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a")), None) is True

    # A second call under the same id (here with another job) is refused quietly
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("z", "a")), None) is False

    assert await backend.get_job("z", Q) is None
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 1
    assert [n.job_id for n in await backend.workflow_nodes(WF)] == ["a"]


async def test_workflow_nodes_are_in_the_order_added_with_their_edges_and_pages(
    backend: Backend,
) -> None:
    # Given children listed before their parents (the graph is checked whole)
    wf = dag(
        wjob("d", "c", edge("b", allow_failed=True)),
        wjob("c", "a"),
        wjob("b", "a"),
        wjob("a"),
        outputs=("d",),
    )
    assert await backend.enqueue_workflow(wf, None) is True

    nodes = await backend.workflow_nodes(WF)

    assert [(n.job_id, n.status, n.parents) for n in nodes] == [
        ("d", S.WAITING, (edge("c"), edge("b", allow_failed=True))),
        ("c", S.WAITING, (edge("a"),)),
        ("b", S.WAITING, (edge("a"),)),
        ("a", S.QUEUED, ()),
    ]
    assert [n.job_id for n in await backend.workflow_nodes(WF, offset=1, limit=2)] == ["c", "b"]
    assert [n.job_id for n in await backend.workflow_nodes(WF, offset=3)] == ["a"]
    assert await backend.workflow_nodes(WF, offset=4) == []


async def test_an_unknown_workflow_reads_as_nothing(backend: Backend) -> None:
    assert await backend.get_workflow("wf_missing") is None
    assert await backend.workflow_nodes("wf_missing") == []
    assert await backend.batch_summary("wf_missing") is None
    assert await backend.parent_outcomes("missing", Q) == []
    assert await backend.output_outcomes("wf_missing") == []


# ------------------------------------------------------------------------------------------------
# Release: a child is queued exactly once, when every parent has succeeded
# ------------------------------------------------------------------------------------------------


async def test_a_diamond_releases_its_join_once_both_sides_succeeded(backend: Backend) -> None:
    # Given A → B, A → C, B and C → D
    wf = dag(wjob("A"), wjob("B", "A"), wjob("C", "A"), wjob("D", "B", "C"))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    assert await statuses(backend, "B", "C", "D") == dict.fromkeys("BCD", S.WAITING)

    # When A succeeds, B and C are released (and only they)
    await hands.run("A")
    held = await hands.claim()
    assert sorted(held) == ["B", "C"]

    # When B succeeds, D still waits for C
    await hands.succeed(held["B"])
    assert await status_of(backend, "D") == S.WAITING
    assert await hands.claim() == {}

    # When C succeeds, D is queued, and claimable exactly once
    await hands.succeed(held["C"])
    assert await status_of(backend, "D") == S.QUEUED
    assert list(await hands.claim()) == ["D"]
    assert await hands.claim() == {}
    outcomes = await backend.parent_outcomes("D", Q)
    assert outcomes == [
        ParentOutcome(job_id="B", queue=Q, status=S.SUCCEEDED, result=b"B", error=None),
        ParentOutcome(job_id="C", queue=Q, status=S.SUCCEEDED, result=b"C", error=None),
    ]


async def test_parent_outcomes_read_the_same_given_the_jobs_workflow(backend: Backend) -> None:
    # Given a → c, b → c, both parents ended (a succeeded, b dead)
    wf = dag(wjob("a"), wjob("b"), wjob("c", "a", edge("b", allow_failed=True)))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(held["a"])
    await hands.die(held["b"])

    # When c's parents are read with its workflow id, a page at a time
    whole = await backend.parent_outcomes("c", Q, workflow_id=WF)
    pages = [await backend.parent_outcomes("c", Q, at, 1, workflow_id=WF) for at in (0, 1, 2)]

    # Then they read as without it, in edge order
    assert whole == await backend.parent_outcomes("c", Q)
    assert whole == [
        ParentOutcome(job_id="a", queue=Q, status=S.SUCCEEDED, result=b"a", error=None),
        ParentOutcome(job_id="b", queue=Q, status=S.DEAD, result=None, error="ValueError: boom"),
    ]
    assert pages == [whole[:1], whole[1:], []]


async def test_output_outcomes_read_the_outputs_in_order_a_page_at_a_time(
    backend: Backend,
) -> None:
    # Given a group whose outputs are c (in Q2), a, b: a succeeded, b dead, c still queued
    wf = dag(
        wjob("a"),
        wjob("b"),
        wjob("c", queue=Q2),
        kind="group",
        outputs=("c", "a", "b"),
        shape=ResultShape.LIST,
    )
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(held["a"])
    await hands.die(held["b"])

    # When its outputs are read whole, then a page of one at a time
    whole = await backend.output_outcomes(WF)
    pages = [await backend.output_outcomes(WF, at, 1) for at in (0, 1, 2, 3)]

    # Then each reads as its record now says, in the outputs' order
    assert whole == [
        ParentOutcome(job_id="c", queue=Q2, status=S.QUEUED, result=None, error=None),
        ParentOutcome(job_id="a", queue=Q, status=S.SUCCEEDED, result=b"a", error=None),
        ParentOutcome(job_id="b", queue=Q, status=S.DEAD, result=None, error="ValueError: boom"),
    ]
    assert pages == [whole[:1], whole[1:2], whole[2:], []]
    assert await backend.output_outcomes(WF, 1, 0) == []


async def test_a_chain_runs_link_after_link(backend: Backend) -> None:
    wf = dag(
        wjob("a"),
        wjob("b", "a", inputs="first"),
        wjob("c", "b", inputs="first"),
        kind="chain",
    )
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)

    for link, waiting in (("a", ["b", "c"]), ("b", ["c"]), ("c", [])):
        for job_id in waiting:
            assert await status_of(backend, job_id) == S.WAITING
        await hands.run(link)

    assert await statuses(backend, "a", "b", "c") == dict.fromkeys("abc", S.SUCCEEDED)
    assert await backend.parent_outcomes("c", Q) == [
        ParentOutcome(job_id="b", queue=Q, status=S.SUCCEEDED, result=b"b", error=None)
    ]
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.total, record.ended, dict(record.counts)) == (3, 3, {"succeeded": 3})
    assert record.finished_at_ms is not None
    assert record.first_failure is None


async def test_a_fan_out_releases_every_child_once(backend: Backend) -> None:
    children = [f"c{n:02}" for n in range(20)]
    wf = dag(wjob("root"), *(wjob(c, "root") for c in children), outputs=children)
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)

    await hands.run("root")

    assert sorted(await hands.claim()) == children
    assert await hands.claim() == {}


async def test_a_fan_in_of_1000_parents_releases_its_child_once(backend: Backend) -> None:
    # Given 1,000 roots and one child whose edges list them in reverse order
    parents = [f"p{n:04}" for n in range(1000)]
    edges = list(reversed(parents))
    wf = dag(*(wjob(p) for p in parents), wjob("join", *edges, inputs="list"))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    assert sorted(held) == parents

    # When all but one succeed, the child still waits
    await hands.succeed(*(held[p] for p in parents[:-1]))
    assert await status_of(backend, "join") == S.WAITING
    assert await hands.claim() == {}

    # When the last one succeeds, the child is released once
    await hands.succeed(held[parents[-1]])
    assert list(await hands.claim()) == ["join"]
    assert await hands.claim() == {}

    # Then its parents' outcomes come in edge order, a page at a time
    outcomes = await backend.parent_outcomes("join", Q)
    assert [o.job_id for o in outcomes] == edges
    assert all(o.status == S.SUCCEEDED and o.result == o.job_id.encode() for o in outcomes)
    page = await backend.parent_outcomes("join", Q, offset=990, limit=20)
    assert [o.job_id for o in page] == edges[990:]
    assert [o.job_id for o in await backend.parent_outcomes("join", Q, limit=5)] == edges[:5]
    assert await backend.parent_outcomes("join", Q, offset=1000) == []


async def test_edges_across_queues_release_the_child_in_its_own_queue(backend: Backend) -> None:
    # Given parents in Q and a child in Q2
    wf = dag(wjob("a"), wjob("b"), wjob("c", "a", "b", queue=Q2))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    assert await hands.claim(Q2) == {}
    while await backend.wait_for_jobs(Q2, timeout_s=0):
        pass  # forget the wakes of the enqueue

    # When both parents succeed (settled in their own queue)
    await hands.succeed(held["a"], held["b"])

    # Then the child's queue is woken and the child is claimed there
    assert await backend.wait_for_jobs(Q2, timeout_s=5) is True
    assert list(await hands.claim(Q2)) == ["c"]
    assert await status_of(backend, "c", Q2) == S.RUNNING
    assert [n.queue for n in await backend.workflow_nodes(WF)] == [Q, Q, Q2]


async def test_a_child_released_with_its_time_still_ahead_is_scheduled(backend: Backend) -> None:
    run_at = later_ms()
    wf = dag(wjob("a"), wjob("b", "a", run_at_ms=run_at))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)

    await hands.run("a")

    assert await status_of(backend, "b") == S.SCHEDULED
    assert await hands.claim() == {}
    assert await backend.promote_due_jobs(Q, run_at) is None
    assert await status_of(backend, "b") == S.QUEUED


# ------------------------------------------------------------------------------------------------
# External parents: jobs outside the workflow (a plain ``enqueue(depends_on=...)``)
# ------------------------------------------------------------------------------------------------


def depends(child: str, *parents: Edge, queue: str = Q) -> NewWorkflow:
    """The implicit workflow of one dependent job: named after it."""
    return dag(
        wjob(child, *parents, queue=queue, workflow=child), workflow_id=child, kind="depends"
    )


async def test_a_pending_external_parent_releases_its_dependent_when_it_succeeds(
    backend: Backend,
) -> None:
    # Given an ordinary job x in Q2 and a dependent of it in Q
    await backend.enqueue_jobs([new_job("x", queue=Q2)])
    assert await backend.enqueue_workflow(depends("c", edge("x", Q2)), None) is True
    assert await status_of(backend, "c") == S.WAITING
    hands = Hands(backend)

    # When x is claimed, its worker is told a workflow watches it; when it succeeds
    x = await hands.claim_one("x", Q2)
    assert x.notify is True
    await hands.succeed(x)

    # Then the dependent is released in its own queue
    assert list(await hands.claim()) == ["c"]
    assert await backend.parent_outcomes("c", Q) == [
        ParentOutcome(job_id="x", queue=Q2, status=S.SUCCEEDED, result=b"x", error=None)
    ]


async def test_an_external_parent_watched_by_two_workflows_releases_both(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("x")])
    assert await backend.enqueue_workflow(depends("c1", edge("x")), None) is True
    assert await backend.enqueue_workflow(depends("c2", edge("x")), None) is True
    hands = Hands(backend)

    await hands.run("x")

    assert sorted(await hands.claim()) == ["c1", "c2"]


async def test_an_external_parent_that_already_succeeded_counts_at_once(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("x")])
    hands = Hands(backend)
    await hands.run("x")

    assert await backend.enqueue_workflow(depends("c", edge("x")), None) is True

    assert await status_of(backend, "c") == S.QUEUED
    assert list(await hands.claim()) == ["c"]


async def test_an_external_parent_that_already_died_fails_its_dependent_at_once(
    backend: Backend,
) -> None:
    await kill(backend, ["x"])  # dead with "RuntimeError: x"

    assert await backend.enqueue_workflow(depends("c", edge("x")), None) is True

    assert await status_of(backend, "c") == S.UPSTREAM_FAILED
    assert await error_of(backend, "c") == upstream_error("x", "dead", "RuntimeError: x")
    assert await Hands(backend).claim() == {}


async def test_an_external_parent_already_cancelled_fails_its_dependent_at_once(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("x")])
    # On the broker's clock, as the enqueue_workflow below: a cancel at T0 followed by a
    # read on the real clock would find x's record expired on SQLite (design.md, "Reads
    # will carry the caller's clock").
    assert await backend.cancel_job("x", Q, None) is True

    assert await backend.enqueue_workflow(depends("c", edge("x")), None) is True

    assert await status_of(backend, "c") == S.UPSTREAM_FAILED
    error = await error_of(backend, "c")
    # A cancelled job may carry no error of its own: only the cause is fixed.
    assert error is not None
    assert error.startswith("upstream_failed: x ended cancelled"), error


async def test_an_allow_failed_edge_to_a_dead_external_parent_runs_the_child(
    backend: Backend,
) -> None:
    await kill(backend, ["x"])

    assert await backend.enqueue_workflow(depends("c", edge("x", allow_failed=True)), None)

    assert list(await Hands(backend).claim()) == ["c"]
    assert await backend.parent_outcomes("c", Q) == [
        ParentOutcome(job_id="x", queue=Q, status=S.DEAD, result=None, error="RuntimeError: x")
    ]


async def test_a_pending_external_parent_that_dies_fails_its_dependent(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("x", queue=Q2)])
    assert await backend.enqueue_workflow(depends("c", edge("x", Q2)), None) is True
    hands = Hands(backend)

    await hands.die(await hands.claim_one("x", Q2))

    assert await status_of(backend, "c") == S.UPSTREAM_FAILED
    assert await error_of(backend, "c") == upstream_error("x", "dead", "ValueError: boom")
    assert await hands.claim() == {}


@pytest.mark.parametrize("b_queue", [Q, Q2])
async def test_a_watched_job_of_another_workflow_that_ends_upstream_failed_fails_its_watchers(
    backend: Backend, b_queue: str
) -> None:
    # Given a → b in one workflow (b in a's queue or another), and c in another workflow
    # depending on b
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a", queue=b_queue)), None)
    assert await backend.enqueue_workflow(depends("c", edge("b", b_queue)), None) is True
    hands = Hands(backend)

    # When a dies (and a's queue is settled once, as its writer does), b ends
    # upstream_failed: an end for the workflow that watches it, settled by the same call
    await hands.die(await hands.claim_one("a"))

    b_error = upstream_error("a", "dead", "ValueError: boom")
    assert await error_of(backend, "b", b_queue) == b_error
    assert await status_of(backend, "c") == S.UPSTREAM_FAILED
    assert await error_of(backend, "c") == upstream_error("b", "upstream_failed", b_error)


# ------------------------------------------------------------------------------------------------
# Failure: dead, cancelled and upstream_failed parents
# ------------------------------------------------------------------------------------------------


async def test_a_dead_parent_fails_its_descendants_each_naming_its_own_parent(
    backend: Backend,
) -> None:
    # Given A → B → C → D, with B in another queue, and a sibling E of B that succeeds
    wf = dag(
        wjob("A"),
        wjob("B", "A", queue=Q2),
        wjob("C", edge("B", Q2)),
        wjob("D", "C", queue=Q2),
        wjob("E"),
        outputs=("D",),
    )
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(held["E"])

    # When A dies (settled in A's queue only)
    await hands.die(held["A"])

    # Then three levels fail, each naming its own parent and how that one ended
    b_error = upstream_error("A", "dead", "ValueError: boom")
    c_error = upstream_error("B", "upstream_failed", b_error)
    d_error = upstream_error("C", "upstream_failed", c_error)
    assert (await status_of(backend, "B", Q2), await error_of(backend, "B", Q2)) == (
        S.UPSTREAM_FAILED,
        b_error,
    )
    assert (await status_of(backend, "C"), await error_of(backend, "C")) == (
        S.UPSTREAM_FAILED,
        c_error,
    )
    assert (await status_of(backend, "D", Q2), await error_of(backend, "D", Q2)) == (
        S.UPSTREAM_FAILED,
        d_error,
    )
    assert await hands.claim() == {}
    assert await hands.claim(Q2) == {}
    nodes = {n.job_id: n for n in await backend.workflow_nodes(WF)}
    assert (nodes["C"].status, nodes["C"].error) == (S.UPSTREAM_FAILED, c_error)

    # And the workflow is over, its first failure the dead parent
    record = await backend.get_workflow(WF)
    assert record is not None
    assert dict(record.counts) == {"succeeded": 1, "dead": 1, "upstream_failed": 3}
    assert record.ended == record.total == 5
    assert record.finished_at_ms is not None
    assert record.first_failure == ("A", "ValueError: boom")


async def test_a_job_reclaimed_into_the_dead_letters_fails_its_children(backend: Backend) -> None:
    # Given a → b, and a killing every worker that runs it (max_deaths 1: a suspect at once)
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    reclaimed: list[Reclaimed] = []
    for n in range(backstop_deaths(1)):
        claimed, reclaimed = await run_and_die(backend, f"w{n}", T0 + 2 * n * LATER, 1, suspects=1)
        assert claimed == ["a"]

    # When the last reclaim sends it to the dead letters (and its queue is settled)
    assert [r.dead for r in reclaimed] == [True]
    await settle(backend)

    # Then its child is upstream_failed by it
    assert await status_of(backend, "b") == S.UPSTREAM_FAILED
    error = await error_of(backend, "b")
    assert error is not None
    assert error.startswith("upstream_failed: a ended dead: "), error


async def test_a_failed_attempt_that_will_be_retried_releases_nothing(backend: Backend) -> None:
    wf = dag(wjob("a"), wjob("b", "a"))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    retry_at = later_ms()

    # When a's attempt fails and it will be retried
    await hands.fail_for_retry(await hands.claim_one("a"), retry_at)

    # Then b still waits, and the workflow took no end in
    assert await statuses(backend, "a", "b") == {"a": S.FAILED, "b": S.WAITING}
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.ended, dict(record.counts)) == (0, {})

    # And once the retry succeeds, b is released
    await backend.promote_due_jobs(Q, retry_at)
    await hands.run("a")
    assert list(await hands.claim()) == ["b"]


async def test_an_allow_failed_edge_releases_the_child_of_a_dead_parent(backend: Backend) -> None:
    wf = dag(wjob("a"), wjob("b"), wjob("c", edge("a", allow_failed=True), "b"))
    assert await backend.enqueue_workflow(wf, None) is True
    hands = Hands(backend)
    held = await hands.claim()

    await hands.die(held["a"])
    assert await status_of(backend, "c") == S.WAITING  # b has not ended yet
    await hands.succeed(held["b"])

    assert list(await hands.claim()) == ["c"]
    assert await backend.parent_outcomes("c", Q) == [
        ParentOutcome(job_id="a", queue=Q, status=S.DEAD, result=None, error="ValueError: boom"),
        ParentOutcome(job_id="b", queue=Q, status=S.SUCCEEDED, result=b"b", error=None),
    ]


async def test_a_dead_parent_retried_later_does_not_bring_back_its_failed_children(
    backend: Backend,
) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    hands = Hands(backend)
    await hands.die(await hands.claim_one("a"))
    assert await status_of(backend, "b") == S.UPSTREAM_FAILED

    # When the dead parent is retried from the dead letters and succeeds
    assert await backend.retry_dead(Q, ["a"], None) == 1
    await hands.run("a")

    # Then its child stays upstream_failed
    assert await status_of(backend, "b") == S.UPSTREAM_FAILED
    assert await hands.claim() == {}


async def test_a_first_failure_is_kept_while_the_rest_goes_on(backend: Backend) -> None:
    # Given independent roots a (with a child b) and c
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c")), None)
    hands = Hands(backend)
    held = await hands.claim()

    # When c dies, the workflow has a first failure but is not finished
    await hands.die(held["c"])
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.first_failure, record.finished_at_ms) == (("c", "ValueError: boom"), None)

    # When the rest succeeds, it is finished, the first failure kept
    await hands.succeed(held["a"])
    await hands.run("b")
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms is not None
    assert record.first_failure == ("c", "ValueError: boom")
    assert dict(record.counts) == {"succeeded": 2, "dead": 1}


# ------------------------------------------------------------------------------------------------
# Refused workflows: WorkflowError, and nothing written
# ------------------------------------------------------------------------------------------------

#: Each refused for one reason; an ordinary job "x" exists in Q when they are enqueued.
REFUSED: dict[str, NewWorkflow] = {
    "an unknown external parent": dag(wjob("a"), wjob("b", "a", edge("ghost"))),
    "an external parent looked for in the wrong queue": dag(wjob("a"), wjob("b", edge("x", Q2))),
    "a job id that exists already": dag(wjob("a"), wjob("x", "a")),
    "a job of another workflow": dag(wjob("a"), wjob("b", "a", workflow="wf_other")),
    "a job of no workflow": dag(wjob("a"), wjob("b", "a", workflow=None)),
    "a job listed twice": dag(wjob("a"), wjob("b", "a"), wjob("b")),
    "a parent listed twice": dag(wjob("a"), wjob("b", "a", "a")),
    "a parent listed twice with other flags": dag(
        wjob("a"), wjob("b", "a", edge("a", allow_failed=True))
    ),
    "an edge to a job of the workflow under another queue": dag(
        wjob("a"), wjob("b", edge("a", Q2))
    ),
    "a cycle below a root": dag(wjob("r"), wjob("a", "r", "b"), wjob("b", "a")),
    "a cycle without a root": dag(wjob("a", "b"), wjob("b", "a")),
    "a self-edge": dag(wjob("r"), wjob("a", "r", "a")),
    "a lone self-edge": dag(wjob("a", "a")),
    "a callback with parents": dag(wjob("a"), wjob("cb", "a", callback=BatchEvent.COMPLETE)),
    "an output not in the workflow": dag(wjob("a"), outputs=("ghost",)),
    "an output outside the workflow": dag(wjob("a"), outputs=("x",)),
    "no jobs": NewWorkflow(id=WF, kind="dag", jobs=[], outputs=(), created_at_ms=T0),
}


async def assert_nothing_written(backend: Backend, wf: NewWorkflow) -> None:
    """No workflow, no record of its jobs (but "x", untouched), nothing runnable."""
    assert await backend.get_workflow(wf.id) is None
    assert await backend.workflow_nodes(wf.id) == []
    for wjob_ in wf.jobs:
        if wjob_.job.id != "x":
            for queue in (Q, Q2):
                assert await backend.get_job(wjob_.job.id, queue) is None, wjob_.job.id
    x = await backend.get_job("x", Q)
    assert x is not None
    assert (x.status, x.workflow) == (S.QUEUED, None)
    held = await Hands(backend).claim()
    assert list(held) == ["x"]
    assert held["x"].notify is False


@pytest.mark.parametrize("reason", list(REFUSED))
async def test_a_bad_workflow_is_refused_whole(backend: Backend, reason: str) -> None:
    await backend.enqueue_jobs([new_job("x")])
    wf = REFUSED[reason]

    with pytest.raises(WorkflowError):
        await backend.enqueue_workflow(wf, None)

    await assert_nothing_written(backend, wf)


async def test_a_job_enqueue_jobs_would_refuse_is_refused_whole(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("x")])
    wf = dag(wjob("a"), wjob("b", "a", priority=PRIORITY_MAX + 1))

    with pytest.raises(EnqueueError):
        await backend.enqueue_workflow(wf, None)

    await assert_nothing_written(backend, wf)


@functools.cache
def too_big() -> NewWorkflow:
    """WORKFLOW_MAX_JOBS + 1 roots (built once: it takes a moment)."""
    return dag(*(wjob(f"j{n}") for n in range(WORKFLOW_MAX_JOBS + 1)), outputs=("j0",))


async def test_a_workflow_of_a_job_too_many_is_refused_whole(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("x")])
    wf = too_big()

    with pytest.raises(WorkflowError):
        await backend.enqueue_workflow(wf, None)

    assert await backend.get_workflow(WF) is None
    assert await backend.get_job("j0", Q) is None
    assert await backend.get_job(f"j{WORKFLOW_MAX_JOBS}", Q) is None
    assert list(await Hands(backend).claim()) == ["x"]


# ------------------------------------------------------------------------------------------------
# Races: ends at the same instant never lose a release nor release a child twice
# ------------------------------------------------------------------------------------------------

ROUNDS = 5
RACING_PARENTS = 30
RACING_BACKENDS = 5


async def test_parents_ending_at_once_release_their_child_exactly_once(
    broker: Broker, backend: Backend
) -> None:
    # Given several backends on the same store, each with its own connections
    others = [broker.open() for _ in range(RACING_BACKENDS)]
    hands = Hands(backend)
    for n in range(ROUNDS):
        # Given a child of many parents, all of them held
        wf_id = f"wf_race{n}"
        parents = [f"r{n}p{i}" for i in range(RACING_PARENTS)]
        child = f"r{n}child"
        wf = dag(
            *(wjob(p, workflow=wf_id) for p in parents),
            wjob(child, *parents, workflow=wf_id),
            workflow_id=wf_id,
        )
        assert await backend.enqueue_workflow(wf, None) is True
        held = await hands.claim()
        assert sorted(held) == sorted(parents)

        # When every parent completes at once, each end followed by its own settle, while
        # more settles run besides
        async def end(i: int, job: ClaimedJob) -> None:
            one = others[i % RACING_BACKENDS]
            done = Completion(
                job_id=job.id, queue=Q, fence=job.fence, result=b"r", finished_at_ms=T0 + 9
            )
            assert await one.complete_jobs(hands.name, [done], TTL_MS) == [True]
            await one.settle_workflows(Q, None)

        await asyncio.gather(
            *(end(i, held[p]) for i, p in enumerate(parents)),
            *(one.settle_workflows(Q, None) for one in others),
        )

        # Then the child was released exactly once
        assert list(await hands.claim()) == [child], f"round {n}"
        assert await hands.claim() == {}, f"round {n}"
        assert await status_of(backend, child) == S.RUNNING
        record = await backend.get_workflow(wf_id)
        assert record is not None
        assert (record.ended, dict(record.counts)) == (
            RACING_PARENTS,
            {"succeeded": RACING_PARENTS},
        )


async def test_concurrent_settles_of_the_same_ends_release_once(
    broker: Broker, backend: Backend
) -> None:
    # Given a diamond's two sides ended, with no settle yet (their writer died)
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b"), wjob("c", "a", "b")), None)
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(held["a"], held["b"], settled=False)

    # When ten settles run at once from five backends
    others = [broker.open() for _ in range(5)]
    await asyncio.gather(*(others[n % 5].settle_workflows(Q, None) for n in range(10)))

    # Then the child is released once
    assert list(await hands.claim()) == ["c"]
    assert await hands.claim() == {}


# ------------------------------------------------------------------------------------------------
# Crashes: an end whose settle never ran
# ------------------------------------------------------------------------------------------------


async def test_an_end_whose_settle_never_ran_is_settled_by_another_worker(
    broker: Broker, backend: Backend
) -> None:
    # Given a → b, and a's writer died right after recording a's success
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    hands = Hands(backend)
    await hands.succeed(await hands.claim_one("a"), settled=False)

    # When another worker's maintenance settles the queue
    await settle(broker.open())

    # Then b is released, once
    assert list(await hands.claim()) == ["b"]
    assert await hands.claim() == {}
    record = await backend.get_workflow(WF)
    assert record is not None
    assert dict(record.counts) == {"succeeded": 1}


async def test_a_settle_of_old_ends_only_leaves_fresh_ones_to_their_writer(
    backend: Backend,
) -> None:
    # Given a → b, and a's success recorded just now (by the broker's clock) but not settled
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    hands = Hands(backend)
    await hands.succeed(await hands.claim_one("a"), settled=False, at_ms=wall_ms())
    settled_in_the_end = await status_of(backend, "b") == S.QUEUED

    # When maintenance settles only ends older than an hour
    assert await backend.settle_workflows(Q, None, older_than_ms=HOUR_MS) == 0

    # Then b is as the end left it: waiting (it is the writer's to settle), unless the
    # broker settled in the end's own step
    expected = S.QUEUED if settled_in_the_end else S.WAITING
    assert await status_of(backend, "b") == expected
    # And a settle without a bound releases it
    await settle(backend)
    assert list(await hands.claim()) == ["b"]


async def test_tend_workflows_leaves_healthy_workflows_alone(backend: Backend) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    hands = Hands(backend)
    await hands.run("a")

    await backend.tend_workflows(None)

    assert await statuses(backend, "a", "b") == {"a": S.SUCCEEDED, "b": S.QUEUED}
    assert list(await hands.claim()) == ["b"]
    assert await backend.get_workflow(WF) is not None


# ------------------------------------------------------------------------------------------------
# Batches: callbacks released by the members' counts
# ------------------------------------------------------------------------------------------------


def batch(*members: str, open: bool = False) -> NewWorkflow:
    """Members (roots) with one callback of each kind: on_ok, on_done, on_fail."""
    callbacks = (
        wjob("on_ok", callback=BatchEvent.SUCCESS, inputs="summary"),
        wjob("on_done", callback=BatchEvent.COMPLETE, inputs="summary"),
        wjob("on_fail", callback=BatchEvent.FAILURE, inputs="summary"),
    )
    return dag(
        *(wjob(m) for m in members), *callbacks, kind="batch", outputs=("on_done",), open=open
    )


CALLBACKS = ("on_ok", "on_done", "on_fail")


async def test_a_batch_that_succeeds_runs_its_success_and_complete_callbacks(
    backend: Backend,
) -> None:
    # Given a batch of three members
    assert await backend.enqueue_workflow(batch("m1", "m2", "m3"), None) is True
    assert await statuses(backend, *CALLBACKS) == dict.fromkeys(CALLBACKS, S.WAITING)
    hands = Hands(backend)
    held = await hands.claim()
    assert sorted(held) == ["m1", "m2", "m3"]
    nodes = {n.job_id: n for n in await backend.workflow_nodes(WF)}
    assert nodes["on_fail"].callback == BatchEvent.FAILURE
    assert nodes["m1"].callback is None

    # When two members succeed, no callback runs yet
    await hands.succeed(held["m1"], held["m2"])
    assert await statuses(backend, *CALLBACKS) == dict.fromkeys(CALLBACKS, S.WAITING)
    assert await hands.claim() == {}

    # When the last one succeeds, success and complete run once; failure is not needed
    await hands.succeed(held["m3"])
    assert sorted(await hands.claim()) == ["on_done", "on_ok"]
    assert await hands.claim() == {}
    assert await status_of(backend, "on_fail") == S.CANCELLED
    summary = await backend.batch_summary(WF)
    assert summary is not None
    assert (summary.total, dict(summary.counts)) == (3, {"succeeded": 3})
    assert (summary.failed_ids, summary.failed) == ((), 0)
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 6


async def test_a_batch_with_dead_members_runs_its_failure_callback_once(
    backend: Backend,
) -> None:
    # Given a batch of three members
    assert await backend.enqueue_workflow(batch("m1", "m2", "m3"), None) is True
    hands = Hands(backend)
    held = await hands.claim()

    # When the first member dies, the failure callback runs at once
    await hands.die(held["m2"])
    assert list(await hands.claim()) == ["on_fail"]
    assert await status_of(backend, "on_done") == S.WAITING
    # success can never come now: it waits or is already cancelled, but never runs
    assert await status_of(backend, "on_ok") in {S.WAITING, S.CANCELLED}

    # When a second one dies, nothing more is released
    await hands.die(held["m1"])
    assert await hands.claim() == {}

    # When the last one succeeds, complete runs; success ends cancelled
    await hands.succeed(held["m3"])
    assert list(await hands.claim()) == ["on_done"]
    assert await hands.claim() == {}
    assert await status_of(backend, "on_ok") == S.CANCELLED
    summary = await backend.batch_summary(WF)
    assert summary is not None
    assert (summary.total, dict(summary.counts)) == (3, {"dead": 2, "succeeded": 1})
    assert (summary.failed_ids, summary.failed) == (("m2", "m1"), 2)


async def test_an_open_batch_releases_its_callbacks_only_once_closed(backend: Backend) -> None:
    # Given an open batch whose one member has succeeded
    assert await backend.enqueue_workflow(batch("m1", open=True), None) is True
    hands = Hands(backend)
    await hands.run("m1")
    assert await statuses(backend, "on_ok", "on_done") == dict.fromkeys(
        ("on_ok", "on_done"), S.WAITING
    )

    # When more members are added (one a child of m1, which has ended), and they succeed
    await backend.add_to_workflow(WF, [wjob("m2"), wjob("m3", "m1")], None)
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.total, record.open) == (6, True)
    held = await hands.claim()
    assert sorted(held) == ["m2", "m3"]
    await hands.succeed(*held.values())

    # Then every member has ended, but the callbacks wait for the close
    assert await statuses(backend, "on_ok", "on_done") == dict.fromkeys(
        ("on_ok", "on_done"), S.WAITING
    )
    assert await hands.claim() == {}
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms is None

    # When it is closed, they are released at once (once)
    assert await backend.close_workflow(WF, None) is True
    assert sorted(await hands.claim()) == ["on_done", "on_ok"]
    assert await hands.claim() == {}
    assert await status_of(backend, "on_fail") == S.CANCELLED
    summary = await backend.batch_summary(WF)
    assert summary is not None
    assert (summary.total, dict(summary.counts)) == (3, {"succeeded": 3})
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.open is False

    # And a closed batch takes no more jobs, nor a second close
    assert await backend.close_workflow(WF, None) is False
    with pytest.raises(WorkflowError):
        await backend.add_to_workflow(WF, [wjob("m4")], None)
    assert await backend.get_job("m4", Q) is None


async def test_an_open_batch_closed_before_its_members_end_releases_at_the_last_end(
    backend: Backend,
) -> None:
    assert await backend.enqueue_workflow(batch("m1", open=True), None) is True
    hands = Hands(backend)
    m1 = await hands.claim_one("m1")

    assert await backend.close_workflow(WF, None) is True
    assert await statuses(backend, "on_ok", "on_done") == dict.fromkeys(
        ("on_ok", "on_done"), S.WAITING
    )

    await hands.succeed(m1)
    assert sorted(await hands.claim()) == ["on_done", "on_ok"]


async def test_adding_the_same_jobs_again_is_a_safe_retry(backend: Backend) -> None:
    # Given an open batch that took m2 (the caller never saw the reply)
    assert await backend.enqueue_workflow(batch("m1", open=True), None) is True
    await backend.add_to_workflow(WF, [wjob("m2")], None)

    # When the same call is retried, the batch does not grow
    await backend.add_to_workflow(WF, [wjob("m2")], None)

    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 5
    assert sorted(await Hands(backend).claim()) == ["m1", "m2"]


async def test_a_bad_addition_is_refused_whole(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("x")])
    assert await backend.enqueue_workflow(batch("m1", open=True), None) is True

    for jobs in (
        [wjob("m2"), wjob("m3", edge("ghost"))],  # an unknown parent
        [wjob("m2"), wjob("x")],  # an id that exists already
        [wjob("m2"), wjob("m3", "m3")],  # a self-edge
        [wjob("m2", workflow="wf_other")],
    ):
        with pytest.raises(WorkflowError):
            await backend.add_to_workflow(WF, jobs, None)

    assert await backend.get_job("m2", Q) is None
    assert await backend.get_job("m3", Q) is None
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 4


async def test_closing_a_workflow_that_was_never_open_changes_nothing(backend: Backend) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a")), None) is True

    assert await backend.close_workflow(WF, None) is False
    with pytest.raises(WorkflowError):
        await backend.add_to_workflow(WF, [wjob("b")], None)
    assert await backend.get_job("b", Q) is None


async def test_calls_on_an_unknown_workflow_raise(backend: Backend) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await backend.add_to_workflow("wf_missing", [wjob("a", workflow="wf_missing")], None)
    with pytest.raises(WorkflowNotFoundError):
        await backend.close_workflow("wf_missing", None)
    with pytest.raises(WorkflowNotFoundError):
        await backend.cancel_workflow("wf_missing", None)
    assert await backend.get_job("a", Q) is None


# ------------------------------------------------------------------------------------------------
# Cancelling a workflow
# ------------------------------------------------------------------------------------------------


async def refused_success(hands: Hands, job: ClaimedJob) -> bool:
    """True when the holder's report of `job`'s success is refused (it was cancelled)."""
    done = Completion(
        job_id=job.id, queue=job.queue, fence=job.fence, result=b"1", finished_at_ms=T0 + 9
    )
    return await hands.backend.complete_jobs(hands.name, [done], 60_000) == [False]


async def test_cancel_workflow_cancels_every_job_that_has_not_ended(
    backend: Backend,
) -> None:
    # Given a workflow with a running job, a failed one awaiting its retry, a queued one (in
    # Q2), a scheduled one and a waiting one; and another workflow depending on the queued one
    wf = dag(
        wjob("run"),
        wjob("retrying"),
        wjob("queued", queue=Q2),
        wjob("scheduled", run_at_ms=later_ms()),
        wjob("waiting", "run"),
        outputs=("waiting",),
    )
    assert await backend.enqueue_workflow(wf, None) is True
    other = dag(wjob("outside", edge("queued", Q2), workflow="wf_2"), workflow_id="wf_2")
    assert await backend.enqueue_workflow(other, None) is True
    hands = Hands(backend)
    held = await hands.claim()
    assert sorted(held) == ["retrying", "run"]
    await hands.fail_for_retry(held["retrying"], later_ms())

    # When the workflow is cancelled (the call settles what it ended)
    assert await backend.cancel_workflow(WF, None) == 5

    # Then every job is cancelled, the running one too (its holder kept), and the dependent
    # in the other workflow is upstream_failed
    assert await statuses(backend, "run", "retrying", "scheduled", "waiting") == {
        "run": S.CANCELLED,
        "retrying": S.CANCELLED,
        "scheduled": S.CANCELLED,
        "waiting": S.CANCELLED,
    }
    assert await status_of(backend, "queued", Q2) == S.CANCELLED
    assert await status_of(backend, "outside") == S.UPSTREAM_FAILED
    error = await error_of(backend, "outside")
    assert error is not None
    assert error.startswith("upstream_failed: queued ended cancelled"), error
    assert await hands.claim(Q2) == {}

    run = await backend.get_job("run", Q)
    assert run is not None
    assert run.worker_id is not None

    # When the running job's holder reports a success, it is refused; the workflow is over
    assert await refused_success(hands, held["run"])
    assert await status_of(backend, "run") == S.CANCELLED
    assert await hands.claim() == {}
    record = await backend.get_workflow(WF)
    assert record is not None
    assert dict(record.counts) == {"cancelled": 5}
    assert record.finished_at_ms is not None
    assert record.first_failure is not None
    assert record.first_failure[0] in {"run", "retrying", "queued", "scheduled", "waiting"}


async def test_cancel_workflow_cancels_callbacks_not_yet_released(backend: Backend) -> None:
    assert await backend.enqueue_workflow(batch("m1"), None) is True
    hands = Hands(backend)
    m1 = await hands.claim_one("m1")

    assert await backend.cancel_workflow(WF, None) == 4

    assert await statuses(backend, "m1", *CALLBACKS) == {
        "m1": S.CANCELLED,
        **dict.fromkeys(CALLBACKS, S.CANCELLED),
    }
    assert await refused_success(hands, m1)
    assert await hands.claim() == {}
    assert await statuses(backend, *CALLBACKS) == dict.fromkeys(CALLBACKS, S.CANCELLED)
