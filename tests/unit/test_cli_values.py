"""Durations and moments as typed on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from corq.cli.values import UsageLine, parse_duration, parse_moment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1.5s", timedelta(seconds=1.5)),
        ("250ms", timedelta(milliseconds=250)),
        ("90", timedelta(seconds=90)),
        ("0.5", timedelta(seconds=0.5)),
    ],
)
def test_durations_read_with_their_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "--every") == expected


@pytest.mark.parametrize("text", ["", "5x", "m5", "5 m", "1h30", "s", "nan", "inf", "1e400"])
def test_a_value_that_is_no_duration_names_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(UsageLine) as refused:
        parse_duration(text, "--every")
    assert refused.value.exit_code == 2
    assert refused.value.message.startswith(f"--every {text!r} is not a duration")
    assert "30s, 5m, 1h30m" in refused.value.message


def test_no_duration_given_is_none() -> None:
    assert parse_duration(None, "--jitter") is None
    assert parse_moment(None, "--at") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-01T09:00:00Z", datetime(2027, 1, 1, 9, tzinfo=UTC)),
        ("2027-01-01T09:00Z", datetime(2027, 1, 1, 9, tzinfo=UTC)),
        (
            "2027-01-01T10:00:00+01:00",
            datetime(2027, 1, 1, 10, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("2027-01-01 09:00:00.250+00:00", datetime(2027, 1, 1, 9, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_moments_are_iso_8601_with_a_zone(text: str, expected: datetime) -> None:
    assert parse_moment(text, "--at") == expected


def test_a_moment_without_a_zone_is_refused_with_the_fix() -> None:
    with pytest.raises(UsageLine) as refused:
        parse_moment("2027-01-01T09:00", "--at")
    assert refused.value.message == (
        "--at '2027-01-01T09:00' has no time zone: add one, e.g. 2027-01-01T09:00Z (UTC) or "
        "2027-01-01T09:00+01:00"
    )


@pytest.mark.parametrize("text", ["tomorrow", "2027-13-01T00:00Z", "", "9:00"])
def test_a_value_that_is_no_moment_is_refused(text: str) -> None:
    with pytest.raises(UsageLine) as refused:
        parse_moment(text, "--from")
    assert refused.value.message.startswith(f"--from {text!r} is not an ISO 8601 date and time")
