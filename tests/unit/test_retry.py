from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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
