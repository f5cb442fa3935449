"""Schedules as data (corq.schedule): rules, their ticks, DST, policies, definitions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from corq.errors import ScheduleError
from corq.schedule import (
    CatchUp,
    Overlap,
    Policy,
    Rule,
    ScheduleDef,
    check_schedule_name,
    make_policy,
    make_rule,
    manual_job_id,
    tick_datetime,
    tick_job_id,
)


def ms(text: str, tz: str = "UTC") -> int:
    """A local wall-clock time in `tz` as ms since the epoch."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local(ticks: list[int], tz: str) -> list[str]:
    return [tick_datetime(t, tz).isoformat() for t in ticks]


# -- cron --------------------------------------------------------------------------------
def test_a_five_field_cron_ticks_on_its_minutes() -> None:
    rule = make_rule(cron="*/5 * * * *")
    assert local(rule.next_ticks(ms("2024-01-01T10:03:20"), 3), "UTC") == [
        "2024-01-01T10:05:00+00:00",
        "2024-01-01T10:10:00+00:00",
        "2024-01-01T10:15:00+00:00",
    ]


def test_a_six_field_cron_has_seconds_first() -> None:
    rule = make_rule(cron="*/20 * * * * *")
    assert local(rule.next_ticks(ms("2024-01-01T10:00:05"), 3), "UTC") == [
        "2024-01-01T10:00:20+00:00",
        "2024-01-01T10:00:40+00:00",
        "2024-01-01T10:01:00+00:00",
    ]


def test_a_cron_is_read_in_its_time_zone() -> None:
    rule = make_rule(cron="0 2 * * *", tz="Asia/Shanghai")
    (tick,) = rule.next_ticks(ms("2024-06-01T00:00"), 1)
    assert tick_datetime(tick, "UTC").isoformat() == "2024-06-01T18:00:00+00:00"
    assert rule.describe() == "cron 0 2 * * * (Asia/Shanghai)"


def test_ticks_are_strictly_after_the_start_even_inside_a_second() -> None:
    rule = make_rule(cron="* * * * * *")
    start = ms("2024-01-01T10:00:00") + 400
    assert rule.next_after(start) == ms("2024-01-01T10:00:01")
    assert rule.next_after(ms("2024-01-01T10:00:01")) == ms("2024-01-01T10:00:02")


# -- DST, as cronsim (Debian cron) defines it -------------------------------------------------
@pytest.mark.parametrize(
    ("cron", "tz", "start", "expected"),
    [
        # Spring forward: a fixed time in the skipped hour runs once at the first valid
        # minute after it; a job that repeats within the hour skips the missing hour.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-03-30T12:00",
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2024-03-31T01:00",
            ["2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:30:00+02:00"],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2024-03-09T12:00",
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
        # Fall back: a fixed time in the repeated hour runs once; a job that repeats within
        # the hour runs in both copies of it.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-10-26T12:00",
            ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2024-10-27T01:50",
            [
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:00:00+01:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-27T03:00:00+01:00",
            ],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-02T12:00",
            ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        (
            "0 * * * *",
            "America/New_York",
            "2024-11-03T00:30",
            ["2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"],
        ),
    ],
)
def test_dst_changes_follow_cronsim(cron: str, tz: str, start: str, expected: list[str]) -> None:
    rule = make_rule(cron=cron, tz=tz)
    ticks = rule.next_ticks(ms(start, tz), len(expected))
    assert local(ticks, tz) == expected
    # Stepping back finds the same ticks: a skipped run ends on a real tick.
    for earlier, later in itertools.pairwise(ticks):
        assert rule.last_at_or_before(later - 1) == earlier
        assert rule.last_at_or_before(earlier) == earlier
    assert rule.count_between(ms(start, tz), ticks[-1], 100) == len(expected)


# -- intervals and one-shots -------------------------------------------------------------
def test_interval_ticks_are_anchored_and_never_drift() -> None:
    anchor = datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)
    rule = make_rule(every=timedelta(seconds=30), anchor=anchor)
    start = ms("2024-05-05T12:00:11")
    ticks = rule.next_ticks(start, 3)
    assert local(ticks, "UTC") == [
        "2024-05-05T12:00:40+00:00",
        "2024-05-05T12:01:10+00:00",
        "2024-05-05T12:01:40+00:00",
    ]
    # However late it is asked, the grid stays on the anchor.
    assert rule.next_after(start + 7 * 86_400_000 + 3) == ticks[0] + 7 * 86_400_000
    assert rule.last_at_or_before(ticks[1] - 1) == ticks[0]
    assert rule.count_between(ticks[0] - 1, ticks[2], 10) == 3
    assert rule.count_between(ticks[0] - 1, ticks[2], 2) == 2
    assert rule.describe() == "every 30s"


def test_every_takes_seconds_too_and_defaults_to_the_epoch_grid() -> None:
    rule = make_rule(every=90)
    assert rule.every_ms == 90_000
    assert rule.next_after(ms("2024-01-01T00:00:01")) == ms("2024-01-01T00:01:30")


def test_a_one_shot_has_one_tick() -> None:
    at = datetime(2027, 1, 1, 9, tzinfo=UTC)
    rule = make_rule(at=at, now_ms=ms("2026-12-01T00:00"))
    assert rule.next_ticks(ms("2026-12-31T00:00"), 3) == [ms("2027-01-01T09:00")]
    assert rule.next_after(ms("2027-01-01T09:00")) is None
    assert rule.last_at_or_before(ms("2027-01-01T08:59")) is None
    assert rule.last_at_or_before(ms("2027-01-02T00:00")) == ms("2027-01-01T09:00")
    assert rule.describe() == "once at 2027-01-01T09:00:00+00:00"


# -- bad input ---------------------------------------------------------------------------
NOW = ms("2026-12-01T00:00")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of cron=, every= or at="),
        ({"cron": "* * * * *", "every": 5}, r"got cron, every"),
        ({"every": 0}, "every must be at least 1 second"),
        ({"every": -5}, "every must be at least 1 second"),
        ({"every": 0.5}, "every must be at least 1 second"),
        ({"every": 1e12}, "at most 100 years"),
        ({"every": True}, "every must be a timedelta or seconds"),
        ({"every": "5"}, "every must be a timedelta or seconds"),
        ({"cron": "* * * *"}, "it has 4 fields; use 5"),
        ({"cron": "* * * * * * *"}, "it has 7 fields"),
        ({"cron": ""}, "it has 0 fields"),
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "0 0 31 2 *"}, "invalid cron expression|never fires"),
        ({"cron": 5}, "cron must be a string"),
        ({"cron": "* * * * *", "tz": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"cron": "* * * * *", "tz": ""}, "tz must be an IANA time zone name"),
        ({"cron": "* * * * *", "tz": 3}, "tz must be an IANA time zone name"),
        ({"every": 5, "tz": "Europe/Berlin"}, "tz= applies to cron schedules only"),
        ({"cron": "* * * * *", "anchor": datetime(2024, 1, 1, tzinfo=UTC)}, "anchor= applies"),
        ({"every": 5, "anchor": datetime(2024, 1, 1)}, "anchor=.* has no time zone"),
        ({"every": 5, "anchor": "2024"}, "anchor must be a datetime"),
        ({"at": datetime(2027, 1, 1)}, "at=.* has no time zone"),
        ({"at": "2027-01-01"}, "at must be a datetime"),
        ({"at": datetime(2026, 1, 1, tzinfo=UTC)}, "has already passed"),
    ],
)
def test_every_bad_rule_is_refused_saying_what_to_change(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ScheduleError, match=message):
        make_rule(**kwargs, now_ms=NOW)  # type: ignore[arg-type]  # wrong types on purpose


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": "never"}, "overlap must be one of skip, buffer_one, cancel_other, allow_all"),
        ({"catchup": "some"}, "catchup must be one of none, latest, all"),
        ({"pause_on_failure": "yes"}, "pause_on_failure must be True or False"),
        ({"catchup_window": 0}, "catchup_window must be from 1 seconds"),
        ({"catchup_window": -1}, "catchup_window must be from"),
        ({"catchup_window": "5m"}, "catchup_window must be a timedelta or seconds"),
        ({"jitter": -1}, "jitter must be from 0 seconds"),
        ({"jitter": timedelta(days=365 * 200)}, "jitter must be from"),
    ],
)
def test_every_bad_policy_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        make_policy(**kwargs)  # type: ignore[arg-type]  # wrong types on purpose


def test_a_policy_takes_strings_and_durations() -> None:
    policy = make_policy(
        overlap="skip", catchup="latest", catchup_window=timedelta(minutes=1), jitter=2.5
    )
    assert policy == Policy(
        overlap=Overlap.SKIP, catchup=CatchUp.LATEST, catchup_window_ms=60_000, jitter_ms=2500
    )


def test_jitter_is_the_same_for_a_tick_everywhere_and_within_bounds() -> None:
    policy = make_policy(jitter=10)
    delays = [policy.jitter_for("report", 1_700_000_000_000 + k * 1000) for k in range(200)]
    assert all(0 <= d <= 10_000 for d in delays)
    assert len(set(delays)) > 100  # spread, not one value
    assert delays[7] == policy.jitter_for("report", 1_700_000_007_000)
    assert make_policy().jitter_for("report", 5) == 0


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "a/b", "x" * 151, 5, None, "é"])
def test_bad_schedule_names_are_refused(name: object) -> None:
    with pytest.raises(ScheduleError, match="invalid schedule name"):
        check_schedule_name(name)


# -- definitions -------------------------------------------------------------------------
def _def(rule: Rule) -> ScheduleDef:
    return ScheduleDef(
        name="sync-eu",
        task="sync",
        queue="default",
        payload=b'{"args":["eu"],"kwargs":{}}',
        priority=3,
        rule=rule,
        policy=make_policy(overlap="buffer_one", jitter=1, pause_on_failure=True),
        source="code",
        origin="app:sync",
    )


@pytest.mark.parametrize(
    "rule",
    [
        make_rule(cron="0 2 * * *", tz="Europe/Berlin"),
        make_rule(every=30, anchor=datetime(2024, 1, 1, tzinfo=UTC)),
        make_rule(at=datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_definition_survives_the_broker(rule: Rule) -> None:
    definition = _def(rule)
    assert ScheduleDef.decode(definition.encode()) == definition
    assert definition.same_as(definition.with_source("code", "elsewhere:sync"))


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"{}",
        b'{"name":"x","task":"t","queue":"q","payload":"","cron":"* * * * *","every_ms":5}',
        b'{"name":"x","task":"t","queue":"q","payload":"","cron":"bad"}',
        b'{"name":"x","task":"t","queue":"q","payload":"","at_ms":5,"source":"elsewhere"}',
    ],
)
def test_a_damaged_definition_is_a_schedule_error(data: bytes) -> None:
    with pytest.raises(ScheduleError):
        ScheduleDef.decode(data)


def test_tick_job_ids_are_deterministic_and_apart_from_run_now() -> None:
    assert tick_job_id("sync-eu", 1_700_000_000_000) == "sync-eu@1700000000000"
    assert manual_job_id("sync-eu", 5, "ab12") == "sync-eu@now-5-ab12"
