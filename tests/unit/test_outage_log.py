"""A loop's broker failures are logged once per outage, not once per beat."""

from __future__ import annotations

import logging

import pytest

from corq.aio import OutageLog
from corq.errors import BrokerError


def test_one_warning_per_outage_and_a_note_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="corq.worker")
    outage = OutageLog("heartbeat")
    outage.ok()  # no outage yet: nothing to say
    for _ in range(5):
        outage.failed(BrokerError("connection refused"))
    outage.ok()
    outage.ok()
    outage.failed(BrokerError("connection reset"))
    seen = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in seen] == [
        logging.WARNING,
        *[logging.DEBUG] * 4,
        logging.INFO,
        logging.WARNING,
    ]
    assert seen[0][1] == "heartbeat failed (connection refused); retrying quietly until it works"
    assert seen[5][1] == "heartbeat works again"
