from __future__ import annotations

from corq.job import TERMINAL_STATES, TRANSITIONS, JobStatus, can_transition


def test_every_state_has_a_transition_row() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


def test_terminal_states_are_left_only_by_a_dead_letter_retry() -> None:
    for state in TERMINAL_STATES:
        allowed = TRANSITIONS[state]
        assert allowed == ({JobStatus.QUEUED} if state is JobStatus.DEAD else frozenset())


def test_running_can_go_back_to_queued_for_release_and_reclaim() -> None:
    assert can_transition(JobStatus.RUNNING, JobStatus.QUEUED)
    assert not can_transition(JobStatus.SUCCEEDED, JobStatus.RUNNING)
