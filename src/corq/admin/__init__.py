"""The operator API: see and steer a running cluster (``app.admin()``).

Each part lives in its own module (cancellation and inspection, queues and tasks, dead
letters, workers, events); `Admin` is their union, bound to one client and one actor.
"""

from __future__ import annotations

from corq.admin.base import AdminBase
from corq.admin.events import EventsAdmin


class Admin(EventsAdmin, AdminBase):
    """Operator calls over one broker connection, recorded as made by ``who``."""


__all__ = ["Admin"]
