"""The FlowControl port on SQLite, and the claim side of flow control: lanes, limits, rates.

Rules live in ``flow_rules`` (one row per queue and task). The lanes themselves are the
``lane`` column of queued jobs (jobs_ready is ordered by lane); which lanes are runnable,
parked or throttled, and their turns in the round robin, are rows of ``flow_groups`` (one
per ruled task, and ``''`` for the plain ready set) and ``flow_lanes`` (one per key lane).
Triggers (schema.sql) route a job made ready for the first time into its lane, put the lane
in its rotation, and at the end of an attempt that held slots lower its counts and unpark
its lane and group: every step that moves jobs does so in its own statement, so no code path
can forget it, and a job without rules costs one probe.

A claim in a queue that has lanes visits them here (``claim_laned``), one job per visit of a
group, each step an index probe (no scan of all keys): the best group (head priority, then
turn), its rate (GCRA) and concurrency, its best key lane, that lane's rate and concurrency,
then its head job. A queue without ruled tasks never comes here (one probe tells).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from corq.backends.base import BATCH, ClaimedJob
from corq.backends.sqlite.ends import apply_ends, end_of
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, read_clock
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.errors import FlowRuleError
from corq.flow import FlowStats, OverLimit, Rate, TaskRules
from corq.job import JobStatus
from corq.types import QueueName

_INT64_MAX = 2**63 - 1
#: The separator of a lane name, ``<task>\x1f<key>`` (see corq/backends/record.py).
SEP = "\x1f"
#: What an expired job's error says.
EXPIRED_ERROR = "expired: not started by its start_by deadline"
#: How long the record of a job that expired or was dropped is kept (as a cancelled one).
EXPIRED_TTL_MS = 7 * 86_400_000


class SqliteFlow:
    """The FlowControl methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def set_rules(self, queue: QueueName, rules: Sequence[TaskRules]) -> None:
        """Tasks that gain their first rules here take their jobs already in the plain
        ready set into their lanes, BATCH a transaction after the one storing the rules."""
        gained = await self._thread.run(partial(set_rules, queue=queue, rules=list(rules)))
        for rule in gained:
            adopt = partial(adopt_ready, queue=queue, task=rule.task, keyed=rule.keyed)
            while await self._thread.run(adopt) >= BATCH:
                pass

    async def get_rules(self, queue: QueueName) -> list[TaskRules]:
        rules = await self._thread.run(partial(load_rules, queue=queue), Tx.READ)
        return [rules[task] for task in sorted(rules)]

    async def flow_stats(self, queue: QueueName) -> FlowStats:
        return await self._thread.run(partial(flow_stats, queue=queue), Tx.READ)


# -- rules -----------------------------------------------------------------------------


def set_rules(conn: Conn, queue: QueueName, rules: Sequence[TaskRules]) -> list[TaskRules]:
    """Store (or, for a rule no longer active, delete) each task's rules; unpark what the
    task parked, so a raised limit applies from the next claim (a claim parks it again
    when it is still at its limit). Returns the rules of tasks that had none before."""
    before = load_rules(conn, queue)
    gained = [rule for rule in rules if rule.active and rule.task not in before]
    for rule in rules:
        if rule.active:
            conn.execute(Q["flow_rule_put"], _rule_params(queue, rule))
        else:
            conn.execute(Q["flow_rule_delete"], {"queue": queue, "task": rule.task})
        unpark = {"queue": queue, "task": rule.task, "turn": next_turn(conn, queue)}
        conn.execute(Q["flow_unpark_task_groups"], unpark)
        conn.execute(Q["flow_unpark_task_lanes"], unpark)
    return gained


def adopt_ready(conn: Conn, queue: QueueName, task: str, keyed: bool) -> int:
    """Move at most BATCH of the task's plain ready jobs into its lanes; how many moved."""
    params = {"queue": queue, "task": task, "keyed": int(keyed), "limit": BATCH}
    return conn.execute(Q["flow_adopt_ready"], params).rowcount


def _rule_params(queue: QueueName, rule: TaskRules) -> dict[str, Any]:
    rate, key_rate = rule.rate, rule.key_rate
    return {
        "queue": queue,
        "task": rule.task,
        "concurrency": rule.concurrency,
        "keyed": int(rule.keyed),
        "key_concurrency": rule.key_concurrency,
        "rate_count": None if rate is None else rate.count,
        "rate_period_ms": None if rate is None else rate.period_ms,
        "key_rate_count": None if key_rate is None else key_rate.count,
        "key_rate_period_ms": None if key_rate is None else key_rate.period_ms,
        "over_limit": rule.over_limit.value,
        "key_weights": json.dumps(dict(rule.key_weights), sort_keys=True),
    }


def load_rules(conn: Conn, queue: QueueName) -> dict[str, TaskRules]:
    """The queue's rules by task; a row that does not make valid rules (another program
    wrote it) counts as no rules for its task."""
    rules: dict[str, TaskRules] = {}
    for row in conn.execute(Q["flow_rules_of"], {"queue": queue}):
        rule = _rule_of(row)
        if rule is not None:
            rules[rule.task] = rule
    return rules


def _rule_of(row: tuple[Any, ...]) -> TaskRules | None:
    task, concurrency, keyed, key_concurrency, rc, rp, krc, krp, over, weights = row
    try:
        loaded = json.loads(weights) if isinstance(weights, str) else None
        if not isinstance(task, str) or not isinstance(loaded, dict) or keyed not in (0, 1):
            return None
        return TaskRules(
            task=task,
            concurrency=concurrency,
            keyed=bool(keyed),
            key_concurrency=key_concurrency,
            rate=None if rc is None and rp is None else Rate(rc, rp),
            key_rate=None if krc is None and krp is None else Rate(krc, krp),
            over_limit=OverLimit(over),
            key_weights=loaded,
        )
    except (FlowRuleError, ValueError, TypeError):
        return None


# -- stats -----------------------------------------------------------------------------


def flow_stats(conn: Conn, queue: QueueName) -> FlowStats:
    """The counters and the lanes' state, read in one snapshot."""
    row = conn.execute(Q["flow_counters"], {"queue": queue}).fetchone()
    expired, dropped, cooled = row if row is not None else (0, 0, 0)
    laned, parked, throttled = conn.execute(Q["flow_state_counts"], {"queue": queue}).fetchone()
    active = {
        name: running
        for name, running in conn.execute(Q["flow_active"], {"queue": queue})
        if isinstance(name, str) and type(running) is int
    }
    return FlowStats(
        queue=queue,
        expired=_count(expired),
        dropped=_count(dropped),
        cooled=_count(cooled),
        laned=laned,
        parked=parked,
        throttled=throttled,
        active=active,
    )


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


# -- the rotation ----------------------------------------------------------------------


def next_turn(conn: Conn, queue: QueueName) -> int:
    """The queue's next turn number: a lane given it goes to the back of its band."""
    (turn,) = conn.execute(Q["flow_turn_take"], {"queue": queue}).fetchone()
    return int(turn) if type(turn) is int else 0


def has_lanes(conn: Conn, queue: QueueName) -> bool:
    """Whether any ruled task's lane waits in the queue (one probe)."""
    (found,) = conn.execute(Q["flow_has_lanes"], {"queue": queue}).fetchone()
    return bool(found)


def wake_due(conn: Conn, queue: QueueName, now_ms: int) -> None:
    """Put back in their rotations (at the back) at most BATCH groups and BATCH lanes whose
    rate lets them start again."""
    params = {"queue": queue, "now": now_ms, "limit": BATCH, "turn": next_turn(conn, queue)}
    conn.execute(Q["flow_wake_groups"], params)
    woken = conn.execute(Q["flow_wake_lanes"], params).fetchall()
    for task in {task for (task,) in woken if isinstance(task, str)}:
        conn.execute(Q["flow_groups_revive"], {"queue": queue, "task": task})


def next_throttled(conn: Conn, queue: QueueName) -> int | None:
    """When the earliest throttled group or lane is due again, or None."""
    (due,) = conn.execute(Q["flow_next_throttled"], {"queue": queue}).fetchone()
    return due if type(due) is int else None


# -- expiry ----------------------------------------------------------------------------


def expire_due(conn: Conn, queue: QueueName, now_ms: int) -> int:
    """End ``expired`` at most BATCH jobs of the queue not started by their start_by_ms,
    counted, their ends applied to their workflows; returns how many."""
    params = {"queue": queue, "now": now_ms, "limit": BATCH, "error": EXPIRED_ERROR,
              "expires_at_ms": _kept_until(conn, now_ms)}  # fmt: skip
    rows = conn.execute(Q["flow_expire_due"], params).fetchall()
    if rows:
        conn.execute(Q["flow_count"], {"queue": queue, "expired": len(rows), "dropped": 0})
        ends = [end_of(row[0], queue, JobStatus.EXPIRED, row[1:]) for row in rows]
        apply_ends(conn, ends, now_ms)
    return len(rows)


def _kept_until(conn: Conn, now_ms: int) -> int:
    return min(max(now_ms, read_clock(conn)) + EXPIRED_TTL_MS, _INT64_MAX)


def drop(conn: Conn, queue: QueueName, rowid: int, error: str, now_ms: int) -> None:
    """End a waiting job ``expired`` as dropped over a rate limit, counted."""
    params = {"rowid": rowid, "now": now_ms, "error": error,
              "expires_at_ms": _kept_until(conn, now_ms)}  # fmt: skip
    row = conn.execute(Q["flow_drop"], params).fetchone()
    if row is not None:
        conn.execute(Q["flow_count"], {"queue": queue, "expired": 0, "dropped": 1})
        apply_ends(conn, [end_of(row[0], queue, JobStatus.EXPIRED, row[1:])], now_ms)


# -- limits ----------------------------------------------------------------------------


@dataclass(slots=True)
class Limit:
    """One limit's state as a claim reads it ('t:<task>' or 'k:<lane>')."""

    name: str
    running: int = 0
    tat_ms: float | None = None


def read_limit(conn: Conn, queue: QueueName, name: str) -> Limit:
    row = conn.execute(Q["flow_limit_get"], {"queue": queue, "name": name}).fetchone()
    if row is None:
        return Limit(name)
    running, tat = row
    return Limit(
        name,
        running if type(running) is int and running > 0 else 0,
        float(tat) if type(tat) in (int, float) and math.isfinite(tat) else None,
    )


def rate_due(rate: Rate, limit: Limit, now_ms: int) -> int | None:
    """None when GCRA admits a start now, else when it will (ms)."""
    if limit.tat_ms is None:
        return None
    allowed_at = limit.tat_ms - (rate.period_ms - rate.interval_ms)
    return None if allowed_at <= now_ms else math.ceil(allowed_at)


def spend(
    conn: Conn, queue: QueueName, limit: Limit, rate: Rate | None, slot: bool, now: int
) -> None:
    """A start under `limit`: its tat moves on by one interval (with a rate), its running
    count goes up by one (with a concurrency); a limit with neither writes nothing."""
    if rate is None and not slot:
        return
    tat = limit.tat_ms
    if rate is not None:
        tat = max(tat if tat is not None else now, now) + rate.interval_ms
    params = {"queue": queue, "name": limit.name, "add": int(slot), "tat": tat}
    conn.execute(Q["flow_limit_spend"], params)


# -- claiming from lanes ---------------------------------------------------------------

#: How a claim takes up to `count` jobs of one lane ('' the plain ready set), checked,
#: under its fences, ``limited`` when they hold slots (claims.py gives it).
Take = Callable[[str, int, bool], list[ClaimedJob]]


@dataclass(frozen=True, slots=True)
class Visit:
    """One claim's walk of the queue's lanes."""

    conn: Conn
    queue: QueueName
    now_ms: int
    rules: dict[str, TaskRules]
    take: Take


def claim_laned(
    conn: Conn, queue: QueueName, want: int, now_ms: int, take: Take
) -> list[ClaimedJob]:
    """Take up to `want` jobs from the queue's lanes round robin (see the module
    docstring), bounded to `want` + BATCH visits (parking, throttling, drops). The claim's
    promotion, at the same time, has already put the throttled lanes that are due back."""
    visit = Visit(conn, queue, now_ms, load_rules(conn, queue), take)
    refresh_plain(conn, queue, now_ms, rotate=False)
    jobs: list[ClaimedJob] = []
    for _ in range(want + BATCH):
        if len(jobs) >= want:
            break
        task = top_group(conn, queue)
        if task is None:
            break
        if task == "":
            jobs += take("", 1, False)
            refresh_plain(conn, queue, now_ms, rotate=True)
        else:
            jobs += _visit_group(visit, task)
    return jobs


def _visit_group(v: Visit, task: str) -> list[ClaimedJob]:
    """One visit of a ruled task's group: its rate, its concurrency, then its best lane."""
    rule = v.rules.get(task)
    lanes = top_lane(v.conn, v.queue, task)
    if lanes is None:
        group_done(v.conn, v.queue, task)
        return []
    lane, taken = lanes
    task_limit = _limit(
        v, "t:" + task, rule is not None and (rule.rate or rule.concurrency) is not None
    )
    if rule is not None and rule.rate is not None:
        due = rate_due(rule.rate, task_limit, v.now_ms)
        if due is not None:
            _over_rate(v, rule, task, lane, due, group=True)
            return []
    if rule is not None and rule.concurrency is not None and task_limit.running >= rule.concurrency:
        set_group(v.conn, v.queue, task, "parked")
        return []
    return _visit_lane(v, rule, task, lane, taken, task_limit)


def _visit_lane(
    v: Visit, rule: TaskRules | None, task: str, lane: str, taken: int, task_limit: Limit
) -> list[ClaimedJob]:
    """One visit of a key lane: its rate, its concurrency, then its head job."""
    key_limit = _limit(
        v, "k:" + lane, rule is not None and (rule.key_rate or rule.key_concurrency) is not None
    )
    if rule is not None and rule.key_rate is not None:
        due = rate_due(rule.key_rate, key_limit, v.now_ms)
        if due is not None:
            _over_rate(v, rule, task, lane, due, group=False)
            return []
    kc = None if rule is None else rule.key_concurrency
    if kc is not None and key_limit.running >= kc:
        set_lane(v.conn, v.queue, lane, "parked")
        leave_if_idle(v.conn, v.queue, task)
        return []
    limited = rule is not None and (rule.concurrency or rule.key_concurrency) is not None
    got = v.take(lane, 1, limited)
    if got and rule is not None:
        spend(v.conn, v.queue, task_limit, rule.rate, rule.concurrency is not None, v.now_ms)
        key_slot = rule.key_concurrency is not None
        spend(v.conn, v.queue, key_limit, rule.key_rate, key_slot, v.now_ms)
    weight = rule.weight(lane.partition(SEP)[2]) if rule is not None and rule.keyed else 1
    after_take(v.conn, v.queue, task, lane, v.now_ms, rotate=not got or taken + 1 >= weight)
    return got


def _limit(v: Visit, name: str, limited: bool) -> Limit:
    """The limit's state, read only when a rule limits it (else it is never spent)."""
    return read_limit(v.conn, v.queue, name) if limited else Limit(name)


def _over_rate(v: Visit, rule: TaskRules, task: str, lane: str, due: int, *, group: bool) -> None:
    """A lane (or its whole group) over a rate: its head dropped (over_limit='drop'), or
    throttled until `due`."""
    if rule.over_limit is OverLimit.DROP:
        head = v.conn.execute(
            Q["flow_lane_head"], {"queue": v.queue, "lane": lane, "now": v.now_ms}
        ).fetchone()
        if head is not None:
            what = f"task {task!r}" if group else f"key {lane.partition(SEP)[2]!r} of task {task!r}"
            drop(v.conn, v.queue, head[1], f"dropped: over the rate limit of {what}", v.now_ms)
        after_take(v.conn, v.queue, task, lane, v.now_ms, rotate=False)
    elif group:
        set_group(v.conn, v.queue, task, "throttled", due)
    else:
        set_lane(v.conn, v.queue, lane, "throttled", due)
        leave_if_idle(v.conn, v.queue, task)


def leave_if_idle(conn: Conn, queue: QueueName, task: str) -> None:
    """A group whose best lane was just parked or throttled leaves the rotation when no
    other lane of it is runnable (waiting until one is)."""
    if top_lane(conn, queue, task) is None:
        group_done(conn, queue, task)


def plain_head(conn: Conn, queue: QueueName, now_ms: int) -> int | None:
    """The priority of the plain ready set's head (None: empty)."""
    params = {"queue": queue, "lane": "", "now": now_ms}
    row = conn.execute(Q["flow_lane_head"], params).fetchone()
    if row is None:
        return None
    return row[0] if type(row[0]) is int else 0


def refresh_plain(conn: Conn, queue: QueueName, now_ms: int, *, rotate: bool) -> None:
    """The plain ready set takes part in the round robin as group '' while it has jobs;
    `rotate` sends it to the back (it just gave a job)."""
    head = plain_head(conn, queue, now_ms)
    if head is None:
        conn.execute(Q["flow_group_delete"], {"queue": queue, "task": ""})
        return
    params = {"queue": queue, "head": head, "turn": next_turn(conn, queue), "rotate": int(rotate)}
    conn.execute(Q["flow_plain_put"], params)


def top_group(conn: Conn, queue: QueueName) -> str | None:
    """The runnable group to visit next (its task; '' the plain ready set)."""
    row = conn.execute(Q["flow_group_top"], {"queue": queue}).fetchone()
    return row[0] if row is not None and isinstance(row[0], str) else None


def top_lane(conn: Conn, queue: QueueName, task: str) -> tuple[str, int] | None:
    """The best runnable lane of a group: (lane, jobs taken in its current visit)."""
    row = conn.execute(Q["flow_lane_top"], {"queue": queue, "task": task}).fetchone()
    if row is None or not isinstance(row[0], str):
        return None
    return row[0], row[1] if type(row[1]) is int else 0


def set_group(conn: Conn, queue: QueueName, task: str, state: str, due: int | None = None) -> None:
    params = {"queue": queue, "task": task, "state": state, "due": due}
    conn.execute(Q["flow_group_state"], params)


def set_lane(conn: Conn, queue: QueueName, lane: str, state: str, due: int | None = None) -> None:
    params = {"queue": queue, "lane": lane, "state": state, "due": due}
    conn.execute(Q["flow_lane_state"], params)


def group_done(conn: Conn, queue: QueueName, task: str) -> None:
    """A group with no runnable lane: deleted when it has no lane at all, else waiting."""
    params = {"queue": queue, "task": task, "low": task + SEP, "high": task + "\x20"}
    (any_lane,) = conn.execute(Q["flow_group_has_lanes"], params).fetchone()
    if any_lane:
        set_group(conn, queue, task, "waiting")
    else:
        conn.execute(Q["flow_group_delete"], {"queue": queue, "task": task})


def after_take(
    conn: Conn, queue: QueueName, task: str, lane: str, now_ms: int, *, rotate: bool
) -> None:
    """A lane was visited: its new head (deleted when empty), to the back of its rotation
    when its visit is over (`rotate`); its group to the back of its band, with its new
    head (waiting or deleted when no lane of it is runnable). One turn number serves
    both: lanes are only ordered among the lanes of their group, groups among groups."""
    turn = next_turn(conn, queue)
    params = {"queue": queue, "lane": lane, "now": now_ms}
    head_row = conn.execute(Q["flow_lane_head"], params).fetchone()
    if head_row is None:
        conn.execute(Q["flow_lane_delete"], {"queue": queue, "lane": lane})
        forget = {"queue": queue, "name": "k:" + lane, "now": now_ms}
        conn.execute(Q["flow_limit_forget"], forget)
    else:
        head = head_row[0] if type(head_row[0]) is int else 0
        params = {"queue": queue, "lane": lane, "head": head, "rotate": int(rotate),
                  "turn": turn}  # fmt: skip
        conn.execute(Q["flow_lane_taken"], params)
    best = conn.execute(Q["flow_lane_top"], {"queue": queue, "task": task}).fetchone()
    if best is None:
        group_done(conn, queue, task)
        return
    head = best[2] if type(best[2]) is int else 0
    params = {"queue": queue, "task": task, "head": head, "turn": turn}
    conn.execute(Q["flow_group_turn"], params)
