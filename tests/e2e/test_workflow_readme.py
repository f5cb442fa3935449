"""The README's Workflows section, run as written on both brokers: the tutorial's `app.py`
with the section's tasks added, a real `corq worker app:app`, and the section's snippets in
one script, whose prints must say what the README's comments say."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: What each snippet prints, after the ids are put in (see the README's comments).
CHECKS = """
    print("CHECK", json.dumps({"a": a.id, "b": b.id, "bad": bad.id}))
    print("CHECK", (await skipped.status()).value)
    try:
        await skipped.result(timeout=10)
    except corq.UpstreamFailedError as exc:
        print("CHECK", str(exc))
    print("CHECK", status.state.value, cancelled)
"""


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _files(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Workflows") + len("### Workflows")
    end = re.search(r"^##+ ", readme[start:], re.MULTILINE)  # the next heading
    section = readme[start : len(readme) if end is None else start + end.start()]
    blocks = _python_blocks(section)
    (tmp_path / "app.py").write_text(_python_blocks(readme)[0] + "\n" + blocks[0])
    body = "\n".join(blocks[1:]) + textwrap.dedent(CHECKS)
    indented = "\n".join(f"    {line}" if line.strip() else "" for line in body.splitlines())
    script = (
        "import asyncio\nimport json\nimport corq\nfrom app import *\n\n\n"
        f"async def main():\n{indented}\n\n\nasyncio.run(main())\n"
    )
    ast.parse(script)  # the snippets are Python, in the order the README gives them
    (tmp_path / "snippets.py").write_text(script)


def test_the_readme_workflow_snippets_do_what_they_say(cli: Cli, tmp_path: Path) -> None:
    _files(tmp_path)
    env = dict(cli.env(), PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "src")]))
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "corq", "worker", "app:app", "--queues", "default,cpu"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    cli.procs.append(worker)
    done = subprocess.run(
        [sys.executable, "snippets.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr + (tmp_path / "worker.log").read_text()
    lines = done.stdout.splitlines()
    checks = [line.removeprefix("CHECK ") for line in lines if line.startswith("CHECK ")]
    ids = json.loads(checks[0])
    printed = [line for line in lines if not line.startswith("CHECK ")]
    assert printed == [
        str({ids["a"]: 3, ids["b"]: 2}),  # depends_on: parent_results() by id
        "12",  # the chain
        "[1, 2]",  # the group
        "3",  # the chord
        str({"total": 2, "counts": {"succeeded": 2}, "failed_ids": [], "failed": 0}),  # batch
        str({ids["a"]: 3}),  # allow_failed: the dead parent's value was an UpstreamError
    ]
    assert checks[1] == "upstream_failed"
    assert checks[2].endswith(
        f"never ran: upstream_failed: {ids['bad']} ended dead: ValueError: no"
    )
    assert checks[3] == "succeeded 0"  # the chord had ended: nothing left to cancel
