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
    $p:{$q}:idle                  ZSET  holder id -> when listed (ms): holders whose claim
                                        took nothing and asked to be handed the next job
    $p:{$q}:inbox:$holder         LIST  jobs handed to that idle holder, held by it and
                                        running (one entry per job: its claim values), or
                                        '' (a bare wake: claim); await_jobs BLPOPs it
    $p:{$q}:departed              SET   holders that deregistered while still holding jobs
    $p:{$q}:held:$holder          SET   ids of the jobs that holder holds in this queue
    $p:{$q}:reclaiming            HASH  holder -> 1 if it had departed, else 0: holders taken
                                        out of workers whose jobs reclaim is still taking back
    $p:{$q}:reclaiming:$holder    SET   the ids such a holder held (its held set, renamed)
    $p:{$q}:dead                  ZSET  job id -> died_at_ms (the dead letters)
    $p:{$q}:retrying:$token       ZSET  a copy of dead taken by one ``retry_dead`` of all
                                        (expires after an hour)
    $p:{$q}:job:$id               HASH  the job record (fields below); expires result_ttl
                                        after success, 7 days after a cancel (a workflow's
                                        job, or one a workflow watches: at least
                                        WORKFLOW_KEEP_MS after it ends)
    $p:{$q}:done:$id              CHAN  pub/sub channel; the job id is published when it ends
    $p:{$q}:waiting               SET   ids of jobs waiting for their parents (a workflow's)
    $p:{$q}:outbox                ZSET  msgpack [job id, workflow or ''] -> when its end was
                                        noted: ended jobs whose workflows (its own, and
                                        those watching it) have not all taken the end in
    $p:{$q}:notify:$id            SET   ids of the workflows watching that job (it is an
                                        external parent of theirs); its record has notify 1
    $p:{$q}:unique                HASH  unique key -> id of the job holding it (a live job,
                                        or one ended less than its unique_for_ms ago)
    $p:{$q}:unique-kept           ZSET  unique key -> when its ended job's window closes:
                                        the keys promotion prunes from unique
    $p:{$q}:cooldown              HASH  cooldown key ('u:' unique key, or 't:' task) ->
                                        '<until_ms>:<job id>' (the job that opened it)
    $p:{$q}:cooldown-until        ZSET  cooldown key -> until_ms: the windows promotion prunes
    $p:{$q}:paused                STR   the config version that paused the queue; absent
                                        while it is open (claim_jobs hands nothing out)

Runtime configuration (``config.py``; docs/design.md, "Runtime configuration") sits in a
``{config}`` slot of its own: each change is one script there (``change_config``); a
queue's pause is written in the queue's slot too (``set_queue_paused``): pausing after
the change, resuming before it, so a crash between the two leaves the queue paused::

    $p:{config}:entries           HASH  scope \x1f name \x1f field -> JSON text
    $p:{config}:version           STR   the configuration's version (one per change)
    $p:{config}:history           ZSET  cmsgpack [version, at_ms, who, scope, name, field,
                                        old, new] -> version (CONFIG_HISTORY_KEEP kept)

    $p:{$q}:events                STREAM the lifecycle events (k kind, j id, t task, a
                                        attempt, w worker, d detail, at ms), capped at
                                        events_max by the XADD of each change (events.lua)

Flow control (``flow.py``; docs/design.md, "Flow control"). A lane is ``$t\x1f$k`` ($t a
task with rules, $k its key or ''); the plain ready set is the lane ''::

    $p:{$q}:rules                 HASH  task -> its TaskRules as JSON (flow.py encodes them)
    $p:{$q}:lane:$lane            ZSET  job id -> ready score: the jobs waiting in that lane
    $p:{$q}:keys:$t               ZSET  lane -> band(head priority) * 2**44 + turn: the task's
                                        keys in its rotation (runnable heads, not held back)
    $p:{$q}:groups                ZSET  task (or '' the plain ready set) -> band * 2**44 +
                                        turn: the groups in the rotation; absent while no
                                        lane is runnable (claims then take from ready alone)
    $p:{$q}:parked                SET   't:'$t / 'k:'$lane: groups and keys at their
                                        concurrency, out of their rotation until a slot frees
    $p:{$q}:throttled             ZSET  't:'$t / 'k:'$lane -> when a start is allowed again
    $p:{$q}:active                HASH  't:'$t / 'k:'$lane -> running jobs holding a slot
    $p:{$q}:tat                   HASH  't:'$t / 'k:'$lane -> GCRA theoretical arrival (ms)
    $p:{$q}:flow                  HASH  counters: expired, dropped, cooled, laned (jobs in
                                        lanes), turn (the rotations' counter)
    $p:{$q}:expiring              ZSET  job id -> start_by_ms: jobs with a deadline of first
                                        start (removed when started; promotion ends the due)

A job record holds the fields of ``JOB_FIELDS`` in ``corq/backends/record.py`` (by name,
as text), plus ``score``: its ready score while it waits in ready or suspects, and the
attempt history: ``attempt_open`` (the running attempt, ``<n>:<start ms>``) and
``attempt_log`` (the ended ones, JSON ``[n, worker, start, end, outcome, error]`` a line).

Schedules (``schedules.py``). What is global to the prefix sits in the ``{schedules}``
slot; each schedule's record, with its firing state and logs, sits in its queue's slot, so
the step that checks and moves the state and enqueues the tick's job is one script in one
slot, $n being the schedule's name::

    $p:{schedules}:index          HASH  name -> queue (where its record is)
    $p:{schedules}:changes        ZSET  name -> version of its last change (create, update,
                                        pause, resume, move, removal)
    $p:{schedules}:removed        ZSET  name -> removed at (ms): the removals among changes
                                        (tombstones, trimmed after a day)
    $p:{schedules}:version        STR   the change counter (schedules_version)
    $p:{schedules}:announced      HASH  name -> the record's rev its last version announced
    $p:{schedules}:leader         HASH  holder, fence, deadline_ms: the scheduler lease
    $p:{schedules}:fence          STR   counter behind the lease's fences
    $p:{$q}:schedule:$n           HASH  definition, paused (0/1), reason, last_tick_ms,
                                        floor_ms, buffered_tick_ms, created_at_ms,
                                        updated_at_ms, fired, skipped, rev (raised by every
                                        change of the record); moved_to while a move is
                                        under way (below)
    $p:{$q}:schedule-fired:$n     ZSET  tick -> tick: the last SCHEDULE_FIRED_KEEP fired
                                        (older ones are at or below floor_ms)
    $p:{$q}:schedule-runs:$n      LIST  msgpack [tick_ms, job_id, queue, kind, fired_at_ms],
                                        newest first (SCHEDULE_LOG_KEEP)
    $p:{$q}:schedule-skips:$n     LIST  msgpack [first_tick_ms, last_tick_ms, count, reason,
                                        at_ms], newest first (SCHEDULE_LOG_KEEP)
    $p:{$q}:schedule-fence        STR   highest scheduler fence that wrote in this slot

A schedule's version is its score in ``changes``: the record does not hold it. Writes that
span the two slots go in a fixed order, each step atomic, so a reader (or a crash) between
two steps never sees a half-made schedule and no change is missed:

- create: index (``reserve_schedule_name``), then the record (``create_schedule``), then
  the version (``note_schedule_change``);
- update, pause, resume: the record, then the version;
- remove: the record with its fired ticks and logs (``remove_schedule``), then the index
  and the version, leaving a tombstone (``unindex_schedule``);
- move to another queue (an update with a new queue): (1) ``move_schedule_out`` marks the
  old record ``moved_to`` the new queue and returns its whole state, atomically, so from
  then on every step against the old queue gets GONE; (2) ``move_schedule_in`` creates the
  record in the new queue's slot with that state and the new definition; (3)
  ``note_schedule_change`` points the index at the new queue with a new version; (4) the
  old record is deleted.

The version is taken after the record is written, so a reader that saw version v has seen
every record written by changes up to v. A crash between the two leaves a change without a
version: the record's ``rev`` is then above the one ``announced`` for it, and the next write
of the schedule, even one that changes nothing else, gives it one.

A reader resolves a name through the index; an index entry without a record is absent (a
create under way, or one that crashed); a record marked ``moved_to`` is read from its new
queue when the record is there (after step 2) and as it stands otherwise (a move
interrupted after step 1: nothing can fire there, and the next update or pause of the
schedule finishes the move). Concurrent writers of one name are not serialised beyond
this: two creators racing in different queues may leave the loser's record unreachable
through the index.

Workflows (``workflows.py``, ``settle.py``, ``workflow_reads.py``). A workflow's
dependency state sits in a slot of its own, ``{wf:$w}`` ($w its id), so every step that
changes it is one script there; its jobs sit in their queues' slots as usual::

    $p:{wf:$w}:meta               HASH  state (creating | live), open (1 while a batch
                                        takes jobs), kind, shape, outputs (msgpack [[id,
                                        queue], ...]), created_at_ms, finished_at_ms, total,
                                        members (jobs that are not callbacks), ended,
                                        c:$state (ends by terminal state), m:ended, m:$state
                                        and m:failed (the members'), first_failure and
                                        first_error; drop:$token while an addition is
                                        dropped
    $p:{wf:$w}:order              LIST  job ids in the order added (workflow_nodes pages it)
    $p:{wf:$w}:nodes              HASH  job id -> msgpack [queue, task, callback event or '']
    $p:{wf:$w}:parents:$id        LIST  msgpack [parent, queue, allow_failed 1/0] per edge,
                                        in edge order (parent_outcomes pages it)
    $p:{wf:$w}:children:$id       LIST  '1'/'0' (allow_failed) .. child id, for each child
                                        of that job (of the workflow or external) in it
    $p:{wf:$w}:pending            HASH  job id -> how many of its parents have not ended
    $p:{wf:$w}:todo               HASH  job id -> decision not released yet: 'r' release,
                                        'u' .. error upstream_failed, 'c' .. error cancelled
                                        (a batch callback not needed)
    $p:{wf:$w}:applied            HASH  job id -> state:error of each end taken in (once)
    $p:{wf:$w}:callbacks          HASH  callback job id -> event, until decided
    $p:{wf:$w}:failed             LIST  members that ended dead, cancelled or
                                        upstream_failed, in that order (the first BATCH)
    $p:{wf:$w}:watched            HASH  external parent id -> its queue
    $p:{wf:$w}:adding             HASH  job id -> 1 while the addition writing it has not
                                        committed (decisions for it wait)
    $p:{wf:$w}:deferred           HASH  such a job's id -> the failure decided meanwhile
    $p:{wf:$w}:addition:$token    LIST  the ids one addition to a batch writes, in order
    $p:{workflows}:tend           ZSET  $op/$w -> when maintenance must look at it: a
                                        multi-step write under way ($op: create, add.$token,
                                        release.$token), removed by its writer when done
    $p:{breakers}:tasks           SET   the tasks that have a circuit breaker's state
    $p:{breakers}:state:$t        HASH  a task's circuit: status (closed, open, half_open),
                                        failures (that opened it), opened_at_ms, until_ms
                                        (open: the cool-down's end; half_open: the probe's
                                        permit lapse), opened (times), window_ms, seq
    $p:{breakers}:failures:$t     ZSET  failure seq -> at_ms: the task's failures within
                                        its window while closed (at most `failures` kept)

A creation writes, each step atomic in one slot: the tend mark (due after
WORKFLOW_CREATE_GRACE_MS); the meta (creating) and the nodes with their edges, counts and
decisions (roots decided 'r'); the jobs as waiting records; a watch on each external parent
(ended already: its end is taken in at once; else the workflow joins its notify set); the
open step (live); the release of the todo; the tend mark removed. Nothing can run before
the open step, and a creation that dies before it is deleted by tend_workflows once due. An
end (complete, fail to dead, cancel, reclaim or claim to dead) notes the job in its
queue's outbox in its own script; settle_workflows then applies it in each workflow
(applied makes that once), releases the todo in the jobs' queues (only a job still waiting
moves), clears the todo entries released and, last, the outbox entry: a settle that dies
between steps leaves the entry, and the next settle replays it. An addition to an open
batch writes its nodes under adding (the size grows at once, so callbacks wait), its
records, its watches, then commits; tend_workflows drops one that never committed. When
its last job has ended (and it is not an open batch) a workflow is finished: its keys
expire after WORKFLOW_KEEP_MS (a job's edge lists already expire that long after the
job's own end).

The control channel (``control.py``; docs/design.md, "Cancellation and the control
channel"), global to the prefix, $w a worker id (not a holder id)::

    $p:control:$w                 CHAN  control messages for that worker (msgpack)
    $p:control:*                  CHAN  control messages for every worker
    $p:reply:$r                   LIST  the answer to request $r (one entry; PEXPIRE its
                                        ttl), taken by the asker's BLPOP

Workers' facts (``worker_facts.py``; docs/design.md, "Worker registry, inspection and top"),
one cluster-wide pair in the ``{workers}`` slot, written once per heartbeat by each worker::

    $p:{workers}:info             HASH  worker id -> its WorkerInfo (msgspec JSON)
    $p:{workers}:expiry           ZSET  worker id -> when its facts are removed (heartbeat
                                        + ttl, ms); list_worker_info removes the due ones
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
    def idle(self) -> str:
        return f"{self.tag}:idle"

    @property
    def inbox_prefix(self) -> str:
        """Scripts append the holder id to this to reach its inbox."""
        return f"{self.tag}:inbox:"

    def inbox(self, worker_id: WorkerId) -> str:
        return f"{self.inbox_prefix}{worker_id}"

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

    @property
    def waiting(self) -> str:
        return f"{self.tag}:waiting"

    @property
    def events(self) -> str:
        return f"{self.tag}:events"

    @property
    def outbox(self) -> str:
        return f"{self.tag}:outbox"

    @property
    def notify_prefix(self) -> str:
        """Scripts append a job id to this to reach the workflows watching that job."""
        return f"{self.tag}:notify:"

    @property
    def paused(self) -> str:
        return f"{self.tag}:paused"

    @property
    def rules(self) -> str:
        return f"{self.tag}:rules"

    @property
    def lane_prefix(self) -> str:
        """Scripts append a lane name to this to reach its jobs."""
        return f"{self.tag}:lane:"

    @property
    def keys_prefix(self) -> str:
        """Scripts append a task name to this to reach the rotation of its keys."""
        return f"{self.tag}:keys:"

    def lane(self, lane: str) -> str:
        return f"{self.lane_prefix}{lane}"

    def task_keys(self, task: str) -> str:
        return f"{self.keys_prefix}{task}"

    @property
    def groups(self) -> str:
        return f"{self.tag}:groups"

    @property
    def parked(self) -> str:
        return f"{self.tag}:parked"

    @property
    def throttled(self) -> str:
        return f"{self.tag}:throttled"

    @property
    def active(self) -> str:
        return f"{self.tag}:active"

    @property
    def tat(self) -> str:
        return f"{self.tag}:tat"

    @property
    def unique(self) -> str:
        return f"{self.tag}:unique"

    @property
    def unique_kept(self) -> str:
        return f"{self.tag}:unique-kept"

    @property
    def cooldown(self) -> str:
        return f"{self.tag}:cooldown"

    @property
    def cooldown_until(self) -> str:
        return f"{self.tag}:cooldown-until"

    @property
    def unique_keys(self) -> list[str]:
        """The keys an end frees a unique key in: unique, unique_kept (scripts take them
        after the flow keys)."""
        return [self.unique, self.unique_kept]

    @property
    def flow(self) -> str:
        return f"{self.tag}:flow"

    @property
    def expiring(self) -> str:
        return f"{self.tag}:expiring"

    @property
    def flow_keys(self) -> list[str]:
        """The flow-control keys, in the order scripts take them (after their own):
        rules, groups, parked, throttled, active, tat, flow, expiring."""
        return [
            self.rules,
            self.groups,
            self.parked,
            self.throttled,
            self.active,
            self.tat,
            self.flow,
            self.expiring,
        ]

    @property
    def flow_prefixes(self) -> list[str]:
        """The flow-control prefixes scripts take as arguments: lanes, then task keys."""
        return [self.lane_prefix, self.keys_prefix]

    def notify(self, job_id: JobId) -> str:
        return f"{self.notify_prefix}{job_id}"

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

    @property
    def schedule_prefix(self) -> str:
        """Scripts append a schedule's name to this to reach its record."""
        return f"{self.tag}:schedule:"

    @property
    def schedule_fired_prefix(self) -> str:
        return f"{self.tag}:schedule-fired:"

    @property
    def schedule_runs_prefix(self) -> str:
        return f"{self.tag}:schedule-runs:"

    @property
    def schedule_skips_prefix(self) -> str:
        return f"{self.tag}:schedule-skips:"

    @property
    def schedule_fence(self) -> str:
        return f"{self.tag}:schedule-fence"

    def schedule(self, name: str) -> ScheduleKeys:
        return ScheduleKeys(
            record=f"{self.schedule_prefix}{name}",
            fired=f"{self.schedule_fired_prefix}{name}",
            runs=f"{self.schedule_runs_prefix}{name}",
            skips=f"{self.schedule_skips_prefix}{name}",
        )


@dataclass(frozen=True, slots=True)
class ScheduleKeys:
    """The keys of one schedule in its queue's slot."""

    record: str
    fired: str
    runs: str
    skips: str

    @property
    def all(self) -> list[str]:
        return [self.record, self.fired, self.runs, self.skips]


@dataclass(frozen=True, slots=True)
class SchedulesKeys:
    """The keys of the ``{schedules}`` slot."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{schedules}}"

    @property
    def index(self) -> str:
        return f"{self.tag}:index"

    @property
    def changes(self) -> str:
        return f"{self.tag}:changes"

    @property
    def removed(self) -> str:
        return f"{self.tag}:removed"

    @property
    def version(self) -> str:
        return f"{self.tag}:version"

    @property
    def announced(self) -> str:
        return f"{self.tag}:announced"

    @property
    def leader(self) -> str:
        return f"{self.tag}:leader"

    @property
    def fence(self) -> str:
        return f"{self.tag}:fence"


@dataclass(frozen=True, slots=True)
class BreakerKeys:
    """The keys of the ``{breakers}`` slot: every task's circuit in one slot, so each
    breaker call is one script."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{breakers}}"

    @property
    def tasks(self) -> str:
        return f"{self.tag}:tasks"

    def state(self, task: str) -> str:
        return f"{self.tag}:state:{task}"

    def failures(self, task: str) -> str:
        return f"{self.tag}:failures:{task}"


@dataclass(frozen=True, slots=True)
class ConfigKeys:
    """The keys of the ``{config}`` slot (runtime configuration)."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{config}}"

    @property
    def entries(self) -> str:
        return f"{self.tag}:entries"

    @property
    def version(self) -> str:
        return f"{self.tag}:version"

    @property
    def history(self) -> str:
        return f"{self.tag}:history"


@dataclass(frozen=True, slots=True)
class WorkflowKeys:
    """The keys of one workflow, in its own slot ``{wf:<id>}``."""

    prefix: str
    workflow_id: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{wf:{self.workflow_id}}}"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @property
    def order(self) -> str:
        return f"{self.tag}:order"

    @property
    def nodes(self) -> str:
        return f"{self.tag}:nodes"

    @property
    def pending(self) -> str:
        return f"{self.tag}:pending"

    @property
    def todo(self) -> str:
        return f"{self.tag}:todo"

    @property
    def applied(self) -> str:
        return f"{self.tag}:applied"

    @property
    def callbacks(self) -> str:
        return f"{self.tag}:callbacks"

    @property
    def failed(self) -> str:
        return f"{self.tag}:failed"

    @property
    def watched(self) -> str:
        return f"{self.tag}:watched"

    @property
    def adding(self) -> str:
        return f"{self.tag}:adding"

    @property
    def deferred(self) -> str:
        return f"{self.tag}:deferred"

    @property
    def parents_prefix(self) -> str:
        """Scripts append a job id to this to reach its parents (edge order)."""
        return f"{self.tag}:parents:"

    @property
    def children_prefix(self) -> str:
        """Scripts append a job id to this to reach its children in this workflow."""
        return f"{self.tag}:children:"

    @property
    def addition_prefix(self) -> str:
        return f"{self.tag}:addition:"

    def parents(self, job_id: JobId) -> str:
        return f"{self.parents_prefix}{job_id}"

    def children(self, job_id: JobId) -> str:
        return f"{self.children_prefix}{job_id}"

    def addition(self, token: str) -> str:
        return f"{self.addition_prefix}{token}"

    @property
    def fixed(self) -> list[str]:
        """The keys of the workflow that are not per job, in the order scripts take them."""
        return [
            self.meta,
            self.order,
            self.nodes,
            self.pending,
            self.todo,
            self.applied,
            self.callbacks,
            self.failed,
            self.watched,
            self.adding,
            self.deferred,
        ]


@dataclass(frozen=True, slots=True)
class WorkersKeys:
    """The keys of the ``{workers}`` slot: every worker's facts."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{workers}}"

    @property
    def info(self) -> str:
        return f"{self.tag}:info"

    @property
    def expiry(self) -> str:
        return f"{self.tag}:expiry"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str = "corq"

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    def queue(self, queue: QueueName) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    @property
    def schedules(self) -> SchedulesKeys:
        return SchedulesKeys(self.prefix)

    @property
    def workers(self) -> WorkersKeys:
        return WorkersKeys(self.prefix)

    @property
    def config(self) -> ConfigKeys:
        return ConfigKeys(self.prefix)

    def workflow(self, workflow_id: str) -> WorkflowKeys:
        return WorkflowKeys(self.prefix, workflow_id)

    def control(self, worker_id: WorkerId) -> str:
        """The channel of a worker's control messages (ALL_WORKERS: every worker's)."""
        return f"{self.prefix}:control:{worker_id}"

    def reply(self, request_id: str) -> str:
        """Where the answer to a control request waits for its asker."""
        return f"{self.prefix}:reply:{request_id}"

    @property
    def tend(self) -> str:
        """Multi-step workflow writes under way, by when maintenance must look at them."""
        return f"{self.prefix}:{{workflows}}:tend"

    @property
    def breakers(self) -> BreakerKeys:
        return BreakerKeys(self.prefix)
