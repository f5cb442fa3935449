"""The graph checks both brokers make before writing a workflow."""

from __future__ import annotations

import pytest

from corq.backends.base import (
    WORKFLOW_MAX_JOBS,
    BatchEvent,
    Edge,
    NewJob,
    NewWorkflow,
    WorkflowJob,
)
from corq.backends.workflow_graph import check_jobs, check_workflow
from corq.errors import WorkflowError

WF = "wf_1"


def job(job_id: str, *parents: str, queue: str = "q", workflow: str | None = WF) -> WorkflowJob:
    new = NewJob(
        id=job_id,
        task="t",
        queue=queue,
        payload=b"",
        enqueued_at_ms=0,
        run_at_ms=0,
        workflow=workflow,
    )
    return WorkflowJob(job=new, parents=tuple(Edge(parent=p, queue="q") for p in parents))


def workflow(*jobs: WorkflowJob, outputs: tuple[str, ...] = ()) -> NewWorkflow:
    return NewWorkflow(id=WF, kind="dag", jobs=jobs, outputs=outputs, created_at_ms=0)


def test_a_sound_graph_gives_its_outside_parents_and_children_in_edge_order() -> None:
    graph = check_workflow(
        workflow(job("a"), job("b", "a", "ext1"), job("c", "a", "b", "ext1", "ext2"))
    )

    assert graph.outside == (("ext1", "q"), ("ext2", "q"))
    assert graph.children == {"a": ("b", "c"), "b": ("c",)}


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ((), "no jobs"),
        ((job("a", workflow="wf_2"),), "job 'a' names workflow 'wf_2'"),
        ((job("a"), job("a")), "job 'a' is listed twice"),
        ((job("a"), job("b", "a", "a")), "job 'b' lists parent 'a' twice"),
        ((job("a", queue="other"), job("b", "a")), "names parent 'a' in queue 'q', but it is"),
        ((job("a", "a"),), "a cycle through job 'a'"),
        ((job("r"), job("x", "r", "z"), job("y", "x"), job("z", "y")), "a cycle through job"),
    ],
)
def test_a_bad_graph_is_refused_naming_the_job(jobs: tuple[WorkflowJob, ...], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        check_workflow(workflow(*jobs))


def test_the_cycle_named_is_one_the_jobs_lie_on() -> None:
    # d hangs below the cycle x -> y -> z -> x; the message names a job of the cycle
    jobs = (job("d", "z"), job("x", "z"), job("y", "x"), job("z", "y"))

    with pytest.raises(WorkflowError, match=r"a cycle through job '[xyz]'"):
        check_workflow(workflow(*jobs))


def test_a_callback_takes_no_parents() -> None:
    callback = WorkflowJob(
        job=job("cb").job, parents=(Edge(parent="a", queue="q"),), callback=BatchEvent.SUCCESS
    )

    with pytest.raises(WorkflowError, match="job 'cb' is a success callback"):
        check_workflow(workflow(job("a"), callback))


def test_outputs_must_be_jobs_of_the_workflow() -> None:
    with pytest.raises(WorkflowError, match="output 'nope' is not a job"):
        check_workflow(workflow(job("a"), outputs=("a", "nope")))


def test_the_size_counts_the_jobs_already_there() -> None:
    assert check_jobs(WF, [job("a")], existing=WORKFLOW_MAX_JOBS - 1).outside == ()

    with pytest.raises(WorkflowError, match=f"at most {WORKFLOW_MAX_JOBS}"):
        check_jobs(WF, [job("a"), job("b")], existing=WORKFLOW_MAX_JOBS - 1)


def test_a_job_depending_on_a_callback_of_its_batch_is_refused() -> None:
    # A callback waits for every member; a member waiting for the callback would never run.
    callback = WorkflowJob(job=job("done").job, callback=BatchEvent.COMPLETE)
    with pytest.raises(WorkflowError, match="'after' depends on 'done', a complete callback"):
        check_workflow(workflow(job("a"), callback, job("after", "done")))
