"""Every Redis key corq uses is named here, and only here.

Each per-queue key carries the hash tag ``{<queue>}``, so all the keys one script touches
live in one Redis Cluster slot. ``$p`` is the key prefix (default ``corq``), ``$q`` the queue::

    $p:queues                     ZSET  queue name -> last used (ms): every queue enqueued to
                                        or served and not pruned (global; older corq kept a
                                        SET here, migrated on first use)
    $p:{$q}:ready                 ZSET  job id -> score; lowest first. score =
                                        (PRIORITY_MAX - priority) * 2**44 + seq, so higher
                                        priority first, then FIFO
    $p:{$q}:seq                   STR   counter behind the FIFO part of ready scores
    $p:{$q}:delayed               ZSET  job id -> run_at_ms (scheduled jobs and retry backoff)
    $p:{$q}:suspects              ZSET  job id -> score; jobs that died with workers: they run
                                        in sandboxes, handed out only when a claim asks
    $p:{$q}:wake                  LIST  wake tokens; idle workers BLPOP it (capped length)
    $p:{$q}:workers               ZSET  holder id -> lease deadline (ms); 0 = lease ended
    $p:{$q}:departed              SET   holders that deregistered while still holding jobs
    $p:{$q}:held:$holder          SET   ids of the jobs that holder holds in this queue
    $p:{$q}:reclaiming            HASH  holder -> 1 if it had departed, else 0: holders taken
                                        out of workers whose jobs reclaim is still taking back
    $p:{$q}:reclaiming:$holder    SET   the ids such a holder held (its held set, renamed)
    $p:{$q}:dead                  ZSET  job id -> died_at_ms (the dead letters)
    $p:{$q}:retrying:$token       ZSET  a copy of dead taken by one ``retry_dead`` of all
                                        (expires after an hour)
    $p:{$q}:job:$id               HASH  the job record (fields below); expires result_ttl
                                        after success, 7 days after a cancel
    $p:{$q}:done:$id              CHAN  pub/sub channel; the job id is published when it ends

A job record holds the fields of ``JOB_FIELDS`` in ``corq/backends/record.py`` (by name,
as text), plus ``score``: its ready score while it waits in ready or suspects.
"""

from __future__ import annotations

from dataclasses import dataclass

from corq.types import JobId, QueueName, WorkerId


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue."""

    prefix: str
    queue: QueueName

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def ready(self) -> str:
        return f"{self.tag}:ready"

    @property
    def seq(self) -> str:
        return f"{self.tag}:seq"

    @property
    def suspects(self) -> str:
        return f"{self.tag}:suspects"

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def wake(self) -> str:
        return f"{self.tag}:wake"

    @property
    def workers(self) -> str:
        return f"{self.tag}:workers"

    @property
    def departed(self) -> str:
        return f"{self.tag}:departed"

    @property
    def reclaiming(self) -> str:
        return f"{self.tag}:reclaiming"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def job_prefix(self) -> str:
        """Scripts append the job id to this to reach a record."""
        return f"{self.tag}:job:"

    @property
    def held_prefix(self) -> str:
        """Scripts append the holder id to this to reach its held set."""
        return f"{self.tag}:held:"

    @property
    def reclaim_prefix(self) -> str:
        """Scripts append the holder id to this to reach the ids reclaim still takes back."""
        return f"{self.tag}:reclaiming:"

    @property
    def done_prefix(self) -> str:
        return f"{self.tag}:done:"

    def job(self, job_id: JobId) -> str:
        return f"{self.job_prefix}{job_id}"

    def held(self, worker_id: WorkerId) -> str:
        return f"{self.held_prefix}{worker_id}"

    def reclaim(self, worker_id: WorkerId) -> str:
        return f"{self.reclaim_prefix}{worker_id}"

    def retrying(self, token: str) -> str:
        return f"{self.tag}:retrying:{token}"

    def done(self, job_id: JobId) -> str:
        return f"{self.done_prefix}{job_id}"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str = "corq"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    def queue(self, queue: QueueName) -> QueueKeys:
        return QueueKeys(self.prefix, queue)
