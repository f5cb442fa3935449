"""One settings object: defaults, then CORQ_* environment variables, then explicit arguments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corq.errors import ArgumentError
from corq.limits import WORKFLOW_MAX_JOBS
from corq.names import check_queue_name

_DAY_S = 86_400.0


class Settings(BaseSettings):
    """corq's configuration; every field can be set as ``CORQ_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="CORQ_", frozen=True, extra="forbid", allow_inf_nan=False
    )

    #: Broker URL: sqlite:///path (the embedded default: corq.db in the working directory),
    #: or redis://host:port/db, rediss://…, unix://… to spread workers over machines.
    url: str = "sqlite:///corq.db"
    #: Prefix of every Redis key (several apps can share one Redis).
    prefix: str = Field(default="corq", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: "json" (default) or "msgpack". Never pickle.
    serializer: Literal["json", "msgpack"] = "json"
    #: Largest encoded job payload accepted by enqueue, in bytes.
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Most jobs one workflow may hold (callbacks and jobs added to a batch included);
    #: a bigger one is refused at enqueue, nothing written.
    max_workflow_jobs: int = Field(default=WORKFLOW_MAX_JOBS, gt=0, le=WORKFLOW_MAX_JOBS)
    #: Largest encoded result a worker stores; a bigger one sends the job to the dead letters.
    max_result_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    #: Queue used when a task names none.
    default_queue: str = "default"
    #: How long a successful job's record and result are kept.
    result_ttl_s: float = Field(default=86_400.0, gt=0)
    #: A worker not heard from for this long is dead; its jobs run again elsewhere.
    lease_s: float = Field(default=10.0, gt=0)
    #: How often a worker renews its lease (from its own thread).
    heartbeat_s: float = Field(default=2.0, gt=0)
    #: How often a worker looks for dead workers' jobs to take back.
    reclaim_s: float = Field(default=2.0, gt=0)
    #: A job whose worker died this many times goes to the dead letters as a poison job
    #: (the last death in a sandbox, where it is known to be the job's own doing).
    max_deaths: int = Field(default=3, ge=1)
    #: Dead letters kept per queue (oldest dropped beyond it); 0 keeps every one.
    dead_max: int = Field(default=100_000, ge=0)
    #: How long dead letters are kept; 0 keeps them until retried or purged.
    dead_ttl_s: float = Field(default=180 * _DAY_S, ge=0)
    #: Lifecycle events kept per queue (`corq events`; the broker's EVENTS_MAX); 0 writes none.
    events_max: int = Field(default=100_000, ge=0)
    #: Timeout of every broker call (a silent network never hangs a worker).
    socket_timeout_s: float = Field(default=5.0, gt=0)
    #: Coroutine jobs a worker runs at once.
    concurrency: int = Field(default=100, ge=1)
    #: Threads for plain (sync) functions.
    threads: int = Field(default=16, ge=1)
    #: Processes for ``process=True`` tasks (0 = number of CPUs).
    process_pool: int = Field(default=0, ge=0)
    #: Sandboxes (child processes) for suspect jobs, so a crash is pinned on the right job.
    sandboxes: int = Field(default=2, ge=1)
    #: Seconds running jobs get to finish at shutdown before they are cancelled and re-queued.
    grace_s: float = Field(default=30.0, ge=0)
    #: Seconds a cancelled plain function's thread gets to see ``current_job().cancelled``
    #: and return before its slot is given up (the thread is abandoned, as at a timeout).
    cancel_grace_s: float = Field(default=5.0, ge=0)
    #: Event loop of `corq worker` and `corq dev`: uvloop when installed (auto), or the
    #: standard asyncio loop.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    #: Event-loop stalls longer than this are logged with the task that caused them.
    loop_lag_warn_s: float = Field(default=0.5, gt=0)
    #: A worker whose event loop stays blocked this long stops renewing its lease (its jobs
    #: then run elsewhere); it must exceed lease_s.
    max_stall_s: float = Field(default=60.0, gt=0)
    #: How often a worker checks that the jobs the broker says it holds are the ones it runs.
    reconcile_s: float = Field(default=6.0, gt=0)
    #: How long the scheduler leader's lease lasts unless renewed: a standby takes over at
    #: most this long (plus scheduler_poll_s) after the leader died.
    scheduler_lease_s: float = Field(default=4.0, gt=0)
    #: How often schedulers look for schedule changes (the leader) or a free lease (standbys).
    scheduler_poll_s: float = Field(default=0.5, gt=0)
    #: How often a worker looks at the runtime configuration's version (pause, weights,
    #: strikes): a change is seen within this long.
    config_poll_s: float = Field(default=0.5, gt=0)
    #: How long a job of a struck task waits (snoozed, no attempt used) before it is
    #: looked at again.
    strike_recheck_s: float = Field(default=5.0, gt=0)

    @field_validator("default_queue")
    @classmethod
    def _check_default_queue(cls, queue: str) -> str:
        """The same rule as every queue name, so a task without a queue can be defined."""
        try:
            return check_queue_name(queue)
        except ArgumentError as exc:  # pydantic reports ValueError as a field error
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        """Timings that only make sense together."""
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s}) must be less than lease_s")
        if self.max_stall_s <= self.lease_s:
            raise ValueError(f"max_stall_s ({self.max_stall_s}) must exceed lease_s")
        if self.scheduler_poll_s * 2 > self.scheduler_lease_s:
            raise ValueError(
                f"scheduler_poll_s ({self.scheduler_poll_s}) must be at most half of "
                f"scheduler_lease_s ({self.scheduler_lease_s}): the leader renews its lease "
                "several times per lease"
            )
        return self
