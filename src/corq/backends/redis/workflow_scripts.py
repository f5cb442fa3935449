"""Typed wrappers of the workflow scripts, mixed into
:class:`~corq.backends.redis.scripts.Scripts`: one method per script, named like its file.

Scripts of a workflow's own slot take its :class:`WorkflowKeys` (the fixed keys first, in
the order ``WorkflowKeys.fixed`` gives); those of a queue's slot its :class:`QueueKeys`.
"""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import BATCH, PRIORITY_MAX, PRIORITY_MIN, WORKFLOW_KEEP_MS, NewJob
from corq.backends.redis import replies, workflow_replies
from corq.backends.redis.calls import WAKE_CAP, Arg, ScriptCall, ScriptRunner, new_values, now_arg
from corq.backends.redis.keys import QueueKeys, WorkflowKeys
from corq.backends.redis.workflow_replies import (
    OutboxEntry,
    Released,
    WorkflowStep,
)
from corq.types import JobId


def _state(reply: bytes) -> str:
    return replies.text(reply)


class WorkflowScripts(ScriptRunner):
    """The workflow scripts."""

    def _engine_args(self, wk: WorkflowKeys, now_ms: int | None) -> list[Arg]:
        """The ARGV every script of the workflow engine (the workflow include) opens with."""
        return [wk.parents_prefix, wk.children_prefix, now_arg(now_ms), WORKFLOW_KEEP_MS, BATCH]

    def create_workflow(
        self,
        wk: WorkflowKeys,
        *,
        kind: str,
        shape: str,
        outputs: bytes,
        created_at_ms: int,
        open: bool,
    ) -> ScriptCall[str]:
        args: list[Arg] = [kind, shape, outputs, created_at_ms, int(open)]
        return self._call("create_workflow", [wk.meta], args, _state)

    def add_workflow_nodes(
        self, wk: WorkflowKeys, *, jobs: Sequence[bytes], token: str | None
    ) -> ScriptCall[int]:
        """`jobs` packed by ``pack_job``; `token` None: a creation, else that addition's."""
        keys = wk.fixed
        if token is not None:
            keys.append(wk.addition(token))
        args = [*self._engine_args(wk, None), "create" if token is None else "add", *jobs]
        return self._call("add_workflow_nodes", keys, args, int)

    def apply_workflow_ends(
        self,
        wk: WorkflowKeys,
        *,
        ends: Sequence[tuple[JobId | bytes, str, str]],
        now_ms: int | None,
    ) -> ScriptCall[WorkflowStep]:
        """`ends`: (job id, terminal state, error) each."""
        args = self._engine_args(wk, now_ms)
        for job_id, state, error in ends:
            args += [job_id, state, error]
        return self._call("apply_workflow_ends", wk.fixed, args, workflow_replies.workflow_step)

    def open_workflow(self, wk: WorkflowKeys, *, now_ms: int | None) -> ScriptCall[WorkflowStep]:
        args = self._engine_args(wk, now_ms)
        return self._call("open_workflow", wk.fixed, args, workflow_replies.workflow_step)

    def close_workflow(
        self, wk: WorkflowKeys, *, now_ms: int | None
    ) -> ScriptCall[tuple[bool, WorkflowStep]]:
        args = self._engine_args(wk, now_ms)
        return self._call("close_workflow", wk.fixed, args, workflow_replies.flagged_step)

    def commit_workflow_addition(
        self, wk: WorkflowKeys, *, token: str, now_ms: int | None
    ) -> ScriptCall[tuple[bool, WorkflowStep]]:
        keys = [*wk.fixed, wk.addition(token)]
        args = [*self._engine_args(wk, now_ms), token]
        return self._call("commit_workflow_addition", keys, args, workflow_replies.committed_step)

    def drop_workflow(self, wk: WorkflowKeys) -> ScriptCall[int]:
        return self._call("drop_workflow", wk.fixed, self._engine_args(wk, None), int)

    def drop_workflow_addition(
        self, wk: WorkflowKeys, *, token: str, phase: str
    ) -> ScriptCall[int]:
        keys = [*wk.fixed, wk.addition(token)]
        args = [*self._engine_args(wk, None), token, phase]
        return self._call("drop_workflow_addition", keys, args, int)

    def enqueue_waiting_jobs(
        self, keys: QueueKeys, *, jobs: Sequence[NewJob]
    ) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix]
        for job in jobs:
            args += new_values(job)
        return self._call("enqueue_waiting_jobs", [keys.waiting, keys.events], args, replies.flags)

    def watch_jobs(
        self, keys: QueueKeys, *, workflow_id: str, job_ids: Sequence[JobId]
    ) -> ScriptCall[list[tuple[str, str]]]:
        records = [keys.job(job_id) for job_id in job_ids]
        args: list[Arg] = [keys.notify_prefix, workflow_id, *job_ids]
        return self._call("watch_jobs", records, args, workflow_replies.watch_states)

    def release_workflow_jobs(
        self,
        keys: QueueKeys,
        *,
        jobs: Sequence[tuple[JobId | bytes, str, bytes]],
        now_ms: int | None,
    ) -> ScriptCall[Released]:
        """`jobs`: (job id, its workflow, the decision as stored) each."""
        queue_keys = [keys.ready, keys.delayed, keys.seq, keys.wake, keys.outbox, keys.waiting]
        queue_keys += [keys.dead, *keys.flow_keys, keys.workers, keys.idle, *keys.unique_keys]
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, now_arg(now_ms), PRIORITY_MIN]
        args += [PRIORITY_MAX, WAKE_CAP, WORKFLOW_KEEP_MS, BATCH, *self._dead_bounds]
        args += [*keys.flow_prefixes, keys.held_prefix, keys.inbox_prefix, keys.queue]
        for job_id, workflow_id, decision in jobs:
            args += [job_id, workflow_id, decision]
        queue_keys.append(keys.events)
        return self._call("release_workflow_jobs", queue_keys, args, workflow_replies.released)

    def take_outbox(
        self, keys: QueueKeys, *, now_ms: int | None, older_than_ms: int
    ) -> ScriptCall[list[OutboxEntry]]:
        args: list[Arg] = [keys.job_prefix, keys.notify_prefix, now_arg(now_ms)]
        args += [max(0, older_than_ms), BATCH]
        return self._call("take_outbox", [keys.outbox], args, workflow_replies.outbox_entries)

    def clear_outbox(
        self, keys: QueueKeys, *, entries: Sequence[tuple[OutboxEntry, Sequence[str]]]
    ) -> ScriptCall[int]:
        """`entries`: each with the watchers that took its end in."""
        args: list[Arg] = [keys.notify_prefix]
        for entry, watchers in entries:
            args += [entry.member, entry.score, entry.job_id, len(watchers), *watchers]
        return self._call("clear_outbox", [keys.outbox], args, int)

    def drop_waiting_jobs(
        self, keys: QueueKeys, *, workflow_id: str, job_ids: Sequence[JobId]
    ) -> ScriptCall[int]:
        args: list[Arg] = [keys.job_prefix, workflow_id, *job_ids]
        return self._call("drop_waiting_jobs", [keys.waiting], args, int)

    def mark_workflows_due(
        self, tend: str, *, members: Sequence[str], delay_ms: int, now_ms: int | None
    ) -> ScriptCall[int]:
        args: list[Arg] = [now_arg(now_ms), delay_ms, *members]
        return self._call("mark_workflows_due", [tend], args, int)
