"""`corq demo` and `corq dev` as a new user runs them: subprocesses in an empty directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEMO_TASKS = (
    "fetch_url",
    "count_primes",
    "clean_dataset",
    "charge_payment",
    "render_thumbnail",
    "send_reminder",
)

DEV_APP = """
import corq

app = corq.App()


@app.task
def add(a: int, b: int) -> int:
    return a + b
"""


def _env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh machine: no CORQ_* settings, the test's dir importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _corq(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corq", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(120)
def test_demo_runs_every_task_to_success(tmp_path: Path) -> None:
    # Given an empty directory, apart from a broken file left where the demo's database goes
    (tmp_path / "corq-demo.db").write_bytes(b"not a database")
    # When the demo runs
    done = _corq(tmp_path, "demo", timeout=100)
    # Then every job succeeded, the summary names each task and the database is there to explore
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    summary = done.stdout.split("corq demo: ")[-1]
    for task in DEMO_TASKS:
        assert task in summary, output
    assert "All 40 jobs succeeded" in done.stdout, output
    assert "corq queues --url sqlite:///corq-demo.db" in done.stdout, output
    assert (tmp_path / "corq-demo.db").exists()
    # And its schedule fired at least the two ticks the demo waits for, one job per tick
    fired = re.search(r"Schedule demo-tick \(every 1s\) fired (\d+) ticks, one job each", output)
    assert fired is not None, output
    ticks = re.findall(
        r"tick (\d\d:\d\d:\d\d) UTC → job demo-tick@(\d+) succeeded, enqueued \d+ ms", output
    )
    assert len(ticks) == int(fired.group(1)) >= 2, output
    ids = [int(ms) for _, ms in ticks]
    assert len(set(ids)) == len(ids), output
    assert all(ms % 1000 == 0 for ms in ids), output  # every=1s ticks fall on whole seconds
    assert "corq schedule show demo-tick --url sqlite:///corq-demo.db" in done.stdout, output
    _check_workflow(tmp_path, done.stdout)
    _check_flow_control(done.stdout)


def _check_flow_control(stdout: str) -> None:
    """The flow-control part: fair turns under a per-tenant limit, a rate limit, a unique
    key returning the existing job, an expired job (its table's cells read whole)."""
    table = stdout.split("\nflow control", 1)[1].split("Look around", 1)[0]
    cells = [line.split("│") for line in table.splitlines() if line.startswith("│")]
    said = " ".join(" ".join(c[2].split()) for c in cells if len(c) > 2)
    fair = re.search(
        r"tenant small's 3 jobs, sent after big's 30, all started after (\d+) of", said
    )
    assert fair is not None, stdout
    assert int(fair.group(1)) < 30, said  # not after the big tenant's backlog
    assert "at most 2 of one tenant at once" in said, said
    assert "30 calls sent at once: 20 started at once (a full bucket), the other 10" in said, said
    assert "1st enqueue created, 2nd existing: the same job" in said, said
    assert "ended expired" in said, said
    assert "corq.JobExpiredError" in said, said


def _check_workflow(tmp_path: Path, stdout: str) -> None:
    """The demo's workflow ran: the chord's five fetches, add_up given their prices, the
    discount given the total, and the receipt after it; `corq workflow` shows it later."""
    chain = re.search(
        r"^workflow (wf_\w+) · chain · succeeded · 7 jobs: 7 succeeded$", stdout, re.M
    )
    assert chain is not None, stdout
    tree = stdout.split(chain.group(0), 1)[1].splitlines()[2:10]
    assert [re.sub(r"  \w{32}  ", "  <id>  ", line) for line in tree] == [
        "├── group of 5 side by side",
        *["│   ├── fetch_price  <id>  [demo]  succeeded"] * 4,
        "│   └── fetch_price  <id>  [demo]  succeeded",
        "├── add_up  <id>  [demo]  succeeded",
        "└── apply_discount  <id>  [demo]  succeeded",
    ], stdout
    receipt = re.search(
        r"^workflow (\w{32}) · depends · succeeded · 1 job: 1 succeeded$", stdout, re.M
    )
    assert receipt is not None, stdout
    last_job = tree[-1].split()[2]
    assert f"after {last_job} (outside this workflow)" in stdout
    # The results flowed from job to job
    figures = re.search(
        r"prices \[([\d., ]+)\] → add_up ([\d.]+) → apply_discount\(10%\) ([\d.]+) "
        r"\(the workflow's result\)",
        stdout,
    )
    assert figures is not None, stdout
    prices = [float(p) for p in figures.group(1).split(", ")]
    total, discounted = float(figures.group(2)), float(figures.group(3))
    assert len(prices) == 5
    assert total == pytest.approx(sum(prices), abs=0.01)
    assert discounted == pytest.approx(total * 0.9, abs=0.01)
    assert f"email_receipt, after it: 'receipt sent to ann: {discounted:.2f} charged'" in stdout
    # And the commands it suggests show the same workflow afterwards
    for workflow_id in (chain.group(1), receipt.group(1)):
        assert f"corq workflow {workflow_id} --url sqlite:///corq-demo.db" in stdout
    shown = _corq(tmp_path, "workflow", chain.group(1), "--url", "sqlite:///corq-demo.db")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == chain.group(0)
    assert shown.stdout.splitlines()[2:10] == stdout.split(chain.group(0), 1)[1].splitlines()[2:10]


@pytest.mark.timeout(60)
def test_demo_gives_up_after_its_timeout(tmp_path: Path) -> None:
    # The delayed jobs alone take 1.5 s, so a 1 s limit cannot be met.
    done = _corq(tmp_path, "demo", "--timeout", "1", timeout=50)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did not finish within 1s" in done.stdout
    assert "send_reminder" in done.stdout


def test_dev_runs_enqueued_jobs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # Given `corq dev` running a small app on the default embedded broker
    (tmp_path / "devapp.py").write_text(DEV_APP)
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        # The child keeps its own copy of the file descriptor.
        proc = subprocess.Popen(
            [sys.executable, "-m", "corq", "dev", "devapp:app"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # When a job is enqueued from another process into the same SQLite file
        sent = _corq(tmp_path, "enqueue", "add", "--args", "[2, 3]")
        assert sent.returncode == 0, sent.stderr
        job_id = sent.stdout.strip()
        # Then the dev process runs it
        record = _wait_for_job(tmp_path, job_id, proc, log_path)
        assert record["result"] == 5
        assert (tmp_path / "corq.db").exists()
        # and Ctrl-C stops it cleanly.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    banner = log_path.read_text()
    for expected in ("corq dev", "devapp:app", "sqlite:///corq.db", "corq enqueue TASK"):
        assert expected in banner, banner


def _wait_for_job(
    tmp_path: Path, job_id: str, proc: subprocess.Popen[bytes], log_path: Path
) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        shown = _corq(tmp_path, "job", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        record: dict[str, object] = json.loads(shown.stdout)
        if record["status"] == "succeeded":
            return record
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, f"job still {record['status']}\n{log_path.read_text()}"
        time.sleep(0.2)
