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
