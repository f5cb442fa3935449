"""The Breakers port on SQLite: the ``breakers`` table (a task's circuit) and
``breaker_failures`` (a closed circuit's failures in its window); each call one transaction,
with the same semantics as the Redis scripts (``lua/breaker_*.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from corq.backends.base import Breaker, BreakerPermit, BreakerState
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, machine_now_ms
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.control import BreakerStatus
from corq.types import TaskName


class SqliteBreakers:
    """The Breakers methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def breaker_permit(
        self, task: TaskName, rule: Breaker, now_ms: int | None
    ) -> BreakerPermit:
        return await self._thread.run(partial(breaker_permit, task=task, rule=rule, now=now_ms))

    async def breaker_outcome(
        self, task: TaskName, rule: Breaker, ok: bool, probe: bool, now_ms: int | None
    ) -> BreakerState:
        call = partial(breaker_outcome, task=task, rule=rule, ok=ok, probe=probe, now=now_ms)
        return await self._thread.run(call)

    async def breaker_states(
        self, tasks: Sequence[TaskName] | None = None, *, now_ms: int | None = None
    ) -> list[BreakerState]:
        names = None if tasks is None else list(tasks)
        call = partial(breaker_states, tasks=names, now=now_ms)
        return await self._thread.run(call, Tx.READ)

    async def reset_breaker(self, task: TaskName) -> bool:
        return await self._thread.run(partial(reset_breaker, task=task))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


_STATUSES = {status.value: status for status in BreakerStatus}


class _Circuit:
    """A row as read (a value nobody can read counts as closed or absent: a damaged
    circuit holds no job back)."""

    def __init__(self, task: TaskName, row: Any) -> None:
        values = tuple(row) if row is not None else (None,) * 6
        self.task = task
        self.status = _STATUSES.get(values[0], BreakerStatus.CLOSED)
        self.failures = _int(values[1]) or 0
        self.opened_at_ms = _int(values[2])
        self.until_ms = _int(values[3])
        self.opened = _int(values[4]) or 0
        self.window_ms = _int(values[5]) or 0

    def state(self, failures: int | None = None) -> BreakerState:
        return BreakerState(
            task=self.task,
            status=self.status,
            failures=self.failures if failures is None else failures,
            opened_at_ms=self.opened_at_ms,
            until_ms=self.until_ms,
            opened=self.opened,
        )


def _read(conn: Conn, task: TaskName) -> _Circuit:
    return _Circuit(task, conn.execute(Q["breaker_get"], {"task": task}).fetchone())


def breaker_permit(conn: Conn, task: TaskName, rule: Breaker, now: int | None) -> BreakerPermit:
    """Closed: yes. Open before its end, or a probe's permit running: no. Else the probe."""
    circuit = _read(conn, task)
    if circuit.status is BreakerStatus.CLOSED:
        return BreakerPermit(allowed=True)
    now = machine_now_ms() if now is None else now
    if circuit.until_ms is not None and now < circuit.until_ms:
        return BreakerPermit(allowed=False, retry_at_ms=circuit.until_ms)
    conn.execute(Q["breaker_probe"], {"task": task, "until_ms": now + _ms(rule.reset)})
    return BreakerPermit(allowed=True, probe=True)


def breaker_outcome(
    conn: Conn, task: TaskName, rule: Breaker, ok: bool, probe: bool, now: int | None
) -> BreakerState:
    """A probe's outcome decides a half-open circuit; a failure counts in a closed one;
    anything else changes nothing (see breaker_outcome.lua)."""
    now = machine_now_ms() if now is None else now
    circuit = _read(conn, task)
    window_ms = _ms(rule.window)
    if circuit.status is BreakerStatus.HALF_OPEN and probe:
        if ok:
            conn.execute(Q["breaker_close"], {"task": task})
            conn.execute(Q["breaker_failures_clear"], {"task": task})
            return _read(conn, task).state()
        return _open(conn, circuit, circuit.failures, now, rule)
    if circuit.status is not BreakerStatus.CLOSED:
        return circuit.state()
    params = {"task": task, "now": now, "window_ms": window_ms}
    if ok:
        return circuit.state(_count(conn, params))
    (seq,) = conn.execute(Q["breaker_failure"], params).fetchone()
    conn.execute(Q["breaker_failure_add"], {**params, "seq": seq})
    conn.execute(Q["breaker_failures_trim"], {**params, "keep": rule.failures})
    count = _count(conn, params)
    if count >= rule.failures:
        return _open(conn, circuit, count, now, rule)
    return _read(conn, task).state(count)


def _count(conn: Conn, params: dict[str, Any]) -> int:
    (count,) = conn.execute(Q["breaker_failures_count"], params).fetchone()
    return int(count)


def _open(conn: Conn, circuit: _Circuit, count: int, now: int, rule: Breaker) -> BreakerState:
    task = circuit.task
    until = now + _ms(rule.reset)
    params = {"task": task, "failures": count, "now": now, "until_ms": until}
    conn.execute(Q["breaker_open"], params)
    conn.execute(Q["breaker_failures_clear"], {"task": task})
    return _read(conn, task).state()


def breaker_states(conn: Conn, tasks: list[TaskName] | None, now: int | None) -> list[BreakerState]:
    """Each task's circuit (closed with nothing counted when it has none); a closed one's
    failures are those within the window of its last failure."""
    if tasks is None:
        tasks = [row[0] for row in conn.execute(Q["breaker_all"]) if isinstance(row[0], str)]
    now = machine_now_ms() if now is None else now
    states = []
    for task in tasks:
        circuit = _read(conn, task)
        if circuit.status is BreakerStatus.CLOSED:
            params = {"task": task, "now": now, "window_ms": circuit.window_ms}
            states.append(circuit.state(_count(conn, params)))
        else:
            states.append(circuit.state())
    return states


def reset_breaker(conn: Conn, task: TaskName) -> bool:
    """Close by hand: the circuit's row and failures go."""
    conn.execute(Q["breaker_failures_clear"], {"task": task})
    return conn.execute(Q["breaker_delete"], {"task": task}).rowcount > 0
