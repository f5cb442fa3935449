"""How `corq workflow` draws a status it was given (no broker needed): colours and words,
deep trees, text from the broker printed as text."""

from __future__ import annotations

import io

from rich.console import Console

import corq
from corq import JobStatus, WorkflowJobInfo, WorkflowState, WorkflowStatus
from corq.cli.workflow_view import print_workflow


def status_of(jobs: list[WorkflowJobInfo], *, state: WorkflowState) -> WorkflowStatus:
    return WorkflowStatus(
        id="wf_1",
        kind="dag",
        state=state,
        total=len(jobs),
        ended=0,
        counts={},
        open=False,
        created_at_ms=1_700_000_000_000,
        finished_at_ms=None,
        first_failure=None,
        jobs=tuple(jobs),
    )


def job(
    index: int,
    parents: tuple[int, ...] = (),
    state: JobStatus | None = JobStatus.SUCCEEDED,
    *,
    task: str = "t",
    error: str | None = None,
) -> WorkflowJobInfo:
    return WorkflowJobInfo(
        id=f"j{index}",
        task=task,
        queue="q",
        state=state,
        parents=tuple(f"j{p}" for p in parents),
        error=error,
    )


def printed(status: WorkflowStatus, *, colour: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=colour, no_color=not colour, width=200)
    print_workflow(console, status)
    return out.getvalue()


def test_each_state_is_a_word_and_on_a_terminal_a_colour_too() -> None:
    status = status_of(
        [job(0), job(1, (0,), JobStatus.DEAD, error="ValueError: no"), job(2, (1,), None)],
        state=WorkflowState.RUNNING,
    )
    plain = printed(status, colour=False)
    assert "\x1b[" not in plain
    assert "t  j0  [q]  succeeded" in plain
    assert "t  j1  [q]  dead" in plain
    assert "t  j2  [q]  record expired" in plain
    assert "error: ValueError: no" in plain
    coloured = printed(status, colour=True)
    assert "\x1b[32msucceeded\x1b[0m" in coloured  # green
    assert "\x1b[31mdead\x1b[0m" in coloured  # red
    assert "\x1b[31merror: ValueError: no\x1b[0m" in coloured


def test_text_from_the_broker_cannot_drive_the_terminal() -> None:
    status = status_of(
        [
            job(
                0,
                state=JobStatus.DEAD,
                task="evil\x1b[2J[red]x[/red]",
                error="boom\r\x1b]0;title\x07",
            )
        ],
        state=WorkflowState.RUNNING,
    )
    for colour in (False, True):
        out = printed(status, colour=colour)
        assert "\x1b[2J" not in out
        assert "\x1b]0" not in out
        assert "evil\\x1b[2J[red]x[/red]" in out  # escaped, and not read as markup
        assert "boom\\r\\x1b]0;title\\x07" in out


def test_a_tree_too_deep_to_draw_is_listed_instead() -> None:
    # A caterpillar: each spine job has a leaf and the next spine job below it.
    jobs = [job(0)]
    for level in range(1, 5000):
        jobs.append(job(2 * level - 1, (2 * (level - 1),)))
        jobs.append(job(2 * level, (2 * (level - 1),)))
    out = printed(status_of(jobs, state=WorkflowState.SUCCEEDED), colour=False)
    lines = out.splitlines()
    assert lines[2] == (
        "(its tree nests 9,998 levels deep, too deep to draw: each job is listed with the "
        "jobs it waits for)"
    )
    assert len([line for line in lines if line.startswith("• t ")]) == len(jobs)
    assert max(len(line) for line in lines) < 100
    # A shallow one is drawn
    shallow = printed(status_of(jobs[:21], state=WorkflowState.SUCCEEDED), colour=False)
    assert shallow.splitlines()[2:7] == [
        "├── t  j0  [q]  succeeded",
        "└── group of 2 side by side",
        "    ├── t  j1  [q]  succeeded",
        "    └── chain of 2 steps",
        "        ├── t  j2  [q]  succeeded",
    ]


def test_the_header_counts_by_state_in_the_order_jobs_move() -> None:
    jobs = [
        job(0, state=JobStatus.RUNNING),
        job(1, state=JobStatus.QUEUED),
        job(2, (0,), JobStatus.WAITING),
        job(3, (1,), JobStatus.WAITING),
        job(4, state=JobStatus.SUCCEEDED),
    ]
    first = printed(status_of(jobs, state=corq.WorkflowState.RUNNING), colour=False)
    assert first.splitlines()[0] == (
        "workflow wf_1 · dag · running · 5 jobs: 2 waiting, 1 queued, 1 running, 1 succeeded"
    )
