from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import corq


def test_to_dict_is_plain_data_and_from_dict_restores_it() -> None:
    paris = timezone(timedelta(hours=1))
    spec: corq.JobSpec[Any] = corq.JobSpec(
        task="report.build",
        args=[2026, "q4"],  # type: ignore[arg-type]  # a list is accepted and kept as a tuple
        kwargs={"final": True},
        options=corq.EnqueueOptions(eta=datetime(2027, 1, 2, 3, 4, tzinfo=paris), priority=-3),
    )
    data = spec.to_dict()
    assert data == {
        "task": "report.build",
        "args": [2026, "q4"],
        "kwargs": {"final": True},
        "options": {"eta": "2027-01-02T03:04:00+01:00", "priority": -3},
    }
    restored = corq.JobSpec.from_dict(data)
    assert restored == spec
    assert restored.args == (2026, "q4")
    assert restored.options.eta == datetime(2027, 1, 2, 2, 4, tzinfo=UTC)


def test_an_unset_option_is_left_out_and_a_delay_is_seconds() -> None:
    spec: corq.JobSpec[Any] = corq.JobSpec(
        task="t", options=corq.EnqueueOptions(delay=timedelta(minutes=2))
    )
    assert spec.to_dict()["options"] == {"delay": 120.0}
    assert corq.JobSpec(task="t").to_dict()["options"] == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["t"], "a job spec is"),
        ({"task": "t", "options": []}, "a job spec is"),
        ({"task": "bad name"}, "invalid task name 'bad name'"),
        ({}, "invalid task name None"),
        ({"task": "t", "args": "ab"}, "args must be a list or tuple, got 'ab'"),
        ({"task": "t", "kwargs": {1: 2}}, "kwargs must be a dict with str keys"),
        ({"task": "t", "options": {"dealy": 1}}, r"unknown enqueue option\(s\): dealy"),
        ({"task": "t", "options": {"eta": "tomorrow"}}, "eta is not an ISO 8601 time"),
    ],
    ids=repr,
)
def test_from_dict_refuses_a_wrong_shape(data: object, message: str) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        corq.JobSpec.from_dict(data)


def test_a_spec_checks_what_it_is_built_from() -> None:
    with pytest.raises(corq.ArgumentError, match="options must be EnqueueOptions"):
        corq.JobSpec(task="t", options={"delay": 1})  # type: ignore[arg-type]  # the point
    assert (
        repr(corq.JobSpec(task="t", args=(1,)).with_options(queue="q"))
        == "JobSpec(t, args=(1,), kwargs={}, options={'queue': 'q'})"
    )
