"""Redis-specific checks of workflows: one slot per script, documented keys only, what a
settle or a creation that dies half-way leaves and who finishes it, damaged ends, and the
cost of a settle (round trips that do not grow with the workflow)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from corq.backends.base import (
    BATCH,
    WORKFLOW_CREATE_GRACE_MS,
    WORKFLOW_KEEP_MS,
    BatchEvent,
    NewWorkflow,
)
from corq.backends.redis import RedisBackend
from corq.backends.redis.calls import ScriptCall, load_source
from corq.backends.redis.keys import QueueKeys, RedisKeys, WorkflowKeys
from corq.backends.workflow_graph import check_workflow
from corq.job import JobStatus
from tests.contract.jobs import Q, new_job, wall_ms
from tests.contract.workflows import Q2, WF, Hands, dag, edge, settle, status_of, wjob
from tests.waiting import until

S = JobStatus
LUA = resources.files("corq.backends.redis").joinpath("lua")
SCRIPT_NAMES = sorted(p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua"))
#: The workflow scripts (and the end scripts that note ends), which the scenario must run.
WORKFLOW_SCRIPTS = {
    "add_workflow_nodes",
    "apply_workflow_ends",
    "cancel_job",
    "clear_outbox",
    "close_workflow",
    "commit_workflow_addition",
    "complete_jobs",
    "create_workflow",
    "drop_waiting_jobs",
    "drop_workflow",
    "drop_workflow_addition",
    "enqueue_waiting_jobs",
    "fail_jobs",
    "mark_workflows_due",
    "open_workflow",
    "release_workflow_jobs",
    "take_outbox",
    "watch_jobs",
}
FAR_FUTURE_MS = wall_ms() + 10 * WORKFLOW_KEEP_MS


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


def keys_of(backend: RedisBackend, workflow_id: str = WF) -> WorkflowKeys:
    return RedisKeys(backend._prefix).workflow(workflow_id)


async def write_without_opening(backend: RedisBackend, workflow: NewWorkflow) -> None:
    """A creation that died after writing the graph and the waiting records (before the
    watches and the open step): the first steps of enqueue_workflow, alone."""
    member = f"create/{workflow.id}"
    assert await backend._write(workflow, check_workflow(workflow), member, True, None)


# -- one slot per script ---------------------------------------------------------------
_LINE = re.compile(rb"^\S+ \[\d+ (\S+)[^\]]*\] (.*)$")
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')


def _args(line: bytes) -> tuple[bytes, list[bytes]] | None:
    """(client kind, the command's arguments) of one MONITOR line."""
    match = _LINE.match(line)
    if match is None:
        return None
    return match.group(1), [bytes(codecs.escape_decode(a)[0]) for a in _ARG.findall(match.group(2))]


class Monitor:
    """Every command Redis runs while the monitor is on, scripts' own commands included."""

    END = b"corq-monitor-end"

    def __init__(self, url: str) -> None:
        self._client = Redis.from_url(url)
        self.lines: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Monitor:
        conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        await conn.send_command("MONITOR")
        assert await conn.read_response() == b"OK"

        async def read() -> None:
            while True:
                self.lines.append(await conn.read_response())

        self._task = asyncio.create_task(read())
        return self

    async def stop(self, raw: Redis) -> None:
        """Wait until every command so far has been read (an ECHO after them), then stop."""
        await raw.echo(self.END)
        await until(lambda: any(self.END in line for line in self.lines), what="the monitor")
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self._client.connection_pool.disconnect()
        await self._client.aclose()


async def script_slots(raw: Redis, lines: list[bytes]) -> dict[str, list[set[int]]]:
    """Per script (by name), the slots each of its runs touched: its KEYS and the keys of
    every command it ran itself (found with COMMAND GETKEYS)."""
    names = {hashlib.sha1(load_source(n).encode()).hexdigest().encode(): n for n in SCRIPT_NAMES}
    runs: dict[str, list[set[int]]] = {}
    current: set[int] | None = None
    for line in lines:
        parsed = _args(line)
        if parsed is None:
            continue
        client, args = parsed
        if client != b"lua":
            current = None
            if args and args[0].upper() == b"EVALSHA" and args[1] in names:
                count = int(args[2])
                current = {key_slot(k) for k in args[3 : 3 + count]}
                runs.setdefault(names[args[1]], []).append(current)
            continue
        if current is None:
            continue
        try:
            keys = await raw.execute_command("COMMAND", "GETKEYS", *args)  # type: ignore[no-untyped-call]
        except Exception:  # a command without keys (TIME, PUBLISH)
            continue
        current |= {key_slot(k) for k in keys}
    return runs


async def run_every_workflow_step(backend: RedisBackend) -> None:
    """A scenario that runs every workflow script at least once."""
    hands = Hands(backend)
    # External parent x in Q2; a workflow across queues: a → b → c (c also waits for x),
    # a → d (in Q2)
    await backend.enqueue_jobs([new_job("x", queue=Q2)])
    wf = dag(
        wjob("a"),
        wjob("b", "a"),
        wjob("c", "b", edge("x", Q2)),
        wjob("d", "a", queue=Q2),
        outputs=("c", "d"),
    )
    assert await backend.enqueue_workflow(wf, None)
    await hands.run("a")
    await hands.die(await hands.claim_one("b"))
    held = await hands.claim(Q2)
    assert sorted(held) == ["d", "x"]
    await hands.succeed(*held.values())
    # An open batch: added to, closed
    batch = dag(
        wjob("m1", workflow="wf_batch"),
        wjob("ok", workflow="wf_batch", callback=BatchEvent.SUCCESS),
        workflow_id="wf_batch",
        kind="batch",
        open=True,
    )
    assert await backend.enqueue_workflow(batch, None)
    await backend.add_to_workflow("wf_batch", [wjob("m2", "m1", workflow="wf_batch")], None)
    await backend.close_workflow("wf_batch", None)
    # A waiting job cancelled, and a whole workflow cancelled
    assert await backend.enqueue_workflow(
        dag(wjob("p", workflow="wf_c"), wjob("q", "p", workflow="wf_c"), workflow_id="wf_c"),
        None,
    )
    assert await backend.cancel_job("q", Q, None)
    await settle(backend)
    await backend.cancel_workflow("wf_c", None)
    # A creation and an addition that died half-way, dropped by maintenance
    await write_without_opening(
        backend, dag(wjob("lost", workflow="wf_lost"), workflow_id="wf_lost")
    )
    batch_keys = keys_of(backend, "wf_batch2")
    assert await backend.enqueue_workflow(
        dag(wjob("n1", workflow="wf_batch2"), workflow_id="wf_batch2", open=True), None
    )
    added = [wjob("n2", workflow="wf_batch2")]
    graph = check_workflow(dag(*added, workflow_id="wf_batch2"))
    member = "add.tok/wf_batch2"
    calls: list[ScriptCall[Any]] = [backend._mark(member, WORKFLOW_CREATE_GRACE_MS, None)]
    calls += backend._node_calls("wf_batch2", added, graph, token="tok")
    await backend._scripts.run_all([*calls, *backend._waiting_calls(added)])
    assert await backend.tend_workflows(FAR_FUTURE_MS) >= 2
    assert await backend._redis.exists(batch_keys.meta) == 1


async def test_every_workflow_script_touches_one_slot(
    backend: RedisBackend, raw: Redis, redis_url: str
) -> None:
    async with Monitor(redis_url) as monitor:
        await run_every_workflow_step(backend)
        await monitor.stop(raw)
    runs = await script_slots(raw, monitor.lines)

    assert set(runs) >= WORKFLOW_SCRIPTS, sorted(WORKFLOW_SCRIPTS - set(runs))
    for name, slots in runs.items():
        for touched in slots:
            assert len(touched) == 1, f"{name} touched {len(touched)} slots"


async def test_only_documented_keys_are_written(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await run_every_workflow_step(backend)

    keys = RedisKeys(prefix)
    exact, prefixes = {keys.queues, keys.tend}, []
    for queue in (Q, Q2):
        q = keys.queue(queue)
        exact |= {q.ready, q.seq, q.delayed, q.wake, q.workers, q.dead, q.suspects}
        exact |= {q.departed, q.reclaiming, q.waiting, q.outbox, q.events}
        prefixes += [q.job_prefix, q.held_prefix, q.reclaim_prefix, q.notify_prefix]
    for wf_id in (WF, "wf_batch", "wf_c", "wf_lost", "wf_batch2"):
        wk = keys.workflow(wf_id)
        exact |= set(wk.fixed)
        prefixes += [wk.parents_prefix, wk.children_prefix, wk.addition_prefix]
    written = {k.decode() if isinstance(k, bytes) else k for k in await raw.keys(f"{prefix}:*")}

    undocumented = {k for k in written - exact if not k.startswith(tuple(prefixes))}
    assert not undocumented
    assert keys.workflow(WF).meta in written
    assert not any("wf_lost" in k for k in written)  # dropped whole


def test_the_keys_of_one_workflow_share_a_slot_and_the_queue_keys_theirs() -> None:
    wk = RedisKeys("corq").workflow("wf_{odd}:1")
    names = [*wk.fixed, wk.parents("j{1}"), wk.children("j-2"), wk.addition("t")]
    q = RedisKeys("corq").queue("emails")
    queue_names = [q.ready, q.waiting, q.outbox, q.notify("j{1}"), q.job("j{1}")]

    assert len({key_slot(n.encode()) for n in names}) == 1
    assert len({key_slot(n.encode()) for n in queue_names}) == 1
    assert key_slot(RedisKeys("corq").workflow("wf_2").meta.encode()) != key_slot(wk.meta.encode())


# -- crashes between steps -------------------------------------------------------------
async def settle_steps(backend: RedisBackend, queue: str, steps: int) -> None:
    """The first `steps` of a settle of `queue` (read, apply, release), then a crash."""
    keys = QueueKeys(backend._prefix, queue)
    entries = await backend._scripts.run(
        backend._scripts.take_outbox(keys, now_ms=None, older_than_ms=0)
    )
    assert entries
    if steps < 2:
        return
    decided = {}
    for entry in entries:
        call = backend._scripts.apply_workflow_ends(
            keys_of(backend, entry.workflow),
            ends=[(entry.job_id, entry.state, entry.error)],
            now_ms=None,
        )
        decided[entry.workflow] = (await backend._scripts.run(call)).todo
    if steps < 3:
        return
    for wf_id, todo in decided.items():
        jobs = [(d.job_id, wf_id, d.value) for d in todo]
        await backend._scripts.run(
            backend._scripts.release_workflow_jobs(
                QueueKeys(backend._prefix, Q), jobs=jobs, now_ms=None
            )
        )


@pytest.mark.parametrize("steps", [1, 2, 3])
async def test_a_settle_that_dies_half_way_is_finished_by_the_next(
    backend: RedisBackend, raw: Redis, steps: int
) -> None:
    # Given a → b, c, and a's success recorded
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "a")), None)
    hands = Hands(backend)
    await hands.succeed(await hands.claim_one("a"), settled=False)

    # When a settle dies after `steps` of its steps (read; apply; release)
    await settle_steps(backend, Q, steps)
    wk = keys_of(backend)
    outbox = QueueKeys(backend._prefix, Q).outbox
    assert await raw.zcard(outbox) == 1
    expected = S.QUEUED if steps == 3 else S.WAITING
    assert await status_of(backend, "b") == expected
    if steps >= 2:
        assert await raw.hlen(wk.todo) == 2  # decided, not cleared

    # Then the next settle finishes it: each child queued once, nothing left behind
    await settle(backend)
    assert sorted(await hands.claim()) == ["b", "c"]
    assert await hands.claim() == {}
    assert await raw.zcard(outbox) == 0
    assert await raw.hlen(wk.todo) == 0
    record = await backend.get_workflow(WF)
    assert record is not None
    assert dict(record.counts) == {"succeeded": 1}


async def test_a_creation_that_died_is_dropped_after_the_grace_and_nothing_ran(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a creation that died after writing its graph and its waiting records
    await backend.enqueue_jobs([new_job("x", queue=Q2)])
    wf = dag(wjob("a"), wjob("b", "a", edge("x", Q2)), wjob("c", queue=Q2), outputs=("b",))
    await write_without_opening(backend, wf)
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.creating is True
    assert await status_of(backend, "a") == S.WAITING
    assert await status_of(backend, "c", Q2) == S.WAITING
    hands = Hands(backend)
    assert await hands.claim() == {}

    # When maintenance runs within the grace, it leaves the creation alone
    await backend.tend_workflows(wall_ms())
    assert await backend.get_workflow(WF) is not None

    # When it runs after the grace, the workflow and its records are gone, x untouched
    assert await backend.tend_workflows(wall_ms() + WORKFLOW_CREATE_GRACE_MS + 1000) == 1
    assert await backend.get_workflow(WF) is None
    for job_id, queue in (("a", Q), ("b", Q), ("c", Q2)):
        assert await backend.get_job(job_id, queue) is None
    x = await backend.get_job("x", Q2)
    assert x is not None
    assert x.workflow is None
    wf_tag = f"{prefix}:{{wf:{WF}}}"
    assert await raw.keys(f"{wf_tag}*") == []
    assert await raw.zcard(RedisKeys(prefix).tend) == 0
    for queue in (Q, Q2):
        assert await raw.scard(QueueKeys(prefix, queue).waiting) == 0

    # And the producer's retry writes it whole
    assert await backend.enqueue_workflow(wf, None) is True
    assert await status_of(backend, "a") == S.QUEUED


async def test_a_retry_of_a_creation_that_died_finishes_it(backend: RedisBackend) -> None:
    # Given a creation that died half-way
    wf = dag(wjob("a"), wjob("b", "a"))
    await write_without_opening(backend, wf)

    # When the producer retries the same call, it is finished (not refused)
    assert await backend.enqueue_workflow(wf, None) is True

    assert await status_of(backend, "a") == S.QUEUED
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.creating, record.total) == (False, 2)
    await Hands(backend).run("a")
    assert await status_of(backend, "b") == S.QUEUED


async def test_an_addition_that_died_is_dropped_whole_after_the_grace(
    backend: RedisBackend, raw: Redis
) -> None:
    # Given an open batch, and an addition that died after writing its nodes and records
    batch = dag(wjob("m1"), wjob("done", callback=BatchEvent.COMPLETE), kind="batch", open=True)
    assert await backend.enqueue_workflow(batch, None)
    added = [wjob("m2"), wjob("m3", "m1")]
    graph = check_workflow(dag(*added))
    calls: list[ScriptCall[Any]] = [backend._mark(f"add.tok/{WF}", WORKFLOW_CREATE_GRACE_MS, None)]
    calls += backend._node_calls(WF, added, graph, token="tok")
    await backend._scripts.run_all([*calls, *backend._waiting_calls(added)])
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 4  # the size grew with the nodes: callbacks wait for them
    hands = Hands(backend)
    await hands.run("m1")
    assert await hands.claim() == {}  # m3 is not released before its addition commits

    # When maintenance runs after the grace
    assert await backend.tend_workflows(wall_ms() + WORKFLOW_CREATE_GRACE_MS + 1000) == 1

    # Then the addition is gone whole, and the batch goes on without it
    assert await backend.get_job("m2", Q) is None
    assert await backend.get_job("m3", Q) is None
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.total == 2
    assert [n.job_id for n in await backend.workflow_nodes(WF)] == ["m1", "done"]
    assert await raw.llen(keys_of(backend).children("m1")) == 0
    assert await backend.close_workflow(WF, None) is True
    assert list(await hands.claim()) == ["done"]


# -- damaged ends ----------------------------------------------------------------------
async def test_damaged_records_in_an_outbox_cost_only_themselves(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given two workflows a → b and c → d, a and c succeeded but not settled
    for parent, child, wf_id in (("a", "b", "wf_ab"), ("c", "d", "wf_cd")):
        assert await backend.enqueue_workflow(
            dag(
                wjob(parent, workflow=wf_id), wjob(child, parent, workflow=wf_id), workflow_id=wf_id
            ),
            None,
        )
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(held["a"], held["c"], settled=False)
    # and then a's record made unreadable, and an entry another program wrote
    q = QueueKeys(prefix, Q)
    await raw.delete(q.job("a"))
    await raw.set(q.job("a"), b"not a job record")
    await raw.zadd(q.outbox, {b"\xffgarbage": 1})

    # When the queue is settled
    await settle(backend)

    # Then d runs; b ends upstream_failed (its parent's record is damaged); the outbox is
    # empty (the garbage entry, of no workflow, is cleared too)
    assert list(await hands.claim()) == ["d"]
    b = await backend.get_job("b", Q)
    assert b is not None
    assert b.status == S.UPSTREAM_FAILED
    assert b.error is not None
    assert b.error.startswith("upstream_failed: a ended dead: damaged job record:"), b.error
    assert await raw.zcard(q.outbox) == 0


async def test_a_waiting_record_damaged_before_its_release_ends_only_itself(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a → b, a → c, with b's priority damaged while it waits
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "a")), None)
    await raw.hset(QueueKeys(prefix, Q).job("b"), "priority", "high")

    # When a succeeds
    hands = Hands(backend)
    await hands.run("a")

    # Then c runs and b is a dead letter saying why; the workflow took b's end in
    assert list(await hands.claim()) == ["c"]
    b = await backend.get_job("b", Q)
    assert b is not None
    assert b.status == S.DEAD
    assert b.error is not None
    assert "damaged job record: priority" in b.error
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.counts.get("dead") == 1


async def test_a_workflow_job_buried_by_a_claim_fails_its_children(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a → b, with a's record damaged while it is queued
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    await raw.hset(QueueKeys(prefix, Q).job("a"), "attempt", "many")

    # When a claim buries it (and the queue is settled, as the claimer's worker does)
    hands = Hands(backend)
    assert await hands.claim() == {}
    await settle(backend)

    # Then its child ends upstream_failed, naming the damage
    b = await backend.get_job("b", Q)
    assert b is not None
    assert b.status == S.UPSTREAM_FAILED
    assert b.error is not None
    assert b.error.startswith("upstream_failed: a ended dead: damaged job record: attempt")


# -- expiry ----------------------------------------------------------------------------
async def test_a_finished_workflow_s_keys_and_records_expire_after_the_keep(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    hands = Hands(backend)
    assert (await backend.get_workflow(WF)).finished_at_ms is None  # type: ignore[union-attr]
    for key in keys_of(backend).fixed:
        assert await raw.pttl(key) < 0  # no expiry while it runs

    await hands.run("a")
    await hands.run("b")

    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms is not None
    wf_keys = await raw.keys(f"{prefix}:{{wf:{WF}}}*")
    assert wf_keys
    for wf_key in wf_keys:
        assert 0 < await raw.pttl(wf_key) <= WORKFLOW_KEEP_MS, wf_key
    for job_id in ("a", "b"):
        assert await raw.pttl(QueueKeys(prefix, Q).job(job_id)) > WORKFLOW_KEEP_MS - 60_000


# -- cost ------------------------------------------------------------------------------
async def commands_of(url: str, raw: Redis, call: Callable[[], Awaitable[object]]) -> int:
    """How many commands the client sent Redis for `call` (a script counts one; what it
    runs itself does not), seen through MONITOR."""
    async with Monitor(url) as monitor:
        await call()
        await monitor.stop(raw)
    sent = [parsed for line in monitor.lines if (parsed := _args(line)) is not None]
    return sum(1 for client, args in sent if client != b"lua" and args[0].upper() != b"ECHO")


async def test_a_settle_costs_the_same_few_commands_at_any_length_of_chain(
    backend: RedisBackend, raw: Redis, redis_url: str
) -> None:
    # Given a chain of 100 links
    n = 100
    links = [wjob("l0"), *(wjob(f"l{i}", f"l{i - 1}") for i in range(1, n))]
    assert await backend.enqueue_workflow(dag(*links, kind="chain"), None)
    hands = Hands(backend)
    costs = []
    for i in range(n):
        # When each link succeeds, its settle costs 5 commands in 4 round trips: read the
        # outbox; apply; release; clear the todo and the outbox entry
        await hands.succeed(await hands.claim_one(f"l{i}"), settled=False)
        costs.append(await commands_of(redis_url, raw, lambda: backend.settle_workflows(Q, None)))

    # Then every settle cost the same, early in the chain or late (the first one also loads
    # scripts and connections; the last one releases nothing)
    assert set(costs[1:-1]) == {5}, sorted(set(costs))
    assert costs[-1] < 5


async def test_a_settle_of_a_thousand_ends_costs_a_handful_of_commands(
    backend: RedisBackend, raw: Redis, redis_url: str
) -> None:
    # Given a fan-in of 1,000 parents, all succeeded, nothing settled
    parents = [f"p{i}" for i in range(BATCH)]
    wf = dag(*(wjob(p) for p in parents), wjob("join", *parents))
    assert await backend.enqueue_workflow(wf, None)
    hands = Hands(backend)
    held = await hands.claim()
    await hands.succeed(*held.values(), settled=False)

    # When the queue is settled, it takes a few batched commands, not one per end
    cost = await commands_of(redis_url, raw, lambda: backend.settle_workflows(Q, None))

    assert cost <= 8, cost
    assert list(await hands.claim()) == ["join"]
