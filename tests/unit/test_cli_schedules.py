"""`corq schedule add` given a definition that cannot work: one line, nothing written.

Every check here runs before the broker is asked, so no broker is needed: the test points
the command at an SQLite file and checks that it was never made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import corq
from corq.cli import cli

#: The app `--app` names: this module's own.
APP = f"{__name__}:app"

app = corq.App()


@app.task
async def export(fmt: str, limit: int = 10) -> None:
    """A task with a signature to bind to."""


@app.periodic(every=60, name="code-sync")
async def sync() -> None:
    """A code schedule: its name is taken."""


def add(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    """Run `corq schedule add ...`: the exit code and the lines of stderr."""
    db = tmp_path / "corq.db"
    result = CliRunner().invoke(
        cli, ["schedule", "add", *args, "--app", APP, "--url", f"sqlite:///{db}"]
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert not db.exists(), "nothing was written"
    return result.exit_code, result.stderr.strip().splitlines()


GOOD = ["nightly", "export", "--args", '["csv"]']


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *"], "Error: invalid cron expression '61 * * * *': "),
        (["--cron", "* * *"], "Error: invalid cron expression '* * *': it has 3 fields; use 5"),
        (
            ["--cron", "0 2 * * *", "--tz", "Mars/Olympus"],
            "Error: unknown time zone 'Mars/Olympus'",
        ),
        (["--every", "30s", "--tz", "Europe/Berlin"], "Error: tz= applies to cron schedules only"),
        (["--every", "0.5s"], "Error: every must be at least 1 second"),
        (
            ["--at", "2001-01-01T00:00:00Z"],
            "Error: at=2001-01-01T00:00:00+00:00 has already passed",
        ),
        (
            ["--cron", "* * * * *", "--every", "5m"],
            "Error: give exactly one of cron=, every= or at=",
        ),
        ([], "Error: give exactly one of cron=, every= or at="),
        (["--every", "5m", "--overlap", "never"], "Error: overlap must be one of skip, buffer_one"),
        (["--every", "5m", "--catchup", "some"], "Error: catchup must be one of none, latest, all"),
        (["--every", "5m", "--priority", "500"], "Error: priority must be an integer from -100"),
        (["--every", "5m", "-q", "bad queue"], "Error: invalid queue name 'bad queue'"),
    ],
)
def test_a_rule_or_policy_that_cannot_work_is_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, lines = add(tmp_path, *GOOD, *args)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nightly", "nosuch", "--every", "5m"], "Error: unknown task 'nosuch': register it"),
        (
            ["nightly", "export", "--every", "5m"],
            "Error: schedule 'nightly': task 'export': missing a required argument: 'fmt'",
        ),
        (
            ["nightly", "export", "--every", "5m", "--args", '["csv"]', "--kwargs", '{"x": 1}'],
            "Error: schedule 'nightly': task 'export': got an unexpected keyword argument 'x'",
        ),
        (
            ["nightly", "export", "--every", "5m", "--args", "[1]"],
            "Error: schedule 'nightly': task 'export': argument 'fmt': Expected `str`, got `int`",
        ),
        (
            ["code-sync", "export", "--every", "5m", "--args", '["csv"]'],
            "Error: schedule name 'code-sync' is taken by the code schedule declared at tests.",
        ),
        (["bad name", "export", "--every", "5m"], "Error: invalid schedule name 'bad name'"),
    ],
)
def test_a_task_or_arguments_that_do_not_fit_are_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, lines = add(tmp_path, *args)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "5x"], "Error: --every '5x' is not a duration"),
        (["--every", "5m", "--jitter", "lots"], "Error: --jitter 'lots' is not a duration"),
        (["--at", "2030-01-01T09:00"], "Error: --at '2030-01-01T09:00' has no time zone"),
        (["--at", "soon"], "Error: --at 'soon' is not an ISO 8601 date and time"),
        (["--every", "5m", "--args", "[1,"], "Error: --args is not valid JSON"),
        (["--every", "5m", "--kwargs", "[1]"], "Error: --kwargs must be a JSON object"),
    ],
)
def test_a_value_that_does_not_parse_is_a_usage_error_of_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, lines = add(tmp_path, *GOOD, *args)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines


def test_add_without_an_app_says_why_it_needs_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["schedule", "add", "n", "export", "--every", "5m", "--url", f"sqlite:///{tmp_path}/x"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: schedule add needs --app MODULE:ATTR (your corq.App), so the task and its "
        "arguments are checked before anything is stored"
    )
