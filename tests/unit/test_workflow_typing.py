"""The typed workflow API, checked by mypy: tests/typing/check_workflows.py holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_typing import ROOT, _mypy

CHECKED = ROOT / "tests" / "typing" / "check_workflows.py"


@pytest.mark.timeout(300)  # a cold mypy cache takes a while on a busy machine
def test_mypy_infers_the_workflow_types(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_workflow.py"
    wrong.write_text(
        "from __future__ import annotations\n"
        "import corq\n"
        "from tests.typing.check_workflows import parse\n"
        "async def f(wf: corq.WorkflowHandle[int]) -> None:\n"
        "    text: str = await wf.result()  # line 5\n"
        "    parse.then(b'the input comes from the parent')  # line 6\n"
    )
    # Given the checked examples and two mistakes, When mypy reads them,
    report = _mypy(CHECKED, wrong)
    # Then the examples pass, and each mistake is reported.
    assert f"{CHECKED.name}:" not in report, report
    assert "wrong_workflow.py:5: error" in report, report
    assert "wrong_workflow.py:6: error: Too many arguments" in report, report
