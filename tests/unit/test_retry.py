from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corq.errors import TaskDefinitionError
from corq.limits import MAX_DELAY_S
from corq.retry import RetryPolicy


def test_backoff_doubles_without_jitter() -> None:
    policy = RetryPolicy(max_retries=5, backoff_s=1.0, jitter=False)
    assert [policy.next_delay_s(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]


@given(failures=st.integers(min_value=1, max_value=60))
def test_jittered_delay_stays_within_half_to_full(failures: int) -> None:
    policy = RetryPolicy(max_retries=100, backoff_s=0.5, max_backoff_s=60.0)
    full = min(60.0, 0.5 * 2 ** (failures - 1))
    assert full / 2 <= policy.next_delay_s(failures) <= full


def test_retries_stop_after_max() -> None:
    policy = RetryPolicy(max_retries=3)
    assert [policy.should_retry(n, ValueError()) for n in range(1, 6)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_retry_on_filters_exception_types() -> None:
    policy = RetryPolicy(max_retries=3, retry_on=(ConnectionError,))
    assert policy.should_retry(1, ConnectionError())
    assert not policy.should_retry(1, ValueError())
    assert policy.should_retry(1, None)  # an explicit corq.Retry is always honoured


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backoff_s": math.nan}, "backoff must be a number of seconds from 0 to"),
        ({"max_backoff_s": math.nan}, "max_backoff must be a number of seconds"),
        ({"max_backoff_s": math.inf}, "max_backoff must be"),
        ({"backoff_s": -1.0}, "backoff must be"),
        ({"backoff_s": MAX_DELAY_S * 2}, "backoff must be"),
        ({"backoff_s": "1"}, "backoff must be"),
        ({"backoff_s": True}, "backoff must be"),
        ({"max_retries": True}, "retries must be a non-negative integer"),
        ({"max_retries": -1}, "retries must be"),
        ({"max_retries": 2.0}, "retries must be"),
        ({"jitter": "no"}, "jitter must be True or False"),
        ({"retry_on": [ValueError]}, "retry_on must be a tuple"),
        ({"retry_on": (ValueError, 3)}, "retry_on takes exception classes, got 3"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        RetryPolicy(**fields)


def test_thousands_of_failures_still_give_the_max_backoff() -> None:
    # 2 ** 5000 does not fit a float: the doubling must stop, not raise OverflowError.
    policy = RetryPolicy(max_retries=10_000, backoff_s=1.0, max_backoff_s=60.0, jitter=False)
    assert policy.next_delay_s(5000) == 60.0
    tiny = RetryPolicy(max_retries=10_000, backoff_s=1e-300, max_backoff_s=60.0, jitter=False)
    assert tiny.next_delay_s(5000) == 60.0
