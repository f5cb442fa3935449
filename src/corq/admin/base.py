"""What every part of the operator API shares: the client, its broker, and who acts."""

from __future__ import annotations

import getpass
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corq.app import App
    from corq.backends.base import Backend
    from corq.client import Client


def default_actor() -> str:
    """Who a change is recorded as when the caller names nobody: the OS user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class AdminBase:
    """Holds the app, its client and the actor; the parts of `Admin` add the calls."""

    def __init__(self, app: App, client: Client, who: str | None = None) -> None:
        self.app = app
        self.client = client
        #: Recorded with every change this admin makes (config history, audit).
        self.who = who or default_actor()

    @property
    def backend(self) -> Backend:
        return self.client.backend
