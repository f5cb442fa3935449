"""`corq schedule ...` as an operator runs it: real subprocesses, on Redis and on SQLite."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cli, wait_for

pytestmark = pytest.mark.slow

APP = ("--app", "tests.e2e.sample_app:app")


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


def refused(out: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command printed."""
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def listed(cli: Cli) -> dict[str, dict[str, Any]]:
    rows = json.loads(ok(cli.run("schedule", "list", "--json")))
    return {row["name"]: row for row in rows}


def test_an_operator_adds_lists_pauses_resumes_and_removes_a_schedule(cli: Cli) -> None:
    # Given a cron schedule added from the shell, read in Berlin's zone
    added = ok(
        cli.run(
            "schedule", "add", "nightly", "nap", "--cron", "0 2 * * *", "--tz", "Europe/Berlin",
            "--args", "[0.5]", "--catchup", "latest", "--jitter", "30s", *APP,
        )
    )  # fmt: skip
    assert added.startswith("added schedule nightly: cron 0 2 * * * (Europe/Berlin), next at ")
    # When listed
    table = ok(cli.run("schedule", "list"))
    row = listed(cli)["nightly"]
    # Then it shows its rule, zone and next three fire times, at 02:00 in Berlin
    assert "nightly" in table
    assert "cron 0 2 * * *" in table
    assert "Europe/Berlin" in table
    assert "none yet" in table
    assert len(row["next_ticks"]) == 3
    for tick in row["next_ticks"]:
        moment = datetime.fromisoformat(tick)
        assert (moment.hour, moment.minute) == (2, 0)
        assert moment.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    for tick in row["next_ticks"]:
        assert tick.replace("T", " ") in table
    assert row["source"] == "stored"
    assert row["call"] == {"args": [0.5], "kwargs": {}}
    assert row["policy"] == {
        "overlap": "allow_all",
        "catchup": "latest",
        "catchup_window_s": 300.0,
        "jitter_s": 30.0,
        "pause_on_failure": False,
    }
    # When paused with a reason, Then list says so and no tick is ahead
    assert ok(cli.run("schedule", "pause", "nightly", "--reason", "db migration")) == (
        "paused schedule nightly: db migration\n"
    )
    row = listed(cli)["nightly"]
    assert (row["paused"], row["paused_reason"], row["next_ticks"]) == (True, "db migration", [])
    assert "yes: db migration" in ok(cli.run("schedule", "list"))
    # When resumed, Then its ticks are ahead again
    assert ok(cli.run("schedule", "resume", "nightly")).startswith("resumed schedule nightly, next")
    assert len(listed(cli)["nightly"]["next_ticks"]) == 3
    # When removed, Then it is gone
    assert ok(cli.run("schedule", "rm", "nightly")) == "removed schedule nightly\n"
    assert ok(cli.run("schedule", "list")) == "no schedules yet\n"


def test_a_taken_name_and_an_unknown_schedule_are_one_line(cli: Cli) -> None:
    # Given a schedule
    ok(cli.run("schedule", "add", "sync", "nap", "--every", "5m", "--args", "[0]", *APP))
    # When another one is added under its name, Then the error names the one there
    line = refused(
        cli.run("schedule", "add", "sync", "nap", "--every", "1h", "--args", "[1]", *APP)
    )
    assert line.startswith("Error: schedule name 'sync' is taken by a stored schedule (every 5m")
    assert listed(cli)["sync"]["rule"]["every_s"] == 300
    # And every command naming a schedule that does not exist says so
    for command in (
        ("show", "nosuch"),
        ("pause", "nosuch"),
        ("resume", "nosuch"),
        ("rm", "nosuch"),
        ("run-now", "nosuch"),
        ("backfill", "nosuch", "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"),
    ):
        assert refused(cli.run("schedule", *command)) == "Error: no schedule named 'nosuch'"


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def test_backfill_fires_each_past_tick_once_and_run_now_leaves_the_ticks_alone(cli: Cli) -> None:
    # Given a schedule every minute, and the five whole minutes before it was added
    ok(cli.run("schedule", "add", "minutely", "nap", "--every", "1m", "--args", "[0]", *APP))
    last = _minute(datetime.now(UTC)) - timedelta(minutes=1)
    if datetime.fromisoformat(listed(cli)["minutely"]["last_tick"]) < last:
        last -= timedelta(minutes=1)  # added across a minute's turn: stay before it
    first = last - timedelta(minutes=4)
    window = ("--from", first.isoformat(), "--to", last.isoformat())
    # When they are backfilled
    out = ok(cli.run("schedule", "backfill", "minutely", *window))
    # Then each gets its job, with the tick's id
    lines = out.splitlines()
    assert lines[0] == "backfill of minutely: 5 tick(s) in the window, 5 job(s) enqueued"
    ticks = [first + timedelta(minutes=k) for k in range(5)]
    assert lines[1:] == [f"minutely@{int(t.timestamp() * 1000)}" for t in ticks]
    record = json.loads(ok(cli.run("job", lines[1], "--json")))
    assert (record["schedule"], record["tick_ms"], record["status"]) == (
        "minutely",
        int(ticks[0].timestamp() * 1000),
        "queued",
    )
    # When backfilled again, Then no tick fires twice
    again = ok(cli.run("schedule", "backfill", "minutely", *window))
    assert again == (
        "backfill of minutely: 5 tick(s) in the window, 0 job(s) enqueued, "
        "5 fired before (not again)\n"
    )
    # When run now, Then a job outside the ticks is sent, and the regular ticks stay ahead
    before = listed(cli)["minutely"]
    job_id = ok(cli.run("schedule", "run-now", "minutely")).strip()
    assert job_id.startswith("minutely@now-")
    after = listed(cli)["minutely"]
    assert after["last_tick"] == before["last_tick"]
    # (the next ticks are counted from the wall clock: a minute may turn between the reads)
    assert after["next_ticks"][0] in before["next_ticks"][:2]
    assert after["last_run"]["job_id"] == job_id
    assert after["last_run"]["kind"] == "manual"
    # And show lists the six runs, newest first, with their kind
    shown = json.loads(ok(cli.run("schedule", "show", "minutely", "--json")))
    assert [r["kind"] for r in shown["runs"]] == ["manual"] + ["backfill"] * 5
    assert [r["job_id"] for r in shown["runs"][1:]] == lines[:0:-1]
    assert all(r["state"] == "queued" for r in shown["runs"])


def test_a_backfill_window_in_the_future_is_refused(cli: Cli) -> None:
    ok(cli.run("schedule", "add", "hourly", "nap", "--every", "1h", "--args", "[0]", *APP))
    soon = datetime.now(UTC) + timedelta(hours=2)
    window = ("--from", "2026-01-01T00:00Z", "--to", soon.isoformat())
    line = refused(cli.run("schedule", "backfill", "hourly", *window))
    assert line.startswith("Error: end=")
    assert line.endswith("backfill fires past ticks only")


async def test_show_lists_the_runs_a_worker_fired_with_their_state(cli: Cli) -> None:
    # Given a worker (its scheduler leads) and a schedule every second
    cli.worker()
    ok(cli.run("schedule", "add", "beat", "nap", "--every", "1s", "--args", "[0.05]", *APP))

    def runs() -> list[dict[str, Any]]:
        shown: dict[str, Any] = json.loads(ok(cli.run("schedule", "show", "beat", "--json")))
        return list(shown["runs"])

    # When two ticks have fired, it is paused and its jobs have run
    await wait_for(lambda: len(runs()) >= 2, 30, "two ticks of 'beat' fired")
    ok(cli.run("schedule", "pause", "beat"))
    await wait_for(
        lambda: all(r["state"] == "succeeded" for r in runs()), 30, "the jobs of 'beat' done"
    )
    shown = json.loads(ok(cli.run("schedule", "show", "beat", "--json")))
    # Then each run is one tick, with the tick's job id, its state and how long it ran
    ticks = [datetime.fromisoformat(r["tick"]) for r in shown["runs"]]
    assert ticks == sorted(ticks, reverse=True)
    assert len(set(ticks)) == len(ticks) >= 2
    for run, tick in zip(shown["runs"], ticks, strict=True):
        assert run["job_id"] == f"beat@{int(tick.timestamp() * 1000)}"
        assert run["kind"] == "tick"
        assert run["duration_s"] >= 0.05
        assert run["lateness_s"] >= 0  # late by the worker's start-up for the first ones
    assert shown["fired"] == len(shown["runs"])
    # And the text shows the same runs, and list the last one's outcome
    text = ok(cli.run("schedule", "show", "beat"))
    assert "recent runs" in text
    for run in shown["runs"]:
        assert run["job_id"] in text
    assert "succeeded in" in ok(cli.run("schedule", "list"))


def test_list_with_the_app_shows_its_code_schedules_before_they_are_stored(cli: Cli) -> None:
    # Given an app with a code schedule, and no scheduler run yet
    app = ("--app", "tests.e2e.periodic_app:app")
    # When listed with the app, Then it is there, with its source and next fire times
    row = {r["name"]: r for r in json.loads(ok(cli.run("schedule", "list", "--json", *app)))}
    code = row["weekday-report"]
    assert (code["source"], code["stored"], code["origin"]) == (
        "code",
        False,
        "tests.e2e.periodic_app:report",
    )
    assert [datetime.fromisoformat(t).hour for t in code["next_ticks"]] == [9, 9, 9]
    assert "code (not stored yet)" in ok(cli.run("schedule", "list", *app))
    # And a stored schedule cannot take its name
    line = refused(cli.run("schedule", "add", "weekday-report", "report", "--every", "1h", *app))
    assert line.startswith("Error: schedule name 'weekday-report' is taken by the code schedule")
    # And without the app, the broker has no schedules yet
    assert ok(cli.run("schedule", "list")) == "no schedules yet\n"


async def test_show_counts_the_ticks_an_overlap_skipped_with_the_reason(
    cli: Cli, tmp_path: Path
) -> None:
    # Given a worker, and a schedule every second whose first job runs until a gate opens
    gate = tmp_path / "gate"
    cli.worker()
    add = ("gate", "gated", "--every", "1s", "--overlap", "skip", "--args", json.dumps([str(gate)]))
    ok(cli.run("schedule", "add", *add, *APP))

    def skipped() -> int:
        shown: dict[str, Any] = json.loads(ok(cli.run("schedule", "show", "gate", "--json")))
        return int(shown["skipped"])

    # When the next ticks come while it still runs
    await wait_for(lambda: skipped() >= 2, 30, "two ticks of 'gate' skipped")
    ok(cli.run("schedule", "pause", "gate"))
    gate.touch()
    shown = json.loads(ok(cli.run("schedule", "show", "gate", "--json")))
    # Then they are skipped, each with the reason, naming the run still going
    running = shown["runs"][-1]["job_id"]
    assert shown["fired"] == len(shown["runs"]) == 1
    assert sum(s["count"] for s in shown["skips"]) == shown["skipped"] >= 2
    for skip in shown["skips"]:
        assert running in skip["reason"]
        assert skip["reason"].startswith("overlap")
    # And the text shows them with their count
    text = ok(cli.run("schedule", "show", "gate"))
    assert "skipped or missed ticks" in text
    assert f"overlap: previous run {running} still running" in text
