"""Typed wrappers of the Lua scripts in ``lua/``: one method per script, named like its file
(the schedule and workflow scripts' wrappers are in ``schedule_scripts.py`` and
``workflow_scripts.py``, mixed in). How they load
and run is ``calls.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import (
    BATCH,
    CANCELLED_TTL_MS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    WORKFLOW_KEEP_MS,
    Admitted,
    ClaimBatch,
    Failure,
    NewJob,
    Release,
)
from corq.backends.redis import replies
from corq.backends.redis.breaker_scripts import BreakerScripts
from corq.backends.redis.calls import WAKE_CAP, Arg, ScriptCall, new_values, now_arg
from corq.backends.redis.config_scripts import ConfigScripts
from corq.backends.redis.keys import QueueKeys
from corq.backends.redis.replies import (
    DeadQuery,
    DeadWindow,
    HeldStep,
    Promoted,
    QueueCounts,
    StalledBatch,
)
from corq.backends.redis.schedule_scripts import ScheduleScripts
from corq.backends.redis.worker_facts_scripts import WorkerFactsScripts
from corq.backends.redis.workflow_scripts import WorkflowScripts
from corq.flow import Dedupe
from corq.types import JobId, QueueName, WorkerId

#: The directive of a job with a unique key and no dedupe: a duplicate keeps the existing job.
NO_DEDUPE = Dedupe()
#: Values per directive in enqueue_jobs (see the dedupe include's read_rules).
RULE_WIDTH = 6


def dedupe_values(place: int, dedupe: Dedupe) -> list[Arg]:
    """One job's directive as enqueue_jobs takes it ('' for a duration not given)."""

    def ms(value: int | None) -> Arg:
        return "" if value is None else value

    return [
        place,
        dedupe.on_duplicate.value,
        dedupe.window_ms,
        ms(dedupe.debounce_ms),
        ms(dedupe.max_wait_ms),
        ms(dedupe.cooldown_ms),
    ]


#: How long the snapshot behind one ``retry_dead`` of all dead letters is kept at most.
SNAPSHOT_TTL_MS = 3600 * 1000


#: Most lanes whose heads queue_stats looks at for the oldest ready job.
STATS_LANES_MAX = 100


class Scripts(ScheduleScripts, WorkflowScripts, WorkerFactsScripts, BreakerScripts, ConfigScripts):
    """The scripts, registered on one client (their SHA1s are computed once)."""

    def enqueue_jobs(
        self, keys: QueueKeys, *, jobs: Sequence[NewJob]
    ) -> ScriptCall[list[Admitted]]:
        """Plain jobs go as their values; a call with a job that has a unique key or a dedupe
        adds a directive per such job (dedupe_values), so the script admits them in order."""
        rules: list[Arg] = []
        for place, job in enumerate(jobs, 1):
            if job.unique_key is not None or job.dedupe is not None:
                rules += dedupe_values(place, job.dedupe or NO_DEDUPE)
        args: list[Arg] = [keys.job_prefix, PRIORITY_MAX, WAKE_CAP, *keys.flow_prefixes]
        args += [*self._handover_args(keys), CANCELLED_TTL_MS, WORKFLOW_KEEP_MS]
        args += [len(rules) // RULE_WIDTH, *rules]
        for job in jobs:
            args += new_values(job)
        queue_keys = [keys.ready, keys.delayed, keys.seq, keys.wake, *keys.flow_keys]
        queue_keys += [*self._handover_keys(keys), *keys.unique_keys, keys.cooldown]
        queue_keys += [keys.cooldown_until, keys.suspects, keys.waiting]
        parse = replies.admitted([job.id for job in jobs])
        queue_keys.append(keys.events)
        return self._call("enqueue_jobs", queue_keys, args, parse)

    def _handover_keys(self, keys: QueueKeys) -> list[str]:
        """The keys a step that makes jobs ready takes to hand them to idle holders
        (workers, idle, dead, outbox: see the wake include), after the flow keys."""
        return [keys.workers, keys.idle, keys.dead, keys.outbox]

    def _handover_args(self, keys: QueueKeys) -> list[Arg]:
        """Its values: done_prefix, held_prefix, inbox_prefix, queue, batch, dead bounds."""
        prefixes: list[Arg] = [keys.done_prefix, keys.held_prefix, keys.inbox_prefix]
        return [*prefixes, keys.queue, BATCH, *self._dead_bounds]

    def claim_jobs(
        self,
        keys: QueueKeys,
        *,
        holder: WorkerId,
        count: int,
        suspects: int,
        lease_ms: int,
        now_ms: int | None,
        idle: bool = False,
    ) -> ScriptCall[ClaimBatch]:
        queue_keys = [keys.workers, keys.ready, keys.delayed, keys.seq, keys.wake]
        queue_keys += [keys.held(holder), keys.suspects, keys.dead, keys.outbox, *keys.flow_keys]
        queue_keys += [keys.idle, *keys.unique_keys, keys.paused]
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, max(0, count)]
        args += [max(0, suspects), lease_ms, now_arg(now_ms), BATCH, PRIORITY_MIN, PRIORITY_MAX]
        args += [*self._dead_bounds, keys.queue, *keys.flow_prefixes]
        args += [keys.held_prefix, keys.inbox_prefix, int(idle)]
        queue_keys.append(keys.events)
        return self._call("claim_jobs", queue_keys, args, replies.claim_batch)

    def list_held_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, cursor: str
    ) -> ScriptCall[HeldStep]:
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, cursor, BATCH]
        args += self._dead_bounds
        queue_keys = [keys.held(holder), keys.dead, keys.outbox, *keys.unique_keys]
        queue_keys.append(keys.events)
        return self._call("list_held_jobs", queue_keys, args, replies.held_step)

    def promote_due_jobs(self, keys: QueueKeys, *, now_ms: int | None) -> ScriptCall[Promoted]:
        queue_keys = [keys.delayed, keys.ready, keys.seq, keys.wake, keys.suspects, keys.dead]
        queue_keys += [keys.outbox, *keys.flow_keys, keys.workers, keys.idle, *keys.unique_keys]
        queue_keys += [keys.cooldown, keys.cooldown_until]
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, now_arg(now_ms), BATCH]
        args += [PRIORITY_MIN, PRIORITY_MAX, WAKE_CAP, *self._dead_bounds, *keys.flow_prefixes]
        args += [keys.held_prefix, keys.inbox_prefix, keys.queue]
        queue_keys.append(keys.events)
        return self._call("promote_due_jobs", queue_keys, args, replies.promoted)

    def complete_jobs(
        self,
        keys: QueueKeys,
        *,
        holder: WorkerId,
        jobs: Sequence[tuple[JobId, int, bytes, int]],
        result_ttl_ms: int,
    ) -> ScriptCall[list[bool]]:
        """`jobs`: (id, fence, result, finished_at_ms) each."""
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, result_ttl_ms]
        args += [WORKFLOW_KEEP_MS, *keys.flow_prefixes, keys.held_prefix, keys.inbox_prefix]
        args += [keys.queue, BATCH, *self._dead_bounds, WAKE_CAP]
        for job_id, fence, result, finished_at_ms in jobs:
            args += [job_id, fence, result, finished_at_ms]
        queue_keys = [keys.held(holder), keys.outbox, *keys.flow_keys, keys.ready, keys.wake]
        queue_keys += [keys.workers, keys.idle, keys.dead, *keys.unique_keys]
        queue_keys.append(keys.events)
        return self._call("complete_jobs", queue_keys, args, replies.flags)

    def fail_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, failures: Sequence[Failure]
    ) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, WAKE_CAP, BATCH]
        args += [*self._dead_bounds, *keys.flow_prefixes, keys.held_prefix, keys.inbox_prefix]
        for f in failures:
            retry_at = "" if f.retry_at_ms is None else f.retry_at_ms
            args += [f.job_id, f.fence, int(f.counted), int(f.died), int(f.snoozed)]
            args += [f.error, f.traceback or ""]
            args += [retry_at, f.finished_at_ms]
        queue_keys = [keys.held(holder), keys.delayed, keys.dead, keys.wake, keys.outbox]
        queue_keys += [*keys.flow_keys, keys.workers, keys.idle, *keys.unique_keys]
        queue_keys.append(keys.events)
        return self._call("fail_jobs", queue_keys, args, replies.flags)

    def release_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, releases: Sequence[Release]
    ) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix, holder, WAKE_CAP, *keys.flow_prefixes]
        args += self._handover_args(keys)
        for r in releases:
            args += [r.job_id, r.fence, int(r.unstarted), int(r.died), int(r.suspect)]
        queue_keys = [keys.held(holder), keys.ready, keys.wake, keys.suspects, *keys.flow_keys]
        queue_keys += self._handover_keys(keys)
        queue_keys.append(keys.events)
        return self._call("release_jobs", queue_keys, args, replies.flags)

    def reclaim_stalled_jobs(
        self,
        keys: QueueKeys,
        *,
        now_ms: int | None,
        max_deaths: int,
        backstop: int,
        ended_only: bool,
    ) -> ScriptCall[StalledBatch]:
        queue_keys = [keys.workers, keys.ready, keys.dead, keys.wake, keys.suspects]
        queue_keys += [keys.departed, keys.reclaiming, keys.outbox, *keys.flow_keys, keys.idle]
        queue_keys += keys.unique_keys
        args: list[Arg] = [keys.job_prefix, keys.held_prefix, keys.reclaim_prefix]
        args += [keys.done_prefix, now_arg(now_ms), max_deaths, backstop, BATCH, WAKE_CAP]
        args += [int(ended_only), *self._dead_bounds, *keys.flow_prefixes]
        args += [keys.inbox_prefix, keys.queue]
        queue_keys.append(keys.events)
        return self._call("reclaim_stalled_jobs", queue_keys, args, replies.stalled)

    def register_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, lease_ms: int
    ) -> ScriptCall[int]:
        args: list[Arg] = [holder, now_arg(now_ms), lease_ms]
        return self._call("register_worker", [keys.workers, keys.departed], args, int)

    def heartbeat_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, lease_ms: int
    ) -> ScriptCall[bool]:
        args: list[Arg] = [holder, now_arg(now_ms), lease_ms]
        return self._call("heartbeat_worker", [keys.workers], args, bool)

    def deregister_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, linger_ms: int
    ) -> ScriptCall[int]:
        queue_keys = [keys.workers, keys.held(holder), keys.departed, keys.idle, keys.ready]
        queue_keys += [keys.suspects, keys.wake, keys.dead, keys.outbox, *keys.flow_keys]
        args: list[Arg] = [holder, now_arg(now_ms), max(0, linger_ms), keys.job_prefix]
        args += [*self._handover_args(keys), WAKE_CAP, *keys.flow_prefixes]
        queue_keys.append(keys.events)
        return self._call("deregister_worker", queue_keys, args, int)

    def end_leases(
        self, keys: QueueKeys, *, worker_prefix: str, holder: WorkerId
    ) -> ScriptCall[int]:
        return self._call("end_leases", [keys.workers], [worker_prefix, holder], int)

    def cancel_job(
        self, keys: QueueKeys, *, job_id: JobId, now_ms: int | None, ttl_ms: int
    ) -> ScriptCall[bool]:
        queue_keys = [keys.job(job_id), keys.ready, keys.delayed, keys.suspects, keys.outbox]
        queue_keys += [keys.waiting, *keys.flow_keys, *keys.unique_keys, keys.wake]
        queue_keys += [keys.workers, keys.idle, keys.dead]
        args: list[Arg] = [job_id, keys.done(job_id), now_arg(now_ms), ttl_ms, WORKFLOW_KEEP_MS]
        args += [*keys.flow_prefixes, keys.job_prefix, keys.done_prefix, keys.held_prefix]
        args += [keys.inbox_prefix, keys.queue, BATCH, *self._dead_bounds, WAKE_CAP]
        queue_keys.append(keys.events)
        return self._call("cancel_job", queue_keys, args, bool)

    def set_progress(
        self, keys: QueueKeys, *, job_id: JobId, holder: WorkerId, fence: int, progress: float
    ) -> ScriptCall[bool]:
        args: list[Arg] = [holder, fence, repr(float(progress)), job_id]
        return self._call("set_progress", [keys.job(job_id), keys.events], args, bool)

    def retry_dead_jobs(
        self,
        keys: QueueKeys,
        *,
        job_ids: Sequence[JobId],
        now_ms: int | None,
        snapshot: str | None = None,
        take_snapshot: bool = False,
        payload: bytes | None = None,
    ) -> ScriptCall[tuple[int, int]]:
        """The `job_ids`, or (with `snapshot`) the next BATCH ids of that snapshot of the dead
        letters, taken now when `take_snapshot`; `payload` replaces the one job's payload
        (a re-drive). Returns (moved, looked at)."""
        queue_keys = [keys.dead, keys.ready, keys.seq, keys.wake, *keys.flow_keys]
        queue_keys += [keys.workers, keys.idle, keys.outbox]
        queue_keys.append(keys.events)
        if snapshot is not None:
            queue_keys.append(snapshot)
        ttl_ms = SNAPSHOT_TTL_MS if take_snapshot else 0
        args: list[Arg] = [keys.job_prefix, now_arg(now_ms), PRIORITY_MIN, PRIORITY_MAX, WAKE_CAP]
        args += [BATCH, ttl_ms, *keys.flow_prefixes, *self._handover_args(keys)]
        args += [b"" if payload is None else b"=" + payload, *job_ids]
        return self._call("retry_dead_jobs", queue_keys, args, replies.pair)

    def find_dead_jobs(
        self, keys: QueueKeys, *, after: tuple[bytes, bytes] | None, where: DeadQuery, limit: int
    ) -> ScriptCall[DeadWindow]:
        """One window of at most BATCH dead letters from `after` (score, id), filtered."""
        score, after_id = after if after is not None else (b"", b"")
        args: list[Arg] = [keys.job_prefix, score, after_id, where.since, where.until]
        args += [where.task, where.needle, limit, BATCH]
        return self._call("find_dead_jobs", [keys.dead], args, replies.dead_window)

    def purge_dead_jobs(
        self, keys: QueueKeys, *, job_ids: Sequence[JobId]
    ) -> ScriptCall[tuple[int, int]]:
        """No `job_ids`: the BATCH oldest dead jobs. Returns (purged, looked at)."""
        return self._call(
            "purge_dead_jobs", [keys.dead], [keys.job_prefix, BATCH, *job_ids], replies.pair
        )

    def set_rules(self, keys: QueueKeys, *, rules: Sequence[tuple[str, str]]) -> ScriptCall[int]:
        """`rules`: (task, encoded rules or '' to remove them) each."""
        args: list[Arg] = [*keys.flow_prefixes]
        for task, encoded in rules:
            args += [task, encoded]
        return self._call("set_rules", keys.flow_keys, args, int)

    def count_queue_jobs(self, keys: QueueKeys, scan: int | None = None) -> ScriptCall[QueueCounts]:
        """`scan`: most delayed jobs whose status is read for `retrying` (BATCH by default)."""
        queue_keys = [keys.ready, keys.delayed, keys.dead, keys.workers, keys.suspects]
        queue_keys += [keys.reclaiming, keys.flow, keys.waiting, keys.rules, keys.parked]
        queue_keys.append(keys.throttled)
        args: list[Arg] = [keys.held_prefix, keys.reclaim_prefix, keys.job_prefix]
        args += [*keys.flow_prefixes, BATCH if scan is None else scan, STATS_LANES_MAX]
        return self._call("count_queue_jobs", queue_keys, args, replies.counts)

    def prune_queue(self, keys: QueueKeys) -> ScriptCall[bool]:
        queue_keys = [keys.ready, keys.delayed, keys.suspects, keys.dead, keys.workers]
        queue_keys += [keys.reclaiming, keys.seq, keys.wake, keys.departed, keys.waiting]
        queue_keys += [keys.outbox, keys.idle, *keys.unique_keys, keys.cooldown]
        queue_keys += [keys.cooldown_until, keys.events]
        return self._call("prune_queue", queue_keys, [], bool)

    def touch_queues(
        self, registry: str, *, names: Sequence[QueueName], now_ms: int | None
    ) -> ScriptCall[int]:
        return self._call("touch_queues", [registry], [now_arg(now_ms), *names], int)

    def forget_queues(
        self, registry: str, *, names: Sequence[bytes], cutoff_ms: int
    ) -> ScriptCall[list[bytes]]:
        return self._call("forget_queues", [registry], [cutoff_ms, *names], replies.names)
