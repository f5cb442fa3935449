"""corq: a coroutine-based distributed task queue and scheduler, on Redis or SQLite."""

from __future__ import annotations

from corq.app import App
from corq.canvas import Batch, Chain, Chord, Group, Node, Workflow, batch, chain, chord, group
from corq.client import Client, JobHandle
from corq.clock import FakeClock, SystemClock
from corq.context import JobContext, current_job, set_progress, set_progress_sync
from corq.control import Breaker, Strike
from corq.errors import (
    ArgumentError,
    BrokerDataError,
    BrokerError,
    ConfigError,
    CorqError,
    EnqueueError,
    FlowRuleError,
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    JobNotFoundError,
    PayloadTooLargeError,
    ResultTimeoutError,
    Retry,
    ScheduleError,
    ScheduleNotFoundError,
    SerializationError,
    Snooze,
    TaskDefinitionError,
    TaskError,
    UnknownTaskError,
    UpstreamFailedError,
    WorkflowError,
    WorkflowNotFoundError,
)
from corq.flow import FlowStats, OnDuplicate, Outcome, OverLimit, Rate
from corq.job import Job, JobStatus
from corq.retry import RetryPolicy
from corq.schedule import CatchUp, Overlap, RunKind
from corq.scheduler import Scheduler
from corq.schedules import BackfillResult, RunInfo, ScheduleInfo, Schedules, SkipInfo
from corq.settings import Settings
from corq.spec import EnqueueOptions, JobSpec
from corq.task import Task
from corq.worker import Worker
from corq.workflow import (
    BatchSummary,
    Callback,
    Inputs,
    ParentOutcome,
    UpstreamError,
    WorkflowState,
)
from corq.workflows import BatchHandle, WorkflowHandle, WorkflowJobInfo, WorkflowStatus

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgumentError",
    "BackfillResult",
    "Batch",
    "BatchHandle",
    "BatchSummary",
    "Breaker",
    "BrokerDataError",
    "BrokerError",
    "Callback",
    "CatchUp",
    "Chain",
    "Chord",
    "Client",
    "ConfigError",
    "CorqError",
    "EnqueueError",
    "EnqueueOptions",
    "FakeClock",
    "FlowRuleError",
    "FlowStats",
    "Group",
    "Inputs",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobExpiredError",
    "JobFailedError",
    "JobHandle",
    "JobNotFoundError",
    "JobSpec",
    "JobStatus",
    "Node",
    "OnDuplicate",
    "Outcome",
    "OverLimit",
    "Overlap",
    "ParentOutcome",
    "PayloadTooLargeError",
    "Rate",
    "ResultTimeoutError",
    "Retry",
    "RetryPolicy",
    "RunInfo",
    "RunKind",
    "ScheduleError",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "Scheduler",
    "Schedules",
    "SerializationError",
    "Settings",
    "SkipInfo",
    "Snooze",
    "Strike",
    "SystemClock",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "UnknownTaskError",
    "UpstreamError",
    "UpstreamFailedError",
    "Worker",
    "Workflow",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowJobInfo",
    "WorkflowNotFoundError",
    "WorkflowState",
    "WorkflowStatus",
    "batch",
    "chain",
    "chord",
    "current_job",
    "group",
    "set_progress",
    "set_progress_sync",
]
