"""CLI argument errors that need neither a broker nor an import: one line, exit code 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from corq import Settings
from corq.cli import cli
from corq.cli.common import describe_settings_error, parse_queues
from corq.cli.worker import slot_argv


@pytest.mark.parametrize("command", ["worker", "dev", "scheduler"])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        (":app", "':app' is not module:attribute"),
        ("../x:app", "'../x:app' is not module:attribute"),
        ("/abs/x:app", "is not module:attribute"),
        ("app:", "'app:' names no attribute after ':' (e.g. app:app)"),
        ("app:my app", "is not module:attribute"),
        ("tasks.py:app", "'tasks.py:app' names a file: give the module name, tasks:app"),
    ],
)
def test_app_paths_that_are_not_module_attribute_are_usage_errors(
    command: str, path: str, message: str
) -> None:
    result = CliRunner().invoke(cli, [command, path])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args_json", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "--args is nested too deeply"),
        ("[" + "9" * 5000 + "]", "--args is not valid JSON"),  # longer than int() takes
        ("[1,", "--args is not valid JSON"),
        ('{"a": 1}', "--args must be a JSON array"),
    ],
)
def test_bad_json_arguments_are_usage_errors(args_json: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "t", "--args", args_json])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_settings_errors_read_as_one_line_naming_each_variable() -> None:
    with pytest.raises(ValidationError) as fields:
        Settings(lease_s=float("inf"), serializer="pickle")  # type: ignore[arg-type]  # the point
    text = describe_settings_error(fields.value)
    assert text.startswith("invalid corq setting: ")
    assert "lease_s (CORQ_LEASE_S): Input should be a finite number, got inf" in text
    assert "serializer (CORQ_SERIALIZER): Input should be 'json' or 'msgpack', got 'pickle'" in text
    assert "\n" not in text
    # A rule across fields has no field to name: its own message says which.
    with pytest.raises(ValidationError) as across:
        Settings(heartbeat_s=20)
    assert describe_settings_error(across.value) == (
        "invalid corq setting: heartbeat_s (20.0) must be less than lease_s"
    )


def test_only_the_first_supervised_process_runs_a_scheduler() -> None:
    argv = ["python", "-m", "corq", "worker", "app:app"]
    assert slot_argv(argv, 0, "box") == [*argv, "--worker-id", "box.w0"]
    assert slot_argv(argv, 1, "box") == [*argv, "--worker-id", "box.w1", "--no-scheduler"]


def test_each_supervised_slot_serves_metrics_on_its_own_port() -> None:
    argv = ["python", "-m", "corq", "worker", "app:app", "--metrics-port", "9100"]
    assert slot_argv(argv, 2, "box")[:7] == [*argv[:6], "9102"]
    joined = ["python", "-m", "corq", "worker", "app:app", "--metrics-port=9100"]
    assert slot_argv(joined, 1, "box")[5] == "--metrics-port=9101"


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corq.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        args = ["worker", "tests.e2e.sample_app:app", "--burst", "--url", url]
        result = CliRunner().invoke(cli, [*args, "--metrics-port", port])
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output


@pytest.mark.parametrize("command", ["metrics", "autoscale"])
def test_autoscale_bounds_the_wrong_way_round_are_usage_errors(command: str) -> None:
    args = [command, "tests.e2e.sample_app:app", "--min-workers", "5", "--max-workers", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "need 0 <= min workers <= max workers, not 5..2" in result.output


def test_the_worker_and_scheduler_commands_document_the_scheduler_switches() -> None:
    worker = CliRunner().invoke(cli, ["worker", "--help"])
    assert "--no-scheduler" in worker.output
    alone = CliRunner().invoke(cli, ["scheduler", "--help"])
    assert alone.exit_code == 0
    assert "--holder" in alone.output


@pytest.mark.parametrize(
    ("value", "queues"),
    [
        ("high=5,default=2,low=1", {"high": 5, "default": 2, "low": 1}),
        ("a,b", {"a": 1, "b": 1}),
        (" a = 3 , b ,", {"a": 3, "b": 1}),
        ("", None),
    ],
)
def test_queues_take_optional_weights(value: str, queues: dict[str, int] | None) -> None:
    assert parse_queues(value) == queues


@pytest.mark.parametrize("command", ["worker", "dev"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("high=0", "the weight of queue 'high' must be an integer from 1 to 1000, got '0'"),
        ("high=-2", "must be an integer from 1 to 1000, got '-2'"),
        ("high=fast", "must be an integer from 1 to 1000, got 'fast'"),
        ("high=1.5", "got '1.5'"),
        ("high=", "got ''"),
        ("a,b=2,a=3", "queue 'a' is named twice"),
        ("=4", "'=4' names no queue"),
    ],
)
def test_bad_queue_weights_are_usage_errors(command: str, value: str, message: str) -> None:
    result = CliRunner().invoke(cli, [command, "no_such_module:app", "--queues", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for --queues" in result.output
    assert message in result.output
    assert "Traceback" not in result.output
