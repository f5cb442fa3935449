"""The typed API, checked by mypy: what tests/typing/check_specs.py asserts holds, and a
wrong call is an error (so the check can fail)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ROOT / "tests" / "typing" / "check_specs.py"

#: Each line is a mistake mypy must report, with the error code it must give.
WRONG = """\
from __future__ import annotations

import corq

app = corq.App("sqlite:///never-opened.db")


@app.task
async def fetch(a: int, b: int) -> int:
    return a + b


@app.task
def resize(path: str) -> str:
    return path


async def mistakes() -> None:
    await fetch.enqueue("one", 2)  # expect: arg-type
    await fetch.enqueue(1, 2, delay=5)  # expect: call-arg
    await fetch.enqueue(1)  # expect: call-arg
    fetch.s(1, "two")  # expect: arg-type
    fetch.with_options(dealy=5)  # expect: call-arg
    fetch.s(1, 2).with_options(priority="high")  # expect: arg-type
    text: str = await (await fetch.enqueue(1, 2)).result()  # expect: assignment
    number: int = await (await resize.enqueue("a.png")).result()  # expect: assignment
    await resize.with_options(queue="cpu").enqueue(3)  # expect: arg-type
    fetch.with_options(unique_key=5)  # expect: arg-type
    fetch.with_options(expires="soon")  # expect: arg-type
    app.task(rate_limit=50)  # expect: call-overload
    app.task(over_limit="later")  # expect: call-overload
    await batched.enqueue(["a"])  # expect: arg-type


@app.task(batch_size=10)
async def batched(rows: list[str]) -> None:
    return None
"""


def _mypy(*paths: Path) -> str:
    """mypy's report on `paths` with the project's (strict) settings."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return run.stdout + run.stderr


@pytest.mark.timeout(300)  # a cold mypy cache takes a while on a busy machine
def test_mypy_infers_the_typed_api_and_rejects_wrong_calls(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_calls.py"
    wrong.write_text(WRONG)
    # Given the checked examples and a file of mistakes, When mypy reads both,
    report = _mypy(CHECKED, wrong)
    # Then the examples pass as written,
    assert f"{CHECKED.name}:" not in report, report
    # and every mistake is reported on its own line with the expected code, nothing else.
    expected = {
        (number, code)
        for number, line in enumerate(WRONG.splitlines(), start=1)
        for code in re.findall(r"# expect: ([a-z-]+)", line)
    }
    found = {
        (int(number), code)
        for number, code in re.findall(r"wrong_calls\.py:(\d+): error: .*\[([a-z-]+)\]", report)
    }
    assert found == expected, report
