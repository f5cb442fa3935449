"""The job record's one field list agrees with the classes that carry its fields."""

from __future__ import annotations

import dataclasses

import pytest

from corq.backends.record import (
    CLAIMED_FIELDS,
    FIELDS_BY_NAME,
    JOB_FIELDS,
    NEW_FIELDS,
    SHOWN_FIELDS,
    ClaimedJob,
    Kind,
    NewJob,
)
from corq.job import Job


def _attributes(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("cls", "listed"),
    [(NewJob, NEW_FIELDS), (ClaimedJob, CLAIMED_FIELDS), (Job, SHOWN_FIELDS)],
)
def test_each_role_names_exactly_the_attributes_of_its_class(
    cls: type, listed: tuple[str, ...]
) -> None:
    # NewJob.dedupe is a directive of the enqueue, not a stored field
    assert set(listed) == _attributes(cls) - {"dedupe"}


def test_names_are_unique_and_defaults_fit_their_kind() -> None:
    assert len(FIELDS_BY_NAME) == len(JOB_FIELDS)
    fits = {
        Kind.TEXT: str,
        Kind.BYTES: bytes,
        Kind.INT: int,
        Kind.COUNT: int,
        Kind.NUMBER: float,
        Kind.FLAG: int,
        Kind.STATUS: str,
        Kind.WORDS: tuple,
    }
    for f in JOB_FIELDS:
        assert f.default is None or isinstance(f.default, fits[f.kind]), f.name


def test_shown_defaults_are_the_job_defaults() -> None:
    job_defaults = {
        f.name: f.default for f in dataclasses.fields(Job) if f.default is not dataclasses.MISSING
    }
    for name, default in job_defaults.items():
        assert FIELDS_BY_NAME[name].default == default, name
