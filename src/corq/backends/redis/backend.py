"""The Redis broker: the :class:`~corq.backends.base.Backend` contract on redis-py asyncio.

Every state change is one Lua script per queue (see ``lua/``), so a crash between two calls
never leaves a job half-moved; calls spanning queues or big batches are pipelined into one
round trip. Connections are made lazily in the event loop that first uses the backend;
another loop or thread takes a :meth:`RedisBackend.clone`. Every redis-py failure surfaces
as :class:`~corq.errors.BrokerError` (an outage) or :class:`~corq.errors.BrokerDataError`
(a refusal), so nothing above this package imports redis.

The broker is composed of one class per role, each in its own file (see ``context.py``):
producer.py (the JobStore port), claims.py, outcomes.py and reclaim.py (Claims), leases.py
(WorkerRegistry), admin.py (Admin), dead_letters.py (DeadLetters), schedules.py and
ticks.py (ScheduleStore), workflows.py, settle.py and workflow_reads.py (Workflows),
flow.py (FlowControl), worker_facts.py (WorkerFacts), breakers.py (Breakers), config.py
(RuntimeConfig), control.py (ControlChannel), events.py (EventLog): the same role files as
the SQLite broker.
"""

from __future__ import annotations

from corq.backends.base import Backend
from corq.backends.redis.admin import RedisAdmin
from corq.backends.redis.breakers import RedisBreakers
from corq.backends.redis.claims import RedisClaims
from corq.backends.redis.config import RedisConfig
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.control import RedisControl
from corq.backends.redis.dead_letters import RedisDeadLetters
from corq.backends.redis.events import RedisEvents
from corq.backends.redis.flow import RedisFlow
from corq.backends.redis.leases import RedisLeases
from corq.backends.redis.outcomes import RedisOutcomes
from corq.backends.redis.producer import RedisJobStore
from corq.backends.redis.reclaim import RedisReclaim
from corq.backends.redis.schedules import RedisSchedules
from corq.backends.redis.ticks import RedisTicks
from corq.backends.redis.worker_facts import RedisWorkerFacts
from corq.backends.redis.workflow_reads import RedisWorkflowReads
from corq.backends.redis.workflows import RedisWorkflows


class RedisBackend(
    RedisJobStore,
    RedisClaims,
    RedisOutcomes,
    RedisReclaim,
    RedisLeases,
    RedisAdmin,
    RedisDeadLetters,
    RedisSchedules,
    RedisTicks,
    RedisWorkflows,
    RedisWorkflowReads,
    RedisFlow,
    RedisWorkerFacts,
    RedisBreakers,
    RedisConfig,
    RedisControl,
    RedisEvents,
):
    """Broker on Redis (standalone, or Cluster-safe key layout; see ``keys.py``).

    `dead_max` and `dead_ttl_ms` bound each queue's dead letters (0: unbounded). A `now_ms`
    of None lets each script read Redis's own clock (TIME).
    """

    def __repr__(self) -> str:
        return f"RedisBackend({self._url!r}, prefix={self._prefix!r})"

    async def ping(self) -> None:
        with broker_errors("ping"):
            await self._redis.ping()

    def clone(self) -> Backend:
        return RedisBackend(
            self._url,
            prefix=self._prefix,
            socket_timeout_s=self._socket_timeout_s,
            dead_max=self._dead.max_count,
            dead_ttl_ms=self._dead.ttl_ms,
            events_max=self._events_max,
        )

    async def close(self) -> None:
        conns, self._conns = self._conns, None
        if conns is not None:
            with broker_errors("close"):
                await conns.close()
