from __future__ import annotations

import pytest
from pydantic import ValidationError

from corq import App, Settings


def test_environment_variables_configure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORQ_URL", "redis://example:6380/2")
    monkeypatch.setenv("CORQ_MAX_PAYLOAD_BYTES", "2048")
    settings = Settings()
    assert settings.url == "redis://example:6380/2"
    assert settings.max_payload_bytes == 2048


def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORQ_CONCURRENCY", "7")
    app = App("redis://h:1/0", concurrency=9)
    assert app.settings.url == "redis://h:1/0"
    assert app.settings.concurrency == 9


def test_bad_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="lease_s"):
        Settings(lease_s=-1)
    with pytest.raises(ValidationError, match="no_such_setting"):
        Settings(no_such_setting=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CORQ_SERIALIZER", "pickle"),
        ("CORQ_LEASE_S", "inf"),
        ("CORQ_LEASE_S", "nan"),
        ("CORQ_RESULT_TTL_S", "infinity"),
        ("CORQ_PREFIX", "corq\n"),
        ("CORQ_DEFAULT_QUEUE", "default\n"),
    ],
)
def test_environment_values_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("CORQ_").lower()
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_changed_settings_are_checked_like_new_ones() -> None:
    # model_copy would take a NaN lease or an unknown name without a word.
    app = App("sqlite:///x.db")
    with pytest.raises(ValidationError, match="lease_s"):
        app.configure(lease_s=float("nan"))
    with pytest.raises(ValidationError, match="no_such_setting"):
        app.configure(no_such_setting=1)
    with pytest.raises(ValidationError, match="serializer"):
        App(settings=app.settings, serializer="pickle")
    assert app.settings.lease_s == 10.0
    app.configure(url="sqlite:///y.db", lease_s=20.0)
    assert (app.settings.url, app.settings.lease_s) == ("sqlite:///y.db", 20.0)
