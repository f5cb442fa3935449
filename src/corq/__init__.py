"""corq: a coroutine-based distributed task queue and scheduler, on Redis or SQLite."""

from __future__ import annotations

from corq.app import App
from corq.client import Client, JobHandle
from corq.clock import FakeClock, SystemClock
from corq.context import JobContext, current_job, set_progress, set_progress_sync
from corq.errors import (
    ArgumentError,
    BrokerDataError,
    BrokerError,
    ConfigError,
    CorqError,
    EnqueueError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    PayloadTooLargeError,
    ResultTimeoutError,
    Retry,
    SerializationError,
    TaskDefinitionError,
    TaskError,
    UnknownTaskError,
)
from corq.job import Job, JobStatus
from corq.retry import RetryPolicy
from corq.settings import Settings
from corq.spec import EnqueueOptions, JobSpec
from corq.task import Task
from corq.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgumentError",
    "BrokerDataError",
    "BrokerError",
    "Client",
    "ConfigError",
    "CorqError",
    "EnqueueError",
    "EnqueueOptions",
    "FakeClock",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobNotFoundError",
    "JobSpec",
    "JobStatus",
    "PayloadTooLargeError",
    "ResultTimeoutError",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Settings",
    "SystemClock",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "UnknownTaskError",
    "Worker",
    "current_job",
    "set_progress",
    "set_progress_sync",
]
