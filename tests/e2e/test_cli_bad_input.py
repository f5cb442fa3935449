"""The real `corq` command given bad input or bad data: one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import corq
from corq.backends.base import Completion, Failure, NewJob, WorkerLease
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow

USER_MODULES = {
    "good": "import corq\napp = corq.App()\n",
    "broken": "import corq\napp = corq.App()\n1 / 0\n",
    "syntax": "def oops(:\n",
    "needsdep": "import nosuchdependency_xyz\n",
    "notapp": "app = 5\n",
    "badtask": textwrap.dedent(
        """\
        import corq
        app = corq.App()

        @app.task(max_backoff=float("nan"))
        def t() -> None: ...
        """
    ),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory holding the user modules above (and no corq.db)."""
    for name, source in USER_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    return tmp_path


def corq_cmd(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corq", *args],
        cwd=project,
        env=dict(os.environ, CORQ_URL=f"sqlite:///{project / 'corq.db'}", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["worker", "dev"])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        (":app", "':app' is not module:attribute"),
        ("../x:app", "'../x:app' is not module:attribute"),
        ("good:", "'good:' names no attribute after ':'"),
        ("nosuchmodule:app", "no module named 'nosuchmodule'"),
        ("good:missing", "module 'good' has no attribute 'missing'"),
        ("notapp:app", "'notapp:app' is not a corq.App (found int)"),
        ("broken:app", "importing 'broken' raised ZeroDivisionError: division by zero "),
        ("syntax:app", "importing 'syntax' raised SyntaxError: "),
        ("needsdep:app", "raised ModuleNotFoundError: No module named 'nosuchdependency_xyz'"),
        ("badtask:app", "importing 'badtask' raised TaskDefinitionError: max_backoff must be"),
    ],
)
def test_an_app_that_cannot_be_loaded_is_one_line_and_exit_code_2(
    project: Path, command: str, path: str, message: str
) -> None:
    out = corq_cmd(project, command, path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (project / "corq.db").exists(), "nothing was started"


def test_an_import_error_says_where_it_was_raised(project: Path) -> None:
    assert "(at broken.py:3)" in corq_cmd(project, "worker", "broken:app").stderr
    assert "(at syntax.py:1)" in corq_cmd(project, "worker", "syntax:app").stderr


COMMANDS = [
    ("worker", "good:app"),
    ("dev", "good:app"),
    ("enqueue", "t"),
    ("enqueue", "t", "--app", "good:app"),
    ("job", "some-id"),
    ("queues",),
    ("dead", "list"),
    ("dead", "retry", "--all"),
    ("dead", "purge", "--all"),
    ("schedule", "list"),
    ("schedule", "add", "n", "t", "--every", "5m", "--app", "good:app"),
    ("demo", "--timeout", "5"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CORQ_LEASE_S", "inf", "lease_s (CORQ_LEASE_S): Input should be a finite number"),
        ("CORQ_MAX_STALL_S", "nan", "max_stall_s (CORQ_MAX_STALL_S): Input should be a finite"),
        ("CORQ_SERIALIZER", "pickle", "serializer (CORQ_SERIALIZER): Input should be 'json'"),
    ],
)
def test_a_bad_setting_is_one_line_for_every_command(
    project: Path, command: tuple[str, ...], variable: str, value: str, message: str
) -> None:
    out = corq_cmd(project, *command, **{variable: value})
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"Error: invalid corq setting: {message}")
    assert lines[0].endswith(f"got '{value}'")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nap", "--args", "[NaN]"), "task 'nap': cannot encode value['args'][0] = nan"),
        (
            ("nap", "--args", "[Infinity]", "--app", "tests.e2e.sample_app:app"),
            "task 'nap': cannot encode value['args'][0] = inf",
        ),
        (("nap", "--delay", "nan"), "delay must be a number of seconds"),
        (("nap", "--delay", "inf"), "delay must be a number of seconds"),
        (("nap", "--delay", "1e30"), "delay must be a number of seconds"),
        (("nap", "--delay", "-1"), "delay must be a number of seconds"),
        (("nap", "--priority", "500"), "priority must be an integer from -100 to 100, got 500"),
        (("nap", "--job-id", ""), "job_id must be 1 to 200 characters, got 0"),
        (("nap", "--job-id", "a\nb"), "job_id must not hold control characters"),
        (("nap", "--job-id", "x" * 201), "job_id must be 1 to 200 characters, got 201"),
        (("nap", "-q", "default\n"), "invalid queue name 'default\\n'"),
        (("bad name",), "invalid task name 'bad name'"),
    ],
)
def test_enqueue_from_the_shell_refuses_bad_values_and_writes_nothing(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    out = cli.run("enqueue", *args)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"Error: {message}")
    assert "no queues yet" in cli.run("queues").stdout


async def _dead_letter(
    app: corq.App, job_id: str, payload: bytes, error: str, queue: str = "default"
) -> None:
    """Store a job and fail it for good, as a worker does with a payload it cannot decode."""
    backend = app.client().backend
    now = app.clock.now_ms()
    job = NewJob(
        id=job_id, task="nap", queue=queue, payload=payload, enqueued_at_ms=now, run_at_ms=now
    )
    assert await backend.enqueue_jobs([job]) == [True]
    await backend.register_worker(
        WorkerLease(worker_id="probe", queues=[queue], lease_ms=60_000), now
    )
    batch = await backend.claim_jobs(queue, "probe", 1, 60_000, now)
    failure = Failure(
        job_id=job_id,
        queue=queue,
        fence=batch.jobs[0].fence,
        error=error,
        traceback=None,
        retry_at_ms=None,
        finished_at_ms=now,
        counted=False,
    )
    assert await backend.fail_jobs("probe", [failure], 60_000) == [True]


async def test_job_shows_a_dead_letter_whose_payload_does_not_decode(
    cli: Cli, client_app: corq.App
) -> None:
    # Given the job a worker dead-lettered because its payload was not JSON, with an error
    # holding console markup and a terminal escape
    error = "corrupted job payload: DecodeError: malformed [/red] \x1b[2J"
    await _dead_letter(client_app, "bad-payload", b"\xff\x00junk", error)
    # When an operator looks at it
    shown = cli.run("job", "bad-payload")
    # Then it is shown, the payload as a short escaped preview with a note
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert "<undecodable, 6 bytes: b'\\xff\\x00junk'> (note: cannot be decoded" in shown.stdout
    assert "malformed [/red] \\x1b[2J" in shown.stdout
    assert "\x1b" not in shown.stdout
    # And --json likewise, as valid JSON
    as_json = cli.run("job", "bad-payload", "--json")
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert record["status"] == "dead"
    assert record["args"] is None
    assert record["args_undecodable"]["bytes"] == 6
    assert record["args_undecodable"]["preview"] == "b'\\xff\\x00junk'"
    assert "DecodeError" in record["args_undecodable"]["error"]


async def test_job_shows_a_result_that_does_not_decode(cli: Cli, client_app: corq.App) -> None:
    # Given a succeeded job whose stored result is not JSON (a damaged record)
    handle = await client_app.client().enqueue("nap", [0.0], job_id="bad-result")
    backend = client_app.client().backend
    now = client_app.clock.now_ms()
    await backend.register_worker(
        WorkerLease(worker_id="probe", queues=["default"], lease_ms=60_000), now
    )
    batch = await backend.claim_jobs("default", "probe", 1, 60_000, now)
    done = Completion(
        job_id=handle.id,
        queue="default",
        fence=batch.jobs[0].fence,
        result=b"\x80" * 100,
        finished_at_ms=now,
    )
    assert await backend.complete_jobs("probe", [done], 60_000) == [True]
    # When shown, Then the arguments decode and the result is a preview of its first bytes
    shown = cli.run("job", "bad-result")
    assert shown.returncode == 0, shown.stderr
    assert "[0.0]" in shown.stdout
    assert "<undecodable, 100 bytes: b'" + "\\x80" * 32 + "'…>" in shown.stdout
    record = json.loads(cli.run("job", "bad-result", "--json").stdout)
    assert record["result"] is None
    assert record["result_undecodable"]["bytes"] == 100


async def test_queues_shows_the_busiest_and_sums_up_the_rest(
    cli: Cli, client_app: corq.App
) -> None:
    # Given 60 queues: one job in most, five in q07, three in q33, and two emptied by a cancel
    backend = client_app.client().backend
    now = client_app.clock.now_ms()
    sizes = {f"q{i:02d}": 1 for i in range(60)} | {"q07": 5, "q33": 3}
    jobs = [
        NewJob(
            id=f"{q}-{k}",
            task="nap",
            queue=q,
            payload=b'{"args":[0],"kwargs":{}}',
            enqueued_at_ms=now,
            run_at_ms=now + (k % 2) * 3_600_000,
        )
        for q, n in sizes.items()
        for k in range(n)
    ]
    assert all(await backend.enqueue_jobs(jobs))
    for queue in ("q58", "q59"):
        assert await backend.cancel_job(f"{queue}-0", queue, now)
    # When the operator asks for the 3 busiest
    out = cli.run("queues", "--limit", "3")
    assert out.returncode == 0, out.stderr
    rows = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│")]
    # Then they come first, the rest in one line: 57 queues, 2 of them empty, their totals
    assert rows == ["q07", "q33", "q00"]
    assert "… and 57 more queues (2 empty): 55 ready, 0 delayed, 0 in flight, 0 dead" in out.stdout
    # And --all shows every queue
    every = cli.run("queues", "--all").stdout
    assert all(f"q{i:02d}" in every for i in range(60))
    assert "more queues" not in every


async def test_dead_list_shows_a_huge_error_on_one_line(cli: Cli, client_app: corq.App) -> None:
    # Given a dead letter whose error is 5 MiB over many lines (stored before errors were cut)
    error = "RuntimeError: " + "x" * (5 << 20) + "\nsecond line\nthird line"
    await _dead_letter(client_app, "huge-error", b'{"args":[0],"kwargs":{}}', error)
    # When listed
    out = cli.run("dead", "list")
    # Then its row is one line, cut, and the output stays small
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if "huge-error" in line]
    assert len(row) == 1
    assert "RuntimeError: xxxx" in row[0]
    assert "…" in row[0]
    assert "second line" not in out.stdout
    assert len(out.stdout) < 5_000


@pytest.mark.parametrize("app_path", ["nosuch:app", "broken:app"])
def test_a_supervisor_with_a_bad_app_fails_once_instead_of_restarting(
    project: Path, app_path: str
) -> None:
    # A bad app path used to make every supervised child exit 2, restarted every second
    done = corq_cmd(project, "worker", app_path, "--processes", "2")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "restarting" not in done.stderr
