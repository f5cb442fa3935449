"""The pieces of workflows checked without a broker: the ``depends_on`` option, a
workflow job's signature checked as if its input were prepended, the size setting."""

from __future__ import annotations

from typing import Any

import pytest

import corq
from corq.spec import Dependency, EnqueueOptions

app = corq.App("sqlite:///never-opened.db")


@app.task
async def parse(text: str, *, strict: bool = False) -> list[str]:
    return text.split()


@app.task
async def total(counts: list[int], label: str) -> str:
    return f"{label}: {sum(counts)}"


@app.task
async def nothing() -> None:
    return None


@app.task
async def anything(*values: int) -> int:
    return sum(values)


class Handle:
    """Anything with an id and a queue names a job (a JobHandle, a Job record)."""

    id = "job-1"
    queue = "emails"


def test_depends_on_takes_handles_ids_and_dependencies_and_keeps_them_as_data() -> None:
    options = EnqueueOptions(depends_on=iter([Handle(), "job-2", Dependency("job-3", "q")]))  # type: ignore[arg-type]
    assert options.depends_on == (
        Dependency("job-1", "emails"),
        Dependency("job-2"),
        Dependency("job-3", "q"),
    )
    spec = parse.s("a b").with_options(depends_on=[Handle(), "job-2"], allow_failed=True)
    data = spec.to_dict()
    assert data["options"] == {
        "allow_failed": True,
        "depends_on": [{"id": "job-1", "queue": "emails"}, "job-2"],
    }
    assert corq.JobSpec.from_dict(data) == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("job-1", "takes a list of job handles or ids, got 'job-1'"),
        ([1], "takes job handles or job ids, got an item 1"),
        (Handle(), "takes a list of job handles or ids"),
    ],
    ids=["a lone id", "a number", "a lone handle"],
)
def test_a_wrong_depends_on_is_refused(value: object, message: str) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        EnqueueOptions(depends_on=value)  # type: ignore[arg-type]


def test_allow_failed_must_be_a_bool() -> None:
    with pytest.raises(corq.ArgumentError, match="allow_failed must be True or False"):
        EnqueueOptions(allow_failed=1)  # type: ignore[arg-type]


def test_depends_on_is_an_option_not_an_argument_of_the_task() -> None:
    with pytest.raises(corq.ArgumentError, match=r"with_options\(depends_on=\.\.\.\)"):
        nothing.s(depends_on=["job-1"])  # type: ignore[call-arg]


def _encode(task: corq.Task[Any, Any], *args: Any, **kwargs: Any) -> bytes:
    return task.encode_payload(args, kwargs, takes_input="a chain link")


def test_a_link_is_checked_with_its_input_in_front() -> None:
    # parse(text) takes the previous result as `text`: no argument is needed here,
    assert app.serializer.loads(_encode(parse, strict=True)) == {
        "args": [],
        "kwargs": {"strict": True},
    }
    # total(counts, label) takes the list first, then its own label,
    _encode(total, "sum")
    # and a *args function takes anything.
    _encode(anything, 1, 2)


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "message"),
    [
        (
            nothing,
            (),
            {},
            "task 'nothing' cannot take the result it would be given as a chain "
            "link \\(prepended as its first argument\\): too many positional",
        ),
        (parse, ("extra",), {}, "too many positional arguments"),
        (parse, (), {"text": "x"}, "multiple values for argument 'text'"),
        (total, (), {}, "missing a required argument: 'label'"),
    ],
    ids=["takes nothing", "one too many", "the input's name", "one missing"],
)
def test_a_link_that_cannot_take_its_input_is_refused(
    task: corq.Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        _encode(task, *args, **kwargs)


def test_the_other_arguments_are_still_checked_against_their_hints() -> None:
    with pytest.raises(corq.ArgumentError, match="argument 'label'"):
        _encode(total, 3)


def test_max_workflow_jobs_is_a_setting_with_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert corq.Settings().max_workflow_jobs == 100_000
    monkeypatch.setenv("CORQ_MAX_WORKFLOW_JOBS", "500")
    assert corq.Settings().max_workflow_jobs == 500
    with pytest.raises(ValueError, match="less than or equal to 100000"):
        corq.Settings(max_workflow_jobs=100_001)
