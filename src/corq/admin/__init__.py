"""The operator API: see and steer a running cluster (``app.admin()``).

Each part lives in its own module (cancellation and inspection, queues and tasks, dead
letters, workers, events); `Admin` is their union, bound to one client and one actor.
"""

from __future__ import annotations

from corq.admin.base import AdminBase
from corq.admin.breakers import BreakersAdmin
from corq.admin.config import ConfigAdmin
from corq.admin.dead import DeadAdmin
from corq.admin.events import EventsAdmin
from corq.admin.jobs import JobsAdmin
from corq.admin.workers import WorkersAdmin


class Admin(JobsAdmin, ConfigAdmin, BreakersAdmin, DeadAdmin, EventsAdmin, WorkersAdmin, AdminBase):
    """Operator calls over one broker connection, recorded as made by ``who``."""


__all__ = ["Admin"]
